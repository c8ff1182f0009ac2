#include "scanner-svc/local_policy_client.h"

#include "absl/time/clock.h"
#include "common/would_wait.h"
#include "scanner-svc/scanner_service.h"

namespace sagator {

absl::StatusOr<ScanReply> LocalPolicyClient::Scan(const scanner::v1::ScanHeader&,
                                                  absl::string_view) {
  return absl::UnimplementedError("the in-process client decides policy only; scan in scanner-svc");
}

absl::StatusOr<scanner::v1::PolicyResponse> LocalPolicyClient::CheckPolicy(
    const scanner::v1::PolicyRequest& request) {
  if (cancelled_) return absl::CancelledError("the gateway is shutting down");
  return DecidePolicy(*chains_, request, absl::Now() + deadline_,
                      [this] { return cancelled_.load(); });
}

std::optional<absl::StatusOr<scanner::v1::PolicyResponse>> LocalPolicyClient::TryCheckPolicyNow(
    const scanner::v1::PolicyRequest& request) {
  if (cancelled_) return absl::CancelledError("the gateway is shutting down");
  absl::StatusOr<scanner::v1::PolicyResponse> r =
      DecidePolicy(*chains_, request, absl::Now() + deadline_, nullptr, /*memory_only=*/true);
  if (!r.ok() && IsWouldWait(r.status())) return std::nullopt;
  return r;
}

}  // namespace sagator
