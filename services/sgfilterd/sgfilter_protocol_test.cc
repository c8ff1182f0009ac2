#include "services/sgfilterd/sgfilter_protocol.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sagator::sgfilterd {
namespace {

using ::testing::HasSubstr;

// What a parser made of some input, fed in pieces of the given sizes.
struct Parsed {
  std::string sender;
  bool has_sender = false;
  std::vector<std::string> recipients;
  int64_t length = -1;
  std::string data;
  bool ended = false;
  std::string error;
};

Parsed Feed(const std::vector<std::string>& pieces, int64_t max_size = 1 << 20) {
  SgfilterParser parser({.max_message_size = max_size});
  Parsed p;
  auto run = [&](absl::string_view in) {
    for (;;) {
      SgfilterEvent ev = parser.Next(&in);
      switch (ev.type) {
        case SgfilterEventType::kNeedMore:
          EXPECT_TRUE(in.empty());
          return;
        case SgfilterEventType::kSender:
          p.sender = ev.value;
          p.has_sender = true;
          break;
        case SgfilterEventType::kRecipient:
          p.recipients.push_back(ev.value);
          break;
        case SgfilterEventType::kDataStart:
          p.length = ev.length;
          break;
        case SgfilterEventType::kData:
          p.data.append(ev.data.data(), ev.data.size());
          break;
        case SgfilterEventType::kMessageEnd:
          p.ended = true;
          break;
        case SgfilterEventType::kError:
          p.error = ev.value;
          return;
      }
    }
  };
  for (const std::string& piece : pieces) {
    run(piece);
    if (!p.error.empty()) break;
  }
  // A zero-length DATA ends without further input.
  if (p.error.empty() && !p.ended) run("");
  return p;
}

Parsed FeedAll(const std::string& s, int64_t max_size = 1 << 20) { return Feed({s}, max_size); }

TEST(SgfilterParser, ParsesATransactionWithLf) {
  Parsed p = FeedAll(
      "MAIL FROM: <a@example.org>\nRCPT TO: <b@example.org>\n"
      "RCPT TO: c@example.org\nDATA 11\nSubject: x\n");
  EXPECT_EQ(p.error, "");
  EXPECT_EQ(p.sender, "a@example.org");
  EXPECT_THAT(p.recipients, ::testing::ElementsAre("b@example.org", "c@example.org"));
  EXPECT_EQ(p.length, 11);
  EXPECT_EQ(p.data, "Subject: x\n");
  EXPECT_TRUE(p.ended);
}

TEST(SgfilterParser, AcceptsCrlfLowerCaseAndNoSpaceAfterColon) {
  Parsed p = FeedAll("mail from:<a@x>\r\nRcpt   To:b@x\r\ndata 4\r\nab\r\n");
  EXPECT_EQ(p.error, "");
  EXPECT_EQ(p.sender, "a@x");
  EXPECT_THAT(p.recipients, ::testing::ElementsAre("b@x"));
  EXPECT_EQ(p.data, "ab\r\n");
  EXPECT_TRUE(p.ended);
}

TEST(SgfilterParser, AcceptsNullSenderAndBareEmptySender) {
  Parsed p = FeedAll("MAIL FROM: <>\nRCPT TO: <b@x>\nDATA 0\n");
  EXPECT_EQ(p.error, "");
  EXPECT_TRUE(p.has_sender);
  EXPECT_EQ(p.sender, "");
  EXPECT_TRUE(p.ended);
  EXPECT_EQ(p.data, "");
  EXPECT_EQ(FeedAll("MAIL FROM:\nRCPT TO: b\nDATA 1\nx").error, "");
}

TEST(SgfilterParser, DataLengthIsExactAndBytesAreOpaque) {
  // The message may contain command-like lines and any bytes.
  std::string msg = std::string("MAIL FROM: <z>\nDATA 5\n\0\xff\r\n", 23);
  Parsed p = FeedAll(absl::StrCat("MAIL FROM: a\nRCPT TO: b\nDATA ", msg.size(), "\n", msg));
  EXPECT_EQ(p.error, "");
  EXPECT_EQ(p.data, msg);
  EXPECT_TRUE(p.ended);
}

TEST(SgfilterParser, PipelinedBytesSplitAtEveryPosition) {
  const std::string input =
      "MAIL FROM: <s@x>\r\nRCPT TO: <r1@x>\nRCPT TO: r2@x\r\nDATA 20\r\n"
      "Subject: s\r\n\r\nbody\r\n";
  Parsed whole = FeedAll(input);
  ASSERT_EQ(whole.error, "");
  ASSERT_TRUE(whole.ended);
  for (size_t i = 0; i <= input.size(); ++i) {
    for (size_t j = i; j <= input.size(); j += 7) {
      Parsed p = Feed({input.substr(0, i), input.substr(i, j - i), input.substr(j)});
      EXPECT_EQ(p.error, "") << i << "," << j;
      EXPECT_EQ(p.sender, whole.sender) << i;
      EXPECT_EQ(p.recipients, whole.recipients) << i;
      EXPECT_EQ(p.data, whole.data) << i << "," << j;
      EXPECT_TRUE(p.ended) << i;
    }
  }
  // And one byte at a time.
  std::vector<std::string> bytes;
  for (char c : input) bytes.push_back(std::string(1, c));
  Parsed p = Feed(bytes);
  EXPECT_EQ(p.data, whole.data);
  EXPECT_TRUE(p.ended);
}

TEST(SgfilterParser, RejectsUnknownCommand) {
  EXPECT_EQ(FeedAll("HELO x\n").error, "unknown command 'HELO'");
  EXPECT_EQ(FeedAll("MAILFROM: x\n").error, "unknown command 'MAILFROM:'");
  EXPECT_EQ(FeedAll("\n").error, "empty command line");
  EXPECT_THAT(FeedAll(std::string("\x01\x02 x\n")).error, HasSubstr("unknown command '?"
                                                                    "?'"));
}

TEST(SgfilterParser, RejectsRcptBeforeMail) {
  EXPECT_EQ(FeedAll("RCPT TO: <b>\n").error, "RCPT TO before MAIL FROM");
}

TEST(SgfilterParser, RejectsDataBeforeRcpt) {
  EXPECT_EQ(FeedAll("MAIL FROM: <a>\nDATA 5\n").error, "DATA before RCPT TO");
  EXPECT_EQ(FeedAll("DATA 5\n").error, "DATA before MAIL FROM");
}

TEST(SgfilterParser, RejectsDuplicateMail) {
  EXPECT_EQ(FeedAll("MAIL FROM: <a>\nMAIL FROM: <b>\n").error, "duplicate MAIL FROM");
}

TEST(SgfilterParser, RejectsBadLengths) {
  const std::string env = "MAIL FROM: a\nRCPT TO: b\n";
  EXPECT_EQ(FeedAll(env + "DATA -5\n").error, "bad DATA length '-5'");
  EXPECT_EQ(FeedAll(env + "DATA abc\n").error, "bad DATA length 'abc'");
  EXPECT_EQ(FeedAll(env + "DATA 12x\n").error, "bad DATA length '12x'");
  EXPECT_EQ(FeedAll(env + "DATA 1 2\n").error, "bad DATA length '1 2'");
  EXPECT_EQ(FeedAll(env + "DATA +5\n").error, "bad DATA length '+5'");
  EXPECT_EQ(FeedAll(env + "DATA 99999999999999999999999\n").error,
            "bad DATA length '99999999999999999999999'");
  EXPECT_EQ(FeedAll(env + "DATA\n").error, "DATA without a length");
}

TEST(SgfilterParser, RejectsLengthOverMaxMessageSize) {
  const std::string env = "MAIL FROM: a\nRCPT TO: b\n";
  EXPECT_EQ(FeedAll(env + "DATA 1001\n", 1000).error,
            "message too large: 1001 bytes, the limit is 1000");
  SgfilterParser parser({.max_message_size = 1000});
  absl::string_view in = "MAIL FROM: a\nRCPT TO: b\nDATA 1001\n";
  SgfilterEvent ev;
  do {
    ev = parser.Next(&in);
  } while (ev.type != SgfilterEventType::kError && ev.type != SgfilterEventType::kNeedMore);
  EXPECT_EQ(ev.type, SgfilterEventType::kError);
  EXPECT_TRUE(ev.too_large);
  EXPECT_EQ(ev.length, 1001);
  Parsed p = FeedAll(env + "DATA 1000\n" + std::string(1000, 'x'), 1000);
  EXPECT_EQ(p.error, "");
  EXPECT_TRUE(p.ended);
}

TEST(SgfilterParser, RejectsLongCommandLine) {
  std::string addr(1000 - std::string("RCPT TO: ").size(), 'a');
  // Exactly 1000 bytes before the line end is fine, with LF or CRLF.
  EXPECT_EQ(FeedAll("MAIL FROM: x\nRCPT TO: " + addr + "\r\nDATA 0\n").error, "");
  EXPECT_EQ(FeedAll("MAIL FROM: x\nRCPT TO: " + addr + "a\n").error,
            "command line longer than 1000 bytes");
  // Without a line end the parser gives up as soon as the limit is passed, whatever
  // the piece sizes.
  Parsed p = Feed({"MAIL FROM: x\n", std::string(600, 'x'), std::string(600, 'x')});
  EXPECT_EQ(p.error, "command line longer than 1000 bytes");
  EXPECT_EQ(FeedAll(std::string(5000, 'x')).error, "command line longer than 1000 bytes");
}

TEST(SgfilterParser, RejectsTooManyRecipients) {
  std::string in = "MAIL FROM: a\n";
  for (int i = 0; i < 1000; ++i) absl::StrAppend(&in, "RCPT TO: <r", i, "@x>\n");
  Parsed ok = FeedAll(in + "DATA 0\n");
  EXPECT_EQ(ok.error, "");
  EXPECT_EQ(ok.recipients.size(), 1000u);
  EXPECT_EQ(FeedAll(in + "RCPT TO: <one-more@x>\n").error, "too many recipients (limit 1000)");
}

TEST(SgfilterParser, RejectsBadAddresses) {
  EXPECT_EQ(FeedAll("MAIL FROM: <a> <b>\n").error, "MAIL FROM: more than one address in '<a> <b>'");
  EXPECT_EQ(FeedAll("MAIL FROM: <a\n").error, "MAIL FROM: unbalanced angle brackets in '<a'");
  EXPECT_EQ(FeedAll("MAIL FROM: a>\n").error, "MAIL FROM: bad address 'a>'");
  EXPECT_EQ(FeedAll("MAIL FROM: a\nRCPT TO: <>\n").error, "RCPT TO: empty recipient");
  EXPECT_EQ(FeedAll("MAIL FROM: a\nRCPT TO:\n").error, "RCPT TO: empty recipient");
}

TEST(SgfilterParser, ExtraBytesAfterMessageAreAnError) {
  Parsed p = FeedAll("MAIL FROM: a\nRCPT TO: b\nDATA 3\nabcdef");
  EXPECT_EQ(p.data, "abc");
  EXPECT_TRUE(p.ended);
  SgfilterParser parser({});
  absl::string_view in = "MAIL FROM: a\nRCPT TO: b\nDATA 3\nabcdef";
  SgfilterEvent ev;
  do {
    ev = parser.Next(&in);
  } while (ev.type != SgfilterEventType::kMessageEnd);
  EXPECT_EQ(in, "def");
  ev = parser.Next(&in);
  EXPECT_EQ(ev.type, SgfilterEventType::kError);
  EXPECT_EQ(ev.value, "more bytes than the announced DATA length (3 extra)");
}

TEST(SgfilterParser, StaysFailed) {
  SgfilterParser parser({});
  absl::string_view in = "BOGUS\nMAIL FROM: a\n";
  EXPECT_EQ(parser.Next(&in).type, SgfilterEventType::kError);
  absl::string_view more = "MAIL FROM: a\n";
  SgfilterEvent ev = parser.Next(&more);
  EXPECT_EQ(ev.type, SgfilterEventType::kError);
  EXPECT_EQ(ev.value, "unknown command 'BOGUS'");
  EXPECT_EQ(parser.state(), SgfilterParser::State::kFailed);
}

TEST(SgfilterParser, ReportsRemainingBytes) {
  SgfilterParser parser({});
  absl::string_view in = "MAIL FROM: a\nRCPT TO: b\nDATA 10\nabc";
  while (parser.Next(&in).type != SgfilterEventType::kNeedMore) {
  }
  EXPECT_EQ(parser.state(), SgfilterParser::State::kData);
  EXPECT_EQ(parser.remaining(), 7);
  EXPECT_EQ(parser.recipients(), 1u);
}

TEST(ResultLine, FormatsCodeLevelAndText) {
  EXPECT_EQ(FormatResultLine(250, 0, "OK"), "250 0.00 OK\n");
  EXPECT_EQ(FormatResultLine(550, 1.005, "Eicar-Test-Signature"),
            "550 1.00 Eicar-Test-Signature\n");
  EXPECT_EQ(FormatResultLine(550, 12.345, "SPAM"), "550 12.35 SPAM\n");
  EXPECT_EQ(FormatResultLine(451, 0, "bad\r\nline"), "451 0.00 bad  line\n");
  EXPECT_EQ(FormatResultLine(451, 0, ""), "451 0.00 -\n");
  EXPECT_EQ(FormatResultLine(250, std::nan(""), "x"), "250 0.00 x\n");
  EXPECT_EQ(FormatResultLine(250, 0, std::string(500, 'a')).size(), 9u + 200u + 1u);
}

TEST(ResultLine, ParsesWhatItFormats) {
  absl::StatusOr<ResultLine> r = ParseResultLine("550 1.00 Eicar Test\r\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->code, 550);
  EXPECT_DOUBLE_EQ(r->level, 1.0);
  EXPECT_EQ(r->text, "Eicar Test");
  r = ParseResultLine("250 0.00");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text, "");
  r = ParseResultLine("251 -0.50 x");
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(r->level, -0.5);
  EXPECT_FALSE(ParseResultLine("Received: from x").ok());
  EXPECT_FALSE(ParseResultLine("250 OK").ok());
  EXPECT_FALSE(ParseResultLine("2500 1.00 x").ok());
  EXPECT_FALSE(ParseResultLine("150 1.00 x").ok());
  EXPECT_FALSE(ParseResultLine("").ok());
}

}  // namespace
}  // namespace sagator::sgfilterd
