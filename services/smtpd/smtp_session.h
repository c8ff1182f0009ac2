// The server side of one SMTP or LMTP session as a pure state machine: bytes in,
// replies and actions out. No sockets and no threads, so every protocol rule is
// unit-tested (smtp_session_test.cc) and the socket code stays small.
//
//   SmtpSession s(options);
//   out = s.Greeting();
//   s.Feed(bytes_from_client);
//   for (;;) {
//     SmtpSession::Action a = s.Next(&out);   // appends replies to `out`
//     if (a == kRead) break;                   // write `out`, read more, Feed
//     if (a == kRecipient) s.CompleteRecipient(decide(s.pending_recipient()));
//     if (a == kMessage) s.CompleteMessage(scan_and_relay(s.transaction()));
//     if (a == kClose) { write `out`; close; }
//   }
//
// What it implements (RFC 5321, RFC 2033 for LMTP, RFC 2920 PIPELINING, RFC 1870
// SIZE, RFC 6152 8BITMIME, RFC 2034 ENHANCEDSTATUSCODES, Postfix's XFORWARD):
// - EHLO/HELO (SMTP) or LHLO (LMTP), MAIL, RCPT, DATA, RSET, NOOP, QUIT, VRFY (252),
//   HELP, XFORWARD; everything else gets 502. Commands that arrive pipelined are
//   answered in order; input after a pending action waits in the buffer.
// - DATA ends only at CRLF "." CRLF. A line ended by a bare LF is message content
//   (it is stored with CRLF), so "\n.\n" can never end the message early and no
//   second message can be smuggled inside the first (CVE-2023-51764 class); the relay
//   dot-stuffs every line again.
// - Limits: command line length (500 5.5.2), data line length and message size
//   (the rest of the data is read and dropped, then 554 5.6.0 / 552 5.3.4), the
//   number of recipients (452 4.5.3), the number of errors (421 after 20).
// - LMTP: after DATA, one reply per accepted recipient, in order (CompleteMessage
//   takes them); DATA with no accepted recipient is refused with 503.
//
// Not thread-safe: one owner.
#ifndef SAGATOR_SERVICES_SMTPD_SMTP_SESSION_H_
#define SAGATOR_SERVICES_SMTPD_SMTP_SESSION_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace sagator::smtpd {

enum class Dialect { kSmtp, kLmtp };

// One SMTP reply: "250 2.0.0 Ok". `text` may hold several lines separated by '\n'.
struct Reply {
  int code = 250;
  std::string enhanced;  // "2.0.0"; empty when the reply has none (greeting, EHLO)
  std::string text;

  // The wire form: every line "code[-| ]enhanced text\r\n".
  std::string Format() const;
  bool positive() const { return code >= 200 && code < 300; }
  bool transient() const { return code >= 400 && code < 500; }
};

// A reply line from a peer ("451 4.3.0 text") parsed back; enhanced is taken from
// the text when it starts with one. Used by the relay.
Reply ParseReplyLines(int code, const std::vector<std::string>& texts);

// The transaction as the client gave it.
struct Transaction {
  std::string sender;                   // without angle brackets; "" is the null sender
  int64_t declared_size = -1;           // MAIL FROM SIZE=, -1 when not given
  bool body_8bitmime = false;           // MAIL FROM BODY=8BITMIME
  std::vector<std::string> recipients;  // accepted recipients, in order
  // The message with CRLF line ends, dot-unstuffed, without the final ".".
  std::string data;
};

class SmtpSession {
 public:
  struct Options {
    Dialect dialect = Dialect::kSmtp;
    // Our name in the greeting and the EHLO reply.
    std::string hostname = "localhost";
    // Advertised with SIZE and enforced.
    int64_t max_message_size = int64_t{50} << 20;
    size_t max_line_length = 2048;
    size_t max_data_line_length = 1 << 20;
    int max_recipients = 1000;
    int max_errors = 20;
  };

  enum class Action {
    // Write what Next() appended, then read more input and Feed it.
    kRead,
    // Decide pending_recipient() and call CompleteRecipient.
    kRecipient,
    // Scan and deliver transaction() and call CompleteMessage.
    kMessage,
    // Write what Next() appended, then close the connection.
    kClose,
  };

  explicit SmtpSession(Options options);

  // "220 <hostname> ESMTP SAGATOR" (LMTP: "LMTP").
  std::string Greeting() const;
  // Appends client input.
  void Feed(absl::string_view bytes);
  // Processes buffered input until it needs more, an action is pending, or the
  // session ends; appends the replies to *out.
  Action Next(std::string* out);

  // After kRecipient: a 2xx reply accepts the recipient, anything else refuses it.
  void CompleteRecipient(const Reply& reply);
  // After kMessage: SMTP one reply; LMTP one per accepted recipient, in order. The
  // transaction is then over.
  void CompleteMessage(const std::vector<Reply>& replies);
  // While the data is being read (in_data()): drop the rest of the data and answer
  // `reply` at its end (e.g. 452 4.3.1 when the memory budget is spent).
  void RefuseData(const Reply& reply);

  // The reply for an idle client: "421 4.4.2 <host> Error: timeout exceeded".
  std::string TimeoutReply() const;

  const Transaction& transaction() const { return txn_; }
  // The message data, for the kMessage action to move from.
  std::string& mutable_data() { return txn_.data; }
  // Counts transactions started (each MAIL), so a relay can tell a new one.
  uint64_t transaction_number() const { return txn_number_; }
  const std::string& pending_recipient() const { return pending_rcpt_; }
  // HELO/EHLO/LHLO argument and whether it was EHLO/LHLO.
  const std::string& helo() const { return helo_; }
  bool extended() const { return extended_; }
  // XFORWARD attributes given for the current transaction (NAME, ADDR, PORT,
  // PROTO, HELO, IDENT, SOURCE), xtext-decoded; "[UNAVAILABLE]" values are dropped.
  const std::map<std::string, std::string>& xforward() const { return xforward_; }
  bool in_data() const { return state_ == State::kData; }
  // Data bytes held so far in the current message.
  size_t data_bytes() const { return txn_.data.size(); }
  bool in_transaction() const { return state_ != State::kIdle; }

 private:
  enum class State { kIdle, kMail, kData, kWaitRecipient, kWaitMessage, kClosed };

  // Handles one command line (without CRLF); returns the action it leads to.
  Action Command(absl::string_view line, std::string* out);
  // Consumes data lines; true when the end of data was seen.
  bool ConsumeData();
  void Error(std::string* out, const Reply& reply);
  void ResetTransaction();
  std::string EhloReply() const;

  const Options opt_;
  std::string in_;   // unprocessed input
  std::string pending_out_;  // replies decided by Complete*, written at the next Next()
  size_t scan_ = 0;  // how far in_ is known to hold no line end (long lines)
  State state_ = State::kIdle;
  std::string helo_;
  bool greeted_ = false;
  bool extended_ = false;
  int errors_ = 0;
  Transaction txn_;
  uint64_t txn_number_ = 0;
  std::string pending_rcpt_;
  std::map<std::string, std::string> xforward_;
  // Data phase.
  bool line_start_ = true;     // at the start of a data line after CRLF
  bool discarding_ = false;    // reading to the end of data without keeping it
  bool long_line_ = false;     // discarding the rest of an over-long command line
  Reply data_refusal_;
};

}  // namespace sagator::smtpd

#endif  // SAGATOR_SERVICES_SMTPD_SMTP_SESSION_H_
