// A process's statistics: named counters and latency histograms with labels, kept in
// a Registry that the process's own /metrics endpoint renders and the StatsReporter
// (stats_reporter.h) sends to collector-svc in batches.
//
//   stats::Registry registry;
//   stats::Counter* rejected = registry.GetCounter("messages", {{"outcome", "REJECT"}});
//   rejected->Add();                                    // two relaxed atomic adds
//   registry.GetHistogram("latency", {{"stage", "scan"}})->Observe(elapsed);
//
// Look a series up once and keep the pointer: Get* takes a lock, Add/Observe do not.
// Every stat name SAGATOR uses is declared, with its help text, in one list
// (kStatList in stats.cc), so the Prometheus output, the status file and the docs
// agree; GatewayStats is the set every protocol gateway records.
//
// Thread-safe: everything here may be called from any thread.
#ifndef SAGATOR_COMMON_STATS_H_
#define SAGATOR_COMMON_STATS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "sagator/common/v1/common.pb.h"

namespace sagator::stats {

// Label name/value pairs; Registry sorts them by name.
using Labels = std::vector<std::pair<std::string, std::string>>;

// Upper bounds (seconds) of the latency buckets every SAGATOR histogram uses; one more
// bucket holds what is above the last bound.
inline constexpr std::array<double, 16> kHistogramBounds = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25,   0.5,   1.0,    2.5,   5.0,  10.0,  30.0,  60.0};
inline constexpr size_t kHistogramBuckets = kHistogramBounds.size() + 1;

// The bucket an observation of `seconds` falls in.
size_t BucketOf(double seconds);

// "name{a=\"x\",b=\"y\"}" (Prometheus series syntax, labels sorted, values escaped):
// the one spelling of a series used as a key everywhere.
std::string SeriesKey(absl::string_view name, const Labels& labels);

class Counter {
 public:
  void Add(int64_t n = 1) {
    value_.fetch_add(n, std::memory_order_relaxed);
    events_.fetch_add(1, std::memory_order_relaxed);
  }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }
  // How many Add calls there were.
  int64_t events() const { return events_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
  std::atomic<int64_t> events_{0};
};

class Histogram {
 public:
  void Observe(absl::Duration d);
  void ObserveSeconds(double seconds);
  int64_t count() const;
  double sum_seconds() const;
  std::array<int64_t, kHistogramBuckets> buckets() const;

 private:
  std::array<std::atomic<int64_t>, kHistogramBuckets> buckets_{};
  std::atomic<int64_t> sum_ns_{0};
};

struct CounterSample {
  std::string key;  // SeriesKey(name, labels)
  std::string name;
  Labels labels;
  int64_t value = 0;
  int64_t events = 0;
};

struct HistogramSample {
  std::string key;
  std::string name;
  Labels labels;
  // Per bucket, not cumulative.
  std::array<int64_t, kHistogramBuckets> buckets{};
  double sum_seconds = 0;
  int64_t count() const;
  // Estimated quantile q (0..1) from the buckets (upper bound of the bucket it falls
  // in); 0 without observations.
  double Quantile(double q) const;
};

// A consistent-enough copy of every series, sorted by key.
struct Snapshot {
  std::vector<CounterSample> counters;
  std::vector<HistogramSample> histograms;
};

// What a stat name means (kStatList).
struct StatInfo {
  const char* name;
  bool histogram;
  const char* help;
};
// The declared stats, in documentation order.
const std::vector<StatInfo>& StatList();
// nullptr for a name not declared.
const StatInfo* FindStat(absl::string_view name);

// The Prometheus text exposition (version 0.0.4) of `snapshot`: counters as
// sagator_<name>_total, histograms as sagator_<name>_seconds_{bucket,sum,count},
// with # HELP and # TYPE from the stat list.
std::string RenderPrometheus(const Snapshot& snapshot);

class Registry {
 public:
  // At most this many distinct series; further ones share one series that is never
  // reported, and its events are counted as dropped (a detection name per counter
  // must not grow memory without bound).
  explicit Registry(size_t max_series = 10000) : max_series_(max_series) {}
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The counter for (name, labels); the same pointer for the same series, valid as
  // long as the registry.
  Counter* GetCounter(absl::string_view name, Labels labels = {});
  Histogram* GetHistogram(absl::string_view name, Labels labels = {});

  Snapshot Take() const;
  // Events that went to the overflow series.
  int64_t overflow_events() const { return overflow_counter_.events() + overflow_histogram_.count(); }

 private:
  const size_t max_series_;
  mutable absl::Mutex mu_;
  struct CounterEntry {
    std::string name;
    Labels labels;
    std::unique_ptr<Counter> counter;
  };
  struct HistogramEntry {
    std::string name;
    Labels labels;
    std::unique_ptr<Histogram> histogram;
  };
  std::map<std::string, CounterEntry, std::less<>> counters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, HistogramEntry, std::less<>> histograms_ ABSL_GUARDED_BY(mu_);
  Counter overflow_counter_;
  Histogram overflow_histogram_;
};

// The stats every protocol gateway records, with label service=<kind> ("sgfilterd",
// "smtpd", ...): messages and bytes by outcome, latency by stage, errors by kind,
// fail-open decisions and policy answers. Cheap per message (atomics only for the
// common series).
class GatewayStats {
 public:
  // `registry` may be nullptr: then nothing is recorded.
  GatewayStats(Registry* registry, std::string service);

  // One message decided with `outcome`, `bytes` long.
  void Message(common::v1::Outcome outcome, int64_t bytes);
  // The same from SAGATOR's status code (250 PASS, 251 FORCED_PASS, 550 REJECT,
  // 551 DROP, anything else TEMPFAIL); a failed scan (`scan_status`) also counts an
  // error of kind "scanner".
  void MessageWithCode(int code, int64_t bytes, const absl::Status& scan_status);
  // Time spent in `stage`: "scan" (the scanner-svc call), "relay" (next hop),
  // "policy" (one policy decision) or "total".
  void Latency(absl::string_view stage, absl::Duration elapsed);
  // A failure: "scanner" (scanner-svc unreachable or past its deadline), "relay",
  // "protocol" (client sent garbage), "timeout" (client too slow), "memory" (memory
  // budget spent), "too_large" (over the size limit).
  void Error(absl::string_view kind);
  // A message or request let through unscanned because of fail_open.
  void FailOpen();
  // A policy answer ("DUNNO", "OK", "PREPEND", "DEFER_IF_PERMIT", "REJECT", ...).
  void PolicyAnswer(absl::string_view action);

 private:
  Registry* registry_;
  std::string service_;
  std::array<Counter*, 8> messages_{};
  std::array<Counter*, 8> bytes_{};
  Histogram* scan_ = nullptr;
  Histogram* total_ = nullptr;
  Histogram* policy_ = nullptr;
  Counter* fail_open_ = nullptr;
  // The common policy answers, looked up at first use.
  std::array<std::atomic<Counter*>, 8> answers_{};
};

}  // namespace sagator::stats

#endif  // SAGATOR_COMMON_STATS_H_
