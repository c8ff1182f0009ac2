// sgscan, the binary, on a plain file, an mbox and a maildir with libclam and the
// project's signature file: detections, --verbose, --quiet, --progress, --clean
// (mbox rewritten, maildir file deleted), --av-only, exit codes.
#include "tools/sgscan/sgscan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_mail.h"

namespace sagator::sgscan {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::RunCommand;
using testing::RunfilePath;

std::string Msg(const std::string& subject, const std::string& body) {
  return absl::StrCat("From: a@example.org\nSubject: ", subject, "\n\n", body, "\n");
}

class SgscanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("sgscan");
    config_ = dir_ + "/sagator.yaml";
    testing::WriteFile(
        config_, absl::StrCat("chains:\n  default:\n    - libclam: {database: [\"",
                              RunfilePath("data/clamav/sagator.ndb"), "\"]}\n"
                              "    - spamassassind: {address: \"127.0.0.1:1\", timeout: 1s}\n"));
  }
  testing::CommandResult Sgscan(std::vector<std::string> args) {
    std::vector<std::string> argv = {RunfilePath("tools/sgscan/sgscan"), "--config", config_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, "", absl::Seconds(60));
  }
  std::string dir_;
  std::string config_;
};

TEST_F(SgscanTest, ScansFilesMboxesAndMaildirsAndCleansMailboxes) {
  std::string mbox = dir_ + "/mbox";
  testing::WriteFile(
      mbox, absl::StrCat("From alice@example.org Thu Nov 26 10:00:00 2026\n", Msg("one", "hello"),
                         "\nFrom MAILER-DAEMON Thu Nov 26 10:01:00 2026\n",
                         Msg("two", testing::kEicar),
                         "\nFrom bob@example.org Thu Nov 26 10:02:00 2026\n",
                         Msg("three", "quoted\n>From here"), "\n"));
  chmod(mbox.c_str(), 0640);
  std::string maildir = dir_ + "/Maildir";
  for (const char* sub : {"", "/cur", "/new", "/tmp"}) mkdir((maildir + sub).c_str(), 0700);
  testing::WriteFile(maildir + "/new/1.host", Msg("clean", "hi"));
  testing::WriteFile(maildir + "/cur/2.host:2,S", Msg("virus", testing::kEicar));
  std::string plain = dir_ + "/eicar.com";
  testing::WriteFile(plain, testing::kEicar);

  // --av-only: the spamd that is not there is never asked.
  auto r = Sgscan({"--av-only", "--verbose", mbox, maildir, plain});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(mbox, "#1: CLEAN")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(mbox, "#2: Eicar-Test-Signature.UNOFFICIAL FOUND (level 1.00, "
                                             "scanner libclam())")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(mbox, "#3: CLEAN")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(maildir, "/cur/2.host:2,S: Eicar-Test-Signature.UNOFFICIAL FOUND")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(plain, ": Eicar-Test-Signature.UNOFFICIAL FOUND")));
  EXPECT_THAT(r.err, HasSubstr("sgscan: 6 messages"));
  EXPECT_THAT(r.err, HasSubstr("3 detected, 0 errors"));

  // Without --av-only the spamd that is down makes every message an error.
  r = Sgscan({maildir + "/new/1.host"});
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("1.host: ERROR "));

  // --quiet: the summary only; --progress: counts and an ETA.
  r = Sgscan({"--av-only", "--quiet", "--progress", mbox});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("3/3 messages, 1 found, ETA 00:00"));

  r = Sgscan({"--av-only", "--clean", mbox, maildir, plain});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("3 detected, 0 errors, 2 removed"));
  // The mbox keeps the other messages, byte for byte (quoting included), and its mode.
  EXPECT_EQ(testing::ReadFile(mbox),
            absl::StrCat("From alice@example.org Thu Nov 26 10:00:00 2026\n", Msg("one", "hello"),
                         "\nFrom bob@example.org Thu Nov 26 10:02:00 2026\n",
                         Msg("three", "quoted\n>From here"), "\n"));
  struct stat st;
  ASSERT_EQ(stat(mbox.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640);
  EXPECT_NE(access((maildir + "/cur/2.host:2,S").c_str(), F_OK), 0);
  EXPECT_EQ(access((maildir + "/new/1.host").c_str(), F_OK), 0);
  EXPECT_EQ(access(plain.c_str(), F_OK), 0) << "plain files are no mailbox: left alone";

  r = Sgscan({"--av-only", mbox, maildir});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_F(SgscanTest, BadUsageAndMissingFiles) {
  auto r = Sgscan({});
  EXPECT_EQ(r.exit_code, 2);
  r = Sgscan({"--chain", "nope", dir_});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("no chain named 'nope'"));
  r = Sgscan({"--av-only", dir_ + "/missing"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.out, HasSubstr("missing: ERROR cannot read"));
}

TEST(SplitMbox, SplitsAtFromLinesAfterEmptyLinesAndUnquotes) {
  auto m = SplitMbox(
      "From a@b Thu Nov 26 10:00:00 2026\nSubject: 1\n\n>From me, hello\nsaid From x\n"
      ">>From y\n\nFrom MAILER-DAEMON Thu Nov 26 10:00:00 2026\nSubject: 2\n\nbody\n");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].sender, "a@b");
  EXPECT_EQ(m[0].message, "Subject: 1\n\nFrom me, hello\nsaid From x\n>From y\n");
  EXPECT_EQ(m[1].sender, "");
  EXPECT_EQ(m[1].message, "Subject: 2\n\nbody\n");
}

TEST(DisableSpamScanners, ReplacesSpamScannersAtAnyDepth) {
  auto cfg = LoadConfigString(
      "chains:\n  c:\n    - spamassassind: {}\n    - parsemail: [{rspamd: {}}, nothing]\n",
      "t.yaml", "/tmp");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  DisableSpamScanners(&cfg->proto);
  const auto& c = cfg->proto.chains().at("c");
  EXPECT_TRUE(c.scanners(0).has_nothing());
  EXPECT_TRUE(c.scanners(1).parsemail().scanners(0).has_nothing());
}

}  // namespace
}  // namespace sagator::sgscan
