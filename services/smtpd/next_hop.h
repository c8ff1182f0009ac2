// The client side towards the next hop: hands scanned mail on over SMTP or LMTP, one
// command at a time, with a deadline on every reply. Blocking: smtpd runs it on its
// worker pool, never on the I/O thread.
//
//   NextHopClient hop({.address = "127.0.0.1:10025", .dialect = Dialect::kSmtp});
//   Reply r = hop.Mail(sender, size, eightbit, xforward);   // connects when needed
//   Reply r1 = hop.Recipient("a@example.org");
//   std::vector<Reply> done = hop.Data(message, 1);          // after DATA's "."
//   hop.Quit();
//
// Every failure of the next hop (cannot connect, timeout, connection lost, 421) is
// a 4xx reply ("451 4.4.1 ..."), so the client retries: nothing is ever lost. After
// such a failure the connection is closed and the next Mail() opens a new one.
// The connection is kept between transactions (RSET after an abandoned one).
//
// Not thread-safe: one user at a time.
#ifndef SAGATOR_SERVICES_SMTPD_NEXT_HOP_H_
#define SAGATOR_SERVICES_SMTPD_NEXT_HOP_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/smtpd/smtp_session.h"

namespace sagator::smtpd {

// "host:port", "[host]:port", "[ipv6]:port" or "unix:/path", checked.
struct NextHopAddress {
  std::string host;  // empty for a unix socket
  int port = 0;
  std::string unix_path;
  std::string ToString() const;
};
absl::StatusOr<NextHopAddress> ParseNextHop(absl::string_view text);

class NextHopClient {
 public:
  struct Options {
    NextHopAddress address;
    Dialect dialect = Dialect::kSmtp;
    // Longest wait for connecting, for each reply and for each write.
    absl::Duration timeout = absl::Seconds(60);
    // Our name in EHLO/LHLO.
    std::string helo_name = "localhost";
  };

  explicit NextHopClient(Options options);
  ~NextHopClient();
  NextHopClient(const NextHopClient&) = delete;
  NextHopClient& operator=(const NextHopClient&) = delete;

  // Starts a transaction: connects and greets when needed, ends an open transaction
  // with RSET, sends XFORWARD (the attributes the next hop announced) and MAIL FROM.
  Reply Mail(const std::string& sender, int64_t size, bool eightbit,
             const std::map<std::string, std::string>& xforward);
  // RCPT TO; valid after a positive Mail().
  Reply Recipient(const std::string& recipient);
  // DATA, the message (dot-stuffed, CRLF line ends) and the final dot. SMTP: one
  // reply; LMTP: one per accepted recipient (`accepted` of them). The transaction is
  // over afterwards.
  std::vector<Reply> Data(absl::string_view message, size_t accepted);
  // Ends an open transaction (RSET), keeping the connection.
  void Reset();
  // QUIT and close.
  void Quit();

  bool connected() const { return fd_ >= 0; }
  bool in_transaction() const { return in_transaction_; }

 private:
  Reply Connect();
  Reply Fail(const std::string& what);
  void Close();
  bool WriteAll(absl::string_view data);
  // Reads one reply (all its lines); a failed read gives a 451 via Fail.
  Reply ReadReply();
  Reply Command(const std::string& line);

  const Options opt_;
  int fd_ = -1;
  std::string buf_;  // bytes read, not yet consumed
  bool in_transaction_ = false;
  std::vector<std::string> xforward_attrs_;  // announced by EHLO
};

// An SMTP client towards `relay` ("host:port", "[host]:port" or "unix:/path"), for
// mail SAGATOR makes itself (releases, digests, notifications).
absl::StatusOr<std::unique_ptr<NextHopClient>> RelayClient(const std::string& relay,
                                                           absl::Duration timeout,
                                                           const std::string& helo_name);

// Sends one message from `sender` to every one of `recipients` in one transaction
// and QUITs: the DATA reply, or the first reply that refused (a recipient refused
// fails the whole message: notifications and digests go to few addresses).
Reply SendMessage(NextHopClient& hop, const std::string& sender,
                  const std::vector<std::string>& recipients, absl::string_view message);

}  // namespace sagator::smtpd

#endif  // SAGATOR_SERVICES_SMTPD_NEXT_HOP_H_
