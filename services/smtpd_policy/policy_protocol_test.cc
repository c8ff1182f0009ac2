#include "services/smtpd_policy/policy_protocol.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sagator::smtpd_policy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// A request as Postfix 3.7 sends it at RCPT: every attribute of every version
// (SMTPD_POLICY_README), in Postfix's order.
const char kPostfix37Rcpt[] =
    "request=smtpd_access_policy\n"
    "protocol_state=RCPT\n"
    "protocol_name=ESMTP\n"
    "client_address=192.0.2.7\n"
    "client_name=mx.example.net\n"
    "client_port=41234\n"
    "reverse_client_name=mx.example.net\n"
    "server_address=192.0.2.1\n"
    "server_port=25\n"
    "helo_name=mx.example.net\n"
    "sender=alice@example.net\n"
    "recipient=bob@example.org\n"
    "recipient_count=0\n"
    "queue_id=8045F2AB23\n"
    "instance=123.456.7\n"
    "size=12345\n"
    "etrn_domain=\n"
    "stress=\n"
    "sasl_method=plain\n"
    "sasl_username=alice\n"
    "sasl_sender=\n"
    "ccert_subject=solaris9.porcupine.org\n"
    "ccert_issuer=Wietse+20Venema\n"
    "ccert_fingerprint=C2:9D:F4:87:71:73:73:D9:18:E7:C2:F3:C1:DA:6E:04\n"
    "ccert_pubkey_fingerprint=68:B3:29:DA:98:93:E3:40:99:C7:D8:AD:5C:B9:C9:40\n"
    "encryption_protocol=TLSv1.3\n"
    "encryption_cipher=TLS_AES_256_GCM_SHA384\n"
    "encryption_keysize=256\n"
    "policy_context=submission\n"
    "\n";

// Postfix 2.1: the original attribute set only.
const char kPostfix21Rcpt[] =
    "request=smtpd_access_policy\n"
    "protocol_state=RCPT\n"
    "protocol_name=SMTP\n"
    "helo_name=old.example.net\n"
    "queue_id=\n"
    "sender=\n"
    "recipient=postmaster@example.org\n"
    "client_address=198.51.100.9\n"
    "client_name=unknown\n"
    "reverse_client_name=unknown\n"
    "instance=1a2b.3c4d.0\n"
    "\n";

std::vector<PolicyEvent> FeedAll(PolicyParser& parser, absl::string_view in) {
  std::vector<PolicyEvent> out;
  for (;;) {
    PolicyEvent ev = parser.Next(&in);
    if (ev.type == PolicyEventType::kNeedMore) {
      EXPECT_TRUE(in.empty());
      return out;
    }
    out.push_back(std::move(ev));
    if (out.back().type == PolicyEventType::kError) return out;
  }
}

// Feeds `in` in pieces of the given sizes (the last one takes the rest).
std::vector<PolicyEvent> FeedSplit(PolicyParser& parser, absl::string_view in,
                                   const std::vector<size_t>& cuts) {
  std::vector<PolicyEvent> out;
  size_t pos = 0;
  for (size_t i = 0; i <= cuts.size(); ++i) {
    size_t end = i < cuts.size() ? cuts[i] : in.size();
    std::vector<PolicyEvent> got = FeedAll(parser, in.substr(pos, end - pos));
    for (PolicyEvent& e : got) out.push_back(std::move(e));
    if (!out.empty() && out.back().type == PolicyEventType::kError) return out;
    pos = end;
  }
  return out;
}

PolicyEvent One(absl::string_view in, PolicyLimits limits = {}) {
  PolicyParser parser(limits);
  std::vector<PolicyEvent> events = FeedAll(parser, in);
  EXPECT_EQ(events.size(), 1u) << in;
  return events.empty() ? PolicyEvent() : events[0];
}

TEST(PolicyParser, ReadsAPostfix37BlockWithEveryAttribute) {
  PolicyEvent ev = One(kPostfix37Rcpt);
  ASSERT_EQ(ev.type, PolicyEventType::kRequest) << ev.error;
  EXPECT_EQ(ev.attributes.size(), 29u);
  EXPECT_EQ(ev.attributes.at("protocol_state"), "RCPT");
  EXPECT_EQ(ev.attributes.at("ccert_fingerprint"),
            "C2:9D:F4:87:71:73:73:D9:18:E7:C2:F3:C1:DA:6E:04");
  EXPECT_EQ(ev.attributes.at("stress"), "");
  EXPECT_EQ(ev.attributes.at("policy_context"), "submission");
  EXPECT_EQ(ev.attributes.at("server_port"), "25");
}

