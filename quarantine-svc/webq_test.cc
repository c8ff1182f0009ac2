// webq with a real store (SQLite and PostgreSQL), releases through smtp-sink, and
// requests both as HttpRequest values and over HTTP: who sees what, CSRF, hostile
// message fields, sessions, and one-click release links.
#include "quarantine-svc/webq.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "quarantine-svc/quarantine_service.h"
#include "tests/harness/fresh_database.h"
#include "tests/harness/postfix.h"
#include "tests/harness/subprocess.h"

namespace sagator::quarantine {
namespace {

using net::HttpRequest;
using net::HttpResponse;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const char kHostile[] =
    "From: \"<img src=x onerror=alert(1)>\" <evil@example.org>\r\n"
    "Subject: <script>alert('subject')</script>\r\n"
    "X-Evil: \"><script>alert('header')</script>\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<html><body><p>Hello <b>there</b></p><script>alert('body')</script></body></html>\r\n";

std::string Header(const HttpResponse& r, const std::string& name) {
  for (const auto& [n, v] : r.headers) {
    if (absl::EqualsIgnoreCase(n, name)) return v;
  }
  return "";
}

class WebqTest : public ::testing::TestWithParam<sql::Backend> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(sink_.Start().ok());
    db_ = harness::FreshDatabase(GetParam());
    ASSERT_NE(db_, nullptr);
    auto store = QuarantineStore::Open(db_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto lists = policy::PolicyStore::Open(db_);
    ASSERT_TRUE(lists.ok()) << lists.status();
    lists_ = *std::move(lists);
    e1_ = Put({"alice@example.net"}, kHostile, "evil@example.org");
    e2_ = Put({"bob@example.net"}, "Subject: for bob\r\n\r\nbob's\r\n", "x@example.org");
    e3_ = Put({"Alice@Example.NET", "bob@example.net"}, "Subject: for both\r\n\r\nboth\r\n",
              "y@example.org");
    options_.relay = absl::StrCat("127.0.0.1:", sink_.port());
    options_.relay_timeout = absl::Seconds(10);
    static const std::string* hash = [] {
      auto h = HashPassword("pw");
      return new std::string(h.ok() ? *h : "");
    }();
    WebqOptions o;
    o.users = {{"alice", *hash, {}, false},
               {"bob", *hash, {"bob@example.net"}, false},
               {"root", *hash, {}, true}};
    o.userconv = {{std::make_shared<RE2>("(alice)"), "\\1@example.net"}};
    o.session_timeout = absl::Minutes(5);
    webq_ = MakeWebq(o);
  }

  std::unique_ptr<Webq> MakeWebq(WebqOptions o) {
    return std::make_unique<Webq>(
        std::move(o), store_.get(),
        [this](const v1::ReleaseRequest& r) { return ReleaseMessage(options_, *store_, r); },
        Signer(std::string(32, 'k')), lists_);
  }

  std::string Put(std::vector<std::string> rcpts, const std::string& message,
                  const std::string& sender) {
    v1::Entry e;
    e.mutable_envelope()->set_sender(sender);
    for (auto& r : rcpts) e.mutable_envelope()->add_recipients(r);
    e.set_detection("Eicar-Test-Signature");
    e.set_level(1);
    auto id = store_->Store(e, message, absl::Now());
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : "";
  }

  // Logs in; returns the session cookie ("sgwebq=...").
  std::string LoginAs(Webq& webq, const std::string& user, const std::string& password = "pw") {
    HttpRequest r;
    r.method = "POST";
    r.path = "/login";
    r.form = {{"user", user}, {"password", password}};
    HttpResponse resp = webq.Handle(r);
    std::string set = Header(resp, "Set-Cookie");
    if (resp.status != 303 || set.empty()) return "";
    return set.substr(0, set.find(';'));
  }

  HttpResponse Get(const std::string& cookie, const std::string& path,
                   std::map<std::string, std::string> query = {}) {
    HttpRequest r;
    r.method = "GET";
    r.path = path;
    r.query = std::move(query);
    if (!cookie.empty()) r.headers["cookie"] = cookie;
    return webq_->Handle(r);
  }

