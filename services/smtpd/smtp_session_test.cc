#include "services/smtpd/smtp_session.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sagator::smtpd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Action = SmtpSession::Action;

// Drives a session like the socket code does; recipients and messages are decided
// by the given replies.
class Driver {
 public:
  explicit Driver(SmtpSession::Options o = {}) : s(std::move(o)) {}

  // Feeds `in`, runs the actions, returns everything written.
  std::string Send(const std::string& in) {
    s.Feed(in);
    std::string out;
    for (;;) {
      Action a = s.Next(&out);
      if (a == Action::kRecipient) {
        recipients_seen.push_back(s.pending_recipient());
        bool refuse = s.pending_recipient().find("refuse") != std::string::npos;
        s.CompleteRecipient(refuse ? Reply{550, "5.1.1", "no such user"}
                                   : Reply{250, "2.1.5", "Ok"});
        continue;
      }
      if (a == Action::kMessage) {
        messages.push_back(s.transaction());
        std::vector<Reply> replies;
        for (size_t i = 0; i < s.transaction().recipients.size(); ++i) {
          replies.push_back(Reply{250, "2.0.0", "delivered " + s.transaction().recipients[i]});
        }
        s.CompleteMessage(replies);
        continue;
      }
      if (a == Action::kClose) closed = true;
      return out;
    }
  }

  SmtpSession s;
  std::vector<std::string> recipients_seen;
  std::vector<Transaction> messages;
  bool closed = false;
};

std::vector<std::string> Lines(const std::string& out) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t nl = out.find("\r\n", pos);
    if (nl == std::string::npos) break;
    lines.push_back(out.substr(pos, nl - pos));
    pos = nl + 2;
  }
  return lines;
}

TEST(SmtpSession, GreetingAndEhloAdvertiseTheExtensions) {
  SmtpSession::Options o;
  o.hostname = "gw.test";
  o.max_message_size = 12345;
  Driver d(o);
  EXPECT_EQ(d.s.Greeting(), "220 gw.test ESMTP SAGATOR\r\n");
  EXPECT_THAT(Lines(d.Send("EHLO client.test\r\n")),
              ElementsAre("250-gw.test", "250-PIPELINING", "250-SIZE 12345", "250-8BITMIME",
                          "250-ENHANCEDSTATUSCODES",
                          "250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE"));
  EXPECT_EQ(d.s.helo(), "client.test");
  EXPECT_TRUE(d.s.extended());
}

