// log, log_sql (on SQLite and PostgreSQL), log_cleanup, and report /
// report_recipients against Postfix's smtp-sink, as configured in YAML.
#include "scanner-svc/scanners/logging.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "common/sql.h"
#include "scanner-svc/chain_set.h"
#include "scanner-svc/scanners/report.h"
#include "tests/harness/fresh_database.h"
#include "tests/harness/postfix.h"
#include "tests/harness/subprocess.h"

namespace sagator::scanners {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSpam[] = "From: a@example.org\r\nSubject: cheap offer\r\n\r\nBUY NOW\r\n";
constexpr char kHam[] = "From: a@example.org\r\nSubject: lunch\r\n\r\nnoon?\r\n";
constexpr char kSpamWord[] =
    "{string_scan: {entries: [{name: Spam.Offer, patterns: [\"BUY NOW\"]}]}}";

engine::MessageEnvelope Envelope(std::string sender = "alice@example.org") {
  engine::MessageEnvelope e;
  e.sender = std::move(sender);
  e.recipients = {"bob@example.net", "carol@example.net"};
  e.client_address = "192.0.2.7";
  e.client_name = "mail.example.org";
  e.helo = "mail.example.org";
  return e;
}

class ChainTest : public ::testing::Test {
 protected:
  absl::StatusOr<ChainVerdict> Run(const std::string& yaml, const std::string& message,
                                   engine::MessageEnvelope env = Envelope()) {
    if (chains_ == nullptr) {
      auto cfg = LoadConfigString(yaml, "test.yaml", getenv("TEST_TMPDIR"));
      if (!cfg.ok()) return cfg.status();
      auto chains = ChainSet::Create(*cfg);
      if (!chains.ok()) return chains.status();
      chains_ = *std::move(chains);
    }
    return chains_->Run("c", message, env, absl::Now() + absl::Seconds(30));
  }
  std::unique_ptr<ChainSet> chains_;
};

TEST(LogLine, QuotesWhatIsNotOneWord) {
  engine::MessageEnvelope e = Envelope("");
  engine::ScanResult r = engine::ScanResult::Detected(2.5, "Spam \"Offer\"", "string_scan()");
  engine::Decision d{"abc", 3, &e, &r, common::v1::REJECT, "20261126-1-x@h", "", absl::Now()};
  EXPECT_EQ(LogLine::Format(d),
            "scan id=20261126-1-x@h from=\"\" to=bob@example.net,carol@example.net "
            "client=192.0.2.7 name=mail.example.org helo=mail.example.org size=3 "
            "outcome=REJECT status=REJECTED level=2.50 detection=\"Spam \\\"Offer\\\"\" "
            "scanner=string_scan()");
}

class ScanLogTest : public ::testing::TestWithParam<sql::Backend> {};

TEST_P(ScanLogTest, InsertsOneRowPerMessageAndDeletesOldOnes) {
  std::shared_ptr<sql::Database> db = harness::FreshDatabase(GetParam());
  ASSERT_NE(db, nullptr);
  auto log = ScanLog::Open(db);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE(ScanLog::Open(db).ok()) << "migrations run twice";
  engine::MessageEnvelope e = Envelope();
  engine::ScanResult r = engine::ScanResult::Detected(1.25, "Eicar", "libclam()");
  absl::Time now = absl::Now();
  engine::Decision old{"old", 3, &e, &r, common::v1::REJECT, "id-old", "", now};
  engine::Decision fresh{"fresh!", 6, &e, &r, common::v1::DROP, "id-new", "q-1", now};
  ASSERT_TRUE((*log)->Insert(old, now - absl::Hours(48)).ok());
  ASSERT_TRUE((*log)->Insert(fresh, now).ok());
  ASSERT_TRUE((*log)->Insert(fresh, now).ok()) << "a message logged twice stays one row";
  auto rows = db->Query(
      "SELECT sagator_id, sender, recipients, size, outcome, status, level, detection,"
      " quarantine_id FROM scan_log ORDER BY logged_at",
      {});
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  const sql::Row& row = (*rows)[1];
  EXPECT_EQ(row.text(0), "id-new");
  EXPECT_EQ(row.text(1), "alice@example.org");
  EXPECT_EQ(row.text(2), "bob@example.net,carol@example.net");
  EXPECT_EQ(row.integer(3), 6);
  EXPECT_EQ(row.text(4), "DROP");
  EXPECT_EQ(row.text(5), "DROPPED");
  EXPECT_DOUBLE_EQ(std::stod(row.text(6)), 1.25);
  EXPECT_EQ(row.text(7), "Eicar");
  EXPECT_EQ(row.text(8), "q-1");
  auto n = (*log)->DeleteOlderThan(now - absl::Hours(24));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  rows = db->Query("SELECT sagator_id FROM scan_log", {});
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].text(0), "id-new");
}

