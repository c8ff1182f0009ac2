// The one client every gateway uses to ask scanner-svc for a verdict: scan one
// whole message, get the verdict (and the rewritten message when a scanner rewrote
// it). An interface, so gateway logic is tested against an in-memory fake.
//
//   std::unique_ptr<ScannerClient> scanner =
//       NewGrpcScannerClient("127.0.0.1:7290", absl::Seconds(60), 50 << 20);
//   absl::StatusOr<ScanReply> r = scanner->Scan(header, message);
//
// Scan, CheckPolicy and CheckPolicies block (one gRPC call with a deadline): gateways
// call them on their scan threads, never on an I/O thread; TryCheckPolicyNow is the
// one call an I/O thread may make. Thread-safe: Scan may run on many threads at once.
// common/testing/fake_scanner.h has an in-memory fake.
#ifndef SAGATOR_COMMON_SCANNER_CLIENT_H_
#define SAGATOR_COMMON_SCANNER_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sagator/scanner/v1/scanner.pb.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace sagator {

struct ScanReply {
  scanner::v1::Verdict verdict;
  // The new message when verdict.message_rewritten(), else empty.
  std::string rewritten_message;
};

class ScannerClient {
 public:
  virtual ~ScannerClient() = default;

  // Scans `message`; header.size is set by the caller. A failed call (scanner-svc
  // unreachable, deadline, broken stream) returns its status.
  virtual absl::StatusOr<ScanReply> Scan(const scanner::v1::ScanHeader& header,
                                          absl::string_view message) = 0;

  // Runs a policy chain at an SMTP stage (recipient_policy at RCPT). Same deadline
  // and failure reporting as Scan.
  virtual absl::StatusOr<scanner::v1::PolicyResponse> CheckPolicy(
      const scanner::v1::PolicyRequest& request) = 0;

  // Several policy requests at once (smtpd_policy batches the requests that arrive
  // while its earlier calls are in flight): the answers in the same order, each with
  // its own status. This default asks CheckPolicy for each in turn.
  virtual std::vector<absl::StatusOr<scanner::v1::PolicyResponse>> CheckPolicies(
      const scanner::v1::PolicyBatchRequest& batch);

  // CheckPolicy's answer when it can be had without waiting on anything (the
  // in-process client, when the chain's records are in memory), for a caller on an
  // I/O thread; nullopt when the decision would wait: then call CheckPolicy on a
  // thread that may block. The default: always nullopt.
  virtual std::optional<absl::StatusOr<scanner::v1::PolicyResponse>> TryCheckPolicyNow(
      const scanner::v1::PolicyRequest& request);

  // Decides policy requests on one event loop's thread (its io_context), without
  // blocking it: TryCheckPolicyNow, and beyond it what waits only for one database
  // write the decider can run on the loop itself (in-process on PostgreSQL:
  // recording a never-seen greylist triplet on a connection of its own), which
  // spares the hand-off to a thread that may wait and back. Use it from that thread
  // only; it must not outlive the client or the io_context.
  class LoopDecider {
   public:
    using Done = std::function<void(std::optional<absl::StatusOr<scanner::v1::PolicyResponse>>)>;
    virtual ~LoopDecider() = default;
    // Calls `done` once, on the loop's thread (at once when memory answers), by
    // `deadline`: with the decision, or with nullopt when it cannot be had this way
    // (then call CheckPolicy on a thread that may block).
    virtual void Decide(std::shared_ptr<const scanner::v1::PolicyRequest> request,
                        absl::Time deadline, Done done) = 0;
  };
  // A decider for the loop of `io`; nullptr (the default) when this client has none.
  virtual std::unique_ptr<LoopDecider> NewLoopDecider(boost::asio::io_context& io) {
    return nullptr;
  }

  // Cancels every call in flight and makes later calls fail with CANCELLED (used at
  // a gateway's shutdown, after its grace period).
  virtual void CancelAll() = 0;
};

// A client for scanner-svc's ScannerService.Scan at `target` (any gRPC target, e.g.
// "127.0.0.1:7290" or "dns:///scanner:7290"; several addresses are balanced
// round-robin). Every call gets `deadline`. A rewritten message larger than
// 2 * max_message_size is refused as a broken answer.
std::unique_ptr<ScannerClient> NewGrpcScannerClient(const std::string& target,
                                                      absl::Duration deadline,
                                                      int64_t max_message_size);

}  // namespace sagator

#endif  // SAGATOR_COMMON_SCANNER_CLIENT_H_