TEST(PolicyParser, ReadsAPostfix21Block) {
  PolicyEvent ev = One(kPostfix21Rcpt);
  ASSERT_EQ(ev.type, PolicyEventType::kRequest) << ev.error;
  EXPECT_EQ(ev.attributes.size(), 11u);
  EXPECT_EQ(ev.attributes.at("sender"), "");
  EXPECT_EQ(ev.attributes.at("client_name"), "unknown");
}

TEST(PolicyParser, KeepsUnknownAttributesAndValuesWithEqualSigns) {
  PolicyEvent ev =
      One("request=smtpd_access_policy\nx_future_attribute=some=thing\nempty=\n"
          "protocol_state=MAIL\n\n");
  ASSERT_EQ(ev.type, PolicyEventType::kRequest) << ev.error;
  EXPECT_EQ(ev.attributes.at("x_future_attribute"), "some=thing");
  EXPECT_EQ(ev.attributes.at("empty"), "");
}

TEST(PolicyParser, RepeatedNameKeepsTheLastValue) {
  PolicyEvent ev =
      One("request=smtpd_access_policy\nsender=first@example.net\nsender=last@example.net\n\n");
  ASSERT_EQ(ev.type, PolicyEventType::kRequest) << ev.error;
  EXPECT_EQ(ev.attributes.at("sender"), "last@example.net");
}

TEST(PolicyParser, ToleratesCrlf) {
  std::string crlf = absl::StrReplaceAll(kPostfix37Rcpt, {{"\n", "\r\n"}});
  PolicyEvent ev = One(crlf);
  ASSERT_EQ(ev.type, PolicyEventType::kRequest) << ev.error;
  PolicyEvent lf = One(kPostfix37Rcpt);
  EXPECT_EQ(ev.attributes, lf.attributes);
  // Only the one CR before LF is a line end; one in the middle stays in the value.
  PolicyEvent mixed = One("request=smtpd_access_policy\r\nsender=a\rb\r\n\r\n");
  ASSERT_EQ(mixed.type, PolicyEventType::kRequest) << mixed.error;
  EXPECT_EQ(mixed.attributes.at("sender"), "a\rb");
}

TEST(PolicyParser, ServesManyRequestsFromOneStream) {
  PolicyParser parser;
  std::string stream = absl::StrCat(kPostfix21Rcpt, kPostfix37Rcpt, kPostfix21Rcpt);
  absl::string_view in = stream;
  PolicyEvent first = parser.Next(&in);
  ASSERT_EQ(first.type, PolicyEventType::kRequest);
  EXPECT_EQ(in.size(), stream.size() - strlen(kPostfix21Rcpt));  // the rest stays unread
  EXPECT_TRUE(parser.idle());
  EXPECT_EQ(parser.Next(&in).attributes.at("client_address"), "192.0.2.7");
  EXPECT_EQ(parser.Next(&in).attributes.at("client_address"), "198.51.100.9");
  EXPECT_EQ(parser.Next(&in).type, PolicyEventType::kNeedMore);
  EXPECT_EQ(parser.requests(), 3u);
  EXPECT_TRUE(parser.idle());
}

TEST(PolicyParser, InputCutAtEveryByteGivesTheSameRequests) {
  const std::string stream = absl::StrCat(kPostfix37Rcpt, "request=smtpd_access_policy\r\n",
                                          "protocol_state=DATA\r\n\r\n");
  PolicyParser whole;
  std::vector<PolicyEvent> expected = FeedAll(whole, stream);
  ASSERT_EQ(expected.size(), 2u);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    PolicyParser parser;
    std::vector<PolicyEvent> got = FeedSplit(parser, stream, {cut});
    ASSERT_EQ(got.size(), 2u) << "cut at " << cut;
    EXPECT_EQ(got[0].attributes, expected[0].attributes) << "cut at " << cut;
    EXPECT_EQ(got[1].attributes, expected[1].attributes) << "cut at " << cut;
    EXPECT_TRUE(parser.idle());
  }
  // One byte at a time.
  PolicyParser bytewise;
  std::vector<size_t> cuts;
  for (size_t i = 1; i < stream.size(); ++i) cuts.push_back(i);
  std::vector<PolicyEvent> got = FeedSplit(bytewise, stream, cuts);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].attributes.at("protocol_state"), "DATA");
}

