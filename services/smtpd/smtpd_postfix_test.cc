// smtpd and lmtpd between two real Postfix instances, with the real scanner-svc and
// libclamav:
//
//   swaks ─▶ front Postfix ─content_filter / smtpd_proxy_filter─▶ smtpd (or lmtpd)
//            ─▶ re-injection Postfix ─▶ smtp-sink (the final destination)
//
// Clean mail arrives with the X-Sagator headers; EICAR is refused with 550 and the
// front Postfix bounces it; with scanner-svc or the re-injection Postfix killed
// mid-run, mail waits in the front queue and every message arrives exactly once
// after recovery.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness/postfix.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_mail.h"

namespace sagator {
namespace {

using harness::PostfixInstance;
using harness::SinkMessage;
using harness::SmtpSink;
using harness::Swaks;
using sagator::testing::PickFreePort;
using sagator::testing::RunfilePath;
using sagator::testing::Subprocess;
using ::testing::HasSubstr;

constexpr absl::Duration kDelivery = absl::Seconds(60);

class PostfixChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = sagator::testing::MakeTempDir("smtpd-postfix.");
    scanner_port_ = PickFreePort();
    gateway_port_ = PickFreePort();
    reinject_port_ = PickFreePort();
    sink_ = std::make_unique<SmtpSink>();
    ASSERT_TRUE(sink_->Start().ok());
  }

  void TearDown() override {
    if (HasFailure()) {
      if (front_ != nullptr) std::cerr << "front maillog:\n" << front_->Maillog();
      if (reinject_ != nullptr) std::cerr << "re-injection maillog:\n" << reinject_->Maillog();
    }
    gateway_.reset();
    scanner_.reset();
    front_.reset();
    reinject_.reset();
  }

  // kind: "smtpd" or "lmtpd".
  void WriteConfig(const std::string& kind) {
    config_ = dir_ + "/sagator.yaml";
    sagator::testing::WriteFile(
        config_,
        absl::StrCat("global: {hostname: gw.test, scan_timeout: 20s, max_message_size: 10M}\n"
                     "chains:\n"
                     "  default:\n"
                     "    - libclam: {database: [",
                     RunfilePath("data/clamav"),
                     "]}\n"
                     "services:\n"
                     "  - name: scanner\n"
                     "    scanner_svc: {port: ",
                     scanner_port_,
                     "}\n"
                     "  - name: gateway\n"
                     "    ",
                     kind, ": {scanners: default, port: ", gateway_port_,
                     ", next_hop: '127.0.0.1:", reinject_port_, "', relay_timeout: 20s}\n"));
  }

  void StartScanner() {
    scanner_ = std::make_unique<Subprocess>(std::vector<std::string>{
        RunfilePath("scanner-svc/scanner-svc"), "--config", config_, "--service", "scanner"});
    scanner_->RedirectOutput(dir_ + "/scanner.log");
    ASSERT_TRUE(scanner_->Start().ok());
    ASSERT_TRUE(sagator::testing::WaitForTcpPort(scanner_port_, absl::Seconds(30)).ok());
  }

  void StartGateway(const std::string& kind) {
    gateway_ = std::make_unique<Subprocess>(std::vector<std::string>{
        RunfilePath(absl::StrCat("services/", kind, "/", kind)), "--config", config_});
    gateway_->RedirectOutput(dir_ + "/gateway.log");
    ASSERT_TRUE(gateway_->Start().ok());
    ASSERT_TRUE(sagator::testing::WaitForTcpPort(gateway_port_, absl::Seconds(30)).ok());
  }

  // The re-injection Postfix: takes mail from the gateway, relays it to the sink.
  // `extra` adds main.cf lines (recipient restrictions).
  void StartReinjection(std::vector<std::string> extra = {}) {
    PostfixInstance::Options o;
    o.smtp_port = reinject_port_;
    o.relay_port = sink_->port();
    o.hostname = "reinject.test";
    o.main_cf = {"smtpd_authorized_xforward_hosts = 127.0.0.0/8"};
    o.main_cf.insert(o.main_cf.end(), extra.begin(), extra.end());
    auto pf = PostfixInstance::Start(o);
    ASSERT_TRUE(pf.ok()) << pf.status();
    reinject_ = std::move(*pf);
  }

