#include "tools/sglist/sglist.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "tests/harness/subprocess.h"

namespace sagator::sglist {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class SglistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    auto db = sql::OpenSqlite(absl::StrCat(std::getenv("TEST_TMPDIR"), "/l", ++n, ".db"),
                              absl::Seconds(5));
    ASSERT_TRUE(db.ok()) << db.status();
    auto s = policy::PolicyStore::Open(*db);
    ASSERT_TRUE(s.ok());
    store_ = *std::move(s);
  }

  int Cmd(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    return sglist::Run(*store_, args, options_, now_, out_, err_);
  }

  std::unique_ptr<policy::PolicyStore> store_;
  Options options_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  std::ostringstream out_, err_;
};

TEST_F(SglistTest, AddsListsAndRemovesEntries) {
  options_.expire = absl::Hours(24);
  options_.comment = "spam run";
  EXPECT_EQ(Cmd({"add", "bs", "Spammer.Example"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("added BS spammer.example, expires 2027-01-16 08:00:00"));
  options_.expire = absl::ZeroDuration();
  EXPECT_EQ(Cmd({"add", "WA", "192.0.2.0/24"}), 0);
  EXPECT_EQ(Cmd({"list"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("BS   spammer.example"));
  EXPECT_THAT(out_.str(), HasSubstr("spam run"));
  EXPECT_THAT(out_.str(), HasSubstr("WA   192.0.2.0/24"));
  EXPECT_EQ(Cmd({"list", "WA"}), 0);
  EXPECT_THAT(out_.str(), Not(HasSubstr("spammer")));
  EXPECT_EQ(Cmd({"remove", "BS", "spammer.example"}), 0);
  EXPECT_EQ(Cmd({"remove", "BS", "spammer.example"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("no BS entry spammer.example"));
}

TEST_F(SglistTest, ShowsGreylistStateAndCleansUp) {
  policy::GreylistParams p;
  ASSERT_TRUE(store_->Greylist({"192.0.2.0/24", "a@example.org", "b@example.net"}, p, now_).ok());
  ASSERT_TRUE(store_->Greylist({"192.0.2.0/24", "a@example.org", "b@example.net"}, p,
                               now_ + absl::Seconds(400))
                  .ok());
  ASSERT_TRUE(store_->Greylist({"198.51.100.0/24", "", "c@example.net"}, p, now_).ok());
  EXPECT_EQ(Cmd({"greylist"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("passed after 400 s"));
  EXPECT_THAT(out_.str(), HasSubstr("waiting"));
  EXPECT_EQ(Cmd({"greylist", "198.51"}), 0);
  EXPECT_THAT(out_.str(), Not(HasSubstr("a@example.org")));
  EXPECT_THAT(out_.str(), HasSubstr("<>"));
  now_ += absl::Hours(49);
  EXPECT_EQ(Cmd({"cleanup"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("removed 1 greylisting triplets"));
}

TEST_F(SglistTest, BadUsageExplainsItself) {
  EXPECT_EQ(Cmd({}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("Usage: sglist"));
  EXPECT_EQ(Cmd({"add", "XX", "a"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("'XX' is not a list flag"));
  EXPECT_EQ(Cmd({"add", "BA", "not-an-ip"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("is not an IP address or network"));
  EXPECT_EQ(Cmd({"frobnicate"}), 2);
}

TEST(SglistBinary, WorksOnTheConfiguredDatabase) {
  std::string dir = std::getenv("TEST_TMPDIR");
  std::string cfg = absl::StrCat(dir, "/sglist.yaml");
  sagator::testing::WriteFile(cfg, "databases: {default: {sqlite: {path: lists.db}}}\n");
  std::string bin = sagator::testing::RunfilePath("tools/sglist/sglist");
  auto r = sagator::testing::RunCommand({bin, "--config", cfg, "add", "BA", "203.0.113.7"}, "");
  EXPECT_EQ(r.exit_code, 0) << (r.out + r.err);
  r = sagator::testing::RunCommand({bin, "--config", cfg, "list"}, "");
  EXPECT_EQ(r.exit_code, 0) << (r.out + r.err);
  EXPECT_THAT((r.out + r.err), HasSubstr("203.0.113.7"));
  r = sagator::testing::RunCommand({bin, "--config", cfg, "--db", "other", "list"}, "");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT((r.out + r.err), HasSubstr("configures no database named 'other'"));
}

TEST_F(SglistTest, SetsTheScannerSetOfAnAddressOrDomain) {
  EXPECT_EQ(Cmd({"sets"}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("no sql_find table"));
  static int n = 0;
  auto db = sql::OpenSqlite(absl::StrCat(std::getenv("TEST_TMPDIR"), "/sets", ++n, ".db"),
                            absl::Seconds(5));
  ASSERT_TRUE(db.ok());
  auto table = scanners::ScannerSetTable::Open(*db);
  ASSERT_TRUE(table.ok());
  options_.sets = table->get();
  EXPECT_EQ(Cmd({"set", "@Example.com", "strict"}), 0) << err_.str();
  EXPECT_EQ(Cmd({"set", "boss@example.com", "relaxed"}), 0);
  EXPECT_EQ(Cmd({"set", "nodomain", "x"}), 2);
  EXPECT_EQ(Cmd({"sets"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("@example.com"));
  EXPECT_THAT(out_.str(), HasSubstr("relaxed"));
  EXPECT_EQ(*(*table)->Lookup("boss@example.com"), "relaxed");
  EXPECT_EQ(Cmd({"unset", "boss@example.com"}), 0);
  EXPECT_EQ(*(*table)->Lookup("boss@example.com"), "strict");
}

}  // namespace
}  // namespace sagator::sglist
