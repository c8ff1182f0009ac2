// quarantine-svc's gRPC API with real peers: a scanner chain whose quarantine scanner
// stores through it, Postfix's smtp-sink as the release relay, and SQLite or
// PostgreSQL underneath.
#include "quarantine-svc/quarantine_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "scanner-svc/chain_set.h"
#include "tests/harness/fresh_database.h"
#include "tests/harness/postfix.h"
#include "tests/harness/subprocess.h"

namespace sagator::quarantine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const char kMessage[] =
    "From: Mallory <mallory@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Subject: your invoice\r\n"
    "\r\n"
    "QUARANTINE-ME please\r\n";

class QuarantineServiceTest : public ::testing::TestWithParam<sql::Backend> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(sink_.Start().ok());
    std::shared_ptr<sql::Database> db = harness::FreshDatabase(GetParam(), /*durable=*/true);
    ASSERT_NE(db, nullptr);
    auto store = QuarantineStore::Open(db);
    ASSERT_TRUE(store.ok()) << store.status();
    QuarantineOptions o;
    o.relay = absl::StrCat("127.0.0.1:", sink_.port());
    o.relay_timeout = absl::Seconds(10);
    o.max_message_size = 1 << 20;
    server_ = std::make_unique<QuarantineServer>(o, *std::move(store));
    ASSERT_TRUE(server_->Start().ok());
    target_ = absl::StrCat("127.0.0.1:", server_->port());
    stub_ = v1::QuarantineService::NewStub(
        grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
  }

  // A scanner-svc chain set whose chain `mail` drops and quarantines QUARANTINE-ME.
  std::unique_ptr<ChainSet> Chains(const std::string& target) {
    std::string yaml = absl::StrCat(
        "global:\n  hostname: test.example\n  quarantine_target: \"", target, "\"\n"
        "chains:\n"
        "  mail:\n"
        "    - drop:\n"
        "        pattern: \".\"\n"
        "        scanners:\n"
        "          - quarantine:\n"
        "              timeout: 5s\n"
        "              scanners:\n"
        "                - string_scan:\n"
        "                    entries:\n"
        "                      - name: Test.Quarantine\n"
        "                        patterns: [\"QUARANTINE-ME\"]\n");
    auto cfg = LoadConfigString(yaml, "test.yaml", "/tmp");
    EXPECT_TRUE(cfg.ok()) << cfg.status();
    if (!cfg.ok()) return nullptr;
    auto chains = ChainSet::Create(*cfg);
    EXPECT_TRUE(chains.ok()) << chains.status();
    return chains.ok() ? *std::move(chains) : nullptr;
  }

  engine::MessageEnvelope Envelope() {
    engine::MessageEnvelope env;
    env.sender = "mallory@example.org";
    env.recipients = {"bob@example.net", "carol@example.net"};
    env.client_address = "198.51.100.9";
    env.helo = "evil.example.org";
    return env;
  }

  absl::StatusOr<std::string> Fetch(const std::string& id, v1::Entry* entry) {
    grpc::ClientContext ctx;
    v1::GetRequest req;
    req.set_id(id);
    auto reader = stub_->Get(&ctx, req);
    v1::GetResponse part;
    std::string message;
    int chunks = 0;
    while (reader->Read(&part)) {
      if (part.has_entry()) *entry = part.entry();
      if (part.has_chunk()) {
        message += part.chunk();
        ++chunks;
      }
    }
    grpc::Status s = reader->Finish();
    if (!s.ok()) return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    last_chunks_ = chunks;
    return message;
  }

  harness::SmtpSink sink_;
  std::unique_ptr<QuarantineServer> server_;
  std::string target_;
  std::unique_ptr<v1::QuarantineService::Stub> stub_;
  int last_chunks_ = 0;
};

