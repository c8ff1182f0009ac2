#include "scanner-svc/engine/scanner.h"

#include "absl/time/clock.h"

namespace sagator::engine {

absl::Status ScanContext::CheckAlive() const {
  if (cancelled_ && cancelled_()) return absl::CancelledError("the caller cancelled the scan");
  if (absl::Now() >= deadline_) return absl::DeadlineExceededError("scan deadline exceeded");
  return absl::OkStatus();
}

}  // namespace sagator::engine
