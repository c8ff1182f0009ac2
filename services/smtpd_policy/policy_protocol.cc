#include "services/smtpd_policy/policy_protocol.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sagator::smtpd_policy {

namespace {

// Quoted, escaped and cut: client bytes in an error line.
std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 64;
  bool cut = s.size() > kMax;
  if (cut) s = s.substr(0, kMax);
  return absl::StrCat("'", absl::CHexEscape(s), cut ? "...'" : "'");
}

const std::string& Get(const PolicyAttributes& attributes, absl::string_view name) {
  static const std::string* const kEmpty = new std::string();
  auto it = attributes.find(name);
  return it == attributes.end() ? *kEmpty : it->second;
}

// RFC 5322 field name: printable ASCII without ':'.
bool IsHeaderName(absl::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  for (char ch : name) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c < 33 || c > 126 || c == ':') return false;
  }
  return true;
}

std::string ShortFailure(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
      return "scanner-svc unavailable";
    case absl::StatusCode::kDeadlineExceeded:
      return "timeout";
    case absl::StatusCode::kCancelled:
      return "cancelled";
    case absl::StatusCode::kResourceExhausted:
      return "scanner-svc busy";
    default:
      return absl::StrCat("error ", absl::StatusCodeToString(status.code()));
  }
}

std::string WithDetection(absl::string_view text, absl::string_view detection) {
  if (detection.empty()) return std::string(text);
  return absl::StrCat(text, ": ", detection);
}

}  // namespace

PolicyParser::PolicyParser(PolicyLimits limits) : limits_(limits) { attributes_.reserve(32); }

PolicyEvent PolicyParser::Fail(std::string reason) {
  failed_ = true;
  line_.clear();
  attributes_.clear();
  PolicyEvent ev;
  ev.type = PolicyEventType::kError;
  ev.error = std::move(reason);
  return ev;
}

bool PolicyParser::TakeLine(absl::string_view line, bool* block_end, std::string* error) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > limits_.max_line) {
    *error = absl::StrCat("attribute line longer than ", limits_.max_line, " bytes");
    return false;
  }
  if (line.empty()) {
    *block_end = true;
    return true;
  }
  if (++lines_ > limits_.max_attributes) {
    *error = absl::StrCat("more than ", limits_.max_attributes, " attributes in one request");
    return false;
  }
  if (line.find('\0') != absl::string_view::npos) {
    *error = absl::StrCat("NUL byte in attribute line ", Quote(line));
    return false;
  }
  size_t eq = line.find('=');
  if (eq == absl::string_view::npos) {
    *error = absl::StrCat("attribute line without '=': ", Quote(line));
    return false;
  }
  if (eq == 0) {
    *error = absl::StrCat("attribute line without a name: ", Quote(line));
    return false;
  }
  // A repeated name keeps the last value (the protocol allows first or last).
  attributes_.insert_or_assign(line.substr(0, eq), std::string(line.substr(eq + 1)));
  return true;
}

PolicyEvent PolicyParser::Next(absl::string_view* input) {
  if (failed_) return Fail("the connection already had a protocol error");
  while (!input->empty()) {
    size_t nl = input->find('\n');
    if (nl == absl::string_view::npos) {
      // Part of a line: keep it, within the limits (one byte more for a CR).
      if (line_.size() + input->size() > limits_.max_line + 1) {
        return Fail(absl::StrCat("attribute line longer than ", limits_.max_line, " bytes"));
      }
      if (block_bytes_ + line_.size() + input->size() > limits_.max_block) {
        return Fail(absl::StrCat("request block larger than ", limits_.max_block, " bytes"));
      }
      line_.append(input->data(), input->size());
      input->remove_prefix(input->size());
      break;
    }
    absl::string_view piece = input->substr(0, nl);
    input->remove_prefix(nl + 1);
    absl::string_view line = piece;
    if (!line_.empty()) {
      if (line_.size() + piece.size() > limits_.max_line + 1) {
        return Fail(absl::StrCat("attribute line longer than ", limits_.max_line, " bytes"));
      }
      line_.append(piece.data(), piece.size());
      line = line_;
    }
    block_bytes_ += line.size() + 1;
    if (block_bytes_ > limits_.max_block) {
      return Fail(absl::StrCat("request block larger than ", limits_.max_block, " bytes"));
    }
    bool block_end = false;
    std::string error;
    if (!TakeLine(line, &block_end, &error)) return Fail(std::move(error));
    line_.clear();
    if (!block_end) continue;

    auto request = attributes_.find("request");
    if (request == attributes_.end()) {
      return Fail(lines_ == 0 ? std::string("empty request block")
                              : std::string("request attribute missing"));
    }
    if (request->second != kAccessPolicyRequest) {
      return Fail(absl::StrCat("unsupported request type ", Quote(request->second)));
    }
    PolicyEvent ev;
    ev.type = PolicyEventType::kRequest;
    ev.attributes = std::move(attributes_);
    attributes_ = PolicyAttributes();
    attributes_.reserve(32);  // Postfix 3.7 sends about 30
    lines_ = 0;
    block_bytes_ = 0;
    ++requests_;
    return ev;
  }
  PolicyEvent more;
  more.type = PolicyEventType::kNeedMore;
  return more;
}

