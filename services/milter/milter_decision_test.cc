#include "services/milter/milter_decision.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/mail_headers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sagator::milter {
namespace {

using Action = MilterReply::Action;
using common::v1::HeaderEdit;
using Kind = HeaderOp::Kind;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

HeaderEdit Edit(HeaderEdit::Kind kind, std::string name, std::string value = "") {
  HeaderEdit e;
  e.set_kind(kind);
  e.set_name(std::move(name));
  e.set_value(std::move(value));
  return e;
}

// A decision like ScanAndDecide's for a clean (or detected) message.
FilterDecision Decision(int code, std::string detection = "", double level = 0) {
  FilterDecision d;
  d.code = code;
  d.level = level;
  d.detection = detection;
  d.text = detection.empty() ? "OK" : detection;
  d.detected = level >= 1.0 || code == 550 || code == 551;
  d.header_edits.push_back(Edit(HeaderEdit::REMOVE, "X-Sagator-Status"));
  d.header_edits.push_back(Edit(HeaderEdit::ADD, "X-Sagator-ID", "20240101-x@test"));
  d.header_edits.push_back(Edit(HeaderEdit::ADD, "X-Sagator-Scanner", "test at test"));
  if (d.detected) {
    d.header_edits.push_back(
        Edit(HeaderEdit::REPLACE, "X-Sagator-Status", absl::StrCat(detection, " ", level, ".00")));
  }
  return d;
}

// Applies ops the way an MTA does. With `deleted_fields_count` (Sendmail) a deleted
// field still takes up its per-name index; without it (Postfix) it does not.
std::vector<HeaderField> ApplyOps(std::vector<HeaderField> header, const std::vector<HeaderOp>& ops,
                                  bool deleted_fields_count) {
  struct Slot {
    HeaderField field;
    bool deleted = false;
  };
  std::vector<Slot> slots;
  for (HeaderField& f : header) slots.push_back({std::move(f), false});
  for (const HeaderOp& op : ops) {
    switch (op.kind) {
      case Kind::kChange:
      case Kind::kDelete: {
        int seen = 0;
        for (Slot& s : slots) {
          if (!absl::EqualsIgnoreCase(s.field.name, op.name)) continue;
          if (s.deleted && !deleted_fields_count) continue;
          if (++seen != op.index) continue;
          EXPECT_FALSE(s.deleted) << "op on a deleted field: " << op.name << " " << op.index;
          if (op.kind == Kind::kDelete) {
            s.deleted = true;
          } else {
            s.field.value = op.value;
          }
          break;
        }
        EXPECT_EQ(seen, op.index) << "no field " << op.name << " " << op.index;
        break;
      }
      case Kind::kInsertTop:
        slots.insert(slots.begin(), {{op.name, op.value}, false});
        break;
      case Kind::kAppend:
        slots.push_back({{op.name, op.value}, false});
        break;
    }
  }
  std::vector<HeaderField> out;
  for (Slot& s : slots) {
    if (!s.deleted) out.push_back(std::move(s.field));
  }
  return out;
}

std::string Lines(const std::vector<HeaderField>& fields) {
  std::string out;
  for (const HeaderField& f : fields) absl::StrAppend(&out, f.name, ": ", f.value, "\r\n");
  return out;
}

std::vector<HeaderField> Wanted(const std::string& received, const std::vector<HeaderEdit>& e) {
  std::string edited = ApplyHeaderEdits(received + "\r\n", e);
  return ParseHeaderFields(edited.substr(0, FindHeaderBounds(edited).header_size));
}

// Field names compare without regard to case, as MTAs match them.
void ExpectSameHeader(const std::vector<HeaderField>& got, const std::vector<HeaderField>& want) {
  ASSERT_EQ(got.size(), want.size()) << Lines(got) << "--- want\n" << Lines(want);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(absl::EqualsIgnoreCase(got[i].name, want[i].name)) << i << ": " << got[i].name;
    EXPECT_EQ(got[i].value, want[i].value) << i;
  }
}

