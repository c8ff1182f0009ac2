// milter: SAGATOR's milter gateway (Postfix smtpd_milters, Sendmail
// INPUT_MAIL_FILTER). See README.md.
#include <glog/logging.h>
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "common/cli.h"
#include "common/config.h"
#include "common/grpc_server.h"
#include "common/scanner_client.h"
#include "common/service_stats.h"
#include "services/milter/milter_service.h"
#include "services/milter/milter_session.h"

int main(int argc, char** argv) {
  // Before any thread starts, so that only libmilter's signal thread takes SIGTERM,
  // SIGINT and SIGHUP (it stops the loop); the gRPC threads must not.
  sagator::BlockShutdownSignals();
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &hup, nullptr);

  sagator::LoadedConfig cfg =
      sagator::InitBinary(argc, argv,
                          "milter: a libmilter filter that scans mail through SAGATOR's scanners.\n"
                          "Usage: milter --config FILE [--service NAME]");
  const sagator::config::v1::Service& service =
      sagator::ServiceOrExit(cfg, sagator::config::v1::Service::kMilter);
  std::string target = sagator::ScannerTargetOrExit(cfg);
  sagator::milter::MilterOptions options =
      sagator::milter::OptionsFromConfig(cfg.proto, service.milter());
  options.service_name = service.name();
  absl::Status valid = sagator::milter::ValidateConnection(options.connection);
  if (!valid.ok()) {
    std::fprintf(stderr, "%s: %s\n", cfg.path.c_str(), std::string(valid.message()).c_str());
    return 2;
  }

  // Never freed, like the clients below: sessions may still count while main returns.
  sagator::ServiceStats* stats = sagator::StartServiceStatsOrExit(cfg, service).release();
  options.stats = stats->registry();

  // Never freed: libmilter's connection threads may still call in while main returns.
  sagator::ScannerClient* scanner =
      sagator::NewGrpcScannerClient(target, options.scan_timeout, options.max_message_size)
          .release();
  sagator::ScannerClient* policy =
      options.recipient_policy.empty()
          ? scanner
          : sagator::NewGrpcScannerClient(target, options.policy_timeout, options.max_message_size)
                .release();
  auto* milter = new sagator::milter::MilterService(options, scanner, policy);
  absl::Status opened = milter->Open();
  if (!opened.ok()) {
    LOG(ERROR) << opened.message();
    return 1;
  }
  LOG(INFO) << "milter '" << options.service_name << "' listening on " << options.connection
            << ", chain '" << options.chain << "'"
            << (options.recipient_policy.empty()
                    ? std::string()
                    : ", recipient_policy '" + options.recipient_policy + "'")
            << ", scanner-svc at " << target << ", fail_open " << (options.fail_open ? "yes" : "no")
            << ", progress every " << options.progress_interval;
  absl::Status done = milter->Run();
  stats->Stop();
  if (!done.ok()) {
    LOG(ERROR) << done.message();
    return 1;
  }
  LOG(INFO) << "stopped";
  return 0;
}
