// The quarantine end to end, across real processes: an EICAR message sent with the
// sgfilter client through sgfilterd and scanner-svc (libclamav with the project's
// signatures) is dropped into quarantine-svc (SQLite); sqback lists it, prints it
// byte for byte, and releases it to Postfix's smtp-sink, to the original recipients
// and to an override; a release while the relay is down exits 75 (try again). webq is
// driven in headless Chromium: log in, search, view, release, with screenshots kept
// as test outputs, and a crafted URL for someone else's mail gets nothing.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness/chromium.h"
#include "tests/harness/postfix.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_mail.h"

namespace sagator {
namespace {

using ::sagator::testing::RunfilePath;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::string InfectedMessage() {
  return absl::StrCat(
      "From: Mallory <mallory@example.org>\n"
      "To: bob@example.net\n"
      "Subject: =?UTF-8?Q?Faktura_=C4=8D=2E_42?=\n"
      "\n",
      ::sagator::testing::kEicar, "\n");
}

class QuarantineE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("quarantine-e2e");
    ASSERT_TRUE(sink_.Start().ok());
    int qport = testing::PickFreePort();
    int wport = testing::PickFreePort();
    testing::CommandResult hash =
        testing::RunCommand({RunfilePath("tools/sqback/sqback"), "--hash_password"}, "pw\n");
    ASSERT_EQ(hash.exit_code, 0) << hash.err;
    std::string pw = std::string(absl::StripTrailingAsciiWhitespace(hash.out));
    config_ = dir_ + "/sagator.yaml";
    testing::WriteFile(
        config_,
        absl::StrCat("global: {hostname: q.example, state_dir: run}\n"
                     "databases:\n"
                     "  default: {sqlite: {path: quarantine.db}}\n"
                     "chains:\n"
                     "  default:\n"
                     "    - drop:\n"
                     "        pattern: \".\"\n"
                     "        scanners:\n"
                     "          - quarantine: {scanners: [{libclam: {database: [",
                     RunfilePath("data/clamav"), "]}}]}\n"
                     "services:\n"
                     "  - quarantine: {port: ", qport, ", relay: '127.0.0.1:", sink_.port(),
                     "', relay_timeout: 10s,\n"
                     "      webq: {port: ", wport, ", secret_file: webq.key, users: [\n"
                     "        {name: alice, password_hash: \"", pw, "\", addresses: [alice@example.net]},\n"
                     "        {name: root, password_hash: \"", pw, "\", admin: true}]}}\n"
                     "  - scanner_svc: {port: 0}\n"
                     "  - sgfilterd: {scanners: default, port: 0}\n"
                     "  - reporter: {from: postmaster@q.example, state_file: reporter.state}\n"));
    quarantine_ = Start({RunfilePath("quarantine-svc/quarantine-svc"), "--config", config_,
                         "--port_file", dir_ + "/quarantine.port", "--webq_port_file",
                         dir_ + "/webq.port"},
                        "quarantine");
    scanner_ = Start({RunfilePath("scanner-svc/scanner-svc"), "--config", config_, "--port_file",
                      dir_ + "/scanner.port"},
                     "scanner");
    auto qp = testing::WaitForPortFile(dir_ + "/quarantine.port", absl::Seconds(30));
    auto sp = testing::WaitForPortFile(dir_ + "/scanner.port", absl::Seconds(60));
    auto wp = testing::WaitForPortFile(dir_ + "/webq.port", absl::Seconds(30));
    ASSERT_TRUE(qp.ok() && sp.ok() && wp.ok());
    webq_port_ = *wp;
    std::string gw = dir_ + "/gateway.yaml";
    std::string text = testing::ReadFile(config_);
    text.replace(text.find("state_dir: run"), strlen("state_dir: run"),
                 absl::StrCat("state_dir: run, scanner_target: '127.0.0.1:", *sp, "'"));
    testing::WriteFile(gw, text);
    sgfilterd_ = Start({RunfilePath("services/sgfilterd/sgfilterd"), "--config", gw,
                        "--port_file", dir_ + "/sgfilterd.port"},
                       "sgfilterd");
    auto gp = testing::WaitForPortFile(dir_ + "/sgfilterd.port", absl::Seconds(30));
    ASSERT_TRUE(gp.ok());
    sgfilterd_port_ = *gp;
  }

