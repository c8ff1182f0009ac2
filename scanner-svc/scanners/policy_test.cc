// The policy scanners on SQLite with a controlled clock.
#include "scanner-svc/scanners/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/would_wait.h"

namespace sagator::scanners {
namespace {

using ::testing::HasSubstr;

int counter = 0;

class PolicyScannersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = sql::OpenSqlite(
        absl::StrCat(std::getenv("TEST_TMPDIR"), "/s", ++counter, ".db"), absl::Seconds(5));
    ASSERT_TRUE(db.ok()) << db.status();
    auto s = policy::PolicyStore::Open(*db);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    spec_.set_info_url("https://example.org/greylisting");
    spec_.mutable_min()->set_seconds(300);
    spec_.mutable_expire()->set_seconds(172800);
    spec_.mutable_max_age()->set_seconds(3024000);
    spec_.set_ipv4_prefix(24);
    spec_.set_ipv6_prefix(64);
    spec_.set_auto_whitelist(5);
    spec_.set_header("X-Greylist: delayed %d seconds by SAGATOR");
  }

  Clock clock() {
    return [this] { return now_; };
  }

  engine::MessageEnvelope Env(std::string client, std::string sender,
                              std::vector<std::string> rcpts) {
    engine::MessageEnvelope e;
    e.client_address = std::move(client);
    e.sender = std::move(sender);
    e.recipients = std::move(rcpts);
    return e;
  }

  std::shared_ptr<policy::PolicyStore> store_;
  config::v1::GreylistSpec spec_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

TEST_F(PolicyScannersTest, GreylistDefersWithInfoUrlThenPassesWithADelayHeader) {
  GreylistScanner g(store_, spec_, clock());
  engine::ScanContext first("", Env("192.0.2.10", "a@example.org", {"b@example.net"}),
                            absl::InfiniteFuture());
  auto r = g.Scan(first);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->detected());
  EXPECT_EQ(r->name, "Greylisted");
  EXPECT_TRUE(first.defer());
  EXPECT_EQ(first.reply_text(),
            "4.7.1 Greylisted, try again in 300 seconds, see https://example.org/greylisting");

  // A retry from another host of the same /24 after 6 minutes passes.
  now_ += absl::Minutes(6);
  engine::ScanContext retry("", Env("192.0.2.99", "A@Example.org", {"b@example.net"}),
                            absl::InfiniteFuture());
  r = g.Scan(retry);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->detected());
  EXPECT_FALSE(retry.defer());
  ASSERT_EQ(retry.header_edits().size(), 1u);
  EXPECT_EQ(retry.header_edits()[0].name, "X-Greylist");
  EXPECT_EQ(retry.header_edits()[0].value, "delayed 360 seconds by SAGATOR");

  // Later mail passes without a header.
  now_ += absl::Minutes(1);
  engine::ScanContext later("", Env("192.0.2.10", "a@example.org", {"b@example.net"}),
                            absl::InfiniteFuture());
  r = g.Scan(later);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->detected());
  EXPECT_TRUE(later.header_edits().empty());
}

TEST_F(PolicyScannersTest, GreylistDefersUntilEveryRecipientPassedAndSkipsUnknownClients) {
  GreylistScanner g(store_, spec_, clock());
  engine::ScanContext a("", Env("198.51.100.1", "s@example.org", {"r1@example.net"}),
                        absl::InfiniteFuture());
  ASSERT_TRUE(g.Scan(a)->detected());
  now_ += absl::Minutes(10);
  engine::ScanContext both(
      "", Env("198.51.100.1", "s@example.org", {"r1@example.net", "r2@example.net"}),
      absl::InfiniteFuture());
  auto r = g.Scan(both);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->detected());  // r2 is new
  EXPECT_THAT(both.reply_text(), HasSubstr("try again in 300 seconds"));

  engine::ScanContext none("", Env("", "s@example.org", {"r1@example.net"}),
                           absl::InfiniteFuture());
  r = g.Scan(none);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->detected());
}

