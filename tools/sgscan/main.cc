// sgscan: scans files, mbox files and maildirs with the configured scanners.
//
//   sgscan --config /etc/sagator/sagator.yaml /var/mail/bob ~/Maildir
//   sgscan --av-only --progress --clean /var/mail
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "common/cli.h"
#include "common/config.h"
#include "scanner-svc/chain_set.h"
#include "tools/sgscan/sgscan.h"

ABSL_FLAG(std::string, chain, "default", "the chain to scan with");
ABSL_FLAG(bool, clean, false, "delete detected mail from mailboxes (mbox, maildir)");
ABSL_FLAG(bool, verbose, false, "also list clean messages as CLEAN");
ABSL_FLAG(bool, quiet, false, "print only the summary");
ABSL_FLAG(bool, progress, false, "show done/total, hits and an ETA on stderr");
ABSL_FLAG(bool, av_only, false, "skip the antispam scanners (spamassassind, rspamd)");

namespace {
constexpr char kUsage[] =
    "sgscan: scans files, mbox files and maildirs with SAGATOR's scanners.\n"
    "Usage: sgscan [--config FILE] [--chain NAME] [--clean] [--verbose] [--quiet] "
    "[--progress] [--av-only] PATH...\n"
    "Exit status: 0 nothing found, 1 something detected, 2 bad usage or configuration, "
    "3 scan or read errors.";
}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args;
  sagator::LoadedConfig cfg = sagator::InitBinary(argc, argv, kUsage, &args);
  if (args.size() < 2) {
    fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  if (absl::GetFlag(FLAGS_av_only)) sagator::sgscan::DisableSpamScanners(&cfg.proto);
  std::string chain = absl::GetFlag(FLAGS_chain);
  auto chains = sagator::ChainSet::Create(cfg, {chain}, nullptr);
  if (!chains.ok()) {
    fprintf(stderr, "sgscan: %s\n", std::string(chains.status().message()).c_str());
    return 2;
  }
  sagator::sgscan::ScanOptions o;
  o.clean = absl::GetFlag(FLAGS_clean);
  o.verbose = absl::GetFlag(FLAGS_verbose);
  o.quiet = absl::GetFlag(FLAGS_quiet);
  o.progress = absl::GetFlag(FLAGS_progress);
  sagator::sgscan::Sgscan scan(**chains, chain, o, stdout, stderr);
  return scan.Run(std::vector<std::string>(args.begin() + 1, args.end()));
}
