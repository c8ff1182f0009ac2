#include "scanner-svc/scanner_service.h"

#include <algorithm>
#include <chrono>

#include <boost/asio/post.hpp>

#include <glog/logging.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_util.h"
#include "common/would_wait.h"

namespace sagator {
namespace {

constexpr size_t kChunkSize = 1 << 20;
// What is kept of a message too large to scan: enough for its header block.
constexpr size_t kTooLargeHead = 64 << 10;

common::v1::HeaderEdit::Kind ToProtoKind(engine::HeaderEdit::Kind k) {
  switch (k) {
    case engine::HeaderEdit::Kind::kAdd:
      return common::v1::HeaderEdit::ADD;
    case engine::HeaderEdit::Kind::kReplace:
      return common::v1::HeaderEdit::REPLACE;
    case engine::HeaderEdit::Kind::kRemove:
      return common::v1::HeaderEdit::REMOVE;
  }
  return common::v1::HeaderEdit::KIND_UNSPECIFIED;
}

engine::MessageEnvelope FromProto(const common::v1::Envelope& e) {
  engine::MessageEnvelope out;
  out.sender = e.sender();
  out.recipients.assign(e.recipients().begin(), e.recipients().end());
  out.client_address = e.client().address();
  out.client_name = e.client().name();
  out.helo = e.client().helo();
  return out;
}

}  // namespace

scanner::v1::Verdict ToProto(const ChainVerdict& v) {
  scanner::v1::Verdict out;
  out.set_outcome(v.outcome);
  out.set_level(v.result.level);
  out.set_detection(v.result.name);
  out.set_scanner_path(v.result.path);
  out.set_output(v.result.output);
  for (const engine::HeaderEdit& e : v.edits) {
    auto* h = out.add_header_edits();
    h->set_kind(ToProtoKind(e.kind));
    h->set_name(e.name);
    h->set_value(e.value);
  }
  out.set_sagator_id(v.sagator_id);
  out.set_quarantine_id(v.quarantine_id);
  out.set_message_rewritten(v.rewritten.has_value());
  out.set_not_scanned(v.result.not_scanned);
  out.set_reply_text(v.reply_text);
  return out;
}

ScannerServiceImpl::ScannerServiceImpl(const ChainSet* chains, int max_concurrent_scans,
                                       absl::Duration default_deadline, int policy_threads)
    : chains_(chains),
      max_concurrent_(max_concurrent_scans),
      default_deadline_(default_deadline),
      policy_pool_(std::make_unique<boost::asio::thread_pool>(
          policy_threads > 0 ? policy_threads : std::max(4, 2 * max_concurrent_scans))),
      scan_pool_(std::make_unique<boost::asio::thread_pool>(max_concurrent_scans)) {}

ScannerServiceImpl::~ScannerServiceImpl() {
  policy_pool_->join();
  scan_pool_->join();
}

absl::Time ScannerServiceImpl::DeadlineOf(const grpc::ServerContextBase* context) const {
  auto d = context->deadline();
  absl::Time fallback = absl::Now() + default_deadline_;
  if (d == std::chrono::system_clock::time_point::max()) return fallback;
  return std::min(absl::FromChrono(d), fallback);
}

bool ScannerServiceImpl::AcquireSlot(grpc::ServerContextBase* context, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto free = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ < max_concurrent_; };
  while (!free()) {
    // Wake up now and then to notice a caller that went away.
    absl::Time wake = std::min(deadline, absl::Now() + absl::Milliseconds(100));
    mu_.AwaitWithDeadline(absl::Condition(&free), wake);
    if (free()) break;
    if (absl::Now() >= deadline || context->IsCancelled()) return false;
  }
  ++running_;
  return true;
}

void ScannerServiceImpl::ReleaseSlot() {
  absl::MutexLock lock(&mu_);
  --running_;
}

grpc::Status ScannerServiceImpl::CheckHeader(const scanner::v1::ScanRequest& first) const {
  if (!first.has_header()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first Scan message must be the header");
  }
  if (!chains_->Has(first.header().chain())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no chain named '", first.header().chain(),
                                     "' is configured"));
  }
  return grpc::Status::OK;
}