TEST_P(QuarantineServiceTest, QuarantineScannerStoresWithTheDecidedOutcome) {
  auto chains = Chains(target_);
  ASSERT_NE(chains, nullptr);
  auto v = chains->Run("mail", kMessage, Envelope(), absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::DROP);
  ASSERT_FALSE(v->quarantine_id.empty());
  EXPECT_EQ(v->result.path, "drop(quarantine(string_scan()))");

  v1::Entry entry;
  auto message = Fetch(v->quarantine_id, &entry);
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(*message, kMessage);
  EXPECT_EQ(entry.outcome(), common::v1::DROP);
  EXPECT_EQ(entry.detection(), "Test.Quarantine");
  EXPECT_EQ(entry.sagator_id(), v->sagator_id);  // the X-Sagator-ID of the verdict
  EXPECT_EQ(entry.scanner_path(), "quarantine(string_scan())");
  EXPECT_EQ(entry.subject(), "your invoice");
  EXPECT_EQ(entry.from(), "Mallory <mallory@example.org>");
  EXPECT_THAT(entry.envelope().recipients(), ElementsAre("bob@example.net", "carol@example.net"));
  EXPECT_EQ(entry.envelope().client().address(), "198.51.100.9");

  // Clean mail is not stored.
  auto clean = chains->Run("mail", "Subject: hi\r\n\r\nhello\r\n", Envelope(),
                           absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(clean.ok());
  EXPECT_EQ(clean->outcome, common::v1::PASS);
  EXPECT_TRUE(clean->quarantine_id.empty());
  auto page = server_->store().List(v1::ListRequest());
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->entries_size(), 1);
}

TEST_P(QuarantineServiceTest, AQuarantineThatIsDownMakesTheScanFailTemporarily) {
  int port = testing::PickFreePort();
  auto chains = Chains(absl::StrCat("127.0.0.1:", port));
  ASSERT_NE(chains, nullptr);
  auto v = chains->Run("mail", kMessage, Envelope(), absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::TEMPFAIL);  // never a silent drop
  EXPECT_TRUE(v->quarantine_id.empty());
  EXPECT_THAT(std::string(v->error.message()), HasSubstr("quarantine"));
}

