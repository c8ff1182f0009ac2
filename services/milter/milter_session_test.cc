#include "services/milter/milter_session.h"

#include <atomic>
#include <string>

#include "absl/strings/match.h"
#include "common/config.h"
#include "common/testing/fake_scanner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sagator::milter {
namespace {

using Action = MilterReply::Action;
using Kind = HeaderOp::Kind;
using sagator::testing::FakeScannerClient;
using sagator::testing::kEicarString;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

bool NoProgress() { return true; }

class MilterSessionTest : public ::testing::Test {
 protected:
  MilterSessionTest() {
    options_.chain = "default";
    options_.progress_interval = absl::Milliseconds(20);
  }
  ~MilterSessionTest() override { EXPECT_TRUE(workers_.WaitIdle(absl::Seconds(10))); }

  std::unique_ptr<MilterSession> NewSession() {
    auto s = std::make_unique<MilterSession>(&options_, &scanner_, &policy_, &workers_, &stats_);
    s->Connect("client.example.org", "192.0.2.7");
    s->Helo("helo.example.org");
    return s;
  }

  // One whole message on `s`; returns the end-of-message reply.
  MilterReply Send(MilterSession& s, const std::string& body,
                   const std::string& subject = "hello") {
    s.MailFrom("<alice@example.org>");
    EXPECT_EQ(s.Recipient("<bob@example.org>").action, Action::kContinue);
    s.Header("Subject", subject);
    s.Header("From", "alice@example.org");
    s.EndOfHeaders();
    s.Body(body);
    return s.EndOfMessage(NoProgress);
  }

