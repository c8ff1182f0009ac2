#include "services/smtpd/smtp_session.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sagator::smtpd {
namespace {

// "2.0.0" and the like: class.subject.detail.
bool IsEnhancedCode(absl::string_view s) {
  std::vector<absl::string_view> parts = absl::StrSplit(s, '.');
  if (parts.size() != 3 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || parts[0].size() != 1) {
    return false;
  }
  for (absl::string_view p : parts) {
    if (p.empty() || p.size() > 3) return false;
    for (char c : p) {
      if (!absl::ascii_isdigit(c)) return false;
    }
  }
  return true;
}

// RFC 3461 xtext: "+XX" is the byte with hex value XX.
std::string XtextDecode(absl::string_view s) {
  auto hex = [](char c) { return absl::ascii_isdigit(c) ? c - '0' : (c | 0x20) - 'a' + 10; };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+' && i + 2 < s.size() && absl::ascii_isxdigit(s[i + 1]) &&
        absl::ascii_isxdigit(s[i + 2])) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
      continue;
    }
    out.push_back(s[i]);
  }
  return out;
}

// Splits "FROM:<a@b> SIZE=10" after the keyword: address and parameters. Accepts
// "FROM: <a@b>" and a bare address, as Postfix does by default.
bool ParsePath(absl::string_view arg, absl::string_view keyword, std::string* address,
               std::vector<std::string>* params) {
  if (arg.size() < keyword.size() ||
      !absl::EqualsIgnoreCase(arg.substr(0, keyword.size()), keyword)) {
    return false;
  }
  arg.remove_prefix(keyword.size());
  arg = absl::StripLeadingAsciiWhitespace(arg);
  absl::string_view rest;
  if (absl::StartsWith(arg, "<")) {
    size_t gt = arg.find('>');
    if (gt == absl::string_view::npos) return false;
    *address = std::string(arg.substr(1, gt - 1));
    rest = arg.substr(gt + 1);
    if (!rest.empty() && rest[0] != ' ') return false;
  } else {
    size_t sp = arg.find(' ');
    *address = std::string(arg.substr(0, sp));
    rest = sp == absl::string_view::npos ? absl::string_view() : arg.substr(sp);
    if (address->empty()) return false;
  }
  for (absl::string_view p : absl::StrSplit(rest, ' ', absl::SkipEmpty())) {
    params->emplace_back(p);
  }
  // Source routes ("@a,@b:user@c") are obsolete; keep the mailbox.
  if (absl::StartsWith(*address, "@")) {
    size_t colon = address->find(':');
    if (colon == std::string::npos) return false;
    address->erase(0, colon + 1);
  }
  for (char c : *address) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == ' ' || c == '<' || c == '>') {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string Reply::Format() const {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::StrAppend(&out, code, i + 1 < lines.size() ? "-" : " ");
    if (!enhanced.empty()) absl::StrAppend(&out, enhanced, " ");
    absl::StrAppend(&out, absl::StripSuffix(lines[i], "\r"), "\r\n");
  }
  return out;
}

Reply ParseReplyLines(int code, const std::vector<std::string>& texts) {
  Reply r;
  r.code = code;
  std::vector<std::string> lines;
  for (const std::string& t : texts) {
    absl::string_view line = t;
    size_t sp = line.find(' ');
    absl::string_view first = line.substr(0, sp);
    if (IsEnhancedCode(first)) {
      if (r.enhanced.empty()) r.enhanced = std::string(first);
      line = sp == absl::string_view::npos ? absl::string_view() : line.substr(sp + 1);
    }
    lines.emplace_back(line);
  }
  r.text = absl::StrJoin(lines, "\n");
  return r;
}

SmtpSession::SmtpSession(Options options) : opt_(std::move(options)) {}

std::string SmtpSession::Greeting() const {
  return absl::StrCat("220 ", opt_.hostname,
                      opt_.dialect == Dialect::kLmtp ? " LMTP" : " ESMTP", " SAGATOR\r\n");
}

std::string SmtpSession::TimeoutReply() const {
  return absl::StrCat("421 4.4.2 ", opt_.hostname, " Error: timeout exceeded\r\n");
}

void SmtpSession::Feed(absl::string_view bytes) { in_.append(bytes.data(), bytes.size()); }

