#include "scanner-svc/scanners/clamd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/config.h"

namespace sagator::scanners {
namespace {

constexpr char kDefaultAddress[] = "unix:/var/run/clamav/clamd.ctl";
constexpr absl::Duration kDefaultTimeout = absl::Seconds(60);
constexpr int kDefaultChunkSize = 262144;
constexpr int kMinChunkSize = 1024;
constexpr int kMaxChunkSize = 4194304;
// clamd's replies are one short line; anything longer is not clamd.
constexpr size_t kMaxReplySize = 64 * 1024;
// Longest a wait goes without looking at ctx.CheckAlive(), so that a cancelled
// caller stops the scan promptly even while clamd is still scanning.
constexpr absl::Duration kAliveCheckInterval = absl::Milliseconds(100);
// The NUL-terminated form of the command: sizeof includes the terminating NUL.
constexpr char kInstreamCommand[] = "zINSTREAM";
constexpr char kTooLargeReply[] = "INSTREAM size limit exceeded";
constexpr char kPath[] = "clamd()";

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

std::string ErrnoText(int err) {
  char buf[256];
  // GNU strerror_r: returns a pointer to the text, not always into buf.
  return strerror_r(err, buf, sizeof(buf));
}

// The limits of one scan: the earlier of the scanner's timeout and the caller's
// deadline, plus the caller's liveness.
class ScanBounds {
 public:
  ScanBounds(const engine::ScanContext& ctx, absl::Duration timeout,
             const std::string& address)
      : ctx_(ctx),
        timeout_(timeout),
        deadline_(std::min(absl::Now() + timeout, ctx.deadline())),
        address_(address) {}

  absl::Time deadline() const { return deadline_; }

  absl::Status Error(absl::StatusCode code, absl::string_view what) const {
    return absl::Status(code, absl::StrCat("clamd at ", address_, ": ", what));
  }
  absl::Status ErrnoError(absl::string_view op, int err) const {
    return Error(absl::StatusCode::kUnavailable, absl::StrCat(op, ": ", ErrnoText(err)));
  }

  // OK while the scan may go on; otherwise why not, saying what we were doing.
  absl::Status Check(absl::string_view doing) const {
    absl::Status alive = ctx_.CheckAlive();
    if (!alive.ok()) {
      return Error(alive.code(), absl::StrCat(alive.message(), " while ", doing));
    }
    if (absl::Now() >= deadline_) {
      return Error(absl::StatusCode::kDeadlineExceeded,
                   absl::StrCat("timed out after ", absl::FormatDuration(timeout_),
                                " while ", doing));
    }
    return absl::OkStatus();
  }

  // How long the next single wait may last before the limits are checked again.
  absl::Duration NextWait() const {
    return std::min(deadline_ - absl::Now(), kAliveCheckInterval);
  }

 private:
  const engine::ScanContext& ctx_;
  absl::Duration timeout_;
  absl::Time deadline_;
  const std::string& address_;
};

// Waits until fd reports one of `events` (or an error/hangup); returns revents.
absl::StatusOr<short> WaitFor(int fd, short events, const ScanBounds& bounds,
                              absl::string_view doing) {
  while (true) {
    absl::Status s = bounds.Check(doing);
    if (!s.ok()) return s;
    absl::Duration wait = absl::Ceil(bounds.NextWait(), absl::Milliseconds(1));
    pollfd p{fd, events, 0};
    int rc = poll(
        &p, 1, static_cast<int>(std::max<int64_t>(absl::ToInt64Milliseconds(wait), 1)));
    if (rc < 0) {
      if (errno == EINTR) continue;
      return bounds.ErrnoError("poll", errno);
    }
    if (rc > 0) return p.revents;
  }
}

// Runs getaddrinfo on a helper thread so that a slow resolver cannot hold the scan
// past its deadline; a lookup that is given up on finishes in the background.
absl::StatusOr<std::vector<SocketAddress>> Resolve(const std::string& host, uint16_t port,
                                                   const ScanBounds& bounds) {
  struct Lookup {
    absl::Mutex mu;
    bool done ABSL_GUARDED_BY(mu) = false;
    int rc ABSL_GUARDED_BY(mu) = 0;
    std::vector<SocketAddress> addresses ABSL_GUARDED_BY(mu);
  };
  auto run = [](const std::string& host, const std::string& port, int flags, int* rc) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV | flags;
    addrinfo* res = nullptr;
    std::vector<SocketAddress> out;
    *rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (*rc != 0) return out;
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
      SocketAddress a;
      std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
      a.length = ai->ai_addrlen;
      out.push_back(a);
    }
    freeaddrinfo(res);
    return out;
  };
  const std::string port_text = absl::StrCat(port);
  auto failed = [&](int rc) {
    return bounds.Error(absl::StatusCode::kUnavailable,
                        absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc)));
  };

  // IP literals need no resolver: answer at once.
  int rc = 0;
  std::vector<SocketAddress> numeric = run(host, port_text, AI_NUMERICHOST, &rc);
  if (rc == 0) return numeric;
  if (rc != EAI_NONAME) return failed(rc);

  auto lookup = std::make_shared<Lookup>();
  try {
    std::thread([lookup, host, port_text, run] {
      int rc = 0;
      std::vector<SocketAddress> found = run(host, port_text, 0, &rc);
      absl::MutexLock lock(&lookup->mu);
      lookup->rc = rc;
      lookup->addresses = std::move(found);
      lookup->done = true;
    }).detach();
  } catch (const std::system_error& e) {
    return bounds.Error(absl::StatusCode::kUnavailable,
                        absl::StrCat("cannot start a name lookup: ", e.what()));
  }
  absl::MutexLock lock(&lookup->mu);
  while (!lookup->done) {
    absl::Status s = bounds.Check(absl::StrCat("resolving ", host));
    if (!s.ok()) return s;
    lookup->mu.AwaitWithTimeout(absl::Condition(&lookup->done), bounds.NextWait());
  }
  if (lookup->rc != 0) return failed(lookup->rc);
  if (lookup->addresses.empty()) {
    return bounds.Error(absl::StatusCode::kUnavailable,
                        absl::StrCat("no address for ", host));
  }
  return std::move(lookup->addresses);
}