TEST(PolicyParser, IdleOnlyBetweenBlocks) {
  PolicyParser parser;
  EXPECT_TRUE(parser.idle());
  absl::string_view in = "request=smtpd_acc";
  EXPECT_EQ(parser.Next(&in).type, PolicyEventType::kNeedMore);
  EXPECT_FALSE(parser.idle());
  in = "ess_policy\n";
  EXPECT_EQ(parser.Next(&in).type, PolicyEventType::kNeedMore);
  EXPECT_FALSE(parser.idle());
  in = "\n";
  EXPECT_EQ(parser.Next(&in).type, PolicyEventType::kRequest);
  EXPECT_TRUE(parser.idle());
}

TEST(PolicyParser, RefusesLinesThatAreNotAttributes) {
  EXPECT_THAT(One("request=smtpd_access_policy\nGET / HTTP/1.0\n\n").error,
              HasSubstr("without '='"));
  EXPECT_THAT(One("=value\n\n").error, HasSubstr("without a name"));
  EXPECT_THAT(One(std::string("request=smtpd_access_policy\nsender=a\0b\n\n", 40)).error,
              HasSubstr("NUL byte"));
  EXPECT_EQ(One("EHLO example.org\r\n").type, PolicyEventType::kError);
}

TEST(PolicyParser, RefusesOtherRequestTypesAndMissingOnes) {
  EXPECT_THAT(One("request=junk_policy\nsender=a\n\n").error,
              HasSubstr("unsupported request type 'junk_policy'"));
  EXPECT_THAT(One("sender=a\n\n").error, HasSubstr("request attribute missing"));
  EXPECT_THAT(One("\n").error, HasSubstr("empty request block"));
  EXPECT_THAT(One("\r\n").error, HasSubstr("empty request block"));
  // The name is case-sensitive, like Postfix's.
  EXPECT_EQ(One("request=SMTPD_ACCESS_POLICY\n\n").type, PolicyEventType::kError);
}

TEST(PolicyParser, RefusesALongLineBeforeBufferingIt) {
  PolicyLimits limits;
  limits.max_line = 100;
  // Exactly at the limit: fine (CRLF too).
  std::string at_limit = "request=smtpd_access_policy\nx=" + std::string(98, 'v') + "\r\n\n";
  EXPECT_EQ(One(at_limit, limits).type, PolicyEventType::kRequest);
  std::string over = "request=smtpd_access_policy\nx=" + std::string(99, 'v') + "\n\n";
  EXPECT_THAT(One(over, limits).error, HasSubstr("longer than 100 bytes"));
  // A line without an end: refused after max_line + 2 bytes, never buffered whole.
  PolicyParser parser(limits);
  std::string chunk(10, 'a');
  int fed = 0;
  PolicyEvent ev;
  while (fed < 1000) {
    absl::string_view in = chunk;
    ev = parser.Next(&in);
    fed += 10;
    if (ev.type != PolicyEventType::kNeedMore) break;
  }
  EXPECT_EQ(ev.type, PolicyEventType::kError);
  EXPECT_LE(fed, 110);
}

TEST(PolicyParser, RefusesTooManyAttributes) {
  PolicyLimits limits;
  limits.max_attributes = 5;
  std::string ok = "request=smtpd_access_policy\na=1\nb=2\nc=3\nd=4\n\n";
  EXPECT_EQ(One(ok, limits).type, PolicyEventType::kRequest);
  std::string over = "request=smtpd_access_policy\na=1\nb=2\nc=3\nd=4\ne=5\n\n";
  EXPECT_THAT(One(over, limits).error, HasSubstr("more than 5 attributes"));
  // Repeating one name counts every line.
  std::string repeated = "request=smtpd_access_policy\n";
  for (int i = 0; i < 10; ++i) repeated += "a=1\n";
  EXPECT_EQ(One(repeated + "\n", limits).type, PolicyEventType::kError);
}