void SmtpSession::ResetTransaction() {
  txn_ = Transaction();
  pending_rcpt_.clear();
  xforward_.clear();
  discarding_ = false;
  line_start_ = true;
  if (state_ != State::kClosed) state_ = State::kIdle;
}

void SmtpSession::Error(std::string* out, const Reply& reply) {
  ++errors_;
  out->append(reply.Format());
  if (errors_ >= opt_.max_errors && state_ != State::kClosed) {
    absl::StrAppend(out, "421 4.7.0 ", opt_.hostname, " Error: too many errors\r\n");
    state_ = State::kClosed;
  }
}

std::string SmtpSession::EhloReply() const {
  Reply r;
  r.code = 250;
  r.text = absl::StrCat(opt_.hostname, "\nPIPELINING\nSIZE ", opt_.max_message_size,
                        "\n8BITMIME\nENHANCEDSTATUSCODES\n"
                        "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE");
  return r.Format();
}

void SmtpSession::CompleteRecipient(const Reply& reply) {
  if (state_ != State::kWaitRecipient) return;
  if (reply.positive()) txn_.recipients.push_back(pending_rcpt_);
  pending_rcpt_.clear();
  state_ = State::kMail;
  pending_out_.append(reply.Format());
}

void SmtpSession::CompleteMessage(const std::vector<Reply>& replies) {
  if (state_ != State::kWaitMessage) return;
  if (opt_.dialect == Dialect::kLmtp) {
    for (size_t i = 0; i < txn_.recipients.size(); ++i) {
      pending_out_.append(i < replies.size() ? replies[i].Format()
                                             : "451 4.3.0 Error: no result\r\n");
    }
  } else {
    pending_out_.append(replies.empty() ? "451 4.3.0 Error: no result\r\n"
                                        : replies[0].Format());
  }
  ResetTransaction();
}

void SmtpSession::RefuseData(const Reply& reply) {
  if (state_ != State::kData || discarding_) return;
  discarding_ = true;
  data_refusal_ = reply;
  txn_.data.clear();
  txn_.data.shrink_to_fit();
}

bool SmtpSession::ConsumeData() {
  size_t pos = 0;
  bool done = false;
  while (!done) {
    // scan_: the start of in_ is a partial line already searched (long lines arrive
    // in many reads; each is searched once).
    size_t nl = in_.find('\n', pos == 0 ? scan_ : pos);
    if (nl == std::string::npos) break;
    absl::string_view line(in_.data() + pos, nl - pos);
    bool crlf = absl::ConsumeSuffix(&line, "\r");
    pos = nl + 1;
    if (line_start_ && crlf && line == ".") {
      done = true;
      break;
    }
    // Dot-unstuffing; a lone dot that did not end the data (bare LF) stays a dot.
    if (line_start_ && absl::StartsWith(line, ".") && line != ".") line.remove_prefix(1);
    line_start_ = crlf;
    if (discarding_) continue;
    if (line.size() > opt_.max_data_line_length) {
      RefuseData({554, "5.6.0", "Error: message content line too long"});
      continue;
    }
    txn_.data.append(line.data(), line.size());
    txn_.data.append("\r\n");
    if (static_cast<int64_t>(txn_.data.size()) > opt_.max_message_size) {
      RefuseData({552, "5.3.4", "Error: message file too big"});
    }
  }
  in_.erase(0, pos);
  if (!done && in_.size() > opt_.max_data_line_length + 2) {
    // A line with no end in sight: drop what is there, keep reading for the end.
    if (!discarding_) RefuseData({554, "5.6.0", "Error: message content line too long"});
    char last = in_.back();
    in_.assign(1, last);
    line_start_ = false;
  }
  scan_ = done ? 0 : in_.size();
  return done;
}

