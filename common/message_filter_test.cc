#include "common/message_filter.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/testing/fake_scanner.h"

namespace sagator {
namespace {

using sagator::testing::FakeScannerClient;
using ::testing::HasSubstr;
using sagator::testing::kEicarString;
using ::testing::StartsWith;

FilterRequest Request(std::string message) {
  FilterRequest r;
  r.gateway = "sgfilterd";
  r.chain = "default";
  r.envelope.set_sender("a@example.org");
  r.envelope.add_recipients("b@example.org");
  r.message = std::move(message);
  return r;
}

TEST(CodeForOutcome, MapsEveryOutcome) {
  EXPECT_EQ(CodeForOutcome(common::v1::PASS), 250);
  EXPECT_EQ(CodeForOutcome(common::v1::FORCED_PASS), 251);
  EXPECT_EQ(CodeForOutcome(common::v1::TEMPFAIL), 451);
  EXPECT_EQ(CodeForOutcome(common::v1::REJECT), 550);
  EXPECT_EQ(CodeForOutcome(common::v1::DROP), 551);
  EXPECT_EQ(CodeForOutcome(common::v1::OUTCOME_UNSPECIFIED), 451);
}

TEST(FilterMessage, CleanMailGetsTheVerdictHeadersAndNoStatus) {
  FakeScannerClient scanner;
  FilterResult r = FilterMessage(scanner, Request("Subject: hi\r\n\r\nbody\r\n"));
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.text, "OK");
  EXPECT_TRUE(r.send_message);
  EXPECT_EQ(r.message,
            "X-Sagator-ID: 20240101-000000-0001-00001-AbCdEf@test\r\n"
            "X-Sagator-Scanner: test at test; default\r\n"
            "Subject: hi\r\n\r\nbody\r\n");
  scanner::v1::ScanHeader h = scanner.last_header();
  EXPECT_EQ(h.chain(), "default");
  EXPECT_EQ(h.gateway(), "sgfilterd");
  EXPECT_EQ(h.size(), 21);
  EXPECT_EQ(h.envelope().sender(), "a@example.org");
}

TEST(FilterMessage, DetectedMailGetsStatusHeader) {
  FakeScannerClient scanner;
  FilterResult r = FilterMessage(scanner, Request("Subject: v\n\n" + kEicarString + "\n"));
  EXPECT_EQ(r.code, 550);
  EXPECT_DOUBLE_EQ(r.level, 1.0);
  EXPECT_EQ(r.text, "EICAR-Test");
  EXPECT_TRUE(r.send_message);
  EXPECT_THAT(r.message, StartsWith("X-Sagator-ID: 20240101-000000-0001-00001-AbCdEf@test\n"
                                    "X-Sagator-Scanner: test at test; default\n"
                                    "X-Sagator-Status: EICAR-Test 1.00\nSubject: v\n\n"));
}

TEST(FilterMessage, ForgedStatusIsRemoved) {
  FakeScannerClient scanner;
  FilterResult r =
      FilterMessage(scanner, Request("X-Sagator-Status: Fake 9.00\nSubject: s\n\nbody\n"));
  EXPECT_EQ(r.code, 250);
  EXPECT_THAT(r.message, ::testing::Not(HasSubstr("X-Sagator-Status")));
  r = FilterMessage(scanner, Request("x-sagator-status: Fake 9.00\nSubject: s\n\nDROP-ME\n"));
  EXPECT_EQ(r.code, 551);
  EXPECT_THAT(r.message, HasSubstr("X-Sagator-Status: Worm.Fake 2.00\nSubject: s\n"));
  EXPECT_THAT(r.message, ::testing::Not(HasSubstr("Fake 9.00")));
}

TEST(FilterMessage, ForcedPassIsDetectedMail) {
  FakeScannerClient scanner;
  FilterResult r = FilterMessage(scanner, Request("Subject: s\n\nFORCE-ME\n"));
  EXPECT_EQ(r.code, 251);
  EXPECT_EQ(r.text, "Forced");
  EXPECT_THAT(r.message, HasSubstr("X-Sagator-Status: Forced 1.50\n"));
}

TEST(FilterMessage, NotScannedForcedPassHasNoStatus) {
  FakeScannerClient scanner;
  scanner.SetHandler([](const scanner::v1::ScanHeader&, const std::string&) {
    ScanReply r;
    r.verdict.set_outcome(common::v1::FORCED_PASS);
    r.verdict.set_not_scanned(true);
    return absl::StatusOr<ScanReply>(r);
  });
  FilterResult r = FilterMessage(scanner, Request("Subject: s\n\nbig\n"));
  EXPECT_EQ(r.code, 251);
  EXPECT_EQ(r.text, "OK");
  EXPECT_EQ(r.message, "Subject: s\n\nbig\n");
}

TEST(FilterMessage, RewrittenMessageReplacesTheOriginal) {
  FakeScannerClient scanner;
  FilterResult r = FilterMessage(scanner, Request("Subject: s\n\nREWRITE-ME\n"));
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.message,
            "X-Sagator-ID: 20240101-000000-0001-00001-AbCdEf@test\n"
            "X-Sagator-Scanner: test at test; default\n"
            "Subject: rewritten\n\nnew body\n");
}

