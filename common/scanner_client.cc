#include "common/scanner_client.h"

#include <grpcpp/grpcpp.h>

#include "common/status_util.h"

namespace sagator {
namespace {

constexpr size_t kChunkSize = 1 << 20;

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetMaxReceiveMessageSize(16 << 20);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

ScannerClient::ScannerClient(const std::string& target) : ScannerClient(MakeChannel(target)) {}

ScannerClient::ScannerClient(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)), stub_(scanner::v1::ScannerService::NewStub(channel_)) {}

absl::StatusOr<ScanReply> ScannerClient::Scan(scanner::v1::ScanHeader header,
                                              absl::string_view message,
                                              absl::Duration timeout) const {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  auto stream = stub_->Scan(&ctx);
  if (header.size() == 0) header.set_size(message.size());
  scanner::v1::ScanRequest req;
  *req.mutable_header() = std::move(header);
  size_t pos = std::min(message.size(), kChunkSize);
  req.set_chunk(std::string(message.substr(0, pos)));
  // WriteLast half-closes with the message: one operation for a small message.
  auto send = [&stream](const scanner::v1::ScanRequest& r, bool last) {
    if (!last) return stream->Write(r);
    stream->WriteLast(r, grpc::WriteOptions());
    return true;
  };
  bool ok = send(req, pos == message.size());
  while (ok && pos < message.size()) {
    scanner::v1::ScanRequest chunk;
    size_t n = std::min(kChunkSize, message.size() - pos);
    chunk.set_chunk(std::string(message.substr(pos, n)));
    pos += n;
    ok = send(chunk, pos == message.size());
  }
  // A failed write means the call is over; Finish says why.
  ScanReply reply;
  scanner::v1::ScanResponse resp;
  bool have_verdict = false;
  while (stream->Read(&resp)) {
    if (resp.has_verdict()) {
      reply.verdict = resp.verdict();
      have_verdict = true;
      if (reply.verdict.message_rewritten()) reply.rewritten.emplace();
    } else if (reply.rewritten) {
      reply.rewritten->append(resp.message_chunk());
    }
  }
  grpc::Status st = stream->Finish();
  if (!st.ok()) return FromGrpcStatus(st);
  if (!have_verdict) return absl::InternalError("scanner-svc answered without a verdict");
  return reply;
}

absl::StatusOr<scanner::v1::PolicyResponse> ScannerClient::CheckPolicy(
    const scanner::v1::PolicyRequest& request, absl::Duration timeout) const {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  scanner::v1::PolicyResponse resp;
  grpc::Status st = stub_->CheckPolicy(&ctx, request, &resp);
  if (!st.ok()) return FromGrpcStatus(st);
  return resp;
}

}  // namespace sagator
