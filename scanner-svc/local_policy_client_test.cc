#include "scanner-svc/local_policy_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/sql.h"
#include "tests/harness/postgres.h"

namespace sagator {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<LocalPolicyClient> Client(const std::string& extra_chain,
                                          std::vector<std::string> build = {"policy"}) {
  std::string db = absl::StrCat(std::getenv("TEST_TMPDIR"), "/local.db");
  auto cfg = LoadConfigString(
      absl::StrCat("databases: {default: {sqlite: {path: '", db, "'}}}\n"
                   "chains:\n"
                   "  policy: [sql_list, {greylist: {min: 0s}}]\n",
                   extra_chain),
      "t.yaml", "/");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  if (!cfg.ok()) return nullptr;
  auto chains = ChainSet::Create(*cfg, build);
  EXPECT_TRUE(chains.ok()) << chains.status();
  if (!chains.ok()) return nullptr;
  return std::make_unique<LocalPolicyClient>(*std::move(chains), absl::Seconds(10));
}

scanner::v1::PolicyRequest Request(const std::string& chain) {
  scanner::v1::PolicyRequest r;
  r.set_chain(chain);
  r.set_protocol_state("RCPT");
  r.mutable_envelope()->set_sender("a@example.org");
  r.mutable_envelope()->mutable_client()->set_address("192.0.2.7");
  r.set_recipient("b@example.net");
  return r;
}

TEST(LocalPolicyClient, DecidesLikeScannerSvcWithoutAHop) {
  auto client = Client("");
  ASSERT_NE(client, nullptr);
  auto r = client->CheckPolicy(Request("policy"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), common::v1::TEMPFAIL);
  EXPECT_THAT(r->reply_text(), HasSubstr("Greylisted"));
  r = client->CheckPolicy(Request("policy"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome(), common::v1::PASS);
  ASSERT_EQ(r->header_edits_size(), 1);
  EXPECT_EQ(r->header_edits(0).name(), "X-Greylist");
}

TEST(LocalPolicyClient, BuildsOnlyThePolicyChainAndRefusesScansAndOtherChains) {
  // A content chain that could not load here is not built at all.
  auto client = Client("  av: [{libclam: {database: [/nonexistent]}}]\n");
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->CheckPolicy(Request("av")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client->Scan({}, "x").status().code(), absl::StatusCode::kUnimplemented);
  client->CancelAll();
  EXPECT_EQ(client->CheckPolicy(Request("policy")).status().code(),
            absl::StatusCode::kCancelled);
}

// TryCheckPolicyNow (smtpd_policy's I/O thread): an answer only when the chain's
// records are in memory and every scanner of the chain keeps memory_only's promise.
TEST(LocalPolicyClient, AnswersAtOnceOnlyWhatMemoryHolds) {
  auto client = Client("  mixed: [{max_file_size: {bytes: 1000}}, sql_list]\n", {"policy", "mixed"});
  ASSERT_NE(client, nullptr);
  scanner::v1::PolicyRequest req = Request("policy");
  req.mutable_envelope()->set_sender("at-once@example.org");
  EXPECT_FALSE(client->TryCheckPolicyNow(req).has_value()) << "a new triplet needs the database";
  EXPECT_EQ(client->CheckPolicy(req)->outcome(), common::v1::TEMPFAIL);
  EXPECT_FALSE(client->TryCheckPolicyNow(req).has_value()) << "deferred triplets are not in memory";
  EXPECT_EQ(client->CheckPolicy(req)->outcome(), common::v1::PASS);
  std::optional<absl::StatusOr<scanner::v1::PolicyResponse>> now = client->TryCheckPolicyNow(req);
  ASSERT_TRUE(now.has_value());
  ASSERT_TRUE(now->ok()) << now->status();
  EXPECT_EQ((*now)->outcome(), common::v1::PASS);
  EXPECT_EQ((*now)->header_edits_size(), 0);

  // max_file_size() does not promise to answer from memory: that chain always waits.
  scanner::v1::PolicyRequest mixed = req;
  mixed.set_chain("mixed");
  ASSERT_TRUE(client->CheckPolicy(mixed).ok());
  EXPECT_FALSE(client->TryCheckPolicyNow(mixed).has_value());
  // An unknown chain is an answer (NotFound), not a wait.
  now = client->TryCheckPolicyNow(Request("nonexistent"));
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ(now->status().code(), absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------- LoopDecider

// A client on a new PostgreSQL database of the test's cluster, greylisting for 5 min.
std::unique_ptr<LocalPolicyClient> PostgresClient(std::string* conninfo) {
  static int databases = 0;
  harness::PostgresInstance* pg = harness::SharedPostgresForTests();
  EXPECT_NE(pg, nullptr);
  if (pg == nullptr) return nullptr;
  std::string name = absl::StrCat("loop", ++databases);
  auto admin = sql::OpenPostgresql(pg->conninfo(), 1);
  EXPECT_TRUE(admin.ok() && (*admin)->Query(absl::StrCat("CREATE DATABASE ", name), {}).ok());
  *conninfo = pg->ConnInfoFor(name);
  auto cfg = LoadConfigString(
      absl::StrCat("databases: {default: {postgresql: {conninfo: '", *conninfo,
                   "', pool_size: 2}}}\n"
                   "chains:\n"
                   "  policy: [sql_list, {greylist: {min: 300s}}]\n"),
      "t.yaml", "/");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  if (!cfg.ok()) return nullptr;
  auto chains = ChainSet::Create(*cfg, {"policy"});
  EXPECT_TRUE(chains.ok()) << chains.status();
  if (!chains.ok()) return nullptr;
  return std::make_unique<LocalPolicyClient>(*std::move(chains), absl::Seconds(10));
}

// How a LoopDecider answered one request.
struct LoopOutcome {
  bool at_once = false;  // `done` ran inside Decide
  bool answered = false;
  std::optional<absl::StatusOr<scanner::v1::PolicyResponse>> decision;
};

// Decides `requests` (all handed over before the loop runs), then runs the loop
// until each is answered.
std::vector<LoopOutcome> DecideOnLoop(boost::asio::io_context& io,
                                      ScannerClient::LoopDecider& decider,
                                      const std::vector<scanner::v1::PolicyRequest>& requests,
                                      absl::Duration deadline = absl::Seconds(10)) {
  auto out = std::make_shared<std::vector<LoopOutcome>>(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    decider.Decide(std::make_shared<scanner::v1::PolicyRequest>(requests[i]),
                   absl::Now() + deadline, [out, i](auto decision) {
                     (*out)[i].answered = true;
                     (*out)[i].decision = std::move(decision);
                   });
    (*out)[i].at_once = (*out)[i].answered;
  }
  const absl::Time give_up = absl::Now() + deadline + absl::Seconds(5);
  auto all = [&] {
    return std::all_of(out->begin(), out->end(), [](const LoopOutcome& o) { return o.answered; });
  };
  while (!all() && absl::Now() < give_up) {
    io.restart();
    io.run_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(all()) << "a request was never answered";
  return *out;
}

scanner::v1::PolicyRequest NewTriplet(const std::string& sender) {
  scanner::v1::PolicyRequest r = Request("policy");
  r.mutable_envelope()->set_sender(sender);
  return r;
}

// Decides new triplets as smtpd_policy does (what the decider sends back goes to
// CheckPolicy) until one is recorded on the loop: the decider connects in the
// background at first, and memory holds nothing (lists, cleanup) before the first
// decision that may wait. False after 10 s.
bool WaitUntilDecidedOnLoop(LocalPolicyClient& client, boost::asio::io_context& io,
                            ScannerClient::LoopDecider& decider, const std::string& tag) {
  for (int i = 0; i < 500; ++i) {
    scanner::v1::PolicyRequest req = NewTriplet(absl::StrCat(tag, i, "@example.org"));
    std::vector<LoopOutcome> o = DecideOnLoop(io, decider, {req});
    if (o[0].decision.has_value()) return true;
    EXPECT_EQ(client.CheckPolicy(req)->outcome(), common::v1::TEMPFAIL);
    absl::SleepFor(absl::Milliseconds(20));
    io.restart();
    io.poll();  // takes over a connection made meanwhile
  }
  return false;
}

// A LocalPolicyClient on a new PostgreSQL database, its decider for `io_` with its
// connection made, and a connection of the test's own to that database.
class LoopDeciderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    client_ = PostgresClient(&conninfo_);
    ASSERT_NE(client_, nullptr);
    decider_ = client_->NewLoopDecider(io_);
    ASSERT_NE(decider_, nullptr);
    ASSERT_TRUE(WaitUntilDecidedOnLoop(*client_, io_, *decider_, "warm"));
    auto db = sql::OpenPostgresql(conninfo_, 1);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
  }

  // Brings the lists up to date (they are checked once a second, on a thread that
  // may wait), so that the next second's memory-only runs get past sql_list.
  void FreshLists() {
    EXPECT_EQ(client_->CheckPolicy(NewTriplet("warm0@example.org"))->outcome(),
              common::v1::TEMPFAIL);
  }

  std::string conninfo_;
  std::unique_ptr<LocalPolicyClient> client_;
  boost::asio::io_context io_;
  std::unique_ptr<ScannerClient::LoopDecider> decider_;
  std::shared_ptr<sql::Database> db_;
};

TEST_F(LoopDeciderTest, RecordsNewTripletsOnTheLoopAndAnswersRepeatsFromMemory) {
  // Several new triplets at once (one statement in flight, a full one waiting):
  // each gets its own answer, after its record.
  std::vector<scanner::v1::PolicyRequest> batch;
  for (size_t i = 0; i < 1 + LocalPolicyClient::kLoopBatch; ++i) {
    batch.push_back(NewTriplet(absl::StrCat("n", i, "@example.org")));
  }
  FreshLists();
  std::vector<LoopOutcome> out = DecideOnLoop(io_, *decider_, batch);
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_TRUE(out[i].decision.has_value()) << i;
    ASSERT_TRUE(out[i].decision->ok()) << out[i].decision->status();
    EXPECT_FALSE(out[i].at_once);
    EXPECT_EQ((**out[i].decision).outcome(), common::v1::TEMPFAIL);
    EXPECT_THAT((**out[i].decision).reply_text(), HasSubstr("Greylisted, try again in 300"));
    auto rows = db_->Query("SELECT first_seen, passed_at FROM greylist WHERE sender = $1",
                           {batch[i].envelope().sender()});
    ASSERT_TRUE(rows.ok()) << rows.status();
    ASSERT_EQ(rows->size(), 1u) << batch[i].envelope().sender();
    EXPECT_TRUE((*rows)[0].is_null(1));
  }
  // A retry before min: from memory, at once. Through the pool's path: the same.
  out = DecideOnLoop(io_, *decider_, {batch[0]});
  EXPECT_TRUE(out[0].at_once);
  ASSERT_TRUE(out[0].decision.has_value() && out[0].decision->ok());
  EXPECT_EQ((**out[0].decision).outcome(), common::v1::TEMPFAIL);
  EXPECT_EQ(client_->CheckPolicy(batch[1])->outcome(), common::v1::TEMPFAIL);
  // The loop's connection is named for pg_stat_activity.
  auto loops = db_->Query("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                          {sql::kAsyncApplicationName});
  ASSERT_TRUE(loops.ok()) << loops.status();
  EXPECT_EQ((*loops)[0].integer(0), 1);
}

TEST_F(LoopDeciderTest, SendsRequestsBackWhenItsConnectionIsLostThenReconnects) {
  auto killed = db_->Query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
      {sql::kAsyncApplicationName});
  ASSERT_TRUE(killed.ok() && killed->size() == 1) << killed.status();
  absl::SleepFor(absl::Milliseconds(100));
  FreshLists();
  // The request in hand goes back to the caller (no answer is invented) ...
  std::vector<LoopOutcome> out = DecideOnLoop(io_, *decider_, {NewTriplet("lost@example.org")});
  EXPECT_FALSE(out[0].decision.has_value());
  // ... and the caller's usual path decides it.
  EXPECT_EQ(client_->CheckPolicy(NewTriplet("lost@example.org"))->outcome(), common::v1::TEMPFAIL);
  // Later requests reconnect.
  EXPECT_TRUE(WaitUntilDecidedOnLoop(*client_, io_, *decider_, "after"));
}

TEST_F(LoopDeciderTest, AStatementPastTheDeadlineSendsTheRequestBackInTime) {
  // Another session holds a lock that makes every insert wait for 3 s.
  std::thread locker([&] {
    absl::Status s = db_->RunTransaction([](sql::Transaction& tx) {
      absl::Status locked = tx.Query("LOCK TABLE greylist IN EXCLUSIVE MODE", {}).status();
      absl::SleepFor(absl::Seconds(3));
      return locked;
    });
    EXPECT_TRUE(s.ok()) << s;
  });
  absl::SleepFor(absl::Milliseconds(300));
  FreshLists();  // the greylist table is locked; not the lists
  const absl::Time start = absl::Now();
  // One statement in flight (the first request), one full statement waiting (the
  // next kLoopBatch); the rest go back at once, to be decided side by side.
  std::vector<scanner::v1::PolicyRequest> requests;
  for (int i = 0; i < 12; ++i) {
    requests.push_back(NewTriplet(absl::StrCat("slow", i, "@example.org")));
  }
  std::vector<LoopOutcome> out = DecideOnLoop(io_, *decider_, requests, absl::Milliseconds(500));
  const absl::Duration took = absl::Now() - start;
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_FALSE(out[i].decision.has_value()) << i;
    EXPECT_EQ(out[i].at_once, i > LocalPolicyClient::kLoopBatch) << i;
  }
  EXPECT_GE(took, absl::Milliseconds(450));
  EXPECT_LT(took, absl::Milliseconds(2000)) << "waited for the lock, not the deadline";
  locker.join();
  EXPECT_TRUE(WaitUntilDecidedOnLoop(*client_, io_, *decider_, "after"));
}

TEST_F(LoopDeciderTest, AFailedStatementSendsItsRequestsBackAndKeepsTheConnection) {
  auto pid = [&] {
    auto r = db_->Query("SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                        {sql::kAsyncApplicationName});
    EXPECT_TRUE(r.ok() && r->size() == 1) << r.status();
    return r.ok() && r->size() == 1 ? r->at(0).text(0) : "";
  };
  const std::string before = pid();
  ASSERT_TRUE(db_->Query("ALTER TABLE greylist ADD CONSTRAINT refused"
                         " CHECK (sender <> 'refused@example.org')",
                         {})
                  .ok());
  FreshLists();
  std::vector<LoopOutcome> out = DecideOnLoop(io_, *decider_, {NewTriplet("refused@example.org")});
  EXPECT_FALSE(out[0].at_once);
  EXPECT_FALSE(out[0].decision.has_value());
  // The next new triplet goes on the same connection at once.
  out = DecideOnLoop(io_, *decider_, {NewTriplet("next@example.org")});
  ASSERT_TRUE(out[0].decision.has_value() && out[0].decision->ok());
  EXPECT_EQ((**out[0].decision).outcome(), common::v1::TEMPFAIL);
  EXPECT_EQ(pid(), before);
}

TEST(LoopDecider, OnSqliteAnswersFromMemoryAndSendsTheRestBack) {
  auto client = Client("");
  ASSERT_NE(client, nullptr);
  boost::asio::io_context io;
  auto decider = client->NewLoopDecider(io);
  ASSERT_NE(decider, nullptr);
  scanner::v1::PolicyRequest req = NewTriplet("lite@example.org");
  std::vector<LoopOutcome> out = DecideOnLoop(io, *decider, {req});
  EXPECT_TRUE(out[0].at_once);
  EXPECT_FALSE(out[0].decision.has_value()) << "SQLite has no connection for the loop";
  EXPECT_EQ(client->CheckPolicy(req)->outcome(), common::v1::TEMPFAIL);
  EXPECT_EQ(client->CheckPolicy(req)->outcome(), common::v1::PASS);  // min: 0s
  out = DecideOnLoop(io, *decider, {req});
  EXPECT_TRUE(out[0].at_once);
  ASSERT_TRUE(out[0].decision.has_value() && out[0].decision->ok());
  EXPECT_EQ((**out[0].decision).outcome(), common::v1::PASS);
}

}  // namespace
}  // namespace sagator