TEST(PolicyParser, RefusesAnOversizedBlock) {
  PolicyLimits limits;  // 8 KiB lines, 100 attributes, 64 KiB blocks
  std::string block = "request=smtpd_access_policy\n";
  for (int i = 0; i < 20; ++i) block += absl::StrCat("x", i, "=", std::string(4000, 'v'), "\n");
  EXPECT_THAT(One(block + "\n", limits).error, HasSubstr("larger than 65536 bytes"));
  // Also when it arrives in small pieces.
  PolicyParser parser(limits);
  std::vector<size_t> cuts;
  for (size_t i = 7; i < block.size(); i += 7) cuts.push_back(i);
  std::vector<PolicyEvent> got = FeedSplit(parser, block, cuts);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back().type, PolicyEventType::kError);
}

TEST(PolicyParser, StaysFailedAfterAnError) {
  PolicyParser parser;
  absl::string_view in = "nonsense\n";
  EXPECT_EQ(parser.Next(&in).type, PolicyEventType::kError);
  EXPECT_TRUE(parser.failed());
  EXPECT_FALSE(parser.idle());
  absl::string_view good = kPostfix21Rcpt;
  EXPECT_EQ(parser.Next(&good).type, PolicyEventType::kError);
}

TEST(PolicyParser, RandomGarbageNeverCrashesAndStaysBounded) {
  std::mt19937 rng(42);
  PolicyLimits limits;
  for (int round = 0; round < 300; ++round) {
    PolicyParser parser(limits);
    std::string garbage;
    size_t len = rng() % 20000;
    for (size_t i = 0; i < len; ++i) {
      // Mostly printable with '=' and line ends, so some blocks get far.
      uint32_t r = rng() % 100;
      garbage.push_back(r < 5 ? '\n' : r < 10 ? '=' : r < 12 ? '\0' : static_cast<char>(rng()));
    }
    if (round % 2 == 0) garbage = absl::StrCat(kPostfix21Rcpt, garbage);
    std::vector<size_t> cuts;
    for (size_t i = rng() % 50 + 1; i < garbage.size(); i += rng() % 500 + 1) cuts.push_back(i);
    std::vector<PolicyEvent> got = FeedSplit(parser, garbage, cuts);
    for (size_t i = 0; i + 1 < got.size(); ++i) {
      EXPECT_EQ(got[i].type, PolicyEventType::kRequest);
    }
  }
}

TEST(ToPolicyRequest, MapsPostfixAttributesToTheEnvelope) {
  PolicyEvent ev = One(kPostfix37Rcpt);
  scanner::v1::PolicyRequest req = ToPolicyRequest(ev.attributes, "policy");
  EXPECT_EQ(req.chain(), "policy");
  EXPECT_EQ(req.gateway(), "smtpd_policy");
  EXPECT_EQ(req.protocol_state(), "RCPT");
  EXPECT_EQ(req.recipient(), "bob@example.org");
  EXPECT_EQ(req.envelope().sender(), "alice@example.net");
  EXPECT_THAT(req.envelope().recipients(), ElementsAre("bob@example.org"));
  EXPECT_EQ(req.envelope().queue_id(), "8045F2AB23");
  EXPECT_EQ(req.envelope().client().address(), "192.0.2.7");
  EXPECT_EQ(req.envelope().client().name(), "mx.example.net");
  EXPECT_EQ(req.envelope().client().helo(), "mx.example.net");
  EXPECT_EQ(req.envelope().client().protocol(), "ESMTP");
  // Every attribute goes along by name, for the policy scanners.
  EXPECT_EQ(req.attributes_size(), 29);
  EXPECT_EQ(req.attributes().at("instance"), "123.456.7");
  EXPECT_EQ(req.attributes().at("sasl_username"), "alice");
  EXPECT_EQ(req.attributes().at("client_port"), "41234");
}

