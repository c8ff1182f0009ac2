// The policy server behind a real Postfix (Debian's postfix package):
//
//   SMTP client ─▶ Postfix smtpd ─check_policy_service─▶ PolicyServer ─gRPC─▶ fake scanner-svc
//                  └─▶ smtp-sink (accepted mail)
//
// Postfix must understand every action we send (the SMTP client sees the resulting
// reply), reuse its policy connection, prepend our header, and fall back to its
// default_action (451 4.3.5) when the server closes without an answer.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/scanner_client.h"
#include "common/testing/fake_scanner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/smtpd_policy/policy_server.h"
#include "tests/harness/postfix.h"
#include "tests/harness/smtp_client.h"

namespace sagator::smtpd_policy {
namespace {

using harness::PostfixInstance;
using harness::SinkMessage;
using harness::SmtpClient;
using harness::SmtpSink;
using sagator::testing::FakeScannerService;
using ::testing::HasSubstr;
using ::testing::StartsWith;

absl::StatusOr<scanner::v1::PolicyResponse> ByRecipient(const scanner::v1::PolicyRequest& req) {
  scanner::v1::PolicyResponse p;
  const std::string& rcpt = req.recipient();
  if (absl::StartsWith(rcpt, "reject@")) {
    p.set_outcome(common::v1::REJECT);
    p.set_reply_text("5.7.1 Listed sender");
  } else if (absl::StartsWith(rcpt, "defer@")) {
    p.set_outcome(common::v1::TEMPFAIL);
    p.set_reply_text("4.7.1 Greylisted, try again later");
  } else if (absl::StartsWith(rcpt, "ok@")) {
    p.set_outcome(common::v1::FORCED_PASS);
  } else if (absl::StartsWith(rcpt, "header@")) {
    p.set_outcome(common::v1::PASS);
    auto* h = p.add_header_edits();
    h->set_kind(common::v1::HeaderEdit::ADD);
    h->set_name("X-Greylist");
    h->set_value("delayed by SAGATOR");
  } else {
    p.set_outcome(common::v1::PASS);
  }
  return p;
}

class PolicyPostfixTest : public ::testing::Test {
 protected:
  void Start(PolicyServerOptions o = {}) {
    scanner_service_.SetPolicyHandler(ByRecipient);
    int scanner_port = scanner_service_.Start();
    ASSERT_GT(scanner_port, 0);
    o.host = "127.0.0.1";
    o.port = 0;
    o.chain = "policy";
    o.policy_timeout = absl::Seconds(5);
    o.shutdown_grace = absl::Milliseconds(200);
    client_ =
        NewGrpcScannerClient(absl::StrCat("127.0.0.1:", scanner_port), o.policy_timeout, 1 << 20);
    server_ = std::make_unique<PolicyServer>(o, client_.get());
    ASSERT_TRUE(server_->Start().ok());

    sink_ = std::make_unique<SmtpSink>();
    ASSERT_TRUE(sink_->Start().ok());
    PostfixInstance::Options po;
    po.relay_port = sink_->port();
    po.main_cf = {
        "relay_domains = example.org",
        absl::StrCat("smtpd_recipient_restrictions = reject_unauth_destination, "
                     "check_policy_service inet:127.0.0.1:",
                     server_->port()),
        "smtpd_policy_service_retry_delay = 1s",
    };
    absl::StatusOr<std::unique_ptr<PostfixInstance>> pf = PostfixInstance::Start(po);
    ASSERT_TRUE(pf.ok()) << pf.status();
    postfix_ = std::move(*pf);
  }

  void TearDown() override {
    if (HasFailure() && postfix_ != nullptr) std::cerr << "maillog:\n" << postfix_->Maillog();
    postfix_.reset();
    if (server_) server_->Shutdown();
    scanner_service_.Stop();
  }

  // The reply to RCPT TO:<rcpt> in a fresh transaction on `c`.
  static std::string Rcpt(SmtpClient& c, const std::string& rcpt) {
    c.Command("RSET");
    std::string mail = c.Command("MAIL FROM:<alice@example.net>");
    if (!absl::StartsWith(mail, "250")) return "MAIL: " + mail;
    return c.Command("RCPT TO:<" + rcpt + ">");
  }

