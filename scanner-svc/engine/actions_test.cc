// The action interscanners as configured in YAML and run by a ChainSet: recover,
// retry (against a clamd that is not there: a real failure), modify_subject,
// modify_header, check_level, custom_action and cache.
#include "scanner-svc/engine/actions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "common/stats.h"
#include "scanner-svc/chain_set.h"
#include "scanner-svc/testing/header_edits.h"
#include "tests/harness/subprocess.h"

namespace sagator {
namespace {

using ::testing::HasSubstr;

constexpr char kSpam[] = "From: a@example.org\r\nSubject: cheap offer\r\nX-Tracking: 1\r\n\r\nBUY NOW\r\n";
constexpr char kHam[] = "From: a@example.org\r\nSubject: lunch\r\n\r\nnoon?\r\n";

class ActionsTest : public ::testing::Test {
 protected:
  // A chain `c` of the given YAML scanner list.
  absl::StatusOr<ChainVerdict> Run(const std::string& scanners, const std::string& message,
                                   absl::Duration deadline = absl::Seconds(30)) {
    auto cfg = LoadConfigString(absl::StrCat("chains:\n  c:\n", scanners), "test.yaml", "/tmp");
    EXPECT_TRUE(cfg.ok()) << cfg.status();
    if (!cfg.ok()) return cfg.status();
    auto chains = ChainSet::Create(*cfg, &registry_);
    EXPECT_TRUE(chains.ok()) << chains.status();
    if (!chains.ok()) return chains.status();
    chains_ = *std::move(chains);
    return chains_->Run("c", message, {}, absl::Now() + deadline);
  }

  std::string DeadClamd() {
    return absl::StrCat("{clamd: {address: \"127.0.0.1:", testing::PickFreePort(),
                        "\", timeout: 1s}}");
  }

  static std::string Edit(const ChainVerdict& v, const std::string& name) {
    return testing::EditOf(v.edits, name, testing::Which::kFirst);
  }

