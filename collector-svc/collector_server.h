// Everything collector-svc runs, in one object for main() and the tests: the gRPC API
// (with health and reflection), the web page with graphs and /metrics, the legacy
// TCP status port, and a thread that rewrites the status file and the history file
// every status_interval (and once more at Shutdown).
//
//   CollectorServer server(OptionsFromConfig(cfg, service.collector()));
//   absl::Status s = server.Start();    // loads the history file, binds every port
//   ...
//   server.Shutdown();
//
// Thread-safe.
#ifndef SAGATOR_COLLECTOR_SVC_COLLECTOR_SERVER_H_
#define SAGATOR_COLLECTOR_SVC_COLLECTOR_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "collector-svc/aggregator.h"
#include "collector-svc/collector_service.h"
#include "common/config.h"
#include "common/grpc_server.h"
#include "common/http_server.h"
#include "common/tcp_server.h"

namespace sagator::collector {

struct CollectorOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  // Empty: no status file.
  std::string statfile;
  absl::Duration status_interval = absl::Seconds(10);
  std::string legacy_host = "127.0.0.1";
  int legacy_port = -1;
  std::string http_host = "127.0.0.1";
  int http_port = -1;
  // Empty: in memory only.
  std::string history_file;
};

CollectorOptions OptionsFromConfig(const LoadedConfig& cfg,
                                   const config::v1::CollectorService& service);

class CollectorServer {
 public:
  explicit CollectorServer(CollectorOptions options);
  ~CollectorServer();

  absl::Status Start();
  void Shutdown();

  int port() const { return grpc_ != nullptr ? grpc_->port() : 0; }
  int http_port() const { return http_ != nullptr ? http_->port() : -1; }
  int legacy_port() const { return legacy_ != nullptr ? legacy_->port() : -1; }
  Aggregator& aggregator() { return agg_; }
  // Writes the status file and the history file now.
  absl::Status WriteFiles();

 private:
  net::HttpResponse Serve(const net::HttpRequest& r);
  void WriterLoop();

  const CollectorOptions opt_;
  Aggregator agg_;
  CollectorServiceImpl service_{&agg_};
  std::unique_ptr<GrpcServerRunner> grpc_;
  std::unique_ptr<net::HttpServer> http_;
  std::unique_ptr<net::TcpServer> legacy_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

}  // namespace sagator::collector

#endif  // SAGATOR_COLLECTOR_SVC_COLLECTOR_SERVER_H_
