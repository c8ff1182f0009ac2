// Helpers for sgfilterd's tests: raw sgfilter connections, and running a command
// with stdin and environment (daemons use tests/harness/subprocess.h).
// Each function stands alone.
#ifndef SAGATOR_SERVICES_SGFILTERD_TESTING_TEST_UTIL_H_
#define SAGATOR_SERVICES_SGFILTERD_TESTING_TEST_UTIL_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sagator::sgfilterd::testing {

// "MAIL FROM: <sender>\nRCPT TO: <rcpt>\nDATA <size>\n" followed by the message.
std::string Transaction(absl::string_view message, absl::string_view sender = "a@example.org",
                        absl::string_view rcpt = "b@example.org");

// A blocking TCP connection to 127.0.0.1:port (-1 when it fails).
int ConnectLocal(int port);
// Writes everything; false on an error.
bool SendAll(int fd, absl::string_view data);
// Reads until the peer closes or `timeout` passes; *closed tells which.
std::string ReadUntilClose(int fd, absl::Duration timeout, bool* closed = nullptr);
// Connect, send, read until close, close. Thread-safe.
std::string Exchange(int port, absl::string_view request,
                     absl::Duration timeout = absl::Seconds(20));

// The first line of `reply`, with its line end.
std::string FirstLine(absl::string_view reply);

// Raises RLIMIT_NOFILE's soft limit to at least `n` (up to the hard limit); returns
// the new soft limit.
long RaiseFdLimit(long n);

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with `stdin_data`, extra environment entries ("K=V", or
// "K=" to unset K) and a timeout; collects stdout and stderr (through files under
// TEST_TMPDIR). Thread-safe.
ProcessResult RunProcess(const std::vector<std::string>& argv, absl::string_view stdin_data,
                         const std::vector<std::string>& env = {},
                         absl::Duration timeout = absl::Seconds(60));

}  // namespace sagator::sgfilterd::testing

#endif  // SAGATOR_SERVICES_SGFILTERD_TESTING_TEST_UTIL_H_
