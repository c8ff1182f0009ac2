#include "scanner-svc/scanners/clamd.h"

#include <arpa/inet.h>

#include <algorithm>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "scanner-svc/scanners/daemon_io.h"

namespace sagator::scanners {
namespace {

constexpr char kDefaultAddress[] = "unix:/var/run/clamav/clamd.ctl";
constexpr absl::Duration kDefaultTimeout = absl::Seconds(60);
constexpr int kDefaultChunkSize = 262144;
constexpr int kMinChunkSize = 1024;
constexpr int kMaxChunkSize = 4194304;
// clamd's replies are one short line; anything longer is not clamd.
constexpr size_t kMaxReplySize = 64 * 1024;
// The NUL-terminated form of the command: sizeof includes the terminating NUL.
constexpr char kInstreamCommand[] = "zINSTREAM";
constexpr char kTooLargeReply[] = "INSTREAM size limit exceeded";
constexpr char kPath[] = "clamd()";

engine::ScanResult TooLarge(std::string reply) {
  engine::ScanResult r;
  r.name = ClamdScanner::kTooLargeName;
  r.output = std::move(reply);
  r.path = kPath;
  r.not_scanned = true;
  return r;
}

// `subject` is what clamd names in its reply: "stream" for INSTREAM, the path for SCAN.
absl::StatusOr<engine::ScanResult> InterpretReply(std::string reply, bool terminated,
                                                  bool peer_stopped,
                                                  const daemon_io::Bounds& bounds,
                                                  absl::string_view subject) {
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
                        absl::StrCat("reply cut short: ", daemon_io::Quote(reply)));
  }
  absl::string_view text = absl::StripAsciiWhitespace(reply);
  const std::string prefix = absl::StrCat(subject, ": ");
  if (text == absl::StrCat(prefix, "OK")) {
    engine::ScanResult r = engine::ScanResult::Clean(kPath);
    r.output = std::move(reply);
    return r;
  }
  constexpr absl::string_view kFound = " FOUND";
  if (absl::StartsWith(text, prefix) && absl::EndsWith(text, kFound) &&
      text.size() > prefix.size() + kFound.size()) {
    absl::string_view name = absl::StripAsciiWhitespace(
        text.substr(prefix.size(), text.size() - prefix.size() - kFound.size()));
    if (!name.empty()) {
      return engine::ScanResult::Detected(1.0, std::string(name), kPath,
                                          std::move(reply));
    }
  }
  if (absl::EndsWith(text, "ERROR")) {
    return bounds.Error(absl::StatusCode::kUnavailable,
                        absl::StrCat("clamd failed: ", daemon_io::Quote(text)));
  }
  return bounds.Error(absl::StatusCode::kInternal,
                      absl::StrCat("unexpected reply ", daemon_io::Quote(text)));
}

}  // namespace

absl::StatusOr<engine::ScanResult> ClamdScanner::Scan(engine::ScanContext& ctx) const {
  const daemon_io::Bounds bounds(ctx, timeout_, absl::StrCat("clamd at ", address_.canonical));
  // A dead caller gets its answer without clamd ever seeing the message.
  if (absl::Status s = bounds.Check("starting"); !s.ok()) return s;

  absl::StatusOr<daemon_io::UniqueFd> fd = daemon_io::Connect(address_, bounds);
  if (!fd.ok()) return fd.status();

  bool terminated = false;
  auto until_nul = [](const std::string& r) { return r.find('\0') != std::string::npos; };
  if (scan_file_ && ctx.file_path().has_value()) {
    // clamd opens the file buffer2file wrote.
    std::string command = absl::StrCat("zSCAN ", *ctx.file_path());
    command.push_back('\0');
    iovec iov = {command.data(), command.size()};
    absl::StatusOr<daemon_io::SendOutcome> sent = daemon_io::SendAll(fd->get(), &iov, 1, bounds);
    if (!sent.ok()) return sent.status();
    absl::StatusOr<std::string> reply =
        daemon_io::Read(fd->get(), bounds, kMaxReplySize, until_nul, &terminated);
    if (!reply.ok()) return reply.status();
    if (terminated) reply->resize(reply->find('\0'));
    return InterpretReply(*std::move(reply), terminated, false, bounds, *ctx.file_path());
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
    absl::StatusOr<daemon_io::SendOutcome> sent = daemon_io::SendAll(fd->get(), iov, count, bounds);
    if (!sent.ok()) return sent.status();
    if (*sent == daemon_io::SendOutcome::kPeerStopped) {
      peer_stopped = true;
      break;
    }
    first = false;
  }

  // The reply ends at its NUL (not included).
  absl::StatusOr<std::string> reply =
      daemon_io::Read(fd->get(), bounds, kMaxReplySize, until_nul, &terminated);
  if (!reply.ok()) return reply.status();
  if (terminated) reply->resize(reply->find('\0'));
  return InterpretReply(*std::move(reply), terminated, peer_stopped, bounds, "stream");
}

absl::StatusOr<std::unique_ptr<engine::Scanner>> MakeClamdScanner(
    const config::v1::ClamdSpec& spec,
    std::function<std::string(absl::string_view)> resolve_path) {
  const std::string address = spec.address().empty() ? kDefaultAddress : spec.address();
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

  absl::StatusOr<daemon_io::Address> where =
      daemon_io::ParseAddress(address, resolve_path, "clamd()");
  if (!where.ok()) return where.status();
  return std::unique_ptr<engine::Scanner>(
      new ClamdScanner(*std::move(where), timeout, chunk_size, spec.scan_file()));
}

}  // namespace sagator::scanners
