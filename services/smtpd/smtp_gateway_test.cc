// The gateway in-process, with an in-memory scanner-svc (FakeScannerClient) and the
// real Postfix smtp-sink as the next hop.
#include "services/smtpd/smtp_gateway.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "common/testing/fake_scanner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness/postfix.h"
#include "tests/harness/smtp_client.h"
#include "tests/harness/subprocess.h"

namespace sagator::smtpd {
namespace {

using harness::SinkMessage;
using Client = harness::SmtpClient;
using harness::SmtpSink;
using sagator::testing::FakeScannerClient;
using sagator::testing::kEicarString;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

const char kClean[] = "From: a@example.org\r\nSubject: hello\r\n\r\nclean body\r\n";

class GatewayTest : public ::testing::Test {
 protected:
  void StartSink(SmtpSink::Options o = {}) {
    sink_ = std::make_unique<SmtpSink>(o);
    ASSERT_TRUE(sink_->Start().ok());
  }
  void StartGateway(GatewayOptions o = {}) {
    if (sink_ == nullptr) StartSink();
    o.port = 0;
    o.chain = "default";
    o.hostname = "gw.test";
    if (o.next_hop.port == 0 && o.next_hop.unix_path.empty()) {
      o.next_hop.host = "127.0.0.1";
      o.next_hop.port = sink_->port();
    }
    o.relay_timeout = absl::Seconds(10);
    gateway_ = std::make_unique<SmtpGateway>(o, &scanner_);
    ASSERT_TRUE(gateway_->Start().ok());
  }
  void TearDown() override {
    if (gateway_ != nullptr) gateway_->Shutdown();
  }
  // Messages at the sink after a short wait for stragglers.
  std::vector<SinkMessage> Settled(size_t expected) {
    return sink_->WaitForMessages(expected, absl::Seconds(expected == 0 ? 1 : 20));
  }

