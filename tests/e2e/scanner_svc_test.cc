// scanner-svc as a separate process, called over gRPC the way gateways and grpcurl
// call it: reflection, health, Scan with chunked streams, limits and deadlines.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/sql.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "sagator/scanner/v1/scanner.grpc.pb.h"
#include "tests/harness/spamd_daemon.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_mail.h"

namespace sagator {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;
using testing::RunfilePath;

using ::sagator::testing::kEicar;

// A TCP listener that accepts and never answers: a hung clamd.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 64);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_;
  int port_;
};

class ScannerSvcTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    hung_ = new SilentListener();
    std::string dir = testing::MakeTempDir("scanner_svc");
    // spamd with filter: true rewrites every message (its X-Spam-* headers).
    auto spamd = harness::SpamdDaemon::Start(dir + "/spamd");
    ASSERT_TRUE(spamd.ok()) << spamd.status();
    spamd_ = spamd->release();
    std::string cfg = dir + "/sagator.yaml";
    log_db_ = new std::string(dir + "/log.db");
    testing::WriteFile(
        cfg, absl::StrCat("global: {hostname: e2e.example, max_message_size: 256K}\n"
                          "databases: {log: {sqlite: {path: '", *log_db_, "'}}}\n"
                          "chains:\n"
                          "  logged: [{log_sql: {db: log, scanners: [{libclam: {database: [",
                          RunfilePath("data/clamav"), "]}}]}}]\n"
                          "  default: [{libclam: {database: [",
                          RunfilePath("data/clamav"),
                          "]}}]\n"
                          "  hung: [{clamd: {address: '127.0.0.1:", hung_->port(),
                          "', timeout: 60s}}]\n"
                          "  filtered: [{spamassassind: {address: '", spamd_->address(),
                          "', filter: true, timeout: 60s}}]\n"
                          "services:\n"
                          "  - scanner_svc: {port: 0, threads: 2}\n"));
    port_file_ = new std::string(dir + "/port");
    server_ = new testing::Subprocess({RunfilePath("scanner-svc/scanner-svc"), "--config", cfg,
                                       "--port_file", *port_file_});
    ASSERT_TRUE(server_->Start().ok());
    auto port = testing::WaitForPortFile(*port_file_, absl::Seconds(30));
    ASSERT_TRUE(port.ok()) << port.status();
    channel_ = new std::shared_ptr<grpc::Channel>(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", *port), grpc::InsecureChannelCredentials()));
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Stop(), 0) << "scanner-svc should exit 0 on SIGTERM";
    delete server_;
    delete channel_;
    delete hung_;
    delete port_file_;
    delete spamd_;
    delete log_db_;
  }

  struct ScanOutcome {
    grpc::Status status;
    scanner::v1::Verdict verdict;
    std::string rewritten;
  };

  static ScanOutcome Scan(const std::string& chain, const std::string& message,
                          absl::Duration deadline = absl::Seconds(30), int64_t size = -1,
                          size_t chunk = 1000, grpc::ClientContext* ctx = nullptr) {
    auto stub = scanner::v1::ScannerService::NewStub(*channel_);
    grpc::ClientContext own;
    if (ctx == nullptr) ctx = &own;
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    auto stream = stub->Scan(ctx);
    scanner::v1::ScanRequest req;
    req.mutable_header()->set_chain(chain);
    req.mutable_header()->set_size(size < 0 ? message.size() : size);
    req.mutable_header()->mutable_envelope()->set_sender("a@example.org");
    req.mutable_header()->mutable_envelope()->add_recipients("b@example.org");
    stream->Write(req);
    for (size_t off = 0; off < message.size(); off += chunk) {
      scanner::v1::ScanRequest c;
      c.set_chunk(message.substr(off, chunk));
      if (!stream->Write(c)) break;
    }
    stream->WritesDone();
    ScanOutcome out;
    scanner::v1::ScanResponse resp;
    if (stream->Read(&resp)) out.verdict = resp.verdict();
    while (stream->Read(&resp)) out.rewritten += resp.message_chunk();
    out.status = stream->Finish();
    return out;
  }

  // The same question as one ScanOnce call.
  static ScanOutcome ScanOnce(const std::string& chain, const std::string& message,
                              int64_t size = -1, bool with_header = true) {
    auto stub = scanner::v1::ScannerService::NewStub(*channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    scanner::v1::ScanRequest req;
    if (with_header) {
      req.mutable_header()->set_chain(chain);
      req.mutable_header()->set_size(size < 0 ? message.size() : size);
      req.mutable_header()->mutable_envelope()->set_sender("a@example.org");
      req.mutable_header()->mutable_envelope()->add_recipients("b@example.org");
    }
    req.set_chunk(message);
    scanner::v1::ScanOnceResponse resp;
    ScanOutcome out;
    out.status = stub->ScanOnce(&ctx, req, &resp);
    out.verdict = resp.verdict();
    out.rewritten = resp.message();
    return out;
  }

  static testing::Subprocess* server_;
  static std::shared_ptr<grpc::Channel>* channel_;
  static SilentListener* hung_;
  static std::string* port_file_;
  static harness::SpamdDaemon* spamd_;
  static std::string* log_db_;
};

