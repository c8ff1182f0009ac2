// The gRPC scanner client against an in-process ScannerService that records which
// call carried each message: small mail goes by ScanOnce, large mail by the Scan
// stream, and a server without ScanOnce (an older scanner-svc) gets the stream.
// scanner-svc itself answers both calls in tests/e2e/scanner_svc_test.cc.
#include "common/scanner_client.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sagator/scanner/v1/scanner.grpc.pb.h"

namespace sagator {
namespace {

using scanner::v1::ScanOnceResponse;
using scanner::v1::ScanRequest;
using scanner::v1::ScanResponse;

// Answers PASS with the message's size as the detection text, so a test sees that
// the whole message arrived; "rewrite" in the chain name makes it send a new message.
class RecordingService final : public scanner::v1::ScannerService::Service {
 public:
  grpc::Status Scan(grpc::ServerContext*,
                    grpc::ServerReaderWriter<ScanResponse, ScanRequest>* stream) override {
    ++streams;
    ScanRequest req;
    std::string chain;
    std::string message;
    while (stream->Read(&req)) {
      if (req.has_header()) chain = req.header().chain();
      message += req.chunk();
    }
    ScanResponse resp;
    *resp.mutable_verdict() = VerdictFor(chain, message);
    stream->Write(resp);
    if (resp.verdict().message_rewritten()) {
      ScanResponse chunk;
      chunk.set_message_chunk(Rewritten(message));
      stream->Write(chunk);
    }
    return grpc::Status::OK;
  }

  grpc::Status ScanOnce(grpc::ServerContext*, const ScanRequest* request,
                        ScanOnceResponse* response) override {
    ++once_calls;
    if (old) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "not in this version");
    *response->mutable_verdict() = VerdictFor(request->header().chain(), request->chunk());
    if (response->verdict().message_rewritten()) {
      response->set_message(Rewritten(request->chunk()));
    }
    if (request->header().chain() == "stray") response->set_message("unasked");
    return grpc::Status::OK;
  }

  static scanner::v1::Verdict VerdictFor(const std::string& chain, const std::string& message) {
    scanner::v1::Verdict v;
    v.set_outcome(common::v1::PASS);
    v.set_output(absl::StrCat(message.size()));
    v.set_message_rewritten(chain == "rewrite");
    return v;
  }
  static std::string Rewritten(const std::string& message) {
    return absl::StrCat("X-Rewritten: yes\r\n", message);
  }

  std::atomic<int> streams{0};
  std::atomic<int> once_calls{0};
  std::atomic<bool> old{false};
};

class ScannerClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.SetMaxReceiveMessageSize(8 << 20);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    client_ = NewGrpcScannerClient(absl::StrCat("127.0.0.1:", port), absl::Seconds(20), 4 << 20);
  }
  void TearDown() override { server_->Shutdown(); }

  absl::StatusOr<ScanReply> Scan(const std::string& chain, const std::string& message) {
    scanner::v1::ScanHeader header;
    header.set_chain(chain);
    header.set_size(message.size());
    return client_->Scan(header, message);
  }

  RecordingService service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<ScannerClient> client_;
};

TEST_F(ScannerClientTest, SmallMailTakesOneUnaryCallAndLargeMailTheStream) {
  std::string small(200 * 1024, 's');
  auto r = Scan("default", small);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->verdict.output(), absl::StrCat(small.size()));
  EXPECT_EQ(service_.once_calls.load(), 1);
  EXPECT_EQ(service_.streams.load(), 0);

  // Over 1 MiB (the API's chunk limit): the stream, in several chunks.
  std::string large(3 * 1024 * 1024 + 17, 'l');
  r = Scan("default", large);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->verdict.output(), absl::StrCat(large.size()));
  EXPECT_EQ(service_.once_calls.load(), 1);
  EXPECT_EQ(service_.streams.load(), 1);
}

TEST_F(ScannerClientTest, RewrittenMessageComesBackByEitherCall) {
  for (size_t size : {size_t{1000}, size_t{2 << 20}}) {
    std::string message(size, 'm');
    auto r = Scan("rewrite", message);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->verdict.message_rewritten());
    EXPECT_EQ(r->rewritten_message, RecordingService::Rewritten(message));
  }
  EXPECT_EQ(service_.once_calls.load(), 1);
  EXPECT_EQ(service_.streams.load(), 1);
}

TEST_F(ScannerClientTest, AMessageTheServerDidNotRewriteIsABrokenAnswer) {
  auto r = Scan("stray", "x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(r.status().message().find("did not rewrite"), std::string::npos);
}

TEST_F(ScannerClientTest, AServerWithoutScanOnceGetsTheStreamFromThenOn) {
  service_.old = true;
  for (int i = 0; i < 3; ++i) {
    auto r = Scan("default", "short message");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->verdict.output(), "13");
  }
  EXPECT_EQ(service_.once_calls.load(), 1) << "asked once, then remembered";
  EXPECT_EQ(service_.streams.load(), 3);
}

}  // namespace
}  // namespace sagator
