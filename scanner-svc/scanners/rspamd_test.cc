// rspamd() against a real rspamd from Debian (tests/harness/rspamd_daemon), and its
// handling of replies that are not rspamd's.
#include "scanner-svc/scanners/rspamd.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "scanner-svc/chain_set.h"
#include "scanner-svc/testing/header_edits.h"
#include "tests/harness/rspamd_daemon.h"
#include "tests/harness/subprocess.h"

namespace sagator::scanners {
namespace {

using ::testing::HasSubstr;

std::string Mail(const std::string& subject, const std::string& body) {
  return absl::StrCat(
      "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: ", subject,
      "\r\nMessage-ID: <t1@example.org>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
      "\r\n", body, "\r\n");
}

class RspamdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto d = harness::RspamdDaemon::Start(absl::StrCat(getenv("TEST_TMPDIR"), "/rspamd"));
    ASSERT_TRUE(d.ok()) << d.status();
    rspamd_ = d->release();
  }
  static void TearDownTestSuite() {
    delete rspamd_;
    rspamd_ = nullptr;
  }

  absl::StatusOr<ChainVerdict> Run(const std::string& message, const std::string& params = "") {
    auto cfg = LoadConfigString(
        absl::StrCat("chains:\n  c:\n    - rspamd: {address: \"", rspamd_->address(), "\"",
                     params, "}\n"),
        "test.yaml", "/tmp");
    if (!cfg.ok()) return cfg.status();
    auto chains = ChainSet::Create(*cfg);
    if (!chains.ok()) return chains.status();
    chains_ = *std::move(chains);
    engine::MessageEnvelope env;
    env.sender = "alice@example.org";
    env.recipients = {"bob@example.org"};
    env.client_address = "127.0.0.1";
    env.client_name = "localhost";
    env.helo = "localhost";
    return chains_->Run("c", message, env, absl::Now() + absl::Seconds(30));
  }

  // The last edit of header `name` (rspamd removes a header before adding it).
  static std::string Edit(const ChainVerdict& v, const std::string& name) {
    return testing::EditOf(v.edits, name, testing::Which::kLast);
  }


  static harness::RspamdDaemon* rspamd_;
  std::unique_ptr<ChainSet> chains_;
};

harness::RspamdDaemon* RspamdTest::rspamd_ = nullptr;

TEST_F(RspamdTest, CleanMailPassesWithRspamdsHeaders) {
  auto v = Run(Mail("lunch", "Shall we meet at noon?"));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::PASS);
  EXPECT_LT(v->result.level, 1.0);
  EXPECT_THAT(v->result.output, HasSubstr("action=no action"));
  EXPECT_THAT(Edit(*v, "X-Spamd-Result"), HasSubstr("add:default: False"));
  EXPECT_EQ(Edit(*v, "X-Spamd-Result").find('\n'), std::string::npos) << "unfolded";
  EXPECT_EQ(Edit(*v, "X-Spam"), "remove");
}

TEST_F(RspamdTest, GtubeIsRejectedAsSpam) {
  auto v = Run(Mail("test", harness::kRspamdGtubeReject));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_EQ(v->result.name, "SPAM");
  EXPECT_DOUBLE_EQ(v->result.level, 1.0);
  EXPECT_THAT(v->result.output, HasSubstr("action=reject"));
  EXPECT_THAT(v->result.output, HasSubstr("GTUBE"));
}

TEST_F(RspamdTest, AddHeaderAndRewriteSubjectBecomeEdits) {
  // Scores over the add_header threshold from a real rule set (the garbage of a mail
  // without any header) rather than a test pattern: those carry no milter block.
  auto v = Run("no header at all, just words\r\n");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::PASS);
  EXPECT_GT(v->result.level, 0.0);
  EXPECT_THAT(v->result.output, HasSubstr("action=add header"));
  EXPECT_EQ(Edit(*v, "X-Spam"), "add:Yes");

  v = Run(Mail("Lunch", harness::kRspamdGtubeRewriteSubject));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(Edit(*v, "Subject"), "replace:*** SPAM *** Lunch");

  // Without apply_edits rspamd only scores.
  v = Run(Mail("Lunch", harness::kRspamdGtubeRewriteSubject), ", apply_edits: false");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(Edit(*v, "Subject"), "");
}

TEST_F(RspamdTest, LargeMailIsNotScanned) {
  auto v = Run(Mail("big", std::string(5000, 'x')), ", max_size: 1000");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->result.not_scanned);
  EXPECT_THAT(v->result.name, HasSubstr("larger than max_size"));
}

TEST(Rspamd, DownIsATemporaryFailure) {
  auto cfg = LoadConfigString(absl::StrCat("chains:\n  c:\n    - rspamd: {address: \"127.0.0.1:",
                                           testing::PickFreePort(), "\", timeout: 2s}\n"),
                              "test.yaml", "/tmp");
  ASSERT_TRUE(cfg.ok());
  auto chains = ChainSet::Create(*cfg);
  ASSERT_TRUE(chains.ok());
  auto v = (*chains)->Run("c", "Subject: x\r\n\r\nx\r\n", {}, absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::TEMPFAIL);
  EXPECT_THAT(v->result.output, HasSubstr("rspamd at 127.0.0.1:"));
}

TEST(Rspamd, RepliesThatAreNotRspamdsAreErrors) {
  config::v1::RspamdSpec spec;
  spec.set_address("127.0.0.1:1");
  spec.set_name("SPAM");
  spec.set_apply_edits(true);
  auto s = RspamdScanner::Create(spec, nullptr);
  ASSERT_TRUE(s.ok());
  engine::ScanContext ctx("x", {}, absl::Now() + absl::Seconds(5));
  daemon_io::Bounds bounds(ctx, absl::Seconds(5), "rspamd at test");
  auto r = (*s)->Interpret("HTTP/1.1 500 Error\r\n\r\n{\"error\":\"invalid command\"}", ctx,
                           bounds);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("HTTP 500"));
  r = (*s)->Interpret("HTTP/1.1 200 OK\r\n\r\nnot json", ctx, bounds);
  EXPECT_THAT(r.status().message(), HasSubstr("reply is no JSON"));
  r = (*s)->Interpret("HTTP/1.1 200 OK\r\n\r\n{\"x\": 1}", ctx, bounds);
  EXPECT_THAT(r.status().message(), HasSubstr("reply without score and action"));
  r = (*s)->Interpret("SPAMD/1.1 0 EX_OK\r\n\r\n", ctx, bounds);
  EXPECT_THAT(r.status().message(), HasSubstr("not an HTTP reply"));
  r = (*s)->Interpret("HTTP/1.1 200", ctx, bounds);
  EXPECT_THAT(r.status().message(), HasSubstr("reply cut short"));
  // Header names that are not header names are skipped, values stay on one line.
  r = (*s)->Interpret(
      "HTTP/1.1 200 OK\r\n\r\n{\"score\": 20, \"required_score\": 10, \"action\": \"reject\","
      " \"milter\": {\"add_headers\": {\"Bad Name\": \"x\", \"X-A\": [{\"value\": \"1\\n\\t2\"},"
      " \"3\"]}}}",
      ctx, bounds);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->level, 2.0);
  EXPECT_EQ(r->name, "SPAM");
  ASSERT_EQ(ctx.header_edits().size(), 2u);
  EXPECT_EQ(ctx.header_edits()[0].value, "1 2");
  EXPECT_EQ(ctx.header_edits()[1].value, "3");
}

}  // namespace
}  // namespace sagator::scanners
