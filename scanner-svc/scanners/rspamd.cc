#include "scanner-svc/scanners/rspamd.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config.h"
#include "common/mail_headers.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace sagator::scanners {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

constexpr char kPath[] = "rspamd()";

// Where the HTTP head ends (after its empty line), or npos.
size_t HeadEnd(absl::string_view reply) {
  size_t at = reply.find("\r\n\r\n");
  return at == absl::string_view::npos ? at : at + 4;
}

// The Content-Length of an HTTP head, or -1.
int64_t ContentLength(absl::string_view head) {
  for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (!absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)),
                                "content-length")) {
      continue;
    }
    int64_t n = -1;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)), &n)) return n;
  }
  return -1;
}

const Value* Field(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? nullptr : &it->second;
}

// One added header of rspamd's milter block: "value", {"value": v, "order": n}, or a
// list of those.
void AddHeaderValues(const std::string& name, const Value& v, engine::ScanContext& ctx) {
  if (v.has_string_value()) {
    ctx.AddHeaderEdit({engine::HeaderEdit::Kind::kAdd, name, UnfoldLine(v.string_value())});
  } else if (v.has_struct_value()) {
    if (const Value* value = Field(v.struct_value(), "value"); value && value->has_string_value()) {
      ctx.AddHeaderEdit({engine::HeaderEdit::Kind::kAdd, name, UnfoldLine(value->string_value())});
    }
  } else if (v.has_list_value()) {
    for (const Value& item : v.list_value().values()) AddHeaderValues(name, item, ctx);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<RspamdScanner>> RspamdScanner::Create(
    const config::v1::RspamdSpec& spec,
    const std::function<std::string(absl::string_view)>& resolve_path) {
  std::unique_ptr<RspamdScanner> s(new RspamdScanner());
  auto address = daemon_io::ParseAddress(spec.address(), resolve_path, "rspamd()");
  if (!address.ok()) return address.status();
  s->address_ = *std::move(address);
  s->spec_ = spec;
  return s;
}

std::string RspamdScanner::Request(const engine::ScanContext& ctx) const {
  const engine::MessageEnvelope& e = ctx.envelope();
  std::string head = absl::StrCat("POST /checkv2 HTTP/1.0\r\nConnection: close\r\n",
                                  "Content-Length: ", ctx.message().size(), "\r\n");
  if (!e.sender.empty()) absl::StrAppend(&head, "From: ", UnfoldLine(e.sender), "\r\n");
  for (const std::string& r : e.recipients) absl::StrAppend(&head, "Rcpt: ", UnfoldLine(r), "\r\n");
  if (!e.client_address.empty()) absl::StrAppend(&head, "IP: ", UnfoldLine(e.client_address), "\r\n");
  if (!e.helo.empty()) absl::StrAppend(&head, "Helo: ", UnfoldLine(e.helo), "\r\n");
  if (!e.client_name.empty()) {
    absl::StrAppend(&head, "Hostname: ", UnfoldLine(e.client_name), "\r\n");
  }
  if (!spec_.password().empty()) {
    absl::StrAppend(&head, "Password: ", UnfoldLine(spec_.password()), "\r\n");
  }
  absl::StrAppend(&head, "\r\n");
  return head;
}

absl::StatusOr<engine::ScanResult> RspamdScanner::Interpret(absl::string_view reply,
                                                           engine::ScanContext& ctx,
                                                           const daemon_io::Bounds& bounds) const {
  size_t head_end = HeadEnd(reply);
  if (head_end == absl::string_view::npos) {
    return bounds.Error(absl::StatusCode::kUnavailable,
                        absl::StrCat("reply cut short: ", daemon_io::Quote(reply)));
  }
  absl::string_view status_line = reply.substr(0, reply.find("\r\n"));
  std::vector<absl::string_view> parts = absl::StrSplit(status_line, absl::MaxSplits(' ', 2));
  int code = 0;
  if (parts.size() < 2 || !absl::StartsWith(parts[0], "HTTP/") ||
      !absl::SimpleAtoi(parts[1], &code)) {
    return bounds.Error(absl::StatusCode::kInternal,
                        absl::StrCat("not an HTTP reply: ", daemon_io::Quote(status_line)));
  }
  absl::string_view body = reply.substr(head_end);
  if (code != 200) {
    return bounds.Error(absl::StatusCode::kUnavailable,
                        absl::StrCat("HTTP ", code, ": ", daemon_io::Quote(body)));
  }
  Struct json;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(std::string(body), &json, opts).ok()) {
    return bounds.Error(absl::StatusCode::kInternal,
                        absl::StrCat("reply is no JSON: ", daemon_io::Quote(body)));
  }
  engine::ScanResult r = engine::ScanResult::Clean(kPath);
  const Value* score = Field(json, "score");
  const Value* required = Field(json, "required_score");
  const Value* action = Field(json, "action");
  if (score == nullptr || !score->has_number_value() || action == nullptr) {
    return bounds.Error(absl::StatusCode::kInternal,
                        absl::StrCat("reply without score and action: ", daemon_io::Quote(body)));
  }
  double req = required && required->has_number_value() ? required->number_value() : 0;
  r.level = req > 0 ? std::max(0.0, score->number_value() / req)
                    : (action->string_value() == "reject" ? 1.0 : 0.0);
  // The symbols, highest score first, in the output.
  std::vector<std::pair<double, std::string>> symbols;
  if (const Value* syms = Field(json, "symbols"); syms && syms->has_struct_value()) {
    for (const auto& [name, sym] : syms->struct_value().fields()) {
      const Value* s = sym.has_struct_value() ? Field(sym.struct_value(), "score") : nullptr;
      symbols.emplace_back(s ? s->number_value() : 0, name);
    }
  }
  std::sort(symbols.begin(), symbols.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<std::string> shown;
  for (const auto& [s, name] : symbols) shown.push_back(absl::StrFormat("%s(%.2f)", name, s));
  r.output = absl::StrFormat("score=%.2f required=%.2f action=%s symbols=%s",
                             score->number_value(), req, action->string_value(),
                             absl::StrJoin(shown, ","));
  // A pre-result (GTUBE, a settings rule) decided without running the rules.
  if (const Value* skipped = Field(json, "is_skipped"); skipped && skipped->bool_value()) {
    absl::StrAppend(&r.output, " (pre-result)");
  }
  if (r.detected()) r.name = spec_.name();
  if (!spec_.apply_edits()) return r;
  if (const Value* milter = Field(json, "milter"); milter && milter->has_struct_value()) {
    if (const Value* rm = Field(milter->struct_value(), "remove_headers");
        rm && rm->has_struct_value()) {
      for (const auto& [name, _] : rm->struct_value().fields()) {
        if (IsValidHeaderName(name)) ctx.AddHeaderEdit({engine::HeaderEdit::Kind::kRemove, name, ""});
      }
    }
    if (const Value* add = Field(milter->struct_value(), "add_headers");
        add && add->has_struct_value()) {
      for (const auto& [name, v] : add->struct_value().fields()) {
        if (IsValidHeaderName(name)) AddHeaderValues(name, v, ctx);
      }
    }
  }
  if (const Value* subject = Field(json, "subject"); subject && subject->has_string_value() &&
                                                    action->string_value() == "rewrite subject") {
    ctx.AddHeaderEdit(
        {engine::HeaderEdit::Kind::kReplace, "Subject", UnfoldLine(subject->string_value())});
  }
  return r;
}

absl::StatusOr<engine::ScanResult> RspamdScanner::Scan(engine::ScanContext& ctx) const {
  absl::string_view message = ctx.message();
  if (static_cast<int64_t>(message.size()) > spec_.max_size()) {
    engine::ScanResult r = engine::ScanResult::Clean(kPath);
    r.not_scanned = true;
    r.name = absl::StrCat("not scanned: larger than max_size (", spec_.max_size(), " bytes)");
    return r;
  }
  const daemon_io::Bounds bounds(ctx, ToDuration(spec_.timeout()),
                                 absl::StrCat("rspamd at ", address_.canonical));
  if (absl::Status s = bounds.Check("starting"); !s.ok()) return s;
  absl::StatusOr<daemon_io::UniqueFd> fd = daemon_io::Connect(address_, bounds);
  if (!fd.ok()) return fd.status();
  std::string head = Request(ctx);
  iovec iov[2] = {{head.data(), head.size()},
                  {const_cast<char*>(message.data()), message.size()}};
  absl::StatusOr<daemon_io::SendOutcome> sent = daemon_io::SendAll(fd->get(), iov, 2, bounds);
  if (!sent.ok()) return sent.status();
  bool complete = false;
  absl::StatusOr<std::string> reply = daemon_io::Read(
      fd->get(), bounds, 16 << 20,
      [](const std::string& r) {
        size_t end = HeadEnd(r);
        if (end == std::string::npos) return false;
        int64_t length = ContentLength(absl::string_view(r).substr(0, end));
        return length >= 0 && r.size() - end >= static_cast<size_t>(length);
      },
      &complete);
  if (!reply.ok()) return reply.status();
  return Interpret(*reply, ctx, bounds);
}

}  // namespace sagator::scanners