TEST(ToPolicyRequest, OldPostfixAndMissingValues) {
  scanner::v1::PolicyRequest req = ToPolicyRequest(One(kPostfix21Rcpt).attributes, "p");
  EXPECT_EQ(req.envelope().sender(), "");         // the null sender
  EXPECT_EQ(req.envelope().client().name(), "");  // "unknown": no reverse DNS
  EXPECT_EQ(req.attributes().at("client_name"), "unknown");
  EXPECT_EQ(req.envelope().queue_id(), "");
  // At DATA with several recipients Postfix sends no recipient.
  scanner::v1::PolicyRequest data = ToPolicyRequest(
      One("request=smtpd_access_policy\nprotocol_state=DATA\nrecipient_count=3\n\n").attributes,
      "p");
  EXPECT_EQ(data.protocol_state(), "DATA");
  EXPECT_EQ(data.recipient(), "");
  EXPECT_EQ(data.envelope().recipients_size(), 0);
  EXPECT_EQ(data.envelope().client().address(), "");
  // Without the attribute map (in-process): the same envelope.
  scanner::v1::PolicyRequest bare =
      ToPolicyRequest(One(kPostfix21Rcpt).attributes, "p", /*with_attributes=*/false);
  EXPECT_TRUE(bare.attributes().empty());
  EXPECT_EQ(bare.envelope().SerializeAsString(), req.envelope().SerializeAsString());
  EXPECT_EQ(bare.recipient(), req.recipient());
}

scanner::v1::PolicyResponse Response(common::v1::Outcome outcome, std::string text = "",
                                     std::string detection = "") {
  scanner::v1::PolicyResponse r;
  r.set_outcome(outcome);
  r.set_reply_text(text);
  r.set_detection(detection);
  return r;
}

std::string Reply(const scanner::v1::PolicyResponse& r, absl::string_view state = "RCPT") {
  return FormatReply(ActionForResponse(r, state));
}

TEST(ActionForResponse, MapsEveryOutcome) {
  EXPECT_EQ(Reply(Response(common::v1::PASS)), "action=DUNNO\n\n");
  EXPECT_EQ(Reply(Response(common::v1::FORCED_PASS, "whitelisted")), "action=OK\n\n");
  EXPECT_EQ(Reply(Response(common::v1::TEMPFAIL, "4.7.1 Greylisted, see https://x/gl")),
            "action=DEFER_IF_PERMIT 4.7.1 Greylisted, see https://x/gl\n\n");
  EXPECT_EQ(Reply(Response(common::v1::REJECT, "5.7.1 Blacklisted sender")),
            "action=REJECT 5.7.1 Blacklisted sender\n\n");
  EXPECT_EQ(Reply(Response(common::v1::DROP, "Spam source")), "action=DISCARD Spam source\n\n");
  // No outcome: treated as TEMPFAIL.
  EXPECT_EQ(Reply(Response(common::v1::OUTCOME_UNSPECIFIED)),
            "action=DEFER_IF_PERMIT 4.3.0 Policy service gave no answer, try again later\n\n");
  EXPECT_EQ(Reply(Response(static_cast<common::v1::Outcome>(99), "odd")),
            "action=DEFER_IF_PERMIT odd\n\n");
}

TEST(ActionForResponse, DefaultTextsNameTheDetection) {
  EXPECT_EQ(Reply(Response(common::v1::REJECT, "", "Listed.Sender")),
            "action=REJECT 5.7.1 Rejected by policy: Listed.Sender\n\n");
  EXPECT_EQ(Reply(Response(common::v1::REJECT)), "action=REJECT 5.7.1 Rejected by policy\n\n");
  EXPECT_EQ(Reply(Response(common::v1::DROP)), "action=DISCARD Discarded by policy\n\n");
  EXPECT_EQ(Reply(Response(common::v1::TEMPFAIL, "", "Greylist")),
            "action=DEFER_IF_PERMIT 4.7.1 Try again later: Greylist\n\n");
}