TEST(ParseHeaderFields, SplitsFieldsAndKeepsFoldsWithBareLf) {
  std::vector<HeaderField> f = ParseHeaderFields(
      "Subject: hello\r\nReceived: from a\r\n\tby b\r\nX-Empty:\r\nbroken line\r\nTo:  b@x\n");
  EXPECT_THAT(
      f, ElementsAre(HeaderField{"Subject", "hello"}, HeaderField{"Received", "from a\n\tby b"},
                     HeaderField{"X-Empty", ""}, HeaderField{"To", "b@x"}));
}

TEST(PlanHeaderOps, NothingForTheSameHeader) {
  std::vector<HeaderField> h = {{"Subject", "s"}, {"From", "a"}};
  EXPECT_THAT(PlanHeaderOps(h, h), IsEmpty());
}

TEST(PlanHeaderOps, AddedFieldsGoToTheTopInOrder) {
  std::vector<HeaderField> received = {{"Subject", "s"}};
  std::vector<HeaderField> wanted = {{"X-A", "1"}, {"X-B", "2"}, {"Subject", "s"}};
  std::vector<HeaderOp> ops = PlanHeaderOps(received, wanted);
  // The last one first: each goes above the previous.
  EXPECT_THAT(ops, ElementsAre(HeaderOp{Kind::kInsertTop, "X-B", 0, "2"},
                               HeaderOp{Kind::kInsertTop, "X-A", 0, "1"}));
  ExpectSameHeader(ApplyOps(received, ops, false), wanted);
}

TEST(PlanHeaderOps, ReplaceIsAChangeWithThePerNameIndex) {
  std::vector<HeaderField> received = {
      {"Received", "r1"}, {"Subject", "one"}, {"Received", "r2"}, {"subject", "two"}};
  std::vector<HeaderField> wanted = {
      {"Received", "r1"}, {"Subject", "[SPAM] x"}, {"Received", "r2"}, {"Subject", "[SPAM] x"}};
  std::vector<HeaderOp> ops = PlanHeaderOps(received, wanted);
  EXPECT_THAT(ops, ElementsAre(HeaderOp{Kind::kChange, "Subject", 1, "[SPAM] x"},
                               HeaderOp{Kind::kChange, "subject", 2, "[SPAM] x"}));
}

TEST(PlanHeaderOps, RepeatedFieldsAreDeletedFromTheLast) {
  std::vector<HeaderField> received = {{"X-Sagator-Status", "a"},
                                       {"Subject", "s"},
                                       {"X-Sagator-Status", "b"},
                                       {"x-sagator-status", "c"}};
  std::vector<HeaderField> wanted = {{"Subject", "s"}};
  std::vector<HeaderOp> ops = PlanHeaderOps(received, wanted);
  EXPECT_THAT(ops, ElementsAre(HeaderOp{Kind::kDelete, "x-sagator-status", 3, ""},
                               HeaderOp{Kind::kDelete, "X-Sagator-Status", 2, ""},
                               HeaderOp{Kind::kDelete, "X-Sagator-Status", 1, ""}));
  ExpectSameHeader(ApplyOps(received, ops, false), wanted);
  ExpectSameHeader(ApplyOps(received, ops, true), wanted);
}

TEST(PlanHeaderOps, FieldsAfterEveryKeptOneAreAppended) {
  std::vector<HeaderField> received = {{"Subject", "s"}};
  std::vector<HeaderField> wanted = {{"Subject", "s"}, {"X-Tail", "t"}};
  EXPECT_THAT(PlanHeaderOps(received, wanted),
              ElementsAre(HeaderOp{Kind::kAppend, "X-Tail", 0, "t"}));
}