  FakeScannerClient scanner_;
  std::unique_ptr<SmtpSink> sink_;
  std::unique_ptr<SmtpGateway> gateway_;
};

TEST_F(GatewayTest, CleanMailIsRelayedWithTheVerdictHeaders) {
  StartGateway();
  Client c(gateway_->port());
  ASSERT_TRUE(c.ok());
  EXPECT_THAT(c.Read(), StartsWith("220 gw.test ESMTP"));
  c.Command("EHLO postfix.test");
  EXPECT_THAT(c.Command("XFORWARD NAME=mx.example.net ADDR=192.0.2.7 PROTO=ESMTP HELO=mx"),
              StartsWith("250 "));
  EXPECT_THAT(c.Command("MAIL FROM:<a@example.org>"), StartsWith("250 "));
  EXPECT_THAT(c.Command("RCPT TO:<b@example.org>"), StartsWith("250 "));
  EXPECT_THAT(c.Command("DATA"), StartsWith("354 "));
  c.Send(std::string(kClean) + ".\r\n");
  EXPECT_THAT(c.Read(), StartsWith("250 "));
  EXPECT_THAT(c.Command("QUIT"), StartsWith("221 "));

  std::vector<SinkMessage> got = Settled(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].sender, "a@example.org");
  EXPECT_THAT(got[0].recipients, ::testing::ElementsAre("b@example.org"));
  EXPECT_EQ(got[0].Header("X-Sagator-ID"), "20240101-000000-0001-00001-AbCdEf@test");
  EXPECT_THAT(got[0].message, HasSubstr("clean body"));
  // scanner-svc saw the real client from XFORWARD, not the MTA's address.
  EXPECT_EQ(scanner_.last_header().envelope().client().address(), "192.0.2.7");
  EXPECT_EQ(scanner_.last_header().envelope().client().name(), "mx.example.net");
  EXPECT_EQ(scanner_.last_header().gateway(), "smtpd");
  EXPECT_EQ(gateway_->stats().relayed, 1);
}

TEST_F(GatewayTest, VirusIsRejectedWithTheDetectionNameAndNotRelayed) {
  StartGateway();
  Client c(gateway_->port());
  std::string r = c.Deliver("a@example.org", {"b@example.org"},
                            "Subject: v\r\n\r\n" + kEicarString + "\r\n");
  EXPECT_THAT(r, StartsWith("550 5.7.1 "));
  EXPECT_THAT(r, HasSubstr("EICAR-Test"));
  EXPECT_THAT(c.Command("QUIT"), StartsWith("221"));
  EXPECT_THAT(Settled(0), IsEmpty());
  EXPECT_EQ(gateway_->stats().rejected, 1);
}

TEST_F(GatewayTest, DropIsAcceptedAndDiscarded) {
  StartGateway();
  Client c(gateway_->port());
  std::string r = c.Deliver("a@example.org", {"b@example.org"}, "Subject: d\r\n\r\nDROP-ME\r\n");
  EXPECT_THAT(r, StartsWith("250 2.7.0 "));
  EXPECT_THAT(Settled(0), IsEmpty());
}

TEST_F(GatewayTest, TempfailVerdictGives451) {
  StartGateway();
  Client c(gateway_->port());
  std::string r = c.Deliver("a@example.org", {"b@example.org"}, "Subject: t\r\n\r\nTEMPFAIL-ME\r\n");
  EXPECT_THAT(r, StartsWith("451 4.3.0 "));
  EXPECT_THAT(r, HasSubstr("engine broken"));
  EXPECT_THAT(Settled(0), IsEmpty());
}

TEST_F(GatewayTest, ScannerOutageIsATemporaryFailure) {
  scanner_.SetHandler([](const scanner::v1::ScanHeader&, const std::string&)
                          -> absl::StatusOr<ScanReply> {
    return absl::UnavailableError("connection refused");
  });
  StartGateway();
  Client c(gateway_->port());
  std::string r = c.Deliver("a@example.org", {"b@example.org"}, kClean);
  EXPECT_THAT(r, StartsWith("451 4.3.0 Error: scanner unavailable"));
  // The session goes on: the next transaction works once scanner-svc is back.
  scanner_.SetHandler(sagator::testing::PatternVerdicts());
  c.Command("MAIL FROM:<a@example.org>");
  c.Command("RCPT TO:<b@example.org>");
  c.Command("DATA");
  c.Send(std::string(kClean) + ".\r\n");
  EXPECT_THAT(c.Read(), StartsWith("250 "));
  EXPECT_EQ(Settled(1).size(), 1u);
  EXPECT_EQ(gateway_->stats().fail_open, 0);
}

TEST_F(GatewayTest, FailOpenRelaysUnscannedAndCountsIt) {
  scanner_.SetHandler([](const scanner::v1::ScanHeader&, const std::string&)
                          -> absl::StatusOr<ScanReply> {
    return absl::DeadlineExceededError("too slow");
  });
  GatewayOptions o;
  o.fail_open = true;
  StartGateway(o);
  Client c(gateway_->port());
  EXPECT_THAT(c.Deliver("a@example.org", {"b@example.org"}, kClean), StartsWith("250 "));
  std::vector<SinkMessage> got = Settled(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Header("X-Sagator-ID"), "");  // not scanned, so no verdict headers
  EXPECT_EQ(gateway_->stats().fail_open, 1);
}

TEST_F(GatewayTest, NextHopDownGives451AtRcptAndNothingIsAccepted) {
  GatewayOptions o;
  o.next_hop.host = "127.0.0.1";
  o.next_hop.port = sagator::testing::PickFreePort();  // nothing listens there
  StartSink();
  StartGateway(o);
  Client c(gateway_->port());
  c.Read();
  c.Command("EHLO c");
  c.Command("MAIL FROM:<a@example.org>");
  std::string r = c.Command("RCPT TO:<b@example.org>");
  EXPECT_THAT(r, StartsWith("451 4.4.1 "));
  EXPECT_THAT(c.Command("DATA"), StartsWith("503 "));
  EXPECT_GE(gateway_->stats().relay_failures, 1);
}

TEST_F(GatewayTest, NextHopRefusalsPassThrough) {
  SmtpSink::Options so;
  so.hard_reject = {"rcpt"};
  StartSink(so);
  StartGateway();
  Client c(gateway_->port());
  c.Read();
  c.Command("EHLO c");
  c.Command("MAIL FROM:<a@example.org>");
  EXPECT_THAT(c.Command("RCPT TO:<b@example.org>"), StartsWith("5"));
}

TEST_F(GatewayTest, NextHopTemporaryDataRefusalGives4xx) {
  SmtpSink::Options so;
  so.soft_reject = {"data"};
  StartSink(so);
  StartGateway();
  Client c(gateway_->port());
  EXPECT_THAT(c.Deliver("a@example.org", {"b@example.org"}, kClean), StartsWith("4"));
}

TEST_F(GatewayTest, RecipientPolicyDecidesAtRcpt) {
  scanner_.SetPolicyHandler([](const scanner::v1::PolicyRequest& req)
                                -> absl::StatusOr<scanner::v1::PolicyResponse> {
    scanner::v1::PolicyResponse p;
    p.set_outcome(common::v1::PASS);
    if (absl::StartsWith(req.recipient(), "black")) {
      p.set_outcome(common::v1::REJECT);
      p.set_reply_text("blacklisted recipient");
    }
    if (absl::StartsWith(req.recipient(), "grey")) p.set_outcome(common::v1::TEMPFAIL);
    return p;
  });
  GatewayOptions o;
  o.recipient_policy = "policy";
  StartGateway(o);
  Client c(gateway_->port());
  c.Read();
  c.Command("EHLO c");
  c.Command("MAIL FROM:<a@example.org>");
  EXPECT_THAT(c.Command("RCPT TO:<black@example.org>"),
              StartsWith("550 5.7.1 blacklisted recipient"));
  EXPECT_THAT(c.Command("RCPT TO:<grey@example.org>"), StartsWith("451 4.7.1"));
  EXPECT_THAT(c.Command("RCPT TO:<ok@example.org>"), StartsWith("250 "));
  c.Command("DATA");
  c.Send(std::string(kClean) + ".\r\n");
  EXPECT_THAT(c.Read(), StartsWith("250 "));
  std::vector<SinkMessage> got = Settled(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(got[0].recipients, ::testing::ElementsAre("ok@example.org"));
  EXPECT_EQ(scanner_.policy_calls(), 3);
}

TEST_F(GatewayTest, LmtpGivesOneReplyPerAcceptedRecipient) {
  scanner_.SetPolicyHandler([](const scanner::v1::PolicyRequest& req)
                                -> absl::StatusOr<scanner::v1::PolicyResponse> {
    scanner::v1::PolicyResponse p;
    p.set_outcome(absl::StartsWith(req.recipient(), "no") ? common::v1::REJECT
                                                          : common::v1::PASS);
    return p;
  });
  SmtpSink::Options so;
  so.lmtp = true;
  StartSink(so);
  GatewayOptions o;
  o.dialect = Dialect::kLmtp;
  o.next_hop_dialect = Dialect::kLmtp;
  o.recipient_policy = "policy";
  StartGateway(o);
  Client c(gateway_->port());
  EXPECT_THAT(c.Read(), HasSubstr("LMTP"));
  EXPECT_THAT(c.Command("LHLO c"), StartsWith("250-"));
  c.Command("MAIL FROM:<a@example.org>");
  EXPECT_THAT(c.Command("RCPT TO:<one@example.org>"), StartsWith("250"));
  EXPECT_THAT(c.Command("RCPT TO:<no@example.org>"), StartsWith("550"));
  EXPECT_THAT(c.Command("RCPT TO:<two@example.org>"), StartsWith("250"));
  c.Command("DATA");
  c.Send(std::string(kClean) + ".\r\n");
  EXPECT_THAT(c.Read(), StartsWith("250"));
  EXPECT_THAT(c.Read(), StartsWith("250"));
  EXPECT_THAT(c.Command("NOOP"), StartsWith("250 2.0.0 Ok"));  // exactly two replies came
  std::vector<SinkMessage> got = Settled(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(got[0].recipients, ::testing::ElementsAre("one@example.org", "two@example.org"));
}

TEST_F(GatewayTest, LmtpRejectedMessageGetsARefusalPerRecipient) {
  GatewayOptions o;
  o.dialect = Dialect::kLmtp;
  StartGateway(o);
  Client c(gateway_->port());
  c.Read();
  c.Command("LHLO c");
  c.Command("MAIL FROM:<a@example.org>");
  c.Command("RCPT TO:<one@example.org>");
  c.Command("RCPT TO:<two@example.org>");
  c.Command("DATA");
  c.Send("Subject: v\r\n\r\n" + kEicarString + "\r\n.\r\n");
  EXPECT_THAT(c.Read(), StartsWith("550 5.7.1"));
  EXPECT_THAT(c.Read(), StartsWith("550 5.7.1"));
}

TEST_F(GatewayTest, PipelinedTransactionsOnOneConnection) {
  StartGateway();
  Client c(gateway_->port());
  c.Read();
  // PIPELINING: the client may send up to DATA without waiting.
  c.Send("EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r0@example.org>\r\nDATA\r\n");
  EXPECT_THAT(c.Read(), StartsWith("250-"));
  EXPECT_THAT(c.Read(), StartsWith("250 2.1.0"));
  EXPECT_THAT(c.Read(), StartsWith("250 "));
  EXPECT_THAT(c.Read(), StartsWith("354 "));
  // The end of data, the next transaction and QUIT in one write.
  c.Send(std::string(kClean) +
         ".\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.org>\r\nDATA\r\n");
  EXPECT_THAT(c.Read(), StartsWith("250 "));
  EXPECT_THAT(c.Read(), StartsWith("250 2.1.0"));
  EXPECT_THAT(c.Read(), StartsWith("250 "));
  EXPECT_THAT(c.Read(), StartsWith("354 "));
  c.Send(std::string(kClean) + ".\r\nQUIT\r\n");
  EXPECT_THAT(c.Read(), StartsWith("250 "));
  EXPECT_THAT(c.Read(), StartsWith("221 "));
  EXPECT_EQ(Settled(2).size(), 2u);
}

TEST_F(GatewayTest, SmuggledMessageStaysInsideTheFirst) {
  StartGateway();
  Client c(gateway_->port());
  std::string r = c.Deliver(
      "a@example.org", {"b@example.org"},
      "Subject: outer\r\n\r\nbody\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.org>"
      "\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n");
  EXPECT_THAT(r, StartsWith("250 "));
  std::vector<SinkMessage> got = Settled(1);
  absl::SleepFor(absl::Milliseconds(500));
  got = sink_->Messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(got[0].message, HasSubstr("Subject: smuggled"));
  EXPECT_THAT(got[0].recipients, ::testing::ElementsAre("b@example.org"));
}

TEST_F(GatewayTest, LargeMessageWithDotLinesArrivesIntact) {
  StartGateway();
  // Over 64 KB, so the relay writes it in several pieces; lines that start with a
  // dot must be stuffed in every piece.
  std::string stuffed, expected;  // smtp-sink stores lines with LF
  for (int i = 0; i < 5000; ++i) {
    std::string line = absl::StrCat(".line ", i, " ", std::string(40, 'y'));
    absl::StrAppend(&stuffed, ".", line, "\r\n");
    absl::StrAppend(&expected, line, "\n");
  }
  Client c(gateway_->port());
  EXPECT_THAT(c.Deliver("a@example.org", {"b@example.org"}, "Subject: big\r\n\r\n" + stuffed),
              StartsWith("250 "));
  std::vector<SinkMessage> got = Settled(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(absl::StrContains(got[0].message, expected));  // (no dump of 250 KB)
  EXPECT_FALSE(absl::StrContains(got[0].message, "\n..line"));
}

TEST_F(GatewayTest, IdleClientGetsA421) {
  GatewayOptions o;
  o.timeout = absl::Milliseconds(300);
  StartGateway(o);
  Client c(gateway_->port());
  c.Read();
  EXPECT_THAT(c.Read(), StartsWith("421 4.4.2"));
  EXPECT_EQ(c.Read(), "");  // then the connection is closed
  EXPECT_EQ(gateway_->stats().timeouts, 1);
}

TEST_F(GatewayTest, ConnectionsOverTheLimitGet421) {
  GatewayOptions o;
  o.max_connections = 2;
  StartGateway(o);
  Client a(gateway_->port()), b(gateway_->port());
  EXPECT_THAT(a.Read(), StartsWith("220"));
  EXPECT_THAT(b.Read(), StartsWith("220"));
  Client third(gateway_->port());
  EXPECT_THAT(third.Read(), StartsWith("421 4.3.2"));
}

TEST_F(GatewayTest, MemoryBudgetSpentGives452AndTheSessionGoesOn) {
  GatewayOptions o;
  o.max_buffered_bytes = 64 * 1024;
  StartGateway(o);
  Client c(gateway_->port());
  std::string big = "Subject: big\r\n\r\n";
  for (int i = 0; i < 4000; ++i) big += std::string(70, 'x') + "\r\n";
  EXPECT_THAT(c.Deliver("a@example.org", {"b@example.org"}, big), StartsWith("452 4.3.1"));
  EXPECT_THAT(c.Command("NOOP"), StartsWith("250"));
  EXPECT_EQ(gateway_->stats().refused_memory, 1);
}

TEST_F(GatewayTest, GarbageGetsErrorsThenTheSessionIsClosed) {
  StartGateway();
  Client c(gateway_->port());
  c.Read();
  std::string garbage;
  for (int i = 0; i < 30; ++i) garbage += "\x01\x02\xff garbage\r\n";
  c.Send(garbage);
  std::string all;
  for (std::string r = c.Read(); !r.empty(); r = c.Read()) all += r;
  EXPECT_THAT(all, HasSubstr("502 5.5.2"));
  EXPECT_THAT(all, HasSubstr("421 4.7.0"));
  // The gateway still serves others.
  Client d(gateway_->port());
  EXPECT_THAT(d.Deliver("a@example.org", {"b@example.org"}, kClean), StartsWith("250 "));
}

TEST(OptionsFromConfig, ReadsTheServiceAndRefusesABadNextHop) {
  auto cfg = LoadConfigString(
      "global: {hostname: gw.example, max_message_size: 1M}\n"
      "chains: {c: [nothing], p: [nothing]}\n"
      "services:\n"
      "  - lmtpd: {scanners: c, port: 2003, next_hop: 'unix:/run/lmtp', next_hop_protocol: lmtp,"
      " recipient_policy: p, fail_open: true}\n"
      "  - smtpd: {scanners: c, next_hop: 'nohost'}\n",
      "test.yaml", "");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  absl::StatusOr<GatewayOptions> o = OptionsFromConfig(cfg->proto, cfg->proto.services(0));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->dialect, Dialect::kLmtp);
  EXPECT_EQ(o->next_hop_dialect, Dialect::kLmtp);
  EXPECT_EQ(o->next_hop.unix_path, "/run/lmtp");
  EXPECT_EQ(o->port, 2003);
  EXPECT_EQ(o->hostname, "gw.example");
  EXPECT_EQ(o->max_message_size, 1 << 20);
  EXPECT_EQ(o->recipient_policy, "p");
  EXPECT_TRUE(o->fail_open);
  EXPECT_EQ(o->timeout, absl::Seconds(300));  // the schema default
  absl::StatusOr<GatewayOptions> bad = OptionsFromConfig(cfg->proto, cfg->proto.services(1));
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("nohost"));
}

TEST(ParseNextHop, AcceptsTheThreeFormsAndRefusesTheRest) {
  EXPECT_EQ(ParseNextHop("127.0.0.1:10025")->port, 10025);
  EXPECT_EQ(ParseNextHop("[::1]:25")->host, "::1");
  EXPECT_EQ(ParseNextHop("[mx.example.org]:25")->host, "mx.example.org");
  EXPECT_EQ(ParseNextHop("unix:/run/dovecot/lmtp")->unix_path, "/run/dovecot/lmtp");
  EXPECT_FALSE(ParseNextHop("127.0.0.1").ok());
  EXPECT_FALSE(ParseNextHop("host:0").ok());
  EXPECT_FALSE(ParseNextHop("host:99999").ok());
  EXPECT_FALSE(ParseNextHop("unix:relative").ok());
  EXPECT_FALSE(ParseNextHop("::1:25").ok());
}

}  // namespace
}  // namespace sagator::smtpd
