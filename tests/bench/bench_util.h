// What every benchmark in tests/bench shares: a corpus of unique MIME messages and
// a closed-loop load generator that measures throughput and latency percentiles; an
// SMTP load on top of it; and a Postfix SMTPD policy load (PolicyLoad) with the mix
// of recurring and new triplets a greylister sees, closed-loop or paced.
#ifndef SAGATOR_TESTS_BENCH_BENCH_UTIL_H_
#define SAGATOR_TESTS_BENCH_BENCH_UTIL_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "scanner-svc/engine/scanner.h"
#include "tests/harness/clamd_daemon.h"

namespace sagator::bench {

struct Figures {
  double msgs_per_s = 0;
  double p50_ms = 0;
  double p95_ms = 0;
  double p99_ms = 0;
  int64_t count = 0;
  int64_t errors = 0;
};

// Throughput and p50/p99 of `latencies_ms` (sorted here) measured over `elapsed_s`.
Figures Summarize(std::vector<double> latencies_ms, double elapsed_s, int64_t errors);

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

// CPU time (user + system) a process has used so far, in milliseconds; 0 when gone.
double ProcessCpuMs(pid_t pid);

// A stream of Postfix smtpd_access_policy requests at RCPT (the attributes Postfix 3.7
// sends, one message and one recipient per request) with the mix a greylister sees:
// most requests (1 - new_fraction) carry one of `pool_size` triplets (client, sender,
// recipient) that recur, drawn uniformly, the rest a triplet never sent before (half
// of those from a new client, half a new sender at a known client). Pool clients sit
// in distinct /24s (greylisters key on the subnet); about three pool triplets share a
// client. Thread-safe: the serial numbering new triplets and instances is atomic.
class PolicyTraffic {
 public:
  struct Options {
    int pool_size = 300;
    double new_fraction = 0.2;
  };
  PolicyTraffic() : PolicyTraffic(Options()) {}
  explicit PolicyTraffic(Options options);

  // The next request, encoded (request=...\n ... \n\n).
  std::string Next(absl::BitGen& gen);
  // Every pool triplet once, in order: a warm-up puts them into a greylister's store.
  std::vector<std::string> PoolRequests();
  const Options& options() const { return options_; }

 private:
  std::string Encode(int client, const std::string& client_address, const std::string& sender,
                     const std::string& recipient, absl::BitGen& gen);
  std::string PoolRequest(int i, absl::BitGen& gen);

  Options options_;
  std::atomic<int64_t> serial_{0};
};

struct PolicyLoadOptions {
  // The policy server (IPv4 literal) and port.
  std::string host = "127.0.0.1";
  int port = 0;
  // Persistent connections, one thread each (Postfix: one per smtpd process).
  int connections = 1;
  double seconds = 5;
  // Requests per second over all connections, evenly paced (connection t sends its
  // k-th request at (t + k * connections) / rate); latency then counts from the
  // scheduled time, so a server that falls behind shows its queueing. 0: closed loop,
  // each connection sends its next request when the reply arrives (max throughput).
  double rate = 0;
};

struct PolicyFigures {
  // msgs_per_s is requests/s; errors counts requests without an action (connection
  // closed or timed out: the client reconnects).
  Figures figures;
  // How many replies carried each action word ("DUNNO", "DEFER_IF_PERMIT", ...).
  std::map<std::string, int64_t> actions;
  // Paced mode: requests sent more than 1 ms after their scheduled time (the client
  // side could not keep the rate, or a connection was still waiting for a reply).
  int64_t late = 0;
};

// Runs `traffic` against a policy server and measures per-request latency.
PolicyFigures PolicyLoad(const PolicyLoadOptions& options, PolicyTraffic& traffic);

// "DUNNO 79.9%, DEFER_IF_PERMIT 20.1%": each action's share, most frequent first.
std::string FormatActions(const std::map<std::string, int64_t>& actions);

// A new folder on tmpfs (/dev/shm) for the run's temporary files (MIME decoding in
// clamd and libclamav: disk runs vary a lot); TMPDIR points there from now on.
std::string TmpfsDir(const std::string& name);

// clamd for a benchmark, in `dir`: the project's signature file, its clean cache off
// (every message is unique; repeated ones would look 3-9x faster), temporary files
// in `tmp_dir`, `max_threads` threads (0: clamd's default).
absl::StatusOr<std::unique_ptr<harness::ClamdDaemon>> StartClamd(const std::string& dir,
                                                                 const std::string& tmp_dir,
                                                                 int max_threads);

// A clamd() scanner towards `clamd`'s unix socket (INSTREAM, 256 KiB chunks).
absl::StatusOr<std::unique_ptr<engine::Scanner>> ClamdScannerFor(const harness::ClamdDaemon& clamd);

}  // namespace sagator::bench

#endif  // SAGATOR_TESTS_BENCH_BENCH_UTIL_H_
