#include "scanner-svc/engine/combinators.h"

#include "common/would_wait.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace sagator::engine {
namespace {

std::string DescribeAll(const std::vector<ScannerPtr>& scanners) {
  return absl::StrJoin(scanners, ", ", [](std::string* out, const ScannerPtr& s) {
    out->append(s->Describe());
  });
}

}  // namespace

std::string ExpandTemplate(absl::string_view tmpl, const ScanResult& r) {
  std::string level = absl::StrFormat("%.2f", r.level);
  return absl::StrReplaceAll(tmpl, {{"%(VIRNAME)s", r.name},
                                    {"%(LEVEL)s", level},
                                    {"%(STARS)s", Stars(r.level)},
                                    {"%V", r.name},
                                    {"%L", level},
                                    {"%S", r.path},
                                    {"%%", "%"}});
}

absl::StatusOr<ScanResult> Sequence::Scan(ScanContext& ctx) const {
  ScanResult best;
  bool have_best = false;
  for (const ScannerPtr& s : scanners_) {
    if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
    absl::StatusOr<ScanResult> r = s->Scan(ctx);
    if (!r.ok()) return r;
    if (r->detected()) return r;
    // Keep "not scanned" visible: it outranks a clean result of another scanner.
    if (!have_best || r->not_scanned > best.not_scanned ||
        (r->not_scanned == best.not_scanned && r->level > best.level)) {
      best = *std::move(r);
      have_best = true;
    }
  }
  if (!have_best) return ScanResult::Clean(Describe());
  return best;
}

std::string Sequence::Describe() const { return DescribeAll(scanners_); }

bool Sequence::HonorsMemoryOnly() const {
  for (const ScannerPtr& s : scanners_) {
    if (!s->HonorsMemoryOnly()) return false;
  }
  return true;
}

absl::StatusOr<ScanResult> Alternatives::Scan(ScanContext& ctx) const {
  std::vector<std::string> errors;
  for (const ScannerPtr& s : scanners_) {
    if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
    absl::StatusOr<ScanResult> r = s->Scan(ctx);
    if (r.ok()) return Wrap(*std::move(r), "alternatives");
    // An expired deadline is the caller's end, not a reason to try the next one.
    if (absl::IsDeadlineExceeded(r.status()) || absl::IsCancelled(r.status())) {
      if (!ctx.CheckAlive().ok()) return r.status();
    }
    errors.push_back(absl::StrCat(s->Describe(), ": ", r.status().message()));
  }
  return absl::UnavailableError(
      absl::StrCat("every alternative failed: ", absl::StrJoin(errors, "; ")));
}

std::string Alternatives::Describe() const {
  return absl::StrCat("alternatives(", DescribeAll(scanners_), ")");
}

absl::StatusOr<ScanResult> MatchAny::Scan(ScanContext& ctx) const {
  absl::Status first_error;
  ScanResult best;
  for (const ScannerPtr& s : scanners_) {
    if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
    absl::StatusOr<ScanResult> r = s->Scan(ctx);
    if (!r.ok()) {
      if (first_error.ok()) first_error = r.status();
      continue;
    }
    if (r->detected()) return Wrap(*std::move(r), "match_any");
    if (r->level > best.level || r->not_scanned) best = *r;
  }
  if (!first_error.ok()) return first_error;
  return Wrap(best, "match_any");
}

std::string MatchAny::Describe() const {
  return absl::StrCat("match_any(", DescribeAll(scanners_), ")");
}

absl::StatusOr<ScanResult> MatchAll::Scan(ScanContext& ctx) const {
  ScanResult combined;
  std::vector<std::string> outputs;
  bool first = true;
  for (const ScannerPtr& s : scanners_) {
    if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
    absl::StatusOr<ScanResult> r = s->Scan(ctx);
    if (!r.ok()) return r.status();
    if (!r->detected()) {
      ScanResult clean = *std::move(r);
      return Wrap(clean, "match_all");
    }
    if (first) {
      combined = *r;
      first = false;
    } else {
      combined.level = std::min(combined.level, r->level);
    }
    if (!r->output.empty()) outputs.push_back(r->output);
  }
  if (first) return ScanResult::Clean(Describe());
  combined.output = absl::StrJoin(outputs, "\n");
  return Wrap(combined, "match_all");
}