TEST_P(QuarantineServiceTest, ReleasesToTheRecipientsOrAnOverride) {
  auto chains = Chains(target_);
  ASSERT_NE(chains, nullptr);
  auto v = chains->Run("mail", kMessage, Envelope(), absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(v.ok());
  ASSERT_FALSE(v->quarantine_id.empty());

  grpc::ClientContext ctx;
  v1::ReleaseRequest req;
  req.set_id(v->quarantine_id);
  req.set_released_by("tester");
  v1::ReleaseResponse resp;
  grpc::Status s = stub_->Release(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(resp.delivered());
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).code(), 250);

  grpc::ClientContext ctx2;
  req.add_to("admin@example.net");
  s = stub_->Release(&ctx2, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();

  auto got = sink_.WaitForMessages(2, absl::Seconds(10));
  ASSERT_EQ(got.size(), 2u);
  // smtp-sink's files do not keep the order of arrival.
  if (got[0].recipients.size() == 1) std::swap(got[0], got[1]);
  EXPECT_EQ(got[0].sender, "mallory@example.org");
  EXPECT_THAT(got[0].recipients, ElementsAre("bob@example.net", "carol@example.net"));
  EXPECT_THAT(got[0].message, HasSubstr("QUARANTINE-ME please"));
  EXPECT_THAT(got[1].recipients, ElementsAre("admin@example.net"));

  auto entry = server_->store().Get(v->quarantine_id, nullptr);
  ASSERT_TRUE(entry.ok());
  ASSERT_EQ(entry->releases_size(), 3);
  EXPECT_EQ(entry->releases(2).recipient(), "admin@example.net");
  EXPECT_EQ(entry->releases(2).released_by(), "tester");
  EXPECT_EQ(entry->releases(2).code(), 250);
}

TEST_P(QuarantineServiceTest, ARelayThatIsDownIsATemporaryFailureAndIsRecorded) {
  auto id = server_->store().Store(
      [] {
        v1::Entry e;
        e.mutable_envelope()->add_recipients("bob@example.net");
        return e;
      }(),
      kMessage, absl::Now());
  ASSERT_TRUE(id.ok());
  sink_.Stop();
  grpc::ClientContext ctx;
  v1::ReleaseRequest req;
  req.set_id(*id);
  v1::ReleaseResponse resp;
  grpc::Status s = stub_->Release(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  auto entry = server_->store().Get(*id, nullptr);
  ASSERT_TRUE(entry.ok());
  ASSERT_EQ(entry->releases_size(), 1);
  EXPECT_GE(entry->releases(0).code(), 400);
  EXPECT_LT(entry->releases(0).code(), 500);

  grpc::ClientContext ctx2;
  req.set_id("qm-unknown");
  EXPECT_EQ(stub_->Release(&ctx2, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_P(QuarantineServiceTest, StoreChecksTheStreamAndTheSize) {
  // Streams `parts` (an entry for bob first when `with_entry`) to Store.
  auto store = [&](bool with_entry, const std::vector<std::string>& parts,
                   v1::StoreResponse* resp) {
    grpc::ClientContext ctx;
    auto w = stub_->Store(&ctx, resp);
    if (with_entry) {
      v1::StoreRequest first;
      first.mutable_entry()->mutable_envelope()->add_recipients("bob@example.net");
      w->Write(first);
    }
    for (const std::string& p : parts) {
      v1::StoreRequest chunk;
      chunk.set_chunk(p);
      w->Write(chunk);
    }
    w->WritesDone();
    return w->Finish().error_code();
  };
  v1::StoreResponse resp;
  EXPECT_EQ(store(false, {"no entry first"}, &resp), grpc::StatusCode::INVALID_ARGUMENT);
  std::string part(600 << 10, 'x');
  // 1.2 MB, over the 1 MB limit.
  EXPECT_EQ(store(true, {part, part}, &resp), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // A large message comes back whole, in several chunks.
  std::string big = "Subject: big\r\n\r\n";
  while (big.size() < 300000) big += "0123456789abcdef\r\n";
  ASSERT_EQ(store(true, {big}, &resp), grpc::StatusCode::OK);
  v1::Entry entry;
  auto back = Fetch(resp.id(), &entry);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, big);
  EXPECT_GE(last_chunks_, 5);
  EXPECT_EQ(entry.subject(), "big");

  grpc::ClientContext del_ctx;
  v1::DeleteRequest del;
  del.add_ids(resp.id());
  v1::DeleteResponse del_resp;
  ASSERT_TRUE(stub_->Delete(&del_ctx, del, &del_resp).ok());
  EXPECT_EQ(del_resp.deleted(), 1);
  EXPECT_EQ(Fetch(resp.id(), &entry).status().code(), absl::StatusCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Backends, QuarantineServiceTest,
                         ::testing::Values(sql::Backend::kSqlite, sql::Backend::kPostgresql),
                         [](const auto& info) { return harness::BackendName(info.param); });

TEST(QuarantineServer, ExpiresOldEntriesOnItsOwn) {
  std::shared_ptr<sql::Database> db = harness::FreshDatabase(sql::Backend::kSqlite);
  ASSERT_NE(db, nullptr);
  auto store = QuarantineStore::Open(db);
  ASSERT_TRUE(store.ok());
  v1::Entry e;
  e.mutable_envelope()->add_recipients("bob@example.net");
  ASSERT_TRUE((*store)->Store(e, kMessage, absl::Now() - absl::Hours(2)).ok());
  auto fresh = (*store)->Store(e, kMessage, absl::Now());
  ASSERT_TRUE(fresh.ok());
  QuarantineOptions o;
  o.relay = "127.0.0.1:1";
  o.retention = absl::Hours(1);
  o.expire_interval = absl::Milliseconds(50);
  QuarantineServer server(o, *std::move(store));
  ASSERT_TRUE(server.Start().ok());
  absl::Time give_up = absl::Now() + absl::Seconds(10);
  int left = -1;
  while (absl::Now() < give_up) {
    auto page = server.store().List(v1::ListRequest());
    ASSERT_TRUE(page.ok());
    left = page->entries_size();
    if (left == 1) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(left, 1);
  auto page = server.store().List(v1::ListRequest());
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->entries(0).id(), *fresh);
}

}  // namespace
}  // namespace sagator::quarantine
