#include "services/milter/milter_decision.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/mail_headers.h"

namespace sagator::milter {
namespace {

using Action = MilterReply::Action;
using common::v1::HeaderEdit;

// Past this many fields on either side the diff is not worth its quadratic table:
// every received field is deleted and every wanted one inserted.
constexpr size_t kMaxDiffFields = 2000;

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// "4.7.1 text" → {"4.7.1", "text"} when `reply` starts with an enhanced status code
// of class `cls` ('4' or '5'); else nothing.
bool SplitEnhancedCode(absl::string_view reply, char cls, std::string* xcode, std::string* text) {
  if (reply.size() < 6 || reply[0] != cls || reply[1] != '.') return false;
  size_t pos = 2;
  for (int part = 0; part < 2; ++part) {
    size_t digits = 0;
    while (pos < reply.size() && absl::ascii_isdigit(reply[pos]) && digits < 3) {
      ++pos;
      ++digits;
    }
    if (digits == 0) return false;
    if (part == 0) {
      if (pos >= reply.size() || reply[pos] != '.') return false;
      ++pos;
    }
  }
  if (pos >= reply.size() || reply[pos] != ' ') return false;
  *xcode = std::string(reply.substr(0, pos));
  *text = std::string(absl::StripAsciiWhitespace(reply.substr(pos + 1)));
  return !text->empty();
}

MilterReply Reply(Action action, absl::string_view rcode, absl::string_view xcode,
                  absl::string_view text) {
  MilterReply r;
  r.action = action;
  r.rcode = std::string(rcode);
  r.xcode = std::string(xcode);
  r.text = SanitizeReplyText(text);
  return r;
}

std::vector<HeaderField> WantedHeader(absl::string_view received_header,
                                      const std::vector<HeaderEdit>& edits) {
  std::string edited = ApplyHeaderEdits(absl::StrCat(received_header, "\r\n"), edits);
  return ParseHeaderFields(
      absl::string_view(edited).substr(0, FindHeaderBounds(edited).header_size));
}

// LF or CRLF line ends → CRLF, as the milter protocol carries a body.
std::string ToCrlf(absl::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n' && (i == 0 || text[i - 1] != '\r')) out.push_back('\r');
    out.push_back(c);
  }
  return out;
}

}  // namespace

absl::string_view ActionName(Action action) {
  switch (action) {
    case Action::kContinue:
      return "continue";
    case Action::kAccept:
      return "accept";
    case Action::kReject:
      return "reject";
    case Action::kDiscard:
      return "discard";
    case Action::kTempfail:
      return "tempfail";
  }
  return "?";
}

std::vector<HeaderField> ParseHeaderFields(absl::string_view header) {
  std::vector<HeaderField> fields;
  bool in_field = false;
  size_t pos = 0;
  while (pos < header.size()) {
    size_t nl = header.find('\n', pos);
    size_t end = nl == absl::string_view::npos ? header.size() : nl + 1;
    absl::string_view line = header.substr(pos, end - pos);
    pos = end;
    absl::ConsumeSuffix(&line, "\n");
    absl::ConsumeSuffix(&line, "\r");
    if (!line.empty() && IsWsp(line.front())) {
      if (in_field) {
        HeaderField& f = fields.back();
        if (f.value.empty()) {
          f.value = std::string(absl::StripLeadingAsciiWhitespace(line));
        } else {
          absl::StrAppend(&f.value, "\n", line);
        }
      }
      continue;
    }
    size_t colon = line.find(':');
    absl::string_view name =
        colon == absl::string_view::npos ? absl::string_view() : line.substr(0, colon);
    while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
    if (!IsValidHeaderName(name)) {
      in_field = false;
      continue;
    }
    HeaderField f;
    f.name = std::string(name);
    f.value = std::string(absl::StripLeadingAsciiWhitespace(line.substr(colon + 1)));
    fields.push_back(std::move(f));
    in_field = true;
  }
  return fields;
}

