// scanner-svc's gRPC face: translates sagator.scanner.v1 calls into ChainSet runs.
// No scanning logic lives here: see chain_set.h.
//
// Scan reads the header and the chunks into memory (bounded by the size limit: a
// larger message is drained and gets the "not scanned: too large" verdict), waits
// for one of `max_concurrent_scans` slots, runs the chain under the call's deadline
// (or global.scan_timeout when the caller set none), and streams the verdict back.
// ScanOnce does the same for a message that came whole in one request.
// Thread-safe.
#ifndef SAGATOR_SCANNER_SVC_SCANNER_SERVICE_H_
#define SAGATOR_SCANNER_SVC_SCANNER_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>

#include <boost/asio/thread_pool.hpp>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "sagator/scanner/v1/scanner.grpc.pb.h"
#include "scanner-svc/chain_set.h"

namespace sagator {

// ScanOnce and CheckPolicy use gRPC's callback API and do their work on pools of
// their own (ScanOnce's has one thread per scan slot): the synchronous server's
// thread hand-offs cost more than a small scan or a policy decision (scan_bench at
// 50 KB: 1,030-1,100 msg/s synchronous, 1,440-1,500 this way; policy_bench: 40%
// more decisions per second). Nothing runs on gRPC's own threads, so a hung daemon
// or database stalls only the calls that wait for it. Scan stays synchronous.
class ScannerServiceImpl final
    : public scanner::v1::ScannerService::WithCallbackMethod_CheckPolicies<
          scanner::v1::ScannerService::WithCallbackMethod_CheckPolicy<
              scanner::v1::ScannerService::WithCallbackMethod_ScanOnce<
                  scanner::v1::ScannerService::Service>>> {
 public:
  // `policy_threads` decide CheckPolicy calls (0: 2 * max_concurrent_scans, at
  // least 4).
  ScannerServiceImpl(const ChainSet* chains, int max_concurrent_scans,
                     absl::Duration default_deadline, int policy_threads = 0);
  // Waits for the policy decisions in flight.
  ~ScannerServiceImpl() override;

  grpc::Status Scan(grpc::ServerContext* context,
                    grpc::ServerReaderWriter<scanner::v1::ScanResponse,
                                             scanner::v1::ScanRequest>* stream) override;
  grpc::ServerUnaryReactor* ScanOnce(grpc::CallbackServerContext* context,
                                     const scanner::v1::ScanRequest* request,
                                     scanner::v1::ScanOnceResponse* response) override;
  grpc::ServerUnaryReactor* CheckPolicy(grpc::CallbackServerContext* context,
                                        const scanner::v1::PolicyRequest* request,
                                        scanner::v1::PolicyResponse* response) override;
  // Decides the batch's requests one after the other on one policy thread (the
  // requests of a batch are ones that would otherwise have queued behind each other).
  grpc::ServerUnaryReactor* CheckPolicies(grpc::CallbackServerContext* context,
                                          const scanner::v1::PolicyBatchRequest* request,
                                          scanner::v1::PolicyBatchResponse* response) override;

  // Scans running now (for tests and metrics).
  int active_scans() const { return active_.load(); }

 private:
  // Waits for a free scan slot until `deadline`; false when the time ran out or the
  // caller cancelled.
  bool AcquireSlot(grpc::ServerContextBase* context, absl::Time deadline);
  void ReleaseSlot();
  absl::Time DeadlineOf(const grpc::ServerContextBase* context) const;
  // ScanOnce's work, on the scan pool.
  grpc::Status ScanWhole(grpc::ServerContextBase* context, const scanner::v1::ScanRequest& request,
                         scanner::v1::ScanOnceResponse* response);
  // The first request of a scan names a configured chain.
  grpc::Status CheckHeader(const scanner::v1::ScanRequest& first) const;
  // Runs the header's chain on `message` under the call's deadline, or gives the
  // "too large" verdict for `received` bytes; both Scan and ScanOnce end here.
  grpc::Status Decide(grpc::ServerContextBase* context, const scanner::v1::ScanHeader& header,
                      const std::string& message, int64_t received, bool too_large,
                      ChainVerdict* out);

  const ChainSet* chains_;
  const int max_concurrent_;
  const absl::Duration default_deadline_;
  absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int> active_{0};
  std::unique_ptr<boost::asio::thread_pool> policy_pool_;
  std::unique_ptr<boost::asio::thread_pool> scan_pool_;
};

// Runs a policy chain for one CheckPolicy request: the whole of CheckPolicy without
// gRPC, so smtpd_policy can decide in-process too. NotFound for an unknown chain,
// DeadlineExceeded/Cancelled when the caller's time ran out. With `memory_only`, for
// a caller on an event loop's thread: WouldWaitError when the decision would wait
// (see ChainSet::RunPolicy).
absl::StatusOr<scanner::v1::PolicyResponse> DecidePolicy(const ChainSet& chains,
                                                         const scanner::v1::PolicyRequest& request,
                                                         absl::Time deadline,
                                                         std::function<bool()> cancelled,
                                                         bool memory_only = false);

// Converts the engine's verdict to the wire verdict.
scanner::v1::Verdict ToProto(const ChainVerdict& v);

}  // namespace sagator

#endif  // SAGATOR_SCANNER_SVC_SCANNER_SERVICE_H_
