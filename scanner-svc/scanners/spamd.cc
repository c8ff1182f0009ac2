#include "scanner-svc/scanners/spamd.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/config.h"

namespace sagator::scanners {
namespace {

constexpr char kPath[] = "spamassassind()";

// The user name spamd gets: letters, digits and a few marks only, so nothing can
// break the request's header lines.
std::string SafeUser(absl::string_view user) {
  std::string out;
  for (char c : user) {
    if (absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-' || c == '@' || c == '+') {
      out.push_back(c);
    }
  }
  return out;
}

struct SpamdReply {
  int code = -1;
  std::string message;
  bool spam = false;
  double score = 0;
  double required = 0;
  std::string body;
};

absl::StatusOr<SpamdReply> ParseReply(const std::string& raw, const daemon_io::Bounds& bounds) {
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    return bounds.Error(absl::StatusCode::kUnavailable,
                        raw.empty() ? "closed the connection without a reply"
                                    : absl::StrCat("reply cut short: ", daemon_io::Quote(raw)));
  }
  std::vector<absl::string_view> lines =
      absl::StrSplit(absl::string_view(raw).substr(0, head_end), "\r\n");
  SpamdReply r;
  // "SPAMD/1.1 0 EX_OK"
  std::vector<absl::string_view> status = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (status.size() < 2 || !absl::StartsWith(status[0], "SPAMD/") ||
      !absl::SimpleAtoi(status[1], &r.code)) {
    return bounds.Error(absl::StatusCode::kInternal,
                        absl::StrCat("unexpected reply ", daemon_io::Quote(lines[0])));
  }
  r.message = status.size() > 2 ? std::string(status[2]) : "";
  bool have_spam = false;
  int64_t length = -1;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(lines[i], absl::MaxSplits(':', 1));
    absl::string_view name = absl::StripAsciiWhitespace(kv.first);
    absl::string_view value = absl::StripAsciiWhitespace(kv.second);
    if (absl::EqualsIgnoreCase(name, "Spam")) {
      // "True ; 12.3 / 5.0"
      std::vector<absl::string_view> parts = absl::StrSplit(value, absl::ByAnyChar(";/"));
      if (parts.size() == 3 &&
          absl::SimpleAtod(absl::StripAsciiWhitespace(parts[1]), &r.score) &&
          absl::SimpleAtod(absl::StripAsciiWhitespace(parts[2]), &r.required)) {
        r.spam = absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(parts[0]), "True") ||
                 absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(parts[0]), "Yes");
        have_spam = true;
      }
    } else if (absl::EqualsIgnoreCase(name, "Content-length")) {
      absl::SimpleAtoi(value, &length);
    }
  }
  r.body = raw.substr(head_end + 4);
  if (r.code != 0) return r;  // the caller reports spamd's error
  if (!have_spam) {
    return bounds.Error(absl::StatusCode::kInternal,
                        absl::StrCat("reply without a Spam line: ", daemon_io::Quote(raw)));
  }
  if (length >= 0 && static_cast<int64_t>(r.body.size()) < length) {
    return bounds.Error(absl::StatusCode::kUnavailable, "reply body cut short");
  }
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SpamdScanner>> SpamdScanner::Create(
    const config::v1::SpamassassindSpec& spec,
    const std::function<std::string(absl::string_view)>& resolve_path) {
  auto address = daemon_io::ParseAddress(spec.address(), resolve_path, "spamassassind()");
  if (!address.ok()) return address.status();
  std::unique_ptr<SpamdScanner> s(new SpamdScanner());
  s->address_ = *std::move(address);
  s->spec_ = spec;
  s->timeout_ = ToDuration(spec.timeout());
  for (const auto& [pattern, re] : {std::pair{spec.mydestination(), &s->mydestination_},
                                    std::pair{spec.virtual_users(), &s->virtual_users_}}) {
    if (pattern.empty()) continue;
    *re = std::make_unique<RE2>(pattern, RE2::Quiet);
    if (!(*re)->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("spamassassind(): '", pattern, "' does not compile: ", (*re)->error()));
    }
  }
  return s;
}