std::vector<HeaderOp> PlanHeaderOps(const std::vector<HeaderField>& received,
                                    const std::vector<HeaderField>& wanted) {
  const size_t n = received.size();
  const size_t m = wanted.size();
  auto key_equal = [&](size_t i, size_t j) {
    return received[i].value == wanted[j].value &&
           absl::EqualsIgnoreCase(received[i].name, wanted[j].name);
  };

  // Longest common subsequence of (name, value) pairs: those fields stay as they are.
  std::vector<int> match_of_wanted(m, -1);
  if (n <= kMaxDiffFields && m <= kMaxDiffFields) {
    std::vector<std::vector<uint16_t>> lcs(n + 1, std::vector<uint16_t>(m + 1, 0));
    for (size_t i = n; i-- > 0;) {
      for (size_t j = m; j-- > 0;) {
        lcs[i][j] =
            key_equal(i, j) ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
      }
    }
    for (size_t i = 0, j = 0; i < n && j < m;) {
      if (key_equal(i, j)) {
        match_of_wanted[j] = static_cast<int>(i);
        ++i;
        ++j;
      } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
        ++i;
      } else {
        ++j;
      }
    }
  }

  // The per-name index of every received field.
  std::vector<int> index_of(n, 0);
  absl::flat_hash_map<std::string, int> seen;
  for (size_t i = 0; i < n; ++i) index_of[i] = ++seen[absl::AsciiStrToLower(received[i].name)];

  // Walk the gaps between kept fields. In each gap a wanted field takes over an
  // unmatched received field of the same name (a change in place); the rest of the
  // received fields go, the rest of the wanted ones are new.
  std::vector<bool> received_used(n, false);
  for (size_t j = 0; j < m; ++j) {
    if (match_of_wanted[j] >= 0) received_used[match_of_wanted[j]] = true;
  }
  std::vector<HeaderOp> changes, deletes, inserts, appends;
  // New fields by their position in `wanted`, and the last position that holds a
  // received field (kept or changed).
  std::vector<std::pair<size_t, HeaderOp>> fresh;
  int last_survivor = -1;
  for (size_t w = 0; w < m; ++w) {
    if (match_of_wanted[w] >= 0) last_survivor = static_cast<int>(w);
  }
  size_t gap_received_begin = 0;
  size_t j = 0;
  while (j <= m) {
    // The gap: wanted [j, j_end) up to the next kept field (or the end).
    size_t j_end = j;
    while (j_end < m && match_of_wanted[j_end] < 0) ++j_end;
    size_t gap_received_end = j_end < m ? static_cast<size_t>(match_of_wanted[j_end]) : n;
    // From the gap's end: ApplyHeaderEdits puts new fields at the top, so a changed
    // field is the last of its name in the gap.
    for (size_t w = j_end; w-- > j;) {
      bool paired = false;
      for (size_t i = gap_received_end; i-- > gap_received_begin;) {
        if (received_used[i] || !absl::EqualsIgnoreCase(received[i].name, wanted[w].name)) {
          continue;
        }
        received_used[i] = true;
        changes.push_back(
            {HeaderOp::Kind::kChange, received[i].name, index_of[i], wanted[w].value});
        last_survivor = std::max(last_survivor, static_cast<int>(w));
        paired = true;
        break;
      }
      if (!paired) {
        fresh.push_back({w, {HeaderOp::Kind::kInsertTop, wanted[w].name, 0, wanted[w].value}});
      }
    }
    if (j_end == m) break;
    gap_received_begin = gap_received_end + 1;
    j = j_end + 1;
  }
  // New fields go to the top unless they follow every received field that stays;
  // the milter API has no portable way to insert in the middle (Postfix counts its
  // own Received: field in insert positions but not in change indexes).
  std::sort(fresh.begin(), fresh.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [w, op] : fresh) {
    if (last_survivor >= 0 && static_cast<int>(w) > last_survivor) {
      op.kind = HeaderOp::Kind::kAppend;
      appends.push_back(std::move(op));
    } else {
      inserts.push_back(std::move(op));
    }
  }
  for (size_t i = n; i-- > 0;) {
    if (!received_used[i]) {
      deletes.push_back({HeaderOp::Kind::kDelete, received[i].name, index_of[i], ""});
    }
  }

  std::vector<HeaderOp> ops;
  ops.reserve(changes.size() + deletes.size() + inserts.size() + appends.size());
  ops.insert(ops.end(), changes.begin(), changes.end());
  ops.insert(ops.end(), deletes.begin(), deletes.end());
  // Each insertion goes to the top: the last one first.
  ops.insert(ops.end(), inserts.rbegin(), inserts.rend());
  ops.insert(ops.end(), appends.begin(), appends.end());
  return ops;
}

std::string SanitizeReplyText(absl::string_view text) {
  std::string out;
  out.reserve(std::min(text.size(), kMaxReplyText));
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) c = ' ';
    size_t need = c == '%' ? 2 : 1;
    if (out.size() + need > kMaxReplyText) break;
    out.push_back(c);
    if (c == '%') out.push_back('%');
  }
  return std::string(absl::StripAsciiWhitespace(out));
}

