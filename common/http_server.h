// A small HTTP/1.1 server for SAGATOR's own pages: each service's GET /metrics,
// collector-svc's graph page and quarantine-svc's webq. Requests are read with
// Boost.Beast on common/tcp_server's I/O thread and answered there by a quick handler
// (or on a worker pool, see blocking_handler).
//
//   HttpServer http({.host = "127.0.0.1", .port = 0, .name = "metrics"},
//                   [&](const HttpRequest& r) { return HttpResponse::Text(render()); });
//   absl::Status s = http.Start();
//
// GET and HEAD are served, and POST when `allow_post` (forms: an
// application/x-www-form-urlencoded body is decoded into `form`); other methods get
// 405. Requests over 64 KiB get 413; a client idle for `timeout` is closed. A handler
// that blocks (SQL, SMTP: webq) sets `blocking_handler`, and then runs on a pool of
// `workers` threads instead of the I/O thread. Thread-safe like TcpServer.
#ifndef SAGATOR_COMMON_HTTP_SERVER_H_
#define SAGATOR_COMMON_HTTP_SERVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sagator::net {

class TcpServer;

struct HttpRequest {
  std::string method;
  // The path without the query ("/graph/messages.svg").
  std::string path;
  // Decoded query parameters.
  std::map<std::string, std::string> query;
  // Header fields, names in lower case (the last of repeated ones).
  std::map<std::string, std::string> headers;
  // Decoded fields of a POSTed form.
  std::map<std::string, std::string> form;

  // The value of cookie `name` in the Cookie header, or "".
  std::string Cookie(absl::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Further header fields (Set-Cookie, Location, Content-Security-Policy, ...).
  std::vector<std::pair<std::string, std::string>> headers;

  static HttpResponse Text(std::string body) { return {200, "text/plain; charset=utf-8", std::move(body)}; }
  static HttpResponse NotFound() { return {404, "text/plain; charset=utf-8", "not found\n"}; }
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  // For logs.
  std::string name = "http";
  absl::Duration timeout = absl::Seconds(30);
  int max_connections = 256;
  // Serve POST forms too.
  bool allow_post = false;
  // Run the handler on `workers` pool threads (it may block) instead of the I/O thread.
  bool blocking_handler = false;
  int workers = 1;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  HttpServer(HttpServerOptions options, Handler handler);
  ~HttpServer();

  absl::Status Start();
  int port() const;
  void Shutdown();

 private:
  HttpServerOptions opt_;
  Handler handler_;
  std::unique_ptr<TcpServer> server_;
};

// Decodes %XX and '+' in a query component.
std::string UrlDecode(absl::string_view s);

// Encodes a query component: everything but unreserved characters becomes %XX.
std::string UrlEncode(absl::string_view s);

// &, <, >, " and ' as entities: text that is safe inside HTML and attribute values.
std::string HtmlEscape(absl::string_view s);

// Decodes "a=1&b=2" (a query string or a form body); the last of repeated names wins.
std::map<std::string, std::string> ParseUrlEncoded(absl::string_view s);

}  // namespace sagator::net

#endif  // SAGATOR_COMMON_HTTP_SERVER_H_
