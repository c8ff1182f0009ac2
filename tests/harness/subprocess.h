// Starts and stops real processes for cross-process tests and benchmarks.
//
//   Subprocess p({"/path/scanner-svc", "--config", cfg, "--port_file", pf});
//   ASSERT_TRUE(p.Start().ok());
//   absl::StatusOr<int> port = WaitForPortFile(pf, absl::Seconds(20));
//   ...
//   p.Stop();   // SIGTERM, then SIGKILL after a grace period; reaps the child
//
// Not thread-safe; one owner per Subprocess.
#ifndef SAGATOR_TESTS_HARNESS_SUBPROCESS_H_
#define SAGATOR_TESTS_HARNESS_SUBPROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sagator::testing {

class Subprocess {
 public:
  explicit Subprocess(std::vector<std::string> argv,
                      std::map<std::string, std::string> extra_env = {});
  ~Subprocess();  // Stop()s a running child.
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // Forks and execs; the child's stdout/stderr go to ours unless RedirectOutput.
  absl::Status Start();
  // Sends stdout and stderr of the child to this file (appending).
  void RedirectOutput(std::string path) { output_path_ = std::move(path); }
  // SIGTERM, wait up to `grace`, then SIGKILL; returns the wait status.
  int Stop(absl::Duration grace = absl::Seconds(10));
  // Sends a signal.
  void Signal(int sig);
  // Waits for the child to exit by itself; returns the wait status, or -1 on timeout.
  int Wait(absl::Duration timeout);
  // True while the child has not exited.
  bool Running();
  pid_t pid() const { return pid_; }

 private:
  std::vector<std::string> argv_;
  std::map<std::string, std::string> env_;
  std::string output_path_;
  pid_t pid_ = -1;
  int status_ = -1;
};

// What a finished command left behind.
struct CommandResult {
  // The exit code, or 128 + signal, or -1 when it had to be killed at the timeout.
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a command to completion, feeding `input` on its stdin.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input,
                         absl::Duration timeout = absl::Seconds(60));

// Waits until `path` holds a port number (written by a server's --port_file).
absl::StatusOr<int> WaitForPortFile(const std::string& path, absl::Duration timeout);
// Connects to 127.0.0.1:port, sends `request` (nothing when empty) and returns every
// byte the server sends until it closes or stays silent for `timeout`; "" when the
// connect fails.
std::string TcpExchange(int port, const std::string& request,
                        absl::Duration timeout = absl::Seconds(10));
// Waits until a TCP connect to 127.0.0.1:port succeeds.
absl::Status WaitForTcpPort(int port, absl::Duration timeout);
// A port that was free a moment ago (bind to 0, read, close).
int PickFreePort();
// Resident set size of a process in bytes (VmRSS), or -1.
int64_t ResidentBytes(pid_t pid);
// Path of a file from the repository in the test's runfiles ("data/clamav/x").
std::string RunfilePath(const std::string& repo_relative);
// Writes a file, creating nothing else; crashes the test on failure.
void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);
// A fresh folder under TEST_TMPDIR.
std::string MakeTempDir(const std::string& prefix);

}  // namespace sagator::testing

#endif  // SAGATOR_TESTS_HARNESS_SUBPROCESS_H_
