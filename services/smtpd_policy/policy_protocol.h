// The Postfix SMTPD policy delegation protocol (check_policy_service), without
// sockets: a parser for the attribute blocks Postfix sends, the mapping of one block
// to a scanner-svc PolicyRequest, and the mapping of scanner-svc's answer (or its
// failure) to the one `action=...` reply. The server feeds the parser whatever bytes
// arrive; tests and fuzzers feed it bytes directly.
//
// Postfix to server, any number of times on one connection:
//   request=smtpd_access_policy\n
//   protocol_state=RCPT\n
//   name=value\n ...             attribute order is irrelevant
//   \n                           an empty line ends the block
// Server to Postfix, once per block: "action=WHAT [text]\n\n" (FormatReply).
//
//   PolicyParser parser;
//   absl::string_view in = bytes_just_read;
//   for (;;) {
//     PolicyEvent ev = parser.Next(&in);
//     if (ev.type == PolicyEventType::kNeedMore) break;   // read more bytes
//     if (ev.type == PolicyEventType::kError) ...;        // log, close, no answer
//     scanner::v1::PolicyRequest req = ToPolicyRequest(ev.attributes, chain);
//     ...
//   }
//
// Not thread-safe: one parser per connection. The free functions are thread-safe.
#ifndef SAGATOR_SERVICES_SMTPD_POLICY_POLICY_PROTOCOL_H_
#define SAGATOR_SERVICES_SMTPD_POLICY_POLICY_PROTOCOL_H_

#include <cstddef>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sagator/scanner/v1/scanner.pb.h"

namespace sagator::smtpd_policy {

// The only request type Postfix's smtpd sends (and the only one served).
inline constexpr absl::string_view kAccessPolicyRequest = "smtpd_access_policy";
// The gateway name in PolicyRequest.gateway and in logs.
inline constexpr absl::string_view kGatewayName = "smtpd_policy";
// Longest text after the action word in a reply; longer text is cut (Postfix turns it
// into one SMTP reply line, which RFC 5321 limits to 512 bytes with the code).
inline constexpr size_t kMaxReplyText = 400;

struct PolicyLimits {
  // Longest attribute line, not counting its line end. Postfix's own lines are a
  // name plus a value of at most a few hundred bytes (an address, a certificate
  // subject); the longest real ones stay well below 8 KiB.
  size_t max_line = 8 * 1024;
  // Most attribute lines in one block (Postfix 3.7 sends about 30).
  size_t max_attributes = 100;
  // Most bytes in one block, line ends included.
  size_t max_block = 64 * 1024;
};

// One request block by attribute name. A name given twice keeps the last value.
// (A hash map: a std::map's node per attribute cost 5% of smtpd_policy's CPU.)
using PolicyAttributes = absl::flat_hash_map<std::string, std::string>;

enum class PolicyEventType {
  // Every input byte was consumed without completing a block: read more.
  kNeedMore,
  // A complete, valid request block: attributes holds it.
  kRequest,
  // Bad input: error = the reason, one line of plain text. The parser stays failed.
  kError,
};

struct PolicyEvent {
  PolicyEventType type = PolicyEventType::kNeedMore;
  PolicyAttributes attributes;
  std::string error;
};

class PolicyParser {
 public:
  explicit PolicyParser(PolicyLimits limits = {});

  // Consumes bytes from the front of *input up to and including the end of the next
  // block and returns it; *input keeps the unconsumed rest (further blocks the
  // client sent at once). Lines and blocks may be split anywhere across calls.
  // A block is refused (kError) when a line has no '=', an empty name or a NUL
  // byte, when a limit is passed, or when its `request` attribute is missing or
  // not smtpd_access_policy.
  PolicyEvent Next(absl::string_view* input);

  // True when no part of a block is buffered (between requests).
  bool idle() const { return line_.empty() && lines_ == 0 && !failed_; }
  bool failed() const { return failed_; }
  // Blocks returned as kRequest so far.
  size_t requests() const { return requests_; }

 private:
  PolicyEvent Fail(std::string reason);
  // Handles one complete line (without its LF). Returns false and sets *error on bad
  // input; sets *block_end on the empty line.
  bool TakeLine(absl::string_view line, bool* block_end, std::string* error);

  const PolicyLimits limits_;
  // The current line so far (only when a line was split across calls).
  std::string line_;
  PolicyAttributes attributes_;
  size_t lines_ = 0;        // attribute lines in the current block
  size_t block_bytes_ = 0;  // bytes of the current block, line ends included
  size_t requests_ = 0;
  bool failed_ = false;
};

// The scanner-svc question for one request block: chain, protocol_state, the
// envelope (sender, recipient, client address/name/helo/protocol, queue_id),
// recipient, gateway "smtpd_policy", and every attribute received by name (Postfix's
// names, unknown ones included) so policy scanners can use any of them; without
// `with_attributes` that map stays empty (a chain that reads only the envelope).
// client_name "unknown" (Postfix's value for a client without reverse DNS) becomes
// an empty envelope client name.
scanner::v1::PolicyRequest ToPolicyRequest(const PolicyAttributes& attributes,
                                           absl::string_view chain,
                                           bool with_attributes = true);

// What to tell Postfix, before formatting: the action word and its text.
struct PolicyAction {
  // DUNNO, OK, PREPEND, DEFER_IF_PERMIT, REJECT or DISCARD.
  std::string action;
  // The text after the action word (for PREPEND the header line); may be empty.
  std::string text;
};

// The one place scanner-svc's answer becomes a Postfix action:
//   PASS                  DUNNO (later restrictions still decide), or
//                         PREPEND "Name: value" for the first ADD header edit
//                         (not at END-OF-MESSAGE, where Postfix cannot prepend)
//   FORCED_PASS           OK
//   TEMPFAIL, UNSPECIFIED DEFER_IF_PERMIT <reply text> (stronger rejections still win)
//   REJECT                REJECT <reply text>
//   DROP                  DISCARD <reply text>
// A missing reply text gets a default one. `protocol_state` is the request's.
PolicyAction ActionForResponse(const scanner::v1::PolicyResponse& response,
                               absl::string_view protocol_state);

// The action when scanner-svc failed (unreachable, past policy_timeout, ...):
// DEFER_IF_PERMIT "4.3.0 Policy service unavailable (<short reason>), try again
// later", or DUNNO with fail_open.
PolicyAction ActionForFailure(const absl::Status& status, bool fail_open);

// "action=WHAT text\n\n": the text is sanitized (CR, LF, NUL and other control
// bytes become spaces, surrounding blanks are trimmed) and cut at kMaxReplyText.
std::string FormatReply(const PolicyAction& action);

// `text` as one safe line: control bytes (CR, LF, NUL, ...) become spaces, runs of
// blanks are kept, leading and trailing blanks trimmed, at most `max` bytes.
std::string SanitizeReplyText(absl::string_view text, size_t max = kMaxReplyText);

}  // namespace sagator::smtpd_policy

#endif  // SAGATOR_SERVICES_SMTPD_POLICY_POLICY_PROTOCOL_H_