// Every combination of edits the verdicts produce, on headers with repeated names:
// the ops, applied by either kind of MTA, give ApplyHeaderEdits's result.
TEST(PlanHeaderOps, MatchesApplyHeaderEditsForRandomEdits) {
  std::mt19937 rng(42);
  const std::vector<std::string> names = {"Subject", "X-Sagator-Status", "Received", "X-Spam",
                                          "To"};
  for (int round = 0; round < 500; ++round) {
    std::string received;
    int fields = rng() % 7;
    for (int i = 0; i < fields; ++i) {
      absl::StrAppend(&received, names[rng() % names.size()], ": v", rng() % 3, "\r\n");
    }
    std::vector<HeaderEdit> edits;
    int n = rng() % 5;
    for (int i = 0; i < n; ++i) {
      auto kind = static_cast<HeaderEdit::Kind>(1 + rng() % 3);
      std::string name = names[rng() % names.size()];
      if (rng() % 2) name = absl::AsciiStrToLower(name);
      edits.push_back(Edit(kind, name, absl::StrCat("new", rng() % 3)));
    }
    std::vector<HeaderField> got = ParseHeaderFields(received);
    std::vector<HeaderField> want = Wanted(received, edits);
    std::vector<HeaderOp> ops = PlanHeaderOps(got, want);
    std::string trace = absl::StrCat("round ", round, "\n", received, "--- edits\n");
    for (const HeaderEdit& e : edits)
      absl::StrAppend(&trace, e.kind(), " ", e.name(), " ", e.value(), "\n");
    absl::StrAppend(&trace, "--- want\n", Lines(want), "--- ops\n");
    for (const HeaderOp& op : ops) {
      absl::StrAppend(&trace, static_cast<int>(op.kind), " ", op.name, " ", op.index, " ", op.value,
                      "\n");
    }
    SCOPED_TRACE(trace);
    ExpectSameHeader(ApplyOps(got, ops, false), want);
    ExpectSameHeader(ApplyOps(got, ops, true), want);
  }
}

TEST(SanitizeReplyText, DoublesPercentAndDropsControlCharacters) {
  EXPECT_EQ(SanitizeReplyText("100% bad\r\nnext\tline"), "100%% bad  next line");
  EXPECT_EQ(SanitizeReplyText(std::string(1000, 'x')).size(), kMaxReplyText);
  EXPECT_EQ(SanitizeReplyText(std::string(kMaxReplyText - 1, 'x') + "%").size(), kMaxReplyText - 1);
}

TEST(ReplyForDecision, CleanMailIsAcceptedWithTheVerdictHeadersAtTheTop) {
  MilterReply r = ReplyForDecision(Decision(250), "Subject: hi\r\nFrom: a@x\r\n");
  EXPECT_EQ(r.action, Action::kAccept);
  EXPECT_EQ(r.rcode, "");
  EXPECT_FALSE(r.replace_body);
  EXPECT_THAT(r.header_ops,
              ElementsAre(HeaderOp{Kind::kInsertTop, "X-Sagator-Scanner", 0, "test at test"},
                          HeaderOp{Kind::kInsertTop, "X-Sagator-ID", 0, "20240101-x@test"}));
}

TEST(ReplyForDecision, ForgedStatusIsDeleted) {
  MilterReply r = ReplyForDecision(
      Decision(250), "X-Sagator-Status: Fake 9.00\r\nSubject: s\r\nX-Sagator-Status: again\r\n");
  EXPECT_THAT(r.header_ops,
              ElementsAre(HeaderOp{Kind::kDelete, "X-Sagator-Status", 2, ""},
                          HeaderOp{Kind::kDelete, "X-Sagator-Status", 1, ""},
                          HeaderOp{Kind::kInsertTop, "X-Sagator-Scanner", 0, "test at test"},
                          HeaderOp{Kind::kInsertTop, "X-Sagator-ID", 0, "20240101-x@test"}));
}

TEST(ReplyForDecision, ForcedPassOfDetectedMailAddsTheStatus) {
  MilterReply r = ReplyForDecision(Decision(251, "Forced", 1.5), "Subject: s\r\n");
  EXPECT_EQ(r.action, Action::kAccept);
  EXPECT_THAT(r.header_ops, ::testing::Contains(HeaderOp{Kind::kInsertTop, "X-Sagator-Status", 0,
                                                         "Forced 1.5.00"}));
}

