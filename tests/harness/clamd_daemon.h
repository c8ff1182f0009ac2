// ClamdDaemon: a real ClamAV daemon (/usr/sbin/clamd from Debian's clamav-daemon) for
// tests and benchmarks, loaded with the project's own signature database only.
//
// Start() writes a clamd.conf into a folder you give it (use TEST_TMPDIR), copies the
// signature file into <dir>/db, starts clamd in the foreground as a child process and
// returns once it answers zPING with PONG on every socket it listens on (the unix
// socket, and 127.0.0.1:<free port> when Options::tcp is set). Stop() (also run by
// the destructor) terminates and reaps it. Example:
//
//   ClamdDaemon::Options options;
//   options.tcp = true;
//   options.stream_max_length = 1 << 20;
//   absl::StatusOr<std::unique_ptr<ClamdDaemon>> clamd =
//       ClamdDaemon::Start(absl::StrCat(getenv("TEST_TMPDIR"), "/clamd"), options);
//   ASSERT_TRUE(clamd.ok()) << clamd.status();
//   spec.set_address((*clamd)->unix_address());   // or (*clamd)->tcp_address()
//
// The test target needs data = ["//data:signatures"] unless it passes its own
// Options::signature_file. Files under the folder: clamd.conf, clamd.log (clamd's
// log), clamd.out (its stdout/stderr), db/, tmp/, clamd.sock. A unix socket path
// must fit in 107 bytes: when <dir>/clamd.sock would not, the socket goes into a
// fresh folder under /tmp, removed again by Stop().
//
// clamd runs as the user that starts it (root here: with no User line clamd does not
// change user, and needs none). It gets SIGKILL if the thread that called Start()
// exits, so that a crashed test leaves no daemon behind: start it from a thread that
// outlives its use (the main thread, SetUpTestSuite, a benchmark's main).
//
// Thread-safety: Start() and Stop() must not race with each other; the const
// accessors may be called from any thread while the daemon runs.
#ifndef SAGATOR_TESTS_HARNESS_CLAMD_DAEMON_H_
#define SAGATOR_TESTS_HARNESS_CLAMD_DAEMON_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sagator::harness {

class ClamdDaemon {
 public:
  struct Options {
    // The .ndb/.hdb/... file to load. Empty: data/clamav/sagator.ndb from the
    // runfiles ($TEST_SRCDIR or $RUNFILES_DIR, workspace "sagator").
    std::string signature_file;
    // Also listen on TCP 127.0.0.1:<free port> (TCPSocket + TCPAddr).
    bool tcp = false;
    // StreamMaxLength in bytes; 0 keeps clamd's default (100M).
    int64_t stream_max_length = 0;
    // DisableCache: benchmarks want it on, or repeated messages look 3-9x faster.
    bool disable_cache = false;
    // MaxThreads; 0 keeps clamd's default (10).
    int max_threads = 0;
    // TemporaryDirectory, where clamd decodes MIME parts; empty: <dir>/tmp. Put it on
    // tmpfs (e.g. under /dev/shm) for benchmarks: disk runs vary a lot.
    std::string temporary_directory;
    // Further "Option value" lines for clamd.conf.
    std::vector<std::string> extra_config;
    // How long Start() waits for PONG before it gives up and kills clamd.
    absl::Duration start_timeout = absl::Seconds(30);
  };

  // Starts clamd with its files in `dir` (created if missing). Fails with the tail
  // of clamd's log when clamd exits or does not answer within start_timeout.
  static absl::StatusOr<std::unique_ptr<ClamdDaemon>> Start(const std::string& dir,
                                                            Options options);

  ~ClamdDaemon();
  ClamdDaemon(const ClamdDaemon&) = delete;
  ClamdDaemon& operator=(const ClamdDaemon&) = delete;

  // SIGTERM, then SIGKILL after 5 s; reaps the process. An error when clamd had
  // already died on its own (a crash during the test). Idempotent.
  absl::Status Stop();

  // The unix socket's path, and the same as a ClamdSpec address ("unix:/path").
  const std::string& socket_path() const { return socket_path_; }
  std::string unix_address() const { return "unix:" + socket_path_; }
  // The TCP port on 127.0.0.1 (0 without Options::tcp), and "127.0.0.1:port"
  // (empty without Options::tcp).
  int tcp_port() const { return tcp_port_; }
  std::string tcp_address() const;
  // clamd's own log file, for failure messages.
  const std::string& log_file() const { return log_file_; }
  pid_t pid() const { return pid_; }

 private:
  ClamdDaemon() = default;

  absl::Status Launch(const std::string& config_file, const std::string& output_file);
  absl::Status WaitReady(absl::Duration timeout);
  // Stops and reaps the process only (Stop() also removes short_socket_dir_).
  absl::Status Terminate();
  // The last lines of clamd.log and clamd.out, for error messages.
  std::string LogTail() const;

  std::string dir_;
  std::string socket_path_;
  // A /tmp folder made for a socket path that did not fit under dir_; removed by Stop().
  std::string short_socket_dir_;
  std::string log_file_;
  std::string output_file_;
  int tcp_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace sagator::harness

#endif  // SAGATOR_TESTS_HARNESS_CLAMD_DAEMON_H_
