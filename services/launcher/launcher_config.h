// Turns SAGATOR's configuration into what the launcher does: the resource limits it
// sets on itself, and the children the Supervisor starts, in the order of the
// `services:` list.
//
//   absl::StatusOr<LaunchPlan> plan =
//       BuildLaunchPlan(config, BinarySearchDirs(absl::GetFlag(FLAGS_bin_path)));
//
// - rlimit entries become ResourceLimits (no process);
// - service kinds with a binary of their own (ServiceBinaryName) run as
//   `<binary> --config <absolute config path> --service <entry name>`;
// - chroot_execvp / chroot_execvpe run the program in its own process group, in the
//   config file's folder (so relative paths in their arguments mean the same as
//   everywhere else in the file), with pid/pgrp files resolved against that folder.
//
// Thread-safe: the functions keep no state.
#ifndef SAGATOR_SERVICES_LAUNCHER_LAUNCHER_CONFIG_H_
#define SAGATOR_SERVICES_LAUNCHER_LAUNCHER_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/config.h"
#include "sagator/config/v1/config.pb.h"
#include "services/launcher/rlimits.h"
#include "services/launcher/supervisor.h"

namespace sagator::launcher {

// Everything the launcher does with one configuration file.
struct LaunchPlan {
  // From every rlimit entry, in order (a later entry wins).
  std::vector<ResourceLimit> resource_limits;
  // Every process entry, in order.
  std::vector<ChildSpec> children;
  // From global.supervision.
  SupervisionPolicy policy;
  // global.state_dir, absolute.
  std::string state_dir;
};

// The binary that runs services of this kind ("scanner-svc" for scanner_svc), or
// nullptr for kinds that are not a binary of ours (chroot_execvp, rlimit, unset).
const char* ServiceBinaryName(config::v1::Service::KindCase kind);

// The folders searched for service binaries: those of `bin_path` (colon separated)
// in order, then the folder of the running executable.
std::vector<std::string> BinarySearchDirs(absl::string_view bin_path);

// The executable `binary` in the first of `dirs` that has one; NotFound names the
// binary and every folder searched.
absl::StatusOr<std::string> FindServiceBinary(absl::string_view binary,
                                              absl::Span<const std::string> dirs);

// Translates `config`. Fails, naming the entry, when a service binary or a program
// to execute is missing, or a kind cannot be launched.
absl::StatusOr<LaunchPlan> BuildLaunchPlan(const LoadedConfig& config,
                                           absl::Span<const std::string> binary_dirs);

// `path` joined to the current folder when relative (symbolic links are kept).
std::string AbsolutePath(absl::string_view path);

// Creates `path` and its missing parents (mode 0755).
absl::Status MakeDirectories(const std::string& path);

}  // namespace sagator::launcher

#endif  // SAGATOR_SERVICES_LAUNCHER_LAUNCHER_CONFIG_H_
