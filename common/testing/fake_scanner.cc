#include "common/testing/fake_scanner.h"

#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sagator::testing {

using common::v1::HeaderEdit;
using scanner::v1::ScanHeader;
using scanner::v1::ScanRequest;
using scanner::v1::ScanResponse;

namespace {

void AddEdit(scanner::v1::Verdict& v, const std::string& name, const std::string& value) {
  HeaderEdit* e = v.add_header_edits();
  e->set_kind(HeaderEdit::ADD);
  e->set_name(name);
  e->set_value(value);
}

}  // namespace

ScanHandler PatternVerdicts() {
  return [](const ScanHeader& header, const std::string& message) -> absl::StatusOr<ScanReply> {
    ScanReply r;
    scanner::v1::Verdict& v = r.verdict;
    v.set_sagator_id("20240101-000000-0001-00001-AbCdEf@test");
    AddEdit(v, "X-Sagator-ID", v.sagator_id());
    AddEdit(v, "X-Sagator-Scanner", absl::StrCat("test at test; ", header.chain()));
    if (absl::StrContains(message, kEicarString)) {
      v.set_outcome(common::v1::REJECT);
      v.set_level(1.0);
      v.set_detection("EICAR-Test");
      v.set_scanner_path("string_scan()");
    } else if (absl::StrContains(message, "FORCE-ME")) {
      v.set_outcome(common::v1::FORCED_PASS);
      v.set_level(1.5);
      v.set_detection("Forced");
    } else if (absl::StrContains(message, "DROP-ME")) {
      v.set_outcome(common::v1::DROP);
      v.set_level(2);
      v.set_detection("Worm.Fake");
    } else if (absl::StrContains(message, "TEMPFAIL-ME")) {
      v.set_outcome(common::v1::TEMPFAIL);
      v.set_reply_text("engine broken");
      v.clear_header_edits();
    } else if (absl::StrContains(message, "REWRITE-ME")) {
      v.set_outcome(common::v1::PASS);
      v.set_message_rewritten(true);
      r.rewritten_message = "Subject: rewritten\n\nnew body\n";
    } else {
      v.set_outcome(common::v1::PASS);
    }
    return r;
  };
}

FakeScannerClient::FakeScannerClient() : handler_(PatternVerdicts()) {}

void FakeScannerClient::SetHandler(ScanHandler handler) {
  absl::MutexLock lock(&mu_);
  handler_ = std::move(handler);
}

void FakeScannerClient::SetDelay(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  delay_ = delay;
}

absl::StatusOr<ScanReply> FakeScannerClient::Scan(const ScanHeader& header,
                                                    absl::string_view message) {
  ScanHandler handler;
  absl::Duration delay;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("cancelled");
    ++calls_;
    last_header_ = header;
    last_message_ = std::string(message);
    handler = handler_;
    delay = delay_;
  }
  {
    // Wakes early when cancelled.
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&cancelled_), delay);
    if (cancelled_) return absl::CancelledError("cancelled");
  }
  return handler(header, std::string(message));
}

void FakeScannerClient::SetPolicyHandler(PolicyHandler handler) {
  absl::MutexLock lock(&mu_);
  policy_handler_ = std::move(handler);
}

void FakeScannerClient::SetAtOnce(std::function<bool(const scanner::v1::PolicyRequest&)> at_once) {
  absl::MutexLock lock(&mu_);
  at_once_ = std::move(at_once);
}

absl::StatusOr<scanner::v1::PolicyResponse> FakeScannerClient::CheckPolicy(
    const scanner::v1::PolicyRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("cancelled");
    ++policy_calls_;
  }
  return Answer(request);
}

std::optional<absl::StatusOr<scanner::v1::PolicyResponse>> FakeScannerClient::TryCheckPolicyNow(
    const scanner::v1::PolicyRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    if (!at_once_ || !at_once_(request)) return std::nullopt;
    ++at_once_calls_;
  }
  return Answer(request);
}