// ScanContext::memory_only: a passed triplet answers; anything that needs the
// database (a new recipient, the ten-minute cleanup) says "would wait" and leaves
// no trace, so the chain can run again where it may wait.
TEST_F(PolicyScannersTest, GreylistMemoryOnlyAnswersPassedTripletsAndWaitsForTheRest) {
  GreylistScanner g(store_, spec_, clock());
  EXPECT_TRUE(g.HonorsMemoryOnly());
  auto scan = [&](std::vector<std::string> rcpts, bool memory_only,
                  engine::ScanContext* out = nullptr) {
    engine::ScanContext ctx("", Env("192.0.2.10", "a@example.org", std::move(rcpts)),
                            absl::InfiniteFuture());
    ctx.set_memory_only(memory_only);
    auto r = g.Scan(ctx);
    if (out != nullptr) *out = ctx;
    return r;
  };
  // The first scan is due for the cleanup, which may not run memory-only.
  auto r = scan({"b@example.net"}, true);
  EXPECT_TRUE(!r.ok() && IsWouldWait(r.status())) << r.status();
  ASSERT_TRUE(scan({"b@example.net"}, false)->detected());
  // A triplet this store recorded is deferred from memory until min.
  engine::ScanContext deferred("", {}, absl::InfiniteFuture());
  r = scan({"b@example.net"}, true, &deferred);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->detected());
  EXPECT_TRUE(deferred.defer());
  now_ += absl::Minutes(6);
  ASSERT_TRUE(scan({"b@example.net"}, false).ok());

  engine::ScanContext ctx("", {}, absl::InfiniteFuture());
  r = scan({"b@example.net"}, true, &ctx);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->detected());
  EXPECT_TRUE(ctx.header_edits().empty());
  // A second, new recipient needs the database: nothing is recorded for it.
  r = scan({"b@example.net", "new@example.net"}, true, &ctx);
  EXPECT_TRUE(!r.ok() && IsWouldWait(r.status())) << r.status();
  EXPECT_FALSE(ctx.defer());
  auto records = store_->GreylistRecords("new@example.net", 10);
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->empty());
}

TEST_F(PolicyScannersTest, SqlListWhiteForcesDeliveryAndBlackRejectsWithTheReason) {
  SqlListScanner l(store_, "Blacklisted", clock());
  policy::ListEntry black;
  black.kind = policy::ListKind::kBS;
  black.value = "spam.example";
  ASSERT_TRUE(store_->AddListEntry(black).ok());
  policy::ListEntry white;
  white.kind = policy::ListKind::kWR;
  white.value = "abuse@example.net";
  ASSERT_TRUE(store_->AddListEntry(white).ok());

  engine::ScanContext b("", Env("192.0.2.1", "x@spam.example", {"user@example.net"}),
                        absl::InfiniteFuture());
  auto r = l.Scan(b);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->detected());
  EXPECT_EQ(r->name, "Blacklisted");
  EXPECT_FALSE(b.deliver());
  EXPECT_EQ(b.reply_text(), "5.7.1 Rejected: sender spam.example is blacklisted");

  engine::ScanContext w("", Env("192.0.2.1", "x@spam.example", {"abuse@example.net"}),
                        absl::InfiniteFuture());
  r = l.Scan(w);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(w.deliver());
  EXPECT_EQ(r->name, "Whitelisted");

  engine::ScanContext clean("", Env("192.0.2.1", "x@good.example", {"user@example.net"}),
                            absl::InfiniteFuture());
  r = l.Scan(clean);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->detected());
}

class AlwaysDetects final : public engine::Scanner {
 public:
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext&) const override {
    return engine::ScanResult::Detected(1.0, "Eicar-Test-Signature", "x()");
  }
  std::string Describe() const override { return "x()"; }
};

TEST_F(PolicyScannersTest, AddListedListsTheSenderOfADetectionWithExpiry) {
  config::v1::AddListedSpec spec;
  spec.set_flags("BA,BS");
  spec.mutable_expire()->set_seconds(3600);
  auto a = AddListed::Create(store_, spec, std::make_unique<AlwaysDetects>(), clock());
  ASSERT_TRUE(a.ok()) << a.status();
  engine::ScanContext ctx("msg", Env("203.0.113.5", "virus@example.org", {"u@example.net"}),
                          absl::InfiniteFuture());
  auto r = (*a)->Scan(ctx);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->name, "Eicar-Test-Signature");
  auto entries = store_->ListEntries(std::nullopt);
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].value, "203.0.113.5");
  EXPECT_EQ((*entries)[0].expires, now_ + absl::Hours(1));
  EXPECT_EQ((*entries)[1].value, "virus@example.org");
  EXPECT_EQ((*entries)[1].comment, "add_listed: Eicar-Test-Signature");

  // The next mail from that client is refused by sql_list.
  SqlListScanner l(store_, "Blacklisted", clock());
  engine::ScanContext next("", Env("203.0.113.5", "other@example.org", {"u@example.net"}),
                           absl::InfiniteFuture());
  EXPECT_TRUE(l.Scan(next)->detected());

  config::v1::AddListedSpec bad;
  bad.set_flags("BX");
  EXPECT_FALSE(AddListed::Create(store_, bad, std::make_unique<AlwaysDetects>()).ok());
}

}  // namespace
}  // namespace sagator::scanners
