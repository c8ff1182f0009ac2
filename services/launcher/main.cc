// sagator: the single-machine launcher. Reads the configuration, applies its rlimit
// entries, starts every service and external daemon, restarts them when they exit,
// and stops them all on SIGTERM or SIGINT. See README.md.
#include <glog/logging.h>
#include <signal.h>

#include <cstring>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/cli.h"
#include "common/config.h"
#include "services/launcher/launcher_config.h"
#include "services/launcher/rlimits.h"
#include "services/launcher/supervisor.h"

ABSL_FLAG(std::string, bin_path, "",
          "Colon-separated folders searched for service binaries (scanner-svc, "
          "sgfilterd, ...) before the launcher's own folder");

namespace {

sagator::launcher::Supervisor* g_supervisor = nullptr;

void OnStopSignal(int) { g_supervisor->RequestStop(); }

// Start-up failures exit 2, like an invalid configuration.
constexpr int kStartupError = 2;

}  // namespace

int main(int argc, char** argv) {
  sagator::LoadedConfig config = sagator::InitBinary(
      argc, argv,
      "sagator --config FILE [--bin_path DIR:DIR]: starts and supervises the services "
      "of a SAGATOR configuration");
  namespace launcher = sagator::launcher;

  absl::StatusOr<launcher::LaunchPlan> plan = launcher::BuildLaunchPlan(
      config, launcher::BinarySearchDirs(absl::GetFlag(FLAGS_bin_path)));
  if (!plan.ok()) {
    LOG(ERROR) << plan.status().message();
    return kStartupError;
  }
  if (absl::Status s = launcher::ApplyResourceLimits(plan->resource_limits); !s.ok()) {
    LOG(ERROR) << config.path << ": " << s.message();
    return kStartupError;
  }
  if (absl::Status s = launcher::MakeDirectories(plan->state_dir); !s.ok()) {
    LOG(ERROR) << config.path << ": global.state_dir: " << s.message();
    return kStartupError;
  }

  absl::StatusOr<std::unique_ptr<launcher::Supervisor>> supervisor =
      launcher::Supervisor::Create(std::move(plan->children), plan->policy);
  if (!supervisor.ok()) {
    LOG(ERROR) << supervisor.status().message();
    return 1;
  }
  g_supervisor = supervisor->get();
  struct sigaction on_stop;
  memset(&on_stop, 0, sizeof on_stop);
  on_stop.sa_handler = OnStopSignal;
  sigemptyset(&on_stop.sa_mask);
  on_stop.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &on_stop, nullptr);
  sigaction(SIGINT, &on_stop, nullptr);

  LOG(INFO) << "sagator launcher started with " << config.path;
  absl::Status s = (*supervisor)->Run();
  // Everything is stopped: a late signal has nothing left to stop.
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  if (!s.ok()) {
    LOG(ERROR) << s.message();
    return 1;
  }
  LOG(INFO) << "sagator launcher stopped";
  return 0;
}
