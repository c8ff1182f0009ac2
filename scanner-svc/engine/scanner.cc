#include "scanner-svc/engine/scanner.h"

#include <algorithm>
#include <cmath>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace sagator::engine {

absl::Status ScanContext::CheckAlive() const {
  if (cancelled_ && cancelled_()) return absl::CancelledError("the caller cancelled the scan");
  if (absl::Now() >= deadline_) return absl::DeadlineExceededError("scan deadline exceeded");
  return absl::OkStatus();
}

absl::StatusOr<std::optional<ScanResult>> ScanPart(const Scanner& inner, ScanContext& ctx,
                                                   absl::string_view data, PartInfo part,
                                                   bool show_name, std::string* not_scanned,
                                                   absl::string_view fallback) {
  std::string name = show_name ? part.filename : "";
  ScanContext child = ctx.Child(data, std::move(part));
  absl::StatusOr<ScanResult> r = inner.Scan(child);
  ctx.MergeChild(child);
  if (!r.ok()) return r.status();
  if (r->not_scanned && !r->detected()) {
    // The reason, without the "not scanned: " the container puts in front again.
    absl::string_view reason = r->name;
    absl::ConsumePrefix(&reason, "not scanned: ");
    *not_scanned = reason.empty() ? std::string(fallback) : std::string(reason);
    return std::nullopt;
  }
  if (!r->detected()) return std::nullopt;
  if (!name.empty()) {
    r->output = absl::StrCat(r->output, r->output.empty() ? "" : " ", "(in ", name, ")");
  }
  return std::optional<ScanResult>(*std::move(r));
}

ScanResult Wrap(ScanResult r, absl::string_view wrapper) {
  r.path = absl::StrCat(wrapper, "(", r.path, ")");
  return r;
}

std::string RandomAlnum(int n) {
  static constexpr char kAlnum[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  thread_local absl::BitGen gen;
  std::string out(static_cast<size_t>(n), ' ');
  for (char& c : out) c = kAlnum[absl::Uniform<int>(gen, 0, sizeof kAlnum - 1)];
  return out;
}

std::string Stars(double level) {
  int n = std::clamp(static_cast<int>(std::floor(level * 10)), 0, 50);
  return std::string(n, '*');
}

}  // namespace sagator::engine
