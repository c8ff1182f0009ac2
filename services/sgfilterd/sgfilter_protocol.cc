#include "services/sgfilterd/sgfilter_protocol.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sagator::sgfilterd {
namespace {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// Shows untrusted input in an error text: printable, short.
std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 40;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    unsigned char u = static_cast<unsigned char>(s[i]);
    out.push_back(u >= 32 && u < 127 ? s[i] : '?');
  }
  if (s.size() > kMax) out += "...";
  return absl::StrCat("'", out, "'");
}

// Matches "KEYWORD<wsp>+KEYWORD2:" case-insensitively at the start of line and
// returns the rest after the colon; false when the line does not start that way.
bool MatchCommand(absl::string_view line, absl::string_view word1, absl::string_view word2,
                  absl::string_view* rest) {
  if (!absl::StartsWithIgnoreCase(line, word1)) return false;
  line.remove_prefix(word1.size());
  if (line.empty() || !IsWsp(line.front())) return false;
  while (!line.empty() && IsWsp(line.front())) line.remove_prefix(1);
  if (!absl::StartsWithIgnoreCase(line, word2)) return false;
  line.remove_prefix(word2.size());
  *rest = line;
  return true;
}

// The one address of a MAIL FROM or RCPT TO line: "<a@b>", "a@b" or "<>".
absl::StatusOr<std::string> ParseAddress(absl::string_view arg) {
  arg = absl::StripAsciiWhitespace(arg);
  for (char c : arg) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 32 || u == 127) return absl::InvalidArgumentError("control character in address");
    if (IsWsp(c))
      return absl::InvalidArgumentError(absl::StrCat("more than one address in ", Quote(arg)));
  }
  if (!arg.empty() && arg.front() == '<') {
    if (arg.size() < 2 || arg.back() != '>') {
      return absl::InvalidArgumentError(absl::StrCat("unbalanced angle brackets in ", Quote(arg)));
    }
    arg = arg.substr(1, arg.size() - 2);
  }
  if (absl::StrContains(arg, '<') || absl::StrContains(arg, '>')) {
    return absl::InvalidArgumentError(absl::StrCat("bad address ", Quote(arg)));
  }
  return std::string(arg);
}

}  // namespace

SgfilterParser::SgfilterParser(SgfilterLimits limits) : limits_(limits) {}

SgfilterEvent SgfilterParser::Fail(std::string reason) {
  state_ = State::kFailed;
  partial_line_ = std::move(reason);  // kept to repeat it on later calls
  SgfilterEvent ev;
  ev.type = SgfilterEventType::kError;
  ev.value = partial_line_;
  return ev;
}

SgfilterEvent SgfilterParser::Next(absl::string_view* input) {
  SgfilterEvent ev;
  switch (state_) {
    case State::kFailed:
      ev.type = SgfilterEventType::kError;
      ev.value = partial_line_;
      return ev;
    case State::kDone:
      if (input->empty()) return ev;
      return Fail(
          absl::StrCat("more bytes than the announced DATA length (", input->size(), " extra)"));
    case State::kData:
      if (remaining_ == 0) {
        state_ = State::kDone;
        ev.type = SgfilterEventType::kMessageEnd;
        return ev;
      }
      if (input->empty()) return ev;
      {
        size_t n =
            static_cast<size_t>(std::min<int64_t>(remaining_, static_cast<int64_t>(input->size())));
        ev.type = SgfilterEventType::kData;
        ev.data = input->substr(0, n);
        input->remove_prefix(n);
        remaining_ -= static_cast<int64_t>(n);
        return ev;
      }
    case State::kCommands:
      break;
  }
  size_t nl = input->find('\n');
  if (nl == absl::string_view::npos) {
    // One more byte than the limit may be the CR of a CRLF still to come.
    if (partial_line_.size() + input->size() > kMaxCommandLine + 1) {
      return Fail(absl::StrCat("command line longer than ", kMaxCommandLine, " bytes"));
    }
    partial_line_.append(input->data(), input->size());
    input->remove_prefix(input->size());
    return ev;
  }
  absl::string_view line;
  if (partial_line_.empty()) {
    line = input->substr(0, nl);
    input->remove_prefix(nl + 1);
    return HandleLine(line);
  }
  if (partial_line_.size() + nl > kMaxCommandLine + 1) {
    return Fail(absl::StrCat("command line longer than ", kMaxCommandLine, " bytes"));
  }
  partial_line_.append(input->data(), nl);
  input->remove_prefix(nl + 1);
  std::string whole = std::move(partial_line_);
  partial_line_.clear();
  return HandleLine(whole);
}

