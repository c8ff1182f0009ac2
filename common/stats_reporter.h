// Sends a process's statistics (a stats::Registry) to collector-svc: every interval a
// background thread takes what was added since its previous batch and calls
// CollectorService.Report with a short deadline. Mail never waits for it (counting is
// atomics in the registry; only this thread talks to the collector). A batch that
// cannot be delivered (collector down, slow or refusing) is dropped, its events are
// counted in dropped_events(), in the registry's stats_dropped_events series and in
// the next batch that gets through.
//
//   stats::StatsReporter reporter(&registry, {.target = "127.0.0.1:7291",
//                                             .source = "sgfilterd@mail1:1234"});
//   reporter.Start();
//   ...
//   reporter.Stop();   // sends a last batch (bounded by the deadline)
//
// Thread-safe.
#ifndef SAGATOR_COMMON_STATS_REPORTER_H_
#define SAGATOR_COMMON_STATS_REPORTER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/stats.h"
#include "sagator/collector/v1/collector.grpc.pb.h"

namespace sagator::stats {

struct ReporterOptions {
  // collector-svc's gRPC target.
  std::string target;
  // This process, e.g. "sgfilterd@mail1:1234".
  std::string source;
  absl::Duration interval = absl::Seconds(1);
  // Deadline of one Report call.
  absl::Duration deadline = absl::Seconds(2);
};

class StatsReporter {
 public:
  StatsReporter(Registry* registry, ReporterOptions options);
  ~StatsReporter();
  StatsReporter(const StatsReporter&) = delete;
  StatsReporter& operator=(const StatsReporter&) = delete;

  // Starts the background thread.
  void Start();
  // Stops it after one last batch. Idempotent.
  void Stop();
  // Sends one batch now, on the calling thread; true when the collector took it.
  bool SendNow();

  int64_t dropped_events() const { return dropped_total_.load(); }
  int64_t sent_batches() const { return sent_batches_.load(); }
  int64_t failed_batches() const { return failed_batches_.load(); }

 private:
  void Loop();

  Registry* registry_;
  const ReporterOptions opt_;
  std::unique_ptr<collector::v1::CollectorService::Stub> stub_;
  Counter* dropped_counter_;

  absl::Mutex send_mu_;  // one batch at a time
  // What was already taken per series (values, events, buckets).
  std::map<std::string, std::pair<int64_t, int64_t>> last_counters_ ABSL_GUARDED_BY(send_mu_);
  std::map<std::string, HistogramSample> last_histograms_ ABSL_GUARDED_BY(send_mu_);
  int64_t last_overflow_ ABSL_GUARDED_BY(send_mu_) = 0;
  // Dropped since the last batch that got through.
  int64_t unreported_drops_ ABSL_GUARDED_BY(send_mu_) = 0;

  std::atomic<int64_t> dropped_total_{0};
  std::atomic<int64_t> sent_batches_{0};
  std::atomic<int64_t> failed_batches_{0};

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace sagator::stats

#endif  // SAGATOR_COMMON_STATS_REPORTER_H_
