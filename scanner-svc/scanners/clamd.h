// clamd(): scans messages with ClamAV's daemon over its INSTREAM command.
//
// Use MakeClamdScanner() with the scanner's ClamdSpec; the returned Scanner opens one
// connection per Scan() (unix socket or TCP with TCP_NODELAY), streams ctx.message()
// in chunk_size chunks and maps clamd's reply to a ScanResult:
//   "stream: OK"                      -> clean (level 0)
//   "stream: NAME FOUND"              -> level 1.0, name NAME
//   "INSTREAM size limit exceeded..." -> not_scanned, name "not scanned: too large
//                                        (clamd StreamMaxLength)", never clean
// Anything else (clamd down, "... ERROR" replies, timeouts, cut-short replies) is an
// error status naming the address (Unavailable, DeadlineExceeded, Cancelled or
// Internal), which the engine turns into TEMPFAIL.
//
// Every wait (name lookup, connect, send, reply) is bounded by the earlier of the
// spec's timeout and ctx.deadline(), and the scan stops as soon as ctx.CheckAlive()
// fails; an already dead context fails before anything is connected.
//
// Thread-safety: a ClamdScanner is immutable after construction and keeps all
// per-scan state on the stack, so Scan() may run concurrently from any thread.
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_CLAMD_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_CLAMD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sagator/config/v1/config.pb.h"
#include "scanner-svc/engine/scanner.h"
#include "scanner-svc/scanners/daemon_io.h"

namespace sagator::scanners {

class ClamdScanner : public engine::Scanner {
 public:
  // Name reported, with not_scanned set, when clamd refuses a message over its
  // StreamMaxLength.
  static constexpr char kTooLargeName[] =
      "not scanned: too large (clamd StreamMaxLength)";

  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override { return "clamd()"; }

  // Where clamd is reached, canonical: "unix:/absolute/path" or "host:port".
  const std::string& address() const { return address_.canonical; }

 private:
  friend absl::StatusOr<std::unique_ptr<engine::Scanner>> MakeClamdScanner(
      const config::v1::ClamdSpec& spec,
      std::function<std::string(absl::string_view)> resolve_path);

  ClamdScanner(daemon_io::Address address, absl::Duration timeout, int chunk_size,
               bool scan_file)
      : address_(std::move(address)),
        timeout_(timeout),
        chunk_size_(chunk_size),
        scan_file_(scan_file) {}

  daemon_io::Address address_;
  absl::Duration timeout_;
  int chunk_size_;
  // Under buffer2file: SCAN the file instead of streaming (INSTREAM elsewhere).
  bool scan_file_;
};

// Builds a clamd() scanner. spec.address is "unix:/path", "/path" or "host:port"
// ("[v6addr]:port" for IPv6 literals); a relative "unix:" path is passed through
// resolve_path (which makes it relative to the config file; may be null). Zero
// values take the schema's defaults (unix:/var/run/clamav/clamd.ctl, 60 s, 256 KiB).
// A malformed address, timeout or chunk size is an InvalidArgument error.
absl::StatusOr<std::unique_ptr<engine::Scanner>> MakeClamdScanner(
    const config::v1::ClamdSpec& spec,
    std::function<std::string(absl::string_view)> resolve_path);

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_CLAMD_H_
