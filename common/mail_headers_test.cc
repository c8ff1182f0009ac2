#include "common/mail_headers.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace sagator {
namespace {

using common::v1::HeaderEdit;

HeaderEdit Edit(HeaderEdit::Kind kind, std::string name, std::string value = "") {
  HeaderEdit e;
  e.set_kind(kind);
  e.set_name(std::move(name));
  e.set_value(std::move(value));
  return e;
}

TEST(FindHeaderBounds, FindsEmptyLineWithLf) {
  HeaderBounds b = FindHeaderBounds("A: 1\nB: 2\n\nbody\n");
  EXPECT_EQ(b.header_size, 10u);
  EXPECT_EQ(b.body_offset, 11u);
  EXPECT_TRUE(b.has_separator);
}

TEST(FindHeaderBounds, FindsEmptyLineWithCrlf) {
  HeaderBounds b = FindHeaderBounds("A: 1\r\nB: 2\r\n\r\nbody\r\n");
  EXPECT_EQ(b.header_size, 12u);
  EXPECT_EQ(b.body_offset, 14u);
  EXPECT_TRUE(b.has_separator);
}

TEST(FindHeaderBounds, WholeMessageIsHeaderWithoutSeparator) {
  HeaderBounds b = FindHeaderBounds("A: 1\nB: 2");
  EXPECT_EQ(b.header_size, 9u);
  EXPECT_EQ(b.body_offset, 9u);
  EXPECT_FALSE(b.has_separator);
}

TEST(FindHeaderBounds, MessageStartingWithEmptyLineHasEmptyHeader) {
  HeaderBounds b = FindHeaderBounds("\nbody");
  EXPECT_EQ(b.header_size, 0u);
  EXPECT_EQ(b.body_offset, 1u);
  EXPECT_TRUE(b.has_separator);
}

TEST(DetectLineEnding, UsesFirstLine) {
  EXPECT_EQ(DetectLineEnding("A: 1\r\n\r\n"), "\r\n");
  EXPECT_EQ(DetectLineEnding("A: 1\n\n"), "\n");
  EXPECT_EQ(DetectLineEnding("no line end"), "\n");
  EXPECT_EQ(DetectLineEnding(""), "\n");
}

TEST(ApplyHeaderEdits, AddsAtTopInGivenOrder) {
  std::string out = ApplyHeaderEdits(
      "Subject: hi\n\nbody\n",
      std::vector<HeaderEdit>{Edit(HeaderEdit::ADD, "X-Sagator-ID", "id1"),
                              Edit(HeaderEdit::ADD, "X-Sagator-Scanner", "scanner")});
  EXPECT_EQ(out, "X-Sagator-ID: id1\nX-Sagator-Scanner: scanner\nSubject: hi\n\nbody\n");
}

TEST(ApplyHeaderEdits, KeepsCrlf) {
  std::string out =
      ApplyHeaderEdits("Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\nline\r\n",
                       std::vector<HeaderEdit>{Edit(HeaderEdit::ADD, "X-A", "1"),
                                               Edit(HeaderEdit::REPLACE, "subject", "new")});
  EXPECT_EQ(out, "X-A: 1\r\nsubject: new\r\nFrom: a@b\r\n\r\nbody\r\nline\r\n");
}

TEST(ApplyHeaderEdits, ReplacesEveryFieldWithFoldedLines) {
  std::string msg =
      "Received: from a\n\tby b\nX-Spam: old\n  folded more\nReceived: from c\n"
      "x-spam: second\n\nbody X-Spam: not a header\n";
  std::string out =
      ApplyHeaderEdits(msg, std::vector<HeaderEdit>{Edit(HeaderEdit::REPLACE, "X-SPAM", "yes")});
  EXPECT_EQ(out,
            "Received: from a\n\tby b\nX-SPAM: yes\nReceived: from c\nX-SPAM: yes\n\n"
            "body X-Spam: not a header\n");
}

TEST(ApplyHeaderEdits, ReplaceAddsWhenMissing) {
  std::string out = ApplyHeaderEdits(
      "Subject: hi\n\nbody", std::vector<HeaderEdit>{Edit(HeaderEdit::ADD, "X-First", "1"),
                                                     Edit(HeaderEdit::REPLACE, "X-Status", "v")});
  EXPECT_EQ(out, "X-First: 1\nX-Status: v\nSubject: hi\n\nbody");
}

TEST(ApplyHeaderEdits, RemovesEveryFieldWithContinuations) {
  std::string msg = "A: 1\nX-Old: a\n b\n\tc\nB: 2\nx-old: again\n\nX-Old: body\n";
  std::string out =
      ApplyHeaderEdits(msg, std::vector<HeaderEdit>{Edit(HeaderEdit::REMOVE, "X-Old")});
  EXPECT_EQ(out, "A: 1\nB: 2\n\nX-Old: body\n");
}

TEST(ApplyHeaderEdits, RemoveThenAddKeepsOrder) {
  std::string out = ApplyHeaderEdits(
      "X-S: forged\nSubject: s\n\nb\n",
      std::vector<HeaderEdit>{Edit(HeaderEdit::ADD, "X-1", "a"), Edit(HeaderEdit::REMOVE, "X-S"),
                              Edit(HeaderEdit::ADD, "X-2", "b")});
  EXPECT_EQ(out, "X-1: a\nX-2: b\nSubject: s\n\nb\n");
}

TEST(ApplyHeaderEdits, RemoveOfAddedFieldAdjustsTop) {
  std::string out = ApplyHeaderEdits(
      "Subject: s\n\nb\n",
      std::vector<HeaderEdit>{Edit(HeaderEdit::ADD, "X-1", "a"), Edit(HeaderEdit::REMOVE, "x-1"),
                              Edit(HeaderEdit::ADD, "X-2", "b")});
  EXPECT_EQ(out, "X-2: b\nSubject: s\n\nb\n");
}

TEST(ApplyHeaderEdits, MessageWithoutBody) {
  // Separator present, body empty.
  EXPECT_EQ(
      ApplyHeaderEdits("Subject: s\n\n", std::vector<HeaderEdit>{Edit(HeaderEdit::ADD, "X", "1")}),
      "X: 1\nSubject: s\n\n");
}

TEST(ApplyHeaderEdits, MessageWithoutSeparator) {
  EXPECT_EQ(ApplyHeaderEdits("Subject: s\nFrom: f\n",
                             std::vector<HeaderEdit>{Edit(HeaderEdit::ADD, "X", "1"),
                                                     Edit(HeaderEdit::REPLACE, "From", "g")}),
            "X: 1\nSubject: s\nFrom: g\n");
  // The last line without a line end gets one when it is replaced or followed.
  EXPECT_EQ(ApplyHeaderEdits("Subject: s\r\nFrom: f",
                             std::vector<HeaderEdit>{Edit(HeaderEdit::REPLACE, "From", "g")}),
            "Subject: s\r\nFrom: g\r\n");
  EXPECT_EQ(
      ApplyHeaderEdits("Subject: s", std::vector<HeaderEdit>{Edit(HeaderEdit::ADD, "X", "1")}),
      "X: 1\nSubject: s\n");
}

TEST(ApplyHeaderEdits, EmptyMessageAndBodyOnlyMessage) {
  EXPECT_EQ(ApplyHeaderEdits("", std::vector<HeaderEdit>{Edit(HeaderEdit::ADD, "X", "1")}),
            "X: 1\n");
  EXPECT_EQ(
      ApplyHeaderEdits("\r\nbody\r\n", std::vector<HeaderEdit>{Edit(HeaderEdit::ADD, "X", "1")}),
      "X: 1\r\n\r\nbody\r\n");
}

TEST(ApplyHeaderEdits, KeepsLinesWithoutNameAndObsoleteSpaceBeforeColon) {
  std::string msg = "From sender Mon Jan 1 00:00:00 2024\nSubject : old\n\nb";
  EXPECT_EQ(
      ApplyHeaderEdits(msg, std::vector<HeaderEdit>{Edit(HeaderEdit::REPLACE, "Subject", "new")}),
      "From sender Mon Jan 1 00:00:00 2024\nSubject: new\n\nb");
}

TEST(ApplyHeaderEdits, SkipsInvalidEdits) {
  HeaderEdit unspecified = Edit(HeaderEdit::KIND_UNSPECIFIED, "X", "1");
  std::string msg = "A: 1\n\nb";
  EXPECT_EQ(ApplyHeaderEdits(
                msg, std::vector<HeaderEdit>{unspecified, Edit(HeaderEdit::ADD, "Bad Name", "1"),
                                             Edit(HeaderEdit::ADD, "Bad:Name", "1"),
                                             Edit(HeaderEdit::ADD, "", "1")}),
            msg);
}

TEST(ApplyHeaderEdits, ValueCannotInjectFields) {
  EXPECT_EQ(ApplyHeaderEdits("A: 1\n\nb", std::vector<HeaderEdit>{Edit(HeaderEdit::ADD, "X",
                                                                       "v\r\nBcc: evil@x")}),
            "X: v  Bcc: evil@x\nA: 1\n\nb");
}

TEST(ApplyHeaderEdits, AcceptsRepeatedPtrField) {
  google::protobuf::RepeatedPtrField<HeaderEdit> edits;
  *edits.Add() = Edit(HeaderEdit::ADD, "X", "1");
  EXPECT_EQ(ApplyHeaderEdits("A: 1\n\nb", edits), "X: 1\nA: 1\n\nb");
}

TEST(FormatHeaderField, FoldsLongValuesBeforeWhitespace) {
  std::string value;
  for (int i = 0; i < 20; ++i) value += "word" + std::to_string(i) + " ";
  std::string f = FormatHeaderField("X-Sagator-Scanner", value, "\r\n");
  size_t start = 0;
  int lines = 0;
  while (start < f.size()) {
    size_t end = f.find("\r\n", start);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end - start, 78u);
    if (lines > 0) EXPECT_EQ(f[start], ' ');
    start = end + 2;
    ++lines;
  }
  EXPECT_GT(lines, 1);
  std::string unfolded;
  ASSERT_TRUE(FindHeaderValue(f + "\r\n", "x-sagator-scanner", &unfolded));
  EXPECT_EQ(unfolded + " ", value);
}

