// collector-svc's domain core: adds up the batches every process reports (counters,
// latency histograms, dropped events), keeps per-reporter bookkeeping and the time
// series the graphs draw, and renders the status file.
//
//   Aggregator agg;
//   absl::StatusOr<int64_t> events = agg.Ingest(request, absl::Now());
//   stats::Snapshot totals = agg.Totals();
//   std::string text = agg.StatusText(absl::Now());
//
// A batch is checked whole before any of it is added: a bad name or a histogram with
// the wrong bucket count refuses the batch (InvalidArgument) and changes nothing.
// Thread-safe.
#ifndef SAGATOR_COLLECTOR_SVC_AGGREGATOR_H_
#define SAGATOR_COLLECTOR_SVC_AGGREGATOR_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "collector-svc/time_series.h"
#include "common/stats.h"
#include "sagator/collector/v1/collector.pb.h"

namespace sagator::collector {

struct SourceInfo {
  std::string source;
  absl::Time last_report;
  int64_t batches = 0;
  int64_t dropped_events = 0;
};

class Aggregator {
 public:
  // At most `max_series` distinct counters and histograms; entries for new series
  // beyond it are skipped and counted (collector_skipped_events).
  explicit Aggregator(absl::Time started = absl::Now(), size_t max_series = 100000);

  // Adds one batch; returns the number of events it held.
  absl::StatusOr<int64_t> Ingest(const v1::ReportRequest& batch, absl::Time now);

  stats::Snapshot Totals() const;
  std::vector<SourceInfo> Sources() const;
  int64_t events_ingested() const;
  int64_t skipped_events() const;
  absl::Time started() const { return started_; }
  std::vector<TimeSeries::Point> Points(Range range, absl::Time now) const;

  // The status file's text (format in README.md): "key value" lines, ending with
  // "# end".
  std::string StatusText(absl::Time now) const;
  // The Prometheus exposition of the totals, plus the collector's own figures.
  std::string PrometheusText() const;
  // GetStatus's answer.
  void FillStatus(absl::string_view name_prefix, v1::GetStatusResponse* out) const;

  // The history file's content, and loading it back (at start).
  v1::History SaveHistory() const;
  void LoadHistory(const v1::History& history);

 private:
  void AddToSeries(absl::Time now, const std::string& name, const stats::Labels& labels,
                   double value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Time started_;
  const size_t max_series_;
  mutable absl::Mutex mu_;
  std::map<std::string, stats::CounterSample, std::less<>> counters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, stats::HistogramSample, std::less<>> histograms_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, SourceInfo> sources_ ABSL_GUARDED_BY(mu_);
  TimeSeries series_ ABSL_GUARDED_BY(mu_);
  int64_t events_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t skipped_ ABSL_GUARDED_BY(mu_) = 0;
};

// The status text of `totals` (the format of the status file, README.md): "key value"
// lines, SAGATOR's <prefix>-count and <prefix>-bytes first, ending with "# end".
std::string RenderStatusText(const stats::Snapshot& totals, size_t sources, int64_t events,
                             absl::Time started, absl::Time now);

// GetStatus's answer back as totals (for command-line tools).
stats::Snapshot SnapshotFromStatus(const v1::GetStatusResponse& status);

// Writes `text` to `path` so that a reader sees the old or the new file, never a part:
// a temporary file in the same folder, fsync, rename.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view text);

}  // namespace sagator::collector

#endif  // SAGATOR_COLLECTOR_SVC_AGGREGATOR_H_
