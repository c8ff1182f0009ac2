// Real mail peers from Debian's postfix package for cross-process tests and
// benchmarks: a whole Postfix instance with its own config and queue folders
// (PostfixInstance), and Postfix's smtp-sink as a final destination that writes each
// delivered message to a file (SmtpSink).
//
//   SmtpSink sink;                                   // 127.0.0.1:<free port>
//   ASSERT_TRUE(sink.Start().ok());
//   PostfixInstance::Options o;
//   o.relay_port = sink.port();                      // everything goes to the sink
//   o.main_cf = {"content_filter = scan:[127.0.0.1]:10024"};
//   o.master_cf = {"scan unix - - n - 4 smtp"};
//   absl::StatusOr<std::unique_ptr<PostfixInstance>> pf = PostfixInstance::Start(o);
//   ... inject with Swaks(...) or plain SMTP to 127.0.0.1:(*pf)->smtp_port() ...
//   std::vector<SinkMessage> got = sink.WaitForMessages(1, absl::Seconds(20));
//
// Postfix runs its daemons as the `postfix` user, so its folders live under /tmp
// (TEST_TMPDIR may sit below a folder that user cannot enter) and are removed when
// the instance stops. The instance logs to <dir>/maillog (no syslog is needed).
// Stop() (also run by the destructor) stops Postfix and waits for its master.
// Needs root, as Postfix's master does.
//
// Not thread-safe; one owner per object.
#ifndef SAGATOR_TESTS_HARNESS_POSTFIX_H_
#define SAGATOR_TESTS_HARNESS_POSTFIX_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/harness/subprocess.h"

namespace sagator::harness {

class PostfixInstance {
 public:
  struct Options {
    // Port of the public smtpd; 0 picks a free one.
    int smtp_port = 0;
    // Where Postfix relays everything it delivers ([127.0.0.1]:relay_port); 0: no
    // relayhost (mail to remote domains then fails, which some tests want).
    int relay_port = 0;
    // myhostname; a re-injection instance must use a different one.
    std::string hostname = "mx.test";
    // Extra main.cf lines ("key = value"), after the defaults (so they override).
    std::vector<std::string> main_cf;
    // Extra master.cf lines (services such as the content_filter transport or a
    // re-injection smtpd with -o options).
    std::vector<std::string> master_cf;
  };

  static absl::StatusOr<std::unique_ptr<PostfixInstance>> Start(Options options);
  ~PostfixInstance();

  // `postfix stop`; idempotent.
  void Stop();

  int smtp_port() const { return smtp_port_; }
  const std::string& dir() const { return dir_; }
  std::string config_dir() const { return dir_ + "/etc"; }
  // The log so far.
  std::string Maillog() const;
  // Messages in the queue (postqueue -j), -1 when it cannot be read.
  int QueueSize() const;
  // Asks for an immediate delivery attempt of everything deferred (postqueue -f).
  void Flush() const;
  // Waits until the queue is empty; false at the timeout.
  bool WaitForEmptyQueue(absl::Duration timeout) const;

 private:
  PostfixInstance() = default;
  std::string dir_;
  int smtp_port_ = 0;
  bool running_ = false;
};

// One message as smtp-sink received it: its envelope (from the X-Mail-Args and
// X-Rcpt-Args lines smtp-sink writes before the message) and the message itself.
struct SinkMessage {
  std::string file;
  std::string sender;                   // empty for a bounce (MAIL FROM:<>)
  std::vector<std::string> recipients;  // in RCPT order
  std::string helo;
  std::string message;  // the data as received (smtp-sink's own Received: on top)
  // The value of a header field of `message` (first occurrence), or "".
  std::string Header(const std::string& name) const;
};

// Postfix's smtp-sink on 127.0.0.1, writing every transaction to a file.
class SmtpSink {
 public:
  struct Options {
    // 0 picks a free port.
    int port = 0;
    // smtp-sink command names to reject with 4xx (-r) or 5xx (-f), e.g. {"data"} or
    // {"rcpt"}. With either set, smtp-sink accepts pipelining only as it must.
    std::vector<std::string> soft_reject;
    std::vector<std::string> hard_reject;
    // Speak LMTP (LHLO, one reply per recipient) instead of SMTP.
    bool lmtp = false;
  };
  SmtpSink() : SmtpSink(Options()) {}
  explicit SmtpSink(Options options);
  ~SmtpSink();

  absl::Status Start();
  void Stop();
  int port() const { return port_; }

  // Every message written so far, oldest first.
  std::vector<SinkMessage> Messages() const;
  // Waits until at least `count` messages were written (returns what is there at
  // the timeout).
  std::vector<SinkMessage> WaitForMessages(size_t count, absl::Duration timeout) const;

 private:
  Options options_;
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<testing::Subprocess> process_;
};

// Sends one message with swaks (Debian's swaks package); returns its result. `args`
// are extra swaks arguments (e.g. {"--data", "@file"}).
testing::CommandResult Swaks(int port, const std::string& from, const std::string& to,
                             const std::vector<std::string>& args = {});

}  // namespace sagator::harness

#endif  // SAGATOR_TESTS_HARNESS_POSTFIX_H_