  stats::Registry registry_;
  std::unique_ptr<ChainSet> chains_;
};

constexpr char kSpamWord[] =
    "{string_scan: {entries: [{name: Spam.Offer, patterns: [\"BUY NOW\"]}]}}";

TEST_F(ActionsTest, RecoverTurnsAnErrorIntoItsResult) {
  auto v = Run(absl::StrCat("    - ", DeadClamd(), "\n"), kHam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::TEMPFAIL);
  v = Run(absl::StrCat("    - recover: {scanners: [", DeadClamd(), "]}\n"), kHam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::PASS);
  v = Run(absl::StrCat("    - recover: {level: 1, name: Unscanned, scanners: [", DeadClamd(),
                       "]}\n"),
          kHam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_EQ(v->result.name, "Unscanned");
  EXPECT_THAT(v->result.output, HasSubstr("recovered from: clamd at 127.0.0.1:"));
}

TEST_F(ActionsTest, RetryRunsAgainAndGivesUpWithinTheDeadline) {
  auto v = Run(absl::StrCat("    - retry: {count: 3, delay: 0.05s, scanners: [", DeadClamd(),
                            "]}\n"),
               kHam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::TEMPFAIL);
  EXPECT_THAT(std::string(v->error.message()), HasSubstr("(after 3 tries)"));
  // A scan whose caller's deadline comes first stops waiting.
  absl::Time start = absl::Now();
  v = Run(absl::StrCat("    - retry: {count: 5, delay: 600s, scanners: [", DeadClamd(), "]}\n"),
          kHam, absl::Milliseconds(300));
  EXPECT_FALSE(v.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
  // Success on the first run is just the inner result.
  v = Run(absl::StrCat("    - retry: {scanners: [", kSpamWord, "]}\n"), kSpam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->result.path, "retry(string_scan())");
}

TEST_F(ActionsTest, ModifySubjectAndHeaderEditDetectedMailOnly) {
  std::string chain = absl::StrCat(
      "    - modify_subject:\n        prefix: \"[SPAM %(LEVEL)s] \"\n        scanners:\n"
      "          - modify_header: {name: X-Spam-Flag, value: \"YES (%V)\", scanners: [",
      kSpamWord, "]}\n");
  auto v = Run(chain + "    - modify_header: {name: X-Tracking, remove: true, scanners: [" +
                   kSpamWord + "]}\n",
               kSpam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(Edit(*v, "Subject"), "replace:[SPAM 1.00] cheap offer");
  EXPECT_EQ(Edit(*v, "X-Spam-Flag"), "replace:YES (Spam.Offer)");
  v = Run(chain, kHam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(Edit(*v, "Subject"), "");
  EXPECT_EQ(Edit(*v, "X-Spam-Flag"), "");
  // onlyif narrows which detections act.
  v = Run(absl::StrCat("    - modify_subject: {onlyif: \"^Virus\", scanners: [", kSpamWord,
                       "]}\n"),
          kSpam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(Edit(*v, "Subject"), "");
  // A header name that cannot be one is refused when the chain is built.
  auto cfg = LoadConfigString(
      absl::StrCat("chains:\n  c:\n    - modify_header: {name: \"X Bad:\", scanners: [",
                   kSpamWord, "]}\n"),
      "test.yaml", "/tmp");
  ASSERT_TRUE(cfg.ok());
  EXPECT_FALSE(ChainSet::Create(*cfg).ok());
}

TEST_F(ActionsTest, CheckLevelRoutesByTheTestsLevel) {
  std::string branches =
      "        levels:\n"
      "          - {min: 0.3, scanners: [{const: {level: 1, name: Medium}}]}\n"
      "          - {min: 0.9, scanners: [{const: {level: 2, name: High}}]}\n";
  auto v = Run("    - check_level:\n        test: [{const: {level: 0.5}}]\n" + branches, kHam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->result.name, "Medium");
  EXPECT_THAT(v->result.output, HasSubstr("test level 0.50"));
  v = Run("    - check_level:\n        test: [{const: {level: 0.95}}]\n" + branches, kHam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->result.name, "High");
  v = Run("    - check_level:\n        test: [{const: {level: 0.1}}]\n" + branches, kHam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::PASS);
}

TEST_F(ActionsTest, CustomActionSetsTheDispositionAndReply) {
  auto v = Run(absl::StrCat("    - custom_action: {outcome: DROP, reply: \"2.0.0 Discarded: "
                            "%(VIRNAME)s\", scanners: [",
                            kSpamWord, "]}\n"),
               kSpam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::DROP);
  EXPECT_EQ(v->reply_text, "2.0.0 Discarded: Spam.Offer");
  v = Run(absl::StrCat("    - custom_action: {outcome: TEMPFAIL, reply: \"4.7.1 Try later\", "
                       "scanners: [",
                       kSpamWord, "]}\n"),
          kSpam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::TEMPFAIL);
  EXPECT_EQ(v->reply_text, "4.7.1 Try later");
  v = Run(absl::StrCat("    - custom_action: {outcome: FORCED_PASS, scanners: [", kSpamWord,
                       "]}\n"),
          kSpam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::FORCED_PASS);
  v = Run(absl::StrCat("    - custom_action: {outcome: DROP, onlyif: Virus, scanners: [",
                       kSpamWord, "]}\n"),
          kSpam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::REJECT);
}

TEST_F(ActionsTest, CacheRunsItsScannersOncePerMessage) {
  std::string once = absl::StrCat("cache: {name: spam, scanners: [", kSpamWord, "]}");
  auto v = Run(absl::StrCat("    - match_all: [{", once, "}, {", once, "}]\n"), kSpam);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_EQ(registry_.GetCounter("scans", {{"result", "detected"}, {"scanner", "string_scan"}})
                ->value(),
            1);
}

}  // namespace
}  // namespace sagator
