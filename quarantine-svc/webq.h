// webq: the web quarantine, served over HTTP by quarantine-svc.
//
//   Webq webq(options, &store, release, signer, lists);
//   webq.Start();                  // http://host:port/
//
// Users log in with a name and password (Argon2id hashes in the configuration) and
// get a signed session cookie (HttpOnly, SameSite=Strict) that expires after
// session_timeout. A user sees and acts only on entries with one of their addresses
// among the recipients (their configured addresses plus what userconv makes of the
// login name); admins see everything. Every check is made on the server for every
// request, so crafted URLs get nothing more than the pages do.
//
// Pages: / (list, search, paging), /view?id= (headers and a safe text rendering),
// /raw?id= (download), POST /release, /delete, /whitelist (each with a CSRF token
// tied to the session), /r?t= (a signed one-click release link from a report: no
// login, one recipient, works once and until it expires).
//
// Safety: every value from a message or a request is HTML-escaped; pages carry a
// Content-Security-Policy without scripts; no SQL is built from strings (the store
// binds every value).
//
// Thread-safe: requests run on the HTTP server's worker threads; the options are
// immutable and the store and list store are thread-safe.
#ifndef SAGATOR_QUARANTINE_SVC_WEBQ_H_
#define SAGATOR_QUARANTINE_SVC_WEBQ_H_

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/config.h"
#include "common/http_server.h"
#include "quarantine-svc/quarantine_store.h"
#include "quarantine-svc/signing.h"
#include "re2/re2.h"
#include "scanner-svc/policy/policy_store.h"

namespace sagator::quarantine {

struct WebqAccount {
  std::string name;
  std::string password_hash;
  std::vector<std::string> addresses;
  bool admin = false;
};

struct WebqOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  std::vector<WebqAccount> users;
  // userconv: (pattern matching the whole login name, replacement).
  std::vector<std::pair<std::shared_ptr<RE2>, std::string>> userconv;
  absl::Duration session_timeout = absl::Hours(1);
  bool users_may_whitelist = false;
  int page_size = 50;
  // Cookies get the Secure attribute when webq is reached over https.
  bool secure_cookies = false;
  int workers = 4;
};

// The options of a quarantine service's webq entry (userconv patterns compiled).
absl::StatusOr<WebqOptions> WebqOptionsFromConfig(const LoadedConfig& config,
                                                  const config::v1::WebqSpec& spec);

// The base URL of webq for links: spec.base_url, else http://host:port.
std::string WebqBaseUrl(const config::v1::WebqSpec& spec);

using ReleaseFunction =
    std::function<absl::StatusOr<v1::ReleaseResponse>(const v1::ReleaseRequest&)>;

class Webq {
 public:
  // `lists` may be null: no whitelist action.
  Webq(WebqOptions options, QuarantineStore* store, ReleaseFunction release, Signer signer,
       std::shared_ptr<policy::PolicyStore> lists);
  ~Webq();

  absl::Status Start();
  int port() const;
  void Shutdown();

  // One request (the HTTP server calls it; tests may too).
  net::HttpResponse Handle(const net::HttpRequest& request) const;

 private:
  struct Session {
    const WebqAccount* account = nullptr;
    std::set<std::string> addresses;  // lower case
    std::string cookie;
    std::string csrf;
  };

  std::optional<Session> CurrentSession(const net::HttpRequest& request) const;
  std::set<std::string> AddressesOf(const WebqAccount& account) const;
  // The entry when `session` may see it; NotFound otherwise (the same answer for
  // "not yours" and "does not exist").
  absl::StatusOr<v1::Entry> Visible(const Session& session, const std::string& id,
                                    std::string* message) const;
  bool CsrfOk(const Session& session, const net::HttpRequest& request) const;
  std::string CsrfFor(const std::string& cookie) const;

  net::HttpResponse LoginPage(const std::string& error) const;
  net::HttpResponse Login(const net::HttpRequest& request) const;
  net::HttpResponse ListPage(const Session& s, const net::HttpRequest& request) const;
  net::HttpResponse ViewPage(const Session& s, const net::HttpRequest& request) const;
  net::HttpResponse Raw(const Session& s, const net::HttpRequest& request) const;
  net::HttpResponse Release(const Session& s, const net::HttpRequest& request) const;
  net::HttpResponse Delete(const Session& s, const net::HttpRequest& request) const;
  net::HttpResponse Whitelist(const Session& s, const net::HttpRequest& request) const;
  net::HttpResponse ReleaseLinkPage(const net::HttpRequest& request) const;

  const WebqOptions options_;
  QuarantineStore* store_;
  ReleaseFunction release_;
  const Signer signer_;
  std::shared_ptr<policy::PolicyStore> lists_;
  std::unique_ptr<net::HttpServer> http_;
};

// The readable text of a message for the view page: its text/plain parts (decoded
// to UTF-8), else its HTML parts with the tags removed; at most `limit` bytes. Not
// escaped: the caller escapes it.
std::string SafeText(absl::string_view message, size_t limit);

}  // namespace sagator::quarantine

#endif  // SAGATOR_QUARANTINE_SVC_WEBQ_H_
