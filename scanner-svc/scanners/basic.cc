#include "scanner-svc/scanners/basic.h"

#include "absl/strings/str_cat.h"

namespace sagator::scanners {

using engine::ScanContext;
using engine::ScanResult;

absl::string_view MessageHeader(absl::string_view message) {
  if (message.substr(0, 1) == "\n") return message.substr(0, 0);
  if (message.substr(0, 2) == "\r\n") return message.substr(0, 0);
  size_t lf = message.find("\n\n");
  size_t crlf = message.find("\n\r\n");
  size_t end = std::min(lf, crlf);
  return end == absl::string_view::npos ? message : message.substr(0, end + 1);
}

absl::StatusOr<ScanResult> ConstScanner::Scan(ScanContext&) const {
  if (level_ >= 1.0) return ScanResult::Detected(level_, name_, Describe());
  ScanResult r = ScanResult::Clean(Describe());
  r.level = level_;
  r.name = name_;
  return r;
}

absl::StatusOr<ScanResult> NothingScanner::Scan(ScanContext&) const {
  return ScanResult::Clean(Describe());
}

absl::StatusOr<ScanResult> MaxFileSizeScanner::Scan(ScanContext& ctx) const {
  int64_t size = static_cast<int64_t>(ctx.message().size());
  if (size > bytes_) {
    return ScanResult::Detected(1.0, name_, Describe(),
                                absl::StrCat("message of ", size, " bytes is over ", bytes_));
  }
  return ScanResult::Clean(Describe());
}

absl::StatusOr<std::unique_ptr<PatternScanner>> PatternScanner::Create(
    const config::v1::StringScanSpec& spec, bool regexp) {
  std::unique_ptr<PatternScanner> s(new PatternScanner(regexp, spec.size()));
  for (const auto& e : spec.entries()) {
    if (e.patterns().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("entry '", e.name(), "' has no patterns"));
    }
    Entry entry;
    entry.name = e.name();
    for (const std::string& p : e.patterns()) {
      if (!regexp) {
        if (p.empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("entry '", e.name(), "' has an empty pattern"));
        }
        entry.literals.push_back(p);
        continue;
      }
      RE2::Options opts;
      opts.set_case_sensitive(!spec.case_insensitive());
      opts.set_log_errors(false);
      auto re = std::make_unique<RE2>(p, opts);
      if (!re->ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "entry '", e.name(), "': pattern '", p, "' does not compile: ", re->error()));
      }
      entry.regexps.push_back(std::move(re));
    }
    s->entries_.push_back(std::move(entry));
  }
  return s;
}

absl::StatusOr<ScanResult> PatternScanner::Scan(ScanContext& ctx) const {
  absl::string_view text = ctx.message();
  if (size_ == -1) {
    text = MessageHeader(text);
  } else if (size_ > 0 && static_cast<size_t>(size_) < text.size()) {
    text = text.substr(0, size_);
  }
  for (const Entry& e : entries_) {
    bool all = true;
    for (const std::string& lit : e.literals) {
      if (text.find(lit) == absl::string_view::npos) {
        all = false;
        break;
      }
    }
    for (size_t i = 0; all && i < e.regexps.size(); ++i) {
      all = RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), *e.regexps[i]);
    }
    if (all) return ScanResult::Detected(1.0, e.name, Describe());
  }
  return ScanResult::Clean(Describe());
}

}  // namespace sagator::scanners
