// file_magic (real libmagic), buffer2file/b2f, buffer2mbox and file2buffer/f2b, as
// configured in YAML; buffer2file with a real clamd reading the file (SCAN).
#include "scanner-svc/scanners/files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "scanner-svc/chain_set.h"
#include "scanner-svc/testing/recording_scanner.h"
#include "tests/harness/clamd_daemon.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_mail.h"
#include "tests/testdata/corpus.h"

namespace sagator::scanners {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

absl::StatusOr<ChainVerdict> RunChain(const std::string& yaml, const std::string& message,
                                      std::unique_ptr<ChainSet>* keep) {
  auto cfg = LoadConfigString(absl::StrCat("chains:\n  c:\n", yaml), "test.yaml", "/tmp");
  if (!cfg.ok()) return cfg.status();
  auto chains = ChainSet::Create(*cfg);
  if (!chains.ok()) return chains.status();
  *keep = *std::move(chains);
  engine::MessageEnvelope env;
  env.sender = "alice@example.org";
  env.recipients = {"bob@example.net"};
  return (*keep)->Run("c", message, env, absl::Now() + absl::Seconds(30));
}

constexpr char kExecutables[] =
    "    - parsemail:\n"
    "        - file_magic:\n"
    "            rules:\n"
    "              - {mime: \"^application/(x-dosexec|vnd.microsoft.portable-executable)$\","
    " name: \"Executable.%(MIME)s\"}\n"
    "              - {description: \"^Zip archive\", name: Zip, level: 0.5}\n";

TEST(FileMagic, IdentifiesByContentNotByName) {
  auto magic = Magic::Load();
  ASSERT_TRUE(magic.ok()) << magic.status();
  std::string zip = corpus::Archive({{"a.txt", "hello"}}, "zip");
  auto t = (*magic)->Identify(zip);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->mime, "application/zip");
  EXPECT_THAT(t->description, StartsWith("Zip archive"));
  // MIME type only: no second pass for the description.
  auto mime_only = (*magic)->Identify(zip, /*describe=*/false);
  ASSERT_TRUE(mime_only.ok());
  EXPECT_EQ(mime_only->mime, "application/zip");
  EXPECT_EQ(mime_only->description, "");
  t = (*magic)->Identify("just some words\n");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->mime, "text/plain");
}

TEST(FileMagic, DetectsAnExecutableAttachmentWhateverItsName) {
  // A minimal DOS executable header ("MZ" and enough of a header for libmagic).
  std::string exe = "MZ";
  exe.resize(64, '\0');
  exe += std::string(448, '\x90');
  std::string mail = corpus::MimeAttachment("invoice.pdf", "application/pdf", exe);
  std::unique_ptr<ChainSet> keep;
  auto v = RunChain(kExecutables, mail, &keep);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_EQ(v->result.name, "Executable.application/x-dosexec");
  EXPECT_THAT(v->result.path, HasSubstr("file_magic()"));

  // A zip matches the second rule, below the detection level (file_magic on its own:
  // parsemail reports only detections).
  v = RunChain(absl::StrCat("    - file_magic:\n", std::string(kExecutables).substr(
                                                      std::string(kExecutables).find("        rules:"))),
               corpus::Archive({{"a.txt", "hello"}}, "zip"), &keep);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::PASS);
  EXPECT_DOUBLE_EQ(v->result.level, 0.5);
  EXPECT_THAT(v->result.output, HasSubstr("application/zip; Zip archive"));

  v = RunChain(kExecutables, "Subject: hi\r\n\r\nplain text\r\n", &keep);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::PASS);
}

TEST(FileMagic, RefusesARuleWithoutPatternsOrABadRegexp) {
  std::unique_ptr<ChainSet> keep;
  auto v = RunChain("    - file_magic: {rules: [{name: X}]}\n", "x", &keep);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("rules[0]: needs mime or description"));
  v = RunChain("    - file_magic: {rules: [{mime: \"(\", name: X}]}\n", "x", &keep);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("rules[0].mime"));
}

