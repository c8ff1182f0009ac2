#include "scanner-svc/local_policy_client.h"

#include "absl/time/clock.h"
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

}  // namespace sagator