absl::StatusOr<UniqueFd> ConnectUnix(const std::string& path, const ScanBounds& bounds) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());  // Length checked at creation.
  while (true) {
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return bounds.ErrnoError("socket", errno);
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0) {
      return fd;
    }
    int err = errno;
    // EAGAIN: clamd's listen backlog is full. Unix sockets cannot be polled for
    // that, so try again shortly, within the limits.
    if (err != EAGAIN && err != EINTR) return bounds.ErrnoError("connect", err);
    absl::Status s = bounds.Check("connecting");
    if (!s.ok()) return s;
    absl::SleepFor(std::min(bounds.NextWait(), absl::Milliseconds(5)));
  }
}

absl::StatusOr<UniqueFd> ConnectTcp(const SocketAddress& address,
                                    const ScanBounds& bounds) {
  UniqueFd fd(socket(address.storage.ss_family,
                     SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd.valid()) return bounds.ErrnoError("socket", errno);
  // Without it the final small chunks wait for delayed ACKs (about 40 ms a scan).
  int one = 1;
  if (setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
    return bounds.ErrnoError("setsockopt(TCP_NODELAY)", errno);
  }
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address.storage),
              address.length) == 0) {
    return fd;
  }
  if (errno != EINPROGRESS && errno != EINTR) return bounds.ErrnoError("connect", errno);
  absl::StatusOr<short> ready = WaitFor(fd.get(), POLLOUT, bounds, "connecting");
  if (!ready.ok()) return ready.status();
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) return bounds.ErrnoError("connect", err);
  return fd;
}

enum class SendOutcome {
  kSent,
  // clamd closed the connection or answered before we were done: read its reply.
  kPeerStopped,
};

// Sends the buffers in full, waiting within the limits when the socket is full.
absl::StatusOr<SendOutcome> SendAll(int fd, iovec* iov, int count,
                                    const ScanBounds& bounds) {
  auto drop_empty = [&] {
    while (count > 0 && iov->iov_len == 0) {
      ++iov;
      --count;
    }
  };
  drop_empty();
  while (count > 0) {
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = count;
    ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      size_t left = static_cast<size_t>(n);
      while (count > 0 && left >= iov->iov_len) {
        left -= iov->iov_len;
        ++iov;
        --count;
      }
      if (left > 0) {
        iov->iov_base = static_cast<char*>(iov->iov_base) + left;
        iov->iov_len -= left;
      }
      drop_empty();
      continue;
    }
    int err = errno;
    if (err == EINTR) continue;
    if (err == EPIPE || err == ECONNRESET) return SendOutcome::kPeerStopped;
    if (err != EAGAIN && err != EWOULDBLOCK) return bounds.ErrnoError("send", err);
    absl::StatusOr<short> ready =
        WaitFor(fd, POLLOUT | POLLIN, bounds, "sending the message");
    if (!ready.ok()) return ready.status();
    if (*ready & POLLIN) return SendOutcome::kPeerStopped;
    // POLLOUT, or POLLERR/POLLHUP that the next sendmsg reports.
  }
  return SendOutcome::kSent;
}