  HttpResponse Post(const std::string& cookie, const std::string& path,
                    std::map<std::string, std::string> form) {
    HttpRequest r;
    r.method = "POST";
    r.path = path;
    r.form = std::move(form);
    if (!cookie.empty()) r.headers["cookie"] = cookie;
    return webq_->Handle(r);
  }

  // The CSRF token a page of this session carries.
  std::string CsrfOf(const std::string& cookie, const std::string& id) {
    HttpResponse view = Get(cookie, "/view", {{"id", id}});
    size_t at = view.body.find("name=\"csrf\" value=\"");
    if (at == std::string::npos) return "";
    at += strlen("name=\"csrf\" value=\"");
    return view.body.substr(at, view.body.find('"', at) - at);
  }

  harness::SmtpSink sink_;
  std::shared_ptr<sql::Database> db_;
  std::unique_ptr<QuarantineStore> store_;
  std::shared_ptr<policy::PolicyStore> lists_;
  QuarantineOptions options_;
  std::unique_ptr<Webq> webq_;
  std::string e1_, e2_, e3_;
};

TEST_P(WebqTest, LoginNeedsTheRightPasswordAndGivesAStrictCookie) {
  EXPECT_EQ(LoginAs(*webq_, "alice", "wrong"), "");
  EXPECT_EQ(LoginAs(*webq_, "mallory", "pw"), "");
  HttpRequest r;
  r.method = "POST";
  r.path = "/login";
  r.form = {{"user", "alice"}, {"password", "pw"}};
  HttpResponse resp = webq_->Handle(r);
  EXPECT_EQ(resp.status, 303);
  std::string cookie = Header(resp, "Set-Cookie");
  EXPECT_THAT(cookie, HasSubstr("HttpOnly"));
  EXPECT_THAT(cookie, HasSubstr("SameSite=Strict"));
  // No session: the list sends you to the login page.
  EXPECT_EQ(Get("", "/").status, 303);
  EXPECT_EQ(Header(Get("", "/"), "Location"), "/login");
  // A session cookie that was tampered with is no session.
  std::string good = LoginAs(*webq_, "alice");
  ASSERT_FALSE(good.empty());
  std::string bad = good;
  bad[bad.size() - 3] = bad[bad.size() - 3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(Get(bad, "/").status, 303);
  // Nor is alice's cookie re-signed with bob's name by anyone without the key.
  EXPECT_EQ(Get("sgwebq=" + Signer(std::string(32, 'x')).Sign("session\nroot\n9999999999"), "/")
                .status,
            303);
  EXPECT_EQ(Get(good, "/").status, 200);
}

TEST_P(WebqTest, SessionsExpire) {
  WebqOptions o;
  auto h = HashPassword("pw");
  ASSERT_TRUE(h.ok());
  o.users = {{"bob", *h, {"bob@example.net"}, false}};
  o.session_timeout = absl::Seconds(1);
  webq_ = MakeWebq(o);
  std::string cookie = LoginAs(*webq_, "bob");
  ASSERT_FALSE(cookie.empty());
  EXPECT_EQ(Get(cookie, "/").status, 200);
  absl::SleepFor(absl::Milliseconds(2100));
  EXPECT_EQ(Get(cookie, "/").status, 303);
}

TEST_P(WebqTest, AUserSeesAndTouchesOnlyTheirOwnMail) {
  std::string alice = LoginAs(*webq_, "alice");
  ASSERT_FALSE(alice.empty());
  HttpResponse list = Get(alice, "/");
  EXPECT_EQ(list.status, 200);
  EXPECT_THAT(list.body, HasSubstr(e1_));
  EXPECT_THAT(list.body, HasSubstr(e3_));  // addressed to Alice@Example.NET too
  EXPECT_THAT(list.body, Not(HasSubstr(e2_)));
  // Crafted requests for bob's mail get what a missing id gets.
  EXPECT_THAT(Get(alice, "/", {{"recipient", "bob@example.net"}}).body, Not(HasSubstr(e2_)));
  EXPECT_EQ(Get(alice, "/view", {{"id", e2_}}).status, 404);
  EXPECT_EQ(Get(alice, "/raw", {{"id", e2_}}).status, 404);
  std::string csrf = CsrfOf(alice, e1_);
  ASSERT_FALSE(csrf.empty());
  EXPECT_EQ(Post(alice, "/release", {{"id", e2_}, {"csrf", csrf}}).status, 404);
  EXPECT_EQ(Post(alice, "/delete", {{"id", e2_}, {"csrf", csrf}}).status, 404);
  auto e2 = store_->Get(e2_, nullptr);
  ASSERT_TRUE(e2.ok());  // still there, never released
  EXPECT_EQ(e2->releases_size(), 0);
  EXPECT_TRUE(sink_.Messages().empty());
  // The admin sees everything.
  std::string root = LoginAs(*webq_, "root");
  HttpResponse all = Get(root, "/");
  for (const std::string& id : {e1_, e2_, e3_}) EXPECT_THAT(all.body, HasSubstr(id));
  EXPECT_EQ(Get(root, "/view", {{"id", e2_}}).status, 200);
  HttpResponse raw = Get(root, "/raw", {{"id", e2_}});
  EXPECT_EQ(raw.body, "Subject: for bob\r\n\r\nbob's\r\n");
  EXPECT_THAT(Header(raw, "Content-Disposition"), HasSubstr("attachment"));
}

TEST_P(WebqTest, PagesThroughTheListKeepingTheSearch) {
  WebqOptions o;
  auto h = HashPassword("pw");
  ASSERT_TRUE(h.ok());
  o.users = {{"root", *h, {}, true}};
  o.page_size = 2;
  webq_ = MakeWebq(o);
  std::string root = LoginAs(*webq_, "root");
  HttpResponse first = Get(root, "/", {{"detection", "eicar"}});
  EXPECT_THAT(first.body, HasSubstr(e3_));  // newest first
  EXPECT_THAT(first.body, HasSubstr(e2_));
  EXPECT_THAT(first.body, Not(HasSubstr(e1_)));
  size_t at = first.body.find("id=\"next\" href=\"/?");
  ASSERT_NE(at, std::string::npos) << first.body;
  at += strlen("id=\"next\" href=\"/?");
  std::string query = first.body.substr(at, first.body.find('"', at) - at);
  absl::StrReplaceAll({{"&amp;", "&"}}, &query);
  HttpResponse second = Get(root, "/", net::ParseUrlEncoded(query));
  EXPECT_THAT(query, HasSubstr("detection=eicar"));
  EXPECT_THAT(second.body, HasSubstr(e1_));
  EXPECT_THAT(second.body, Not(HasSubstr(e2_)));
  EXPECT_THAT(second.body, Not(HasSubstr("id=\"next\"")));
}

TEST_P(WebqTest, ActionsNeedTheSessionsCsrfToken) {
  std::string alice = LoginAs(*webq_, "alice");
  std::string bob = LoginAs(*webq_, "bob");
  EXPECT_EQ(Post(alice, "/release", {{"id", e3_}}).status, 403);
  EXPECT_EQ(Post(alice, "/release", {{"id", e3_}, {"csrf", CsrfOf(bob, e3_)}}).status, 403);
  EXPECT_TRUE(sink_.Messages().empty());
  HttpResponse done = Post(alice, "/release", {{"id", e3_}, {"csrf", CsrfOf(alice, e3_)}});
  EXPECT_EQ(done.status, 200) << done.body;
  auto got = sink_.WaitForMessages(1, absl::Seconds(10));
  ASSERT_EQ(got.size(), 1u);
  // Alice gets her own copy only, not bob's.
  EXPECT_THAT(got[0].recipients, ElementsAre("Alice@Example.NET"));
  auto e3 = store_->Get(e3_, nullptr);
  ASSERT_TRUE(e3.ok());
  ASSERT_EQ(e3->releases_size(), 1);
  EXPECT_EQ(e3->releases(0).released_by(), "alice");
}

TEST_P(WebqTest, HostileFieldsRenderInert) {
  std::string alice = LoginAs(*webq_, "alice");
  for (const HttpResponse& page : {Get(alice, "/"), Get(alice, "/view", {{"id", e1_}})}) {
    EXPECT_EQ(page.status, 200);
    EXPECT_THAT(page.body, Not(HasSubstr("<script")));
    EXPECT_THAT(page.body, Not(HasSubstr("<img")));
    EXPECT_THAT(page.body, HasSubstr("&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt;"));
    EXPECT_THAT(Header(page, "Content-Security-Policy"), HasSubstr("default-src 'none'"));
  }
  HttpResponse view = Get(alice, "/view", {{"id", e1_}});
  EXPECT_THAT(view.body, HasSubstr("&quot;&gt;&lt;script&gt;alert(&#39;header&#39;)"));
  // The HTML part is shown as text, its script dropped.
  EXPECT_THAT(view.body, HasSubstr("Hello there"));
  EXPECT_THAT(view.body, Not(HasSubstr("alert(&#39;body&#39;)")));
  // Search terms come back escaped too.
  HttpResponse search = Get(alice, "/", {{"subject", "\"><script>x</script>"}});
  EXPECT_THAT(search.body, Not(HasSubstr("<script>x")));
}

TEST_P(WebqTest, DeletingMailOfOthersTooIsForAdmins) {
  std::string alice = LoginAs(*webq_, "alice");
  std::string csrf = CsrfOf(alice, e1_);
  EXPECT_EQ(Post(alice, "/delete", {{"id", e3_}, {"csrf", csrf}}).status, 403);
  EXPECT_TRUE(store_->Get(e3_, nullptr).ok());
  EXPECT_EQ(Post(alice, "/delete", {{"id", e1_}, {"csrf", csrf}}).status, 303);
  EXPECT_EQ(store_->Get(e1_, nullptr).status().code(), absl::StatusCode::kNotFound);
  std::string root = LoginAs(*webq_, "root");
  EXPECT_EQ(Post(root, "/delete", {{"id", e3_}, {"csrf", CsrfOf(root, e3_)}}).status, 303);
  EXPECT_EQ(store_->Get(e3_, nullptr).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(WebqTest, WhitelistingTheSenderWritesTheWsList) {
  std::string alice = LoginAs(*webq_, "alice");
  EXPECT_THAT(Get(alice, "/view", {{"id", e1_}}).body, Not(HasSubstr("id=\"whitelist\"")));
  EXPECT_EQ(Post(alice, "/whitelist", {{"id", e1_}, {"csrf", CsrfOf(alice, e1_)}}).status, 403);
  std::string root = LoginAs(*webq_, "root");
  HttpResponse done = Post(root, "/whitelist", {{"id", e1_}, {"csrf", CsrfOf(root, e1_)}});
  EXPECT_EQ(done.status, 200) << done.body;
  auto entries = lists_->ListEntries(policy::ListKind::kWS);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].value, "evil@example.org");
}

TEST_P(WebqTest, ReleaseLinksWorkOnceForTheirRecipientUntilTheyExpire) {
  Signer signer(std::string(32, 'k'));
  std::string token =
      SignReleaseLink(signer, {e3_, "bob@example.net", absl::Now() + absl::Hours(1)});
  // Opening the link changes nothing (link scanners fetch it too).
  HttpResponse page = Get("", "/r", {{"t", token}});
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.body, HasSubstr("Release to bob@example.net"));
  EXPECT_TRUE(sink_.Messages().empty());
  HttpResponse done = Post("", "/r", {{"t", token}});
  EXPECT_EQ(done.status, 200) << done.body;
  auto got = sink_.WaitForMessages(1, absl::Seconds(10));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(got[0].recipients, ElementsAre("bob@example.net"));
  EXPECT_EQ(Post("", "/r", {{"t", token}}).status, 410);  // once
  // Forged, damaged, expired, or for someone the message was not for.
  std::string forged = token;
  forged[2] = forged[2] == 'A' ? 'B' : 'A';
  EXPECT_EQ(Post("", "/r", {{"t", forged}}).status, 403);
  EXPECT_EQ(Post("", "/r", {{"t", SignReleaseLink(Signer(std::string(32, 'z')),
                                                   {e3_, "bob@example.net",
                                                    absl::Now() + absl::Hours(1)})}})
                .status,
            403);
  EXPECT_EQ(Post("", "/r", {{"t", SignReleaseLink(signer, {e2_, "bob@example.net",
                                                           absl::Now() - absl::Seconds(1)})}})
                .status,
            410);
  EXPECT_EQ(Post("", "/r", {{"t", SignReleaseLink(signer, {e2_, "mallory@example.org",
                                                           absl::Now() + absl::Hours(1)})}})
                .status,
            404);
  EXPECT_EQ(sink_.Messages().size(), 1u);
}

TEST_P(WebqTest, ServesOverHttp) {
  WebqOptions o;
  auto h = HashPassword("pw");
  ASSERT_TRUE(h.ok());
  o.users = {{"bob", *h, {"bob@example.net"}, false}};
  webq_ = MakeWebq(o);
  ASSERT_TRUE(webq_->Start().ok());
  std::string body = "user=bob&password=pw";
  std::string reply = testing::TcpExchange(
      webq_->port(),
      absl::StrCat("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: "
                   "application/x-www-form-urlencoded\r\nContent-Length: ",
                   body.size(), "\r\nConnection: close\r\n\r\n", body),
      absl::Seconds(10));
  ASSERT_THAT(reply, HasSubstr("HTTP/1.1 303"));
  size_t at = reply.find("Set-Cookie: ");
  ASSERT_NE(at, std::string::npos);
  std::string cookie = reply.substr(at + 12, reply.find(';', at) - at - 12);
  reply = testing::TcpExchange(
      webq_->port(),
      absl::StrCat("GET /?subject=bob HTTP/1.1\r\nHost: x\r\nCookie: ", cookie,
                   "\r\nConnection: close\r\n\r\n"),
      absl::Seconds(10));
  EXPECT_THAT(reply, HasSubstr("HTTP/1.1 200"));
  EXPECT_THAT(reply, HasSubstr(e2_));
  EXPECT_THAT(reply, HasSubstr("Content-Security-Policy"));
  // Methods other than GET, HEAD and POST are refused.
  reply = testing::TcpExchange(webq_->port(),
                               "DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                               absl::Seconds(10));
  EXPECT_THAT(reply, HasSubstr("HTTP/1.1 405"));
  webq_->Shutdown();
}

INSTANTIATE_TEST_SUITE_P(Backends, WebqTest,
                         ::testing::Values(sql::Backend::kSqlite, sql::Backend::kPostgresql),
                         [](const auto& info) { return harness::BackendName(info.param); });

TEST(SafeText, PrefersPlainTextAndDecodesCharsets) {
  std::string m =
      "Content-Type: multipart/alternative; boundary=b\r\n\r\n"
      "--b\r\nContent-Type: text/plain; charset=iso-8859-2\r\n"
      "Content-Transfer-Encoding: quoted-printable\r\n\r\n=BElu=BBou=E8k=FD\r\n"
      "--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b--\r\n";
  EXPECT_THAT(SafeText(m, 1000), HasSubstr("\xc5\xbelu\xc5\xa5ou\xc4\x8dk\xc3\xbd"));
  EXPECT_THAT(SafeText(m, 1000), Not(HasSubstr("html")));
  EXPECT_THAT(SafeText("Subject: x\r\n\r\n" + std::string(5000, 'a'), 100), HasSubstr("[... cut]"));
}

}  // namespace
}  // namespace sagator::quarantine
