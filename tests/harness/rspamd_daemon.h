// RspamdDaemon: a real rspamd (/usr/bin/rspamd from Debian's rspamd package, with
// its shipped rules from /etc/rspamd) for tests and benchmarks.
//
//   auto rspamd = RspamdDaemon::Start(absl::StrCat(getenv("TEST_TMPDIR"), "/rspamd"));
//   ASSERT_TRUE(rspamd.ok()) << rspamd.status();
//   spec.set_address((*rspamd)->address());      // "127.0.0.1:<port>"
//
// Only the normal (scanning) worker runs, on a free loopback port; state, log and
// compiled caches stay in `dir`. Offline: DNS goes to a closed loopback port and the
// modules that need the network (RBLs, SPF, DKIM, DMARC, fuzzy) are off; the ones
// that need Redis turn themselves off. The test patterns are on: GTUBE rejects,
// "YJS*..." adds a header, "ZJS*..." rewrites the subject. milter_headers adds
// X-Spam, X-Spamd-Result and friends, also for loopback clients. A short top-level
// domain list keeps the start within a second or two.
// Start() returns once /ping answers pong; Stop() (also the destructor) ends it.
#ifndef SAGATOR_TESTS_HARNESS_RSPAMD_DAEMON_H_
#define SAGATOR_TESTS_HARNESS_RSPAMD_DAEMON_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/harness/subprocess.h"

namespace sagator::harness {

class RspamdDaemon {
 public:
  static absl::StatusOr<std::unique_ptr<RspamdDaemon>> Start(const std::string& dir);
  ~RspamdDaemon();
  void Stop();

  std::string address() const;
  int port() const { return port_; }
  // rspamd's log so far.
  std::string Log() const;

 private:
  RspamdDaemon() = default;
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<testing::Subprocess> process_;
};

// rspamd's test patterns (GTUBE variants), each in a text part of its own message.
inline constexpr char kRspamdGtubeReject[] =
    "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
inline constexpr char kRspamdGtubeAddHeader[] =
    "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
inline constexpr char kRspamdGtubeRewriteSubject[] =
    "ZJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

}  // namespace sagator::harness

#endif  // SAGATOR_TESTS_HARNESS_RSPAMD_DAEMON_H_
