#include "scanner-svc/scanners/daemon_io.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace sagator::scanners::daemon_io {
namespace {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};


// Runs getaddrinfo on a helper thread so that a slow resolver cannot hold the scan
// past its deadline; a lookup that is given up on finishes in the background.
absl::StatusOr<std::vector<SocketAddress>> Resolve(const std::string& host, uint16_t port,
                                                   const Bounds& bounds) {
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

absl::StatusOr<UniqueFd> ConnectUnix(const std::string& path, const Bounds& bounds) {
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
                                    const Bounds& bounds) {
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

}  // namespace

std::string ErrnoText(int err) {
  char buf[256];
  // GNU strerror_r: returns a pointer to the text, not always into buf.
  return strerror_r(err, buf, sizeof(buf));
}

absl::StatusOr<short> WaitFor(int fd, short events, const Bounds& bounds,
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

absl::StatusOr<UniqueFd> Connect(const Address& address, const Bounds& bounds) {
  if (!address.unix_path.empty()) return ConnectUnix(address.unix_path, bounds);
  absl::StatusOr<std::vector<SocketAddress>> addresses = Resolve(address.host, address.port, bounds);
  if (!addresses.ok()) return addresses.status();
  absl::Status last;
  for (const SocketAddress& a : *addresses) {
    absl::StatusOr<UniqueFd> c = ConnectTcp(a, bounds);
    if (c.ok()) return c;
    last = c.status();
    // Out of time or cancelled: the other addresses would not fare better.
    if (!absl::IsUnavailable(last)) return last;
  }
  return last;
}

absl::StatusOr<SendOutcome> SendAll(int fd, iovec* iov, int count,
                                    const Bounds& bounds) {
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

absl::StatusOr<std::string> Read(int fd, const Bounds& bounds, size_t max_bytes,
                                 const std::function<bool(const std::string&)>& done,
                                 bool* complete) {
  std::string reply;
  char buf[16384];
  *complete = false;
  while (true) {
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      reply.append(buf, static_cast<size_t>(n));
      if (done(reply)) {
        *complete = true;
        return reply;
      }
      if (reply.size() > max_bytes) {
        return bounds.Error(absl::StatusCode::kInternal,
                            absl::StrCat("reply longer than ", max_bytes, " bytes"));
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


absl::StatusOr<Address> ParseAddress(absl::string_view text,
                                     const std::function<std::string(absl::string_view)>& resolve_path,
                                     absl::string_view who) {
  const std::string address(text);
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": address '", address, "': ", why));
  };
  Address out;
  int port = 0;
  if (absl::StartsWith(address, "unix:")) {
    out.unix_path = address.substr(5);
    if (out.unix_path.empty()) return invalid("empty socket path");
    if (out.unix_path[0] != '/' && resolve_path) out.unix_path = resolve_path(out.unix_path);
  } else if (absl::StartsWith(address, "/")) {
    out.unix_path = address;
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      return invalid("expected \"unix:/path\", \"/path\" or \"host:port\"");
    }
    out.host = address.substr(0, colon);
    const std::string port_text = address.substr(colon + 1);
    if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
      out.host = out.host.substr(1, out.host.size() - 2);
    } else if (absl::StrContains(out.host, ':')) {
      return invalid("write an IPv6 address in brackets: [addr]:port");
    }
    if (out.host.empty()) return invalid("empty host");
    if (port_text.empty() ||
        !std::all_of(port_text.begin(), port_text.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(port_text, &port) || port < 1 || port > 65535) {
      return invalid("port must be a number from 1 to 65535");
    }
    out.port = static_cast<uint16_t>(port);
  }
  if (!out.unix_path.empty()) {
    if (out.unix_path.size() >= sizeof(sockaddr_un::sun_path)) {
      return invalid(absl::StrCat("socket path longer than ",
                                  sizeof(sockaddr_un::sun_path) - 1, " bytes"));
    }
    if (out.unix_path.find('\0') != std::string::npos) return invalid("NUL in socket path");
    out.canonical = absl::StrCat("unix:", out.unix_path);
  } else {
    out.canonical = absl::StrContains(out.host, ':') ? absl::StrCat("[", out.host, "]:", out.port)
                                                     : absl::StrCat(out.host, ":", out.port);
  }
  return out;
}

}  // namespace sagator::scanners::daemon_io