SmtpSession::Action SmtpSession::Next(std::string* out) {
  out->append(pending_out_);
  pending_out_.clear();
  for (;;) {
    switch (state_) {
      case State::kClosed:
        in_.clear();
        return Action::kClose;
      case State::kWaitRecipient:
        return Action::kRecipient;
      case State::kWaitMessage:
        return Action::kMessage;
      case State::kData:
        if (!ConsumeData()) return Action::kRead;
        if (discarding_) {
          Reply refusal = data_refusal_;
          ResetTransaction();
          Error(out, refusal);
          continue;
        }
        state_ = State::kWaitMessage;
        return Action::kMessage;
      case State::kIdle:
      case State::kMail: {
        size_t nl = in_.find('\n', scan_);
        if (nl == std::string::npos) {
          if (in_.size() > opt_.max_line_length) {
            long_line_ = true;
            in_.clear();
          }
          scan_ = in_.size();
          return Action::kRead;
        }
        std::string line = in_.substr(0, nl);
        in_.erase(0, nl + 1);
        scan_ = 0;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (long_line_ || line.size() + 2 > opt_.max_line_length) {
          long_line_ = false;
          Error(out, {500, "5.5.2", "Error: line too long"});
          continue;
        }
        Action a = Command(line, out);
        if (a != Action::kRead) return a;
        continue;
      }
    }
  }
}

