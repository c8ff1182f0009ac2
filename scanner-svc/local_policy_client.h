// A ScannerClient that decides policy requests in this process, on its own
// ChainSet, instead of calling scanner-svc: smtpd_policy's `in_process` mode. The
// chain's databases are shared with scanner-svc replicas as usual; only the gRPC
// hop per request goes away. Scan() is not offered (content scanning stays in
// scanner-svc). Thread-safe.
#ifndef SAGATOR_SCANNER_SVC_LOCAL_POLICY_CLIENT_H_
#define SAGATOR_SCANNER_SVC_LOCAL_POLICY_CLIENT_H_

#include <atomic>
#include <memory>

#include "common/scanner_client.h"
#include "scanner-svc/chain_set.h"

namespace sagator {

class LocalPolicyClient final : public ScannerClient {
 public:
  // Each decision gets `deadline` from its start.
  LocalPolicyClient(std::unique_ptr<ChainSet> chains, absl::Duration deadline)
      : chains_(std::move(chains)), deadline_(deadline) {}

  absl::StatusOr<ScanReply> Scan(const scanner::v1::ScanHeader& header,
                                 absl::string_view message) override;
  absl::StatusOr<scanner::v1::PolicyResponse> CheckPolicy(
      const scanner::v1::PolicyRequest& request) override;
  // Runs the chain memory-only (ChainSet::RunPolicy): greylist's passed triplets
  // and whitelisted clients and sql_list's lists answer on the caller's thread.
  std::optional<absl::StatusOr<scanner::v1::PolicyResponse>> TryCheckPolicyNow(
      const scanner::v1::PolicyRequest& request) override;
  // Records never-seen greylist triplets of a PostgreSQL store on the loop (see
  // ScannerClient::LoopDecider), up to kLoopBatch a statement on a connection per
  // store; memory then answers "deferred". Anything else (SQLite, lists due for
  // their recheck, a triplet with a record, a database error) goes back to the
  // caller to decide on a thread that may wait.
  std::unique_ptr<LoopDecider> NewLoopDecider(boost::asio::io_context& io) override;
  static constexpr size_t kLoopBatch = 8;
  void CancelAll() override { cancelled_ = true; }

 private:
  std::unique_ptr<ChainSet> chains_;
  const absl::Duration deadline_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace sagator

#endif  // SAGATOR_SCANNER_SVC_LOCAL_POLICY_CLIENT_H_
