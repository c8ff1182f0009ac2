// regexp_find and sql_find (SQLite, and the table on PostgreSQL) as configured in
// YAML: each recipient selects its scanner set.
#include "scanner-svc/scanners/find.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "scanner-svc/chain_set.h"
#include "tests/harness/fresh_database.h"

namespace sagator::scanners {
namespace {

using ::testing::HasSubstr;

constexpr char kSpam[] = "Subject: offer\r\n\r\nBUY NOW\r\n";
// "strict" detects the offer; "relaxed" only tags it below the detection level.
constexpr char kSets[] =
    "        sets:\n"
    "          strict: [{string_scan: {entries: [{name: Spam.Offer, patterns: [\"BUY NOW\"]}]}}]\n"
    "          relaxed: [{const: {level: 0.3, name: Meh}}]\n";

class FindTest : public ::testing::Test {
 protected:
  absl::Status Build(const std::string& yaml) {
    auto cfg = LoadConfigString(yaml, "test.yaml", getenv("TEST_TMPDIR"));
    if (!cfg.ok()) return cfg.status();
    auto chains = ChainSet::Create(*cfg);
    if (!chains.ok()) return chains.status();
    chains_ = *std::move(chains);
    return absl::OkStatus();
  }
  absl::StatusOr<ChainVerdict> Run(std::vector<std::string> recipients) {
    engine::MessageEnvelope env;
    env.sender = "a@example.org";
    env.recipients = std::move(recipients);
    return chains_->Run("c", kSpam, env, absl::Now() + absl::Seconds(30));
  }
  std::unique_ptr<ChainSet> chains_;
};

TEST_F(FindTest, RegexpFindChoosesTheSetPerRecipient) {
  ASSERT_TRUE(Build(absl::StrCat("chains:\n  c:\n    - regexp_find:\n", kSets,
                                 "        rules:\n"
                                 "          - {pattern: \"^ceo@\", set: strict}\n"
                                 "          - {pattern: \"@EXAMPLE\\\\.com$\", set: relaxed}\n"
                                 "        default: strict\n"))
                  .ok());
  auto v = Run({"staff@example.com"});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::PASS);
  EXPECT_DOUBLE_EQ(v->result.level, 0.3);
  // Rules are tried in order and ignore case.
  v = Run({"CEO@example.com"});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_EQ(v->result.path, "regexp_find(string_scan())");
  // Unmatched recipients get the default.
  v = Run({"x@elsewhere.org"});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  // Mixed recipients: every selected set runs; a detection decides.
  v = Run({"staff@example.com", "ceo@example.com"});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::REJECT);
}

TEST_F(FindTest, WithoutADefaultUnmatchedRecipientsAreNotScannedHere) {
  ASSERT_TRUE(Build(absl::StrCat("chains:\n  c:\n    - regexp_find:\n", kSets,
                                 "        rules: [{pattern: \"^ceo@\", set: strict}]\n"))
                  .ok());
  auto v = Run({"x@example.com"});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::PASS);
  EXPECT_DOUBLE_EQ(v->result.level, 0);
}

TEST_F(FindTest, RefusesSetsThatAreNotConfigured) {
  absl::Status s = Build(absl::StrCat("chains:\n  c:\n    - regexp_find:\n", kSets,
                                      "        rules: [{pattern: x, set: nope}]\n"));
  EXPECT_THAT(s.message(), HasSubstr("regexp_find.rules[0].set: 'nope' is not under sets"));
  s = Build(absl::StrCat("chains:\n  c:\n    - regexp_find:\n", kSets, "        default: nope\n"));
  EXPECT_THAT(s.message(), HasSubstr("regexp_find.default: 'nope' is not under sets"));
}

TEST_F(FindTest, SqlFindReadsTheTableAtEveryMessage) {
  ASSERT_TRUE(Build(absl::StrCat("databases:\n  main: {sqlite: {path: find.db}}\n"
                                 "chains:\n  c:\n    - sql_find:\n        db: main\n",
                                 kSets, "        default: relaxed\n"))
                  .ok());
  auto db = sql::OpenSqlite(absl::StrCat(getenv("TEST_TMPDIR"), "/find.db"), absl::Seconds(5));
  ASSERT_TRUE(db.ok());
  auto table = ScannerSetTable::Open(*db);
  ASSERT_TRUE(table.ok());
  auto v = Run({"boss@example.com"});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::PASS);
  // A domain entry, then an address entry that wins over it.
  ASSERT_TRUE((*table)->Set("@Example.com", "strict").ok());
  v = Run({"boss@example.com"});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_EQ(v->result.path, "sql_find(string_scan())");
  ASSERT_TRUE((*table)->Set("boss@example.com", "relaxed").ok());
  v = Run({"boss@example.com"});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::PASS);
  // A set the configuration lacks: a temporary failure, never a pass.
  ASSERT_TRUE((*table)->Set("boss@example.com", "gone").ok());
  v = Run({"boss@example.com"});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::TEMPFAIL);
  EXPECT_THAT(v->result.output, HasSubstr("selects scanner set 'gone', which is not configured"));
}

class SetTableTest : public ::testing::TestWithParam<sql::Backend> {};

TEST_P(SetTableTest, SetsListsAndRemoves) {
  auto db = harness::FreshDatabase(GetParam());
  ASSERT_NE(db, nullptr);
  auto table = ScannerSetTable::Open(db);
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_TRUE((*table)->Set("@example.com", "a").ok());
  ASSERT_TRUE((*table)->Set("@example.com", "b").ok());
  ASSERT_TRUE((*table)->Set("x@example.com", "a").ok());
  auto list = (*table)->List();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);
  EXPECT_EQ(*(*table)->Lookup("X@Example.COM"), "a");
  EXPECT_EQ(*(*table)->Lookup("y@example.com"), "b");
  EXPECT_EQ(*(*table)->Lookup("y@example.org"), "");
  ASSERT_TRUE((*table)->Remove("x@example.com").ok());
  EXPECT_EQ(*(*table)->Lookup("x@example.com"), "b");
}

INSTANTIATE_TEST_SUITE_P(Backends, SetTableTest,
                         ::testing::Values(sql::Backend::kSqlite, sql::Backend::kPostgresql),
                         [](const auto& info) { return harness::BackendName(info.param); });

}  // namespace
}  // namespace sagator::scanners
