// In-memory fakes of scanner-svc for the gateways' tests.
//
// FakeScannerClient implements the ScannerClient seam directly (no gRPC);
// FakeScannerService is a real gRPC ScannerService on a loopback port, for tests that
// run a gateway binary. Both answer through a ScanHandler; PatternVerdicts is one
// that behaves like a string_scan chain: EICAR's test string is REJECTed.
//
//   FakeScannerClient scanner;                   // clean by default
//   scanner.SetHandler(PatternVerdicts());
//
// Thread-safe.
#ifndef SAGATOR_COMMON_TESTING_FAKE_SCANNER_H_
#define SAGATOR_COMMON_TESTING_FAKE_SCANNER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "sagator/scanner/v1/scanner.grpc.pb.h"
#include "common/scanner_client.h"

namespace sagator::testing {

using ScanHandler = std::function<absl::StatusOr<ScanReply>(const scanner::v1::ScanHeader& header,
                                                             const std::string& message)>;

// The test string in EICAR's test file (split so this file is not itself detected).
inline const std::string kEicarString = std::string("EICAR-STANDARD-") + "ANTIVIRUS-TEST-FILE";

using PolicyHandler = std::function<absl::StatusOr<scanner::v1::PolicyResponse>(
    const scanner::v1::PolicyRequest& request)>;

// Clean mail: PASS, level 0, with X-Sagator-ID and X-Sagator-Scanner edits.
// Mail with kEicarString: REJECT, level 1, detection "EICAR-Test", same edits.
// Mail with "FORCE-ME": FORCED_PASS, level 1.5, detection "Forced".
// Mail with "DROP-ME": DROP, level 2, detection "Worm.Fake".
// Mail with "TEMPFAIL-ME": TEMPFAIL with reply text "engine broken".
// Mail with "REWRITE-ME": PASS, message rewritten to "Subject: rewritten\n\nnew body\n".
ScanHandler PatternVerdicts();

class FakeScannerClient : public ScannerClient {
 public:
  FakeScannerClient();
  void SetHandler(ScanHandler handler);
  // CheckPolicy's answers; by default every request gets PASS.
  void SetPolicyHandler(PolicyHandler handler);
  // Each scan sleeps this long first (to hold scans in flight).
  void SetDelay(absl::Duration delay);
  // The requests TryCheckPolicyNow answers (with the policy handler's answer), as
  // the in-process client does for records in memory; by default none.
  void SetAtOnce(std::function<bool(const scanner::v1::PolicyRequest&)> at_once);
  // The requests its LoopDecider answers later on the loop (posted to the
  // io_context, with the policy handler's answer), as the in-process client does
  // for a new triplet it records there; the others it sends back (nullopt). Without
  // one (the default) NewLoopDecider gives nullptr.
  void SetOnLoop(std::function<bool(const scanner::v1::PolicyRequest&)> on_loop);
  // Of those, the ones its LoopDecider holds until their deadline and then sends
  // back, as one whose database stopped answering does.
  void SetLoopStalls(std::function<bool(const scanner::v1::PolicyRequest&)> stalls);

  absl::StatusOr<ScanReply> Scan(const scanner::v1::ScanHeader& header,
                                  absl::string_view message) override;
  absl::StatusOr<scanner::v1::PolicyResponse> CheckPolicy(
      const scanner::v1::PolicyRequest& request) override;
  // Records the batch's size, then asks CheckPolicy for each request.
  std::vector<absl::StatusOr<scanner::v1::PolicyResponse>> CheckPolicies(
      const scanner::v1::PolicyBatchRequest& batch) override;
  std::optional<absl::StatusOr<scanner::v1::PolicyResponse>> TryCheckPolicyNow(
      const scanner::v1::PolicyRequest& request) override;
  std::unique_ptr<LoopDecider> NewLoopDecider(boost::asio::io_context& io) override;
  void CancelAll() override;

  int calls() const;
  // Requests TryCheckPolicyNow answered.
  int at_once_calls() const;
  // Requests its LoopDecider answered on the loop.
  int on_loop_calls() const;
  // Requests CheckPolicy answered (those of batches included).
  int policy_calls() const;
  // The sizes of the CheckPolicies batches, in order.
  std::vector<int> policy_batches() const;
  scanner::v1::ScanHeader last_header() const;
  std::string last_message() const;

