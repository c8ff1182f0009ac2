// QuarantineStore on both back ends: what is stored comes back byte for byte, every
// search condition narrows as documented, paging loses and repeats nothing, and
// deletion and expiry remove every trace.
#include "quarantine-svc/quarantine_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/harness/fresh_database.h"

namespace sagator::quarantine {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class QuarantineStoreTest : public ::testing::TestWithParam<sql::Backend> {
 protected:
  void SetUp() override {
    db_ = harness::FreshDatabase(GetParam(), /*durable=*/true);
    ASSERT_NE(db_, nullptr);
    auto s = QuarantineStore::Open(db_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  v1::Entry MakeEntry(const std::string& sender, std::vector<std::string> rcpts,
                      const std::string& detection) {
    v1::Entry e;
    e.set_sagator_id("20261126-101010-0001-00042-abcdef@test");
    e.mutable_envelope()->set_sender(sender);
    for (auto& r : rcpts) e.mutable_envelope()->add_recipients(r);
    e.mutable_envelope()->mutable_client()->set_address("192.0.2.7");
    e.mutable_envelope()->mutable_client()->set_helo("mx.example.net");
    e.set_detection(detection);
    e.set_level(1.25);
    e.set_outcome(common::v1::DROP);
    e.set_scanner_path("quarantine(libclam())");
    return e;
  }

  std::string Put(const v1::Entry& e, const std::string& message, absl::Time at) {
    auto id = store_->Store(e, message, at);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : "";
  }

  std::vector<std::string> Ids(const v1::ListRequest& req) {
    auto page = store_->List(req);
    EXPECT_TRUE(page.ok()) << page.status();
    std::vector<std::string> out;
    if (page.ok()) {
      for (const auto& e : page->entries()) out.push_back(e.id());
    }
    return out;
  }

  std::shared_ptr<sql::Database> db_;
  std::unique_ptr<QuarantineStore> store_;
  absl::Time t0_ = absl::FromUnixSeconds(1'800'000'000);
};

TEST_P(QuarantineStoreTest, StoresAndReturnsTheMessageByteForByte) {
  std::string message =
      "From: =?UTF-8?B?xb1vbGnEjWth?= <zolicka@example.org>\r\n"
      "Subject: =?ISO-8859-2?Q?=BElu=BBou=E8k=FD_k=F9=F2?=\r\n"
      "\r\n"
      "8-bit body: \xff\xfe\x80 and a NUL: ";
  message.push_back('\0');
  message += "\r\nend\r\n";
  std::string id = Put(MakeEntry("s@example.org", {"Bob@Example.NET"}, "Eicar"), message, t0_);
  EXPECT_TRUE(absl::StartsWith(id, "qm-20270115-")) << id;
  std::string back;
  auto e = store_->Get(id, &back);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(back, message);
  EXPECT_EQ(e->id(), id);
  EXPECT_EQ(e->subject(), "\xc5\xbelu\xc5\xa5ou\xc4\x8dk\xc3\xbd k\xc5\xaf\xc5\x88");  // žluťoučký kůň
  EXPECT_EQ(e->from(), "\xc5\xbdoli\xc4\x8dka <zolicka@example.org>");
  EXPECT_EQ(e->envelope().sender(), "s@example.org");
  EXPECT_THAT(e->envelope().recipients(), ElementsAre("Bob@Example.NET"));
  EXPECT_EQ(e->envelope().client().address(), "192.0.2.7");
  EXPECT_EQ(e->detection(), "Eicar");
  EXPECT_DOUBLE_EQ(e->level(), 1.25);
  EXPECT_EQ(e->outcome(), common::v1::DROP);
  EXPECT_EQ(e->size(), static_cast<int64_t>(message.size()));
  EXPECT_EQ(e->stored_at().seconds(), absl::ToUnixSeconds(t0_));
  EXPECT_EQ(e->scanner_path(), "quarantine(libclam())");
}

TEST_P(QuarantineStoreTest, RefusesAMessageWithoutRecipientsAndUnknownIds) {
  auto id = store_->Store(MakeEntry("s@example.org", {}, "X"), "Subject: x\r\n\r\n", t0_);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Get("qm-none", nullptr).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(QuarantineStoreTest, SearchesByEveryCondition) {
  std::string a = Put(MakeEntry("alice@example.org", {"u1@example.net"}, "Eicar-Test-Signature"),
                      "Subject: Invoice 100% paid\r\n\r\nx", t0_);
  std::string b = Put(MakeEntry("Bob@Example.org", {"u2@example.net", "U1@example.net"}, "SPAM"),
                      "Subject: cheap pills\r\n\r\nx", t0_ + absl::Minutes(1));
  std::string c = Put(MakeEntry("carol@example.org", {"u3@example.net"}, "Win.Trojan.X"),
                      "Subject: invoice_2026\r\n\r\nx", t0_ + absl::Minutes(2));
  v1::ListRequest all;
  EXPECT_THAT(Ids(all), ElementsAre(c, b, a));  // newest first

  v1::ListRequest by_rcpt;
  by_rcpt.add_recipients("u1@EXAMPLE.net");
  EXPECT_THAT(Ids(by_rcpt), ElementsAre(b, a));
  // A message to two of the asked-for addresses is listed once.
  by_rcpt.add_recipients("u2@example.net");
  EXPECT_THAT(Ids(by_rcpt), ElementsAre(b, a));

  v1::ListRequest by_sender;
  by_sender.set_sender("bob@example.ORG");
  EXPECT_THAT(Ids(by_sender), ElementsAre(b));

  v1::ListRequest by_subject;
  by_subject.set_subject_contains("INVOICE");
  EXPECT_THAT(Ids(by_subject), ElementsAre(c, a));
  // LIKE's own characters are literal.
  by_subject.set_subject_contains("100%");
  EXPECT_THAT(Ids(by_subject), ElementsAre(a));
  by_subject.set_subject_contains("e_2");
  EXPECT_THAT(Ids(by_subject), ElementsAre(c));
  by_subject.set_subject_contains("e%2");
  EXPECT_THAT(Ids(by_subject), IsEmpty());
  // Quotes are data, never SQL.
  by_subject.set_subject_contains("'; DROP TABLE quarantine_entries; --");
  EXPECT_THAT(Ids(by_subject), IsEmpty());
  EXPECT_EQ(Ids(all).size(), 3u);

  v1::ListRequest by_detection;
  by_detection.set_detection_contains("trojan");
  EXPECT_THAT(Ids(by_detection), ElementsAre(c));

  v1::ListRequest by_date;
  by_date.mutable_stored_after()->set_seconds(absl::ToUnixSeconds(t0_ + absl::Minutes(1)));
  by_date.mutable_stored_before()->set_seconds(absl::ToUnixSeconds(t0_ + absl::Minutes(2)));
  EXPECT_THAT(Ids(by_date), ElementsAre(b));
  by_date.add_recipients("u1@example.net");
  EXPECT_THAT(Ids(by_date), ElementsAre(b));

  v1::ListRequest by_id;
  by_id.set_id(a);
  EXPECT_THAT(Ids(by_id), ElementsAre(a));
  by_id.add_recipients("u3@example.net");  // a is not addressed to u3
  EXPECT_THAT(Ids(by_id), IsEmpty());

  auto page = store_->List(all);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(page->entries(1).envelope().recipients(),
              ElementsAre("u2@example.net", "U1@example.net"));
  EXPECT_EQ(page->entries(2).subject(), "Invoice 100% paid");
}

TEST_P(QuarantineStoreTest, PagesLoseAndRepeatNothing) {
  std::set<std::string> stored;
  // Several entries share a stored_at, so the id breaks ties.
  for (int i = 0; i < 23; ++i) {
    stored.insert(Put(MakeEntry("s@example.org", {"u@example.net"}, "V"), "Subject: s\r\n\r\nx",
                      t0_ + absl::Seconds(i / 4)));
  }
  for (bool by_recipient : {false, true}) {
    v1::ListRequest req;
    req.set_page_size(5);
    if (by_recipient) req.add_recipients("u@example.net");
    std::vector<std::string> seen;
    int pages = 0;
    int64_t last_at = INT64_MAX;
    do {
      auto page = store_->List(req);
      ASSERT_TRUE(page.ok()) << page.status();
      ++pages;
      EXPECT_LE(page->entries_size(), 5);
      for (const auto& e : page->entries()) {
        EXPECT_LE(e.stored_at().seconds(), last_at);
        last_at = e.stored_at().seconds();
        seen.push_back(e.id());
      }
      req.set_page_token(page->next_page_token());
    } while (!req.page_token().empty() && pages < 20);
    EXPECT_EQ(pages, 5);
    EXPECT_EQ(seen.size(), 23u);
    EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), stored);
  }
  v1::ListRequest bad;
  bad.set_page_token("not-a-token");
  EXPECT_EQ(store_->List(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(QuarantineStoreTest, KeepsTheReleaseHistory) {
  std::string id = Put(MakeEntry("s@example.org", {"u@example.net"}, "V"), "Subject: s\r\n\r\n",
                       t0_);
  v1::ReleaseRecord r;
  r.set_recipient("admin@example.net");
  r.set_code(250);
  r.set_text("2.0.0 Ok: queued");
  r.mutable_released_at()->set_seconds(absl::ToUnixSeconds(t0_) + 60);
  r.set_released_by("sqback");
  ASSERT_TRUE(store_->RecordReleases(id, {r}).ok());
  auto e = store_->Get(id, nullptr);
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(e->releases_size(), 1);
  EXPECT_EQ(e->releases(0).recipient(), "admin@example.net");
  EXPECT_EQ(e->releases(0).code(), 250);
  EXPECT_EQ(e->releases(0).released_by(), "sqback");
  auto page = store_->List(v1::ListRequest());
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->entries(0).releases_size(), 1);
}

TEST_P(QuarantineStoreTest, DeleteAndExpireRemoveEveryTrace) {
  std::string old1 = Put(MakeEntry("s@example.org", {"u@example.net"}, "V"), "Subject: 1\r\n\r\n",
                         t0_ - absl::Hours(48));
  std::string old2 = Put(MakeEntry("s@example.org", {"u@example.net"}, "V"), "Subject: 2\r\n\r\n",
                         t0_ - absl::Hours(25));
  std::string fresh = Put(MakeEntry("s@example.org", {"u@example.net"}, "V"),
                          "Subject: 3\r\n\r\n", t0_);
  std::string gone = Put(MakeEntry("s@example.org", {"v@example.net"}, "V"), "Subject: 4\r\n\r\n",
                         t0_);
  auto n = store_->Delete({gone, "qm-unknown"});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1);
  EXPECT_EQ(store_->Get(gone, nullptr).status().code(), absl::StatusCode::kNotFound);
  n = store_->Expire(t0_ - absl::Hours(24));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2);
  EXPECT_THAT(Ids(v1::ListRequest()), ElementsAre(fresh));
  for (const char* table : {"quarantine_recipients", "quarantine_messages"}) {
    auto rows = db_->Query(absl::StrCat("SELECT COUNT(*) FROM ", table), {});
    ASSERT_TRUE(rows.ok()) << rows.status();
    EXPECT_EQ(rows->front().integer(0), 1) << table;
  }
}

TEST_P(QuarantineStoreTest, SubstringSearchIsRightForCommonAndRareWords) {
  // Over 2000 matches makes a word "common" on SQLite, which then reads newest-first
  // instead of listing the index's matches: both ways must give the same answers.
  std::vector<std::string> common_ids, rare_ids;
  for (int i = 0; i < 2100; ++i) {
    bool rare = i % 700 == 3;
    std::string id = Put(MakeEntry("s@example.org", {"u@example.net"}, rare ? "Rare.X" : "Common.Y"),
                         absl::StrCat("Subject: ", rare ? "Zanzibar" : "Newsletter", " ", i,
                                      "\r\n\r\nx"),
                         t0_ + absl::Seconds(i));
    (rare ? rare_ids : common_ids).push_back(id);
  }
  v1::ListRequest req;
  req.set_subject_contains("newsletter");
  req.set_page_size(3);
  EXPECT_THAT(Ids(req), ElementsAre(common_ids[common_ids.size() - 1],
                                    common_ids[common_ids.size() - 2],
                                    common_ids[common_ids.size() - 3]));
  req.set_subject_contains("ZANZIBAR");
  req.set_page_size(10);
  EXPECT_THAT(Ids(req), ElementsAre(rare_ids[2], rare_ids[1], rare_ids[0]));
  v1::ListRequest det;
  det.set_detection_contains("common.");
  det.set_page_size(1);
  EXPECT_THAT(Ids(det), ElementsAre(common_ids.back()));
  det.set_detection_contains("rare.");
  det.set_page_size(10);
  EXPECT_THAT(Ids(det), ElementsAre(rare_ids[2], rare_ids[1], rare_ids[0]));
  // Short words (under a trigram) and deleted entries.
  det.set_detection_contains("x");
  EXPECT_EQ(Ids(det).size(), 3u);
  ASSERT_TRUE(store_->Delete({rare_ids[1]}).ok());
  req.set_subject_contains("zanzibar");
  EXPECT_THAT(Ids(req), ElementsAre(rare_ids[2], rare_ids[0]));
}

INSTANTIATE_TEST_SUITE_P(Backends, QuarantineStoreTest,
                         ::testing::Values(sql::Backend::kSqlite, sql::Backend::kPostgresql),
                         [](const auto& info) { return harness::BackendName(info.param); });

TEST(DecodedHeader, NeverLetsAHeaderValueSpanLines) {
  // An encoded word that decodes to CR LF cannot smuggle a line into what is shown.
  std::string m = "Subject: =?UTF-8?Q?a=0D=0AInjected:_x?=\r\n\r\nbody";
  EXPECT_EQ(DecodedHeader(m, "Subject"), "a  Injected: x");
  EXPECT_EQ(DecodedHeader(m, "From"), "");
}

TEST(ValidUtf8, ReplacesWhatIsNotUtf8) {
  EXPECT_EQ(ValidUtf8("plain"), "plain");
  EXPECT_EQ(ValidUtf8("\xc5\xbe"), "\xc5\xbe");
  EXPECT_EQ(ValidUtf8("a\xff" "b"), "a?b");
  EXPECT_EQ(ValidUtf8("\xc0\xaf"), "??");        // overlong '/'
  EXPECT_EQ(ValidUtf8("\xed\xa0\x80"), "???");   // a surrogate
  EXPECT_EQ(ValidUtf8("\xe2\x82"), "??");        // cut short
}

}  // namespace
}  // namespace sagator::quarantine