INSTANTIATE_TEST_SUITE_P(Backends, ScanLogTest,
                         ::testing::Values(sql::Backend::kSqlite, sql::Backend::kPostgresql),
                         [](const auto& info) { return harness::BackendName(info.param); });

TEST_F(ChainTest, LogSqlRecordsTheDecisionOfEveryMessage) {
  std::string yaml = absl::StrCat(
      "databases:\n  main: {sqlite: {path: log.db}}\n"
      "chains:\n  c:\n    - log_sql: {db: main, scanners: [", kSpamWord, "]}\n");
  auto spam = Run(yaml, kSpam);
  ASSERT_TRUE(spam.ok()) << spam.status();
  EXPECT_EQ(spam->outcome, common::v1::REJECT);
  EXPECT_EQ(spam->result.path, "log_sql(string_scan())");
  auto ham = Run(yaml, kHam);
  ASSERT_TRUE(ham.ok());
  auto db = sql::OpenSqlite(absl::StrCat(getenv("TEST_TMPDIR"), "/log.db"), absl::Seconds(5));
  ASSERT_TRUE(db.ok());
  auto rows = (*db)->Query(
      "SELECT sagator_id, outcome, detection, client_address FROM scan_log ORDER BY logged_at",
      {});
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].text(0), spam->sagator_id);
  EXPECT_EQ((*rows)[0].text(1), "REJECT");
  EXPECT_EQ((*rows)[0].text(2), "Spam.Offer");
  EXPECT_EQ((*rows)[0].text(3), "192.0.2.7");
  EXPECT_EQ((*rows)[1].text(0), ham->sagator_id);
  EXPECT_EQ((*rows)[1].text(1), "PASS");
}

TEST_F(ChainTest, LogCleanupDeletesOldRowsOncePerInterval) {
  std::string path = absl::StrCat(getenv("TEST_TMPDIR"), "/cleanup.db");
  auto db = sql::OpenSqlite(path, absl::Seconds(5));
  ASSERT_TRUE(db.ok());
  auto log = ScanLog::Open(*db);
  ASSERT_TRUE(log.ok());
  engine::MessageEnvelope e = Envelope();
  engine::ScanResult r;
  auto old = [&](const std::string& id) {
    engine::Decision d{"x", 1, &e, &r, common::v1::PASS, id, "", absl::Now()};
    ASSERT_TRUE((*log)->Insert(d, absl::Now() - absl::Hours(3)).ok());
  };
  old("a");
  std::string yaml =
      "databases:\n  main: {sqlite: {path: cleanup.db}}\n"
      "chains:\n  c:\n    - log_cleanup: {db: main, keep: 1h, interval: 1h}\n"
      "    - log_sql: {db: main, scanners: [nothing]}\n";
  ASSERT_TRUE(Run(yaml, kHam).ok());
  auto ids = [&] {
    std::vector<std::string> out;
    auto rows = (*db)->Query("SELECT sagator_id FROM scan_log WHERE logged_at < $1",
                             {absl::ToUnixMicros(absl::Now() - absl::Hours(1))});
    for (const auto& row : *rows) out.push_back(row.text(0));
    return out;
  };
  EXPECT_THAT(ids(), ::testing::IsEmpty());
  // Within the interval: not again.
  old("b");
  ASSERT_TRUE(Run(yaml, kHam).ok());
  EXPECT_THAT(ids(), ElementsAre("b"));
}