void FakeScannerClient::SetOnLoop(std::function<bool(const scanner::v1::PolicyRequest&)> on_loop) {
  absl::MutexLock lock(&mu_);
  on_loop_ = std::move(on_loop);
}

std::unique_ptr<ScannerClient::LoopDecider> FakeScannerClient::NewLoopDecider(
    boost::asio::io_context& io) {
  class Decider : public LoopDecider {
   public:
    Decider(FakeScannerClient* client, boost::asio::io_context& io) : client_(client), io_(io) {}
    void Decide(std::shared_ptr<const scanner::v1::PolicyRequest> request, absl::Time deadline,
                Done done) override {
      if (auto now = client_->TryCheckPolicyNow(*request)) return done(std::move(now));
      {
        absl::MutexLock lock(&client_->mu_);
        if (!client_->on_loop_(*request)) return done(std::nullopt);
        if (client_->loop_stalls_ && client_->loop_stalls_(*request)) {
          auto timer = std::make_shared<boost::asio::steady_timer>(
              io_, std::chrono::microseconds(absl::ToInt64Microseconds(deadline - absl::Now())));
          timer->async_wait([timer, done = std::move(done)](const boost::system::error_code&) {
            done(std::nullopt);
          });
          return;
        }
        ++client_->on_loop_calls_;
      }
      boost::asio::post(io_, [client = client_, request, done = std::move(done)] {
        done(client->Answer(*request));
      });
    }

   private:
    FakeScannerClient* client_;
    boost::asio::io_context& io_;
  };
  absl::MutexLock lock(&mu_);
  if (!on_loop_) return nullptr;
  return std::make_unique<Decider>(this, io);
}

void FakeScannerClient::SetLoopStalls(
    std::function<bool(const scanner::v1::PolicyRequest&)> stalls) {
  absl::MutexLock lock(&mu_);
  loop_stalls_ = std::move(stalls);
}

int FakeScannerClient::on_loop_calls() const {
  absl::MutexLock lock(&mu_);
  return on_loop_calls_;
}

int FakeScannerClient::at_once_calls() const {
  absl::MutexLock lock(&mu_);
  return at_once_calls_;
}

absl::StatusOr<scanner::v1::PolicyResponse> FakeScannerClient::Answer(
    const scanner::v1::PolicyRequest& request) {
  PolicyHandler handler;
  {
    absl::MutexLock lock(&mu_);
    handler = policy_handler_;
  }
  if (!handler) {
    scanner::v1::PolicyResponse pass;
    pass.set_outcome(common::v1::PASS);
    return pass;
  }
  return handler(request);
}

std::vector<absl::StatusOr<scanner::v1::PolicyResponse>> FakeScannerClient::CheckPolicies(
    const scanner::v1::PolicyBatchRequest& batch) {
  {
    absl::MutexLock lock(&mu_);
    policy_batches_.push_back(batch.requests_size());
  }
  return ScannerClient::CheckPolicies(batch);
}

std::vector<int> FakeScannerClient::policy_batches() const {
  absl::MutexLock lock(&mu_);
  return policy_batches_;
}

int FakeScannerClient::policy_calls() const {
  absl::MutexLock lock(&mu_);
  return policy_calls_;
}

void FakeScannerClient::CancelAll() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}

int FakeScannerClient::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

ScanHeader FakeScannerClient::last_header() const {
  absl::MutexLock lock(&mu_);
  return last_header_;
}

std::string FakeScannerClient::last_message() const {
  absl::MutexLock lock(&mu_);
  return last_message_;
}

FakeScannerService::FakeScannerService(ScanHandler handler) : handler_(std::move(handler)) {}

FakeScannerService::~FakeScannerService() { Stop(); }

int FakeScannerService::Start() {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  return port;
}

void FakeScannerService::Stop() {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  server_->Wait();
  server_.reset();
}

int FakeScannerService::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

ScanHeader FakeScannerService::last_header() const {
  absl::MutexLock lock(&mu_);
  return last_header_;
}

void FakeScannerService::SetDelay(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  delay_ = delay;
}

