#include "scanner-svc/scanners/quarantine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_util.h"

namespace sagator::scanners {

namespace qv1 = quarantine::v1;

QuarantineClient::QuarantineClient(const std::string& target, absl::Duration timeout)
    : target_(target),
      timeout_(timeout),
      stub_(qv1::QuarantineService::NewStub(
          grpc::CreateChannel(target, grpc::InsecureChannelCredentials()))) {}

absl::StatusOr<std::string> QuarantineClient::Store(const engine::QuarantineItem& item) const {
  grpc::ClientContext context;
  absl::Time deadline = std::min(item.deadline, absl::Now() + timeout_);
  context.set_deadline(absl::ToChronoTime(deadline));
  qv1::StoreResponse response;
  std::unique_ptr<grpc::ClientWriter<qv1::StoreRequest>> writer = stub_->Store(&context, &response);
  qv1::StoreRequest first;
  qv1::Entry* entry = first.mutable_entry();
  entry->set_sagator_id(item.sagator_id);
  auto* env = entry->mutable_envelope();
  env->set_sender(item.envelope->sender);
  for (const std::string& r : item.envelope->recipients) env->add_recipients(r);
  env->mutable_client()->set_address(item.envelope->client_address);
  env->mutable_client()->set_name(item.envelope->client_name);
  env->mutable_client()->set_helo(item.envelope->helo);
  entry->set_detection(item.result->name);
  entry->set_level(item.result->level);
  entry->set_scanner_path(item.result->path);
  entry->set_outcome(static_cast<common::v1::Outcome>(item.outcome));
  entry->set_size(static_cast<int64_t>(item.message.size()));
  bool sent = writer->Write(first);
  constexpr size_t kChunk = 64 * 1024;
  qv1::StoreRequest chunk;
  for (size_t at = 0; sent && at < item.message.size(); at += kChunk) {
    chunk.set_chunk(std::string(item.message.substr(at, kChunk)));
    sent = writer->Write(chunk);
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) {
    absl::Status s = FromGrpcStatus(status);
    return absl::Status(s.code(), absl::StrCat("quarantine-svc at ", target_, ": ", s.message()));
  }
  return response.id();
}

}  // namespace sagator::scanners