grpc::Status ScannerServiceImpl::Decide(grpc::ServerContextBase* context,
                                        const scanner::v1::ScanHeader& header,
                                        const std::string& message, int64_t received,
                                        bool too_large, ChainVerdict* out) {
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  absl::StatusOr<ChainVerdict> verdict;
  if (too_large) {
    verdict = chains_->TooLarge(header.chain(), message, std::max<int64_t>(received, header.size()),
                                FromProto(header.envelope()), DeadlineOf(context));
  } else {
    absl::Time deadline = DeadlineOf(context);
    if (!AcquireSlot(context, deadline)) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          "no scan slot became free before the deadline");
    }
    ++active_;
    verdict = chains_->Run(header.chain(), message, FromProto(header.envelope()), deadline,
                           [context] { return context->IsCancelled(); });
    --active_;
    ReleaseSlot();
  }
  if (!verdict.ok()) return ToGrpcStatus(verdict.status());
  if (!verdict->error.ok()) {
    LOG(WARNING) << "scan " << verdict->sagator_id << " failed: " << verdict->error;
  }
  VLOG(1) << "scan " << verdict->sagator_id << " chain=" << header.chain()
          << " size=" << message.size() << " outcome="
          << common::v1::Outcome_Name(verdict->outcome) << " name=" << verdict->result.name;
  *out = *std::move(verdict);
  return grpc::Status::OK;
}

