// A small HTTP/1.1 server for SAGATOR's own pages: each service's GET /metrics and
// collector-svc's graph page. Requests are read with Boost.Beast on common/tcp_server's
// I/O thread and answered by a handler that must be quick (it runs on that thread).
//
//   HttpServer http({.host = "127.0.0.1", .port = 0, .name = "metrics"},
//                   [&](const HttpRequest& r) { return HttpResponse::Text(render()); });
//   absl::Status s = http.Start();
//
// Only GET and HEAD are served (405 otherwise); requests over 64 KiB get 413; a client
// idle for `timeout` is closed. Thread-safe like TcpServer.
#ifndef SAGATOR_COMMON_HTTP_SERVER_H_
#define SAGATOR_COMMON_HTTP_SERVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

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
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;

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

}  // namespace sagator::net

#endif  // SAGATOR_COMMON_HTTP_SERVER_H_
