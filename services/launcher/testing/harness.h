// Helpers for the launcher's tests, which run real processes: a fresh folder per
// test under TEST_TMPDIR, polling with a deadline instead of fixed sleeps, process
// state from /proc, and the `sagator` binary run as a child of the test.
//
//   std::string dir = TestDir();
//   LauncherProcess launcher({"--config", dir + "/sagator.yaml"}, dir);
//   ASSERT_TRUE(WaitFor([&] { return FileExists(dir + "/x.pid"); })) << launcher.Log();
//   kill(launcher.pid(), SIGTERM);
//   std::optional<int> status = launcher.Wait(absl::Seconds(20));
//
// Thread-compatible.
#ifndef SAGATOR_SERVICES_LAUNCHER_TESTING_HARNESS_H_
#define SAGATOR_SERVICES_LAUNCHER_TESTING_HARNESS_H_

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace sagator::launcher::testing {

// A new, empty folder for the running test: $TEST_TMPDIR/<suite>.<test>.
std::string TestDir();

// $TEST_SRCDIR/sagator/<path>.
std::string RunfilePath(const std::string& path);

// Polls `condition` every 10ms until it holds (true) or `timeout` passed (false).
bool WaitFor(const std::function<bool()>& condition,
             absl::Duration timeout = absl::Seconds(20));

bool FileExists(const std::string& path);
// The file's contents, or "" when it cannot be read.
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& contents, int mode = 0644);
// The first integer in the file, or -1.
long ReadNumber(const std::string& path);

// True while `pid` exists and is not a zombie.
bool IsRunning(pid_t pid);
// True when `pid` does not exist at all, zombie included (it was reaped).
bool IsGone(pid_t pid);

// The `sagator` launcher run by the test; its stdout and stderr go to a log file.
class LauncherProcess {
 public:
  // Starts $TEST_SRCDIR/sagator/services/launcher/sagator with `args` in folder
  // `cwd`, adding `env` ("NAME=value") to the test's environment.
  LauncherProcess(const std::vector<std::string>& args, const std::string& cwd,
                  const std::vector<std::string>& env = {});
  LauncherProcess(const LauncherProcess&) = delete;
  LauncherProcess& operator=(const LauncherProcess&) = delete;
  // Stops a launcher that still runs: SIGTERM, then SIGKILL.
  ~LauncherProcess();

  pid_t pid() const { return pid_; }

  // The wait status once the launcher exited, nullopt when it still runs after
  // `timeout`.
  std::optional<int> Wait(absl::Duration timeout = absl::Seconds(30));

  // What the launcher wrote so far.
  std::string Log() const { return ReadFile(log_path_); }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int wait_status_ = 0;
  std::string log_path_;
};

// Runs the launcher to its end (at most `timeout`); returns its exit code (-1 when it
// did not exit normally) and sets `*output` to what it printed.
int RunLauncher(const std::vector<std::string>& args, const std::string& cwd,
                std::string* output, absl::Duration timeout = absl::Seconds(30));

}  // namespace sagator::launcher::testing

#endif  // SAGATOR_SERVICES_LAUNCHER_TESTING_HARNESS_H_
