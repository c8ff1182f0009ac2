#include "services/smtpd/next_hop.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace sagator::smtpd {
namespace {

// Replies longer than this are a broken peer.
constexpr size_t kMaxReplyBytes = 64 * 1024;

// RFC 3461 xtext for XFORWARD values.
std::string XtextEncode(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 33 || c > 126 || c == '+' || c == '=') {
      absl::StrAppendFormat(&out, "+%02X", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

int PollOne(int fd, short events, absl::Time deadline) {
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return 0;
    struct pollfd p = {fd, events, 0};
    int r = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

}  // namespace

std::string NextHopAddress::ToString() const {
  if (!unix_path.empty()) return absl::StrCat("unix:", unix_path);
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<NextHopAddress> ParseNextHop(absl::string_view text) {
  NextHopAddress a;
  if (absl::ConsumePrefix(&text, "unix:")) {
    if (text.empty() || text[0] != '/' || text.size() >= sizeof(sockaddr_un::sun_path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("next hop 'unix:", text, "': need an absolute path under 108 bytes"));
    }
    a.unix_path = std::string(text);
    return a;
  }
  absl::string_view host, port;
  if (absl::StartsWith(text, "[")) {
    size_t close = text.find("]:");
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("next hop '", text, "': expected [host]:port"));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos || text.find(':') != colon) {
      return absl::InvalidArgumentError(
          absl::StrCat("next hop '", text, "': expected host:port, [host]:port or unix:/path"));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty() || !absl::SimpleAtoi(port, &a.port) || a.port <= 0 || a.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("next hop '", text, "': bad host or port"));
  }
  a.host = std::string(host);
  return a;
}

NextHopClient::NextHopClient(Options options) : opt_(std::move(options)) {}

NextHopClient::~NextHopClient() { Quit(); }

void NextHopClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  buf_.clear();
  in_transaction_ = false;
}

Reply NextHopClient::Fail(const std::string& what) {
  Close();
  return Reply{451, "4.4.1",
               absl::StrCat("Error: next hop ", opt_.address.ToString(), " ", what)};
}

Reply NextHopClient::Connect() {
  absl::Time deadline = absl::Now() + opt_.timeout;
  int fd = -1;
  std::string error;
  if (!opt_.address.unix_path.empty()) {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, opt_.address.unix_path.c_str(), sizeof(sa.sun_path) - 1);
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 &&
        errno != EINPROGRESS && errno != EAGAIN) {
      error = strerror(errno);
      close(fd);
      fd = -1;
    }
  } else {
    struct addrinfo hints = {};
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* res = nullptr;
    int rc = getaddrinfo(opt_.address.host.c_str(), std::to_string(opt_.address.port).c_str(),
                         &hints, &res);
    if (rc != 0) return Fail(absl::StrCat("cannot be resolved: ", gai_strerror(rc)));
    for (struct addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
      fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) continue;
      if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        error = strerror(errno);
        close(fd);
        fd = -1;
      }
    }
    freeaddrinfo(res);
  }
  if (fd < 0) return Fail(absl::StrCat("unavailable: ", error.empty() ? "no address" : error));
  fd_ = fd;
  if (PollOne(fd_, POLLOUT, deadline) <= 0) return Fail("unavailable: connect timeout");
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return Fail(absl::StrCat("unavailable: ", strerror(err)));
  int one = 1;
  if (opt_.address.unix_path.empty()) setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  Reply greeting = ReadReply();
  if (!connected()) return greeting;
  if (greeting.code != 220) {
    Reply r = greeting;
    Close();
    if (!r.transient()) r.code = 451;  // a refusal to talk is not the sender's fault
    r.enhanced = "4.4.1";
    return r;
  }
  const bool lmtp = opt_.dialect == Dialect::kLmtp;
  Reply ehlo = Command(absl::StrCat(lmtp ? "LHLO " : "EHLO ", opt_.helo_name));
  if (!connected()) return ehlo;
  if (!ehlo.positive() && !lmtp) ehlo = Command(absl::StrCat("HELO ", opt_.helo_name));
  if (!ehlo.positive()) {
    Close();
    return Reply{451, "4.4.1",
                 absl::StrCat("Error: next hop ", opt_.address.ToString(),
                              " refused the greeting: ", ehlo.code, " ", ehlo.text)};
  }
  xforward_attrs_.clear();
  for (absl::string_view line : absl::StrSplit(ehlo.text, '\n')) {
    std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.empty()) continue;
    std::string kw = absl::AsciiStrToUpper(words[0]);
    if (kw == "XFORWARD") {
      xforward_attrs_.assign(words.begin() + 1, words.end());
      for (std::string& w : xforward_attrs_) w = absl::AsciiStrToUpper(w);
    }
  }
  return Reply{220, "2.0.0", "connected"};
}

bool NextHopClient::WriteAll(absl::string_view data) {
  absl::Time deadline = absl::Now() + opt_.timeout;
  while (!data.empty()) {
    ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      deadline = absl::Now() + opt_.timeout;  // the timeout is per stall, not per message
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (PollOne(fd_, POLLOUT, deadline) <= 0) return false;
      continue;
    }
    return false;
  }
  return true;
}