TEST(SmtpSession, PipelinedTransactionIsAnsweredInOrder) {
  Driver d;
  std::string out = d.Send(
      "EHLO c\r\nMAIL FROM:<a@x.org> SIZE=20 BODY=8BITMIME\r\nRCPT TO:<b@y.org>\r\n"
      "RCPT TO:<refuse@y.org>\r\nRCPT TO:<c@y.org>\r\nDATA\r\n");
  std::vector<std::string> lines = Lines(out);
  ASSERT_GE(lines.size(), 5u);
  EXPECT_THAT(std::vector<std::string>(lines.end() - 5, lines.end()),
              ElementsAre("250 2.1.0 Ok", "250 2.1.5 Ok", "550 5.1.1 no such user",
                          "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>"));
  out = d.Send("Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
  EXPECT_THAT(Lines(out), ElementsAre("250 2.0.0 delivered b@y.org", "221 2.0.0 Bye"));
  ASSERT_EQ(d.messages.size(), 1u);
  EXPECT_EQ(d.messages[0].sender, "a@x.org");
  EXPECT_EQ(d.messages[0].declared_size, 20);
  EXPECT_TRUE(d.messages[0].body_8bitmime);
  EXPECT_THAT(d.messages[0].recipients, ElementsAre("b@y.org", "c@y.org"));
  EXPECT_EQ(d.messages[0].data, "Subject: hi\r\n\r\nbody\r\n");
  EXPECT_TRUE(d.closed);
}

TEST(SmtpSession, InputSplitAnywhereGivesTheSameResult) {
  const std::string session =
      "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n..dot\r\nline\r\n.\r\nQUIT\r\n";
  Driver whole;
  std::string expected = whole.Send(session);
  for (size_t cut = 1; cut < session.size(); ++cut) {
    Driver d;
    std::string out = d.Send(session.substr(0, cut));
    out += d.Send(session.substr(cut));
    EXPECT_EQ(out, expected) << "cut at " << cut;
    ASSERT_EQ(d.messages.size(), 1u);
    EXPECT_EQ(d.messages[0].data, ".dot\r\nline\r\n");
    EXPECT_EQ(d.messages[0].sender, "");
  }
}

TEST(SmtpSession, DotStuffingIsRemoved) {
  Driver d;
  d.Send("HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
  d.Send("..\r\n...x\r\n.y\r\n.\r\n");
  ASSERT_EQ(d.messages.size(), 1u);
  EXPECT_EQ(d.messages[0].data, ".\r\n..x\r\ny\r\n");
}

TEST(SmtpSession, BareLinefeedDotDoesNotEndTheData) {
  // The SMTP smuggling pattern: "\n.\n" and "\r\n.\n" and "\n.\r\n" are content.
  Driver d;
  d.Send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
  std::string out = d.Send("first\n.\nMAIL FROM:<evil@x>\r\n.\nsecond\n.\r\nthird\r\n");
  EXPECT_TRUE(d.messages.empty()) << "ended early: " << out;
  out = d.Send("last\r\n.\r\n");
  ASSERT_EQ(d.messages.size(), 1u) << out;
  // Every line got CRLF; the dot lines stay in the message (the relay stuffs them).
  EXPECT_EQ(d.messages[0].data,
            "first\r\n.\r\nMAIL FROM:<evil@x>\r\n.\r\nsecond\r\n.\r\nthird\r\nlast\r\n");
  EXPECT_THAT(out, StartsWith("250 "));
}

TEST(SmtpSession, SequenceErrors) {
  Driver d;
  EXPECT_THAT(d.Send("MAIL FROM:<a@x>\r\n"), StartsWith("503 5.5.1"));
  d.Send("EHLO c\r\n");
  EXPECT_THAT(d.Send("RCPT TO:<b@y>\r\n"), StartsWith("503 5.5.1 Error: need MAIL"));
  EXPECT_THAT(d.Send("DATA\r\n"), StartsWith("503 5.5.1"));
  d.Send("MAIL FROM:<a@x>\r\n");
  EXPECT_THAT(d.Send("MAIL FROM:<a@x>\r\n"), StartsWith("503 5.5.1 Error: nested MAIL"));
  EXPECT_THAT(d.Send("DATA\r\n"), StartsWith("503 5.5.1 Error: need RCPT"));
  EXPECT_THAT(d.Send("RSET\r\n"), StartsWith("250 2.0.0"));
  EXPECT_FALSE(d.s.in_transaction());
}

TEST(SmtpSession, SyntaxErrorsAndUnknownCommands) {
  Driver d;
  d.Send("EHLO c\r\n");
  EXPECT_THAT(d.Send("MAIL TO:<a@x>\r\n"), StartsWith("501 5.5.4"));
  EXPECT_THAT(d.Send("MAIL FROM:<a@x\r\n"), StartsWith("501 5.5.4"));
  EXPECT_THAT(d.Send("MAIL FROM:<a@x> FOO=1\r\n"), StartsWith("555 5.5.4"));
  EXPECT_THAT(d.Send("MAIL FROM:<a@x> SIZE=abc\r\n"), StartsWith("501 5.5.4"));
  EXPECT_THAT(d.Send("EHLO\r\n"), StartsWith("501 5.5.4"));
  EXPECT_THAT(d.Send("FOO bar\r\n"), StartsWith("502 5.5.2"));
  EXPECT_THAT(d.Send("STARTTLS\r\n"), StartsWith("502 5.5.1"));
  EXPECT_THAT(d.Send("\r\n"), StartsWith("500 5.5.2"));
  EXPECT_THAT(d.Send("LHLO c\r\n"), StartsWith("500 5.5.1"));
  d.Send("MAIL FROM:<a@x>\r\n");
  EXPECT_THAT(d.Send("RCPT TO:<>\r\n"), StartsWith("501 5.1.3"));
  EXPECT_THAT(d.Send("RCPT TO:<b@y> NOTIFY=NEVER\r\n"), StartsWith("555 5.5.4"));
  EXPECT_THAT(d.Send("NOOP\r\n"), StartsWith("250 2.0.0"));
  EXPECT_THAT(d.Send("VRFY root\r\n"), StartsWith("252 "));
}

TEST(SmtpSession, DeclaredSizeOverTheLimitIsRefused) {
  SmtpSession::Options o;
  o.max_message_size = 1000;
  Driver d(o);
  d.Send("EHLO c\r\n");
  EXPECT_THAT(d.Send("MAIL FROM:<a@x> SIZE=1001\r\n"), StartsWith("552 5.3.4"));
  EXPECT_THAT(d.Send("MAIL FROM:<a@x> SIZE=1000\r\n"), StartsWith("250 "));
}

TEST(SmtpSession, DataOverTheLimitIsReadToTheEndAndRefused) {
  SmtpSession::Options o;
  o.max_message_size = 1000;
  Driver d(o);
  d.Send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
  std::string line(99, 'x');
  std::string out;
  for (int i = 0; i < 50; ++i) out += d.Send(line + "\r\n");
  EXPECT_EQ(out, "");
  EXPECT_LE(d.s.data_bytes(), 1000u);
  out = d.Send(".\r\nNOOP\r\n");
  EXPECT_THAT(Lines(out), ElementsAre("552 5.3.4 Error: message file too big", "250 2.0.0 Ok"));
  EXPECT_TRUE(d.messages.empty());
  EXPECT_FALSE(d.s.in_transaction());
}

TEST(SmtpSession, OverlongLines) {
  SmtpSession::Options o;
  o.max_line_length = 600;
  o.max_data_line_length = 2000;
  Driver d(o);
  EXPECT_THAT(d.Send(std::string(5000, 'A')), "");  // no line end yet: nothing kept
  EXPECT_THAT(d.Send("\r\nNOOP\r\n"),
              "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n");
  d.Send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
  d.Send(std::string(10000, 'B'));
  EXPECT_LT(d.s.data_bytes(), 10u);
  EXPECT_THAT(d.Send("\r\n.\r\n"), StartsWith("554 5.6.0"));
  EXPECT_TRUE(d.messages.empty());
}

TEST(SmtpSession, LongDataLineInManyReadsIsKept) {
  Driver d;
  d.Send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
  std::string line(200000, 'L');
  for (size_t i = 0; i < line.size(); i += 1000) EXPECT_EQ(d.Send(line.substr(i, 1000)), "");
  EXPECT_THAT(d.Send("\r\n.\r\n"), StartsWith("250 "));
  ASSERT_EQ(d.messages.size(), 1u);
  EXPECT_EQ(d.messages[0].data, line + "\r\n");
}

TEST(SmtpSession, TooManyRecipients) {
  SmtpSession::Options o;
  o.max_recipients = 2;
  Driver d(o);
  std::string out =
      d.Send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<1@y>\r\nRCPT TO:<2@y>\r\nRCPT TO:<3@y>\r\n");
  EXPECT_THAT(out, HasSubstr("452 4.5.3 Error: too many recipients"));
  EXPECT_EQ(d.recipients_seen.size(), 2u);
}

TEST(SmtpSession, TooManyErrorsCloseTheSession) {
  SmtpSession::Options o;
  o.max_errors = 3;
  Driver d(o);
  std::string out = d.Send("X\r\nY\r\nZ\r\nNOOP\r\n");
  EXPECT_THAT(out, HasSubstr("421 4.7.0"));
  EXPECT_THAT(out, Not(HasSubstr("250 2.0.0 Ok")));
  EXPECT_TRUE(d.closed);
}

TEST(SmtpSession, RefusedDataIsDrainedThenAnswered) {
  Driver d;
  d.Send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: x\r\n");
  d.s.RefuseData(Reply{452, "4.3.1", "Error: insufficient system storage"});
  EXPECT_EQ(d.Send("more\r\n"), "");
  EXPECT_EQ(d.Send(".\r\n"), "452 4.3.1 Error: insufficient system storage\r\n");
  EXPECT_TRUE(d.messages.empty());
}

TEST(SmtpSession, XforwardIsDecodedAndResetAfterTheTransaction) {
  Driver d;
  d.Send("EHLO c\r\n");
  EXPECT_THAT(d.Send("XFORWARD NAME=mail.example.com ADDR=IPV6:2001:db8::1 PROTO=ESMTP\r\n"),
              StartsWith("250 2.0.0"));
  EXPECT_THAT(d.Send("XFORWARD HELO=a+20b IDENT=[UNAVAILABLE]\r\n"), StartsWith("250 "));
  EXPECT_EQ(d.s.xforward().at("NAME"), "mail.example.com");
  EXPECT_EQ(d.s.xforward().at("ADDR"), "2001:db8::1");
  EXPECT_EQ(d.s.xforward().at("HELO"), "a b");
  EXPECT_EQ(d.s.xforward().count("IDENT"), 0u);
  EXPECT_THAT(d.Send("XFORWARD COLOR=red\r\n"), StartsWith("501 5.5.4"));
  d.Send("MAIL FROM:<a@x>\r\n");
  EXPECT_THAT(d.Send("XFORWARD NAME=x\r\n"), StartsWith("503 5.5.1"));
  d.Send("RCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\n");
  EXPECT_TRUE(d.s.xforward().empty());
}

TEST(SmtpSession, LmtpRepliesOncePerAcceptedRecipient) {
  SmtpSession::Options o;
  o.dialect = Dialect::kLmtp;
  o.hostname = "gw";
  Driver d(o);
  EXPECT_EQ(d.s.Greeting(), "220 gw LMTP SAGATOR\r\n");
  EXPECT_THAT(d.Send("EHLO c\r\n"), StartsWith("500 5.5.1"));
  EXPECT_THAT(d.Send("HELO c\r\n"), StartsWith("500 5.5.1"));
  EXPECT_THAT(d.Send("LHLO c\r\n"), HasSubstr("250-PIPELINING"));
  std::string out = d.Send(
      "MAIL FROM:<a@x>\r\nRCPT TO:<one@y>\r\nRCPT TO:<refuse@y>\r\nRCPT TO:<two@y>\r\n"
      "DATA\r\nhello\r\n.\r\n");
  std::vector<std::string> lines = Lines(out);
  ASSERT_EQ(lines.size(), 7u) << out;
  EXPECT_EQ(lines[2], "550 5.1.1 no such user");
  EXPECT_EQ(lines[5], "250 2.0.0 delivered one@y");
  EXPECT_EQ(lines[6], "250 2.0.0 delivered two@y");
}

TEST(SmtpSession, LmtpDataWithoutRecipientsIsRefused) {
  SmtpSession::Options o;
  o.dialect = Dialect::kLmtp;
  Driver d(o);
  std::string out = d.Send("LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<refuse@y>\r\nDATA\r\n");
  EXPECT_THAT(out, HasSubstr("503 5.5.1 Error: no valid recipients"));
}

TEST(SmtpSession, CommandsAfterTheDotWaitForTheMessageResult) {
  SmtpSession s({});
  std::string out;
  s.Feed("EHLO c\r\nMAIL FROM:<a@x>\r\n");
  EXPECT_EQ(s.Next(&out), Action::kRead);
  s.Feed("RCPT TO:<b@y>\r\n");
  ASSERT_EQ(s.Next(&out), Action::kRecipient);
  s.CompleteRecipient(Reply{250, "2.1.5", "Ok"});
  s.Feed("DATA\r\nx\r\n.\r\nQUIT\r\n");
  ASSERT_EQ(s.Next(&out), Action::kMessage);
  // Until the result is in, the QUIT is not answered.
  EXPECT_THAT(out, Not(HasSubstr("221")));
  ASSERT_EQ(s.Next(&out), Action::kMessage);
  s.CompleteMessage({Reply{451, "4.3.0", "Error: scanner unavailable"}});
  EXPECT_EQ(s.Next(&out), Action::kClose);
  EXPECT_THAT(out, HasSubstr("451 4.3.0 Error: scanner unavailable\r\n221 2.0.0 Bye\r\n"));
}

TEST(Reply, FormatsMultilineAndParsesEnhancedCodes) {
  EXPECT_EQ((Reply{250, "2.0.0", "a\nb"}).Format(), "250-2.0.0 a\r\n250 2.0.0 b\r\n");
  EXPECT_EQ((Reply{220, "", "hi"}).Format(), "220 hi\r\n");
  Reply r = ParseReplyLines(550, {"5.1.1 <x@y>: unknown", "5.1.1 really"});
  EXPECT_EQ(r.enhanced, "5.1.1");
  EXPECT_EQ(r.text, "<x@y>: unknown\nreally");
  r = ParseReplyLines(250, {"Ok"});
  EXPECT_EQ(r.enhanced, "");
  EXPECT_EQ(r.text, "Ok");
}

}  // namespace
}  // namespace sagator::smtpd