// Reads up to the reply's terminating NUL (not included). Sets *terminated when the
// NUL was seen; otherwise the connection ended early and the text is what came.
absl::StatusOr<std::string> ReadReply(int fd, const ScanBounds& bounds,
                                      bool* terminated) {
  std::string reply;
  char buf[4096];
  *terminated = false;
  while (true) {
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      size_t old_size = reply.size();
      reply.append(buf, static_cast<size_t>(n));
      size_t nul = reply.find('\0', old_size);
      if (nul != std::string::npos) {
        reply.resize(nul);
        *terminated = true;
        return reply;
      }
      if (reply.size() > kMaxReplySize) {
        return bounds.Error(absl::StatusCode::kInternal,
                            absl::StrCat("reply longer than ", kMaxReplySize, " bytes"));
      }
      continue;
    }
    if (n == 0) return reply;
    int err = errno;
    if (err == EINTR) continue;
    if (err == ECONNRESET || err == EPIPE) return reply;
    if (err != EAGAIN && err != EWOULDBLOCK) return bounds.ErrnoError("recv", err);
    absl::StatusOr<short> ready = WaitFor(fd, POLLIN, bounds, "waiting for the reply");
    if (!ready.ok()) return ready.status();
  }
}

// The reply for an error message: printable as is, other bytes as \xNN, cut at 200.
std::string Quote(absl::string_view text) {
  constexpr size_t kMaxShown = 200;
  std::string shown = "'";
  for (char c : text.substr(0, kMaxShown)) {
    if (absl::ascii_isprint(static_cast<unsigned char>(c))) {
      shown.push_back(c);
    } else {
      absl::StrAppend(&shown, "\\x",
                      absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    }
  }
  absl::StrAppend(&shown, text.size() > kMaxShown ? "...'" : "'");
  return shown;
}

engine::ScanResult TooLarge(std::string reply) {
  engine::ScanResult r;
  r.name = ClamdScanner::kTooLargeName;
  r.output = std::move(reply);
  r.path = kPath;
  r.not_scanned = true;
  return r;
}

absl::StatusOr<engine::ScanResult> InterpretReply(std::string reply, bool terminated,
                                                  bool peer_stopped,
                                                  const ScanBounds& bounds) {
  // Checked first, and also on a cut-short reply: clamd closes right after it.
  if (absl::StartsWith(reply, kTooLargeReply)) return TooLarge(std::move(reply));
  if (!terminated) {
    if (reply.empty()) {
      return bounds.Error(absl::StatusCode::kUnavailable,
                          peer_stopped ? "closed the connection during the upload, "
                                         "without a reply"
                                       : "closed the connection without a reply");
    }
    return bounds.Error(absl::StatusCode::kUnavailable,
                        absl::StrCat("reply cut short: ", Quote(reply)));
  }
  absl::string_view text = absl::StripAsciiWhitespace(reply);
  if (text == "stream: OK") {
    engine::ScanResult r = engine::ScanResult::Clean(kPath);
    r.output = std::move(reply);
    return r;
  }
  constexpr absl::string_view kPrefix = "stream: ";
  constexpr absl::string_view kFound = " FOUND";
  if (absl::StartsWith(text, kPrefix) && absl::EndsWith(text, kFound) &&
      text.size() > kPrefix.size() + kFound.size()) {
    absl::string_view name = absl::StripAsciiWhitespace(
        text.substr(kPrefix.size(), text.size() - kPrefix.size() - kFound.size()));
    if (!name.empty()) {
      return engine::ScanResult::Detected(1.0, std::string(name), kPath,
                                          std::move(reply));
    }
  }
  if (absl::EndsWith(text, "ERROR")) {
    return bounds.Error(absl::StatusCode::kUnavailable,
                        absl::StrCat("clamd failed: ", Quote(text)));
  }
  return bounds.Error(absl::StatusCode::kInternal,
                      absl::StrCat("unexpected reply ", Quote(text)));
}

}  // namespace

