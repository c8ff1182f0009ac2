// What every benchmark in tests/bench shares: a corpus of unique MIME messages and
// a closed-loop load generator that measures throughput and latency percentiles.
#ifndef SAGATOR_TESTS_BENCH_BENCH_UTIL_H_
#define SAGATOR_TESTS_BENCH_BENCH_UTIL_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/random/random.h"

namespace sagator::bench {

struct Figures {
  double msgs_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int64_t count = 0;
  int64_t errors = 0;
};

// A unique MIME message of about `size` bytes: a text part and a base64 attachment
// of random bytes, like ordinary mail with a document attached.
std::string MakeMessage(size_t size, absl::BitGen& gen, int64_t serial);

// Calls `work(thread, message)` from `threads` threads for `seconds`, each call on
// the next message of `corpus` (it stops early when the corpus runs out); `work`
// returns false for an error. Latency is measured per call.
Figures Measure(int threads, double seconds, const std::vector<std::string>& corpus,
                const std::function<bool(int thread, const std::string& message)>& work);

// `n` unique messages of about `size` bytes; *serial numbers them across calls.
std::vector<std::string> Corpus(size_t n, size_t size, int64_t* serial);

// Sends the corpus to an SMTP server at 127.0.0.1:port from `threads` persistent
// connections, one transaction per message (as Postfix's smtp client does); a reply
// other than 250 counts as an error and the connection starts over.
Figures SmtpLoad(int port, int threads, double seconds, const std::vector<std::string>& corpus);

}  // namespace sagator::bench

#endif  // SAGATOR_TESTS_BENCH_BENCH_UTIL_H_
