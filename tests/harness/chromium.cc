#include "tests/harness/chromium.h"

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace sagator::harness {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using boost::asio::ip::tcp;
using google::protobuf::Struct;
using google::protobuf::Value;

struct Browser::Connection {
  boost::asio::io_context io;
  websocket::stream<tcp::socket> ws{io};
};

namespace {

absl::StatusOr<Struct> ParseObject(const std::string& json) {
  Struct s;
  auto status = google::protobuf::util::JsonStringToMessage(json, &s);
  if (!status.ok()) return absl::InternalError(absl::StrCat("bad JSON from Chromium: ", json.substr(0, 200)));
  return s;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out);
  return out;
}

}  // namespace

std::string JsonQuote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == '<' || c == '>') {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out + "\"";
}

absl::StatusOr<std::unique_ptr<Browser>> Browser::Start(const std::string& dir) {
  std::unique_ptr<Browser> b(new Browser());
  std::string profile = absl::StrCat(dir, "/chromium-profile");
  b->process_ = std::make_unique<testing::Subprocess>(std::vector<std::string>{
      "/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
      "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
      "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1280,900",
      absl::StrCat("--user-data-dir=", profile), "about:blank"});
  b->process_->RedirectOutput(absl::StrCat(dir, "/chromium.log"));
  absl::Status s = b->process_->Start();
  if (!s.ok()) return s;
  // Chromium writes the port it bound into the profile.
  int port = 0;
  absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (port == 0 && absl::Now() < give_up) {
    std::ifstream in(absl::StrCat(profile, "/DevToolsActivePort"));
    std::string line;
    if (in && std::getline(in, line)) absl::SimpleAtoi(line, &port);
    if (port == 0) absl::SleepFor(absl::Milliseconds(50));
  }
  if (port == 0) return absl::UnavailableError("Chromium did not open its DevTools port");
  // The page target's WebSocket.
  std::string ws_path;
  while (ws_path.empty() && absl::Now() < give_up) {
    std::string reply = testing::TcpExchange(
        port, "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        absl::Seconds(10));
    size_t body = reply.find("\r\n\r\n");
    if (body != std::string::npos) {
      google::protobuf::ListValue list;
      if (google::protobuf::util::JsonStringToMessage(reply.substr(body + 4), &list).ok()) {
        for (const Value& v : list.values()) {
          const auto& f = v.struct_value().fields();
          if (f.count("type") && f.at("type").string_value() == "page" &&
              f.count("webSocketDebuggerUrl")) {
            std::string url = f.at("webSocketDebuggerUrl").string_value();
            ws_path = url.substr(url.find('/', strlen("ws://")));
            break;
          }
        }
      }
    }
    if (ws_path.empty()) absl::SleepFor(absl::Milliseconds(100));
  }
  if (ws_path.empty()) return absl::UnavailableError("Chromium has no page target");
  b->conn_ = std::make_unique<Connection>();
  boost::system::error_code ec;
  b->conn_->ws.next_layer().connect(
      tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("DevTools connect: ", ec.message()));
  timeval tv{60, 0};
  setsockopt(b->conn_->ws.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  b->conn_->ws.read_message_max(64 << 20);
  b->conn_->ws.handshake(absl::StrCat("127.0.0.1:", port), ws_path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("DevTools handshake: ", ec.message()));
  auto enabled = b->Call("Page.enable", "{}");
  if (!enabled.ok()) return enabled.status();
  return b;
}

Browser::~Browser() {
  if (conn_ != nullptr) {
    boost::system::error_code ec;
    conn_->ws.next_layer().close(ec);
  }
  if (process_ != nullptr) process_->Stop();
}

absl::StatusOr<std::string> Browser::Call(const std::string& method,
                                          const std::string& params_json) {
  int id = ++next_id_;
  std::string msg = absl::StrCat("{\"id\":", id, ",\"method\":", JsonQuote(method),
                                 ",\"params\":", params_json, "}");
  boost::system::error_code ec;
  conn_->ws.text(true);
  conn_->ws.write(boost::asio::buffer(msg), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("DevTools write: ", ec.message()));
  for (;;) {
    beast::flat_buffer buf;
    conn_->ws.read(buf, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("DevTools read (", method, "): ", ec.message()));
    auto reply = ParseObject(beast::buffers_to_string(buf.data()));
    if (!reply.ok()) return reply.status();
    const auto& f = reply->fields();
    if (!f.count("id") || static_cast<int>(f.at("id").number_value()) != id) continue;  // events
    if (f.count("error")) {
      return absl::InternalError(absl::StrCat(method, ": ", ToJson(f.at("error").struct_value())));
    }
    return f.count("result") ? ToJson(f.at("result").struct_value()) : "{}";
  }
}

absl::StatusOr<std::string> Browser::Evaluate(const std::string& expression) {
  auto r = Call("Runtime.evaluate",
                absl::StrCat("{\"expression\":", JsonQuote(expression),
                             ",\"returnByValue\":true,\"awaitPromise\":true}"));
  if (!r.ok()) return r.status();
  auto result = ParseObject(*r);
  if (!result.ok()) return result.status();
  const auto& f = result->fields();
  if (f.count("exceptionDetails")) {
    return absl::InternalError(
        absl::StrCat("JavaScript: ", ToJson(f.at("exceptionDetails").struct_value())));
  }
  if (!f.count("result")) return std::string();
  const auto& rf = f.at("result").struct_value().fields();
  if (!rf.count("value")) return std::string();
  const Value& v = rf.at("value");
  switch (v.kind_case()) {
    case Value::kStringValue:
      return v.string_value();
    case Value::kBoolValue:
      return std::string(v.bool_value() ? "true" : "false");
    case Value::kNumberValue:
      return absl::StrCat(v.number_value());
    default:
      return ToJson(v);
  }
}

absl::Status Browser::WaitFor(const std::string& expression, absl::Duration timeout) {
  absl::Time give_up = absl::Now() + timeout;
  std::string last;
  while (absl::Now() < give_up) {
    auto v = Evaluate(absl::StrCat("!!(", expression, ")"));
    if (v.ok() && *v == "true") return absl::OkStatus();
    last = v.ok() ? *v : std::string(v.status().message());
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat("waited in vain for ", expression, " (", last, ")"));
}

absl::Status Browser::Navigate(const std::string& url) {
  // A document that is replaced loses this mark: that tells the new one from the old.
  if (auto m = Evaluate("window.__sagatorOld = true"); !m.ok()) return m.status();
  auto r = Call("Page.navigate", absl::StrCat("{\"url\":", JsonQuote(url), "}"));
  if (!r.ok()) return r.status();
  return WaitFor("window.__sagatorOld === undefined && document.readyState === 'complete'");
}

absl::Status Browser::Fill(const std::string& selector, const std::string& value) {
  auto r = Evaluate(absl::StrCat("(() => { const e = document.querySelector(", JsonQuote(selector),
                                 "); if (!e) throw new Error('no ' + ", JsonQuote(selector),
                                 "); e.value = ", JsonQuote(value), "; return true; })()"));
  return r.status();
}

absl::Status Browser::Click(const std::string& selector) {
  if (auto m = Evaluate("window.__sagatorOld = true"); !m.ok()) return m.status();
  auto r = Evaluate(absl::StrCat("(() => { const e = document.querySelector(", JsonQuote(selector),
                                 "); if (!e) throw new Error('no ' + ", JsonQuote(selector),
                                 "); e.click(); return true; })()"));
  if (!r.ok()) return r.status();
  return WaitFor("window.__sagatorOld === undefined && document.readyState === 'complete'");
}

absl::Status Browser::Screenshot(const std::string& path) {
  auto r = Call("Page.captureScreenshot", "{\"format\":\"png\"}");
  if (!r.ok()) return r.status();
  auto result = ParseObject(*r);
  if (!result.ok()) return result.status();
  std::string png;
  if (!result->fields().count("data") ||
      !absl::Base64Unescape(result->fields().at("data").string_value(), &png)) {
    return absl::InternalError("no screenshot data");
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << png;
  return out.flush() ? absl::OkStatus()
                     : absl::UnavailableError(absl::StrCat("cannot write ", path));
}

}  // namespace sagator::harness