scanner::v1::PolicyRequest ToPolicyRequest(const PolicyAttributes& attributes,
                                           absl::string_view chain, bool with_attributes) {
  scanner::v1::PolicyRequest req;
  req.set_chain(std::string(chain));
  req.set_gateway(std::string(kGatewayName));
  req.set_protocol_state(Get(attributes, "protocol_state"));
  common::v1::Envelope* env = req.mutable_envelope();
  env->set_sender(Get(attributes, "sender"));
  const std::string& recipient = Get(attributes, "recipient");
  if (!recipient.empty()) {
    req.set_recipient(recipient);
    env->add_recipients(recipient);
  }
  env->set_queue_id(Get(attributes, "queue_id"));
  common::v1::ClientInfo* client = env->mutable_client();
  client->set_address(Get(attributes, "client_address"));
  const std::string& name = Get(attributes, "client_name");
  // Postfix says "unknown" when the client has no (verified) reverse DNS name.
  client->set_name(name == "unknown" ? std::string() : name);
  client->set_helo(Get(attributes, "helo_name"));
  client->set_protocol(Get(attributes, "protocol_name"));
  if (with_attributes) req.mutable_attributes()->insert(attributes.begin(), attributes.end());
  return req;
}

PolicyAction ActionForResponse(const scanner::v1::PolicyResponse& response,
                               absl::string_view protocol_state) {
  const std::string& text = response.reply_text();
  switch (response.outcome()) {
    case common::v1::PASS:
      // Postfix cannot prepend a header once the message content went by.
      if (!absl::EqualsIgnoreCase(protocol_state, "END-OF-MESSAGE")) {
        for (const common::v1::HeaderEdit& e : response.header_edits()) {
          if (e.kind() == common::v1::HeaderEdit::ADD && IsHeaderName(e.name())) {
            return {"PREPEND", absl::StrCat(e.name(), ": ", e.value())};
          }
        }
      }
      return {"DUNNO", ""};
    case common::v1::FORCED_PASS:
      return {"OK", ""};
    case common::v1::REJECT:
      return {"REJECT", text.empty()
                            ? WithDetection("5.7.1 Rejected by policy", response.detection())
                            : text};
    case common::v1::DROP:
      return {"DISCARD",
              text.empty() ? WithDetection("Discarded by policy", response.detection()) : text};
    case common::v1::TEMPFAIL:
      return {"DEFER_IF_PERMIT",
              text.empty() ? WithDetection("4.7.1 Try again later", response.detection()) : text};
    default:
      // OUTCOME_UNSPECIFIED (or a value this build does not know): TEMPFAIL.
      return {"DEFER_IF_PERMIT",
              text.empty() ? std::string("4.3.0 Policy service gave no answer, try again later")
                           : text};
  }
}

PolicyAction ActionForFailure(const absl::Status& status, bool fail_open) {
  if (fail_open) return {"DUNNO", ""};
  return {"DEFER_IF_PERMIT", absl::StrCat("4.3.0 Policy service unavailable (",
                                          ShortFailure(status), "), try again later")};
}

std::string SanitizeReplyText(absl::string_view text, size_t max) {
  std::string out(text);
  for (char& ch : out) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) ch = ' ';
  }
  absl::StripAsciiWhitespace(&out);
  if (out.size() > max) {
    size_t cut = max;
    // Do not split a UTF-8 sequence: back off over continuation bytes.
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
    absl::StripTrailingAsciiWhitespace(&out);
  }
  return out;
}

std::string FormatReply(const PolicyAction& action) {
  std::string text = SanitizeReplyText(action.text);
  if (text.empty()) return absl::StrCat("action=", action.action, "\n\n");
  return absl::StrCat("action=", action.action, " ", text, "\n\n");
}

}  // namespace sagator::smtpd_policy
