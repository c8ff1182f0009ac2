// The collector's time series for graphs: a few metrics (messages, clean, rejected,
// tempfailed, viruses, spam, bytes, scan latency) summed into minute buckets for a
// day, hour buckets for a month and day buckets for a year, each a fixed ring, so
// memory is constant (about 160 KB).
//
//   TimeSeries ts;
//   ts.Add(now, Metric::kMessages, 1);
//   std::vector<TimeSeries::Point> day = ts.Points(Range::kDay, now);
//
// Not thread-safe: the Aggregator holds it under its lock.
#ifndef SAGATOR_COLLECTOR_SVC_TIME_SERIES_H_
#define SAGATOR_COLLECTOR_SVC_TIME_SERIES_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sagator/collector/v1/collector.pb.h"

namespace sagator::collector {

enum class Metric {
  kMessages = 0,    // messages decided by gateways
  kClean,           // ... with outcome PASS
  kRejected,        // ... REJECT or DROP
  kTempfailed,      // ... TEMPFAIL
  kViruses,         // status_count with a prefix starting "Virus"
  kSpam,            // status_count with a prefix starting "Spam"
  kBytes,           // bytes of messages decided by gateways
  kLatencySum,      // seconds spent in the gateways' "scan" stage
  kLatencyCount,    // ... observations
};
inline constexpr size_t kMetricCount = 9;

enum class Range { kDay, kWeek, kMonth, kYear };
// "day", "week", "month", "year".
absl::string_view RangeName(Range r);
bool ParseRange(absl::string_view name, Range* r);

class TimeSeries {
 public:
  struct Point {
    absl::Time start;
    std::array<double, kMetricCount> values{};
  };

  TimeSeries();

  void Add(absl::Time when, Metric m, double value);

  // The buckets covering `range` up to `now`, oldest first, missing ones as zeros:
  // day = 1440 minutes, week = 168 hours, month = 744 hours, year = 366 days.
  std::vector<Point> Points(Range range, absl::Time now) const;
  // Seconds per point of `range`.
  static int64_t Step(Range range);

  // Saving and loading (the collector's history file).
  void SaveTo(google::protobuf::RepeatedPtrField<v1::SeriesBucket>* out) const;
  void Load(const v1::SeriesBucket& bucket);

 private:
  struct Bucket {
    int64_t start = -1;
    std::array<double, kMetricCount> values{};
  };
  struct Ring {
    int64_t resolution;
    std::vector<Bucket> buckets;
  };
  static constexpr int kMinute = 0, kHour = 1, kDayRing = 2;
  std::array<Ring, 3> rings_;
};

}  // namespace sagator::collector

#endif  // SAGATOR_COLLECTOR_SVC_TIME_SERIES_H_
