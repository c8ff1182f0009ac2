// The seam between sgfilterd and scanner-svc: scan one whole message, get the verdict
// (and the rewritten message when a scanner rewrote it).
//
//   std::unique_ptr<MessageScanner> scanner =
//       NewGrpcMessageScanner("127.0.0.1:7290", absl::Seconds(60), 50 << 20);
//   absl::StatusOr<ScanResult> r = scanner->Scan(header, message);
//
// Scan blocks (one gRPC call with a deadline); sgfilterd calls it on its scan
// threads, never on an I/O thread. Thread-safe: Scan may run on many threads at once.
// testing/fake_message_scanner.h has an in-memory fake.
#ifndef SAGATOR_SERVICES_SGFILTERD_MESSAGE_SCANNER_H_
#define SAGATOR_SERVICES_SGFILTERD_MESSAGE_SCANNER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sagator/scanner/v1/scanner.pb.h"

namespace sagator::sgfilterd {

struct ScanResult {
  scanner::v1::Verdict verdict;
  // The new message when verdict.message_rewritten(), else empty.
  std::string rewritten_message;
};

class MessageScanner {
 public:
  virtual ~MessageScanner() = default;

  // Scans `message`; header.size is set by the caller. A failed call (scanner-svc
  // unreachable, deadline, broken stream) returns its status.
  virtual absl::StatusOr<ScanResult> Scan(const scanner::v1::ScanHeader& header,
                                          absl::string_view message) = 0;

  // Cancels every call in flight and makes later calls fail with CANCELLED (used at
  // shutdown, after the grace period).
  virtual void CancelAll() = 0;
};

// A client for scanner-svc's ScannerService.Scan at `target` (any gRPC target, e.g.
// "127.0.0.1:7290" or "dns:///scanner:7290"; several addresses are balanced
// round-robin). Every call gets `deadline`. A rewritten message larger than
// 2 * max_message_size is refused as a broken answer.
std::unique_ptr<MessageScanner> NewGrpcMessageScanner(const std::string& target,
                                                      absl::Duration deadline,
                                                      int64_t max_message_size);

}  // namespace sagator::sgfilterd

#endif  // SAGATOR_SERVICES_SGFILTERD_MESSAGE_SCANNER_H_