TEST(BufferToFile, GivesInnerScannersAPrivateFileAndRemovesIt) {
  auto recorder = std::make_unique<testing::RecordingScanner>();
  testing::RecordingScanner* rec = recorder.get();
  std::string seen_path;
  std::string seen_content;
  mode_t seen_mode = 0;
  rec->on_scan = [&](engine::ScanContext& ctx) {
    ASSERT_TRUE(ctx.file_path().has_value());
    seen_path = *ctx.file_path();
    seen_content = testing::ReadFile(seen_path);
    struct stat st;
    ASSERT_EQ(stat(seen_path.c_str(), &st), 0);
    seen_mode = st.st_mode & 0777;
  };
  std::string dir = absl::StrCat(getenv("TEST_TMPDIR"), "/b2f");
  mkdir(dir.c_str(), 0700);
  BufferToFile b2f(dir, false, std::move(recorder));
  engine::ScanContext ctx("Subject: x\r\n\r\nbody\r\n", {}, absl::Now() + absl::Seconds(5));
  auto r = b2f.Scan(ctx);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->path, "buffer2file(recorder())");
  EXPECT_EQ(seen_content, "Subject: x\r\n\r\nbody\r\n");
  EXPECT_EQ(seen_mode, 0600);
  EXPECT_NE(access(seen_path.c_str(), F_OK), 0) << "left behind: " << seen_path;
  EXPECT_FALSE(ctx.file_path().has_value());
}

TEST(BufferToFile, FailsClearlyWhenTheDirectoryIsMissing) {
  BufferToFile b2f("/nonexistent/dir", false, std::make_unique<testing::RecordingScanner>());
  engine::ScanContext ctx("x", {}, absl::Now() + absl::Seconds(5));
  auto r = b2f.Scan(ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("buffer2file: cannot create a file in /nonexistent/dir"));
}

TEST(Mbox, QuotesFromLinesAndStartsWithAnEnvelopeLine) {
  std::string m = MboxEntry("Subject: x\r\n\r\nFrom here\r\n>From there\r\nok\r\n", "",
                            absl::FromUnixSeconds(0));
  EXPECT_EQ(m,
            "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n"
            "Subject: x\n\n>From here\n>>From there\nok\n\n");
}

class ClamdFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = harness::ClamdDaemon::Start(absl::StrCat(getenv("TEST_TMPDIR"), "/clamd"), {});
    ASSERT_TRUE(d.ok()) << d.status();
    clamd_ = *std::move(d);
  }
  std::unique_ptr<harness::ClamdDaemon> clamd_;
};

TEST_F(ClamdFileTest, ClamdScansTheFileUnderB2fAndStreamsUnderF2b) {
  std::string clamd = absl::StrCat("{clamd: {address: \"", clamd_->unix_address(),
                                   "\", scan_file: true}}");
  std::string mail = absl::StrCat("Subject: x\r\n\r\n", testing::kEicar, "\r\n");
  std::unique_ptr<ChainSet> keep;
  auto v = RunChain(absl::StrCat("    - b2f: [", clamd, "]\n"), mail, &keep);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_EQ(v->result.path, "buffer2file(clamd())");
  // clamd names the file it read, not "stream".
  EXPECT_THAT(v->result.output, HasSubstr("/sagator-scan-"));

  v = RunChain(absl::StrCat("    - b2f: [{f2b: [", clamd, "]}]\n"), mail, &keep);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_EQ(v->result.path, "buffer2file(file2buffer(clamd()))");
  EXPECT_THAT(v->result.output, HasSubstr("stream: "));

  v = RunChain(absl::StrCat("    - buffer2mbox: [", clamd, "]\n"), "Subject: x\r\n\r\nclean\r\n",
               &keep);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::PASS);
  EXPECT_THAT(v->result.output, HasSubstr(": OK"));
}

TEST(Aliases, B2fAndF2bAreTheLongNames) {
  auto a = LoadConfigString("chains:\n  c:\n    - b2f: [{f2b: [nothing]}]\n", "t.yaml", "/tmp");
  ASSERT_TRUE(a.ok()) << a.status();
  const auto& spec = a->proto.chains().at("c").scanners(0);
  ASSERT_TRUE(spec.has_buffer2file());
  EXPECT_TRUE(spec.buffer2file().scanners(0).has_file2buffer());
  auto both = LoadConfigString("chains:\n  c:\n    - {b2f: [nothing], buffer2file: [nothing]}\n",
                               "t.yaml", "/tmp");
  ASSERT_FALSE(both.ok());
  EXPECT_THAT(both.status().message(), HasSubstr("t.yaml:3"));
}

}  // namespace
}  // namespace sagator::scanners