TEST_F(ChainTest, LogSqlRecordsAMessageTooLargeToScan) {
  // No scanner sees it, but the log_sql of the chain it names, and of the chain
  // that one includes, each record it with its size and outcome; one that runs only
  // for some messages (per part, under parsemail) does not.
  std::string yaml = absl::StrCat(
      "global: {max_message_size: 1K}\n"
      "databases:\n  main: {sqlite: {path: large.db}}\n  other: {sqlite: {path: large2.db}}\n"
      "  parts: {sqlite: {path: large3.db}}\n"
      "chains:\n  c:\n    - log_sql: {db: main, scanners: [", kSpamWord, "]}\n"
      "    - chain: included\n"
      "    - parsemail: [{log_sql: {db: parts, scanners: [nothing]}}]\n"
      "  included:\n    - log_sql: {db: other, scanners: [nothing]}\n");
  std::string big = absl::StrCat("Subject: big\r\n\r\nBUY NOW ", std::string(3000, 'x'), "\r\n");
  auto v = Run(yaml, big);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->result.name, "not scanned: too large");
  EXPECT_EQ(v->outcome, common::v1::FORCED_PASS);
  for (const char* file : {"/large.db", "/large2.db"}) {
    auto db = sql::OpenSqlite(absl::StrCat(getenv("TEST_TMPDIR"), file), absl::Seconds(5));
    ASSERT_TRUE(db.ok());
    auto rows = (*db)->Query("SELECT sagator_id, outcome, detection, size FROM scan_log", {});
    ASSERT_TRUE(rows.ok()) << rows.status();
    ASSERT_EQ(rows->size(), 1u) << file;
    EXPECT_EQ((*rows)[0].text(0), v->sagator_id);
    EXPECT_EQ((*rows)[0].text(1), "FORCED_PASS");
    EXPECT_EQ((*rows)[0].text(2), "not scanned: too large");
    EXPECT_EQ((*rows)[0].text(3), absl::StrCat(big.size()));
  }
  auto parts = sql::OpenSqlite(absl::StrCat(getenv("TEST_TMPDIR"), "/large3.db"), absl::Seconds(5));
  ASSERT_TRUE(parts.ok());
  auto none = (*parts)->Query("SELECT count(*) FROM scan_log", {});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ((*none)[0].text(0), "0");
}

class ReportTest : public ChainTest {
 protected:
  void SetUp() override { ASSERT_TRUE(sink_.Start().ok()); }
  std::string Yaml(const std::string& report) {
    return absl::StrCat("chains:\n  c:\n    - ", report, "\n");
  }
  std::string Relay() const { return absl::StrCat("\"127.0.0.1:", sink_.port(), "\""); }
  harness::SmtpSink sink_;
};

TEST_F(ReportTest, NotifiesTheSenderAndAdminsOfADetection) {
  std::string yaml = Yaml(absl::StrCat(
      "report: {recipients: [\"%(SENDER)s\", admin@example.org], from: av@example.org, relay: ",
      Relay(), ", scanners: [", kSpamWord, "]}"));
  auto v = Run(yaml, kSpam);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_EQ(v->result.path, "report(string_scan())");
  auto got = sink_.WaitForMessages(1, absl::Seconds(10));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].sender, "") << "notifications use the null sender";
  EXPECT_THAT(got[0].recipients, ElementsAre("alice@example.org", "admin@example.org"));
  EXPECT_EQ(got[0].Header("Subject"), "[SAGATOR] Spam.Offer in mail from alice@example.org");
  EXPECT_EQ(got[0].Header("From"), "av@example.org");
  EXPECT_THAT(got[0].Header("Date"), Not(""));
  EXPECT_THAT(got[0].message, HasSubstr("it was REJECTED."));
  EXPECT_THAT(got[0].message, HasSubstr(absl::StrCat("ID:          ", v->sagator_id)));
  EXPECT_THAT(got[0].message, HasSubstr("Subject: cheap offer"));  // %(MSG_HEADER)s

  // Clean mail: no report.
  ASSERT_TRUE(Run(yaml, kHam).ok());
  // A bounce (null sender): only the admin hears of it.
  ASSERT_TRUE(Run(yaml, kSpam, Envelope("")).ok());
  got = sink_.WaitForMessages(2, absl::Seconds(10));
  ASSERT_EQ(got.size(), 2u);
  // smtp-sink's files are not in arrival order.
  const harness::SinkMessage& bounce_report =
      got[0].recipients.size() == 1 ? got[0] : got[1];
  EXPECT_THAT(bounce_report.recipients, ElementsAre("admin@example.org"));
}