  // The front Postfix with the after-queue content filter `transport:[127.0.0.1]:port`.
  void StartFront(const std::string& transport) {
    PostfixInstance::Options o;
    o.relay_port = sink_->port();  // bounces go to the sink too
    o.hostname = "front.test";
    o.main_cf = {absl::StrCat("content_filter = scan:[127.0.0.1]:", gateway_port_)};
    o.master_cf = {absl::StrCat("scan unix - - n - 4 ", transport),
                   "  -o smtp_send_xforward_command=yes",
                   "  -o lmtp_send_xforward_command=yes",
                   "  -o disable_mime_output_conversion=yes"};
    auto pf = PostfixInstance::Start(o);
    ASSERT_TRUE(pf.ok()) << pf.status();
    front_ = std::move(*pf);
  }

  std::string Message(const std::string& id, const std::string& body) {
    return absl::StrCat("From: a@example.org\r\nTo: b@example.org\r\nSubject: test ", id,
                        "\r\nMessage-ID: <", id, "@test>\r\n\r\n", body, "\r\n");
  }

  // Sends one message through the front Postfix; returns swaks' result.
  sagator::testing::CommandResult Send(const std::string& id, const std::string& body,
                                       const std::string& to = "b@example.org") {
    std::string file = absl::StrCat(dir_, "/", id, ".eml");
    sagator::testing::WriteFile(file, Message(id, body));
    return Swaks(front_->smtp_port(), "a@example.org", to, {"--data", "@" + file});
  }

  std::string dir_, config_;
  int scanner_port_ = 0, gateway_port_ = 0, reinject_port_ = 0;
  std::unique_ptr<SmtpSink> sink_;
  std::unique_ptr<Subprocess> scanner_, gateway_;
  std::unique_ptr<PostfixInstance> front_, reinject_;
};

TEST_F(PostfixChainTest, ContentFilterDeliversCleanMailAndBouncesEicar) {
  WriteConfig("smtpd");
  StartScanner();
  StartGateway("smtpd");
  StartReinjection();
  StartFront("smtp");

  ASSERT_EQ(Send("clean1", "clean body").exit_code, 0);
  std::vector<SinkMessage> got = sink_->WaitForMessages(1, kDelivery);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Header("Message-ID"), "<clean1@test>");
  EXPECT_THAT(got[0].Header("X-Sagator-ID"), HasSubstr("@gw.test"));
  EXPECT_THAT(got[0].Header("X-Sagator-Scanner"), HasSubstr("gw.test"));
  EXPECT_EQ(got[0].sender, "a@example.org");

  // The front Postfix accepted the virus (after-queue), then got 550 and bounced it.
  ASSERT_EQ(Send("virus1", sagator::testing::kEicar).exit_code, 0);
  got = sink_->WaitForMessages(2, kDelivery);
  ASSERT_EQ(got.size(), 2u);
  const SinkMessage& bounce = got[1];
  EXPECT_EQ(bounce.sender, "");  // MAILER-DAEMON
  EXPECT_THAT(bounce.recipients, ::testing::ElementsAre("a@example.org"));
  EXPECT_THAT(bounce.message, HasSubstr("550 5.7.1"));
  EXPECT_THAT(bounce.message, HasSubstr("Eicar-Test-Signature"));
  EXPECT_TRUE(front_->WaitForEmptyQueue(absl::Seconds(20)));
}

TEST_F(PostfixChainTest, NothingIsLostWhenScannerOrNextHopDieMidRun) {
  WriteConfig("smtpd");
  StartScanner();
  StartGateway("smtpd");
  StartReinjection();
  StartFront("smtp");
  std::vector<std::string> ids;
  auto send_batch = [&](const std::string& tag) {
    for (int i = 0; i < 4; ++i) {
      std::string id = absl::StrCat(tag, i);
      ids.push_back(id);
      ASSERT_EQ(Send(id, "payload " + id).exit_code, 0) << id;
    }
  };
  send_batch("up");
  ASSERT_EQ(sink_->WaitForMessages(4, kDelivery).size(), 4u);

  // scanner-svc dies: smtpd answers 451, the mail waits in the front queue.
  scanner_->Stop();
  send_batch("noscan");
  absl::SleepFor(absl::Seconds(3));
  EXPECT_EQ(sink_->Messages().size(), 4u);
  EXPECT_GE(front_->QueueSize(), 1);
  EXPECT_THAT(front_->Maillog(), HasSubstr("451 4.3.0"));
  StartScanner();

  // The next hop dies too: 451 at RCPT, the mail still waits.
  reinject_->Stop();
  reinject_.reset();
  send_batch("nohop");
  absl::SleepFor(absl::Seconds(3));
  EXPECT_THAT(front_->Maillog(), HasSubstr("451 4.4.1"));

  // Recovery: everything arrives, each message exactly once.
  StartReinjection();
  front_->Flush();
  std::vector<SinkMessage> got = sink_->WaitForMessages(ids.size(), absl::Seconds(120));
  absl::SleepFor(absl::Seconds(2));
  got = sink_->Messages();
  std::map<std::string, int> seen;
  for (const SinkMessage& m : got) ++seen[m.Header("Message-ID")];
  for (const std::string& id : ids) {
    EXPECT_EQ(seen[absl::StrCat("<", id, "@test>")], 1) << id;
  }
  EXPECT_EQ(got.size(), ids.size());
  EXPECT_TRUE(front_->WaitForEmptyQueue(absl::Seconds(20)));
}