grpc::Status ScannerServiceImpl::Scan(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<scanner::v1::ScanResponse, scanner::v1::ScanRequest>* stream) {
  scanner::v1::ScanRequest req;
  if (!stream->Read(&req)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty Scan stream");
  }
  if (grpc::Status bad = CheckHeader(req); !bad.ok()) return bad;
  const scanner::v1::ScanHeader header = req.header();
  const int64_t limit = chains_->max_message_size();
  bool too_large = header.head_only() || header.size() > limit;
  std::string message;
  int64_t total = 0;
  auto take = [&](std::string* chunk) {
    total += chunk->size();
    if (total > limit && !too_large) {
      too_large = true;
      message.resize(std::min(message.size(), kTooLargeHead));
      message.shrink_to_fit();
    }
    if (too_large) {
      // Keep reading so the client can finish sending, but hold only the head (the
      // log and report of the chain read its header block).
      if (message.size() < kTooLargeHead) {
        message.append(*chunk, 0, std::min(chunk->size(), kTooLargeHead - message.size()));
      }
    } else {
      if (message.empty()) {
        message.swap(*chunk);  // the first chunk is taken, not copied
        if (header.size() > static_cast<int64_t>(message.size())) message.reserve(header.size());
      } else {
        message.append(*chunk);
      }
    }
  };
  take(req.mutable_chunk());
  while (stream->Read(&req)) {
    if (req.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a second header in one stream");
    }
    take(req.mutable_chunk());
  }
  ChainVerdict verdict;
  if (grpc::Status st = Decide(context, header, message, total, too_large, &verdict); !st.ok()) {
    return st;
  }
  scanner::v1::ScanResponse resp;
  *resp.mutable_verdict() = ToProto(verdict);
  if (!verdict.rewritten) {
    // One write, coalesced with the status.
    stream->WriteLast(resp, grpc::WriteOptions());
    return grpc::Status::OK;
  }
  if (!stream->Write(resp)) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  {
    const std::string& m = *verdict.rewritten;
    for (size_t off = 0; off < m.size(); off += kChunkSize) {
      scanner::v1::ScanResponse chunk;
      chunk.set_message_chunk(m.substr(off, kChunkSize));
      if (!stream->Write(chunk)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
    }
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ScannerServiceImpl::ScanOnce(grpc::CallbackServerContext* context,
                                                       const scanner::v1::ScanRequest* request,
                                                       scanner::v1::ScanOnceResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // The context, request and response live until Finish.
  boost::asio::post(*scan_pool_, [this, context, request, response, reactor] {
    reactor->Finish(ScanWhole(context, *request, response));
  });
  return reactor;
}

grpc::Status ScannerServiceImpl::ScanWhole(grpc::ServerContextBase* context,
                                           const scanner::v1::ScanRequest& request,
                                           scanner::v1::ScanOnceResponse* response) {
  if (grpc::Status bad = CheckHeader(request); !bad.ok()) return bad;
  const scanner::v1::ScanHeader& header = request.header();
  const std::string& message = request.chunk();
  if (message.size() > kChunkSize) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("ScanOnce takes at most ", kChunkSize,
                                     " bytes; use Scan for a ", message.size(),
                                     "-byte message"));
  }
  const int64_t received = static_cast<int64_t>(message.size());
  bool too_large =
      header.head_only() || std::max(received, header.size()) > chains_->max_message_size();
  ChainVerdict verdict;
  if (grpc::Status st = Decide(context, header, message, received, too_large, &verdict);
      !st.ok()) {
    return st;
  }
  *response->mutable_verdict() = ToProto(verdict);
  if (verdict.rewritten) *response->mutable_message() = *std::move(verdict.rewritten);
  return grpc::Status::OK;
}

namespace {

void SetResult(absl::StatusOr<scanner::v1::PolicyResponse> r, scanner::v1::PolicyResult* result) {
  if (r.ok()) {
    *result->mutable_response() = *std::move(r);
  } else {
    result->set_error_code(static_cast<int32_t>(r.status().code()));
    result->set_error_message(std::string(r.status().message()));
  }
}

}  // namespace

// Decisions that memory can answer (ChainSet::RunPolicy's memory_only) are made
// here, on gRPC's thread; the rest, which wait on the database, go to the policy
// pool. The context, request and response live until Finish.
grpc::ServerUnaryReactor* ScannerServiceImpl::CheckPolicy(
    grpc::CallbackServerContext* context, const scanner::v1::PolicyRequest* request,
    scanner::v1::PolicyResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto cancelled = [context] { return context->IsCancelled(); };
  auto finish = [reactor, response](absl::StatusOr<scanner::v1::PolicyResponse> r) {
    if (!r.ok()) {
      reactor->Finish(ToGrpcStatus(r.status()));
      return;
    }
    *response = *std::move(r);
    reactor->Finish(grpc::Status::OK);
  };
  absl::StatusOr<scanner::v1::PolicyResponse> now =
      DecidePolicy(*chains_, *request, DeadlineOf(context), cancelled, /*memory_only=*/true);
  if (now.ok() || !IsWouldWait(now.status())) {
    finish(std::move(now));
    return reactor;
  }
  boost::asio::post(*policy_pool_, [this, context, request, cancelled, finish] {
    finish(DecidePolicy(*chains_, *request, DeadlineOf(context), cancelled));
  });
  return reactor;
}

grpc::ServerUnaryReactor* ScannerServiceImpl::CheckPolicies(
    grpc::CallbackServerContext* context, const scanner::v1::PolicyBatchRequest* request,
    scanner::v1::PolicyBatchResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time deadline = DeadlineOf(context);
  auto cancelled = [context] { return context->IsCancelled(); };
  // Every result is in place before the pool fills in the ones that wait.
  response->mutable_results()->Reserve(request->requests_size());
  std::vector<int> waiting;
  for (int i = 0; i < request->requests_size(); ++i) {
    scanner::v1::PolicyResult* result = response->add_results();
    absl::StatusOr<scanner::v1::PolicyResponse> r =
        DecidePolicy(*chains_, request->requests(i), deadline, cancelled, /*memory_only=*/true);
    if (!r.ok() && IsWouldWait(r.status())) {
      waiting.push_back(i);
    } else {
      SetResult(std::move(r), result);
    }
  }
  if (waiting.empty()) {
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  boost::asio::post(*policy_pool_, [this, request, response, reactor, deadline, cancelled,
                                     waiting = std::move(waiting)] {
    for (int i : waiting) {
      SetResult(DecidePolicy(*chains_, request->requests(i), deadline, cancelled),
                response->mutable_results(i));
    }
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

absl::StatusOr<scanner::v1::PolicyResponse> DecidePolicy(const ChainSet& chains,
                                                         const scanner::v1::PolicyRequest& request,
                                                         absl::Time deadline,
                                                         std::function<bool()> cancelled,
                                                         bool memory_only) {
  // Not even the envelope is copied for a chain that cannot run memory-only.
  if (memory_only && !chains.MayRunMemoryOnly(request.chain())) {
    return ChainSet::MayWait(request.chain());
  }
  engine::MessageEnvelope env = FromProto(request.envelope());
  if (!request.recipient().empty() && env.recipients.empty()) {
    env.recipients.push_back(request.recipient());
  }
  absl::StatusOr<ChainVerdict> v = chains.RunPolicy(request.chain(), std::move(env), deadline,
                                                    std::move(cancelled), memory_only);
  if (!v.ok()) return v.status();
  scanner::v1::PolicyResponse response;
  response.set_outcome(v->outcome);
  response.set_level(v->result.level);
  response.set_detection(v->result.name);
  response.set_reply_text(v->reply_text);
  for (const engine::HeaderEdit& e : v->edits) {
    auto* h = response.add_header_edits();
    h->set_kind(ToProtoKind(e.kind));
    h->set_name(e.name);
    h->set_value(e.value);
  }
  return response;
}

}  // namespace sagator