TEST_F(ReportTest, ReportRecipientsUsesTheTemplateAndTheEnvelope) {
  std::string yaml = Yaml(absl::StrCat(
      "report_recipients: {relay: ", Relay(),
      ", template: \"To: %(TO)s\\nSubject: held %(VIRNAME)s\\n\\nfrom %(SENTBY_IP)s: "
      "%(STATUS)s\\n\", scanners: [{drop: {pattern: ., scanners: [",
      kSpamWord, "]}}]}"));
  auto v = Run(yaml, kSpam);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::DROP);
  auto got = sink_.WaitForMessages(1, absl::Seconds(10));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(got[0].recipients, ElementsAre("bob@example.net", "carol@example.net"));
  EXPECT_EQ(got[0].Header("To"), "bob@example.net, carol@example.net");
  EXPECT_EQ(got[0].Header("Subject"), "held Spam.Offer");
  EXPECT_THAT(got[0].message, HasSubstr("from 192.0.2.7: DROPPED"));
  EXPECT_THAT(got[0].Header("Message-ID"), HasSubstr("sagator-notice."));
}

TEST_F(ReportTest, ARelayThatIsDownLosesNothing) {
  std::string yaml = Yaml(absl::StrCat("report: {recipients: [admin@example.org], relay: "
                                       "\"127.0.0.1:",
                                       testing::PickFreePort(), "\", timeout: 2s, scanners: [",
                                       kSpamWord, "]}"));
  auto v = Run(yaml, kSpam);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_TRUE(v->error.ok());
}

TEST_F(ReportTest, ASilentRelayDoesNotHoldUpTheMail) {
  // A relay that takes the connection and never greets.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::string yaml = Yaml(absl::StrCat("report: {recipients: [admin@example.org], relay: "
                                       "\"127.0.0.1:",
                                       ntohs(addr.sin_port), "\", timeout: 6s, scanners: [",
                                       kSpamWord, "]}"));
  absl::Time start = absl::Now();
  auto v = Run(yaml, kSpam);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  // The notification waits for the relay in the background, not in the scan.
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  chains_.reset();  // waits for the send to time out
  close(fd);
}

TEST_F(ReportTest, RefusesABadRelayOrNoRecipients) {
  auto v = Run(Yaml("report: {recipients: [a@b], relay: \"no port\", scanners: [nothing]}"), kHam);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("report.relay"));
  chains_.reset();
  v = Run(Yaml("report: {scanners: [nothing]}"), kHam);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("report.recipients: needs at least one"));
}

TEST(Report, HeaderValuesCannotAddFields) {
  ReportOptions o;
  o.recipients = {"a@example.org"};
  Report report(o);
  engine::MessageEnvelope e = Envelope();
  engine::ScanResult r = engine::ScanResult::Detected(1, "Evil\r\nBcc: x@example.com", "s()");
  engine::Decision d{"Subject: s\r\n\r\nb\r\n", 16, &e, &r, common::v1::REJECT, "id", "", absl::Now()};
  std::string text = report.Render(d, r, {"a@example.org"});
  std::string header = text.substr(0, text.find("\r\n\r\n") + 2);
  EXPECT_THAT(header, Not(HasSubstr("\r\nBcc:")));
  EXPECT_THAT(header, HasSubstr("Subject: [SAGATOR] Evil Bcc: x@example.com in mail from"));
}

}  // namespace
}  // namespace sagator::scanners
