#include "scanner-svc/scanners/parsemail.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scanner-svc/chain_set.h"
#include "scanner-svc/testing/recording_scanner.h"
#include "tests/harness/test_mail.h"

namespace sagator::scanners {
namespace {

using engine::PartInfo;
using engine::ScanContext;
using engine::ScanResult;
using ::sagator::testing::kEicar;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using Recorder = ::sagator::testing::RecordingScanner;

struct Walked {
  absl::StatusOr<ScanResult> result;
  std::vector<PartInfo> seen;
  std::vector<std::string> data;
};

Walked ScanMessage(const std::string& message, int max_parts = 100, int max_depth = 5) {
  auto rec = std::make_unique<Recorder>();
  Recorder* r = rec.get();
  Parsemail p(std::move(rec), max_parts, max_depth);
  ScanContext ctx(message, {}, absl::Now() + absl::Seconds(10));
  Walked out;
  out.result = p.Scan(ctx);
  out.seen = r->seen;
  out.data = r->data;
  return out;
}

std::string Base64Lines(absl::string_view raw) {
  std::string b64 = absl::Base64Escape(raw), out;
  for (size_t i = 0; i < b64.size(); i += 76) absl::StrAppend(&out, b64.substr(i, 76), "\r\n");
  return out;
}

std::string Multipart(const std::string& boundary, const std::vector<std::string>& parts,
                      const std::string& type = "multipart/mixed") {
  std::string m = absl::StrCat("Content-Type: ", type, "; boundary=\"", boundary, "\"\r\n\r\n");
  for (const std::string& p : parts) absl::StrAppend(&m, "--", boundary, "\r\n", p, "\r\n");
  absl::StrAppend(&m, "--", boundary, "--\r\n");
  return m;
}

const char kHead[] = "From: a@example.org\r\nTo: b@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\n";

TEST(Parsemail, FindsEicarInABase64AttachmentWithItsFileName) {
  std::string msg = absl::StrCat(
      kHead, Multipart("b1", {"Content-Type: text/plain\r\n\r\nhello",
                              absl::StrCat("Content-Type: application/octet-stream; name=\"e.com\""
                                           "\r\nContent-Disposition: attachment; filename=\"e.com\""
                                           "\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                                           Base64Lines(kEicar))}));
  ASSERT_FALSE(absl::StrContains(msg, "EICAR-STANDARD"));  // only the decoded part has it
  Walked r = ScanMessage(msg);
  ASSERT_TRUE(r.result.ok()) << r.result.status();
  EXPECT_TRUE(r.result->detected());
  EXPECT_EQ(r.result->path, "parsemail(recorder())");
  EXPECT_THAT(r.result->output, HasSubstr("e.com"));
  ASSERT_EQ(r.seen.size(), 2u);
  EXPECT_EQ(r.seen[0].content_type, "text/plain");
  EXPECT_EQ(r.seen[1].filename, "e.com");
  EXPECT_EQ(r.seen[1].content_type, "application/octet-stream");
  EXPECT_EQ(r.data[1], kEicar);
}

TEST(Parsemail, DecodesQuotedPrintable) {
  // "=3D" and a soft line break inside the test string.
  std::string qp = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTI=\r\nVIRUS-TEST-FILE!$H+H*=3D";
  std::string msg = absl::StrCat(kHead,
                                 "Content-Type: text/plain\r\nContent-Transfer-Encoding: "
                                 "quoted-printable\r\n\r\n",
                                 qp, "\r\n");
  Walked r = ScanMessage(msg);
  ASSERT_TRUE(r.result.ok());
  EXPECT_TRUE(r.result->detected());
  EXPECT_THAT(r.data[0], HasSubstr("TEST-FILE!$H+H*="));
}

TEST(Parsemail, DecodesUuencodedParts) {
  // uuencode of "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" (34 bytes).
  std::string uu =
      "begin 644 e.txt\r\n"
      "B14E#05(M4U1!3D1!4D0M04Y4259)4E53+51%4U0M1DE,10``\r\n"
      "`\r\nend\r\n";
  std::string msg = absl::StrCat(
      kHead, Multipart("u1", {"Content-Type: text/plain\r\n\r\nsee attached",
                              absl::StrCat("Content-Type: application/octet-stream\r\n"
                                           "Content-Transfer-Encoding: x-uuencode\r\n\r\n",
                                           uu)}));
  Walked r = ScanMessage(msg);
  ASSERT_TRUE(r.result.ok());
  ASSERT_EQ(r.data.size(), 2u);
  EXPECT_EQ(r.data[1], "EICAR-STANDARD-ANTIVIRUS-TEST-FILE");
  EXPECT_TRUE(r.result->detected());
}

TEST(Parsemail, OpensAttachedMessagesInsideAlternatives) {
  std::string inner = absl::StrCat(
      "From: x@example.org\r\nSubject: inner\r\nMIME-Version: 1.0\r\n",
      Multipart("in", {absl::StrCat("Content-Type: application/zip; name=\"z.bin\"\r\n"
                                    "Content-Transfer-Encoding: base64\r\n\r\n",
                                    Base64Lines(kEicar))}));
  std::string msg = absl::StrCat(
      kHead, Multipart("outer", {Multipart("alt",
                                           {"Content-Type: text/plain\r\n\r\nplain",
                                            "Content-Type: text/html\r\n\r\n<p>html</p>"},
                                           "multipart/alternative"),
                                 absl::StrCat("Content-Type: message/rfc822\r\n\r\n", inner)}));
  Walked r = ScanMessage(msg);
  ASSERT_TRUE(r.result.ok());
  EXPECT_TRUE(r.result->detected());
  ASSERT_EQ(r.seen.size(), 3u);
  EXPECT_EQ(r.seen[0].content_type, "text/plain");
  EXPECT_EQ(r.seen[1].content_type, "text/html");
  EXPECT_EQ(r.seen[2].filename, "z.bin");
  EXPECT_EQ(r.seen[2].depth, 2);
}

TEST(Parsemail, CleanMessageVisitsEveryPart) {
  std::string msg = absl::StrCat(
      kHead, Multipart("c", {"Content-Type: text/plain\r\n\r\none", "Content-Type: text/plain\r\n\r\ntwo",
                             "Content-Type: image/png; name=\"p.png\"\r\n"
                             "Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"}));
  Walked r = ScanMessage(msg);
  ASSERT_TRUE(r.result.ok());
  EXPECT_FALSE(r.result->detected());
  EXPECT_FALSE(r.result->not_scanned);
  EXPECT_EQ(r.seen.size(), 3u);
  EXPECT_EQ(r.data[2], "\x89PNG\r\n\x1a\n");
}

TEST(Parsemail, BrokenBoundariesStillGetScanned) {
  // The closing boundary never comes, and a part header is garbage.
  std::string msg = absl::StrCat(
      kHead, "Content-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\n"
             "Content-Type: text/plain\r\n\r\nfirst\r\n--zz\r\nContent-Type: ;;;\r\n"
             "Content-Transfer-Encoding: base64\r\n\r\n",
      Base64Lines(kEicar), "\r\n--z");
  Walked r = ScanMessage(msg);
  ASSERT_TRUE(r.result.ok());
  EXPECT_TRUE(r.result->detected());
}

TEST(Parsemail, TooManyPartsIsNotScannedNeverClean) {
  std::vector<std::string> parts(10, "Content-Type: text/plain\r\n\r\nx");
  Walked r = ScanMessage(absl::StrCat(kHead, Multipart("m", parts)), /*max_parts=*/4);
  ASSERT_TRUE(r.result.ok());
  EXPECT_FALSE(r.result->detected());
  EXPECT_TRUE(r.result->not_scanned);
  EXPECT_THAT(r.result->name, HasSubstr("more than 4 MIME parts"));
  EXPECT_EQ(r.seen.size(), 4u);
}

TEST(Parsemail, TooDeepNestingIsNotScanned) {
  std::string m = "From: z@example.org\r\n\r\ninnermost";
  for (int i = 0; i < 6; ++i) {
    m = absl::StrCat("From: z@example.org\r\nMIME-Version: 1.0\r\n",
                     Multipart(absl::StrCat("d", i), {"Content-Type: message/rfc822\r\n\r\n" + m}));
  }
  Walked r = ScanMessage(m, 100, /*max_depth=*/3);
  ASSERT_TRUE(r.result.ok());
  EXPECT_TRUE(r.result->not_scanned);
  EXPECT_THAT(r.result->name, HasSubstr("nesting"));
}

TEST(Parsemail, PlainTextMessageIsScannedAsItIs) {
  Walked r = ScanMessage(absl::StrCat("Subject: plain\r\n\r\n", kEicar, "\r\n"));
  ASSERT_TRUE(r.result.ok());
  EXPECT_TRUE(r.result->detected());
}

TEST(Parsemail, GarbageDoesNotCrash) {
  std::string junk;
  for (int i = 0; i < 5000; ++i) junk.push_back(static_cast<char>((i * 7919) % 256));
  for (const std::string& m : {std::string(), junk, absl::StrCat(kHead, junk),
                               absl::StrCat(kHead, "Content-Type: multipart/mixed\r\n\r\n--\r\n")}) {
    Walked r = ScanMessage(m);
    EXPECT_TRUE(r.result.ok());
  }
}

// The real engine behind parsemail, with libclamav's own mail parsing off: only the
// in-memory decoding can find the virus.
TEST(Parsemail, WithLibclamInAChain) {
  std::string dir = absl::StrCat(std::getenv("TEST_SRCDIR"), "/sagator/data/clamav");
  auto cfg = LoadConfigString(
      absl::StrCat("global: {hostname: t}\nchains:\n  av:\n    - parsemail:\n        scanners:\n"
                   "          - libclam: {database: [",
                   dir, "], scan_mail: false}\n"),
      "t.yaml", "/");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  auto set = ChainSet::Create(*cfg);
  ASSERT_TRUE(set.ok()) << set.status();
  std::string msg = absl::StrCat(
      kHead, Multipart("b", {absl::StrCat("Content-Type: application/octet-stream; name=\"a.com\""
                                          "\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                                          Base64Lines(kEicar))}));
  auto v = (*set)->Run("av", msg, {}, absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_THAT(v->result.name, HasSubstr("Eicar-Test-Signature"));
  EXPECT_EQ(v->result.path, "parsemail(libclam())");
}

}  // namespace
}  // namespace sagator::scanners
