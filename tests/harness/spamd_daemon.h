// SpamdDaemon: a real SpamAssassin daemon (/usr/sbin/spamd from Debian's spamd
// package, with the rules the spamassassin package ships) for tests and benchmarks.
//
//   auto spamd = SpamdDaemon::Start(absl::StrCat(getenv("TEST_TMPDIR"), "/spamd"));
//   ASSERT_TRUE(spamd.ok()) << spamd.status();
//   spec.set_address((*spamd)->address());      // "127.0.0.1:<port>"
//
// spamd listens on a free loopback port with network tests off (--local) and user
// configurations off (-x), runs as `nobody`, logs to <dir>/spamd.log, and takes
// `local_cf` plus the system's plugin list (.pre files) as its site configuration,
// in a folder under /tmp that `nobody` can read (removed by Stop()).
// Start() returns once spamd answers PING with PONG (rule compilation takes a few
// seconds). Stop() (also the destructor) ends it and its children.
//
// Tests using it need tags = ["no-sandbox"]: spamd's children switch user. Not
// thread-safe: one owner.
#ifndef SAGATOR_TESTS_HARNESS_SPAMD_DAEMON_H_
#define SAGATOR_TESTS_HARNESS_SPAMD_DAEMON_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/harness/subprocess.h"

namespace sagator::harness {

class SpamdDaemon {
 public:
  struct Options {
    std::string local_cf = "required_score 5.0\n";
    int max_children = 4;
  };
  static absl::StatusOr<std::unique_ptr<SpamdDaemon>> Start(const std::string& dir,
                                                            Options options);
  static absl::StatusOr<std::unique_ptr<SpamdDaemon>> Start(const std::string& dir) {
    return Start(dir, Options());
  }
  ~SpamdDaemon();
  void Stop();

  std::string address() const;
  int port() const { return port_; }
  // spamd's log so far.
  std::string Log() const;

 private:
  SpamdDaemon() = default;
  std::string dir_;
  // The site configuration, under /tmp (see Start).
  std::string site_dir_;
  int port_ = 0;
  std::unique_ptr<testing::Subprocess> process_;
};

}  // namespace sagator::harness

#endif  // SAGATOR_TESTS_HARNESS_SPAMD_DAEMON_H_
