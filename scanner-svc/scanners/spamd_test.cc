// spamassassind() against a real spamd: GTUBE is SPAM with level score / required,
// ham is clean with its fraction, reqspamlevel overrides the required score,
// sa_max_file gives "not scanned", filter rewrites the message, the spamd user
// follows mydestination / virtual_users / sa_user, and spamd down is an error.
#include "scanner-svc/scanners/spamd.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "scanner-svc/chain_set.h"
#include "tests/harness/spamd_daemon.h"
#include "tests/harness/subprocess.h"

namespace sagator::scanners {
namespace {

using engine::ScanContext;
using ::testing::HasSubstr;

// SpamAssassin's own test string: scores 1000.
const char kGtube[] =
    "From: spammer@example.org\r\nTo: user@example.net\r\nSubject: buy now\r\n"
    "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <gtube@example.org>\r\n\r\n"
    "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
const char kHam[] =
    "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\nSubject: lunch\r\n"
    "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <ham-1@example.org>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    "Hi Bob,\r\n\r\nshall we have lunch at noon on Friday? The usual place.\r\n\r\nAlice\r\n";

class SpamdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto d = harness::SpamdDaemon::Start(absl::StrCat(std::getenv("TEST_TMPDIR"), "/spamd"));
    ASSERT_TRUE(d.ok()) << d.status();
    spamd_ = d->release();
  }
  static void TearDownTestSuite() {
    delete spamd_;
    spamd_ = nullptr;
  }

  std::unique_ptr<SpamdScanner> Make(config::v1::SpamassassindSpec spec) {
    if (spec.address().empty()) spec.set_address(spamd_->address());
    if (!spec.has_timeout()) spec.mutable_timeout()->set_seconds(60);
    if (spec.sa_max_file() == 0) spec.set_sa_max_file(500000);
    if (spec.reqspamlevel() == 0) spec.set_reqspamlevel(-1);
    if (spec.sa_user().empty()) spec.set_sa_user("vscan");
    auto s = SpamdScanner::Create(spec, nullptr);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  absl::StatusOr<engine::ScanResult> Scan(const SpamdScanner& s, const std::string& message,
                                          engine::MessageEnvelope env = {},
                                          std::optional<std::string>* rewritten = nullptr) {
    ScanContext ctx(message, std::move(env), absl::Now() + absl::Seconds(60));
    auto r = s.Scan(ctx);
    if (rewritten != nullptr) *rewritten = ctx.rewritten();
    return r;
  }

  static harness::SpamdDaemon* spamd_;
};

harness::SpamdDaemon* SpamdTest::spamd_ = nullptr;

TEST_F(SpamdTest, GtubeIsSpamWithLevelScoreOverRequired) {
  auto s = Make({});
  auto r = Scan(*s, kGtube);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->detected());
  EXPECT_EQ(r->name, "SPAM");
  EXPECT_GT(r->level, 150.0);  // about 1000 / 5
  EXPECT_THAT(r->output, HasSubstr("required=5"));
  EXPECT_THAT(r->output, HasSubstr("GTUBE"));
  EXPECT_EQ(r->path, "spamassassind()");
}

TEST_F(SpamdTest, HamIsCleanWithItsFraction) {
  auto s = Make({});
  auto r = Scan(*s, kHam);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->detected()) << r->output;
  EXPECT_LT(r->level, 1.0);
  EXPECT_THAT(r->output, HasSubstr("required=5"));
}

TEST_F(SpamdTest, ReqspamlevelOverridesTheRequiredScore) {
  config::v1::SpamassassindSpec spec;
  spec.set_reqspamlevel(2000);
  auto r = Scan(*Make(spec), kGtube);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->detected());  // about 1000 / 2000
  EXPECT_GT(r->level, 0.4);
  EXPECT_THAT(r->output, HasSubstr("required=2000"));
}

TEST_F(SpamdTest, LargerThanSaMaxFileIsNotScanned) {
  config::v1::SpamassassindSpec spec;
  spec.set_sa_max_file(100);
  auto r = Scan(*Make(spec), kGtube);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->detected());
  EXPECT_TRUE(r->not_scanned);
  EXPECT_THAT(r->name, HasSubstr("sa_max_file"));
}

TEST_F(SpamdTest, FilterRewritesTheMessage) {
  config::v1::SpamassassindSpec spec;
  spec.set_filter(true);
  std::optional<std::string> rewritten;
  auto r = Scan(*Make(spec), kGtube, {}, &rewritten);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->detected());
  ASSERT_TRUE(rewritten.has_value());
  EXPECT_THAT(*rewritten, HasSubstr("X-Spam-Flag: YES"));
}

TEST_F(SpamdTest, ChoosesTheSpamdUser) {
  config::v1::SpamassassindSpec spec;
  spec.set_mydestination("^example\\.net$");
  spec.set_virtual_users("@virtual\\.example$");
  auto s = Make(spec);
  engine::MessageEnvelope one;
  one.recipients = {"Alice@example.net"};
  EXPECT_EQ(s->UserFor(one), "alice");
  one.recipients = {"carol@virtual.example"};
  EXPECT_EQ(s->UserFor(one), "carol@virtual.example");
  engine::MessageEnvelope two;
  two.recipients = {"alice@example.net", "bob@example.net"};
  EXPECT_EQ(s->UserFor(two), "vscan");
  one.recipients = {"dave@elsewhere.example"};
  EXPECT_EQ(s->UserFor(one), "vscan");
  one.recipients = {"eve\r\nUser: root@example.net"};  // nothing can break the header
  EXPECT_EQ(s->UserFor(one), "eveuserroot");
  // The user reaches spamd.
  one.recipients = {"alice@example.net"};
  ASSERT_TRUE(Scan(*s, kHam, one).ok());
  EXPECT_THAT(spamd_->Log(), HasSubstr("for alice:"));
}

TEST_F(SpamdTest, SpamdDownIsAnErrorNamingIt) {
  config::v1::SpamassassindSpec spec;
  spec.set_address(absl::StrCat("127.0.0.1:", testing::PickFreePort()));
  auto r = Scan(*Make(spec), kHam);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("spamd at 127.0.0.1:"));
}

TEST_F(SpamdTest, ConfiguredInAChain) {
  auto cfg = LoadConfigString(
      absl::StrCat("chains:\n  c:\n    - spamassassind: {address: \"", spamd_->address(),
                   "\"}\n"),
      "test.yaml", "/tmp");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  auto chains = ChainSet::Create(*cfg);
  ASSERT_TRUE(chains.ok()) << chains.status();
  auto v = (*chains)->Run("c", kGtube, {}, absl::Now() + absl::Seconds(60));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_EQ(v->result.name, "SPAM");
  v = (*chains)->Run("c", kHam, {}, absl::Now() + absl::Seconds(60));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::PASS);
}

}  // namespace
}  // namespace sagator::scanners