TEST(FormatHeaderField, KeepsOverlongWordWhole) {
  std::string word(120, 'a');
  EXPECT_EQ(FormatHeaderField("X", word, "\n"), "X: " + word + "\n");
  EXPECT_EQ(FormatHeaderField("X", "", "\n"), "X:\n");
}

TEST(FindHeaderValue, UnfoldsAndMatchesCaseInsensitively) {
  std::string v;
  ASSERT_TRUE(FindHeaderValue("A: 1\nsubject: hello\n  world\n\nSubject: body", "SUBJECT", &v));
  EXPECT_EQ(v, "hello  world");
  EXPECT_FALSE(FindHeaderValue("A: 1\n\nSubject: body", "Subject", &v));
}

TEST(ExpandVariables, ExpandsKnownNamesOnly) {
  EXPECT_EQ(ExpandVariables("a %(X)s b %(Y)s %(X", {{"X", "1"}}), "a 1 b %(Y)s %(X");
}

TEST(UnfoldLine, JoinsFoldedLinesWithOneSpace) {
  EXPECT_EQ(UnfoldLine("a;\r\n\tb;\n c\rd"), "a; b; c d");
  EXPECT_EQ(UnfoldLine("Evil\r\nBcc: x"), "Evil Bcc: x");
}

TEST(CrlfLines, MakesEveryLineEndCrlf) {
  EXPECT_EQ(CrlfLines("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n");
}

}  // namespace
}  // namespace sagator
