// reporter: mails SAGATOR's quarantine digests (run from cron or a Kubernetes
// CronJob). See reporter.h and README.md.
//
//   reporter --config /etc/sagator/sagator.yaml [--service NAME] [--dry_run]
#include <grpcpp/grpcpp.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/time/clock.h"
#include "common/cli.h"
#include "common/config.h"
#include "quarantine-svc/reporter.h"

ABSL_FLAG(bool, dry_run, false, "print the digests instead of sending them");

int main(int argc, char** argv) {
  sagator::LoadedConfig cfg = sagator::InitBinary(
      argc, argv,
      "reporter --config FILE [--service NAME] [--dry_run]: mails each user a digest of their "
      "newly quarantined mail.\nExit status: 0 sent; 1 a digest was refused; 2 bad "
      "configuration; 75 quarantine-svc or the relay unavailable (the next run retries).");
  const auto& service = sagator::ServiceOrExit(cfg, sagator::config::v1::Service::kReporter);
  auto quarantine = sagator::FindService(cfg.proto, "", sagator::config::v1::Service::kQuarantine);
  if (!quarantine.ok()) {
    std::fprintf(stderr, "%s: the reporter needs a quarantine service in the same file\n",
                 cfg.path.c_str());
    return 2;
  }
  const auto& qspec = (*quarantine)->quarantine();
  auto options = sagator::quarantine::ReporterOptionsFromConfig(cfg, service.reporter(), qspec);
  if (!options.ok()) {
    std::fprintf(stderr, "%s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  options->dry_run = absl::GetFlag(FLAGS_dry_run);
  auto signer = sagator::quarantine::Signer::FromKeyFile(cfg.ResolvePath(qspec.webq().secret_file()));
  if (!signer.ok()) {
    std::fprintf(stderr, "webq secret_file: %s\n", std::string(signer.status().message()).c_str());
    return 2;
  }
  std::string target = sagator::QuarantineTarget(cfg.proto);
  auto stub = sagator::quarantine::v1::QuarantineService::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  sagator::quarantine::Reporter reporter(*std::move(options), stub.get(), *std::move(signer));
  auto run = reporter.Run(absl::Now());
  if (!run.ok()) {
    std::fprintf(stderr, "reporter: %s\n", std::string(run.status().message()).c_str());
    return run.status().code() == absl::StatusCode::kUnavailable ? 75 : 1;
  }
  if (absl::GetFlag(FLAGS_dry_run)) {
    for (const auto& d : run->digests) {
      std::printf("=== to %s (%d item(s))\n%s\n", d.to.c_str(), d.items, d.message.c_str());
    }
  }
  std::fprintf(stderr, "reporter: %zu digest(s), %d sent\n", run->digests.size(), run->sent);
  return 0;
}
