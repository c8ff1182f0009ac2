#include "common/scanner_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/status_util.h"
#include "sagator/scanner/v1/scanner.grpc.pb.h"

namespace sagator {
namespace {

using scanner::v1::ScannerService;
using scanner::v1::ScanRequest;
using scanner::v1::ScanResponse;

// The API's chunk limit.
constexpr size_t kChunkSize = 1 << 20;

class GrpcScannerClient : public ScannerClient {
 public:
  GrpcScannerClient(const std::string& target, absl::Duration deadline, int64_t max_message_size)
      : deadline_(deadline), max_rewritten_size_(2 * max_message_size) {
    grpc::ChannelArguments args;
    args.SetLoadBalancingPolicyName("round_robin");
    // Chunks are at most 1 MiB; leave room for the verdict's other fields.
    args.SetMaxReceiveMessageSize(8 << 20);
    args.SetMaxSendMessageSize(8 << 20);
    channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    stub_ = ScannerService::NewStub(channel_);
  }

  absl::StatusOr<ScanReply> Scan(const scanner::v1::ScanHeader& header,
                                  absl::string_view message) override {
    if (message.size() <= kChunkSize && !once_unimplemented_.load(std::memory_order_relaxed)) {
      absl::StatusOr<ScanReply> r = ScanOnce(header, message);
      if (r.ok() || r.status().code() != absl::StatusCode::kUnimplemented) return r;
      // A scanner-svc older than ScanOnce: streams from now on.
      once_unimplemented_ = true;
    }
    return ScanStream(header, message);
  }

 private:
  // One unary call: the whole message in one request, the verdict in one answer.
  absl::StatusOr<ScanReply> ScanOnce(const scanner::v1::ScanHeader& header,
                                     absl::string_view message) {
    grpc::ClientContext ctx;
    if (!Register(ctx)) return absl::CancelledError("the gateway is shutting down");
    absl::Cleanup forget = [&] { Forget(ctx); };
    ScanRequest req;
    *req.mutable_header() = header;
    req.set_chunk(message.data(), message.size());
    scanner::v1::ScanOnceResponse resp;
    grpc::Status st = stub_->ScanOnce(&ctx, req, &resp);
    if (!st.ok()) return FromGrpcStatus(st);
    if (!resp.has_verdict()) return absl::InternalError("scanner-svc sent no verdict");
    if (!resp.verdict().message_rewritten() && !resp.message().empty()) {
      return absl::InternalError("scanner-svc sent a message it did not rewrite");
    }
    if (static_cast<int64_t>(resp.message().size()) > max_rewritten_size_) {
      return absl::InternalError("rewritten message from scanner-svc is too large");
    }
    ScanReply result;
    result.verdict = std::move(*resp.mutable_verdict());
    result.rewritten_message = std::move(*resp.mutable_message());
    return result;
  }

  // The streaming call, for messages of any size.
  absl::StatusOr<ScanReply> ScanStream(const scanner::v1::ScanHeader& header,
                                       absl::string_view message) {
    grpc::ClientContext ctx;
    if (!Register(ctx)) return absl::CancelledError("the gateway is shutting down");
    absl::Cleanup forget = [&] { Forget(ctx); };

    std::unique_ptr<grpc::ClientReaderWriter<ScanRequest, ScanResponse>> stream = stub_->Scan(&ctx);
    // The header travels with the first chunk, and the last request half-closes
    // the stream (WriteLast): a small message is one request.
    ScanRequest req;
    *req.mutable_header() = header;
    size_t pos = std::min(message.size(), kChunkSize);
    req.set_chunk(message.data(), pos);
    for (;;) {
      if (pos == message.size()) {
        stream->WriteLast(req, grpc::WriteOptions());
        break;
      }
      if (!stream->Write(req)) break;  // the call is over; Finish says why
      req.Clear();
      size_t n = std::min(kChunkSize, message.size() - pos);
      req.set_chunk(message.data() + pos, n);
      pos += n;
    }

    ScanReply result;
    bool have_verdict = false;
    absl::Status broken;
    ScanResponse resp;
    while (stream->Read(&resp)) {
      if (!have_verdict) {
        if (!resp.has_verdict()) {
          broken = absl::InternalError("scanner-svc answered without a verdict first");
          ctx.TryCancel();
          break;
        }
        result.verdict = std::move(*resp.mutable_verdict());
        have_verdict = true;
        continue;
      }
      if (resp.part_case() != ScanResponse::kMessageChunk || !result.verdict.message_rewritten()) {
        broken = absl::InternalError("scanner-svc sent an unexpected message after the verdict");
        ctx.TryCancel();
        break;
      }
      if (static_cast<int64_t>(result.rewritten_message.size() + resp.message_chunk().size()) >
          max_rewritten_size_) {
        broken = absl::InternalError("rewritten message from scanner-svc is too large");
        ctx.TryCancel();
        break;
      }
      result.rewritten_message += resp.message_chunk();
    }
    grpc::Status st = stream->Finish();
    if (!broken.ok()) return broken;
    if (!st.ok()) return FromGrpcStatus(st);
    if (!have_verdict) return absl::InternalError("scanner-svc sent no verdict");
    return result;
  }

