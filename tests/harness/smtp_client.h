// A plain blocking SMTP/LMTP client for tests and benchmarks: it writes what it is
// told and reads whole replies, so tests can also send what a real client never
// would (pipelined batches, garbage, bare LFs).
//
//   SmtpClient c(port);
//   ASSERT_TRUE(c.ok());
//   std::string r = c.Deliver("a@example.org", {"b@example.org"}, message);
//
// Not thread-safe: one client per thread.
#ifndef SAGATOR_TESTS_HARNESS_SMTP_CLIENT_H_
#define SAGATOR_TESTS_HARNESS_SMTP_CLIENT_H_

#include <string>
#include <vector>

namespace sagator::harness {

class SmtpClient {
 public:
  // Connects to 127.0.0.1:port; replies are awaited for up to 30 s.
  explicit SmtpClient(int port);
  ~SmtpClient();
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  bool ok() const { return fd_ >= 0; }
  // Writes everything (best effort).
  void Send(const std::string& data);
  // One whole reply (every line of it, with CRLFs); "" when the connection closed
  // or the wait timed out.
  std::string Read();
  // Send(line + CRLF), then Read().
  std::string Command(const std::string& line);
  // Reads the greeting and sends EHLO (LHLO when `lmtp`), once per connection.
  std::string Greet(bool lmtp = false);
  // One transaction: MAIL, each RCPT, DATA, the message (which must end in CRLF
  // and be dot-stuffed already), "."; greets first when needed. Returns the final
  // reply, or the first refusal that ends the transaction.
  std::string Deliver(const std::string& from, const std::vector<std::string>& to,
                      const std::string& message);

 private:
  int fd_ = -1;
  bool greeted_ = false;
  std::string buf_;
};

}  // namespace sagator::harness

#endif  // SAGATOR_TESTS_HARNESS_SMTP_CLIENT_H_
