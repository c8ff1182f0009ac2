// The start of every SAGATOR binary: flags, logging, configuration.
//
//   int main(int argc, char** argv) {
//     sagator::LoadedConfig cfg = sagator::InitBinary(argc, argv, "sgfilterd: ...");
//     ...
//   }
//
// Every binary takes --config FILE (default $SAGATOR_CONFIG, else
// /etc/sagator/sagator.yaml) and --check-config, which validates the file, prints
// "FILE: configuration OK" and exits 0, or prints the error and exits 2.
#ifndef SAGATOR_COMMON_CLI_H_
#define SAGATOR_COMMON_CLI_H_

#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/strings/string_view.h"
#include "common/config.h"

ABSL_DECLARE_FLAG(std::string, config);
ABSL_DECLARE_FLAG(bool, check_config);
ABSL_DECLARE_FLAG(std::string, service);
ABSL_DECLARE_FLAG(std::string, port_file);

namespace sagator {

// Parses flags and sets up logging to stderr; returns the positional arguments
// (argv[0] first). Does not load a configuration.
std::vector<char*> InitFlagsAndLogging(int argc, char** argv, absl::string_view usage);

// --config, else $SAGATOR_CONFIG, else /etc/sagator/sagator.yaml.
std::string ConfigPathFromFlags();

// For command-line tools: `flag_target` (their --target) when given, else the target
// `from_config` finds in the configuration file (e.g. CollectorTarget). Prints the
// error, or `what` when the file names no target, and exits 2.
std::string ToolTargetOrExit(const std::string& flag_target,
                             std::string (*from_config)(const config::v1::Config&),
                             absl::string_view what);

// InitFlagsAndLogging, then loads --config. Exits 2 with the error when the file is
// invalid, and exits 0 after --check-config. `positional` receives the positional
// arguments when not null.
LoadedConfig InitBinary(int argc, char** argv, absl::string_view usage,
                        std::vector<char*>* positional = nullptr);

// The --service entry of this binary's kind (the first of that kind when --service
// is not given); prints the error and exits 2 when there is none.
const config::v1::Service& ServiceOrExit(const LoadedConfig& cfg,
                                         config::v1::Service::KindCase kind);

// The gRPC target of scanner-svc the gateways call; prints the error and exits 2
// when the configuration names none.
std::string ScannerTargetOrExit(const LoadedConfig& cfg);

// Writes `port` to the --port_file path, when one was given (tests start servers on
// port 0 and read the bound port there). Writes a temporary file and renames it, so
// a reader never sees a partial number. False when the file cannot be written.
bool WritePortFile(int port);
// The same for another port file (an empty path writes nothing and succeeds).
bool WritePortFileTo(const std::string& path, int port);

}  // namespace sagator

#endif  // SAGATOR_COMMON_CLI_H_
