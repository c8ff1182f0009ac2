// collector-svc: SAGATOR's statistics collector. See README.md.
#include <glog/logging.h>

#include "absl/flags/flag.h"
#include "common/cli.h"
#include "common/config.h"
#include "common/grpc_server.h"
#include "collector-svc/collector_server.h"

ABSL_FLAG(std::string, http_port_file, "", "Write the bound web page port here");
ABSL_FLAG(std::string, legacy_port_file, "", "Write the bound legacy status port here");

int main(int argc, char** argv) {
  sagator::BlockShutdownSignals();
  sagator::LoadedConfig cfg = sagator::InitBinary(
      argc, argv,
      "collector-svc --config FILE [--service NAME]: collects SAGATOR's statistics, writes "
      "the status file, serves graphs and /metrics");
  const sagator::config::v1::Service& service =
      sagator::ServiceOrExit(cfg, sagator::config::v1::Service::kCollector);
  sagator::collector::CollectorOptions options =
      sagator::collector::OptionsFromConfig(cfg, service.collector());
  sagator::collector::CollectorServer server(options);
  if (absl::Status s = server.Start(); !s.ok()) {
    LOG(ERROR) << s.message();
    return 1;
  }
  if (!sagator::WritePortFile(server.port()) ||
      !sagator::WritePortFileTo(absl::GetFlag(FLAGS_http_port_file), server.http_port()) ||
      !sagator::WritePortFileTo(absl::GetFlag(FLAGS_legacy_port_file), server.legacy_port())) {
    LOG(ERROR) << "cannot write a port file";
    return 1;
  }
  LOG(INFO) << "collector-svc '" << service.name() << "' on " << options.host << ":"
            << server.port() << ", web page "
            << (server.http_port() >= 0 ? absl::StrCat("http://", options.http_host, ":",
                                                       server.http_port(), "/")
                                        : std::string("off"))
            << ", status file " << (options.statfile.empty() ? "none" : options.statfile)
            << ", legacy port "
            << (server.legacy_port() >= 0 ? absl::StrCat(server.legacy_port()) : "off");
  int sig = sagator::WaitForTerminationSignal();
  LOG(INFO) << "signal " << sig << ": stopping";
  server.Shutdown();
  return 0;
}
