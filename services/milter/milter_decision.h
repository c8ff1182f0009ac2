// The milter gateway's verdict mapping: what the filter answers the MTA for each
// outcome, and which header operations turn the MTA's copy of the message into the
// one SAGATOR wants delivered. No libmilter types: milter_service.cc translates a
// MilterReply into smfi_* calls.
//
//   SAGATOR code (outcome)     milter reply
//   250 PASS, 251 FORCED_PASS  accept, after the header operations (and the new body
//                              when a scanner rewrote the message)
//   550 REJECT                 reject "550 5.7.1 Rejected: <detection>" (or
//                              scanner-svc's 5.x.x reply text)
//   551 DROP                   discard
//   451 TEMPFAIL, failed scan  tempfail "451 4.3.0 ..." (fail_open: accept unscanned)
//
//   MilterReply r = ReplyForDecision(decision, received_header);
//
// The header operations come from a diff between the header the MTA sent and the
// header after FilterDecision::header_edits (common/mail_headers.h semantics), in the
// order the milter protocol needs: changes in place, deletions from the last field of
// a name to the first (so the per-name indexes of the rest stay valid whether the MTA
// counts deleted fields or not), insertions at the top, then appends.
//
// Thread-safe: the functions keep no state.
#ifndef SAGATOR_SERVICES_MILTER_MILTER_DECISION_H_
#define SAGATOR_SERVICES_MILTER_MILTER_DECISION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/message_filter.h"
#include "sagator/common/v1/common.pb.h"
#include "sagator/scanner/v1/scanner.pb.h"

namespace sagator::milter {

// The header field that marks mail accepted without a scan (too large, or fail-open).
// Not X-Sagator-Status: procmail recipes file mail with that field as detected.
inline constexpr char kNotScannedHeader[] = "X-Sagator-Not-Scanned";

// One header field as the milter protocol carries it: the name, and the value
// without the leading whitespace and final line end; a folded value keeps its
// continuation lines joined by "\n" (no CR), as smfi_addheader wants them.
struct HeaderField {
  std::string name;
  std::string value;
  bool operator==(const HeaderField& o) const { return name == o.name && value == o.value; }
};

// One header modification request.
struct HeaderOp {
  enum class Kind {
    kChange,     // smfi_chgheader(name, index, value)
    kDelete,     // smfi_chgheader(name, index, NULL)
    kInsertTop,  // smfi_insheader(0, name, value)
    kAppend,     // smfi_addheader(name, value)
  };
  Kind kind = Kind::kChange;
  std::string name;
  // 1-based among the fields of this name (case-insensitive) in the header the MTA
  // sent; kChange and kDelete only.
  int index = 0;
  std::string value;
  bool operator==(const HeaderOp& o) const {
    return kind == o.kind && name == o.name && index == o.index && value == o.value;
  }
};

// What the filter answers one callback.
struct MilterReply {
  enum class Action { kContinue, kAccept, kReject, kDiscard, kTempfail };
  Action action = Action::kContinue;
  // smfi_setreply's arguments ("550", "5.7.1", text); empty rcode: the MTA's default.
  // The text is printable ASCII, at most kMaxReplyText bytes, with '%' doubled.
  std::string rcode;
  std::string xcode;
  std::string text;
  // Only with kAccept at the end of the message.
  std::vector<HeaderOp> header_ops;
  bool replace_body = false;
  // The new body, CRLF line ends.
  std::string body;
};

inline constexpr size_t kMaxReplyText = 400;

// Name of an action for logs ("accept", "reject", ...).
absl::string_view ActionName(MilterReply::Action action);

// Splits a header text (fields up to, not including, the empty line; LF or CRLF)
// into fields. Lines that are neither a field nor a continuation are skipped.
std::vector<HeaderField> ParseHeaderFields(absl::string_view header);

// The operations that turn `received` into `wanted` (see the file comment).
std::vector<HeaderOp> PlanHeaderOps(const std::vector<HeaderField>& received,
                                    const std::vector<HeaderField>& wanted);

// The reply text for smfi_setreply: control characters become spaces, '%' is
// doubled, and it is cut to kMaxReplyText bytes.
std::string SanitizeReplyText(absl::string_view text);

// The reply at the end of the message for a scan's decision. `received_header` is
// the header the MTA sent, as "Name: value\r\n" lines (no empty line after them).
MilterReply ReplyForDecision(const FilterDecision& decision, absl::string_view received_header);

// Accept without a scan: the forged X-Sagator-Status fields go, and
// "X-Sagator-Not-Scanned: <reason>" is added at the top, with "X-Sagator-ID" when
// scanner-svc logged the message under `sagator_id`.
MilterReply AcceptUnscanned(absl::string_view received_header, absl::string_view reason,
                            absl::string_view sagator_id = "");

// The reply for mail over max_message_size, by global.not_scanned_outcome:
// PASS/FORCED_PASS accept unscanned ("too large"; X-Sagator-ID when `sagator_id` is
// set), TEMPFAIL tempfail "451 4.3.4", REJECT reject "552 5.3.4", DROP discard.
MilterReply ReplyForTooLarge(common::v1::Outcome not_scanned_outcome,
                             absl::string_view received_header, int64_t size, int64_t limit,
                             absl::string_view sagator_id = "");

// The reply at RCPT for a recipient_policy answer: PASS/FORCED_PASS continue,
// REJECT/DROP reject "550 5.7.1", TEMPFAIL (and no outcome) tempfail "451 4.7.1".
// A failed call tempfails unless `fail_open` (then continue).
MilterReply ReplyForPolicy(const absl::StatusOr<scanner::v1::PolicyResponse>& response,
                           bool fail_open);

}  // namespace sagator::milter

#endif  // SAGATOR_SERVICES_MILTER_MILTER_DECISION_H_