SmtpSession::Action SmtpSession::Command(absl::string_view line, std::string* out) {
  size_t sp = line.find(' ');
  std::string verb = absl::AsciiStrToUpper(line.substr(0, sp));
  absl::string_view arg =
      sp == absl::string_view::npos ? absl::string_view() : line.substr(sp + 1);
  arg = absl::StripAsciiWhitespace(arg);
  const bool lmtp = opt_.dialect == Dialect::kLmtp;

  if (verb == "EHLO" || verb == "HELO" || verb == "LHLO") {
    if (lmtp != (verb == "LHLO")) {
      Error(out, {500, "5.5.1", "Error: command not recognized"});
      return Action::kRead;
    }
    if (arg.empty()) {
      Error(out, {501, "5.5.4", absl::StrCat("Syntax: ", verb, " hostname")});
      return Action::kRead;
    }
    ResetTransaction();
    helo_ = std::string(arg);
    greeted_ = true;
    extended_ = verb != "HELO";
    if (extended_) {
      out->append(EhloReply());
    } else {
      absl::StrAppend(out, "250 ", opt_.hostname, "\r\n");
    }
    return Action::kRead;
  }
  if (verb == "MAIL") {
    if (!greeted_) {
      Error(out, {503, "5.5.1", lmtp ? "Error: send LHLO first" : "Error: send HELO/EHLO first"});
      return Action::kRead;
    }
    if (state_ != State::kIdle) {
      Error(out, {503, "5.5.1", "Error: nested MAIL command"});
      return Action::kRead;
    }
    std::string address;
    std::vector<std::string> params;
    if (!ParsePath(arg, "FROM:", &address, &params)) {
      Error(out, {501, "5.5.4", "Syntax: MAIL FROM:<address>"});
      return Action::kRead;
    }
    Transaction t;
    t.sender = address;
    for (const std::string& p : params) {
      std::pair<std::string, std::string> kv = absl::StrSplit(p, absl::MaxSplits('=', 1));
      std::string key = absl::AsciiStrToUpper(kv.first);
      if (key == "SIZE") {
        int64_t n = 0;
        if (!absl::SimpleAtoi(kv.second, &n) || n < 0) {
          Error(out, {501, "5.5.4", "Bad message size syntax"});
          return Action::kRead;
        }
        if (n > opt_.max_message_size) {
          Error(out, {552, "5.3.4", "Message size exceeds fixed limit"});
          return Action::kRead;
        }
        t.declared_size = n;
      } else if (key == "BODY") {
        std::string v = absl::AsciiStrToUpper(kv.second);
        if (v != "7BIT" && v != "8BITMIME") {
          Error(out, {501, "5.5.4", "Unsupported BODY parameter"});
          return Action::kRead;
        }
        t.body_8bitmime = v == "8BITMIME";
      } else {
        Error(out, {555, "5.5.4", absl::StrCat("Unsupported option: ", p)});
        return Action::kRead;
      }
    }
    txn_ = std::move(t);
    ++txn_number_;
    state_ = State::kMail;
    out->append(Reply{250, "2.1.0", "Ok"}.Format());
    return Action::kRead;
  }
  if (verb == "RCPT") {
    if (state_ != State::kMail) {
      Error(out, {503, "5.5.1", "Error: need MAIL command"});
      return Action::kRead;
    }
    std::string address;
    std::vector<std::string> params;
    if (!ParsePath(arg, "TO:", &address, &params) || address.empty()) {
      Error(out, {501, "5.1.3", "Bad recipient address syntax"});
      return Action::kRead;
    }
    if (!params.empty()) {
      Error(out, {555, "5.5.4", absl::StrCat("Unsupported option: ", params[0])});
      return Action::kRead;
    }
    if (static_cast<int>(txn_.recipients.size()) >= opt_.max_recipients) {
      out->append(Reply{452, "4.5.3", "Error: too many recipients"}.Format());
      return Action::kRead;
    }
    pending_rcpt_ = address;
    state_ = State::kWaitRecipient;
    return Action::kRecipient;
  }
  if (verb == "DATA") {
    if (state_ != State::kMail) {
      Error(out, {503, "5.5.1", "Error: need MAIL command"});
      return Action::kRead;
    }
    if (txn_.recipients.empty()) {
      Error(out, {503, "5.5.1", lmtp ? "Error: no valid recipients" : "Error: need RCPT command"});
      return Action::kRead;
    }
    if (!arg.empty()) {
      Error(out, {501, "5.5.4", "Syntax: DATA"});
      return Action::kRead;
    }
    state_ = State::kData;
    line_start_ = true;
    discarding_ = false;
    out->append("354 End data with <CR><LF>.<CR><LF>\r\n");
    return Action::kRead;
  }
  if (verb == "RSET") {
    ResetTransaction();
    out->append(Reply{250, "2.0.0", "Ok"}.Format());
    return Action::kRead;
  }
  if (verb == "NOOP") {
    out->append(Reply{250, "2.0.0", "Ok"}.Format());
    return Action::kRead;
  }
  if (verb == "QUIT") {
    out->append(Reply{221, "2.0.0", "Bye"}.Format());
    state_ = State::kClosed;
    return Action::kClose;
  }
  if (verb == "VRFY") {
    out->append(Reply{252, "2.0.0", "Cannot VRFY user; try RCPT to attempt delivery"}.Format());
    return Action::kRead;
  }
  if (verb == "HELP") {
    out->append(Reply{214, "2.0.0", "See RFC 5321"}.Format());
    return Action::kRead;
  }
  if (verb == "XFORWARD") {
    if (state_ != State::kIdle) {
      Error(out, {503, "5.5.1", "Error: MAIL transaction in progress"});
      return Action::kRead;
    }
    if (arg.empty()) {
      Error(out, {501, "5.5.4", "Syntax: XFORWARD attribute=value..."});
      return Action::kRead;
    }
    std::map<std::string, std::string> attrs;
    for (absl::string_view a : absl::StrSplit(arg, ' ', absl::SkipEmpty())) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(a, absl::MaxSplits('=', 1));
      std::string key = absl::AsciiStrToUpper(kv.first);
      if (key != "NAME" && key != "ADDR" && key != "PORT" && key != "PROTO" && key != "HELO" &&
          key != "IDENT" && key != "SOURCE") {
        Error(out, {501, "5.5.4", absl::StrCat("Bad XFORWARD attribute name: ", kv.first)});
        return Action::kRead;
      }
      std::string value = XtextDecode(kv.second);
      if (value == "[UNAVAILABLE]" || value == "[TEMPUNAVAIL]") continue;
      if (key == "ADDR" && absl::StartsWithIgnoreCase(value, "IPV6:")) value.erase(0, 5);
      attrs[key] = value;
    }
    for (auto& [k, v] : attrs) xforward_[k] = std::move(v);
    out->append(Reply{250, "2.0.0", "Ok"}.Format());
    return Action::kRead;
  }
  if (verb.empty()) {
    Error(out, {500, "5.5.2", "Error: bad syntax"});
    return Action::kRead;
  }
  if (verb == "STARTTLS" || verb == "AUTH" || verb == "BDAT" || verb == "ETRN" ||
      verb == "EXPN" || verb == "TURN" || verb == "XCLIENT") {
    Error(out, {502, "5.5.1", "Error: command not implemented"});
    return Action::kRead;
  }
  Error(out, {502, "5.5.2", "Error: command not recognized"});
  return Action::kRead;
}

}  // namespace sagator::smtpd
