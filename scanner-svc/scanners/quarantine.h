// The quarantine scanner's store: quarantine-svc's Store over gRPC.
//
//   auto sink = std::make_shared<QuarantineClient>("127.0.0.1:7293", absl::Seconds(30));
//   engine::Quarantine scanner(sink, std::move(inner));
//
// Each Store streams the envelope, the verdict and the message in 64 KiB chunks, with
// a deadline of the smaller of `timeout` and the scan's own deadline. Any failure
// (quarantine-svc down, over its deadline, a database error) is an error, so the
// message gets TEMPFAIL and the MTA keeps it.
//
// Thread-safe: one channel shared by every scan thread.
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_QUARANTINE_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_QUARANTINE_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"
#include "sagator/quarantine/v1/quarantine.grpc.pb.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::scanners {

class QuarantineClient final : public engine::QuarantineSink {
 public:
  QuarantineClient(const std::string& target, absl::Duration timeout);
  absl::StatusOr<std::string> Store(const engine::QuarantineItem& item) const override;

 private:
  std::string target_;
  absl::Duration timeout_;
  std::unique_ptr<quarantine::v1::QuarantineService::Stub> stub_;
};

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_QUARANTINE_H_
