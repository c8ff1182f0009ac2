// The suite as an operator runs it: the launcher starts scanner-svc and two
// sgfilterd gateways (libclam and a real clamd) from one config file; the real
// sgfilter client sends mail through them.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/harness/clamd_daemon.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_mail.h"

namespace sagator {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using testing::RunfilePath;

using ::sagator::testing::kEicar;

std::string Mail(absl::string_view subject, absl::string_view body) {
  return absl::StrCat("From: sender@example.org\nTo: user@example.org\nSubject: ", subject,
                      "\n\n", body, "\n");
}

std::string Sgfilter() { return RunfilePath("services/sgfilterd/sgfilter"); }

// Sends raw protocol bytes and returns everything the server sends back.
std::string Converse(int port, const std::string& bytes) { return testing::TcpExchange(port, bytes); }

class SuiteTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::MakeTempDir("suite"));
    harness::ClamdDaemon::Options co;
    auto clamd = harness::ClamdDaemon::Start(*dir_ + "/clamd", co);
    ASSERT_TRUE(clamd.ok()) << clamd.status();
    clamd_ = clamd->release();
    scanner_port_ = testing::PickFreePort();
    libclam_port_ = testing::PickFreePort();
    clamd_port_ = testing::PickFreePort();
    std::string cfg = *dir_ + "/sagator.yaml";
    testing::WriteFile(
        cfg, absl::StrCat(
                 "global: {hostname: suite.example, state_dir: run}\n"
                 "chains:\n"
                 "  default:\n"
                 "    - libclam: {database: [", RunfilePath("data/clamav"), "]}\n"
                 "  via_clamd:\n"
                 "    - clamd: {address: '", clamd_->unix_address(), "'}\n"
                 "services:\n"
                 "  - name: scanner\n"
                 "    scanner_svc: {port: ", scanner_port_, "}\n"
                 "  - name: sg-libclam\n"
                 "    sgfilterd: {scanners: default, port: ", libclam_port_, "}\n"
                 "  - name: sg-clamd\n"
                 "    sgfilterd: {scanners: via_clamd, port: ", clamd_port_, "}\n"));
    launcher_ = new testing::Subprocess(
        {RunfilePath("services/launcher/sagator"), "--config", cfg, "--bin_path",
         absl::StrCat(RunfilePath("scanner-svc"), ":", RunfilePath("services/sgfilterd"))});
    ASSERT_TRUE(launcher_->Start().ok());
    for (int p : {scanner_port_, libclam_port_, clamd_port_}) {
      ASSERT_TRUE(testing::WaitForTcpPort(p, absl::Seconds(60)).ok()) << "port " << p;
    }
  }
  static void TearDownTestSuite() {
    int st = launcher_->Stop(absl::Seconds(20));
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "launcher status " << st;
    delete launcher_;
    (void)clamd_->Stop();
    delete clamd_;
    delete dir_;
  }

  static testing::CommandResult Filter(int port, const std::string& message,
                                       std::vector<std::string> flags = {}) {
    std::vector<std::string> argv = {Sgfilter(), "--port", std::to_string(port),
                                     "--sender", "sender@example.org", "--recipient",
                                     "user@example.org"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return testing::RunCommand(argv, message);
  }

  static std::string* dir_;
  static harness::ClamdDaemon* clamd_;
  static testing::Subprocess* launcher_;
  static int scanner_port_, libclam_port_, clamd_port_;
};

std::string* SuiteTest::dir_;
harness::ClamdDaemon* SuiteTest::clamd_;
testing::Subprocess* SuiteTest::launcher_;
int SuiteTest::scanner_port_, SuiteTest::libclam_port_, SuiteTest::clamd_port_;