Reply NextHopClient::ReadReply() {
  absl::Time deadline = absl::Now() + opt_.timeout;
  std::vector<std::string> texts;
  int code = 0;
  for (;;) {
    size_t nl = buf_.find('\n');
    if (nl == std::string::npos) {
      if (buf_.size() > kMaxReplyBytes) return Fail("sent an over-long reply");
      int r = PollOne(fd_, POLLIN, deadline);
      if (r <= 0) return Fail("timed out");
      char tmp[8192];
      ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return Fail("closed the connection");
      buf_.append(tmp, static_cast<size_t>(n));
      continue;
    }
    std::string line = buf_.substr(0, nl);
    buf_.erase(0, nl + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    int c = 0;
    if (line.size() < 3 || !absl::SimpleAtoi(line.substr(0, 3), &c) || c < 200 || c > 599 ||
        (line.size() > 3 && line[3] != ' ' && line[3] != '-') || (code != 0 && c != code)) {
      return Fail(absl::StrCat("sent a malformed reply: ", line.substr(0, 80)));
    }
    code = c;
    texts.push_back(line.size() > 4 ? line.substr(4) : "");
    if (line.size() == 3 || line[3] == ' ') break;
  }
  Reply r = ParseReplyLines(code, texts);
  if (code == 421) {
    Close();
    r.code = 451;  // the hop is going away: try again later
  }
  return r;
}

Reply NextHopClient::Command(const std::string& line) {
  if (!WriteAll(absl::StrCat(line, "\r\n"))) return Fail("closed the connection");
  return ReadReply();
}

Reply NextHopClient::Mail(const std::string& sender, int64_t size, bool eightbit,
                          const std::map<std::string, std::string>& xforward) {
  if (connected() && in_transaction_) Reset();
  if (!connected()) {
    Reply r = Connect();
    if (!connected()) return r;
  }
  if (!xforward_attrs_.empty() && !xforward.empty()) {
    std::vector<std::string> parts;
    for (const auto& [name, value] : xforward) {
      for (const std::string& a : xforward_attrs_) {
        if (a == name) parts.push_back(absl::StrCat(name, "=", XtextEncode(value)));
      }
    }
    if (!parts.empty()) {
      Reply x = Command(absl::StrCat("XFORWARD ", absl::StrJoin(parts, " ")));
      if (!connected()) return x;
    }
  }
  std::string cmd = absl::StrCat("MAIL FROM:<", sender, ">");
  if (size >= 0) absl::StrAppend(&cmd, " SIZE=", size);
  if (eightbit) absl::StrAppend(&cmd, " BODY=8BITMIME");
  Reply r = Command(cmd);
  in_transaction_ = connected() && r.positive();
  return r;
}

Reply NextHopClient::Recipient(const std::string& recipient) {
  if (!connected() || !in_transaction_) {
    return Reply{451, "4.3.0", "Error: no transaction with the next hop"};
  }
  return Command(absl::StrCat("RCPT TO:<", recipient, ">"));
}

std::vector<Reply> NextHopClient::Data(absl::string_view message, size_t accepted) {
  const size_t replies = opt_.dialect == Dialect::kLmtp ? accepted : 1;
  auto all = [replies](const Reply& r) { return std::vector<Reply>(replies, r); };
  if (!connected() || !in_transaction_) {
    return all(Reply{451, "4.3.0", "Error: no transaction with the next hop"});
  }
  Reply go = Command("DATA");
  if (!connected()) return all(go);
  if (go.code != 354) {
    in_transaction_ = false;
    Reset();
    return all(go);
  }
  // Dot-stuffing and CRLF line ends, whatever the message uses, written in pieces
  // so that no second copy of a large message is held.
  constexpr size_t kPiece = 64 * 1024;
  std::string wire;
  wire.reserve(kPiece + 1024);
  size_t pos = 0;
  bool ok = true;
  while (ok && pos < message.size()) {
    size_t nl = message.find('\n', pos);
    size_t end = nl == absl::string_view::npos ? message.size() : nl;
    absl::string_view line = message.substr(pos, end - pos);
    absl::ConsumeSuffix(&line, "\r");
    if (absl::StartsWith(line, ".")) wire.push_back('.');
    wire.append(line.data(), line.size());
    wire.append("\r\n");
    pos = end + 1;
    if (wire.size() >= kPiece) {
      ok = WriteAll(wire);
      wire.clear();
    }
  }
  wire.append(".\r\n");
  if (!ok || !WriteAll(wire)) return all(Fail("closed the connection during DATA"));
  std::vector<Reply> out;
  for (size_t i = 0; i < replies; ++i) {
    Reply r = ReadReply();
    if (!connected()) {
      // The replies that did not come: those recipients are retried.
      while (out.size() < replies) out.push_back(r);
      return out;
    }
    out.push_back(r);
  }
  in_transaction_ = false;
  return out;
}

void NextHopClient::Reset() {
  if (!connected() || !in_transaction_) return;
  in_transaction_ = false;
  Reply r = Command("RSET");
  if (connected() && !r.positive()) Close();
}

void NextHopClient::Quit() {
  if (!connected()) return;
  // Best effort; a slow hop does not hold us up for long.
  WriteAll("QUIT\r\n");
  Close();
}

absl::StatusOr<std::unique_ptr<NextHopClient>> RelayClient(const std::string& relay,
                                                           absl::Duration timeout,
                                                           const std::string& helo_name) {
  auto address = ParseNextHop(relay);
  if (!address.ok()) return address.status();
  return std::make_unique<NextHopClient>(NextHopClient::Options{
      .address = *address, .dialect = Dialect::kSmtp, .timeout = timeout, .helo_name = helo_name});
}

Reply SendMessage(NextHopClient& hop, const std::string& sender,
                  const std::vector<std::string>& recipients, absl::string_view message) {
  Reply r = hop.Mail(sender, static_cast<int64_t>(message.size()), true, {});
  for (size_t i = 0; r.positive() && i < recipients.size(); ++i) r = hop.Recipient(recipients[i]);
  if (r.positive()) {
    std::vector<Reply> done = hop.Data(message, recipients.size());
    r = done.empty() ? Reply{451, "4.4.1", "no reply to DATA"} : done.front();
  }
  hop.Quit();
  return r;
}

}  // namespace sagator::smtpd
