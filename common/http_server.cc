#include "common/http_server.h"

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <glog/logging.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/tcp_server.h"

namespace sagator::net {

namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

constexpr size_t kMaxRequestBytes = 64 * 1024;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

HttpRequest Parse(const http::request<http::string_body>& req) {
  HttpRequest r;
  r.method = std::string(req.method_string());
  absl::string_view target(req.target().data(), req.target().size());
  size_t q = target.find('?');
  r.path = UrlDecode(target.substr(0, q));
  if (q != absl::string_view::npos) r.query = ParseUrlEncoded(target.substr(q + 1));
  for (const auto& field : req) {
    r.headers[absl::AsciiStrToLower(absl::string_view(field.name_string().data(),
                                                      field.name_string().size()))] =
        std::string(field.value());
  }
  if (req.method() == http::verb::post &&
      absl::StartsWith(absl::AsciiStrToLower(r.headers["content-type"]),
                       "application/x-www-form-urlencoded")) {
    r.form = ParseUrlEncoded(req.body());
  }
  return r;
}

}  // namespace

std::map<std::string, std::string> ParseUrlEncoded(absl::string_view s) {
  std::map<std::string, std::string> out;
  for (absl::string_view kv : absl::StrSplit(s, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    out[UrlDecode(p.first)] = UrlDecode(p.second);
  }
  return out;
}

std::string UrlEncode(absl::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[(static_cast<unsigned char>(c) >> 4) & 0xf]);
      out.push_back(kHex[static_cast<unsigned char>(c) & 0xf]);
    }
  }
  return out;
}

std::string HtmlEscape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string HttpRequest::Cookie(absl::string_view name) const {
  auto it = headers.find("cookie");
  if (it == headers.end()) return "";
  for (absl::string_view part : absl::StrSplit(it->second, ';')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::StartsWith(part, name) && part.size() > name.size() && part[name.size()] == '=') {
      return std::string(part.substr(name.size() + 1));
    }
  }
  return "";
}

std::string UrlDecode(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : opt_(std::move(options)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() { Shutdown(); }

int HttpServer::port() const { return server_ == nullptr ? 0 : server_->port(); }

void HttpServer::Shutdown() {
  if (server_ != nullptr) server_->Shutdown();
}

absl::Status HttpServer::Start() {
  TcpServerOptions o;
  o.host = opt_.host;
  o.port = opt_.port;
  o.name = opt_.name;
  o.max_connections = opt_.max_connections;
  o.refuse_line = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  o.shutdown_grace = absl::Seconds(1);
  o.workers = opt_.workers;
  server_ = std::make_unique<TcpServer>(
      o, [this](std::shared_ptr<Connection> c) -> awaitable<void> {
        beast::flat_buffer buffer;
        boost::system::error_code ec;
        while (true) {
          http::request_parser<http::string_body> parser;
          parser.header_limit(kMaxRequestBytes);
          parser.body_limit(kMaxRequestBytes);
          c->Arm(opt_.timeout);
          co_await http::async_read(c->sock, buffer, parser, redirect_error(use_awaitable, ec));
          if (ec == http::error::header_limit || ec == http::error::body_limit) {
            std::string line =
                "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            co_await ReplyAndClose(c, line, opt_.timeout);
            co_return;
          }
          if (ec) break;
          http::request<http::string_body>& req = parser.get();
          HttpResponse answer;
          bool allowed = req.method() == http::verb::get || req.method() == http::verb::head ||
                         (opt_.allow_post && req.method() == http::verb::post);
          if (!allowed) {
            answer = {405, "text/plain; charset=utf-8",
                      opt_.allow_post ? "only GET, HEAD and POST\n" : "only GET and HEAD\n"};
          } else if (opt_.blocking_handler) {
            auto work = [this, parsed = Parse(req)]() { return handler_(parsed); };
            answer = co_await RunOnPool(server_->pool(), work, use_awaitable);
          } else {
            HttpRequest parsed = Parse(req);
            answer = handler_(parsed);
          }
          http::response<http::string_body> res;
          res.version(req.version());
          res.result(static_cast<http::status>(answer.status));
          res.set(http::field::server, "SAGATOR");
          res.set(http::field::content_type, answer.content_type);
          res.set(http::field::cache_control, "no-store");
          for (const auto& [name, value] : answer.headers) res.insert(name, value);
          res.keep_alive(req.keep_alive());
          if (req.method() != http::verb::head) res.body() = std::move(answer.body);
          res.prepare_payload();
          bool keep = res.keep_alive();
          co_await http::async_write(c->sock, res, redirect_error(use_awaitable, ec));
          if (ec || !keep) break;
        }
        c->Disarm();
        c->sock.shutdown(tcp::socket::shutdown_send, ec);
        c->sock.close(ec);
      });
  return server_->Start();
}

}  // namespace sagator::net
