// Edits the header of a raw RFC 5322 message the way SAGATOR's gateways deliver it:
// the verdict's HeaderEdits (X-Sagator-ID, X-Sagator-Scanner, add_header, ...) are
// applied to the message text before it goes on.
//
//   std::string out = sagator::ApplyHeaderEdits(message, verdict.header_edits());
//
// The header is everything up to the first empty line (or the whole message when it
// has none). Fields are matched by name without regard to case and include their
// folded continuation lines. New fields go to the top of the header, where SAGATOR
// puts its own. The message keeps its line ending style: CRLF when its first line
// ends in CRLF, else LF. The body is copied unchanged.
//
// Thread-safe: the functions keep no state.
#ifndef SAGATOR_COMMON_MAIL_HEADERS_H_
#define SAGATOR_COMMON_MAIL_HEADERS_H_

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/repeated_field.h"
#include "sagator/common/v1/common.pb.h"

namespace sagator {

// Where the header of a message ends.
struct HeaderBounds {
  // Bytes of the header fields, including the line end of the last field.
  size_t header_size = 0;
  // Offset of the body: after the empty separator line, or message.size() when the
  // message has no separator.
  size_t body_offset = 0;
  // True when an empty line separates header and body.
  bool has_separator = false;
};

// Finds the end of the header: the first empty line ("\n" or "\r\n" at the start of
// a line). A message that starts with an empty line has an empty header.
HeaderBounds FindHeaderBounds(absl::string_view message);

// "\r\n" when the message's first line ends in CRLF, else "\n" (also for a message
// without any line end).
absl::string_view DetectLineEnding(absl::string_view message);

// True when `name` can be a header field name: 1 to 200 printable ASCII characters
// other than ':' and space (RFC 5322 ftext).
bool IsValidHeaderName(absl::string_view name);

// Renders one field, "Name: value" plus `eol`, folded before whitespace so that lines
// stay within 78 characters where the value allows it. Control characters in the
// value (CR, LF, NUL, ...) become spaces, so a value can never start a new field.
std::string FormatHeaderField(absl::string_view name, absl::string_view value,
                              absl::string_view eol);

// Applies `edits` in order and returns the new message:
//  - ADD inserts a field at the top of the header; several ADDs keep their order
//    (the first edit ends up first);
//  - REPLACE rewrites every field of that name in place (with the edit's spelling of
//    the name and the new value), or adds one like ADD when there is none;
//  - REMOVE deletes every field of that name.
// Edits of kind KIND_UNSPECIFIED or with an invalid name are skipped.
std::string ApplyHeaderEdits(absl::string_view message,
                             const std::vector<common::v1::HeaderEdit>& edits);
std::string ApplyHeaderEdits(
    absl::string_view message,
    const google::protobuf::RepeatedPtrField<common::v1::HeaderEdit>& edits);

// The unfolded value of the first field named `name` (case-insensitive), without the
// leading whitespace and line ends; false when the header has no such field.
bool FindHeaderValue(absl::string_view message, absl::string_view name, std::string* value);

// Replaces %(NAME)s with vars[NAME] (SAGATOR's templates); unknown names stay as
// they are.
std::string ExpandVariables(absl::string_view tmpl,
                            const std::map<std::string, std::string>& vars);

// `value` on one line: each line break, with the indent that follows it, becomes
// one space (a folded header value unfolded; no CR or LF can start a new field).
std::string UnfoldLine(absl::string_view value);

// `t` as an RFC 5322 Date value, in UTC.
std::string Rfc2822Date(absl::Time t);

// `text` with CRLF line ends throughout, as SMTP wants them.
std::string CrlfLines(absl::string_view text);

}  // namespace sagator

#endif  // SAGATOR_COMMON_MAIL_HEADERS_H_
