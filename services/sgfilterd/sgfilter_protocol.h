// The sgfilter wire protocol, without sockets: a parser for what the client sends
// and the format of the result line the server answers with. The server feeds it
// whatever bytes arrive; tests and fuzzers feed it bytes directly.
//
// Client to server (one message per connection):
//   MAIL FROM: <sender>        exactly once, first; brackets optional, may be empty
//   RCPT TO: <recipient>       once or more (at most 1000)
//   DATA <length>              length = exact number of message bytes that follow
//   <length bytes>
// Lines end in LF or CRLF, keywords are case-insensitive, the space after the colon
// is optional, and a command line holds at most 1000 bytes before its line end.
//
// Server to client: one result line "XXX L.LL TEXT\n" (FormatResultLine), then, for
// every code but 451, the (possibly modified) message, then the server closes.
//
//   SgfilterParser parser({.max_message_size = 50 << 20});
//   absl::string_view in = bytes_just_read;
//   for (;;) {
//     SgfilterEvent ev = parser.Next(&in);
//     if (ev.type == SgfilterEventType::kNeedMore) break;   // read more bytes
//     ...
//   }
//
// Not thread-safe: one parser per connection.
#ifndef SAGATOR_SERVICES_SGFILTERD_SGFILTER_PROTOCOL_H_
#define SAGATOR_SERVICES_SGFILTERD_SGFILTER_PROTOCOL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sagator::sgfilterd {

// Longest command line, not counting its line end.
inline constexpr size_t kMaxCommandLine = 1000;
// Most RCPT TO lines in one transaction.
inline constexpr size_t kMaxRecipients = 1000;

struct SgfilterLimits {
  // Largest DATA length accepted (global.max_message_size).
  int64_t max_message_size = 52428800;
};

enum class SgfilterEventType {
  // Every input byte was consumed without completing an event: read more.
  kNeedMore,
  // MAIL FROM: value = the sender without brackets ("" for the null sender).
  kSender,
  // RCPT TO: value = one recipient without brackets.
  kRecipient,
  // DATA: length = the announced size; kData events follow (none when 0).
  kDataStart,
  // Some message bytes: data views the caller's input and is valid as long as it is.
  kData,
  // The last announced byte arrived. Any further byte is an error.
  kMessageEnd,
  // Bad input: value = the reason, one line of plain text. The parser stays failed.
  kError,
};

struct SgfilterEvent {
  SgfilterEventType type = SgfilterEventType::kNeedMore;
  std::string value;
  int64_t length = 0;
  absl::string_view data;
  // kError because the DATA length is over max_message_size (well-formed input, but
  // a message this gateway will not take): length holds the announced size.
  bool too_large = false;
};

class SgfilterParser {
 public:
  enum class State { kCommands, kData, kDone, kFailed };

  explicit SgfilterParser(SgfilterLimits limits);

  // Consumes bytes from the front of *input up to and including the next event and
  // returns it; *input is left holding the unconsumed rest. Command lines split
  // across calls are buffered (at most kMaxCommandLine + 2 bytes).
  SgfilterEvent Next(absl::string_view* input);

  State state() const { return state_; }
  // Message bytes still expected (in kData).
  int64_t remaining() const { return remaining_; }
  // Counts so far, for logs.
  bool has_sender() const { return has_sender_; }
  size_t recipients() const { return recipients_; }

 private:
  SgfilterEvent HandleLine(absl::string_view line);
  SgfilterEvent Fail(std::string reason);

  SgfilterLimits limits_;
  State state_ = State::kCommands;
  std::string partial_line_;
  bool has_sender_ = false;
  size_t recipients_ = 0;
  int64_t remaining_ = 0;
};

// A parsed result line.
struct ResultLine {
  int code = 0;
  double level = 0;
  std::string text;
};

// "250 0.00 OK\n": the code, the level with two decimals (non-finite levels are
// written as 0.00), and the text made printable and one line (control characters
// become spaces, at most 200 bytes); an empty text becomes "-".
std::string FormatResultLine(int code, double level, absl::string_view text);

// Parses a result line without its line end ("\r\n" or "\n" is tolerated too).
// InvalidArgument when it is not "DDD LEVEL[ TEXT]" with DDD in 200..599.
absl::StatusOr<ResultLine> ParseResultLine(absl::string_view line);

}  // namespace sagator::sgfilterd

#endif  // SAGATOR_SERVICES_SGFILTERD_SGFILTER_PROTOCOL_H_