std::string SpamdScanner::UserFor(const engine::MessageEnvelope& envelope) const {
  if (envelope.recipients.size() == 1) {
    const std::string& rcpt = envelope.recipients[0];
    size_t at = rcpt.rfind('@');
    if (mydestination_ != nullptr && at != std::string::npos &&
        RE2::PartialMatch(rcpt.substr(at + 1), *mydestination_)) {
      std::string user = SafeUser(absl::AsciiStrToLower(rcpt.substr(0, at)));
      if (!user.empty()) return user;
    }
    if (virtual_users_ != nullptr && RE2::PartialMatch(rcpt, *virtual_users_)) {
      std::string user = SafeUser(absl::AsciiStrToLower(rcpt));
      if (!user.empty()) return user;
    }
  }
  return SafeUser(spec_.sa_user());
}

absl::StatusOr<engine::ScanResult> SpamdScanner::Scan(engine::ScanContext& ctx) const {
  absl::string_view message = ctx.message();
  if (static_cast<int64_t>(message.size()) > spec_.sa_max_file()) {
    engine::ScanResult r = engine::ScanResult::Clean(kPath);
    r.not_scanned = true;
    r.name = absl::StrCat("not scanned: larger than sa_max_file (", spec_.sa_max_file(),
                          " bytes)");
    return r;
  }
  const daemon_io::Bounds bounds(ctx, timeout_, absl::StrCat("spamd at ", address_.canonical));
  if (absl::Status s = bounds.Check("starting"); !s.ok()) return s;
  absl::StatusOr<daemon_io::UniqueFd> fd = daemon_io::Connect(address_, bounds);
  if (!fd.ok()) return fd.status();
  std::string user = UserFor(ctx.envelope());
  std::string head = absl::StrCat(spec_.filter() ? "PROCESS" : "SYMBOLS",
                                  " SPAMC/1.5\r\nContent-length: ", message.size(), "\r\n",
                                  user.empty() ? "" : absl::StrCat("User: ", user, "\r\n"),
                                  "\r\n");
  iovec iov[2] = {{head.data(), head.size()},
                  {const_cast<char*>(message.data()), message.size()}};
  absl::StatusOr<daemon_io::SendOutcome> sent = daemon_io::SendAll(fd->get(), iov, 2, bounds);
  if (!sent.ok()) return sent.status();
  bool complete = false;
  // spamd closes the connection after its reply.
  absl::StatusOr<std::string> raw = daemon_io::Read(
      fd->get(), bounds, message.size() * 2 + (1 << 20),
      [](const std::string&) { return false; }, &complete);
  if (!raw.ok()) return raw.status();
  absl::StatusOr<SpamdReply> reply = ParseReply(*raw, bounds);
  if (!reply.ok()) return reply.status();
  if (reply->code != 0) {
    return bounds.Error(absl::StatusCode::kUnavailable,
                        absl::StrCat("spamd failed: ", reply->code, " ", reply->message));
  }
  double required = spec_.reqspamlevel() > 0 ? spec_.reqspamlevel() : reply->required;
  engine::ScanResult r;
  r.path = kPath;
  r.level = required > 0 ? reply->score / required : (reply->spam ? 1.0 : 0.0);
  r.output = absl::StrCat("score=", reply->score, " required=", required);
  if (!spec_.filter()) {
    std::string tests(absl::StripAsciiWhitespace(reply->body));
    if (!tests.empty()) absl::StrAppend(&r.output, " tests=", tests);
  } else if (!reply->body.empty()) {
    ctx.RewriteMessage(std::move(reply->body));
  }
  if (r.detected()) r.name = "SPAM";
  return r;
}

}  // namespace sagator::scanners
