#include "services/launcher/launcher_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/duration.pb.h"
#include "common/config.h"

namespace sagator::launcher {
namespace {

using config::v1::Service;

// Service kinds that are binaries of this project. A new gateway adds its line here.
struct KindBinary {
  Service::KindCase kind;
  const char* binary;
};
constexpr KindBinary kServiceBinaries[] = {
    {Service::kScannerSvc, "scanner-svc"},
    {Service::kSgfilterd, "sgfilterd"},
    {Service::kSmtpd, "smtpd"},
    {Service::kLmtpd, "lmtpd"},
    {Service::kMilter, "milter"},
    {Service::kSmtpdPolicy, "smtpd_policy"},
    {Service::kCollector, "collector-svc"},
    {Service::kQuarantine, "quarantine-svc"},
};


std::string ParentDir(absl::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) return ".";
  return slash == 0 ? "/" : std::string(path.substr(0, slash));
}

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

// An external daemon: chroot_execvp and chroot_execvpe share everything but `env`.
template <typename ExecService>
absl::StatusOr<ChildSpec> DaemonChild(const LoadedConfig& config, const Service& entry,
                                      const ExecService& exec) {
  ChildSpec child;
  child.name = entry.name();
  child.argv.push_back(exec.name());
  child.argv.insert(child.argv.end(), exec.args().begin(), exec.args().end());
  child.own_process_group = true;
  child.working_dir = AbsolutePath(config.base_dir);
  if (!exec.pid_file().empty()) {
    child.pid_file = AbsolutePath(config.ResolvePath(exec.pid_file()));
  }
  if (!exec.pgrp_file().empty()) {
    child.pgrp_file = AbsolutePath(config.ResolvePath(exec.pgrp_file()));
  }
  return child;
}

}  // namespace

const char* ServiceBinaryName(Service::KindCase kind) {
  for (const KindBinary& kb : kServiceBinaries) {
    if (kb.kind == kind) return kb.binary;
  }
  return nullptr;
}

std::vector<std::string> BinarySearchDirs(absl::string_view bin_path) {
  std::vector<std::string> dirs;
  for (absl::string_view dir : absl::StrSplit(bin_path, ':', absl::SkipEmpty())) {
    dirs.emplace_back(dir);
  }
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) dirs.push_back(ParentDir(absl::string_view(self, n)));
  return dirs;
}

absl::StatusOr<std::string> FindServiceBinary(absl::string_view binary,
                                              absl::Span<const std::string> dirs) {
  for (const std::string& dir : dirs) {
    std::string path = absl::StrCat(dir, "/", binary);
    if (IsExecutableFile(path)) return path;
  }
  return absl::NotFoundError(absl::StrCat("service binary '", binary, "' not found in ",
                                          absl::StrJoin(dirs, ":"),
                                          " (point --bin_path at its folder)"));
}

absl::StatusOr<LaunchPlan> BuildLaunchPlan(const LoadedConfig& config,
                                           absl::Span<const std::string> binary_dirs) {
  const config::v1::Config& proto = config.proto;
  LaunchPlan plan;
  const config::v1::Supervision& sup = proto.global().supervision();
  plan.policy.restart_backoff = ToDuration(sup.restart_backoff());
  plan.policy.max_restart_backoff = ToDuration(sup.max_restart_backoff());
  plan.policy.stable_after = ToDuration(sup.stable_after());
  plan.policy.stop_grace = ToDuration(sup.stop_grace());
  plan.state_dir = AbsolutePath(config.ResolvePath(proto.global().state_dir()));
  std::string config_path = AbsolutePath(config.path);

  for (const Service& entry : proto.services()) {
    auto in_entry = [&](const absl::Status& s) {
      return absl::Status(s.code(), absl::StrCat(config.path, ": service '", entry.name(),
                                                 "': ", s.message()));
    };
    absl::StatusOr<ChildSpec> child;
    switch (entry.kind_case()) {
      case Service::kRlimit: {
        std::vector<ResourceLimit> limits = ResourceLimitsFromConfig(entry.rlimit());
        plan.resource_limits.insert(plan.resource_limits.end(), limits.begin(),
                                    limits.end());
        continue;
      }
      case Service::kReporter:
        // Run by cron or a CronJob at its own times, not supervised.
        continue;
      case Service::kChrootExecvp:
        child = DaemonChild(config, entry, entry.chroot_execvp());
        break;
      case Service::kChrootExecvpe:
        child = DaemonChild(config, entry, entry.chroot_execvpe());
        if (child.ok()) {
          for (const auto& [name, value] : entry.chroot_execvpe().env()) {
            child->env.emplace_back(name, value);
          }
          // The proto map has no order; a stable one makes logs and tests repeatable.
          std::sort(child->env.begin(), child->env.end());
        }
        break;
      default: {
        const char* binary = ServiceBinaryName(entry.kind_case());
        if (binary == nullptr) {
          return in_entry(absl::UnimplementedError(
              absl::StrCat("the launcher cannot start services of kind '",
                           ServiceKindName(entry), "'")));
        }
        absl::StatusOr<std::string> path = FindServiceBinary(binary, binary_dirs);
        if (!path.ok()) return in_entry(path.status());
        child = ChildSpec{
            .name = entry.name(),
            .argv = {*path, "--config", config_path, "--service", entry.name()}};
        break;
      }
    }
    if (!child.ok()) return in_entry(child.status());
    absl::StatusOr<std::string> program =
        FindProgram(child->argv[0], EffectivePath(child->env), child->working_dir);
    if (!program.ok()) return in_entry(program.status());
    plan.children.push_back(*std::move(child));
  }
  return plan;
}

std::string AbsolutePath(absl::string_view path) {
  if (!path.empty() && path[0] == '/') return std::string(path);
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == nullptr) return std::string(path);
  if (path.empty() || path == ".") return cwd;
  if (absl::StartsWith(path, "./")) path.remove_prefix(2);
  return absl::StrCat(cwd, "/", path);
}

absl::Status MakeDirectories(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a folder"));
  }
  std::string parent = ParentDir(path);
  if (parent != path) {
    absl::Status s = MakeDirectories(parent);
    if (!s.ok()) return s;
  }
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", path, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace sagator::launcher
