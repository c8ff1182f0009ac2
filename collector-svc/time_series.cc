#include "collector-svc/time_series.h"

namespace sagator::collector {

namespace {

int64_t FloorTo(int64_t t, int64_t step) { return t >= 0 ? t / step * step : (t - step + 1) / step * step; }

}  // namespace

absl::string_view RangeName(Range r) {
  switch (r) {
    case Range::kDay:
      return "day";
    case Range::kWeek:
      return "week";
    case Range::kMonth:
      return "month";
    case Range::kYear:
      return "year";
  }
  return "day";
}

bool ParseRange(absl::string_view name, Range* r) {
  for (Range c : {Range::kDay, Range::kWeek, Range::kMonth, Range::kYear}) {
    if (name == RangeName(c)) {
      *r = c;
      return true;
    }
  }
  return false;
}

TimeSeries::TimeSeries() {
  rings_[kMinute] = Ring{60, std::vector<Bucket>(1440)};
  rings_[kHour] = Ring{3600, std::vector<Bucket>(31 * 24)};
  rings_[kDayRing] = Ring{86400, std::vector<Bucket>(366)};
}

void TimeSeries::Add(absl::Time when, Metric m, double value) {
  int64_t t = absl::ToUnixSeconds(when);
  for (Ring& ring : rings_) {
    int64_t start = FloorTo(t, ring.resolution);
    Bucket& b = ring.buckets[static_cast<size_t>(start / ring.resolution) % ring.buckets.size()];
    if (b.start != start) {
      if (b.start > start) continue;  // older than the ring holds
      b = Bucket{start, {}};
    }
    b.values[static_cast<size_t>(m)] += value;
  }
}

int64_t TimeSeries::Step(Range range) {
  switch (range) {
    case Range::kDay:
      return 60;
    case Range::kWeek:
    case Range::kMonth:
      return 3600;
    case Range::kYear:
      return 86400;
  }
  return 60;
}

std::vector<TimeSeries::Point> TimeSeries::Points(Range range, absl::Time now) const {
  const Ring& ring = rings_[range == Range::kDay    ? kMinute
                            : range == Range::kYear ? kDayRing
                                                    : kHour];
  size_t n = range == Range::kDay    ? 1440
             : range == Range::kWeek ? 168
             : range == Range::kMonth ? 744
                                      : 366;
  int64_t last = FloorTo(absl::ToUnixSeconds(now), ring.resolution);
  std::vector<Point> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t start = last - static_cast<int64_t>(n - 1 - i) * ring.resolution;
    Point p;
    p.start = absl::FromUnixSeconds(start);
    const Bucket& b =
        ring.buckets[static_cast<size_t>(start / ring.resolution) % ring.buckets.size()];
    if (b.start == start) p.values = b.values;
    out.push_back(p);
  }
  return out;
}

void TimeSeries::SaveTo(google::protobuf::RepeatedPtrField<v1::SeriesBucket>* out) const {
  for (const Ring& ring : rings_) {
    for (const Bucket& b : ring.buckets) {
      if (b.start < 0) continue;
      v1::SeriesBucket* s = out->Add();
      s->set_resolution_seconds(ring.resolution);
      s->set_start_unix(b.start);
      for (double v : b.values) s->add_values(v);
    }
  }
}

void TimeSeries::Load(const v1::SeriesBucket& bucket) {
  for (Ring& ring : rings_) {
    if (ring.resolution != bucket.resolution_seconds()) continue;
    if (bucket.start_unix() < 0 || bucket.start_unix() % ring.resolution != 0) return;
    Bucket& b = ring.buckets[static_cast<size_t>(bucket.start_unix() / ring.resolution) %
                             ring.buckets.size()];
    if (b.start > bucket.start_unix()) return;
    b = Bucket{bucket.start_unix(), {}};
    for (int i = 0; i < bucket.values_size() && i < static_cast<int>(kMetricCount); ++i) {
      b.values[static_cast<size_t>(i)] = bucket.values(i);
    }
  }
}

}  // namespace sagator::collector
