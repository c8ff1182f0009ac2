#include "services/sgfilterd/sgfilter_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/sgfilterd/sgfilter_protocol.h"

namespace sagator::sgfilterd {
namespace {

using Status = SgfilterCall::Status;

// The longest result line a client waits for before calling the reply broken.
constexpr size_t kMaxResultLine = 4096;

int PollMillis(absl::Duration timeout) {
  int64_t ms = absl::ToInt64Milliseconds(timeout);
  return ms > 1 << 30 ? 1 << 30 : static_cast<int>(ms);
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Connects with a timeout; the socket stays non-blocking.
Fd Connect(const SgfilterClientOptions& opt, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(opt.port);
  int rc = getaddrinfo(opt.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    *error = absl::StrCat("cannot resolve ", opt.host, ": ", gai_strerror(rc));
    return Fd();
  }
  std::string where = absl::StrCat(opt.host, ":", opt.port);
  *error = absl::StrCat("cannot connect to ", where);
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    Fd fd(socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) continue;
    int err = 0;
    if (connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        err = errno;
      } else {
        pollfd p{fd.get(), POLLOUT, 0};
        int n = poll(&p, 1, PollMillis(opt.timeout));
        if (n == 0) {
          err = ETIMEDOUT;
        } else if (n < 0) {
          err = errno;
        } else {
          socklen_t len = sizeof(err);
          if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        }
      }
    }
    if (err != 0) {
      *error = absl::StrCat("cannot connect to ", where, ": ", std::strerror(err));
      continue;
    }
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    freeaddrinfo(res);
    error->clear();
    return fd;
  }
  freeaddrinfo(res);
  return Fd();
}

// Sends everything, unless the server starts answering first (an early error
// reply): then it stops and returns true so the caller reads that reply.
bool SendAll(int fd, absl::string_view data, absl::Duration timeout, std::string* error) {
  while (!data.empty()) {
    pollfd p{fd, POLLOUT | POLLIN, 0};
    int n = poll(&p, 1, PollMillis(timeout));
    if (n == 0) {
      *error = "timeout sending to sgfilterd";
      return false;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = absl::StrCat("poll: ", std::strerror(errno));
      return false;
    }
    if (p.revents & POLLIN) return true;
    ssize_t w = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      // The server may have answered and closed; its reply may still be readable.
      if (errno == EPIPE || errno == ECONNRESET) return true;
      *error = absl::StrCat("send: ", std::strerror(errno));
      return false;
    }
    data.remove_prefix(static_cast<size_t>(w));
  }
  return true;
}

// Reads until the server closes. False on a timeout or an error.
bool ReadAll(int fd, absl::Duration timeout, std::string* out, std::string* error) {
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int n = poll(&p, 1, PollMillis(timeout));
    if (n == 0) {
      *error = "timeout waiting for sgfilterd's reply";
      return false;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = absl::StrCat("poll: ", std::strerror(errno));
      return false;
    }
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r == 0) return true;
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      *error = absl::StrCat("reading the reply: ", std::strerror(errno));
      return false;
    }
    out->append(buf, static_cast<size_t>(r));
  }
}

// Envelope addresses go on one line each: no line breaks, no brackets inside.
std::string CleanAddress(absl::string_view addr) {
  std::string out;
  for (char c : addr) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 32 || u == 127 || c == ' ' || c == '<' || c == '>') continue;
    out.push_back(c);
  }
  return out;
}

}  // namespace

