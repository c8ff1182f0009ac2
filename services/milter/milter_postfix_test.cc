// The milter as Postfix uses it: a real Postfix (smtpd_milters = inet:127.0.0.1:PORT,
// milter_default_action = tempfail) relaying to smtp-sink, the real `milter`, and
// the real scanner-svc with libclam and data/clamav/sagator.ndb (a gRPC fake where
// the test needs a slow scanner or a recipient policy). Mail goes in with swaks and
// smtp-source.
#include <filesystem>
#include <csignal>
#include <unistd.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/testing/fake_scanner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness/postfix.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_mail.h"

namespace sagator::milter {
namespace {

using ::sagator::harness::PostfixInstance;
using ::sagator::harness::SinkMessage;
using ::sagator::harness::SmtpSink;
using ::sagator::harness::Swaks;
using ::sagator::testing::CommandResult;
using ::sagator::testing::FakeScannerService;
using ::sagator::testing::MakeTempDir;
using ::sagator::testing::PickFreePort;
using ::sagator::testing::ReadFile;
using ::sagator::testing::RunCommand;
using ::sagator::testing::RunfilePath;
using ::sagator::testing::Subprocess;
using ::sagator::testing::WaitForPortFile;
using ::sagator::testing::WaitForTcpPort;
using ::sagator::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Not;

const std::string kEicar = ::sagator::testing::kEicar;

// A process that tests end with SIGKILL (libmilter notices SIGTERM only within 5 s).
struct Process {
  std::unique_ptr<Subprocess> process;
  int port = 0;
  std::string log;
  ~Process() {
    if (process != nullptr && process->Running()) {
      process->Signal(SIGKILL);
      process->Stop(absl::Seconds(2));
    }
  }
};

class MilterPostfixTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("milter-postfix-"));
    scanner_ = StartScanner().release();
    ASSERT_GT(scanner_->port, 0);
    sink_ = new SmtpSink();
    ASSERT_TRUE(sink_->Start().ok());
  }
  static void TearDownTestSuite() {
    delete sink_;
    delete scanner_;
    delete dir_;
  }

  // A real scanner-svc with a libclam chain.
  static std::unique_ptr<Process> StartScanner() {
    static int n = 0;
    ++n;
    std::string cfg = absl::StrCat(*dir_, "/scanner", n, ".yaml");
    WriteFile(cfg, absl::StrCat("global: {max_message_size: 1M, hostname: gw.test}\n"
                                "chains:\n"
                                "  default:\n"
                                "    - libclam: {database: [",
                                RunfilePath("data/clamav"),
                                "]}\n"
                                "services:\n"
                                "  - name: scanner\n"
                                "    scanner_svc: {port: 0, threads: 2}\n"));
    auto p = std::make_unique<Process>();
    std::string port_file = absl::StrCat(*dir_, "/scanner", n, ".port");
    p->log = absl::StrCat(*dir_, "/scanner", n, ".log");
    p->process = std::make_unique<Subprocess>(std::vector<std::string>{
        RunfilePath("scanner-svc/scanner-svc"), "--config", cfg, "--port_file", port_file});
    p->process->RedirectOutput(p->log);
    EXPECT_TRUE(p->process->Start().ok());
    absl::StatusOr<int> port = WaitForPortFile(port_file, absl::Seconds(60));
    EXPECT_TRUE(port.ok()) << ReadFile(p->log);
    p->port = port.ok() ? *port : 0;
    return p;
  }

  // `unix_path`: listen there instead of on a TCP port.
  static std::unique_ptr<Process> StartMilter(int scanner_port, const std::string& extra = "",
                                              const std::string& global_extra = "",
                                              const std::string& unix_path = "") {
    static int n = 0;
    ++n;
    auto m = std::make_unique<Process>();
    m->port = unix_path.empty() ? PickFreePort() : 0;
    std::string connection = unix_path.empty()
                                 ? absl::StrCat("inet:", m->port, "@127.0.0.1")
                                 : absl::StrCat("unix:", unix_path);
    std::string cfg = absl::StrCat(*dir_, "/milter", n, ".yaml");
    WriteFile(cfg, absl::StrCat(
                       "global: {max_message_size: 1M, scanner_target: '127.0.0.1:", scanner_port,
                       "'", global_extra,
                       "}\n"
                       "chains:\n"
                       "  default: [{string_scan: {entries: [{name: X, patterns: [x]}]}}]\n"
                       "services:\n"
                       "  - milter: {scanners: default, connection: '",
                       connection, "'", extra, "}\n"));
    m->log = absl::StrCat(*dir_, "/milter", n, ".log");
    m->process = std::make_unique<Subprocess>(
        std::vector<std::string>{RunfilePath("services/milter/milter"), "--config", cfg});
    m->process->RedirectOutput(m->log);
    EXPECT_TRUE(m->process->Start().ok());
    if (unix_path.empty()) {
      EXPECT_TRUE(WaitForTcpPort(m->port, absl::Seconds(30)).ok()) << ReadFile(m->log);
    } else {
      absl::Time deadline = absl::Now() + absl::Seconds(30);
      while (access(unix_path.c_str(), F_OK) != 0 && absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
    return m;
  }

  static std::unique_ptr<PostfixInstance> StartPostfix(int milter_port,
                                                       std::vector<std::string> main_cf = {},
                                                       const std::string& milter = "") {
    PostfixInstance::Options o;
    o.relay_port = sink_->port();
    o.main_cf = {milter.empty() ? absl::StrCat("smtpd_milters = inet:127.0.0.1:", milter_port)
                                : absl::StrCat("smtpd_milters = ", milter),
                 "milter_default_action = tempfail"};
    o.main_cf.insert(o.main_cf.end(), main_cf.begin(), main_cf.end());
    absl::StatusOr<std::unique_ptr<PostfixInstance>> pf = PostfixInstance::Start(o);
    EXPECT_TRUE(pf.ok()) << pf.status();
    return pf.ok() ? std::move(*pf) : nullptr;
  }

  // Messages the sink received from now on whose Subject is `subject`.
  static std::vector<SinkMessage> Arrived(const std::string& subject, size_t count,
                                          absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    std::vector<SinkMessage> out;
    do {
      out.clear();
      for (SinkMessage& m : sink_->Messages()) {
        if (m.Header("Subject") == subject) out.push_back(std::move(m));
      }
      if (out.size() >= count) break;
      absl::SleepFor(absl::Milliseconds(100));
    } while (absl::Now() < deadline);
    return out;
  }

  static CommandResult Send(int port, const std::string& subject, const std::string& body,
                            const std::string& to = "bob@example.org",
                            std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--header", "Subject: " + subject, "--body", body};
    args.insert(args.end(), extra.begin(), extra.end());
    return Swaks(port, "alice@example.org", to, args);
  }

  static std::string* dir_;
  static Process* scanner_;
  static SmtpSink* sink_;
};

std::string* MilterPostfixTest::dir_ = nullptr;
Process* MilterPostfixTest::scanner_ = nullptr;
SmtpSink* MilterPostfixTest::sink_ = nullptr;

// On a unix socket the milter tells Postfix not to await a reply per header, body
// chunk, connect, HELO, MAIL, RCPT and DATA (SMFIP_NR_*): the verdict still comes
// at the end of the message, with its header edits.
TEST_F(MilterPostfixTest, UnixSocketWithoutPerStageRepliesStillDecides) {
  // Postfix's smtpd (user postfix) must reach the socket: a folder under /tmp.
  std::string sock_dir = absl::StrCat("/tmp/sagator-milter-", getpid());
  mkdir(sock_dir.c_str(), 0755);
  std::string path = sock_dir + "/milter.sock";
  auto m = StartMilter(scanner_->port, ", umask: 0", "", path);
  auto pf = StartPostfix(0, {}, "unix:" + path);
  ASSERT_NE(pf, nullptr);
  for (int i = 0; i < 3; ++i) {
    std::string subject = absl::StrCat("unix-clean-", i);
    CommandResult r = Send(pf->smtp_port(), subject, "A clean message.", "bob@example.org",
                           {"--add-header", "X-One: 1", "--add-header", "X-Two: 2"});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err << pf->Maillog();
    std::vector<SinkMessage> got = Arrived(subject, 1, absl::Seconds(30));
    ASSERT_EQ(got.size(), 1u) << pf->Maillog() << ReadFile(m->log);
    EXPECT_THAT(got[0].Header("X-Sagator-ID"), HasSubstr("@"));
    EXPECT_EQ(got[0].Header("X-Two"), "2");
  }
  CommandResult bad = Send(pf->smtp_port(), "unix-bad", absl::StrCat("Look:\n", kEicar, "\n"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.out, HasSubstr("550 5.7.1"));
  EXPECT_THAT(bad.out, HasSubstr("Eicar-Test-Signature"));
  pf.reset();
  m->process->Signal(SIGKILL);
  std::filesystem::remove_all(sock_dir);
}

TEST_F(MilterPostfixTest, CleanMailArrivesWithTheSagatorHeaders) {
  auto m = StartMilter(scanner_->port);
  auto pf = StartPostfix(m->port);
  ASSERT_NE(pf, nullptr);
  CommandResult r = Send(pf->smtp_port(), "clean-1", "A clean message.", "bob@example.org",
                         {"--add-header", "X-Sagator-Status: Forged 9.00"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("250 2.0.0 Ok: queued"));
  std::vector<SinkMessage> got = Arrived("clean-1", 1, absl::Seconds(30));
  ASSERT_EQ(got.size(), 1u) << pf->Maillog() << ReadFile(m->log);
  EXPECT_THAT(got[0].Header("X-Sagator-ID"),
              MatchesRegex("[0-9]{8}-[0-9]{6}-[0-9]{4}-[0-9]+-[A-Za-z0-9]{6}@gw.test"));
  EXPECT_THAT(got[0].Header("X-Sagator-Scanner"), HasSubstr("gw.test"));
  EXPECT_EQ(got[0].Header("X-Sagator-Status"), "");
  EXPECT_THAT(got[0].message, Not(HasSubstr("Forged 9.00")));
  EXPECT_THAT(got[0].message, HasSubstr("A clean message."));
  EXPECT_EQ(got[0].sender, "alice@example.org");
  // At the top, above Postfix's own Received: field.
  size_t id_at = got[0].message.find("X-Sagator-ID:");
  size_t received_at = got[0].message.find("by mx.test (Postfix)");
  ASSERT_NE(received_at, std::string::npos) << got[0].message;
  EXPECT_LT(id_at, received_at) << got[0].message;
  // The queue id reached the log line.
  EXPECT_THAT(ReadFile(m->log), ::testing::ContainsRegex("queue_id=[0-9A-Za-z]+ id=\\S+@gw.test"));
}

TEST_F(MilterPostfixTest, EicarIsRejectedAndNothingArrives) {
  auto m = StartMilter(scanner_->port);
  auto pf = StartPostfix(m->port);
  ASSERT_NE(pf, nullptr);
  CommandResult r = Send(pf->smtp_port(), "virus-1", absl::StrCat("Look:\n", kEicar, "\n"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("550 5.7.1"));
  EXPECT_THAT(r.out, HasSubstr("Eicar-Test-Signature"));
  EXPECT_TRUE(pf->WaitForEmptyQueue(absl::Seconds(10)));
  absl::SleepFor(absl::Seconds(1));
  EXPECT_THAT(Arrived("virus-1", 1, absl::Seconds(1)), IsEmpty());
}

TEST_F(MilterPostfixTest, SeveralMessagesOnOneSmtpConnection) {
  auto m = StartMilter(scanner_->port);
  auto pf = StartPostfix(m->port);
  ASSERT_NE(pf, nullptr);
  // -d: every message over the same SMTP connection, so over one milter connection.
  CommandResult r = RunCommand(
      {"/usr/sbin/smtp-source", "-d", "-m", "4", "-s", "1", "-l", "2000", "-S", "several-1", "-f",
       "alice@example.org", "-t", "bob@example.org", absl::StrCat("127.0.0.1:", pf->smtp_port())},
      "", absl::Seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  std::vector<SinkMessage> got = Arrived("several-1", 4, absl::Seconds(30));
  ASSERT_EQ(got.size(), 4u) << pf->Maillog();
  std::set<std::string> ids;
  for (const SinkMessage& s : got) ids.insert(s.Header("X-Sagator-ID"));
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_FALSE(ids.count(""));
  // The four log lines name one milter session.
  std::set<std::string> sessions;
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(ReadFile(m->log), '\n')) {
    size_t at = line.find("message session=");
    if (at == absl::string_view::npos) continue;
    ++lines;
    absl::string_view rest = line.substr(at + 16);
    sessions.insert(std::string(rest.substr(0, rest.find(' '))));
  }
  EXPECT_EQ(lines, 4);
  EXPECT_EQ(sessions.size(), 1u);
}

TEST_F(MilterPostfixTest, ScannerSvcStoppedMeansTempfailUnlessFailOpen) {
  auto scanner = StartScanner();
  auto closed = StartMilter(scanner->port);
  auto open = StartMilter(scanner->port, ", fail_open: true");
  auto pf_closed = StartPostfix(closed->port);
  auto pf_open = StartPostfix(open->port);
  ASSERT_NE(pf_closed, nullptr);
  ASSERT_NE(pf_open, nullptr);
  // Works while scanner-svc is up.
  EXPECT_EQ(Send(pf_closed->smtp_port(), "outage-before", "x").exit_code, 0);
  scanner->process->Stop(absl::Seconds(10));

  CommandResult r = Send(pf_closed->smtp_port(), "outage-closed", "x");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("451 4.3.0"));
  EXPECT_THAT(r.out, HasSubstr("scanner unavailable"));

  r = Send(pf_open->smtp_port(), "outage-open", "x");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  std::vector<SinkMessage> got = Arrived("outage-open", 1, absl::Seconds(30));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Header("X-Sagator-Not-Scanned"), "scanner unavailable");
  EXPECT_EQ(got[0].Header("X-Sagator-ID"), "");
  EXPECT_THAT(Arrived("outage-closed", 1, absl::Seconds(1)), IsEmpty());
  EXPECT_THAT(ReadFile(open->log), HasSubstr("fail_open accepts the message unscanned (1 so far)"));
}

// Postfix gives a milter milter_content_timeout (2 s here) per reply at the end of
// the message; the scan takes 4 s, so only progress replies keep the mail alive.
TEST_F(MilterPostfixTest, ProgressRepliesOutlastPostfixsContentTimeout) {
  FakeScannerService slow;
  slow.SetDelay(absl::Seconds(4));
  int port = slow.Start();
  auto talking = StartMilter(port, ", progress_interval: 0.5s", ", scan_timeout: 20s");
  auto silent = StartMilter(port, ", progress_interval: 30s", ", scan_timeout: 20s");
  auto pf_talking = StartPostfix(talking->port, {"milter_content_timeout = 2s"});
  auto pf_silent = StartPostfix(silent->port, {"milter_content_timeout = 2s"});
  ASSERT_NE(pf_talking, nullptr);
  ASSERT_NE(pf_silent, nullptr);

  CommandResult r = Send(pf_talking->smtp_port(), "slow-talking", "slow but clean");
  EXPECT_EQ(r.exit_code, 0) << r.out << pf_talking->Maillog();
  EXPECT_EQ(Arrived("slow-talking", 1, absl::Seconds(30)).size(), 1u);

  r = Send(pf_silent->smtp_port(), "slow-silent", "slow but clean");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("451 4.7.1"));  // milter_default_action = tempfail
  EXPECT_THAT(Arrived("slow-silent", 1, absl::Seconds(1)), IsEmpty());
}

TEST_F(MilterPostfixTest, RecipientPolicyRejectsOneRecipientOfTheMessage) {
  FakeScannerService fake;
  fake.SetPolicyHandler([](const scanner::v1::PolicyRequest& req) {
    scanner::v1::PolicyResponse p;
    p.set_outcome(absl::StartsWith(req.recipient(), "bad@") ? common::v1::REJECT
                                                            : common::v1::PASS);
    p.set_detection("Blacklisted");
    return absl::StatusOr<scanner::v1::PolicyResponse>(p);
  });
  int port = fake.Start();
  auto m = StartMilter(port, ", recipient_policy: default");
  auto pf = StartPostfix(m->port);
  ASSERT_NE(pf, nullptr);
  CommandResult r = Send(pf->smtp_port(), "policy-1", "x", "bad@example.org");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("550 5.7.1 Recipient rejected: Blacklisted"));
  r = Send(pf->smtp_port(), "policy-2", "x", "good@example.org,bad@example.org");
  EXPECT_THAT(r.out, HasSubstr("250 2.0.0 Ok: queued"));
  std::vector<SinkMessage> got = Arrived("policy-2", 1, absl::Seconds(30));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(got[0].recipients, ::testing::ElementsAre("good@example.org"));
  EXPECT_EQ(fake.last_policy_request().protocol_state(), "RCPT");
}

}  // namespace
}  // namespace sagator::milter