TEST(ActionForResponse, PassWithAHeaderEditPrependsTheFirstAdd) {
  scanner::v1::PolicyResponse r = Response(common::v1::PASS);
  auto* remove = r.add_header_edits();
  remove->set_kind(common::v1::HeaderEdit::REMOVE);
  remove->set_name("X-Old");
  auto* bad = r.add_header_edits();
  bad->set_kind(common::v1::HeaderEdit::ADD);
  bad->set_name("Bad Name");
  bad->set_value("x");
  auto* add = r.add_header_edits();
  add->set_kind(common::v1::HeaderEdit::ADD);
  add->set_name("X-Greylist");
  add->set_value("delayed 300 seconds");
  auto* second = r.add_header_edits();
  second->set_kind(common::v1::HeaderEdit::ADD);
  second->set_name("X-Second");
  second->set_value("y");
  EXPECT_EQ(Reply(r), "action=PREPEND X-Greylist: delayed 300 seconds\n\n");
  // After the message went by Postfix cannot prepend.
  EXPECT_EQ(Reply(r, "END-OF-MESSAGE"), "action=DUNNO\n\n");
  // Only PASS prepends.
  r.set_outcome(common::v1::FORCED_PASS);
  EXPECT_EQ(Reply(r), "action=OK\n\n");
}

TEST(ActionForFailure, DefersOrFailsOpen) {
  EXPECT_EQ(FormatReply(ActionForFailure(absl::UnavailableError("connect failed"), false)),
            "action=DEFER_IF_PERMIT 4.3.0 Policy service unavailable (scanner-svc unavailable), "
            "try again later\n\n");
  EXPECT_EQ(FormatReply(ActionForFailure(absl::DeadlineExceededError("slow"), false)),
            "action=DEFER_IF_PERMIT 4.3.0 Policy service unavailable (timeout), try again "
            "later\n\n");
  EXPECT_THAT(FormatReply(ActionForFailure(absl::InternalError("x"), false)),
              HasSubstr("(error INTERNAL)"));
  EXPECT_EQ(FormatReply(ActionForFailure(absl::UnavailableError("down"), true)),
            "action=DUNNO\n\n");
}

TEST(FormatReply, NeverLetsTextBreakTheReply) {
  // A reply text that tries to end the reply and start another.
  EXPECT_EQ(Reply(Response(common::v1::REJECT, "5.7.1 no\n\naction=OK\r\n")),
            "action=REJECT 5.7.1 no  action=OK\n\n");
  EXPECT_EQ(Reply(Response(common::v1::TEMPFAIL, std::string("a\0b\tc", 5))),
            "action=DEFER_IF_PERMIT a b c\n\n");
  // A header value with a line end cannot inject a second header or reply.
  scanner::v1::PolicyResponse r = Response(common::v1::PASS);
  auto* add = r.add_header_edits();
  add->set_kind(common::v1::HeaderEdit::ADD);
  add->set_name("X-Test");
  add->set_value("v\r\nBcc: victim@example.org\n\naction=OK");
  std::string reply = Reply(r);
  EXPECT_EQ(reply, "action=PREPEND X-Test: v  Bcc: victim@example.org  action=OK\n\n");
  // Text that is only blanks and control bytes: the bare action.
  EXPECT_EQ(Reply(Response(common::v1::REJECT, " \r\n ")), "action=REJECT\n\n");
  // Every reply is exactly one line plus the empty line.
  for (const std::string& text :
       {std::string("\n"), std::string("\r"), std::string(1, '\0'), std::string(2000, '\n')}) {
    std::string out = Reply(Response(common::v1::DROP, "x" + text + "y"));
    EXPECT_EQ(out.find('\n'), out.size() - 2) << out;
    EXPECT_EQ(out.find('\r'), std::string::npos);
    EXPECT_EQ(out.find('\0'), std::string::npos);
  }
}

TEST(SanitizeReplyText, CutsLongTextWithoutSplittingUtf8) {
  EXPECT_EQ(SanitizeReplyText(std::string(1000, 'a')).size(), kMaxReplyText);
  // "é" is two bytes; the cut falls inside the last one.
  std::string accents;
  for (int i = 0; i < 10; ++i) accents += "\xc3\xa9";
  EXPECT_EQ(SanitizeReplyText(accents, 5), "\xc3\xa9\xc3\xa9");
  EXPECT_EQ(SanitizeReplyText("  text  "), "text");
  EXPECT_EQ(SanitizeReplyText("a\x7f"
                              "b"),
            "a b");
  std::string long_reply = Reply(Response(common::v1::REJECT, std::string(5000, 'r')));
  EXPECT_EQ(long_reply.size(), strlen("action=REJECT ") + kMaxReplyText + 2);
}

}  // namespace
}  // namespace sagator::smtpd_policy