  void TearDown() override {
    for (auto* p : {&sgfilterd_, &scanner_, &quarantine_}) {
      if (*p != nullptr) (*p)->Stop();
      p->reset();
    }
  }

  std::unique_ptr<testing::Subprocess> Start(std::vector<std::string> argv,
                                             const std::string& name) {
    auto p = std::make_unique<testing::Subprocess>(std::move(argv));
    p->RedirectOutput(absl::StrCat(dir_, "/", name, ".log"));
    EXPECT_TRUE(p->Start().ok());
    return p;
  }

  testing::CommandResult Sqback(std::vector<std::string> args) {
    std::vector<std::string> argv = {RunfilePath("tools/sqback/sqback"), "--config", config_};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunCommand(argv, "");
  }

  std::string dir_;
  std::string config_;
  harness::SmtpSink sink_;
  std::unique_ptr<testing::Subprocess> quarantine_, scanner_, sgfilterd_;
  int sgfilterd_port_ = 0;
  int webq_port_ = 0;

  int Send(const std::string& message, const std::string& to) {
    return testing::RunCommand({RunfilePath("services/sgfilterd/sgfilter"), "--port",
                                absl::StrCat(sgfilterd_port_), "-c", "--sender",
                                "mallory@example.org", "--recipient", to},
                               message)
        .exit_code;
  }

  // The id of the only entry `sqback --list ARGS` shows.
  std::string OnlyId(std::vector<std::string> args) {
    args.insert(args.begin(), "--list");
    testing::CommandResult list = Sqback(args);
    std::vector<std::string> lines = absl::StrSplit(list.out, '\n', absl::SkipEmpty());
    EXPECT_EQ(lines.size(), 1u) << list.out;
    return lines.empty() ? "" : lines[0].substr(0, lines[0].find(' '));
  }
};

