#include "scanner-svc/engine/actions.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/mail_headers.h"
#include "scanner-svc/engine/combinators.h"

namespace sagator::engine {
namespace {

bool Matches(const ScanResult& r, const RE2& onlyif) {
  return r.detected() && !r.name.empty() && RE2::PartialMatch(r.name, onlyif);
}

std::string Describe(absl::string_view name, const Scanner& inner) {
  return absl::StrCat(name, "(", inner.Describe(), ")");
}

}  // namespace

absl::StatusOr<ScanResult> Recover::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (r.ok()) return Wrap(*std::move(r), "recover");
  // A caller that is gone or out of time is not an error to recover from.
  if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
  ScanResult out;
  out.level = level_;
  if (out.detected()) out.name = name_;
  out.path = Describe();
  out.output = absl::StrCat("recovered from: ", r.status().message());
  return out;
}

std::string Recover::Describe() const { return engine::Describe("recover", *inner_); }

absl::StatusOr<ScanResult> Retry::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r;
  for (int run = 1; run <= count_; ++run) {
    r = inner_->Scan(ctx);
    if (r.ok()) return Wrap(*std::move(r), "retry");
    if (run == count_) break;
    // Wait in short steps, so a cancelled scan stops at once.
    absl::Time until = std::min(absl::Now() + delay_, ctx.deadline());
    while (absl::Now() < until) {
      if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
      absl::SleepFor(std::min(until - absl::Now(), absl::Milliseconds(50)));
    }
    if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
  }
  return absl::Status(r.status().code(),
                      absl::StrCat(r.status().message(), " (after ", count_, " tries)"));
}

std::string Retry::Describe() const { return engine::Describe("retry", *inner_); }

absl::StatusOr<ScanResult> ModifySubject::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (!r.ok()) return r;
  if (Matches(*r, *onlyif_)) {
    std::string subject;
    FindHeaderValue(ctx.message(), "Subject", &subject);
    ctx.AddHeaderEdit({HeaderEdit::Kind::kReplace, "Subject",
                       absl::StrCat(ExpandTemplate(prefix_, *r), subject)});
  }
  return Wrap(*std::move(r), "modify_subject");
}

std::string ModifySubject::Describe() const { return engine::Describe("modify_subject", *inner_); }

absl::StatusOr<ScanResult> ModifyHeader::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (!r.ok()) return r;
  if (Matches(*r, *onlyif_)) {
    ctx.AddHeaderEdit({remove_ ? HeaderEdit::Kind::kRemove : HeaderEdit::Kind::kReplace, name_,
                       remove_ ? "" : ExpandTemplate(value_, *r)});
  }
  return Wrap(*std::move(r), "modify_header");
}

std::string ModifyHeader::Describe() const { return engine::Describe("modify_header", *inner_); }

CheckLevel::CheckLevel(ScannerPtr test, std::vector<std::pair<double, ScannerPtr>> branches)
    : test_(std::move(test)), branches_(std::move(branches)) {
  std::stable_sort(branches_.begin(), branches_.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
}

absl::StatusOr<ScanResult> CheckLevel::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> test = test_->Scan(ctx);
  if (!test.ok()) return test;
  for (const auto& [min, scanners] : branches_) {
    if (test->level >= min) {
      absl::StatusOr<ScanResult> r = scanners->Scan(ctx);
      if (!r.ok()) return r;
      ScanResult out = Wrap(*std::move(r), "check_level");
      absl::StrAppend(&out.output, out.output.empty() ? "" : " ", "(test level ",
                      absl::StrFormat("%.2f", test->level), ")");
      return out;
    }
  }
  return Wrap(*std::move(test), "check_level");
}

std::string CheckLevel::Describe() const {
  std::string out = absl::StrCat("check_level(", test_->Describe());
  for (const auto& [min, scanners] : branches_) {
    absl::StrAppend(&out, ", ", min, ": ", scanners->Describe());
  }
  return out + ")";
}

absl::StatusOr<ScanResult> CustomAction::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (!r.ok()) return r;
  if (Matches(*r, *onlyif_)) {
    ctx.set_drop(disposition_ == Disposition::kDrop);
    ctx.set_deliver(disposition_ == Disposition::kDeliver);
    ctx.set_defer(disposition_ == Disposition::kTempfail);
    if (!reply_.empty()) ctx.set_reply_text(ExpandTemplate(reply_, *r));
  }
  return Wrap(*std::move(r), "custom_action");
}

std::string CustomAction::Describe() const { return engine::Describe("custom_action", *inner_); }

absl::StatusOr<ScanResult> Cache::Scan(ScanContext& ctx) const {
  if (const ScanResult* seen = ctx.Cached(name_)) return *seen;
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (!r.ok()) return r;
  ScanResult out = Wrap(*std::move(r), "cache");
  ctx.Remember(name_, out);
  return out;
}

std::string Cache::Describe() const { return engine::Describe("cache", *inner_); }

absl::StatusOr<ScanResult> FinishAfter::Scan(ScanContext& ctx) const {
  absl::StatusOr<ScanResult> r = inner_->Scan(ctx);
  if (!r.ok()) return r;
  RequestFinish(ctx, *r);
  return Wrap(*std::move(r), kind_);
}

void FinishAfter::RequestFinish(ScanContext& ctx, const ScanResult& r) const {
  if (onlyif_ == nullptr || Matches(r, *onlyif_)) ctx.RequestFinish({finisher_.get(), r});
}

std::string FinishAfter::Describe() const { return engine::Describe(kind_, *inner_); }

}  // namespace sagator::engine