  MilterOptions options_;
  FakeScannerClient scanner_;
  FakeScannerClient policy_;
  ScanWorkers workers_;
  MilterStats stats_;
};

TEST_F(MilterSessionTest, ScansTheMessageAsReceivedWithTheEnvelope) {
  auto s = NewSession();
  s->MailFrom("<alice@example.org>");
  s->SetQueueId("4AbCdE");
  s->Recipient("<bob@example.org>");
  s->Recipient("carol@example.org");
  s->Header("Subject", "hello");
  s->Header("Received", "from a\n\tby b");
  s->EndOfHeaders();
  s->Body("line 1\r\n");
  s->Body("line 2\r\n");
  MilterReply r = s->EndOfMessage(NoProgress);
  EXPECT_EQ(r.action, Action::kAccept);
  EXPECT_EQ(scanner_.last_message(),
            "Subject: hello\r\nReceived: from a\r\n\tby b\r\n\r\nline 1\r\nline 2\r\n");
  scanner::v1::ScanHeader h = scanner_.last_header();
  EXPECT_EQ(h.chain(), "default");
  EXPECT_EQ(h.gateway(), "milter");
  EXPECT_EQ(h.size(), static_cast<int64_t>(scanner_.last_message().size()));
  EXPECT_EQ(h.envelope().sender(), "alice@example.org");
  EXPECT_THAT(h.envelope().recipients(), ElementsAre("bob@example.org", "carol@example.org"));
  EXPECT_EQ(h.envelope().queue_id(), "4AbCdE");
  EXPECT_EQ(h.envelope().client().address(), "192.0.2.7");
  EXPECT_EQ(h.envelope().client().name(), "client.example.org");
  EXPECT_EQ(h.envelope().client().helo(), "helo.example.org");
  EXPECT_EQ(h.envelope().client().protocol(), "SMTP");
  EXPECT_GT(h.envelope().received_at().seconds(), 0);
  EXPECT_THAT(
      r.header_ops,
      ElementsAre(
          HeaderOp{Kind::kInsertTop, "X-Sagator-Scanner", 0, "test at test; default"},
          HeaderOp{Kind::kInsertTop, "X-Sagator-ID", 0, "20240101-000000-0001-00001-AbCdEf@test"}));
}

TEST_F(MilterSessionTest, ClientAddressMacroFillsAMissingAddress) {
  auto s = std::make_unique<MilterSession>(&options_, &scanner_, &policy_, &workers_, &stats_);
  s->Connect("localhost", "");
  s->SetClientAddressMacro("198.51.100.1");
  s->SetProtocol("ESMTP");
  Send(*s, "body\r\n");
  EXPECT_EQ(scanner_.last_header().envelope().client().address(), "198.51.100.1");
  EXPECT_EQ(scanner_.last_header().envelope().client().protocol(), "ESMTP");
}

TEST_F(MilterSessionTest, VirusIsRejectedWithTheDetectionName) {
  auto s = NewSession();
  MilterReply r = Send(*s, kEicarString + "\r\n");
  EXPECT_EQ(r.action, Action::kReject);
  EXPECT_EQ(r.rcode, "550");
  EXPECT_EQ(r.xcode, "5.7.1");
  EXPECT_THAT(r.text, HasSubstr("EICAR-Test"));
  EXPECT_EQ(stats_.Snapshot().rejected, 1);
}

TEST_F(MilterSessionTest, DropIsDiscardAndForcedPassIsAcceptWithStatus) {
  auto s = NewSession();
  EXPECT_EQ(Send(*s, "DROP-ME\r\n").action, Action::kDiscard);
  MilterReply forced = Send(*s, "FORCE-ME\r\n");
  EXPECT_EQ(forced.action, Action::kAccept);
  EXPECT_THAT(forced.header_ops,
              Contains(HeaderOp{Kind::kInsertTop, "X-Sagator-Status", 0, "Forced 1.50"}));
  MilterCounters c = stats_.Snapshot();
  EXPECT_EQ(c.discarded, 1);
  EXPECT_EQ(c.forced, 1);
  EXPECT_EQ(c.messages, 2);
}

TEST_F(MilterSessionTest, SeveralMessagesOnOneConnectionStartFresh) {
  auto s = NewSession();
  EXPECT_EQ(Send(*s, "first\r\n", "one").action, Action::kAccept);
  s->MailFrom("<dave@example.org>");
  s->Recipient("<erin@example.org>");
  s->Header("Subject", "two");
  s->Body("second\r\n");  // no EndOfHeaders: the body ends the header
  EXPECT_EQ(s->EndOfMessage(NoProgress).action, Action::kAccept);
  EXPECT_EQ(scanner_.last_message(), "Subject: two\r\n\r\nsecond\r\n");
  EXPECT_EQ(scanner_.last_header().envelope().sender(), "dave@example.org");
  EXPECT_THAT(scanner_.last_header().envelope().recipients(), ElementsAre("erin@example.org"));
  EXPECT_EQ(scanner_.last_header().envelope().client().address(), "192.0.2.7");
  EXPECT_EQ(scanner_.calls(), 2);
}

TEST_F(MilterSessionTest, AbortForgetsTheMessage) {
  auto s = NewSession();
  s->MailFrom("<alice@example.org>");
  s->Recipient("<bob@example.org>");
  s->Header("Subject", "aborted");
  s->Body("old body\r\n");
  s->Abort();
  EXPECT_EQ(s->message(), "");
  EXPECT_EQ(s->envelope().recipients_size(), 0);
  EXPECT_EQ(stats_.Snapshot().aborted, 1);
  Send(*s, "new body\r\n", "fresh");
  EXPECT_EQ(scanner_.last_message(),
            "Subject: fresh\r\nFrom: alice@example.org\r\n\r\nnew body\r\n");
  EXPECT_THAT(scanner_.last_header().envelope().recipients(), ElementsAre("bob@example.org"));
}

TEST_F(MilterSessionTest, SessionsAreCountedAndFreed) {
  {
    auto a = NewSession();
    auto b = NewSession();
    EXPECT_EQ(stats_.Snapshot().open_sessions, 2);
  }
  MilterCounters c = stats_.Snapshot();
  EXPECT_EQ(c.open_sessions, 0);
  EXPECT_EQ(c.connections, 2);
}

TEST_F(MilterSessionTest, TooLargeStopsBufferingAndFollowsTheNotScannedOutcome) {
  options_.max_message_size = 1024;
  // scanner-svc's answer for a head-only message: not scanned, with its outcome.
  common::v1::Outcome svc_outcome = common::v1::FORCED_PASS;
  scanner_.SetHandler([&](const scanner::v1::ScanHeader& h,
                          const std::string& m) -> absl::StatusOr<ScanReply> {
    ScanReply r;
    if (h.head_only()) {
      r.verdict.set_not_scanned(true);
      r.verdict.set_detection("not scanned: too large");
      r.verdict.set_outcome(svc_outcome);
      r.verdict.set_sagator_id("id-large");
    } else {
      r.verdict.set_outcome(common::v1::PASS);
    }
    return r;
  });
  auto s = NewSession();
  s->MailFrom("<alice@example.org>");
  s->Recipient("<bob@example.org>");
  s->Header("X-Sagator-Status", "forged");
  s->Header("Subject", "big");
  s->EndOfHeaders();
  for (int i = 0; i < 100; ++i) s->Body(std::string(100, 'x'));
  EXPECT_TRUE(s->too_large());
  EXPECT_LE(s->message().size(), 1024u);
  EXPECT_GT(s->message_bytes(), 10000);
  const int64_t size = s->message_bytes();
  MilterReply r = s->EndOfMessage(NoProgress);
  // Only the header block went to scanner-svc, to be logged, with the whole size.
  EXPECT_EQ(scanner_.calls(), 1);
  EXPECT_TRUE(scanner_.last_header().head_only());
  EXPECT_EQ(scanner_.last_header().size(), size);
  EXPECT_THAT(scanner_.last_message(), HasSubstr("Subject: big"));
  EXPECT_THAT(scanner_.last_message(), Not(HasSubstr("xxxx")));
  EXPECT_EQ(r.action, Action::kAccept);
  // The X-Sagator-ID of its scan_log row goes with it.
  EXPECT_THAT(r.header_ops, ElementsAre(HeaderOp{Kind::kDelete, "X-Sagator-Status", 1, ""},
                                        HeaderOp{Kind::kInsertTop, "X-Sagator-ID", 0, "id-large"},
                                        HeaderOp{Kind::kInsertTop, "X-Sagator-Not-Scanned", 0,
                                                 "too large (over 1024 bytes)"}));
  EXPECT_EQ(stats_.Snapshot().too_large, 1);

  // scanner-svc's outcome applies...
  svc_outcome = common::v1::REJECT;
  r = Send(*s, std::string(2000, 'y'));
  EXPECT_EQ(r.action, Action::kReject);
  EXPECT_EQ(r.rcode, "552");
  EXPECT_EQ(r.xcode, "5.3.4");
  svc_outcome = common::v1::TEMPFAIL;
  EXPECT_EQ(Send(*s, std::string(2000, 'y')).action, Action::kTempfail);
  // ... and ours when it cannot answer: the message is not scanned either way.
  scanner_.SetHandler([](const scanner::v1::ScanHeader&,
                         const std::string&) -> absl::StatusOr<ScanReply> {
    return absl::UnavailableError("scanner-svc is down");
  });
  options_.not_scanned_outcome = common::v1::DROP;
  EXPECT_EQ(Send(*s, std::string(2000, 'y')).action, Action::kDiscard);
  options_.not_scanned_outcome = common::v1::FORCED_PASS;
  r = Send(*s, std::string(2000, 'y'));
  EXPECT_EQ(r.action, Action::kAccept);
  EXPECT_THAT(r.header_ops, ElementsAre(HeaderOp{Kind::kInsertTop, "X-Sagator-Not-Scanned", 0,
                                                 "too large (over 1024 bytes)"}));
  EXPECT_EQ(stats_.Snapshot().too_large, 5);
  EXPECT_EQ(stats_.Snapshot().scan_failures, 2);
  // The limit counts the header too, and the next message is scanned again.
  scanner_.SetHandler([](const scanner::v1::ScanHeader& h,
                         const std::string&) -> absl::StatusOr<ScanReply> {
    ScanReply r;
    r.verdict.set_outcome(h.head_only() ? common::v1::REJECT : common::v1::PASS);
    return r;
  });
  EXPECT_EQ(Send(*s, "small\r\n").action, Action::kAccept);
  EXPECT_FALSE(scanner_.last_header().head_only());
  EXPECT_EQ(scanner_.calls(), 6);
}

TEST_F(MilterSessionTest, SendsProgressWhileTheScanRuns) {
  scanner_.SetDelay(absl::Milliseconds(300));
  auto s = NewSession();
  s->MailFrom("<a@example.org>");
  s->Recipient("<b@example.org>");
  s->Body("slow\r\n");
  int progress = 0;
  MilterReply r = s->EndOfMessage([&] {
    ++progress;
    return true;
  });
  EXPECT_EQ(r.action, Action::kAccept);
  EXPECT_GE(progress, 5);
  EXPECT_EQ(stats_.Snapshot().progress_replies, progress);
}

TEST_F(MilterSessionTest, StopsWaitingWhenTheMtaIsGone) {
  scanner_.SetDelay(absl::Milliseconds(500));
  auto s = NewSession();
  s->MailFrom("<a@example.org>");
  s->Body("slow\r\n");
  absl::Time start = absl::Now();
  MilterReply r = s->EndOfMessage([] { return false; });
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(400));
  EXPECT_EQ(r.action, Action::kTempfail);
  EXPECT_EQ(stats_.Snapshot().mta_gone, 1);
  EXPECT_EQ(workers_.running(), 1);  // the scan runs out on its own
}