TEST(ReplyForDecision, SubjectRewriteIsAChangeInPlace) {
  FilterDecision d = Decision(250);
  d.header_edits.push_back(Edit(HeaderEdit::REPLACE, "Subject", "[SPAM] hi"));
  MilterReply r = ReplyForDecision(d, "From: a\r\nSubject: hi\r\n");
  EXPECT_THAT(r.header_ops,
              ::testing::Contains(HeaderOp{Kind::kChange, "Subject", 1, "[SPAM] hi"}));
}

TEST(ReplyForDecision, RejectNamesTheDetection) {
  MilterReply r = ReplyForDecision(Decision(550, "EICAR-Test", 1), "Subject: v\r\n");
  EXPECT_EQ(r.action, Action::kReject);
  EXPECT_EQ(r.rcode, "550");
  EXPECT_EQ(r.xcode, "5.7.1");
  EXPECT_EQ(r.text, "Rejected: EICAR-Test");
  EXPECT_THAT(r.header_ops, IsEmpty());
  // scanner-svc's own reply text wins when it has a 5.x.x code.
  FilterDecision d = Decision(550, "Eicar-Test-Signature", 1);
  d.reply_text = "5.7.0 Virus found: Eicar-Test-Signature";
  r = ReplyForDecision(d, "");
  EXPECT_EQ(r.xcode, "5.7.0");
  EXPECT_EQ(r.text, "Virus found: Eicar-Test-Signature");
  // A reply text of the wrong class is not used.
  d.reply_text = "2.0.0 Ok";
  EXPECT_EQ(ReplyForDecision(d, "").text, "Rejected: Eicar-Test-Signature");
}

TEST(ReplyForDecision, DropIsDiscard) {
  MilterReply r = ReplyForDecision(Decision(551, "Worm.Fake", 2), "Subject: v\r\n");
  EXPECT_EQ(r.action, Action::kDiscard);
  EXPECT_EQ(r.rcode, "");
}

TEST(ReplyForDecision, FailuresAndTempfailVerdictsAreTempfail) {
  FilterDecision failed = DecideOnScan(absl::UnavailableError("connection refused"));
  MilterReply r = ReplyForDecision(failed, "Subject: s\r\n");
  EXPECT_EQ(r.action, Action::kTempfail);
  EXPECT_EQ(r.rcode, "451");
  EXPECT_EQ(r.xcode, "4.3.0");
  EXPECT_THAT(r.text, HasSubstr("scanner unavailable"));
  EXPECT_THAT(r.header_ops, IsEmpty());

  ScanReply tempfail;
  tempfail.verdict.set_outcome(common::v1::TEMPFAIL);
  tempfail.verdict.set_reply_text("4.3.2 Engine busy, try again later");
  r = ReplyForDecision(DecideOnScan(tempfail), "");
  EXPECT_EQ(r.xcode, "4.3.2");
  EXPECT_EQ(r.text, "Engine busy, try again later");

  r = ReplyForDecision(DecideOnScan(ScanReply{}), "");
  EXPECT_EQ(r.action, Action::kTempfail);
  EXPECT_THAT(r.text, HasSubstr("scanner-svc gave no outcome"));
}

TEST(ReplyForDecision, RewrittenMessageReplacesBodyAndReconcilesTheHeader) {
  FilterDecision d = Decision(250);
  d.message_rewritten = true;
  d.rewritten_message = "Subject: rewritten\nX-New: n\n\nnew body\nline 2\n";
  MilterReply r = ReplyForDecision(d, "Subject: original\r\nFrom: a\r\n");
  EXPECT_EQ(r.action, Action::kAccept);
  EXPECT_TRUE(r.replace_body);
  EXPECT_EQ(r.body, "new body\r\nline 2\r\n");
  std::vector<HeaderField> after =
      ApplyOps(ParseHeaderFields("Subject: original\r\nFrom: a\r\n"), r.header_ops, false);
  ExpectSameHeader(after, {{"X-Sagator-ID", "20240101-x@test"},
                           {"X-Sagator-Scanner", "test at test"},
                           {"Subject", "rewritten"},
                           {"X-New", "n"}});
}