MilterReply ReplyForDecision(const FilterDecision& decision, absl::string_view received_header) {
  std::string xcode, text;
  switch (decision.code) {
    case 250:
    case 251:
      break;
    case 550:
      if (!SplitEnhancedCode(decision.reply_text, '5', &xcode, &text)) {
        xcode = "5.7.1";
        text = absl::StrCat("Rejected: ",
                            decision.detection.empty() ? "detected" : decision.detection);
      }
      return Reply(Action::kReject, "550", xcode, text);
    case 551:
      return Reply(Action::kDiscard, "", "", "");
    default:
      if (decision.scan_status.ok() && SplitEnhancedCode(decision.text, '4', &xcode, &text)) {
        return Reply(Action::kTempfail, "451", xcode, text);
      }
      return Reply(
          Action::kTempfail, "451", "4.3.0",
          absl::StrCat("Temporary failure while scanning (", decision.text, "), try again later"));
  }

  MilterReply r;
  r.action = Action::kAccept;
  if (decision.message_rewritten) {
    const std::string& msg = decision.rewritten_message;
    HeaderBounds bounds = FindHeaderBounds(msg);
    std::string edited = ApplyHeaderEdits(absl::string_view(msg).substr(0, bounds.header_size),
                                          decision.header_edits);
    if (!edited.empty() && edited.back() != '\n') edited += "\r\n";
    r.header_ops = PlanHeaderOps(ParseHeaderFields(received_header), ParseHeaderFields(edited));
    r.replace_body = true;
    r.body = ToCrlf(absl::string_view(msg).substr(bounds.body_offset));
  } else {
    r.header_ops = PlanHeaderOps(ParseHeaderFields(received_header),
                                 WantedHeader(received_header, decision.header_edits));
  }
  return r;
}

MilterReply AcceptUnscanned(absl::string_view received_header, absl::string_view reason,
                            absl::string_view sagator_id) {
  std::vector<HeaderEdit> edits(2);
  edits[0].set_kind(HeaderEdit::REMOVE);
  edits[0].set_name(kStatusHeader);
  edits[1].set_kind(HeaderEdit::ADD);
  edits[1].set_name(kNotScannedHeader);
  edits[1].set_value(std::string(reason));
  if (!sagator_id.empty()) {
    HeaderEdit& id = edits.emplace_back();
    id.set_kind(HeaderEdit::ADD);
    id.set_name("X-Sagator-ID");
    id.set_value(std::string(sagator_id));
  }
  MilterReply r;
  r.action = Action::kAccept;
  r.header_ops =
      PlanHeaderOps(ParseHeaderFields(received_header), WantedHeader(received_header, edits));
  return r;
}

MilterReply ReplyForTooLarge(common::v1::Outcome not_scanned_outcome,
                             absl::string_view received_header, int64_t size, int64_t limit,
                             absl::string_view sagator_id) {
  std::string why =
      absl::StrFormat("Message too large to scan: %d bytes, the limit is %d", size, limit);
  switch (not_scanned_outcome) {
    case common::v1::PASS:
    case common::v1::FORCED_PASS:
      return AcceptUnscanned(received_header, absl::StrFormat("too large (over %d bytes)", limit),
                             sagator_id);
    case common::v1::REJECT:
      return Reply(Action::kReject, "552", "5.3.4", why);
    case common::v1::DROP:
      return Reply(Action::kDiscard, "", "", "");
    default:
      return Reply(Action::kTempfail, "451", "4.3.4", why);
  }
}

MilterReply ReplyForPolicy(const absl::StatusOr<scanner::v1::PolicyResponse>& response,
                           bool fail_open) {
  if (!response.ok()) {
    if (fail_open) return Reply(Action::kContinue, "", "", "");
    return Reply(Action::kTempfail, "451", "4.7.1",
                 absl::StrCat("Recipient check unavailable (", ShortScanFailure(response.status()),
                              "), try again later"));
  }
  std::string xcode, text;
  switch (response->outcome()) {
    case common::v1::PASS:
    case common::v1::FORCED_PASS:
      return Reply(Action::kContinue, "", "", "");
    case common::v1::REJECT:
    case common::v1::DROP:
      if (SplitEnhancedCode(response->reply_text(), '5', &xcode, &text)) {
        return Reply(Action::kReject, "550", xcode, text);
      }
      return Reply(
          Action::kReject, "550", "5.7.1",
          response->reply_text().empty()
              ? absl::StrCat("Recipient rejected: ",
                             response->detection().empty() ? "policy" : response->detection())
              : response->reply_text());
    default:
      if (SplitEnhancedCode(response->reply_text(), '4', &xcode, &text)) {
        return Reply(Action::kTempfail, "451", xcode, text);
      }
      return Reply(Action::kTempfail, "451", "4.7.1",
                   response->reply_text().empty() ? "Recipient deferred, try again later"
                                                  : response->reply_text());
  }
}

}  // namespace sagator::milter