SgfilterEvent SgfilterParser::HandleLine(absl::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > kMaxCommandLine) {
    return Fail(absl::StrCat("command line longer than ", kMaxCommandLine, " bytes"));
  }
  SgfilterEvent ev;
  absl::string_view rest;
  if (MatchCommand(line, "MAIL", "FROM:", &rest)) {
    if (has_sender_) return Fail("duplicate MAIL FROM");
    absl::StatusOr<std::string> addr = ParseAddress(rest);
    if (!addr.ok()) return Fail(absl::StrCat("MAIL FROM: ", addr.status().message()));
    has_sender_ = true;
    ev.type = SgfilterEventType::kSender;
    ev.value = *std::move(addr);
    return ev;
  }
  if (MatchCommand(line, "RCPT", "TO:", &rest)) {
    if (!has_sender_) return Fail("RCPT TO before MAIL FROM");
    if (recipients_ >= kMaxRecipients) {
      return Fail(absl::StrCat("too many recipients (limit ", kMaxRecipients, ")"));
    }
    absl::StatusOr<std::string> addr = ParseAddress(rest);
    if (!addr.ok()) return Fail(absl::StrCat("RCPT TO: ", addr.status().message()));
    if (addr->empty()) return Fail("RCPT TO: empty recipient");
    ++recipients_;
    ev.type = SgfilterEventType::kRecipient;
    ev.value = *std::move(addr);
    return ev;
  }
  if (absl::StartsWithIgnoreCase(line, "DATA") && (line.size() == 4 || IsWsp(line[4]))) {
    if (!has_sender_) return Fail("DATA before MAIL FROM");
    if (recipients_ == 0) return Fail("DATA before RCPT TO");
    absl::string_view arg = absl::StripAsciiWhitespace(line.substr(4));
    if (arg.empty()) return Fail("DATA without a length");
    int64_t length = 0;
    bool digits_only = arg.size() <= 18 && std::all_of(arg.begin(), arg.end(), [](char c) {
                         return absl::ascii_isdigit(c);
                       });
    if (!digits_only || !absl::SimpleAtoi(arg, &length)) {
      return Fail(absl::StrCat("bad DATA length ", Quote(arg)));
    }
    if (length > limits_.max_message_size) {
      SgfilterEvent err = Fail(absl::StrCat("message too large: ", length, " bytes, the limit is ",
                                            limits_.max_message_size));
      err.too_large = true;
      err.length = length;
      return err;
    }
    state_ = State::kData;
    remaining_ = length;
    ev.type = SgfilterEventType::kDataStart;
    ev.length = length;
    return ev;
  }
  if (absl::StripAsciiWhitespace(line).empty()) return Fail("empty command line");
  size_t word_end = 0;
  while (word_end < line.size() && !IsWsp(line[word_end])) ++word_end;
  return Fail(absl::StrCat("unknown command ", Quote(line.substr(0, word_end))));
}

std::string FormatResultLine(int code, double level, absl::string_view text) {
  constexpr size_t kMaxText = 200;
  if (!std::isfinite(level)) level = 0;
  std::string clean;
  for (char c : text.substr(0, kMaxText)) {
    unsigned char u = static_cast<unsigned char>(c);
    clean.push_back(u < 32 || u == 127 ? ' ' : c);
  }
  absl::string_view t = absl::StripAsciiWhitespace(clean);
  if (t.empty()) t = "-";
  return absl::StrFormat("%03d %.2f %s\n", code, level, t);
}

absl::StatusOr<ResultLine> ParseResultLine(absl::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("not a result line: ", Quote(line)));
  };
  if (line.size() < 5 || line[3] != ' ') return bad();
  ResultLine r;
  if (!std::all_of(line.begin(), line.begin() + 3, [](char c) { return absl::ascii_isdigit(c); }) ||
      !absl::SimpleAtoi(line.substr(0, 3), &r.code) || r.code < 200 || r.code > 599) {
    return bad();
  }
  absl::string_view rest = line.substr(4);
  size_t sp = rest.find(' ');
  absl::string_view level = rest.substr(0, sp);
  if (level.empty() || !(absl::ascii_isdigit(level.front()) || level.front() == '-') ||
      !absl::SimpleAtod(level, &r.level)) {
    return bad();
  }
  if (sp != absl::string_view::npos) r.text = std::string(rest.substr(sp + 1));
  return r;
}

}  // namespace sagator::sgfilterd
