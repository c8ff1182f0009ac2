#include "common/service_stats.h"

#include <glog/logging.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/cli.h"

ABSL_FLAG(std::string, metrics_port_file, "",
          "Write the bound metrics port to this file once listening (useful with "
          "metrics_port 0)");

namespace sagator {

std::string StatsSourceName(const LoadedConfig& cfg, const config::v1::Service& service) {
  std::string host = cfg.proto.global().hostname();
  if (host.empty()) host = MachineHostname();
  std::string name = service.name().empty() ? ServiceKindName(service) : service.name();
  return absl::StrCat(name, "@", host, ":", getpid());
}

absl::StatusOr<std::unique_ptr<ServiceStats>> ServiceStats::Start(
    const LoadedConfig& cfg, const config::v1::Service& service) {
  std::unique_ptr<ServiceStats> s(new ServiceStats());
  std::string target = CollectorTarget(cfg.proto);
  if (!target.empty()) {
    stats::ReporterOptions o;
    o.target = target;
    o.source = StatsSourceName(cfg, service);
    o.interval = ToDuration(cfg.proto.global().stats_interval());
    o.deadline = std::min(absl::Seconds(2), std::max(o.interval, absl::Milliseconds(200)));
    s->reporter_ = std::make_unique<stats::StatsReporter>(&s->registry_, o);
    s->reporter_->Start();
  }
  if (service.metrics_port() >= 0) {
    stats::Registry* registry = &s->registry_;
    s->metrics_ = std::make_unique<net::HttpServer>(
        net::HttpServerOptions{.host = service.metrics_host(),
                               .port = service.metrics_port(),
                               .name = "metrics"},
        [registry](const net::HttpRequest& r) {
          if (r.path != "/metrics") return net::HttpResponse::NotFound();
          return net::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                                   stats::RenderPrometheus(registry->Take())};
        });
    absl::Status st = s->metrics_->Start();
    if (!st.ok()) {
      return absl::Status(st.code(), absl::StrCat("metrics endpoint on ", service.metrics_host(),
                                                  ":", service.metrics_port(), ": ",
                                                  st.message()));
    }
  }
  return s;
}

ServiceStats::~ServiceStats() { Stop(); }

int ServiceStats::metrics_port() const { return metrics_ == nullptr ? -1 : metrics_->port(); }

void ServiceStats::Stop() {
  if (metrics_ != nullptr) metrics_->Shutdown();
  if (reporter_ != nullptr) reporter_->Stop();
}

std::unique_ptr<ServiceStats> StartServiceStatsOrExit(const LoadedConfig& cfg,
                                                      const config::v1::Service& service) {
  absl::StatusOr<std::unique_ptr<ServiceStats>> s = ServiceStats::Start(cfg, service);
  if (!s.ok()) {
    LOG(ERROR) << s.status().message();
    std::exit(1);
  }
  if ((*s)->metrics_port() >= 0) {
    LOG(INFO) << "metrics on http://" << service.metrics_host() << ":" << (*s)->metrics_port()
              << "/metrics";
    if (!WritePortFileTo(absl::GetFlag(FLAGS_metrics_port_file), (*s)->metrics_port())) {
      LOG(ERROR) << "cannot write " << absl::GetFlag(FLAGS_metrics_port_file);
      std::exit(1);
    }
  }
  if ((*s)->reporter() != nullptr) {
    LOG(INFO) << "statistics reported to collector-svc at " << CollectorTarget(cfg.proto);
  }
  return *std::move(s);
}

}  // namespace sagator
