#include "services/smtpd/gateway_main.h"

#include <glog/logging.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/cli.h"
#include "common/config.h"
#include "common/grpc_server.h"
#include "common/scanner_client.h"
#include "common/service_stats.h"
#include "services/smtpd/smtp_gateway.h"

namespace sagator::smtpd {

int GatewayMain(int argc, char** argv, Dialect dialect) {
  const bool lmtp = dialect == Dialect::kLmtp;
  const char* name = lmtp ? "lmtpd" : "smtpd";
  // Before any thread starts, so every thread inherits the blocked signals.
  BlockShutdownSignals();
  LoadedConfig cfg = InitBinary(
      argc, argv,
      absl::StrCat(name, ": the ", lmtp ? "LMTP" : "SMTP",
                   " gateway: scans each message through scanner-svc and relays clean mail "
                   "to the configured next hop.\nUsage: ",
                   name, " --config FILE [--service NAME] [--port_file PATH]"));
  const config::v1::Service& service = ServiceOrExit(
      cfg, lmtp ? config::v1::Service::kLmtpd : config::v1::Service::kSmtpd);
  absl::StatusOr<GatewayOptions> options = OptionsFromConfig(cfg.proto, service);
  if (!options.ok()) {
    std::fprintf(stderr, "%s: %s\n", cfg.path.c_str(),
                 std::string(options.status().message()).c_str());
    return 2;
  }
  std::string target = ScannerTargetOrExit(cfg);
  std::unique_ptr<ScannerClient> scanner = NewGrpcScannerClient(
      target, ToDuration(cfg.proto.global().scan_timeout()), options->max_message_size);

  std::unique_ptr<ServiceStats> stats = StartServiceStatsOrExit(cfg, service);
  options->stats = stats->registry();
  SmtpGateway gateway(*options, scanner.get());
  if (absl::Status s = gateway.Start(); !s.ok()) {
    LOG(ERROR) << s.message();
    return 1;
  }
  LOG(INFO) << name << " '" << service.name() << "' listening on " << options->host << ":"
            << gateway.port() << ", chain '" << options->chain << "', next hop "
            << options->next_hop.ToString()
            << (options->next_hop_dialect == Dialect::kLmtp ? " (LMTP)" : " (SMTP)")
            << ", scanner-svc at " << target << ", prefork " << options->prefork
            << (options->fail_open ? ", fail-open" : ", fail-closed");
  if (!WritePortFile(gateway.port())) {
    LOG(ERROR) << "cannot write " << absl::GetFlag(FLAGS_port_file);
    gateway.Shutdown();
    return 1;
  }
  int sig = WaitForTerminationSignal();
  LOG(INFO) << "signal " << sig << ": stopping";
  gateway.Shutdown();
  stats->Stop();
  GatewayStats st = gateway.stats();
  LOG(INFO) << "stopped after " << st.connections << " connections, " << st.messages
            << " messages (" << st.relayed << " relayed, " << st.rejected << " rejected, "
            << st.dropped << " dropped, " << st.tempfailed << " tempfailed, " << st.fail_open
            << " fail-open)";
  return 0;
}

}  // namespace sagator::smtpd
