#include "common/cli.h"

#include <malloc.h>

#include <cstdio>
#include <cstdlib>

#include <glog/logging.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"

ABSL_FLAG(std::string, config, "",
          "Configuration file (default: $SAGATOR_CONFIG, else /etc/sagator/sagator.yaml)");
ABSL_FLAG(bool, check_config, false,
          "Validate the configuration file, print the result and exit (0 valid, 2 not)");
ABSL_FLAG(std::string, service, "",
          "Name of this process's entry in the services list (default: the first "
          "entry of this binary's kind)");

ABSL_FLAG(std::string, port_file, "",
          "Write the bound port to this file once listening (useful with port 0)");

namespace sagator {

bool WritePortFile(int port) { return WritePortFileTo(absl::GetFlag(FLAGS_port_file), port); }

bool WritePortFileTo(const std::string& path, int port) {
  if (path.empty()) return true;
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return false;
  bool ok = std::fprintf(f, "%d\n", port) > 0;
  ok = std::fclose(f) == 0 && ok;
  return ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}

// Abseil flag names use underscores; accept the dashed spelling too
// (--check-config is --check_config), as operators type both.
void NormalizeFlagDashes(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* a = argv[i];
    if (a[0] != '-' || a[1] != '-' || a[2] == '\0') continue;
    for (char* p = a + 2; *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
}

std::vector<char*> InitFlagsAndLogging(int argc, char** argv, absl::string_view usage) {
  // Abseil's deadlock detection (on where the library was built without NDEBUG)
  // sends every Mutex of every message through a global graph: measurable per mail.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // glibc gives freed memory back whenever the free space at the top of a thread's
  // arena passes 128 KiB (at first; the threshold then follows the largest block
  // freed). Allocations that churn around that size (SQLite's page cache, a policy
  // request's protobufs) then cost an madvise and a TLB shootdown on every core per
  // request: 8% of scanner-svc's CPU in policy_bench. Fixed thresholds instead:
  // blocks of 4 MiB and more are mapped and unmapped on their own, and an arena
  // keeps up to 8 MiB free. smtpd_policy in-process on SQLite went from 7,800 to
  // 11,000-12,300 requests/s, scan figures stayed within noise, and scanner-svc's
  // RSS after scan_bench went from 76 MB to 74 MB.
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 8 << 20);
  absl::SetProgramUsageMessage(usage);
  NormalizeFlagDashes(argc, argv);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  FLAGS_colorlogtostderr = false;
  // glog asks mktime() for the zone offset on every line; with TZ unset glibc then
  // stats /etc/localtime each time (a system call per log line on the I/O thread).
  // Naming the same file once stops that; a changed zone shows after a restart.
  setenv("TZ", ":/etc/localtime", /*overwrite=*/0);
  google::InitGoogleLogging(argv[0]);
  return positional;
}

std::string ConfigPathFromFlags() {
  std::string path = absl::GetFlag(FLAGS_config);
  if (path.empty()) {
    const char* env = std::getenv("SAGATOR_CONFIG");
    path = env != nullptr && *env ? env : "/etc/sagator/sagator.yaml";
  }
  return path;
}

std::string ToolTargetOrExit(const std::string& flag_target,
                             std::string (*from_config)(const config::v1::Config&),
                             absl::string_view what) {
  if (!flag_target.empty()) return flag_target;
  std::string path = ConfigPathFromFlags();
  absl::StatusOr<LoadedConfig> cfg = LoadConfigFile(path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", std::string(cfg.status().message()).c_str());
    std::exit(2);
  }
  std::string target = from_config(cfg->proto);
  if (target.empty()) {
    std::fprintf(stderr, "%s: %s\n", path.c_str(), std::string(what).c_str());
    std::exit(2);
  }
  return target;
}

LoadedConfig InitBinary(int argc, char** argv, absl::string_view usage,
                        std::vector<char*>* positional) {
  std::vector<char*> args = InitFlagsAndLogging(argc, argv, usage);
  if (positional != nullptr) *positional = args;
  std::string path = ConfigPathFromFlags();
  absl::StatusOr<LoadedConfig> cfg = LoadConfigFile(path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", std::string(cfg.status().message()).c_str());
    std::exit(2);
  }
  if (absl::GetFlag(FLAGS_check_config)) {
    std::printf("%s: configuration OK\n", path.c_str());
    std::exit(0);
  }
  return *std::move(cfg);
}

const config::v1::Service& ServiceOrExit(const LoadedConfig& cfg,
                                         config::v1::Service::KindCase kind) {
  absl::StatusOr<const config::v1::Service*> service =
      FindService(cfg.proto, absl::GetFlag(FLAGS_service), kind);
  if (!service.ok()) {
    const auto* f = config::v1::Service::descriptor()->FindFieldByNumber(kind);
    std::fprintf(stderr, "%s: %s service: %s\n", cfg.path.c_str(),
                 f == nullptr ? "the" : f->name().c_str(),
                 std::string(service.status().message()).c_str());
    std::exit(2);
  }
  return **service;
}

std::string ScannerTargetOrExit(const LoadedConfig& cfg) {
  std::string target = ScannerTarget(cfg.proto);
  if (target.empty()) {
    std::fprintf(stderr,
                 "%s: no scanner-svc to call: set global.scanner_target or configure a "
                 "scanner_svc service\n",
                 cfg.path.c_str());
    std::exit(2);
  }
  return target;
}

}  // namespace sagator
