// What every SAGATOR binary runs for its statistics: a stats::Registry its code counts
// into, a StatsReporter that sends it to collector-svc (when the config names one:
// global.collector_target or a collector service), and the service's own Prometheus
// endpoint on metrics_port (when >= 0).
//
//   std::unique_ptr<ServiceStats> stats = StartServiceStatsOrExit(cfg, service);
//   SgfilterdServer server(options, scanner.get(), stats->registry());
//   ...
//   stats->Stop();   // sends the last batch
//
// Thread-safe.
#ifndef SAGATOR_COMMON_SERVICE_STATS_H_
#define SAGATOR_COMMON_SERVICE_STATS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/http_server.h"
#include "common/stats.h"
#include "common/stats_reporter.h"

namespace sagator {

class ServiceStats {
 public:
  // Starts the reporter and the metrics endpoint of `service` as configured in `cfg`.
  static absl::StatusOr<std::unique_ptr<ServiceStats>> Start(
      const LoadedConfig& cfg, const config::v1::Service& service);
  ~ServiceStats();

  stats::Registry* registry() { return &registry_; }
  // The bound metrics port; -1 without an endpoint.
  int metrics_port() const;
  // The reporter; nullptr when no collector is configured.
  stats::StatsReporter* reporter() { return reporter_.get(); }
  // Stops the endpoint and sends the last batch.
  void Stop();

 private:
  ServiceStats() = default;
  stats::Registry registry_;
  std::unique_ptr<stats::StatsReporter> reporter_;
  std::unique_ptr<net::HttpServer> metrics_;
};

// Start() for main(): exits with status 1 and a message when the metrics port cannot
// be bound; writes the bound port to --metrics_port_file when given.
std::unique_ptr<ServiceStats> StartServiceStatsOrExit(const LoadedConfig& cfg,
                                                      const config::v1::Service& service);

// "<service name>@<host>:<pid>": how a process names itself to collector-svc.
std::string StatsSourceName(const LoadedConfig& cfg, const config::v1::Service& service);

}  // namespace sagator

#endif  // SAGATOR_COMMON_SERVICE_STATS_H_
