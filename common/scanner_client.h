// The one client every gateway uses to ask scanner-svc for a verdict.
//
//   ScannerClient client(ScannerTarget(config.proto));
//   absl::StatusOr<ScanReply> r = client.Scan(header, message, absl::Seconds(60));
//   if (!r.ok()) -> TEMPFAIL (scanner-svc down, deadline passed, ...)
//
// A small message travels as one request (header and first chunk together, written
// with WriteLast), a large one as 1 MiB chunks. Several replicas behind one DNS name
// are balanced with gRPC's round_robin policy. Thread-safe; share one per process.
#ifndef SAGATOR_COMMON_SCANNER_CLIENT_H_
#define SAGATOR_COMMON_SCANNER_CLIENT_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sagator/scanner/v1/scanner.grpc.pb.h"

namespace sagator {

struct ScanReply {
  scanner::v1::Verdict verdict;
  // The new message when verdict.message_rewritten.
  std::optional<std::string> rewritten;
};

class ScannerClient {
 public:
  // `target` is a gRPC target ("127.0.0.1:7290", "dns:///scanner:7290").
  explicit ScannerClient(const std::string& target);
  explicit ScannerClient(std::shared_ptr<grpc::Channel> channel);

  // Scans `message`. header.size is set from the message when it is 0. Errors: the
  // gRPC status (Unavailable when scanner-svc is unreachable, DeadlineExceeded, ...).
  absl::StatusOr<ScanReply> Scan(scanner::v1::ScanHeader header, absl::string_view message,
                                 absl::Duration timeout) const;

  // Runs a policy chain (SMTP-stage checks).
  absl::StatusOr<scanner::v1::PolicyResponse> CheckPolicy(
      const scanner::v1::PolicyRequest& request, absl::Duration timeout) const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<scanner::v1::ScannerService::Stub> stub_;
};

}  // namespace sagator

#endif  // SAGATOR_COMMON_SCANNER_CLIENT_H_