TEST_F(MilterSessionTest, ScannerOutageTempfailsUnlessFailOpen) {
  scanner_.SetHandler([](const scanner::v1::ScanHeader&, const std::string&) {
    return absl::StatusOr<ScanReply>(absl::UnavailableError("connection refused"));
  });
  auto s = NewSession();
  MilterReply r = Send(*s, "body\r\n");
  EXPECT_EQ(r.action, Action::kTempfail);
  EXPECT_EQ(r.rcode, "451");
  EXPECT_EQ(r.xcode, "4.3.0");
  EXPECT_THAT(r.text, HasSubstr("scanner unavailable"));
  EXPECT_EQ(stats_.Snapshot().fail_open, 0);

  options_.fail_open = true;
  r = Send(*s, "body\r\n");
  EXPECT_EQ(r.action, Action::kAccept);
  EXPECT_THAT(r.header_ops, ElementsAre(HeaderOp{Kind::kInsertTop, "X-Sagator-Not-Scanned", 0,
                                                 "scanner unavailable"}));
  MilterCounters c = stats_.Snapshot();
  EXPECT_EQ(c.fail_open, 1);
  EXPECT_EQ(c.scan_failures, 2);
  EXPECT_EQ(c.tempfailed, 1);
  EXPECT_EQ(c.accepted, 1);
}