 private:
  mutable absl::Mutex mu_;
  ScanHandler handler_ ABSL_GUARDED_BY(mu_);
  // The policy handler's answer (PASS without one).
  absl::StatusOr<scanner::v1::PolicyResponse> Answer(const scanner::v1::PolicyRequest& request);

  PolicyHandler policy_handler_ ABSL_GUARDED_BY(mu_);
  std::function<bool(const scanner::v1::PolicyRequest&)> at_once_ ABSL_GUARDED_BY(mu_);
  int at_once_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<bool(const scanner::v1::PolicyRequest&)> on_loop_ ABSL_GUARDED_BY(mu_);
  int on_loop_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<bool(const scanner::v1::PolicyRequest&)> loop_stalls_ ABSL_GUARDED_BY(mu_);
  int policy_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int> policy_batches_ ABSL_GUARDED_BY(mu_);
  absl::Duration delay_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  scanner::v1::ScanHeader last_header_ ABSL_GUARDED_BY(mu_);
  std::string last_message_ ABSL_GUARDED_BY(mu_);
};

// A gRPC ScannerService on 127.0.0.1 with a free port.
class FakeScannerService : public scanner::v1::ScannerService::Service {
 public:
  explicit FakeScannerService(ScanHandler handler = PatternVerdicts());
  ~FakeScannerService() override;

  // Starts serving; returns the port.
  int Start();
  void Stop();
  int calls() const;
  scanner::v1::ScanHeader last_header() const;
  void SetDelay(absl::Duration delay);
  // CheckPolicy's answers; by default every request gets PASS. Call before Start().
  void SetPolicyHandler(PolicyHandler handler);
  // false: CheckPolicies answers UNIMPLEMENTED, as a scanner-svc older than it did.
  void SetBatching(bool on);
  // Requests answered, by CheckPolicy or within CheckPolicies.
  int policy_calls() const;
  // CheckPolicies calls answered (UNIMPLEMENTED ones not counted).
  int batch_calls() const;
  scanner::v1::PolicyRequest last_policy_request() const;

  grpc::Status CheckPolicy(grpc::ServerContext* context,
                           const scanner::v1::PolicyRequest* request,
                           scanner::v1::PolicyResponse* response) override;
  grpc::Status CheckPolicies(grpc::ServerContext* context,
                             const scanner::v1::PolicyBatchRequest* request,
                             scanner::v1::PolicyBatchResponse* response) override;
  grpc::Status Scan(grpc::ServerContext* context,
                    grpc::ServerReaderWriter<scanner::v1::ScanResponse, scanner::v1::ScanRequest>*
                        stream) override;

 private:
  // One policy request: the delay, then the handler's answer (PASS without one).
  absl::StatusOr<scanner::v1::PolicyResponse> Decide(grpc::ServerContext* context,
                                                     const scanner::v1::PolicyRequest& request);

  ScanHandler handler_;
  std::unique_ptr<grpc::Server> server_;
  mutable absl::Mutex mu_;
  // The policy handler's answer (PASS without one).
  absl::StatusOr<scanner::v1::PolicyResponse> Answer(const scanner::v1::PolicyRequest& request);

  PolicyHandler policy_handler_ ABSL_GUARDED_BY(mu_);
  std::function<bool(const scanner::v1::PolicyRequest&)> at_once_ ABSL_GUARDED_BY(mu_);
  int at_once_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int policy_calls_ ABSL_GUARDED_BY(mu_) = 0;
  bool batching_ ABSL_GUARDED_BY(mu_) = true;
  int batch_calls_ ABSL_GUARDED_BY(mu_) = 0;
  scanner::v1::PolicyRequest last_policy_request_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration delay_ ABSL_GUARDED_BY(mu_);
  scanner::v1::ScanHeader last_header_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sagator::testing

#endif  // SAGATOR_COMMON_TESTING_FAKE_SCANNER_H_