TEST_F(QuarantineE2eTest, EicarIsQuarantinedListedAndReleased) {
  std::string message = InfectedMessage();
  testing::CommandResult sent = testing::RunCommand(
      {RunfilePath("services/sgfilterd/sgfilter"), "--port", absl::StrCat(sgfilterd_port_), "-c",
       "--sender", "mallory@example.org", "--recipient", "bob@example.net", "--recipient",
       "carol@example.net"},
      message);
  EXPECT_EQ(sent.exit_code, 1) << sent.err;  // detected

  testing::CommandResult list = Sqback({"--list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::vector<std::string> lines = absl::StrSplit(list.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u) << list.out;
  EXPECT_THAT(lines[0], HasSubstr("Eicar"));
  EXPECT_THAT(lines[0], HasSubstr("mallory@example.org -> bob@example.net,carol@example.net"));
  EXPECT_THAT(lines[0], HasSubstr("Faktura \xc4\x8d. 42"));
  std::string id = lines[0].substr(0, lines[0].find(' '));
  ASSERT_TRUE(absl::StartsWith(id, "qm-")) << lines[0];

  // Searches narrow as asked.
  EXPECT_THAT(Sqback({"--list", "--recipient", "carol@example.net"}).out, HasSubstr(id));
  EXPECT_EQ(Sqback({"--list", "--recipient", "nobody@example.net"}).out, "");
  EXPECT_THAT(Sqback({"--list", "--detection", "eicar"}).out, HasSubstr(id));

  testing::CommandResult got = Sqback({"--get", id});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(got.out, message);

  testing::CommandResult released = Sqback({"--to", "admin@example.net", id});
  EXPECT_EQ(released.exit_code, 0) << released.out << released.err;
  EXPECT_THAT(released.out, HasSubstr("admin@example.net: 250"));
  released = Sqback({id});
  EXPECT_EQ(released.exit_code, 0) << released.out << released.err;

  auto delivered = sink_.WaitForMessages(2, absl::Seconds(15));
  ASSERT_EQ(delivered.size(), 2u);
  if (delivered[0].recipients.size() != 1) std::swap(delivered[0], delivered[1]);
  EXPECT_THAT(delivered[0].recipients, ElementsAre("admin@example.net"));
  EXPECT_THAT(delivered[1].recipients, ElementsAre("bob@example.net", "carol@example.net"));
  EXPECT_EQ(delivered[1].sender, "mallory@example.org");
  EXPECT_THAT(delivered[1].message, HasSubstr(::sagator::testing::kEicar));

  // The history shows both releases.
  list = Sqback({"--list"});
  EXPECT_THAT(list.out, HasSubstr("by sqback to admin@example.net: 250"));
  EXPECT_THAT(list.out, HasSubstr("by sqback to carol@example.net: 250"));

  // With the relay down the release is to be tried again (EX_TEMPFAIL).
  sink_.Stop();
  EXPECT_EQ(Sqback({id}).exit_code, 75);
  EXPECT_EQ(Sqback({"qm-unknown"}).exit_code, 1);

  testing::CommandResult deleted = Sqback({"--delete", id});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_EQ(Sqback({"--list"}).out, "");
}

TEST_F(QuarantineE2eTest, WebqInHeadlessChromium) {
  ASSERT_EQ(Send(InfectedMessage(), "alice@example.net"), 1);
  // Hostile subject and From: they must show as text, never run or load.
  ASSERT_EQ(Send(absl::StrCat("From: \"<img src=x onerror=\\\"document.title='pwned'\\\">\" "
                              "<m@example.org>\nSubject: <script>document.title='pwned'</script>"
                              "<img src=x onerror=\"document.title='pwned'\">\n\n",
                              ::sagator::testing::kEicar, "\n"),
                 "alice@example.net"),
            1);
  ASSERT_EQ(Send("Subject: for bob only\n\n" + std::string(::sagator::testing::kEicar) + "\n",
                 "bob@example.net"),
            1);
  std::string bobs = OnlyId({"--recipient", "bob@example.net"});
  ASSERT_FALSE(bobs.empty());

  const char* out_dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  std::string shots = out_dir != nullptr ? out_dir : dir_;
  std::string base = absl::StrCat("http://127.0.0.1:", webq_port_);
  auto browser = harness::Browser::Start(dir_);
  ASSERT_TRUE(browser.ok()) << browser.status();
  harness::Browser& b = **browser;

  ASSERT_TRUE(b.Navigate(base + "/").ok());  // sends us to the login page
  ASSERT_TRUE(b.WaitFor("document.getElementById('login')").ok());
  ASSERT_TRUE(b.Fill("#user", "alice").ok());
  ASSERT_TRUE(b.Fill("#password", "pw").ok());
  ASSERT_TRUE(b.Click("#login").ok());
  ASSERT_TRUE(b.WaitFor("document.getElementById('entries')").ok());
  EXPECT_TRUE(b.Screenshot(shots + "/webq-list.png").ok());
  EXPECT_EQ(*b.Evaluate("document.querySelectorAll('#entries tr').length"), "3");  // head + 2
  std::string text = *b.Evaluate("document.body.innerText");
  EXPECT_THAT(text, HasSubstr("Faktura \xc4\x8d. 42"));
  EXPECT_THAT(text, HasSubstr("<script>document.title='pwned'</script>"));  // shown as text
  EXPECT_THAT(text, Not(HasSubstr("for bob only")));
  EXPECT_EQ(*b.Evaluate("document.querySelectorAll('img, script').length"), "0");
  EXPECT_NE(*b.Evaluate("document.title"), "pwned");

  ASSERT_TRUE(b.Fill("#q-subject", "faktura").ok());
  ASSERT_TRUE(b.Click("#search-button").ok());
  EXPECT_EQ(*b.Evaluate("document.querySelectorAll('#entries tr').length"), "2");
  EXPECT_TRUE(b.Screenshot(shots + "/webq-search.png").ok());

  ASSERT_TRUE(b.Click("a.subject").ok());
  ASSERT_TRUE(b.WaitFor("document.getElementById('header')").ok());
  EXPECT_TRUE(b.Screenshot(shots + "/webq-view.png").ok());
  EXPECT_THAT(*b.Evaluate("document.getElementById('meta').innerText"), HasSubstr("Eicar"));
  ASSERT_TRUE(b.Click("#release").ok());
  ASSERT_TRUE(b.WaitFor("document.getElementById('results')").ok());
  EXPECT_TRUE(b.Screenshot(shots + "/webq-released.png").ok());
  EXPECT_THAT(*b.Evaluate("document.getElementById('results').innerText"),
              HasSubstr("alice@example.net: 250"));
  auto delivered = sink_.WaitForMessages(1, absl::Seconds(15));
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_THAT(delivered[0].recipients, ElementsAre("alice@example.net"));
  EXPECT_THAT(delivered[0].message, HasSubstr("Faktura"));

  // A crafted URL for bob's message shows alice nothing of it.
  ASSERT_TRUE(b.Navigate(absl::StrCat(base, "/view?id=", bobs)).ok());
  EXPECT_THAT(*b.Evaluate("document.body.innerText"), HasSubstr("No such message"));
  ASSERT_TRUE(b.Navigate(absl::StrCat(base, "/raw?id=", bobs)).ok());
  EXPECT_THAT(*b.Evaluate("document.body.innerText"), Not(HasSubstr("EICAR")));
  EXPECT_EQ(sink_.Messages().size(), 1u);
}

TEST_F(QuarantineE2eTest, TheReportersReleaseLinkWorksInChromium) {
  ASSERT_EQ(Send(InfectedMessage(), "alice@example.net"), 1);
  testing::CommandResult run =
      testing::RunCommand({RunfilePath("quarantine-svc/reporter"), "--config", config_}, "");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto got = sink_.WaitForMessages(1, absl::Seconds(15));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(got[0].recipients, ElementsAre("alice@example.net"));
  EXPECT_THAT(got[0].Header("Subject"), HasSubstr("Quarantine report: 1 new message(s)"));
  EXPECT_THAT(got[0].message, HasSubstr("Subject: Faktura \xc4\x8d. 42"));
  std::string base = absl::StrCat("http://127.0.0.1:", webq_port_);
  size_t at = got[0].message.find(base + "/r?t=");
  ASSERT_NE(at, std::string::npos) << got[0].message;
  std::string link = got[0].message.substr(at, got[0].message.find_first_of("\r\n", at) - at);

  auto browser = harness::Browser::Start(dir_);
  ASSERT_TRUE(browser.ok()) << browser.status();
  harness::Browser& b = **browser;
  ASSERT_TRUE(b.Navigate(link).ok());
  const char* out_dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  std::string shots = out_dir != nullptr ? out_dir : dir_;
  EXPECT_TRUE(b.Screenshot(shots + "/webq-release-link.png").ok());
  EXPECT_EQ(sink_.Messages().size(), 1u);  // opening the link released nothing
  ASSERT_TRUE(b.Click("#release").ok());
  ASSERT_TRUE(b.WaitFor("document.getElementById('released')").ok());
  got = sink_.WaitForMessages(2, absl::Seconds(15));
  ASSERT_EQ(got.size(), 2u);
  // The link works once.
  ASSERT_TRUE(b.Navigate(link).ok());
  EXPECT_THAT(*b.Evaluate("document.body.innerText"), HasSubstr("already released"));
  // A second run has nothing new to report.
  run = testing::RunCommand({RunfilePath("quarantine-svc/reporter"), "--config", config_}, "");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.err, HasSubstr("0 digest(s)"));
}

TEST_F(QuarantineE2eTest, CleanMailIsNotQuarantined) {
  testing::CommandResult sent = testing::RunCommand(
      {RunfilePath("services/sgfilterd/sgfilter"), "--port", absl::StrCat(sgfilterd_port_), "-c"},
      "Subject: hello\n\nclean\n");
  EXPECT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_EQ(Sqback({"--list"}).out, "");
}

TEST_F(QuarantineE2eTest, WithTheQuarantineDownInfectedMailIsRetriedNotLost) {
  quarantine_->Stop();
  // sgfilter -x (non-safe): an internal scan error is exit 64, never "clean".
  testing::CommandResult sent = testing::RunCommand(
      {RunfilePath("services/sgfilterd/sgfilter"), "--port", absl::StrCat(sgfilterd_port_), "-c",
       "-x"},
      InfectedMessage());
  EXPECT_EQ(sent.exit_code, 64) << sent.out << sent.err;
}

}  // namespace
}  // namespace sagator
