// Starts a fixed set of child processes, restarts the ones that exit, and stops them
// all on request. This is the core of the `sagator` launcher; it knows nothing about
// the configuration file (launcher_config.h turns that into ChildSpecs).
//
//   absl::StatusOr<std::unique_ptr<Supervisor>> sup =
//       Supervisor::Create(std::move(children), policy);
//   // From a SIGTERM handler or another thread: (*sup)->RequestStop();
//   absl::Status s = (*sup)->Run();  // returns once everything is stopped and reaped
//
// A child that exits (any exit code or signal) is started again after a back-off
// (RestartBackoff). On RequestStop() every child gets SIGTERM (its whole process group
// when it has one), then SIGKILL after `stop_grace`; Run() returns when every child
// and every member of the children's process groups is gone and reaped, and pid
// files are removed.
//
// Process-wide effects while Run() runs: it owns SIGCHLD, reaps every child of the
// process (waitpid(-1)), and makes the process a child subreaper so orphaned
// descendants are reaped too. So only one Supervisor may run in a process at a time,
// and the process must not start other children of its own meanwhile.
//
// Thread-safety: RequestStop() is async-signal-safe and may be called from any thread
// or signal handler, also before Run(). Everything else belongs to the thread that
// calls Run(); children get SIGTERM when that thread exits (PR_SET_PDEATHSIG).
#ifndef SAGATOR_SERVICES_LAUNCHER_SUPERVISOR_H_
#define SAGATOR_SERVICES_LAUNCHER_SUPERVISOR_H_

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sagator::launcher {

// One supervised process.
struct ChildSpec {
  // Used in logs; unique among the children.
  std::string name;
  // argv[0] is the program: run as is when it has a slash (relative to
  // `working_dir`), else searched in PATH (the PATH of `env` when it sets one).
  std::vector<std::string> argv;
  // Variables added to (or replacing those of) the inherited environment.
  std::vector<std::pair<std::string, std::string>> env;
  // The child leads its own process group (setpgid(0, 0)) and is stopped as a group.
  bool own_process_group = false;
  // Folder the child starts in; empty: the supervisor's.
  std::string working_dir;
  // When not empty, these files hold the child's PID / process group id while it
  // runs (written atomically, removed when it exits).
  std::string pid_file;
  std::string pgrp_file;
};

// Restart and stop timing.
struct SupervisionPolicy {
  // First restart delay; it doubles at each consecutive exit.
  absl::Duration restart_backoff = absl::Seconds(1);
  // Longest restart delay.
  absl::Duration max_restart_backoff = absl::Seconds(30);
  // A child that ran at least this long starts its back-off over.
  absl::Duration stable_after = absl::Seconds(60);
  // Time between SIGTERM and SIGKILL when stopping.
  absl::Duration stop_grace = absl::Seconds(10);
};

// The delays between restarts of one child: `initial`, doubling after each exit up to
// `max`, back to `initial` once a run lasted `stable_after`.
class RestartBackoff {
 public:
  RestartBackoff(absl::Duration initial, absl::Duration max, absl::Duration stable_after);

  // The delay before the next start of a child that just exited after running for
  // `ran`.
  absl::Duration NextDelay(absl::Duration ran);

 private:
  absl::Duration initial_;
  absl::Duration max_;
  absl::Duration stable_after_;
  absl::Duration next_;
};

// Where `program` would be executed from: itself when it contains a slash (joined to
// `working_dir` when relative and `working_dir` is set), else the first executable
// regular file in the colon-separated `path_list`. NotFound names what was searched.
absl::StatusOr<std::string> FindProgram(absl::string_view program,
                                        absl::string_view path_list,
                                        absl::string_view working_dir = "");

// The PATH a child with these environment additions searches: theirs when they set
// PATH, else the process's, else the usual default.
std::string EffectivePath(const std::vector<std::pair<std::string, std::string>>& env);

// Writes `contents` to `path` through a temporary file in the same folder and
// rename(), so readers see the old file or the new one, never a partial one.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

class Supervisor {
 public:
  // Fails only when the process is out of file descriptors.
  static absl::StatusOr<std::unique_ptr<Supervisor>> Create(
      std::vector<ChildSpec> children, SupervisionPolicy policy);

  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;
  ~Supervisor();

  // Starts the children in order, supervises them until RequestStop(), then stops
  // them. A child that cannot be started is logged and retried like one that exited.
  absl::Status Run();

  // Makes Run() stop the children and return. Async-signal-safe.
  void RequestStop();

 private:
  struct Child;

  Supervisor(std::vector<ChildSpec> children, SupervisionPolicy policy, int wake_read_fd,
             int wake_write_fd);

  void StartChild(Child& child);
  // Sets when `child` starts again and returns the delay.
  absl::Duration ScheduleRestart(Child& child, absl::Duration ran);
  void ReapChildren();
  void HandleExit(pid_t pid, int wait_status);
  void StartDueChildren();
  void StopAll();
  bool EverythingGone();
  void SignalAll(int signo);
  void WaitForWake(absl::Duration timeout);
  void ForgetEmptyGroups();

  std::vector<Child> children_;
  const SupervisionPolicy policy_;
  const int wake_read_fd_;
  const int wake_write_fd_;
  std::atomic<bool> stop_requested_{false};
  // Process groups whose leader exited while members may still run.
  std::vector<pid_t> orphaned_groups_;
};

}  // namespace sagator::launcher

#endif  // SAGATOR_SERVICES_LAUNCHER_SUPERVISOR_H_