TEST_F(PostfixChainTest, BeforeQueueProxyRefusesEicarDuringTheSession) {
  WriteConfig("smtpd");
  StartScanner();
  StartGateway("smtpd");
  // One Postfix: the public smtpd proxies through smtpd, whose next hop is a
  // second smtpd of the same Postfix without the proxy.
  PostfixInstance::Options o;
  o.relay_port = sink_->port();
  o.main_cf = {absl::StrCat("smtpd_proxy_filter = 127.0.0.1:", gateway_port_),
               "smtpd_proxy_timeout = 100s"};
  o.master_cf = {absl::StrCat("127.0.0.1:", reinject_port_, " inet n - n - - smtpd"),
                 "  -o smtpd_proxy_filter=",
                 "  -o smtpd_authorized_xforward_hosts=127.0.0.0/8",
                 "  -o receive_override_options=no_unknown_recipient_checks"};
  auto pf = PostfixInstance::Start(o);
  ASSERT_TRUE(pf.ok()) << pf.status();
  front_ = std::move(*pf);

  sagator::testing::CommandResult clean = Send("proxy-clean", "clean body");
  EXPECT_EQ(clean.exit_code, 0) << clean.out;
  std::vector<SinkMessage> got = sink_->WaitForMessages(1, kDelivery);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(got[0].Header("X-Sagator-ID"), HasSubstr("@gw.test"));

  // The client itself sees the refusal: nothing was queued, nothing bounces.
  sagator::testing::CommandResult virus = Send("proxy-virus", sagator::testing::kEicar);
  EXPECT_NE(virus.exit_code, 0);
  EXPECT_THAT(virus.out, HasSubstr("550 5.7.1"));
  EXPECT_THAT(virus.out, HasSubstr("Eicar-Test-Signature"));

  // scanner-svc down: a temporary refusal, so the client keeps the mail.
  scanner_->Stop();
  sagator::testing::CommandResult down = Send("proxy-down", "clean body");
  EXPECT_NE(down.exit_code, 0);
  EXPECT_THAT(down.out, HasSubstr("451"));
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(sink_->Messages().size(), 1u);
}

TEST_F(PostfixChainTest, LmtpdGivesPerRecipientResults) {
  WriteConfig("lmtpd");
  StartScanner();
  StartGateway("lmtpd");
  // The next hop knows no "nobody@example.org".
  std::string access = dir_ + "/access";
  sagator::testing::WriteFile(access, "nobody@example.org REJECT 5.1.1 no such user\n");
  StartReinjection({absl::StrCat("smtpd_recipient_restrictions = check_recipient_access texthash:",
                                 access, ", permit_mynetworks, reject")});
  StartFront("lmtp");

  ASSERT_EQ(Send("lmtp1", "clean body", "b@example.org,nobody@example.org").exit_code, 0);
  // b@ gets the message; a@ gets a bounce for nobody@ only.
  std::vector<SinkMessage> got = sink_->WaitForMessages(2, kDelivery);
  ASSERT_EQ(got.size(), 2u);
  const SinkMessage* delivered = nullptr;
  const SinkMessage* bounce = nullptr;
  for (const SinkMessage& m : got) (m.sender.empty() ? bounce : delivered) = &m;
  ASSERT_NE(delivered, nullptr);
  ASSERT_NE(bounce, nullptr);
  EXPECT_THAT(delivered->recipients, ::testing::ElementsAre("b@example.org"));
  EXPECT_THAT(delivered->Header("X-Sagator-ID"), HasSubstr("@gw.test"));
  EXPECT_THAT(bounce->message, HasSubstr("nobody@example.org"));
  EXPECT_THAT(bounce->message, HasSubstr("no such user"));
  EXPECT_TRUE(front_->WaitForEmptyQueue(absl::Seconds(20)));
}

}  // namespace
}  // namespace sagator