std::string MatchAll::Describe() const {
  return absl::StrCat("match_all(", DescribeAll(scanners_), ")");
}

absl::StatusOr<ScanResult> FlagOnMatch::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (!r.ok()) return r;
  if (r->detected() && RE2::PartialMatch(r->name, *pattern_)) {
    if (flag_ == Flag::kDrop) {
      ctx.set_drop(true);
    } else {
      ctx.set_deliver(true);
    }
  }
  return Wrap(*std::move(r), flag_ == Flag::kDrop ? "drop" : "deliver");
}

std::string FlagOnMatch::Describe() const {
  return absl::StrCat(flag_ == Flag::kDrop ? "drop" : "deliver", "(", inner_->Describe(),
                      ")");
}

absl::StatusOr<ScanResult> Rename::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (!r.ok()) return r;
  if (r->detected()) {
    r->level *= multiplier_;
    r->name = ExpandTemplate(template_, *r);
  }
  return Wrap(*std::move(r), "rename");
}

std::string Rename::Describe() const {
  return absl::StrCat("rename(", inner_->Describe(), ")");
}

absl::StatusOr<ScanResult> AddHeader::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (!r.ok()) return r;
  if (r->name.size() >= 1 && RE2::PartialMatch(r->name, *onlyif_)) {
    ctx.AddHeaderEdit({HeaderEdit::Kind::kAdd, name_, ExpandTemplate(data_, *r)});
  }
  return Wrap(*std::move(r), "add_header");
}

std::string AddHeader::Describe() const {
  return absl::StrCat("add_header(", inner_->Describe(), ")");
}

CountDetections::CountDetections(std::string prefix, stats::Registry* registry, ScannerPtr inner)
    : prefix_(std::move(prefix)), registry_(registry), inner_(std::move(inner)) {
  if (absl::StrContains(prefix_, "%")) return;
  count_ = registry_->GetCounter("status_count", {{"prefix", prefix_}});
  bytes_ = registry_->GetCounter("status_bytes", {{"prefix", prefix_}});
}

absl::StatusOr<ScanResult> CountDetections::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (!r.ok()) return r;
  if (r->detected()) {
    stats::Counter* count = count_;
    stats::Counter* bytes = bytes_;
    if (count == nullptr) {
      std::string prefix = ExpandTemplate(prefix_, *r);
      count = registry_->GetCounter("status_count", {{"prefix", prefix}});
      bytes = registry_->GetCounter("status_bytes", {{"prefix", prefix}});
    }
    count->Add();
    bytes->Add(static_cast<int64_t>(ctx.message().size()));
  }
  return Wrap(*std::move(r), "status");
}

std::string CountDetections::Describe() const {
  return absl::StrCat("status(", inner_->Describe(), ")");
}

absl::StatusOr<ScanResult> Quarantine::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (!r.ok()) return r;
  ScanResult out = Wrap(*std::move(r), "quarantine");
  if (out.detected()) ctx.RequestQuarantine({sink_.get(), out});
  return out;
}

std::string Quarantine::Describe() const {
  return absl::StrCat("quarantine(", inner_->Describe(), ")");
}

CountScans::CountScans(std::string kind, stats::Registry* registry, ScannerPtr inner)
    : clean_(registry->GetCounter("scans", {{"scanner", kind}, {"result", "clean"}})),
      detected_(registry->GetCounter("scans", {{"scanner", kind}, {"result", "detected"}})),
      error_(registry->GetCounter("scans", {{"scanner", kind}, {"result", "error"}})),
      inner_(std::move(inner)) {}

absl::StatusOr<ScanResult> CountScans::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (!r.ok() && IsWouldWait(r.status())) {
    // Not a scan: it runs again where it may wait, and counts then.
  } else if (!r.ok()) {
    error_->Add();
  } else if (r->detected()) {
    detected_->Add();
  } else {
    clean_->Add();
  }
  return r;
}

}  // namespace sagator::engine