absl::StatusOr<engine::ScanResult> ClamdScanner::Scan(engine::ScanContext& ctx) const {
  const ScanBounds bounds(ctx, timeout_, address_);
  // A dead caller gets its answer without clamd ever seeing the message.
  if (absl::Status s = bounds.Check("starting"); !s.ok()) return s;

  UniqueFd fd;
  if (!unix_path_.empty()) {
    absl::StatusOr<UniqueFd> c = ConnectUnix(unix_path_, bounds);
    if (!c.ok()) return c.status();
    fd = *std::move(c);
  } else {
    absl::StatusOr<std::vector<SocketAddress>> addresses = Resolve(host_, port_, bounds);
    if (!addresses.ok()) return addresses.status();
    absl::Status last;
    for (const SocketAddress& a : *addresses) {
      absl::StatusOr<UniqueFd> c = ConnectTcp(a, bounds);
      if (c.ok()) {
        fd = *std::move(c);
        break;
      }
      last = c.status();
      // Out of time or cancelled: the other addresses would not fare better.
      if (!absl::IsUnavailable(last)) return last;
    }
    if (!fd.valid()) return last;
  }

  const absl::string_view message = ctx.message();
  static constexpr uint32_t kEndOfStream = 0;
  const size_t chunk_size = static_cast<size_t>(chunk_size_);
  size_t offset = 0;
  bool first = true;
  bool last = false;
  bool peer_stopped = false;
  while (!last) {
    if (!first) {
      if (absl::Status s = bounds.Check("sending the message"); !s.ok()) return s;
    }
    iovec iov[4];
    int count = 0;
    if (first) {
      iov[count++] = {const_cast<char*>(kInstreamCommand), sizeof(kInstreamCommand)};
    }
    const size_t length = std::min(chunk_size, message.size() - offset);
    const uint32_t length_be = htonl(static_cast<uint32_t>(length));
    if (length > 0) {
      iov[count++] = {const_cast<uint32_t*>(&length_be), sizeof(length_be)};
      iov[count++] = {const_cast<char*>(message.data() + offset), length};
    }
    offset += length;
    last = offset == message.size();
    if (last) iov[count++] = {const_cast<uint32_t*>(&kEndOfStream), sizeof(kEndOfStream)};
    absl::StatusOr<SendOutcome> sent = SendAll(fd.get(), iov, count, bounds);
    if (!sent.ok()) return sent.status();
    if (*sent == SendOutcome::kPeerStopped) {
      peer_stopped = true;
      break;
    }
    first = false;
  }

  bool terminated = false;
  absl::StatusOr<std::string> reply = ReadReply(fd.get(), bounds, &terminated);
  if (!reply.ok()) return reply.status();
  return InterpretReply(*std::move(reply), terminated, peer_stopped, bounds);
}

absl::StatusOr<std::unique_ptr<engine::Scanner>> MakeClamdScanner(
    const config::v1::ClamdSpec& spec,
    std::function<std::string(absl::string_view)> resolve_path) {
  const std::string address = spec.address().empty() ? kDefaultAddress : spec.address();
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("clamd(): address '", address, "': ", why));
  };

  absl::Duration timeout =
      ToDuration(spec.timeout());
  if (timeout == absl::ZeroDuration()) timeout = kDefaultTimeout;
  if (timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("clamd(): timeout must be positive");
  }
  const int chunk_size = spec.chunk_size() == 0 ? kDefaultChunkSize : spec.chunk_size();
  if (chunk_size < kMinChunkSize || chunk_size > kMaxChunkSize) {
    return absl::InvalidArgumentError(absl::StrCat("clamd(): chunk_size ", chunk_size,
                                                   " is outside [", kMinChunkSize, ", ",
                                                   kMaxChunkSize, "]"));
  }

  std::string unix_path;
  std::string host;
  int port = 0;
  if (absl::StartsWith(address, "unix:")) {
    unix_path = address.substr(5);
    if (unix_path.empty()) return invalid("empty socket path");
    if (unix_path[0] != '/' && resolve_path) unix_path = resolve_path(unix_path);
  } else if (absl::StartsWith(address, "/")) {
    unix_path = address;
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      return invalid("expected \"unix:/path\", \"/path\" or \"host:port\"");
    }
    host = address.substr(0, colon);
    const std::string port_text = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    } else if (absl::StrContains(host, ':')) {
      return invalid("write an IPv6 address in brackets: [addr]:port");
    }
    if (host.empty()) return invalid("empty host");
    if (port_text.empty() ||
        !std::all_of(port_text.begin(), port_text.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(port_text, &port) || port < 1 || port > 65535) {
      return invalid("port must be a number from 1 to 65535");
    }
  }

  std::string canonical;
  if (!unix_path.empty()) {
    if (unix_path.size() >= sizeof(sockaddr_un::sun_path)) {
      return invalid(absl::StrCat("socket path longer than ",
                                  sizeof(sockaddr_un::sun_path) - 1, " bytes"));
    }
    if (unix_path.find('\0') != std::string::npos) return invalid("NUL in socket path");
    canonical = absl::StrCat("unix:", unix_path);
  } else {
    canonical = absl::StrContains(host, ':') ? absl::StrCat("[", host, "]:", port)
                                             : absl::StrCat(host, ":", port);
  }
  return std::unique_ptr<engine::Scanner>(
      new ClamdScanner(std::move(canonical), std::move(unix_path), std::move(host),
                       static_cast<uint16_t>(port), timeout, chunk_size));
}

}  // namespace sagator::scanners
