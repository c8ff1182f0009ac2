// smtpd_policy: SAGATOR's Postfix policy delegation server. See README.md.
#include <glog/logging.h>

#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "common/cli.h"
#include "common/config.h"
#include "common/grpc_server.h"
#include "common/scanner_client.h"
#include "common/service_stats.h"
#include "scanner-svc/chain_set.h"
#include "scanner-svc/local_policy_client.h"
#include "services/smtpd_policy/policy_server.h"

int main(int argc, char** argv) {
  // Before any thread starts, so every thread inherits the blocked signals.
  sagator::BlockShutdownSignals();
  sagator::LoadedConfig cfg = sagator::InitBinary(
      argc, argv,
      "smtpd_policy: answers Postfix's check_policy_service requests by running a policy "
      "chain in scanner-svc.\n"
      "Usage: smtpd_policy --config FILE [--service NAME] [--port_file PATH]");
  const sagator::config::v1::Service& service =
      sagator::ServiceOrExit(cfg, sagator::config::v1::Service::kSmtpdPolicy);
  sagator::smtpd_policy::PolicyServerOptions options =
      sagator::smtpd_policy::OptionsFromConfig(service.smtpd_policy());
  // Every decision gets policy_timeout as its deadline, so none goes on after the
  // server has answered for it.
  std::unique_ptr<sagator::ServiceStats> stats = sagator::StartServiceStatsOrExit(cfg, service);
  options.stats = stats->registry();
  std::string target;
  std::unique_ptr<sagator::ScannerClient> scanner;
  if (service.smtpd_policy().in_process()) {
    auto chains = sagator::ChainSet::Create(cfg, {options.chain}, stats->registry());
    if (!chains.ok()) {
      LOG(ERROR) << chains.status().message();
      return 1;
    }
    target = "in-process";
    // What reaches the pool in-process waits on the database: side by side, one
    // request per call, is faster than a batch decided in turn.
    options.max_batch = 1;
    // The chain reads the envelope; the attribute map would be copied for nothing.
    options.send_attributes = false;
    scanner = std::make_unique<sagator::LocalPolicyClient>(*std::move(chains),
                                                          options.policy_timeout);
  } else {
    target = sagator::ScannerTargetOrExit(cfg);
    scanner = sagator::NewGrpcScannerClient(target, options.policy_timeout,
                                            cfg.proto.global().max_message_size());
  }

  sagator::smtpd_policy::PolicyServer server(options, scanner.get());
  if (absl::Status s = server.Start(); !s.ok()) {
    LOG(ERROR) << s.message();
    return 1;
  }
  LOG(INFO) << "smtpd_policy '" << service.name() << "' listening on " << options.host << ":"
            << server.port() << ", chain '" << options.chain << "', decided " << (target == "in-process" ? "" : "by scanner-svc at ") << target
            << ", prefork " << options.prefork << ", max_children " << options.max_children
            << ", policy_timeout " << options.policy_timeout
            << (options.fail_open ? ", fail-open" : ", fail-closed");
  if (!sagator::WritePortFile(server.port())) {
    LOG(ERROR) << "cannot write " << absl::GetFlag(FLAGS_port_file);
    server.Shutdown();
    return 1;
  }

  int sig = sagator::WaitForTerminationSignal();
  LOG(INFO) << "signal " << sig << ": stopping";
  server.Shutdown();
  stats->Stop();
  sagator::smtpd_policy::PolicyServerStats st = server.stats();
  LOG(INFO) << "stopped after " << st.connections << " connections, " << st.requests
            << " requests (" << st.dunno << " DUNNO, " << st.ok << " OK, " << st.prepend
            << " PREPEND, " << st.deferred << " DEFER_IF_PERMIT, " << st.rejected << " REJECT, "
            << st.discarded << " DISCARD), " << st.decided_at_once << " decided at once from memory, "
            << st.decided_on_loop << " on the I/O threads after a write, the others in " << st.scanner_calls << " decision calls, "
            << st.scanner_failures << " scanner-svc failures ("
            << st.fail_open << " fail-open), " << st.protocol_errors << " protocol errors";
  return 0;
}