 public:
  absl::StatusOr<scanner::v1::PolicyResponse> CheckPolicy(
      const scanner::v1::PolicyRequest& request) override {
    grpc::ClientContext ctx;
    if (!Register(ctx)) return absl::CancelledError("the gateway is shutting down");
    absl::Cleanup forget = [&] { Forget(ctx); };
    scanner::v1::PolicyResponse response;
    grpc::Status st = stub_->CheckPolicy(&ctx, request, &response);
    if (!st.ok()) return FromGrpcStatus(st);
    return response;
  }

  // One CheckPolicies call for the batch; CheckPolicy for a single request, and for
  // each request in turn once a server answered UNIMPLEMENTED (one older than
  // CheckPolicies).
  std::vector<absl::StatusOr<scanner::v1::PolicyResponse>> CheckPolicies(
      const scanner::v1::PolicyBatchRequest& batch) override {
    if (batch.requests_size() > 1 && !batch_unimplemented_.load(std::memory_order_relaxed)) {
      absl::StatusOr<std::vector<absl::StatusOr<scanner::v1::PolicyResponse>>> out =
          CallCheckPolicies(batch);
      if (out.ok()) return *std::move(out);
      if (out.status().code() != absl::StatusCode::kUnimplemented) {
        return std::vector<absl::StatusOr<scanner::v1::PolicyResponse>>(
            static_cast<size_t>(batch.requests_size()), out.status());
      }
      batch_unimplemented_ = true;
    }
    return ScannerClient::CheckPolicies(batch);
  }

  void CancelAll() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    for (grpc::ClientContext* ctx : active_) ctx->TryCancel();
  }

 private:
  // The call's own failure (unreachable, deadline, UNIMPLEMENTED, a broken answer) as
  // the status; the requests' answers otherwise.
  absl::StatusOr<std::vector<absl::StatusOr<scanner::v1::PolicyResponse>>> CallCheckPolicies(
      const scanner::v1::PolicyBatchRequest& batch) {
    const size_t n = static_cast<size_t>(batch.requests_size());
    grpc::ClientContext ctx;
    if (!Register(ctx)) return absl::CancelledError("the gateway is shutting down");
    absl::Cleanup forget = [&] { Forget(ctx); };
    scanner::v1::PolicyBatchResponse response;
    grpc::Status st = stub_->CheckPolicies(&ctx, batch, &response);
    if (!st.ok()) return FromGrpcStatus(st);
    if (static_cast<size_t>(response.results_size()) != n) {
      return absl::InternalError(absl::StrCat("scanner-svc answered ", response.results_size(),
                                              " of ", n, " policy requests"));
    }
    std::vector<absl::StatusOr<scanner::v1::PolicyResponse>> out;
    out.reserve(n);
    for (scanner::v1::PolicyResult& r : *response.mutable_results()) {
      if (r.error_code() == 0) {
        out.emplace_back(std::move(*r.mutable_response()));
      } else {
        out.emplace_back(absl::Status(static_cast<absl::StatusCode>(r.error_code()),
                                      r.error_message()));
      }
    }
    return out;
  }

  // Sets the deadline and tracks `ctx` for CancelAll; false after CancelAll.
  bool Register(grpc::ClientContext& ctx) {
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
    absl::MutexLock lock(&mu_);
    if (cancelled_) return false;
    active_.insert(&ctx);
    return true;
  }
  void Forget(grpc::ClientContext& ctx) {
    absl::MutexLock lock(&mu_);
    active_.erase(&ctx);
  }

  const absl::Duration deadline_;
  const int64_t max_rewritten_size_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<ScannerService::Stub> stub_;
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> once_unimplemented_{false};
  std::atomic<bool> batch_unimplemented_{false};
  absl::flat_hash_set<grpc::ClientContext*> active_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::optional<absl::StatusOr<scanner::v1::PolicyResponse>> ScannerClient::TryCheckPolicyNow(
    const scanner::v1::PolicyRequest&) {
  return std::nullopt;
}

std::vector<absl::StatusOr<scanner::v1::PolicyResponse>> ScannerClient::CheckPolicies(
    const scanner::v1::PolicyBatchRequest& batch) {
  std::vector<absl::StatusOr<scanner::v1::PolicyResponse>> out;
  out.reserve(batch.requests_size());
  for (const scanner::v1::PolicyRequest& r : batch.requests()) out.push_back(CheckPolicy(r));
  return out;
}

std::unique_ptr<ScannerClient> NewGrpcScannerClient(const std::string& target,
                                                      absl::Duration deadline,
                                                      int64_t max_message_size) {
  return std::make_unique<GrpcScannerClient>(target, deadline, max_message_size);
}

}  // namespace sagator