TEST_F(SuiteTest, EicarThroughLibclamIsRejectedWith550AndExitCode1) {
  std::string reply = Converse(
      libclam_port_, absl::StrCat("MAIL FROM: <a@example.org>\nRCPT TO: <b@example.org>\nDATA ",
                                  Mail("virus", kEicar).size(), "\n", Mail("virus", kEicar)));
  EXPECT_THAT(reply, StartsWith("550 1.00 Eicar-Test-Signature"));

  testing::CommandResult r = Filter(libclam_port_, Mail("virus", kEicar), {"-c"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, HasSubstr("X-Sagator-Status: Eicar-Test-Signature"));
  // Without -c the client only marks the mail (procmail files it by the header).
  EXPECT_EQ(Filter(libclam_port_, Mail("virus", kEicar)).exit_code, 0);
}

TEST_F(SuiteTest, CleanMailPassesWith250AndTheSagatorHeaders) {
  std::string mail = Mail("hello", "a clean message");
  std::string reply = Converse(
      libclam_port_,
      absl::StrCat("MAIL FROM: <a@example.org>\nRCPT TO: <b@example.org>\nDATA ", mail.size(),
                   "\n", mail));
  EXPECT_THAT(reply, StartsWith("250 0.00"));
  testing::CommandResult r = Filter(libclam_port_, mail, {"-c", "-x"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("X-Sagator-ID: "));
  EXPECT_THAT(r.out, HasSubstr("@suite.example"));
  EXPECT_THAT(r.out, HasSubstr("X-Sagator-Scanner: 2.0.0-cpp at suite.example; libclam()"));
  EXPECT_THAT(r.out, Not(HasSubstr("X-Sagator-Status")));
  EXPECT_THAT(r.out, HasSubstr("Subject: hello\n\na clean message\n"));
}

TEST_F(SuiteTest, EicarThroughARealClamdIsRejectedToo) {
  testing::CommandResult r = Filter(clamd_port_, Mail("virus", kEicar), {"-c"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, HasSubstr("X-Sagator-Status: Eicar-Test-Signature"));
  testing::CommandResult clean = Filter(clamd_port_, Mail("hi", "clean"), {"-c", "-x"});
  EXPECT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_THAT(clean.out, HasSubstr("X-Sagator-Scanner: 2.0.0-cpp at suite.example; clamd()"));
}

TEST_F(SuiteTest, SgfilterFindsSgfilterdThroughTheSuiteConfig) {
  const std::string cfg = *dir_ + "/sagator.yaml";
  testing::CommandResult ok = testing::RunCommand(
      {Sgfilter(), "--check-config", "--config", cfg}, "");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("configuration OK"));
  testing::CommandResult r = testing::RunCommand(
      {Sgfilter(), "--config", cfg, "--service", "sg-clamd", "-c"}, Mail("virus", kEicar));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, HasSubstr("clamd()"));

  const std::string bad = *dir_ + "/bad.yaml";
  testing::WriteFile(bad, "services:\n  - sgfilterd: {scanners: nope}\n");
  testing::CommandResult check = testing::RunCommand(
      {Sgfilter(), "--check-config", "--config", bad}, "");
  EXPECT_EQ(check.exit_code, 2);
  EXPECT_THAT(check.err, HasSubstr("bad.yaml:2:27: services[0].sgfilterd.scanners: unknown chain"));
  // Without --check-config a broken file must not lose the mail.
  std::string mail = Mail("hello", "body");
  testing::CommandResult safe = testing::RunCommand({Sgfilter(), "--config", bad}, mail);
  EXPECT_EQ(safe.exit_code, 0);
  EXPECT_EQ(safe.out, mail);
  EXPECT_EQ(testing::RunCommand({Sgfilter(), "--config", bad, "-x"}, mail).exit_code, 65);
}

TEST_F(SuiteTest, UnreachableSgfilterdPassesTheMailUnchangedOrExits65) {
  int dead = testing::PickFreePort();
  std::string mail = Mail("hello", "body");
  testing::CommandResult safe = Filter(dead, mail);
  EXPECT_EQ(safe.exit_code, 0);
  EXPECT_EQ(safe.out, mail);
  testing::CommandResult strict = Filter(dead, mail, {"-x"});
  EXPECT_EQ(strict.exit_code, 65);
  EXPECT_EQ(strict.out, mail);
}

// Last: it stops scanner-svc for good.
TEST_F(SuiteTest, ZZWithScannerSvcStoppedSgfilterdAnswers451AndTheClientPassesOrExits64) {
  // Match only this suite's scanner-svc: its command line names our config file.
  const std::string pattern = absl::StrCat(*dir_, "/sagator.yaml --service scanner");
  std::string pids = testing::RunCommand({"/usr/bin/pgrep", "-f", pattern}, "").out;
  ASSERT_FALSE(pids.empty());
  // The launcher restarts it with back-off (1 s, 2 s, ...); kill it repeatedly while
  // we test, which is what an outage looks like to the gateway.
  std::atomic<bool> done{false};
  std::thread killer([&] {
    while (!done) {
      (void)testing::RunCommand({"/usr/bin/pkill", "-KILL", "-f", pattern}, "");
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  absl::SleepFor(absl::Milliseconds(200));
  std::string mail = Mail("hello", "body during an outage");
  std::string reply = Converse(
      libclam_port_,
      absl::StrCat("MAIL FROM: <a@example.org>\nRCPT TO: <b@example.org>\nDATA ", mail.size(),
                   "\n", mail));
  EXPECT_THAT(reply, StartsWith("451 "));
  testing::CommandResult safe = Filter(libclam_port_, mail);
  EXPECT_EQ(safe.exit_code, 0);
  EXPECT_EQ(safe.out, mail);
  testing::CommandResult strict = Filter(libclam_port_, mail, {"-x"});
  EXPECT_EQ(strict.exit_code, 64);
  EXPECT_EQ(strict.out, mail);
  done = true;
  killer.join();
}

}  // namespace
}  // namespace sagator