TEST_F(MilterSessionTest, FailOpenDoesNotOverrideATempfailVerdict) {
  options_.fail_open = true;
  auto s = NewSession();
  EXPECT_EQ(Send(*s, "TEMPFAIL-ME\r\n").action, Action::kTempfail);
  EXPECT_EQ(stats_.Snapshot().fail_open, 0);
}

TEST_F(MilterSessionTest, NoPolicyCallsWithoutRecipientPolicy) {
  auto s = NewSession();
  Send(*s, "x\r\n");
  EXPECT_EQ(policy_.policy_calls(), 0);
}

TEST_F(MilterSessionTest, RecipientPolicyDecidesEachRecipient) {
  options_.recipient_policy = "rcpt";
  scanner::v1::PolicyRequest seen;
  policy_.SetPolicyHandler([&](const scanner::v1::PolicyRequest& req) {
    seen = req;
    scanner::v1::PolicyResponse p;
    if (absl::StartsWith(req.recipient(), "bad")) {
      p.set_outcome(common::v1::REJECT);
      p.set_detection("Blacklisted");
    } else if (absl::StartsWith(req.recipient(), "grey")) {
      p.set_outcome(common::v1::TEMPFAIL);
      p.set_reply_text("4.2.0 Greylisted");
    } else if (absl::StartsWith(req.recipient(), "drop")) {
      p.set_outcome(common::v1::DROP);
    } else {
      p.set_outcome(common::v1::PASS);
      auto* e = p.add_header_edits();
      e->set_kind(common::v1::HeaderEdit::ADD);
      e->set_name("X-Policy");
      e->set_value(req.recipient());
    }
    return absl::StatusOr<scanner::v1::PolicyResponse>(p);
  });
  auto s = NewSession();
  s->MailFrom("<alice@example.org>");
  s->SetQueueId("Q1");
  EXPECT_EQ(s->Recipient("<good@example.org>").action, Action::kContinue);
  EXPECT_EQ(seen.chain(), "rcpt");
  EXPECT_EQ(seen.protocol_state(), "RCPT");
  EXPECT_EQ(seen.recipient(), "good@example.org");
  EXPECT_EQ(seen.gateway(), "milter");
  EXPECT_EQ(seen.envelope().sender(), "alice@example.org");
  EXPECT_EQ(seen.envelope().client().address(), "192.0.2.7");
  EXPECT_EQ(seen.attributes().at("client_address"), "192.0.2.7");
  EXPECT_EQ(seen.attributes().at("helo_name"), "helo.example.org");
  EXPECT_EQ(seen.attributes().at("queue_id"), "Q1");

  MilterReply bad = s->Recipient("<bad@example.org>");
  EXPECT_EQ(bad.action, Action::kReject);
  EXPECT_EQ(bad.rcode, "550");
  EXPECT_EQ(bad.xcode, "5.7.1");
  EXPECT_THAT(bad.text, HasSubstr("Blacklisted"));
  EXPECT_EQ(s->Recipient("<drop@example.org>").action, Action::kReject);
  MilterReply grey = s->Recipient("<grey@example.org>");
  EXPECT_EQ(grey.action, Action::kTempfail);
  EXPECT_EQ(grey.rcode, "451");
  EXPECT_EQ(grey.xcode, "4.2.0");
  // The envelope so far has the accepted recipients only.
  EXPECT_EQ(s->Recipient("<good2@example.org>").action, Action::kContinue);
  EXPECT_THAT(seen.envelope().recipients(), ElementsAre("good@example.org"));
  EXPECT_THAT(s->envelope().recipients(), ElementsAre("good@example.org", "good2@example.org"));

  // The accepted recipients' header edits are applied to the accepted message.
  s->Header("Subject", "s");
  s->Body("body\r\n");
  MilterReply r = s->EndOfMessage(NoProgress);
  EXPECT_EQ(r.action, Action::kAccept);
  EXPECT_THAT(r.header_ops,
              Contains(HeaderOp{Kind::kInsertTop, "X-Policy", 0, "good@example.org"}));
  EXPECT_THAT(r.header_ops,
              Contains(HeaderOp{Kind::kInsertTop, "X-Policy", 0, "good2@example.org"}));
  MilterCounters c = stats_.Snapshot();
  EXPECT_EQ(c.recipients_rejected, 2);
  EXPECT_EQ(c.recipients_tempfailed, 1);
  EXPECT_EQ(scanner_.policy_calls(), 0);  // the policy client, not the scan client
}