SgfilterCall ParseReply(absl::string_view reply, absl::string_view original) {
  SgfilterCall call;
  call.status = Status::kBrokenReply;
  if (reply.empty()) {
    call.text = "sgfilterd closed the connection without a reply";
    return call;
  }
  size_t nl = reply.substr(0, kMaxResultLine).find('\n');
  if (nl == absl::string_view::npos) {
    call.text = "sgfilterd's reply has no result line";
    return call;
  }
  absl::StatusOr<ResultLine> line = ParseResultLine(reply.substr(0, nl));
  if (!line.ok()) {
    call.text = absl::StrCat("broken reply from sgfilterd: ", line.status().message());
    return call;
  }
  call.code = line->code;
  call.level = line->level;
  call.text = line->text;
  if (line->code == 451) {
    call.status = Status::kScanError;
    return call;
  }
  if (line->code != 250 && line->code != 251 && line->code != 550 && line->code != 551) {
    call.text =
        absl::StrCat("unexpected result code ", line->code, " from sgfilterd: ", line->text);
    return call;
  }
  absl::string_view rest = reply.substr(nl + 1);
  // The protocol allows more result lines; the first one decides.
  for (;;) {
    size_t next = rest.substr(0, kMaxResultLine).find('\n');
    if (next == absl::string_view::npos || !ParseResultLine(rest.substr(0, next)).ok()) break;
    rest.remove_prefix(next + 1);
  }
  if (rest.empty() && !original.empty()) {
    call.text = "sgfilterd's reply has no message";
    return call;
  }
  call.status = Status::kOk;
  call.message = std::string(rest);
  return call;
}

SgfilterCall CallSgfilterd(const SgfilterClientOptions& options, absl::string_view message) {
  SgfilterCall call;
  std::string error;
  Fd fd = Connect(options, &error);
  if (fd.get() < 0) {
    call.status = Status::kCannotConnect;
    call.text = error;
    return call;
  }
  std::string request = absl::StrCat("MAIL FROM: <", CleanAddress(options.sender), ">\n");
  std::vector<std::string> recipients;
  for (const std::string& r : options.recipients) {
    std::string clean = CleanAddress(r);
    if (!clean.empty()) recipients.push_back(std::move(clean));
  }
  if (recipients.empty()) recipients.push_back("postmaster");
  for (const std::string& r : recipients) absl::StrAppend(&request, "RCPT TO: <", r, ">\n");
  absl::StrAppend(&request, "DATA ", message.size(), "\n");
  if (!SendAll(fd.get(), request, options.timeout, &error) ||
      !SendAll(fd.get(), message, options.timeout, &error)) {
    call.status = Status::kBrokenReply;
    call.text = error;
    return call;
  }
  std::string reply;
  if (!ReadAll(fd.get(), options.timeout, &reply, &error)) {
    // A reset after a complete 451 line still counts as that 451.
    SgfilterCall partial = ParseReply(reply, message);
    if (partial.status == Status::kScanError) return partial;
    call.status = Status::kBrokenReply;
    call.text = error;
    return call;
  }
  return ParseReply(reply, message);
}

SgfilterOutput DecideOutput(const SgfilterCall& call, absl::string_view original, bool codes,
                            bool non_safe) {
  SgfilterOutput out;
  switch (call.status) {
    case Status::kOk: {
      out.message = call.message;
      bool detected =
          call.code == 550 || call.code == 551 || (call.code == 251 && call.level >= 1.0);
      out.exit_code = codes && detected ? kExitDetected : kExitOk;
      return out;
    }
    case Status::kCannotConnect:
      out.message = original;
      out.exit_code = non_safe ? kExitCannotTalk : kExitOk;
      out.warning = absl::StrCat(call.text, "; the message passes unscanned");
      return out;
    case Status::kScanError:
      out.message = original;
      out.exit_code = non_safe ? kExitScanError : kExitOk;
      out.warning = absl::StrCat("sgfilterd could not scan the message (", call.code, " ",
                                 call.text, "); it passes unscanned");
      return out;
    case Status::kBrokenReply:
      out.message = original;
      out.exit_code = non_safe ? kExitScanError : kExitOk;
      out.warning = absl::StrCat(call.text, "; the message passes unscanned");
      return out;
  }
  return out;
}

}  // namespace sagator::sgfilterd
