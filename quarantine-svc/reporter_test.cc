// The reporter against a real quarantine-svc (gRPC, SQLite), smtp-sink as the relay
// and webq for the links: who gets which items, what a digest says, that its
// release link works, and that runs neither repeat nor lose a period.
#include "quarantine-svc/reporter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/http_server.h"
#include "quarantine-svc/quarantine_service.h"
#include "quarantine-svc/webq.h"
#include "tests/harness/fresh_database.h"
#include "tests/harness/postfix.h"
#include "tests/harness/subprocess.h"

namespace sagator::quarantine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

class ReporterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(sink_.Start().ok());
    auto db = harness::FreshDatabase(sql::Backend::kSqlite);
    ASSERT_NE(db, nullptr);
    auto store = QuarantineStore::Open(db);
    ASSERT_TRUE(store.ok());
    options_.relay = absl::StrCat("127.0.0.1:", sink_.port());
    server_ = std::make_unique<QuarantineServer>(options_, *std::move(store));
    ASSERT_TRUE(server_->Start().ok());
    stub_ = v1::QuarantineService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
    absl::Time now = absl::Now();
    e1_ = Put({"alice@a.example"}, "Subject: =?UTF-8?Q?Invoice_=C5=BElut=C3=BD?=\r\n\r\nx",
              now - absl::Minutes(50));
    e2_ = Put({"bob@b.example"}, "Subject: for bob\r\n\r\nx", now - absl::Minutes(40));
    e3_ = Put({"carol@b.example", "alice@a.example"}, "Subject: both\r\n\r\nx",
              now - absl::Minutes(30));
    Put({"ignored@a.example"}, "Subject: excluded\r\n\r\nx", now - absl::Minutes(20));
    Put({"alice@a.example"}, "Subject: too old\r\n\r\nx", now - absl::Hours(48));

    ropts_.begin = "From: %(FROM)s\nTo: %(TO)s\nSubject: Quarantine report: %(COUNT)s new\n\n";
    ropts_.body = "%(VIRNAME)s | %(SUBJECT)s | %(RECIPIENT)s\n  View: %(VIEW_URL)s\n"
                  "  Release: %(RELEASE_URL)s\n";
    ropts_.end = "All: %(WEBQ)s\n";
    ropts_.exclude = {std::make_shared<RE2>("^ignored@")};
    ropts_.groups = {{std::make_shared<RE2>("@b\\.example$"), "admin@b.example"}};
    ropts_.webq_url = "https://webq.example";
    ropts_.from = "postmaster@q.example";
    ropts_.relay = options_.relay;
    ropts_.relay_timeout = absl::Seconds(10);
    ropts_.state_file = absl::StrCat(testing::MakeTempDir("reporter"), "/state");
  }

  std::string Put(std::vector<std::string> rcpts, const std::string& message, absl::Time at) {
    v1::Entry e;
    e.mutable_envelope()->set_sender("virus@example.org");
    for (auto& r : rcpts) e.mutable_envelope()->add_recipients(r);
    e.set_detection("Eicar-Test-Signature");
    e.set_level(1);
    auto id = server_->store().Store(e, message, at);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : "";
  }

  const harness::SinkMessage* DigestTo(const std::vector<harness::SinkMessage>& got,
                                       const std::string& to) {
    for (const auto& m : got) {
      if (m.recipients.size() == 1 && m.recipients[0] == to) return &m;
    }
    return nullptr;
  }

  harness::SmtpSink sink_;
  QuarantineOptions options_;
  std::unique_ptr<QuarantineServer> server_;
  std::unique_ptr<v1::QuarantineService::Stub> stub_;
  ReporterOptions ropts_;
  Signer signer_{std::string(32, 's')};
  std::string e1_, e2_, e3_;
};

