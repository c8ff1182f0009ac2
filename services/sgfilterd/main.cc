// sgfilterd: SAGATOR's sgfilter protocol gateway. See README.md.
#include <glog/logging.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/cli.h"
#include "common/config.h"
#include "common/grpc_server.h"
#include "common/scanner_client.h"
#include "common/service_stats.h"
#include "services/sgfilterd/sgfilterd_server.h"


int main(int argc, char** argv) {
  // Before any thread starts, so every thread inherits the blocked signals.
  sagator::BlockShutdownSignals();
  sagator::LoadedConfig cfg = sagator::InitBinary(
      argc, argv,
      "sgfilterd: filters mail sent by the sgfilter client through SAGATOR's scanners.\n"
      "Usage: sgfilterd --config FILE [--service NAME] [--port_file PATH]");
  const sagator::config::v1::Service& service =
      sagator::ServiceOrExit(cfg, sagator::config::v1::Service::kSgfilterd);
  std::string target = sagator::ScannerTargetOrExit(cfg);
  sagator::sgfilterd::SgfilterdOptions options =
      sagator::sgfilterd::OptionsFromConfig(cfg.proto, service.sgfilterd());
  std::unique_ptr<sagator::ServiceStats> stats = sagator::StartServiceStatsOrExit(cfg, service);
  options.stats = stats->registry();
  std::unique_ptr<sagator::ScannerClient> scanner = sagator::NewGrpcScannerClient(
      target, sagator::ToDuration(cfg.proto.global().scan_timeout()), options.max_message_size);

  sagator::sgfilterd::SgfilterdServer server(options, scanner.get());
  absl::Status started = server.Start();
  if (!started.ok()) {
    LOG(ERROR) << started.message();
    return 1;
  }
  LOG(INFO) << "sgfilterd '" << service.name() << "' listening on " << options.host << ":"
            << server.port() << ", chain '" << options.chain << "', scanner-svc at " << target
            << ", prefork " << options.prefork << ", max_connections " << options.max_connections;
  if (!sagator::WritePortFile(server.port())) {
    LOG(ERROR) << "cannot write " << absl::GetFlag(FLAGS_port_file);
    server.Shutdown();
    return 1;
  }

  int sig = sagator::WaitForTerminationSignal();
  LOG(INFO) << "signal " << sig << ": stopping";
  server.Shutdown();
  stats->Stop();
  LOG(INFO) << "stopped";
  return 0;
}