TEST_F(MilterSessionTest, RecipientPolicyFailureTempfailsUnlessFailOpen) {
  options_.recipient_policy = "rcpt";
  policy_.SetPolicyHandler([](const scanner::v1::PolicyRequest&) {
    return absl::StatusOr<scanner::v1::PolicyResponse>(absl::UnavailableError("down"));
  });
  auto s = NewSession();
  s->MailFrom("<alice@example.org>");
  MilterReply r = s->Recipient("<bob@example.org>");
  EXPECT_EQ(r.action, Action::kTempfail);
  EXPECT_EQ(r.rcode, "451");
  EXPECT_EQ(r.xcode, "4.7.1");
  EXPECT_EQ(s->envelope().recipients_size(), 0);
  options_.fail_open = true;
  EXPECT_EQ(s->Recipient("<bob@example.org>").action, Action::kContinue);
  EXPECT_EQ(s->envelope().recipients_size(), 1);
  MilterCounters c = stats_.Snapshot();
  EXPECT_EQ(c.policy_failures, 2);
  EXPECT_EQ(c.policy_fail_open, 1);
}

TEST(MilterOptions, ComeFromTheServiceEntryAndTheGlobalSettings) {
  absl::StatusOr<LoadedConfig> cfg = LoadConfigString(
      "global: {max_message_size: 2M, not_scanned_outcome: REJECT, scan_timeout: 90s}\n"
      "chains:\n"
      "  default: [{string_scan: {entries: [{name: X, patterns: [x]}]}}]\n"
      "  rcpt: [{string_scan: {entries: [{name: Y, patterns: [y]}]}}]\n"
      "services:\n"
      "  - milter: {scanners: default, name: sg, connection: 'unix:/run/m.sock', umask: 7,\n"
      "             fail_open: true, recipient_policy: rcpt, progress_interval: 0.5s}\n",
      "test.yaml", "/tmp");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  MilterOptions o = OptionsFromConfig(cfg->proto, cfg->proto.services(0).milter());
  EXPECT_EQ(o.filter_name, "sg");
  EXPECT_EQ(o.connection, "unix:/run/m.sock");
  EXPECT_EQ(o.umask, 7);
  EXPECT_EQ(o.chain, "default");
  EXPECT_EQ(o.recipient_policy, "rcpt");
  EXPECT_TRUE(o.fail_open);
  EXPECT_EQ(o.max_message_size, 2 << 20);
  EXPECT_EQ(o.not_scanned_outcome, common::v1::REJECT);
  EXPECT_EQ(o.progress_interval, absl::Milliseconds(500));
  EXPECT_EQ(o.scan_timeout, absl::Seconds(90));
  EXPECT_EQ(o.policy_timeout, absl::Seconds(20));

  cfg = LoadConfigString(
      "chains:\n  default: [{string_scan: {entries: [{name: X, patterns: [x]}]}}]\n"
      "services:\n  - milter: {scanners: default}\n",
      "test.yaml", "/tmp");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  o = OptionsFromConfig(cfg->proto, cfg->proto.services(0).milter());
  EXPECT_EQ(o.connection, "inet:3333@127.0.0.1");
  EXPECT_EQ(o.umask, 077);
  EXPECT_FALSE(o.fail_open);
  EXPECT_EQ(o.progress_interval, absl::Seconds(10));
  EXPECT_EQ(o.not_scanned_outcome, common::v1::FORCED_PASS);
}