TEST(FilterMessage, TempfailSendsNoMessage) {
  FakeScannerClient scanner;
  FilterResult r = FilterMessage(scanner, Request("Subject: s\n\nTEMPFAIL-ME\n"));
  EXPECT_EQ(r.code, 451);
  EXPECT_EQ(r.text, "engine broken");
  EXPECT_FALSE(r.send_message);
}

TEST(FilterMessage, UnspecifiedOutcomeIsTempfail) {
  FakeScannerClient scanner;
  scanner.SetHandler([](const scanner::v1::ScanHeader&, const std::string&) {
    return absl::StatusOr<ScanReply>(ScanReply{});
  });
  FilterResult r = FilterMessage(scanner, Request("Subject: s\n\nx\n"));
  EXPECT_EQ(r.code, 451);
  EXPECT_EQ(r.text, "scanner-svc gave no outcome");
  EXPECT_FALSE(r.send_message);
}

TEST(FilterMessage, ScanFailuresBecomeShortTempfails) {
  FakeScannerClient scanner;
  scanner.SetHandler([](const scanner::v1::ScanHeader&, const std::string&) {
    return absl::StatusOr<ScanReply>(absl::UnavailableError("connect: refused 127.0.0.1:1"));
  });
  FilterResult r = FilterMessage(scanner, Request("Subject: s\n\nx\n"));
  EXPECT_EQ(r.code, 451);
  EXPECT_EQ(r.text, "scanner unavailable");
  EXPECT_FALSE(r.send_message);
  EXPECT_EQ(r.scan_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ShortScanFailure(absl::DeadlineExceededError("x")), "scan timeout");
  EXPECT_EQ(ShortScanFailure(absl::InternalError("x")), "scan failed (INTERNAL)");
}

TEST(ScanAndDecide, ListsTheEditsInsteadOfApplyingThem) {
  FakeScannerClient scanner;
  FilterRequest request = Request("X-Sagator-Status: forged\nSubject: v\n\n" + kEicarString);
  FilterDecision d = ScanAndDecide(scanner, request);
  EXPECT_EQ(d.code, 550);
  EXPECT_TRUE(d.detected);
  EXPECT_EQ(d.detection, "EICAR-Test");
  EXPECT_THAT(request.message, StartsWith("X-Sagator-Status: forged\n"));
  ASSERT_EQ(d.header_edits.size(), 4u);
  EXPECT_EQ(d.header_edits[0].kind(), common::v1::HeaderEdit::REMOVE);
  EXPECT_EQ(d.header_edits[0].name(), "X-Sagator-Status");
  EXPECT_EQ(d.header_edits[1].name(), "X-Sagator-ID");
  EXPECT_EQ(d.header_edits[2].name(), "X-Sagator-Scanner");
  EXPECT_EQ(d.header_edits[3].kind(), common::v1::HeaderEdit::REPLACE);
  EXPECT_EQ(d.header_edits[3].value(), "EICAR-Test 1.00");
  EXPECT_FALSE(d.message_rewritten);
}

TEST(ScanAndDecide, CleanMailIsNotDetectedAndKeepsTheRewrittenMessage) {
  FakeScannerClient scanner;
  FilterDecision clean = ScanAndDecide(scanner, Request("Subject: s\n\nbody\n"));
  EXPECT_EQ(clean.code, 250);
  EXPECT_FALSE(clean.detected);
  EXPECT_EQ(clean.header_edits.size(), 3u);
  FilterDecision rewritten = ScanAndDecide(scanner, Request("Subject: s\n\nREWRITE-ME\n"));
  EXPECT_TRUE(rewritten.message_rewritten);
  EXPECT_EQ(rewritten.rewritten_message, "Subject: rewritten\n\nnew body\n");
}

TEST(DecideOnScan, FailedCallsAndTempfailsCarryNoEdits) {
  FilterDecision failed = DecideOnScan(absl::DeadlineExceededError("slow"));
  EXPECT_EQ(failed.code, 451);
  EXPECT_EQ(failed.text, "scan timeout");
  EXPECT_EQ(failed.scan_status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(failed.header_edits.empty());
  ScanReply tempfail;
  tempfail.verdict.set_outcome(common::v1::TEMPFAIL);
  tempfail.verdict.set_reply_text("4.3.0 engine down");
  FilterDecision t = DecideOnScan(tempfail);
  EXPECT_EQ(t.code, 451);
  EXPECT_EQ(t.text, "4.3.0 engine down");
  EXPECT_TRUE(t.scan_status.ok());
  EXPECT_TRUE(t.header_edits.empty());
}

}  // namespace
}  // namespace sagator