TEST_F(ReporterTest, MailsEachTargetItsItemsWithWorkingLinks) {
  Reporter reporter(ropts_, stub_.get(), signer_);
  auto run = reporter.Run(absl::Now());
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->sent, 2);
  auto got = sink_.WaitForMessages(2, absl::Seconds(10));
  ASSERT_EQ(got.size(), 2u);

  const harness::SinkMessage* alice = DigestTo(got, "alice@a.example");
  ASSERT_NE(alice, nullptr);
  EXPECT_EQ(alice->sender, "postmaster@q.example");
  EXPECT_EQ(alice->Header("Subject"), "Quarantine report: 2 new");
  EXPECT_EQ(alice->Header("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_FALSE(alice->Header("Message-ID").empty());
  EXPECT_THAT(alice->message, HasSubstr("Invoice \xc5\xbelut\xc3\xbd | alice@a.example"));
  EXPECT_THAT(alice->message, HasSubstr("both | alice@a.example"));
  EXPECT_THAT(alice->message, HasSubstr(absl::StrCat("View: https://webq.example/view?id=", e1_)));
  EXPECT_THAT(alice->message, Not(HasSubstr("too old")));
  EXPECT_THAT(alice->message, Not(HasSubstr("excluded")));
  // (smtp-sink writes LF line ends; what went over the wire had CRLF.)
  EXPECT_THAT(alice->message, HasSubstr("All: https://webq.example/\n"));

  // The group rule sends b.example's items to its admin, one per recipient.
  const harness::SinkMessage* admin = DigestTo(got, "admin@b.example");
  ASSERT_NE(admin, nullptr);
  EXPECT_THAT(admin->message, HasSubstr("for bob | bob@b.example"));
  EXPECT_THAT(admin->message, HasSubstr("both | carol@b.example"));
  EXPECT_EQ(DigestTo(got, "ignored@a.example"), nullptr);

  // bob's release link, followed in webq, releases to bob without a login.
  std::string text = admin->message;
  size_t at = text.find("for bob");
  ASSERT_NE(at, std::string::npos);
  at = text.find("Release: https://webq.example/r?t=", at);
  ASSERT_NE(at, std::string::npos);
  at += strlen("Release: https://webq.example/r?t=");
  std::string token = net::UrlDecode(text.substr(at, text.find_first_of("\r\n", at) - at));
  Webq webq(WebqOptions(), &server_->store(),
            [this](const v1::ReleaseRequest& r) { return ReleaseMessage(options_, server_->store(), r); },
            signer_, nullptr);
  net::HttpRequest post;
  post.method = "POST";
  post.path = "/r";
  post.form = {{"t", token}};
  net::HttpResponse released = webq.Handle(post);
  EXPECT_EQ(released.status, 200) << released.body;
  got = sink_.WaitForMessages(3, absl::Seconds(10));
  ASSERT_EQ(got.size(), 3u);
  const harness::SinkMessage* bob = DigestTo(got, "bob@b.example");
  ASSERT_NE(bob, nullptr);
  EXPECT_THAT(bob->message, HasSubstr("for bob"));

  // The next run has nothing new to say.
  auto again = reporter.Run(absl::Now() + absl::Seconds(2));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->digests.empty());
}

TEST_F(ReporterTest, ARelayThatIsDownKeepsThePeriodForTheNextRun) {
  sink_.Stop();
  Reporter reporter(ropts_, stub_.get(), signer_);
  auto run = reporter.Run(absl::Now());
  EXPECT_EQ(run.status().code(), absl::StatusCode::kUnavailable);
  harness::SmtpSink sink2;
  ASSERT_TRUE(sink2.Start().ok());
  ropts_.relay = absl::StrCat("127.0.0.1:", sink2.port());
  Reporter retry(ropts_, stub_.get(), signer_);
  run = retry.Run(absl::Now());
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->sent, 2);
  EXPECT_EQ(sink2.WaitForMessages(2, absl::Seconds(10)).size(), 2u);
}


}  // namespace
}  // namespace sagator::quarantine