TEST(ValidateConnection, AcceptsTheThreeFormsOnly) {
  EXPECT_TRUE(ValidateConnection("inet:3333@127.0.0.1").ok());
  EXPECT_TRUE(ValidateConnection("inet6:3333@::1").ok());
  EXPECT_TRUE(ValidateConnection("unix:/run/sagator/milter.sock").ok());
  EXPECT_TRUE(ValidateConnection("local:/run/m.sock").ok());
  EXPECT_FALSE(ValidateConnection("inet:3333").ok());
  EXPECT_FALSE(ValidateConnection("inet:0@127.0.0.1").ok());
  EXPECT_FALSE(ValidateConnection("inet:99999@127.0.0.1").ok());
  EXPECT_FALSE(ValidateConnection("inet:x@127.0.0.1").ok());
  EXPECT_FALSE(ValidateConnection("unix:relative.sock").ok());
  EXPECT_FALSE(ValidateConnection("unix:/" + std::string(200, 'x')).ok());
  EXPECT_FALSE(ValidateConnection("tcp:127.0.0.1:3333").ok());
}

TEST(ScanWorkers, WaitIdleWaitsForEveryScan) {
  ScanWorkers workers;
  std::atomic<int> done{0};
  for (int i = 0; i < 4; ++i) {
    workers.Start([&] {
      absl::SleepFor(absl::Milliseconds(100));
      ++done;
      return FilterDecision();
    });
  }
  EXPECT_FALSE(workers.WaitIdle(absl::Milliseconds(1)));
  EXPECT_TRUE(workers.WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(done.load(), 4);
  EXPECT_EQ(workers.running(), 0);
}

TEST(ScanWorkers, ReuseIdleWorkersAndLetThemGo) {
  ScanWorkers workers(absl::Milliseconds(200));
  for (int i = 0; i < 5; ++i) {
    auto p = workers.Start([] { return FilterDecision(); });
    ASSERT_TRUE(p->WaitFor(absl::Seconds(10)));
    // Once no scan runs, the worker is back to waiting (the same critical section).
    ASSERT_TRUE(workers.WaitIdle(absl::Seconds(10)));
  }
  EXPECT_EQ(workers.threads(), 1);
  // Scans at once get a worker each: none waits for another.
  absl::Time start = absl::Now();
  std::vector<std::shared_ptr<ScanWorkers::Pending>> pending;
  for (int i = 0; i < 4; ++i) {
    pending.push_back(workers.Start([] {
      absl::SleepFor(absl::Milliseconds(100));
      return FilterDecision();
    }));
  }
  for (auto& p : pending) ASSERT_TRUE(p->WaitFor(absl::Seconds(10)));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_EQ(workers.threads(), 4);
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ(workers.threads(), 0);
}

}  // namespace
}  // namespace sagator::milter
