// Debian's postgrey (/usr/sbin/postgrey), the reference greylisting policy server, as
// a real peer for tests and benchmarks: it listens on 127.0.0.1:<free port> and keeps
// its BerkeleyDB files in a folder of the test's own.
//
//   PostgreyDaemon::Options o;
//   o.delay_seconds = 1;
//   absl::StatusOr<std::unique_ptr<PostgreyDaemon>> pg =
//       PostgreyDaemon::Start(testing::MakeTempDir("postgrey."), o);
//   ASSERT_TRUE(pg.ok()) << pg.status();
//   ... speak the Postfix policy protocol to 127.0.0.1:(*pg)->port() ...
//
// postgrey runs in the foreground as a child process (never daemonized), as the user
// that starts it (--user/--group name that user, so Net::Server changes nothing), and
// logs to <dir>/postgrey.log instead of syslog (none runs here). Start() returns once
// the port accepts connections, or fails with the log's tail. By default it reads
// empty whitelist files, so every triplet is greylisted the same way; set
// Options::system_whitelists for the Debian lists a real installation uses.
// Stop() (also run by the destructor) sends SIGTERM and reaps it.
//
// Note: postgrey reads --delay=0 as "the default" (300 s); 1 s is the shortest delay.
//
// Not thread-safe: one owner per object; port() may be read from any thread.
#ifndef SAGATOR_TESTS_HARNESS_POSTGREY_H_
#define SAGATOR_TESTS_HARNESS_POSTGREY_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/harness/subprocess.h"

namespace sagator::harness {

class PostgreyDaemon {
 public:
  struct Options {
    // 0 picks a free port.
    int port = 0;
    // --delay: seconds a new triplet is greylisted (postgrey's default is 300).
    int delay_seconds = 300;
    // --auto-whitelist-clients: successful deliveries after which a client passes
    // without greylisting; 0 turns it off; -1 keeps postgrey's default (5).
    int auto_whitelist_clients = -1;
    // Use /etc/postgrey/whitelist_{clients,recipients}[.local] (the installed
    // lists) instead of empty ones.
    bool system_whitelists = false;
    // --dbdir: where the BerkeleyDB files go; empty: <dir>/db. postgrey commits (and
    // fsyncs) a transaction per request, so a folder on disk caps it at a few hundred
    // requests/s; benchmarks that want its CPU cost put this on tmpfs (/dev/shm).
    std::string db_dir;
    // Further postgrey arguments ("--lookup-by-host", "--greylist-action=...").
    std::vector<std::string> extra_args;
    absl::Duration start_timeout = absl::Seconds(30);
  };

  // Starts postgrey with its database and log in `dir` (created if missing).
  static absl::StatusOr<std::unique_ptr<PostgreyDaemon>> Start(const std::string& dir,
                                                               Options options);

  ~PostgreyDaemon();
  PostgreyDaemon(const PostgreyDaemon&) = delete;
  PostgreyDaemon& operator=(const PostgreyDaemon&) = delete;

  // SIGTERM (SIGKILL after 5 s) and reap; an error when postgrey had already died
  // on its own. Idempotent.
  absl::Status Stop();

  int port() const { return port_; }
  // "127.0.0.1:PORT", as a check_policy_service inet: address takes it.
  std::string address() const;
  pid_t pid() const { return process_ != nullptr ? process_->pid() : -1; }
  const std::string& dir() const { return dir_; }
  // The last lines of postgrey.log, for failure messages.
  std::string LogTail() const;

 private:
  PostgreyDaemon() = default;

  std::string dir_;
  int port_ = 0;
  std::unique_ptr<testing::Subprocess> process_;
};

}  // namespace sagator::harness

#endif  // SAGATOR_TESTS_HARNESS_POSTGREY_H_
