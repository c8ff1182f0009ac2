#include "services/sgfilterd/sgfilter_client.h"

#include <string>

#include "gtest/gtest.h"

namespace sagator::sgfilterd {
namespace {

using Status = SgfilterCall::Status;

TEST(ParseReply, ReadsResultLineAndMessage) {
  SgfilterCall c =
      ParseReply("550 1.00 EICAR-Test\nX-Sagator-Status: EICAR-Test 1.00\n\nb\n", "orig");
  EXPECT_EQ(c.status, Status::kOk);
  EXPECT_EQ(c.code, 550);
  EXPECT_DOUBLE_EQ(c.level, 1.0);
  EXPECT_EQ(c.text, "EICAR-Test");
  EXPECT_EQ(c.message, "X-Sagator-Status: EICAR-Test 1.00\n\nb\n");
}

TEST(ParseReply, SkipsFurtherResultLines) {
  SgfilterCall c = ParseReply("250 0.00 OK\r\n251 0.50 other\r\nSubject: s\r\n\r\n", "x");
  EXPECT_EQ(c.status, Status::kOk);
  EXPECT_EQ(c.code, 250);
  EXPECT_EQ(c.message, "Subject: s\r\n\r\n");
}

TEST(ParseReply, TempfailIsAScanError) {
  SgfilterCall c = ParseReply("451 0.00 scanner unavailable\n", "x");
  EXPECT_EQ(c.status, Status::kScanError);
  EXPECT_EQ(c.text, "scanner unavailable");
}

TEST(ParseReply, BrokenReplies) {
  EXPECT_EQ(ParseReply("", "x").status, Status::kBrokenReply);
  EXPECT_EQ(ParseReply("250 0.00 OK", "x").status, Status::kBrokenReply);    // no line end
  EXPECT_EQ(ParseReply("250 0.00 OK\n", "x").status, Status::kBrokenReply);  // no message
  EXPECT_EQ(ParseReply("Subject: x\n\nbody", "x").status, Status::kBrokenReply);
  EXPECT_EQ(ParseReply("354 0.00 go on\nmsg", "x").status, Status::kBrokenReply);
  EXPECT_EQ(ParseReply(std::string(10000, 'a'), "x").status, Status::kBrokenReply);
  // An empty message may come back empty.
  EXPECT_EQ(ParseReply("250 0.00 OK\n", "").status, Status::kOk);
}

TEST(DecideOutput, SafeByDefault) {
  const std::string original = "Subject: o\n\nbody\n";
  SgfilterCall connect_failed{Status::kCannotConnect, 0, 0, "cannot connect", ""};
  SgfilterCall tempfail{Status::kScanError, 451, 0, "scan timeout", ""};
  SgfilterCall broken{Status::kBrokenReply, 0, 0, "garbage", ""};
  for (const SgfilterCall& c : {connect_failed, tempfail, broken}) {
    SgfilterOutput out = DecideOutput(c, original, /*codes=*/true, /*non_safe=*/false);
    EXPECT_EQ(out.message, original);
    EXPECT_EQ(out.exit_code, 0);
    EXPECT_FALSE(out.warning.empty());
  }
  EXPECT_EQ(DecideOutput(connect_failed, original, false, true).exit_code, 65);
  EXPECT_EQ(DecideOutput(tempfail, original, false, true).exit_code, 64);
  EXPECT_EQ(DecideOutput(broken, original, true, true).exit_code, 64);
  EXPECT_EQ(DecideOutput(broken, original, true, true).message, original);
}

TEST(DecideOutput, CodesReportDetections) {
  const std::string original = "o";
  auto ok = [](int code, double level) {
    return SgfilterCall{Status::kOk, code, level, "x", "returned"};
  };
  EXPECT_EQ(DecideOutput(ok(250, 0), original, true, false).exit_code, 0);
  EXPECT_EQ(DecideOutput(ok(550, 1), original, true, false).exit_code, 1);
  EXPECT_EQ(DecideOutput(ok(551, 2), original, true, false).exit_code, 1);
  EXPECT_EQ(DecideOutput(ok(251, 1.5), original, true, false).exit_code, 1);
  // 251 below 1.00: delivered unscanned (too large), not a detection.
  EXPECT_EQ(DecideOutput(ok(251, 0), original, true, false).exit_code, 0);
  // Without --codes a detection exits 0; the returned message is written either way.
  SgfilterOutput out = DecideOutput(ok(550, 1), original, false, true);
  EXPECT_EQ(out.exit_code, 0);
  EXPECT_EQ(out.message, "returned");
}

}  // namespace
}  // namespace sagator::sgfilterd
