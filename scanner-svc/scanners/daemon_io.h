// Blocking I/O with daemons (clamd, spamd, rspamd) for scanners: addresses
// ("unix:/path", "/path", "host:port", "[v6]:port"), name lookup and connect, sending
// and reading, every wait bounded by the earlier of the scanner's timeout and the
// scan's deadline, and stopped as soon as the caller goes away (ctx.CheckAlive()).
//
//   auto address = daemon_io::ParseAddress(spec.address(), resolve_path, "spamassassind()");
//   daemon_io::Bounds bounds(ctx, timeout, "spamd at " + address->canonical);
//   auto fd = daemon_io::Connect(*address, bounds);
//   daemon_io::SendAll(fd->get(), iov, n, bounds);
//   auto reply = daemon_io::Read(fd->get(), bounds, max, done, &complete);
//
// Errors: a daemon that cannot be reached or breaks off is Unavailable; the scan's
// time running out is DeadlineExceeded; a caller gone is Cancelled; each names the
// daemon. Thread-safe: no shared state.
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_DAEMON_IO_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_DAEMON_IO_H_

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::scanners::daemon_io {

// Longest a wait goes without looking at ctx.CheckAlive(), so that a cancelled
// caller stops the scan promptly even while the daemon is still working.
inline constexpr absl::Duration kAliveCheckInterval = absl::Milliseconds(100);

// Owns a file descriptor.
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


// Where a daemon listens; either unix_path, or host and port.
struct Address {
  // "unix:/absolute/path" or "host:port" ("[v6]:port").
  std::string canonical;
  std::string unix_path;
  std::string host;
  uint16_t port = 0;
};

// Parses "unix:/path", "/path" or "host:port" ("[v6addr]:port"); a relative "unix:"
// path goes through resolve_path (may be null). `who` prefixes errors, e.g. "clamd()".
absl::StatusOr<Address> ParseAddress(absl::string_view address,
                                     const std::function<std::string(absl::string_view)>& resolve_path,
                                     absl::string_view who);

std::string ErrnoText(int err);

// The limits of one scan: the earlier of the scanner's timeout and the caller's
// deadline, plus the caller's liveness.
class Bounds {
 public:
  // `who` names the daemon in errors, e.g. "clamd at unix:/run/clamd.ctl".
  Bounds(const engine::ScanContext& ctx, absl::Duration timeout, std::string who)
      : ctx_(ctx),
        timeout_(timeout),
        deadline_(std::min(absl::Now() + timeout, ctx.deadline())),
        who_(std::move(who)) {}

  absl::Time deadline() const { return deadline_; }

  absl::Status Error(absl::StatusCode code, absl::string_view what) const {
    return absl::Status(code, absl::StrCat(who_, ": ", what));
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
  std::string who_;
};


// Waits until fd reports one of `events` (or an error/hangup); returns revents.
absl::StatusOr<short> WaitFor(int fd, short events, const Bounds& bounds,
                              absl::string_view doing);

// Resolves (for host names) and connects, trying each address in turn.
absl::StatusOr<UniqueFd> Connect(const Address& address, const Bounds& bounds);

enum class SendOutcome {
  kSent,
  // The daemon closed the connection or answered before we were done: read its reply.
  kPeerStopped,
};

// Sends the buffers in full, waiting within the limits when the socket is full.
absl::StatusOr<SendOutcome> SendAll(int fd, iovec* iov, int count, const Bounds& bounds);

// Reads until `done(read so far)` is true (*complete = true), or the daemon closes
// the connection (*complete = false). More than max_bytes is an Internal error.
absl::StatusOr<std::string> Read(int fd, const Bounds& bounds, size_t max_bytes,
                                 const std::function<bool(const std::string&)>& done,
                                 bool* complete);

// Text from a daemon for an error message: printable as is, other bytes as \xNN,
// cut at 200.
std::string Quote(absl::string_view text);

}  // namespace sagator::scanners::daemon_io

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_DAEMON_IO_H_
