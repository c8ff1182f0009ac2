// Loads SAGATOR's one YAML configuration file into sagator.config.v1.Config.
//
// The YAML is checked against the proto schema itself: keys are field names, types
// come from the field types, and the field options in config.proto give defaults,
// ranges, required keys and chain references. Every error names the file, the line
// and the key, e.g. "sagator.yaml:12:7: services[1].sgfilterd.port: 70000 is out of
// range [0, 65535]".
//
//   absl::StatusOr<LoadedConfig> cfg = LoadConfigFile("deploy/config/sagator.yaml");
//
// Thread-safe: the functions keep no state.
#ifndef SAGATOR_COMMON_CONFIG_H_
#define SAGATOR_COMMON_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sagator/config/v1/config.pb.h"

namespace sagator {

// A validated configuration and where it came from.
struct LoadedConfig {
  config::v1::Config proto;
  // The file as given (used in messages).
  std::string path;
  // The folder relative paths in the file are resolved against.
  std::string base_dir;

  // Returns `p` unchanged when absolute, else joined to base_dir.
  std::string ResolvePath(absl::string_view p) const;
};

// Reads, parses and validates a configuration file.
absl::StatusOr<LoadedConfig> LoadConfigFile(const std::string& path);

// Parses and validates YAML text; `display_name` stands for the file in messages and
// relative paths resolve against `base_dir`.
absl::StatusOr<LoadedConfig> LoadConfigString(absl::string_view yaml,
                                              const std::string& display_name,
                                              const std::string& base_dir);

// The service entry with this name, or the first entry of kind `kind` when `name` is
// empty. NotFound when there is none.
absl::StatusOr<const config::v1::Service*> FindService(
    const config::v1::Config& config, absl::string_view name,
    config::v1::Service::KindCase kind);

// Name of a service kind as written in YAML ("sgfilterd", "scanner_svc", ...).
std::string ServiceKindName(const config::v1::Service& service);

// The gRPC target gateways use for scanner-svc: global.scanner_target, else the
// first scanner_svc service's host:port. Empty when neither is configured.
std::string ScannerTarget(const config::v1::Config& config);

// The gRPC target of collector-svc: global.collector_target, else the first collector
// service's host:port, else "" (statistics are not reported).
std::string CollectorTarget(const config::v1::Config& config);

// The gRPC target of quarantine-svc: global.quarantine_target, else the first
// quarantine service's host:port, else "".
std::string QuarantineTarget(const config::v1::Config& config);

// This machine's name (gethostname), or "localhost" when it has none.
std::string MachineHostname();

// A configured duration (google.protobuf.Duration) as an absl::Duration.
absl::Duration ToDuration(const google::protobuf::Duration& d);

}  // namespace sagator

#endif  // SAGATOR_COMMON_CONFIG_H_