void FakeScannerService::SetPolicyHandler(PolicyHandler handler) {
  absl::MutexLock lock(&mu_);
  policy_handler_ = std::move(handler);
}

int FakeScannerService::policy_calls() const {
  absl::MutexLock lock(&mu_);
  return policy_calls_;
}

scanner::v1::PolicyRequest FakeScannerService::last_policy_request() const {
  absl::MutexLock lock(&mu_);
  return last_policy_request_;
}

void FakeScannerService::SetBatching(bool on) {
  absl::MutexLock lock(&mu_);
  batching_ = on;
}

int FakeScannerService::batch_calls() const {
  absl::MutexLock lock(&mu_);
  return batch_calls_;
}

absl::StatusOr<scanner::v1::PolicyResponse> FakeScannerService::Decide(
    grpc::ServerContext* context, const scanner::v1::PolicyRequest& request) {
  PolicyHandler handler;
  absl::Duration delay;
  {
    absl::MutexLock lock(&mu_);
    ++policy_calls_;
    last_policy_request_ = request;
    handler = policy_handler_;
    delay = delay_;
  }
  absl::Time until = absl::Now() + delay;
  while (absl::Now() < until && !context->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
  if (context->IsCancelled()) return absl::CancelledError("cancelled");
  if (!handler) {
    scanner::v1::PolicyResponse pass;
    pass.set_outcome(common::v1::PASS);
    return pass;
  }
  return handler(request);
}

grpc::Status FakeScannerService::CheckPolicy(grpc::ServerContext* context,
                                             const scanner::v1::PolicyRequest* request,
                                             scanner::v1::PolicyResponse* response) {
  absl::StatusOr<scanner::v1::PolicyResponse> r = Decide(context, *request);
  if (!r.ok()) {
    return grpc::Status(static_cast<grpc::StatusCode>(r.status().code()),
                        std::string(r.status().message()));
  }
  *response = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status FakeScannerService::CheckPolicies(grpc::ServerContext* context,
                                               const scanner::v1::PolicyBatchRequest* request,
                                               scanner::v1::PolicyBatchResponse* response) {
  {
    absl::MutexLock lock(&mu_);
    if (!batching_) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "CheckPolicies");
    ++batch_calls_;
  }
  for (const scanner::v1::PolicyRequest& one : request->requests()) {
    absl::StatusOr<scanner::v1::PolicyResponse> r = Decide(context, one);
    scanner::v1::PolicyResult* result = response->add_results();
    if (r.ok()) {
      *result->mutable_response() = *std::move(r);
    } else {
      result->set_error_code(static_cast<int32_t>(r.status().code()));
      result->set_error_message(std::string(r.status().message()));
    }
  }
  return grpc::Status::OK;
}

grpc::Status FakeScannerService::Scan(grpc::ServerContext* context,
                                      grpc::ServerReaderWriter<ScanResponse, ScanRequest>* stream) {
  ScanRequest req;
  if (!stream->Read(&req) || !req.has_header()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "header first");
  }
  ScanHeader header = req.header();
  std::string message = req.chunk();
  while (stream->Read(&req)) {
    if (req.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a second header");
    }
    message += req.chunk();
  }
  absl::Duration delay;
  {
    absl::MutexLock lock(&mu_);
    ++calls_;
    last_header_ = header;
    delay = delay_;
  }
  absl::Time until = absl::Now() + delay;
  while (absl::Now() < until && !context->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  absl::StatusOr<ScanReply> r = handler_(header, message);
  if (!r.ok()) {
    return grpc::Status(static_cast<grpc::StatusCode>(r.status().code()),
                        std::string(r.status().message()));
  }
  ScanResponse resp;
  *resp.mutable_verdict() = r->verdict;
  stream->Write(resp);
  if (r->verdict.message_rewritten()) {
    ScanResponse chunk;
    chunk.set_message_chunk(r->rewritten_message);
    stream->Write(chunk);
  }
  return grpc::Status::OK;
}

}  // namespace sagator::testing