testing::Subprocess* ScannerSvcTest::server_;
std::shared_ptr<grpc::Channel>* ScannerSvcTest::channel_;
SilentListener* ScannerSvcTest::hung_;
std::string* ScannerSvcTest::port_file_;
std::string* ScannerSvcTest::log_db_ = nullptr;
harness::SpamdDaemon* ScannerSvcTest::spamd_;

std::string Mail(absl::string_view body) {
  return absl::StrCat("From: a@example.org\r\nTo: b@example.org\r\nSubject: t\r\n\r\n", body,
                      "\r\n");
}

TEST_F(ScannerSvcTest, ReflectionListsTheServicesAndDescribesScan) {
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(*channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  auto stream = stub->ServerReflectionInfo(&ctx);
  grpc::reflection::v1alpha::ServerReflectionRequest req;
  req.set_list_services("");
  ASSERT_TRUE(stream->Write(req));
  grpc::reflection::v1alpha::ServerReflectionResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  std::vector<std::string> names;
  for (const auto& s : resp.list_services_response().service()) names.push_back(s.name());
  EXPECT_THAT(names, Contains("sagator.scanner.v1.ScannerService"));
  EXPECT_THAT(names, Contains("grpc.health.v1.Health"));

  req.set_file_containing_symbol("sagator.scanner.v1.ScannerService");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_GT(resp.file_descriptor_response().file_descriptor_proto_size(), 0);
  std::string all;
  for (const auto& f : resp.file_descriptor_response().file_descriptor_proto()) all += f;
  EXPECT_THAT(all, HasSubstr("CheckPolicy"));
  EXPECT_THAT(all, HasSubstr("Scan"));
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ScannerSvcTest, HealthServiceAnswersServing) {
  auto stub = grpc::health::v1::Health::NewStub(*channel_);
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(stub->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(ScannerSvcTest, EicarSentInSmallChunksIsRejected) {
  ScanOutcome r = Scan("default", Mail(kEicar), absl::Seconds(30), -1, 7);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.verdict.outcome(), common::v1::REJECT);
  EXPECT_THAT(r.verdict.detection(), StartsWith("Eicar-Test-Signature"));
  EXPECT_EQ(r.verdict.scanner_path(), "libclam()");
  EXPECT_GE(r.verdict.level(), 1.0);
}

TEST_F(ScannerSvcTest, CleanMailPassesWithSagatorHeaderEdits) {
  ScanOutcome r = Scan("default", Mail("nothing to see"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.verdict.outcome(), common::v1::PASS);
  ASSERT_GE(r.verdict.header_edits_size(), 2);
  EXPECT_EQ(r.verdict.header_edits(0).name(), "X-Sagator-ID");
  EXPECT_THAT(r.verdict.header_edits(0).value(), HasSubstr("@e2e.example"));
  EXPECT_EQ(r.verdict.header_edits(1).name(), "X-Sagator-Scanner");
  EXPECT_THAT(r.verdict.header_edits(1).value(), HasSubstr(" at e2e.example; libclam()"));
  EXPECT_FALSE(r.verdict.message_rewritten());
}

TEST_F(ScannerSvcTest, MessageOverTheSizeLimitIsNotScanned) {
  // Announced too large, and streamed too large without an announcement.
  for (int64_t announced : {int64_t{300 * 1024}, int64_t{0}}) {
    ScanOutcome r = Scan("default", Mail(std::string(300 * 1024, 'a') + kEicar),
                         absl::Seconds(30), announced, 64 * 1024);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_TRUE(r.verdict.not_scanned());
    EXPECT_EQ(r.verdict.outcome(), common::v1::FORCED_PASS);
    EXPECT_EQ(r.verdict.detection(), "not scanned: too large");
  }
}

TEST_F(ScannerSvcTest, MessageOverTheSizeLimitIsLoggedWithItsSize) {
  // Streamed without an announcement (only its head is kept), announced, by
  // ScanOnce, and sent head-only: each gets its scan_log row with the size it had.
  const std::string big = Mail(std::string(300 * 1024, 'a'));
  std::vector<std::string> ids;
  ScanOutcome streamed = Scan("logged", big, absl::Seconds(30), 0, 64 * 1024);
  ScanOutcome announced = Scan("logged", Mail("x"), absl::Seconds(30), 400 * 1024);
  ScanOutcome once = ScanOnce("logged", Mail("y"), 500 * 1024);
  // A gateway's limit may be lower than scanner-svc's: head_only says the message
  // is not all there, whatever its size.
  ScanOutcome head;
  {
    auto stub = scanner::v1::ScannerService::NewStub(*channel_);
    grpc::ClientContext ctx;
    scanner::v1::ScanRequest req;
    req.mutable_header()->set_chain("logged");
    req.mutable_header()->set_size(2000);
    req.mutable_header()->set_head_only(true);
    req.mutable_header()->mutable_envelope()->set_sender("a@example.org");
    req.set_chunk(Mail(kEicar));  // not scanned: it is not the whole message
    scanner::v1::ScanOnceResponse resp;
    head.status = stub->ScanOnce(&ctx, req, &resp);
    head.verdict = resp.verdict();
  }
  EXPECT_EQ(head.verdict.detection(), "not scanned: too large");
  EXPECT_EQ(head.verdict.outcome(), common::v1::FORCED_PASS);
  ScanOutcome small = Scan("logged", Mail("small"));
  for (const ScanOutcome* r : {&streamed, &announced, &once, &head, &small}) {
    ASSERT_TRUE(r->status.ok()) << r->status.error_message();
    ASSERT_GE(r->verdict.header_edits_size(), 1);
    ids.push_back(r->verdict.header_edits(0).value());
  }
  EXPECT_EQ(streamed.verdict.detection(), "not scanned: too large");
  auto db = sql::OpenSqlite(*log_db_, absl::Seconds(5));
  ASSERT_TRUE(db.ok()) << db.status();
  auto rows = (*db)->Query("SELECT sagator_id, size, outcome, detection, sender FROM scan_log", {});
  ASSERT_TRUE(rows.ok()) << rows.status();
  std::vector<std::string> got;
  for (const auto& row : *rows) {
    got.push_back(absl::StrCat(row.text(0), "|", row.text(1), "|", row.text(2), "|", row.text(3),
                               "|", row.text(4)));
  }
  const std::string unscanned = "|FORCED_PASS|not scanned: too large|a@example.org";
  EXPECT_THAT(got, UnorderedElementsAre(absl::StrCat(ids[0], "|", big.size(), unscanned),
                                        absl::StrCat(ids[1], "|", 400 * 1024, unscanned),
                                        absl::StrCat(ids[2], "|", 500 * 1024, unscanned),
                                        absl::StrCat(ids[3], "|2000", unscanned),
                                        absl::StrCat(ids[4], "|", Mail("small").size(),
                                                     "|PASS||a@example.org")));
}

TEST_F(ScannerSvcTest, UnknownChainAndBadStreamsAreRefused) {
  EXPECT_EQ(Scan("nope", "x").status.error_code(), grpc::StatusCode::NOT_FOUND);
  auto stub = scanner::v1::ScannerService::NewStub(*channel_);
  grpc::ClientContext ctx;
  auto stream = stub->Scan(&ctx);
  scanner::v1::ScanRequest chunk;
  chunk.set_chunk("data before header");
  stream->Write(chunk);
  stream->WritesDone();
  scanner::v1::ScanResponse resp;
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ScannerSvcTest, ScanOnceDecidesAsTheStreamDoes) {
  ScanOutcome virus = ScanOnce("default", Mail(kEicar));
  ASSERT_TRUE(virus.status.ok()) << virus.status.error_message();
  EXPECT_EQ(virus.verdict.outcome(), common::v1::REJECT);
  EXPECT_THAT(virus.verdict.detection(), StartsWith("Eicar-Test-Signature"));
  EXPECT_EQ(virus.verdict.scanner_path(), "libclam()");

  ScanOutcome clean = ScanOnce("default", Mail("nothing to see"));
  ASSERT_TRUE(clean.status.ok()) << clean.status.error_message();
  EXPECT_EQ(clean.verdict.outcome(), common::v1::PASS);
  ASSERT_GE(clean.verdict.header_edits_size(), 2);
  EXPECT_EQ(clean.verdict.header_edits(0).name(), "X-Sagator-ID");
  EXPECT_FALSE(clean.verdict.message_rewritten());
  EXPECT_EQ(clean.rewritten, "");

  // Announced over max_message_size (256K): not scanned, as by the stream.
  ScanOutcome large = ScanOnce("default", Mail(kEicar), 300 * 1024);
  ASSERT_TRUE(large.status.ok()) << large.status.error_message();
  EXPECT_TRUE(large.verdict.not_scanned());
  EXPECT_EQ(large.verdict.detection(), "not scanned: too large");
}

TEST_F(ScannerSvcTest, ScanOnceRefusesWhatTheStreamRefuses) {
  EXPECT_EQ(ScanOnce("nope", "x").status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ScanOnce("default", "x", -1, /*with_header=*/false).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // More than one chunk's worth belongs on the stream.
  ScanOutcome big = ScanOnce("default", std::string((1 << 20) + 1, 'x'));
  EXPECT_EQ(big.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(big.status.error_message(), HasSubstr("use Scan"));
}

TEST_F(ScannerSvcTest, RewrittenMessageComesBackByBothCalls) {
  std::string mail = Mail("a message for SpamAssassin to rewrite");
  ScanOutcome streamed = Scan("filtered", mail);
  ScanOutcome once = ScanOnce("filtered", mail);
  for (const ScanOutcome* r : {&streamed, &once}) {
    ASSERT_TRUE(r->status.ok()) << r->status.error_message();
    EXPECT_EQ(r->verdict.outcome(), common::v1::PASS);
    EXPECT_TRUE(r->verdict.message_rewritten());
    EXPECT_THAT(r->rewritten, HasSubstr("X-Spam-Checker-Version:"));
    EXPECT_THAT(r->rewritten, HasSubstr("a message for SpamAssassin to rewrite"));
  }
}

TEST_F(ScannerSvcTest, ExpiredDeadlineStopsAHungScanAndFreesTheSlot) {
  // Both slots (threads: 2) get stuck on the hung clamd until their deadline; after
  // that the service must scan again at once.
  absl::Time start = absl::Now();
  std::vector<std::thread> calls;
  std::vector<grpc::StatusCode> codes(2);
  for (int i = 0; i < 2; ++i) {
    calls.emplace_back([&, i] { codes[i] = Scan("hung", "x", absl::Milliseconds(500)).status.error_code(); });
  }
  for (auto& t : calls) t.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(codes[0], grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(codes[1], grpc::StatusCode::DEADLINE_EXCEEDED);
  absl::Time after = absl::Now();
  ScanOutcome r = Scan("default", Mail(kEicar), absl::Seconds(5));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.verdict.outcome(), common::v1::REJECT);
  EXPECT_LT(absl::Now() - after, absl::Seconds(2));
}

TEST_F(ScannerSvcTest, ScanOnceHonoursItsDeadlineAndFreesTheSlots) {
  // Three calls for two slots, all stuck on the hung clamd: each ends at its
  // deadline, queued or not, and the service scans at once afterwards.
  absl::Time start = absl::Now();
  std::vector<std::thread> calls;
  std::vector<grpc::StatusCode> codes(3);
  for (int i = 0; i < 3; ++i) {
    calls.emplace_back([&, i] {
      auto stub = scanner::v1::ScannerService::NewStub(*channel_);
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(500)));
      scanner::v1::ScanRequest req;
      req.mutable_header()->set_chain("hung");
      req.set_chunk("x");
      scanner::v1::ScanOnceResponse resp;
      codes[i] = stub->ScanOnce(&ctx, req, &resp).error_code();
    });
  }
  for (auto& t : calls) t.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  for (grpc::StatusCode c : codes) EXPECT_EQ(c, grpc::StatusCode::DEADLINE_EXCEEDED);
  absl::Time after = absl::Now();
  ScanOutcome r = ScanOnce("default", Mail(kEicar));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.verdict.outcome(), common::v1::REJECT);
  EXPECT_LT(absl::Now() - after, absl::Seconds(2));
}

TEST_F(ScannerSvcTest, CancelledCallStopsTheScan) {
  grpc::ClientContext ctx;
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(300));
    ctx.TryCancel();
  });
  absl::Time start = absl::Now();
  ScanOutcome r = Scan("hung", "x", absl::Seconds(60), -1, 1000, &ctx);
  canceller.join();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // The server side gives up too: a fresh scan is served promptly.
  absl::SleepFor(absl::Milliseconds(500));
  ScanOutcome ok = Scan("default", Mail("x"), absl::Seconds(5));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
}

}  // namespace
}  // namespace sagator