  FakeScannerService scanner_service_;
  std::unique_ptr<ScannerClient> client_;
  std::unique_ptr<PolicyServer> server_;
  std::unique_ptr<SmtpSink> sink_;
  std::unique_ptr<PostfixInstance> postfix_;
};

TEST_F(PolicyPostfixTest, PostfixAppliesEveryAction) {
  Start();
  SmtpClient c(postfix_->smtp_port());
  ASSERT_TRUE(c.ok());
  ASSERT_THAT(c.Greet(), StartsWith("250"));
  EXPECT_THAT(Rcpt(c, "bob@example.org"), StartsWith("250 "));
  EXPECT_THAT(Rcpt(c, "ok@example.org"), StartsWith("250 "));
  std::string defer = Rcpt(c, "defer@example.org");
  EXPECT_THAT(defer, StartsWith("450 4.7.1 "));
  EXPECT_THAT(defer, HasSubstr("Greylisted, try again later"));
  std::string reject = Rcpt(c, "reject@example.org");
  EXPECT_THAT(reject, StartsWith("554 5.7.1 "));
  EXPECT_THAT(reject, HasSubstr("Listed sender"));
  // reject_unauth_destination decides first: no policy request for it.
  int before = scanner_service_.policy_calls();
  EXPECT_THAT(Rcpt(c, "someone@elsewhere.test"), StartsWith("554 5.7.1 "));
  EXPECT_EQ(scanner_service_.policy_calls(), before);

  // What Postfix sent.
  scanner::v1::PolicyRequest seen = scanner_service_.last_policy_request();
  EXPECT_EQ(seen.protocol_state(), "RCPT");
  EXPECT_EQ(seen.recipient(), "reject@example.org");
  EXPECT_EQ(seen.envelope().sender(), "alice@example.net");
  EXPECT_EQ(seen.envelope().client().address(), "127.0.0.1");
  EXPECT_EQ(seen.envelope().client().protocol(), "ESMTP");
  EXPECT_FALSE(seen.envelope().client().helo().empty());
  EXPECT_FALSE(seen.attributes().at("instance").empty());
  EXPECT_EQ(seen.attributes().at("request"), "smtpd_access_policy");

  // PREPEND: the header reaches the next hop.
  c.Command("RSET");
  std::string r =
      c.Deliver("alice@example.net", {"header@example.org"}, "Subject: policy\r\n\r\nbody\r\n");
  EXPECT_THAT(r, StartsWith("250 "));
  c.Command("QUIT");
  std::vector<SinkMessage> got = sink_->WaitForMessages(1, absl::Seconds(60));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Header("X-Greylist"), "delayed by SAGATOR");
  EXPECT_EQ(got[0].Header("Subject"), "policy");

  // One policy connection served every request of the session.
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.requests, 5);
  EXPECT_EQ(s.connections, 1);
  EXPECT_EQ(s.prepend, 1);
  EXPECT_EQ(s.protocol_errors, 0);
}

TEST_F(PolicyPostfixTest, ScannerDownDefersTheRecipient) {
  Start();
  scanner_service_.Stop();
  SmtpClient c(postfix_->smtp_port());
  ASSERT_THAT(c.Greet(), StartsWith("250"));
  std::string r = Rcpt(c, "bob@example.org");
  EXPECT_THAT(r, StartsWith("450 4.3.0 "));
  EXPECT_THAT(r, HasSubstr("Policy service unavailable"));
  EXPECT_EQ(server_->stats().scanner_failures, 1);
}

TEST_F(PolicyPostfixTest, ScannerDownWithFailOpenAccepts) {
  PolicyServerOptions o;
  o.fail_open = true;
  Start(o);
  scanner_service_.Stop();
  SmtpClient c(postfix_->smtp_port());
  ASSERT_THAT(c.Greet(), StartsWith("250"));
  EXPECT_THAT(Rcpt(c, "reject@example.org"), StartsWith("250 "));
  EXPECT_EQ(server_->stats().fail_open, 1);
}

// A server that closes without an answer (here: every request is over its limits):
// Postfix retries, then applies its default_action, a temporary failure.
TEST_F(PolicyPostfixTest, NoAnswerMakesPostfixUseItsDefaultAction) {
  PolicyServerOptions o;
  o.limits.max_attributes = 3;
  Start(o);
  SmtpClient c(postfix_->smtp_port());
  ASSERT_THAT(c.Greet(), StartsWith("250"));
  EXPECT_THAT(Rcpt(c, "bob@example.org"), StartsWith("451 4.3.5 "));
  EXPECT_GE(server_->stats().protocol_errors, 2);  // Postfix's try_limit is 2
  EXPECT_EQ(server_->stats().requests, 0);
}

}  // namespace
}  // namespace sagator::smtpd_policy
