// The client side of the sgfilter protocol, shared by the sgfilter command and the
// tests: send one message to sgfilterd, read the result line and the message back,
// and decide what the command prints and exits with.
//
//   SgfilterClientOptions opt;   // host, port, envelope, timeout
//   SgfilterCall call = CallSgfilterd(opt, message);
//   SgfilterOutput out = DecideOutput(call, message, /*codes=*/true, /*non_safe=*/false);
//   write(1, out.message...); exit(out.exit_code);
//
// Plain blocking POSIX sockets with poll() timeouts. Thread-compatible.
#ifndef SAGATOR_SERVICES_SGFILTERD_SGFILTER_CLIENT_H_
#define SAGATOR_SERVICES_SGFILTERD_SGFILTER_CLIENT_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sagator::sgfilterd {

// sgfilter's exit codes (sgfilter(1)).
inline constexpr int kExitOk = 0;
inline constexpr int kExitDetected = 1;     // only with --codes
inline constexpr int kExitScanError = 64;   // only with --non-safe
inline constexpr int kExitCannotTalk = 65;  // only with --non-safe

struct SgfilterClientOptions {
  std::string host = "127.0.0.1";
  int port = 27;
  std::string sender;
  std::vector<std::string> recipients;
  // Connect timeout, and longest wait for any progress while sending or reading.
  absl::Duration timeout = absl::Seconds(120);
};

struct SgfilterCall {
  enum class Status {
    kOk,             // a well-formed reply with a message (250, 251, 550, 551)
    kCannotConnect,  // no connection to sgfilterd
    kScanError,      // 451: sgfilterd could not scan it
    kBrokenReply,    // no, bad or truncated reply, or a timeout after connecting
  };
  Status status = Status::kBrokenReply;
  int code = 0;
  double level = 0;
  // Text of the result line, or what went wrong.
  std::string text;
  // The returned message (kOk only).
  std::string message;
};

// Sends `message` and reads the whole reply. Never throws; SIGPIPE is not raised.
SgfilterCall CallSgfilterd(const SgfilterClientOptions& options, absl::string_view message);

// Parses a whole reply as read from the socket (exposed for tests).
SgfilterCall ParseReply(absl::string_view reply, absl::string_view original);

struct SgfilterOutput {
  // What to write to stdout: the returned message, or the original on any error.
  absl::string_view message;
  int exit_code = kExitOk;
  // One line for stderr when something went wrong, else empty.
  std::string warning;
};

// Safe by default: any failure prints the original and exits 0. With `codes`,
// detected mail (550, 551, or 251 with level >= 1.00) exits 1. With `non_safe`, a
// 451 or broken reply exits 64 and a failed connection exits 65 (the original is
// still printed, so a caller that ignores the code loses nothing).
SgfilterOutput DecideOutput(const SgfilterCall& call, absl::string_view original, bool codes,
                            bool non_safe);

}  // namespace sagator::sgfilterd

#endif  // SAGATOR_SERVICES_SGFILTERD_SGFILTER_CLIENT_H_
