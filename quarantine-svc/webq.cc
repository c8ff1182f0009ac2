#include "quarantine-svc/webq.h"

#include <gmime/gmime.h>
#include <glog/logging.h>
#include <sodium.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/mail_headers.h"

namespace sagator::quarantine {
namespace {

using net::HtmlEscape;
using net::HttpRequest;
using net::HttpResponse;
using net::UrlEncode;

constexpr char kCookie[] = "sgwebq";
constexpr char kCss[] =
    "body{font-family:sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;"
    "padding:.3em .5em;text-align:left;vertical-align:top;overflow-wrap:anywhere}"
    "th{background:#f3f3f3}"
    "pre{background:#f8f8f8;padding:.6em;white-space:pre-wrap;word-break:break-all}"
    "form.inline{display:inline}.error{color:#a00}.ok{color:#070}"
    "nav{margin-bottom:1em}nav a{margin-right:1em}input{margin:.2em}";

// Applied to every page: no scripts at all, forms only to us, no framing.
void AddSecurityHeaders(HttpResponse* r) {
  r->headers.emplace_back("Content-Security-Policy",
                          "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                          "frame-ancestors 'none'; base-uri 'none'");
  r->headers.emplace_back("X-Content-Type-Options", "nosniff");
  r->headers.emplace_back("Referrer-Policy", "no-referrer");
  r->headers.emplace_back("X-Frame-Options", "DENY");
}

HttpResponse Html(int status, const std::string& title, const std::string& body,
                  const std::string& user = "") {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body = absl::StrCat("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>",
                        HtmlEscape(title), " - SAGATOR webq</title><style>", kCss,
                        "</style></head><body>");
  if (!user.empty()) {
    absl::StrAppend(&r.body, "<nav><a href=\"/\">Quarantine</a><span>Logged in as <b>",
                    HtmlEscape(user), "</b></span> <a href=\"/logout\">Log out</a></nav>");
  }
  absl::StrAppend(&r.body, "<h1>", HtmlEscape(title), "</h1>", body, "</body></html>");
  AddSecurityHeaders(&r);
  return r;
}

HttpResponse Redirect(const std::string& location) {
  HttpResponse r{303, "text/plain; charset=utf-8", ""};
  r.headers.emplace_back("Location", location);
  AddSecurityHeaders(&r);
  return r;
}

std::string Time(const google::protobuf::Timestamp& ts) {
  return absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixSeconds(ts.seconds()),
                          absl::UTCTimeZone());
}

std::string HiddenField(const std::string& name, const std::string& value) {
  return absl::StrCat("<input type=\"hidden\" name=\"", HtmlEscape(name), "\" value=\"",
                      HtmlEscape(value), "\">");
}

std::string Lower(absl::string_view s) { return absl::AsciiStrToLower(s); }

// The header block of a message (unfolded lines kept as they are), at most 64 KiB.
std::string HeaderBlock(absl::string_view message) {
  HeaderBounds b = FindHeaderBounds(message);
  return ValidUtf8(message.substr(0, std::min<size_t>(b.header_size, 64 * 1024)));
}

// Removes tags (and script/style contents) from HTML and decodes the common entities.
std::string StripHtml(absl::string_view html) {
  std::string out;
  std::string lower = Lower(html);
  size_t i = 0;
  while (i < html.size()) {
    if (html[i] == '<') {
      for (const char* skip : {"<script", "<style"}) {
        if (lower.compare(i, strlen(skip), skip) == 0) {
          std::string end = absl::StrCat("</", skip + 1);
          size_t e = lower.find(end, i);
          i = e == std::string::npos ? html.size() : e;
          break;
        }
      }
      size_t close = html.find('>', i);
      absl::string_view tag = html.substr(i, close == absl::string_view::npos ? 0 : close - i);
      if (absl::StartsWithIgnoreCase(tag, "<br") || absl::StartsWithIgnoreCase(tag, "<p") ||
          absl::StartsWithIgnoreCase(tag, "</p") || absl::StartsWithIgnoreCase(tag, "<div") ||
          absl::StartsWithIgnoreCase(tag, "<tr")) {
        out.push_back('\n');
      }
      i = close == absl::string_view::npos ? html.size() : close + 1;
      continue;
    }
    out.push_back(html[i++]);
  }
  for (const auto& [entity, text] : std::vector<std::pair<std::string, std::string>>{
           {"&nbsp;", " "}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"},
           {"&amp;", "&"}}) {
    for (size_t at = out.find(entity); at != std::string::npos; at = out.find(entity, at)) {
      out.replace(at, entity.size(), text);
      at += text.size();
    }
  }
  return out;
}

struct TextParts {
  std::string plain;
  std::string html;
};

void CollectText(GMimeObject*, GMimeObject* part, gpointer data) {
  auto* parts = static_cast<TextParts*>(data);
  if (!GMIME_IS_TEXT_PART(part)) return;
  GMimeContentType* type = g_mime_object_get_content_type(part);
  bool plain = g_mime_content_type_is_type(type, "text", "plain");
  bool html = g_mime_content_type_is_type(type, "text", "html");
  if (!plain && !html) return;
  char* text = g_mime_text_part_get_text(GMIME_TEXT_PART(part));
  if (text == nullptr) return;
  absl::StrAppend(plain ? &parts->plain : &parts->html, text, "\n");
  g_free(text);
}

std::once_flag gmime_once;

}  // namespace

std::string SafeText(absl::string_view message, size_t limit) {
  std::call_once(gmime_once, [] { g_mime_init(); });
  GMimeStream* stream = g_mime_stream_mem_new_with_buffer(message.data(), message.size());
  GMimeParser* parser = g_mime_parser_new_with_stream(stream);
  GMimeMessage* parsed = g_mime_parser_construct_message(parser, nullptr);
  TextParts parts;
  if (parsed != nullptr) {
    g_mime_message_foreach(parsed, CollectText, &parts);
    g_object_unref(parsed);
  }
  g_object_unref(parser);
  g_object_unref(stream);
  std::string text = !parts.plain.empty() ? parts.plain : StripHtml(parts.html);
  if (text.size() > limit) text = absl::StrCat(text.substr(0, limit), "\n[... cut]");
  return ValidUtf8(text);
}

absl::StatusOr<WebqOptions> WebqOptionsFromConfig(const LoadedConfig& config,
                                                  const config::v1::WebqSpec& spec) {
  WebqOptions o;
  o.host = spec.host();
  o.port = spec.port();
  for (const auto& u : spec.users()) {
    if (!absl::StartsWith(u.password_hash(), "$argon2")) {
      return absl::InvalidArgumentError(
          absl::StrCat(config.path, ": webq user '", u.name(),
                       "': password_hash is not an Argon2 hash (make one with sqback "
                       "--hash_password)"));
    }
    o.users.push_back({u.name(), u.password_hash(), {u.addresses().begin(), u.addresses().end()},
                       u.admin()});
  }
  for (const auto& rule : spec.userconv()) {
    auto re = std::make_shared<RE2>(rule.pattern(), RE2::Quiet);
    std::string error;
    if (!re->ok() || !re->CheckRewriteString(rule.replacement(), &error)) {
      return absl::InvalidArgumentError(absl::StrCat(
          config.path, ": webq userconv '", rule.pattern(), "' -> '", rule.replacement(),
          "': ", re->ok() ? error : re->error()));
    }
    o.userconv.emplace_back(re, rule.replacement());
  }
  o.session_timeout = ToDuration(spec.session_timeout());
  o.users_may_whitelist = spec.users_may_whitelist();
  o.page_size = spec.page_size();
  o.secure_cookies = absl::StartsWith(WebqBaseUrl(spec), "https:");
  return o;
}

std::string WebqBaseUrl(const config::v1::WebqSpec& spec) {
  if (!spec.base_url().empty()) {
    return std::string(absl::StripSuffix(spec.base_url(), "/"));
  }
  return absl::StrCat("http://", spec.host(), ":", spec.port());
}

Webq::Webq(WebqOptions options, QuarantineStore* store, ReleaseFunction release, Signer signer,
           std::shared_ptr<policy::PolicyStore> lists)
    : options_(std::move(options)),
      store_(store),
      release_(std::move(release)),
      signer_(std::move(signer)),
      lists_(std::move(lists)) {}

Webq::~Webq() { Shutdown(); }

absl::Status Webq::Start() {
  net::HttpServerOptions o;
  o.host = options_.host;
  o.port = options_.port;
  o.name = "webq";
  o.allow_post = true;
  o.blocking_handler = true;
  o.workers = options_.workers;
  http_ = std::make_unique<net::HttpServer>(o, [this](const HttpRequest& r) { return Handle(r); });
  return http_->Start();
}

int Webq::port() const { return http_ == nullptr ? 0 : http_->port(); }

void Webq::Shutdown() {
  if (http_ != nullptr) http_->Shutdown();
}

std::set<std::string> Webq::AddressesOf(const WebqAccount& account) const {
  std::set<std::string> out;
  for (const std::string& a : account.addresses) out.insert(Lower(a));
  for (const auto& [re, replacement] : options_.userconv) {
    std::string address = account.name;
    if (RE2::FullMatch(account.name, *re)) {
      RE2::Replace(&address, *re, replacement);
      out.insert(Lower(address));
      break;
    }
  }
  return out;
}

std::string Webq::CsrfFor(const std::string& cookie) const {
  // A signature of the session cookie: only a page we served knows it.
  std::string signed_cookie = signer_.Sign(absl::StrCat("csrf\n", cookie));
  return signed_cookie.substr(signed_cookie.find('.') + 1);
}

std::optional<Webq::Session> Webq::CurrentSession(const HttpRequest& request) const {
  std::string cookie = request.Cookie(kCookie);
  if (cookie.empty()) return std::nullopt;
  absl::StatusOr<std::string> payload = signer_.Verify(cookie);
  if (!payload.ok()) return std::nullopt;
  std::vector<std::string> f = absl::StrSplit(*payload, '\n');
  int64_t expires = 0;
  if (f.size() != 3 || f[0] != "session" || !absl::SimpleAtoi(f[2], &expires) ||
      absl::FromUnixSeconds(expires) <= absl::Now()) {
    return std::nullopt;
  }
  for (const WebqAccount& a : options_.users) {
    if (a.name == f[1]) {
      Session s;
      s.account = &a;
      s.addresses = AddressesOf(a);
      s.cookie = cookie;
      s.csrf = CsrfFor(cookie);
      return s;
    }
  }
  return std::nullopt;  // removed from the configuration since
}

bool Webq::CsrfOk(const Session& session, const HttpRequest& request) const {
  auto it = request.form.find("csrf");
  if (it == request.form.end() || it->second.size() != session.csrf.size()) return false;
  return sodium_memcmp(it->second.data(), session.csrf.data(), session.csrf.size()) == 0;
}

absl::StatusOr<v1::Entry> Webq::Visible(const Session& session, const std::string& id,
                                        std::string* message) const {
  absl::StatusOr<v1::Entry> entry = store_->Get(id, message);
  if (!entry.ok()) return entry.status();
  bool mine = session.account->admin;
  for (const std::string& r : entry->envelope().recipients()) {
    mine = mine || session.addresses.count(Lower(r)) > 0;
  }
  if (!mine) {
    if (message != nullptr) message->clear();
    return absl::NotFoundError("no such message");
  }
  return entry;
}

HttpResponse Webq::Handle(const HttpRequest& request) const {
  const std::string& path = request.path;
  bool post = request.method == "POST";
  if (path == "/login") return post ? Login(request) : LoginPage("");
  if (path == "/r") return ReleaseLinkPage(request);
  if (path == "/logout") {
    HttpResponse r = Redirect("/login");
    r.headers.emplace_back("Set-Cookie",
                           absl::StrCat(kCookie, "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"));
    return r;
  }
  std::optional<Session> session = CurrentSession(request);
  if (!session) return post ? Html(403, "Logged out", "<p>Please <a href=\"/login\">log in</a>.</p>")
                            : Redirect("/login");
  if (post) {
    if (!CsrfOk(*session, request)) {
      return Html(403, "Refused", "<p class=\"error\">This form is not valid any more (missing or "
                                  "wrong token). Go back, reload the page and try again.</p>",
                  session->account->name);
    }
    if (path == "/release") return Release(*session, request);
    if (path == "/delete") return Delete(*session, request);
    if (path == "/whitelist") return Whitelist(*session, request);
    return Html(404, "Not found", "", session->account->name);
  }
  if (path == "/") return ListPage(*session, request);
  if (path == "/view") return ViewPage(*session, request);
  if (path == "/raw") return Raw(*session, request);
  return Html(404, "Not found", "<p>No such page.</p>", session->account->name);
}

HttpResponse Webq::LoginPage(const std::string& error) const {
  std::string body;
  if (!error.empty()) absl::StrAppend(&body, "<p class=\"error\">", HtmlEscape(error), "</p>");
  absl::StrAppend(&body,
                  "<form method=\"post\" action=\"/login\">"
                  "<label>Name <input name=\"user\" id=\"user\" autocomplete=\"username\"></label><br>"
                  "<label>Password <input name=\"password\" id=\"password\" type=\"password\" "
                  "autocomplete=\"current-password\"></label><br>"
                  "<button type=\"submit\" id=\"login\">Log in</button></form>");
  return Html(error.empty() ? 200 : 401, "Log in", body);
}

HttpResponse Webq::Login(const HttpRequest& request) const {
  auto field = [&](const char* name) {
    auto it = request.form.find(name);
    return it == request.form.end() ? std::string() : it->second;
  };
  std::string user = field("user");
  std::string password = field("password");
  const WebqAccount* account = nullptr;
  for (const WebqAccount& a : options_.users) {
    if (a.name == user) account = &a;
  }
  // An unknown name costs as much as a wrong password, so timing tells nothing.
  static const std::string* dummy = [] {
    auto h = HashPassword("not a password");
    return new std::string(h.ok() ? *h : "");
  }();
  bool ok = VerifyPassword(account != nullptr ? account->password_hash : *dummy, password) &&
            account != nullptr;
  if (!ok) {
    LOG(WARNING) << "webq: failed login for '" << user << "'";
    return LoginPage("Wrong name or password.");
  }
  absl::Time expires = absl::Now() + options_.session_timeout;
  std::string cookie =
      signer_.Sign(absl::StrCat("session\n", account->name, "\n", absl::ToUnixSeconds(expires)));
  HttpResponse r = Redirect("/");
  r.headers.emplace_back(
      "Set-Cookie",
      absl::StrCat(kCookie, "=", cookie, "; Path=/; Max-Age=",
                   absl::ToInt64Seconds(options_.session_timeout), "; HttpOnly; SameSite=Strict",
                   options_.secure_cookies ? "; Secure" : ""));
  LOG(INFO) << "webq: '" << account->name << "' logged in";
  return r;
}

HttpResponse Webq::ListPage(const Session& s, const HttpRequest& request) const {
  auto q = [&](const char* name) {
    auto it = request.query.find(name);
    return it == request.query.end() ? std::string() : it->second;
  };
  v1::ListRequest req;
  req.set_page_size(options_.page_size);
  req.set_sender(q("sender"));
  req.set_subject_contains(q("subject"));
  req.set_detection_contains(q("detection"));
  req.set_page_token(q("page"));
  std::string error;
  for (const char* field : {"since", "until"}) {
    if (q(field).empty()) continue;
    absl::Time t;
    std::string err;
    if (!absl::ParseTime("%Y-%m-%d", q(field), absl::UTCTimeZone(), &t, &err)) {
      error = absl::StrCat("'", q(field), "' is not a day (YYYY-MM-DD).");
    } else if (field == std::string("since")) {
      req.mutable_stored_after()->set_seconds(absl::ToUnixSeconds(t));
    } else {
      req.mutable_stored_before()->set_seconds(absl::ToUnixSeconds(t));
    }
  }
  std::string recipient = Lower(q("recipient"));
  bool nothing = false;
  if (s.account->admin) {
    if (!recipient.empty()) req.add_recipients(recipient);
  } else if (!recipient.empty()) {
    // A user may narrow to one of their own addresses, never widen.
    if (s.addresses.count(recipient) > 0) {
      req.add_recipients(recipient);
    } else {
      nothing = true;
    }
  } else {
    for (const std::string& a : s.addresses) req.add_recipients(a);
    nothing = s.addresses.empty();
  }
  v1::ListResponse page;
  if (!nothing && error.empty()) {
    absl::StatusOr<v1::ListResponse> got = store_->List(req);
    if (got.ok()) {
      page = *std::move(got);
    } else if (got.status().code() == absl::StatusCode::kInvalidArgument) {
      error = "That page does not exist.";
    } else {
      LOG(WARNING) << "webq list: " << got.status();
      return Html(503, "Quarantine unavailable",
                  "<p class=\"error\">The quarantine database is not available. Try again "
                  "later.</p>",
                  s.account->name);
    }
  }
  std::string body = "<form method=\"get\" action=\"/\" id=\"search\">";
  for (const auto& [name, label] : std::vector<std::pair<std::string, std::string>>{
           {"sender", "Sender"}, {"subject", "Subject contains"},
           {"detection", "Detection contains"}, {"recipient", "Recipient"},
           {"since", "Since (YYYY-MM-DD)"}, {"until", "Until"}}) {
    absl::StrAppend(&body, "<label>", HtmlEscape(label), " <input name=\"", name, "\" id=\"q-",
                    name, "\" value=\"", HtmlEscape(q(name.c_str())), "\"></label> ");
  }
  absl::StrAppend(&body, "<button type=\"submit\" id=\"search-button\">Search</button></form>");
  if (!error.empty()) absl::StrAppend(&body, "<p class=\"error\">", HtmlEscape(error), "</p>");
  if (page.entries().empty()) {
    absl::StrAppend(&body, "<p id=\"empty\">No quarantined mail.</p>");
  } else {
    absl::StrAppend(&body,
                    "<table id=\"entries\"><tr><th>Stored</th><th>From</th><th>To</th>"
                    "<th>Subject</th><th>Detection</th><th>Level</th><th>Released</th></tr>");
    for (const v1::Entry& e : page.entries()) {
      std::string from = e.from().empty() ? e.envelope().sender() : e.from();
      bool released = std::any_of(e.releases().begin(), e.releases().end(),
                                  [](const v1::ReleaseRecord& r) { return r.code() / 100 == 2; });
      absl::StrAppend(
          &body, "<tr><td>", Time(e.stored_at()), "</td><td>", HtmlEscape(from), "</td><td>",
          HtmlEscape(absl::StrJoin(e.envelope().recipients(), ", ")),
          "</td><td><a class=\"subject\" href=\"/view?id=", UrlEncode(e.id()), "\">",
          HtmlEscape(e.subject().empty() ? "(no subject)" : e.subject()), "</a></td><td>",
          HtmlEscape(e.detection()), "</td><td>", absl::StrFormat("%.2f", e.level()),
          "</td><td>", released ? "yes" : "", "</td></tr>");
    }
    absl::StrAppend(&body, "</table>");
  }
  if (!page.next_page_token().empty()) {
    std::string link = "/?";
    for (const char* name : {"sender", "subject", "detection", "recipient", "since", "until"}) {
      if (!q(name).empty()) absl::StrAppend(&link, name, "=", UrlEncode(q(name)), "&");
    }
    absl::StrAppend(&link, "page=", UrlEncode(page.next_page_token()));
    absl::StrAppend(&body, "<p><a id=\"next\" href=\"", HtmlEscape(link), "\">Older</a></p>");
  }
  return Html(200, "Quarantine", body, s.account->name);
}

HttpResponse Webq::ViewPage(const Session& s, const HttpRequest& request) const {
  auto it = request.query.find("id");
  std::string id = it == request.query.end() ? "" : it->second;
  std::string message;
  absl::StatusOr<v1::Entry> e = Visible(s, id, &message);
  if (!e.ok()) {
    return Html(e.status().code() == absl::StatusCode::kNotFound ? 404 : 503, "Not found",
                "<p>No such message in your quarantine.</p>", s.account->name);
  }
  std::string body = "<table id=\"meta\">";
  for (const auto& [label, value] : std::vector<std::pair<std::string, std::string>>{
           {"Stored", Time(e->stored_at())},
           {"Envelope sender", e->envelope().sender().empty() ? "<>" : e->envelope().sender()},
           {"Recipients", absl::StrJoin(e->envelope().recipients(), ", ")},
           {"From", e->from()},
           {"Subject", e->subject()},
           {"Detection", absl::StrCat(e->detection(), " (level ",
                                      absl::StrFormat("%.2f", e->level()), ")")},
           {"Scanner", e->scanner_path()},
           {"Client", e->envelope().client().helo().empty()
                          ? e->envelope().client().address()
                          : absl::StrCat(e->envelope().client().address(), " (HELO ",
                                         e->envelope().client().helo(), ")")},
           {"Size", absl::StrCat(e->size(), " bytes")},
           {"Quarantine id", e->id()}}) {
    absl::StrAppend(&body, "<tr><th>", HtmlEscape(label), "</th><td>", HtmlEscape(value),
                    "</td></tr>");
  }
  absl::StrAppend(&body, "</table>");
  if (!e->releases().empty()) {
    absl::StrAppend(&body, "<h2>Releases</h2><ul id=\"releases\">");
    for (const auto& r : e->releases()) {
      absl::StrAppend(&body, "<li>", Time(r.released_at()), " by ", HtmlEscape(r.released_by()),
                      " to ", HtmlEscape(r.recipient()), ": ", r.code(), " ",
                      HtmlEscape(r.text()), "</li>");
    }
    absl::StrAppend(&body, "</ul>");
  }
  std::string hidden = absl::StrCat(HiddenField("id", e->id()), HiddenField("csrf", s.csrf));
  absl::StrAppend(&body, "<p><form class=\"inline\" method=\"post\" action=\"/release\">", hidden,
                  "<button type=\"submit\" id=\"release\">",
                  s.account->admin ? "Release to the recipients" : "Release to my mailbox",
                  "</button></form> ");
  absl::StrAppend(&body, "<form class=\"inline\" method=\"post\" action=\"/delete\">", hidden,
                  "<button type=\"submit\" id=\"delete\">Delete</button></form> ");
  if (lists_ != nullptr && (s.account->admin || options_.users_may_whitelist) &&
      !e->envelope().sender().empty()) {
    absl::StrAppend(&body, "<form class=\"inline\" method=\"post\" action=\"/whitelist\">",
                    hidden, "<button type=\"submit\" id=\"whitelist\">Whitelist the sender ",
                    HtmlEscape(e->envelope().sender()), "</button></form>");
  }
  absl::StrAppend(&body, " <a id=\"raw\" href=\"/raw?id=", UrlEncode(e->id()),
                  "\">Download</a></p>");
  absl::StrAppend(&body, "<h2>Header</h2><pre id=\"header\">", HtmlEscape(HeaderBlock(message)),
                  "</pre><h2>Text</h2><pre id=\"text\">",
                  HtmlEscape(SafeText(message, 256 * 1024)), "</pre>");
  return Html(200, e->subject().empty() ? "(no subject)" : e->subject(), body, s.account->name);
}

HttpResponse Webq::Raw(const Session& s, const HttpRequest& request) const {
  auto it = request.query.find("id");
  std::string message;
  absl::StatusOr<v1::Entry> e =
      Visible(s, it == request.query.end() ? "" : it->second, &message);
  if (!e.ok()) return Html(404, "Not found", "<p>No such message in your quarantine.</p>");
  HttpResponse r{200, "application/octet-stream", std::move(message)};
  // Ids are qm-<digits>-<digits>-<alnum>: safe in the header as they are.
  r.headers.emplace_back("Content-Disposition",
                         absl::StrCat("attachment; filename=\"", e->id(), ".eml\""));
  AddSecurityHeaders(&r);
  return r;
}

HttpResponse Webq::Release(const Session& s, const HttpRequest& request) const {
  auto it = request.form.find("id");
  std::string id = it == request.form.end() ? "" : it->second;
  absl::StatusOr<v1::Entry> e = Visible(s, id, nullptr);
  if (!e.ok()) return Html(404, "Not found", "<p>No such message in your quarantine.</p>",
                           s.account->name);
  v1::ReleaseRequest req;
  req.set_id(id);
  req.set_released_by(s.account->name);
  if (!s.account->admin) {
    // A user gets their own copy, never someone else's.
    for (const std::string& r : e->envelope().recipients()) {
      if (s.addresses.count(Lower(r)) > 0) req.add_to(r);
    }
  }
  absl::StatusOr<v1::ReleaseResponse> done = release_(req);
  if (!done.ok()) {
    return Html(503, "Not released",
                absl::StrCat("<p class=\"error\">The mail system did not take the message now (",
                             HtmlEscape(done.status().message()),
                             "). Try again later.</p><p><a href=\"/view?id=", UrlEncode(id),
                             "\">Back</a></p>"),
                s.account->name);
  }
  std::string body = "<ul id=\"results\">";
  for (const auto& r : done->results()) {
    absl::StrAppend(&body, "<li class=\"", r.code() / 100 == 2 ? "ok" : "error", "\">",
                    HtmlEscape(r.recipient()), ": ", r.code(), " ", HtmlEscape(r.text()), "</li>");
  }
  absl::StrAppend(&body, "</ul><p><a href=\"/view?id=", UrlEncode(id), "\">Back</a></p>");
  return Html(200, done->delivered() ? "Released" : "Not released", body, s.account->name);
}

HttpResponse Webq::Delete(const Session& s, const HttpRequest& request) const {
  auto it = request.form.find("id");
  std::string id = it == request.form.end() ? "" : it->second;
  absl::StatusOr<v1::Entry> e = Visible(s, id, nullptr);
  if (!e.ok()) return Html(404, "Not found", "<p>No such message in your quarantine.</p>",
                           s.account->name);
  if (!s.account->admin) {
    for (const std::string& r : e->envelope().recipients()) {
      if (s.addresses.count(Lower(r)) == 0) {
        return Html(403, "Not deleted",
                    "<p class=\"error\">This message is also addressed to others: only an "
                    "administrator can delete it.</p>",
                    s.account->name);
      }
    }
  }
  absl::StatusOr<int> n = store_->Delete({id});
  if (!n.ok()) {
    return Html(503, "Not deleted", "<p class=\"error\">The quarantine database is not "
                                    "available. Try again later.</p>",
                s.account->name);
  }
  LOG(INFO) << "webq: '" << s.account->name << "' deleted " << id;
  return Redirect("/");
}

HttpResponse Webq::Whitelist(const Session& s, const HttpRequest& request) const {
  if (lists_ == nullptr || !(s.account->admin || options_.users_may_whitelist)) {
    return Html(403, "Not allowed", "<p>Whitelisting is not offered to you.</p>",
                s.account->name);
  }
  auto it = request.form.find("id");
  std::string id = it == request.form.end() ? "" : it->second;
  absl::StatusOr<v1::Entry> e = Visible(s, id, nullptr);
  if (!e.ok()) return Html(404, "Not found", "<p>No such message in your quarantine.</p>",
                           s.account->name);
  absl::StatusOr<std::string> value =
      policy::NormalizeListValue(policy::ListKind::kWS, e->envelope().sender());
  if (!value.ok()) {
    return Html(400, "Not whitelisted",
                absl::StrCat("<p class=\"error\">", HtmlEscape(value.status().message()), "</p>"),
                s.account->name);
  }
  policy::ListEntry entry;
  entry.kind = policy::ListKind::kWS;
  entry.value = *value;
  entry.created = absl::Now();
  entry.comment = absl::StrCat("webq: ", s.account->name, " from ", id);
  absl::Status added = lists_->AddListEntry(entry);
  if (!added.ok()) {
    return Html(503, "Not whitelisted", "<p class=\"error\">The list database is not "
                                        "available. Try again later.</p>",
                s.account->name);
  }
  LOG(INFO) << "webq: '" << s.account->name << "' whitelisted sender " << *value;
  return Html(200, "Whitelisted",
              absl::StrCat("<p class=\"ok\" id=\"whitelisted\">Mail from ", HtmlEscape(*value),
                           " is no longer held by the policy checks.</p><p><a href=\"/view?id=",
                           UrlEncode(id), "\">Back</a></p>"),
              s.account->name);
}

HttpResponse Webq::ReleaseLinkPage(const HttpRequest& request) const {
  const auto& fields = request.method == "POST" ? request.form : request.query;
  auto it = fields.find("t");
  std::string token = it == fields.end() ? "" : it->second;
  absl::StatusOr<ReleaseLink> link = VerifyReleaseLink(signer_, token, absl::Now());
  if (!link.ok()) {
    bool expired = link.status().code() == absl::StatusCode::kDeadlineExceeded;
    return Html(expired ? 410 : 403, expired ? "Link expired" : "Invalid link",
                expired ? "<p>This release link has expired. Log in to webq to release the "
                          "message.</p>"
                        : "<p>This release link is not valid.</p>");
  }
  absl::StatusOr<v1::Entry> e = store_->Get(link->id, nullptr);
  bool addressed = false;
  if (e.ok()) {
    for (const std::string& r : e->envelope().recipients()) {
      addressed = addressed || Lower(r) == Lower(link->recipient);
    }
  }
  if (!e.ok() || !addressed) {
    return Html(404, "Not found", "<p>The message is no longer in quarantine.</p>");
  }
  for (const auto& r : e->releases()) {
    if (r.released_by() == "link" && r.code() / 100 == 2 &&
        Lower(r.recipient()) == Lower(link->recipient)) {
      return Html(410, "Already released",
                  absl::StrCat("<p id=\"already\">This message was already released to ",
                               HtmlEscape(link->recipient), " with this link.</p>"));
    }
  }
  if (request.method != "POST") {
    // A GET changes nothing: mail clients and scanners fetch links on their own.
    return Html(200, "Release from quarantine",
                absl::StrCat("<p>Subject: <b>", HtmlEscape(e->subject()), "</b><br>From: ",
                             HtmlEscape(e->from()), "<br>Detection: ", HtmlEscape(e->detection()),
                             "</p><form method=\"post\" action=\"/r\">", HiddenField("t", token),
                             "<button type=\"submit\" id=\"release\">Release to ",
                             HtmlEscape(link->recipient), "</button></form>"));
  }
  v1::ReleaseRequest req;
  req.set_id(link->id);
  req.add_to(link->recipient);
  req.set_released_by("link");
  absl::StatusOr<v1::ReleaseResponse> done = release_(req);
  if (!done.ok() || !done->delivered()) {
    return Html(503, "Not released",
                "<p class=\"error\">The mail system did not take the message now. Try the link "
                "again later.</p>");
  }
  return Html(200, "Released",
              absl::StrCat("<p class=\"ok\" id=\"released\">The message was released to ",
                           HtmlEscape(link->recipient), ".</p>"));
}

}  // namespace sagator::quarantine