TEST(AcceptUnscanned, MarksTheMailAndDropsForgedStatus) {
  MilterReply r = AcceptUnscanned("X-Sagator-Status: forged\r\nSubject: s\r\n", "scan timeout");
  EXPECT_EQ(r.action, Action::kAccept);
  EXPECT_THAT(r.header_ops,
              ElementsAre(HeaderOp{Kind::kDelete, "X-Sagator-Status", 1, ""},
                          HeaderOp{Kind::kInsertTop, "X-Sagator-Not-Scanned", 0, "scan timeout"}));
}

TEST(ReplyForTooLarge, FollowsTheNotScannedOutcome) {
  MilterReply pass = ReplyForTooLarge(common::v1::FORCED_PASS, "Subject: s\r\n", 5000, 1024);
  EXPECT_EQ(pass.action, Action::kAccept);
  EXPECT_THAT(pass.header_ops, ElementsAre(HeaderOp{Kind::kInsertTop, "X-Sagator-Not-Scanned", 0,
                                                    "too large (over 1024 bytes)"}));
  EXPECT_EQ(ReplyForTooLarge(common::v1::PASS, "", 5000, 1024).action, Action::kAccept);
  MilterReply reject = ReplyForTooLarge(common::v1::REJECT, "", 5000, 1024);
  EXPECT_EQ(reject.action, Action::kReject);
  EXPECT_EQ(reject.rcode, "552");
  EXPECT_EQ(reject.xcode, "5.3.4");
  EXPECT_THAT(reject.text, HasSubstr("too large"));
  MilterReply tempfail = ReplyForTooLarge(common::v1::TEMPFAIL, "", 5000, 1024);
  EXPECT_EQ(tempfail.action, Action::kTempfail);
  EXPECT_EQ(tempfail.rcode, "451");
  EXPECT_EQ(ReplyForTooLarge(common::v1::DROP, "", 5000, 1024).action, Action::kDiscard);
}

TEST(ReplyForPolicy, MapsOutcomesAtRcpt) {
  scanner::v1::PolicyResponse p;
  p.set_outcome(common::v1::PASS);
  EXPECT_EQ(ReplyForPolicy(p, false).action, Action::kContinue);
  p.set_outcome(common::v1::FORCED_PASS);
  EXPECT_EQ(ReplyForPolicy(p, false).action, Action::kContinue);

  p.set_outcome(common::v1::REJECT);
  p.set_detection("Blacklisted");
  MilterReply r = ReplyForPolicy(p, false);
  EXPECT_EQ(r.action, Action::kReject);
  EXPECT_EQ(r.rcode, "550");
  EXPECT_EQ(r.xcode, "5.7.1");
  EXPECT_EQ(r.text, "Recipient rejected: Blacklisted");
  p.set_outcome(common::v1::DROP);
  p.set_reply_text("no such user here");
  r = ReplyForPolicy(p, false);
  EXPECT_EQ(r.action, Action::kReject);
  EXPECT_EQ(r.text, "no such user here");

  p.set_outcome(common::v1::TEMPFAIL);
  p.set_reply_text("4.2.0 Greylisted, see http://example.org/grey");
  r = ReplyForPolicy(p, false);
  EXPECT_EQ(r.action, Action::kTempfail);
  EXPECT_EQ(r.rcode, "451");
  EXPECT_EQ(r.xcode, "4.2.0");
  EXPECT_EQ(r.text, "Greylisted, see http://example.org/grey");
  p.set_reply_text("");
  EXPECT_EQ(ReplyForPolicy(p, false).xcode, "4.7.1");

  r = ReplyForPolicy(absl::DeadlineExceededError("slow"), false);
  EXPECT_EQ(r.action, Action::kTempfail);
  EXPECT_EQ(r.xcode, "4.7.1");
  EXPECT_THAT(r.text, HasSubstr("scan timeout"));
  EXPECT_EQ(ReplyForPolicy(absl::UnavailableError("down"), true).action, Action::kContinue);
}

}  // namespace
}  // namespace sagator::milter
