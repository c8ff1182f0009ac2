#include "collector-svc/aggregator.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace sagator::collector {

namespace {

bool ValidName(absl::string_view n) {
  if (n.empty() || n.size() > 200) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

template <typename Delta>
absl::Status CheckEntry(const Delta& d) {
  if (!ValidName(d.name())) {
    return absl::InvalidArgumentError(absl::StrCat("bad stat name '", d.name(), "'"));
  }
  for (const v1::Label& l : d.labels()) {
    if (!ValidName(l.name())) {
      return absl::InvalidArgumentError(
          absl::StrCat("stat '", d.name(), "': bad label name '", l.name(), "'"));
    }
    if (l.value().size() > 1024) {
      return absl::InvalidArgumentError(absl::StrCat("stat '", d.name(), "': label too long"));
    }
  }
  return absl::OkStatus();
}

stats::Labels LabelsOf(const google::protobuf::RepeatedPtrField<v1::Label>& in) {
  stats::Labels out;
  out.reserve(in.size());
  for (const v1::Label& l : in) out.emplace_back(l.name(), l.value());
  std::sort(out.begin(), out.end());
  return out;
}

absl::string_view LabelValue(const stats::Labels& labels, absl::string_view name) {
  for (const auto& [n, v] : labels) {
    if (n == name) return v;
  }
  return "";
}

void ToProtoLabels(const stats::Labels& labels,
                   google::protobuf::RepeatedPtrField<v1::Label>* out) {
  for (const auto& [n, v] : labels) {
    v1::Label* l = out->Add();
    l->set_name(n);
    l->set_value(v);
  }
}

// A status-file key has no white space.
std::string StatusKey(absl::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') c = '_';
  }
  return out;
}

}  // namespace

Aggregator::Aggregator(absl::Time started, size_t max_series)
    : started_(started), max_series_(max_series) {}

void Aggregator::AddToSeries(absl::Time now, const std::string& name, const stats::Labels& labels,
                             double value) {
  if (name == "messages") {
    series_.Add(now, Metric::kMessages, value);
    absl::string_view outcome = LabelValue(labels, "outcome");
    if (outcome == "PASS") series_.Add(now, Metric::kClean, value);
    if (outcome == "REJECT" || outcome == "DROP") series_.Add(now, Metric::kRejected, value);
    if (outcome == "TEMPFAIL") series_.Add(now, Metric::kTempfailed, value);
  } else if (name == "bytes") {
    series_.Add(now, Metric::kBytes, value);
  } else if (name == "status_count") {
    absl::string_view prefix = LabelValue(labels, "prefix");
    if (absl::StartsWithIgnoreCase(prefix, "virus")) series_.Add(now, Metric::kViruses, value);
    if (absl::StartsWithIgnoreCase(prefix, "spam")) series_.Add(now, Metric::kSpam, value);
  }
}

absl::StatusOr<int64_t> Aggregator::Ingest(const v1::ReportRequest& batch, absl::Time now) {
  for (const v1::CounterDelta& d : batch.counters()) {
    absl::Status s = CheckEntry(d);
    if (!s.ok()) return s;
    if (d.events() < 0) return absl::InvalidArgumentError("negative event count");
  }
  for (const v1::HistogramDelta& d : batch.histograms()) {
    absl::Status s = CheckEntry(d);
    if (!s.ok()) return s;
    if (d.bucket_deltas_size() != static_cast<int>(stats::kHistogramBuckets)) {
      return absl::InvalidArgumentError(absl::StrCat("histogram '", d.name(), "' has ",
                                                     d.bucket_deltas_size(), " buckets, not ",
                                                     stats::kHistogramBuckets));
    }
    for (int64_t b : d.bucket_deltas()) {
      if (b < 0) return absl::InvalidArgumentError("negative bucket count");
    }
  }
  if (batch.dropped_events() < 0) return absl::InvalidArgumentError("negative dropped_events");

  absl::MutexLock lock(&mu_);
  int64_t events = 0;
  auto room = [&] { return counters_.size() + histograms_.size() < max_series_; };
  for (const v1::CounterDelta& d : batch.counters()) {
    stats::Labels labels = LabelsOf(d.labels());
    std::string key = stats::SeriesKey(d.name(), labels);
    auto it = counters_.find(key);
    if (it == counters_.end()) {
      if (!room()) {
        skipped_ += d.events();
        continue;
      }
      it = counters_.emplace(key, stats::CounterSample{key, d.name(), labels, 0, 0}).first;
    }
    it->second.value += d.delta();
    it->second.events += d.events();
    events += d.events();
    AddToSeries(now, d.name(), it->second.labels, static_cast<double>(d.delta()));
  }
  for (const v1::HistogramDelta& d : batch.histograms()) {
    stats::Labels labels = LabelsOf(d.labels());
    std::string key = stats::SeriesKey(d.name(), labels);
    int64_t n = 0;
    for (int64_t b : d.bucket_deltas()) n += b;
    auto it = histograms_.find(key);
    if (it == histograms_.end()) {
      if (!room()) {
        skipped_ += n;
        continue;
      }
      stats::HistogramSample h;
      h.key = key;
      h.name = d.name();
      h.labels = labels;
      it = histograms_.emplace(key, std::move(h)).first;
    }
    for (size_t i = 0; i < stats::kHistogramBuckets; ++i) {
      it->second.buckets[i] += d.bucket_deltas(static_cast<int>(i));
    }
    it->second.sum_seconds += d.sum_seconds();
    events += n;
    if (d.name() == "latency" && LabelValue(it->second.labels, "stage") == "scan" &&
        LabelValue(it->second.labels, "service") != "scanner-svc") {
      series_.Add(now, Metric::kLatencySum, d.sum_seconds());
      series_.Add(now, Metric::kLatencyCount, static_cast<double>(n));
    }
  }
  std::string source = batch.source().empty() ? "unknown" : batch.source();
  SourceInfo& src = sources_[source];
  src.source = source;
  src.last_report = now;
  ++src.batches;
  if (batch.dropped_events() > 0) {
    src.dropped_events += batch.dropped_events();
    // One series per reporting service and host (the pid changes at each restart).
    std::string who = source.substr(0, source.rfind(':'));
    stats::Labels labels = {{"source", who}};
    std::string key = stats::SeriesKey("stats_dropped_events", labels);
    auto it = counters_.find(key);
    if (it == counters_.end() && room()) {
      it = counters_.emplace(key, stats::CounterSample{key, "stats_dropped_events", labels, 0, 0})
               .first;
    }
    if (it != counters_.end()) {
      it->second.value += batch.dropped_events();
      it->second.events += 1;
    }
  }
  events_ += events;
  return events;
}

stats::Snapshot Aggregator::Totals() const {
  stats::Snapshot s;
  absl::MutexLock lock(&mu_);
  for (const auto& [_, c] : counters_) s.counters.push_back(c);
  for (const auto& [_, h] : histograms_) s.histograms.push_back(h);
  return s;
}

std::vector<SourceInfo> Aggregator::Sources() const {
  absl::MutexLock lock(&mu_);
  std::vector<SourceInfo> out;
  for (const auto& [_, s] : sources_) out.push_back(s);
  return out;
}

int64_t Aggregator::events_ingested() const {
  absl::MutexLock lock(&mu_);
  return events_;
}

int64_t Aggregator::skipped_events() const {
  absl::MutexLock lock(&mu_);
  return skipped_;
}

std::vector<TimeSeries::Point> Aggregator::Points(Range range, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  return series_.Points(range, now);
}

std::string Aggregator::StatusText(absl::Time now) const {
  return RenderStatusText(Totals(), Sources().size(), events_ingested(), started_, now);
}

std::string RenderStatusText(const stats::Snapshot& totals, size_t sources, int64_t events,
                             absl::Time started, absl::Time now) {
  std::string out = absl::StrCat(
      "# SAGATOR status, written by collector-svc at ",
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", now, absl::UTCTimeZone()), "\n",
      "# one \"key value\" per line; see collector-svc/README.md\n");
  absl::StrAppend(&out, "time ", absl::ToUnixSeconds(now), "\n");
  absl::StrAppend(&out, "uptime ", absl::ToInt64Seconds(now - started), "\n");
  absl::StrAppend(&out, "events ", events, "\n");
  absl::StrAppend(&out, "sources ", sources, "\n");
  // SAGATOR's own names first: <prefix>-count and <prefix>-bytes of the status scanner.
  for (const stats::CounterSample& c : totals.counters) {
    if (c.name != "status_count" && c.name != "status_bytes") continue;
    absl::StrAppend(&out, StatusKey(LabelValue(c.labels, "prefix")),
                    c.name == "status_count" ? "-count " : "-bytes ", c.value, "\n");
  }
  for (const stats::CounterSample& c : totals.counters) {
    if (c.name == "status_count" || c.name == "status_bytes") continue;
    absl::StrAppend(&out, StatusKey(c.key), " ", c.value, "\n");
  }
  for (const stats::HistogramSample& h : totals.histograms) {
    std::string k = StatusKey(h.key);
    int64_t n = h.count();
    absl::StrAppend(&out, k, "-count ", n, "\n");
    absl::StrAppend(&out, k, "-avg ",
                    absl::StrFormat("%.6f", n == 0 ? 0.0 : h.sum_seconds / static_cast<double>(n)),
                    "\n");
    absl::StrAppend(&out, k, "-p95 ", absl::StrFormat("%g", h.Quantile(0.95)), "\n");
  }
  out += "# end\n";
  return out;
}

stats::Snapshot SnapshotFromStatus(const v1::GetStatusResponse& status) {
  stats::Snapshot s;
  for (const v1::CounterTotal& t : status.counters()) {
    stats::Labels labels = LabelsOf(t.labels());
    std::string key = stats::SeriesKey(t.name(), labels);
    s.counters.push_back(stats::CounterSample{key, t.name(), labels, t.value(), 0});
  }
  for (const v1::HistogramTotal& t : status.histograms()) {
    stats::HistogramSample h;
    h.labels = LabelsOf(t.labels());
    h.key = stats::SeriesKey(t.name(), h.labels);
    h.name = t.name();
    for (size_t i = 0; i < stats::kHistogramBuckets && i < static_cast<size_t>(t.bucket_counts_size()); ++i) {
      h.buckets[i] = t.bucket_counts(static_cast<int>(i));
    }
    h.sum_seconds = t.sum_seconds();
    s.histograms.push_back(std::move(h));
  }
  return s;
}

std::string Aggregator::PrometheusText() const {
  std::string out = stats::RenderPrometheus(Totals());
  absl::StrAppend(&out,
                  "# HELP sagator_collector_events_total Statistics events ingested by this "
                  "collector since it started.\n# TYPE sagator_collector_events_total counter\n",
                  "sagator_collector_events_total ", events_ingested(), "\n",
                  "# HELP sagator_collector_skipped_events_total Events skipped because the "
                  "collector holds too many series.\n"
                  "# TYPE sagator_collector_skipped_events_total counter\n",
                  "sagator_collector_skipped_events_total ", skipped_events(), "\n",
                  "# HELP sagator_collector_sources Reporters seen since the collector started.\n"
                  "# TYPE sagator_collector_sources gauge\n",
                  "sagator_collector_sources ", Sources().size(), "\n");
  return out;
}

void Aggregator::FillStatus(absl::string_view name_prefix, v1::GetStatusResponse* out) const {
  stats::Snapshot totals = Totals();
  for (const stats::CounterSample& c : totals.counters) {
    if (!absl::StartsWith(c.name, name_prefix)) continue;
    v1::CounterTotal* t = out->add_counters();
    t->set_name(c.name);
    ToProtoLabels(c.labels, t->mutable_labels());
    t->set_value(c.value);
  }
  for (const stats::HistogramSample& h : totals.histograms) {
    if (!absl::StartsWith(h.name, name_prefix)) continue;
    v1::HistogramTotal* t = out->add_histograms();
    t->set_name(h.name);
    ToProtoLabels(h.labels, t->mutable_labels());
    for (int64_t b : h.buckets) t->add_bucket_counts(b);
    t->set_sum_seconds(h.sum_seconds);
  }
  for (double b : stats::kHistogramBounds) out->add_histogram_bounds(b);
  for (const SourceInfo& s : Sources()) {
    v1::SourceStatus* p = out->add_sources();
    p->set_source(s.source);
    p->mutable_last_report()->set_seconds(absl::ToUnixSeconds(s.last_report));
    p->set_batches(s.batches);
    p->set_dropped_events(s.dropped_events);
  }
  out->set_events_ingested(events_ingested());
  out->mutable_started_at()->set_seconds(absl::ToUnixSeconds(started_));
}

v1::History Aggregator::SaveHistory() const {
  v1::History h;
  absl::MutexLock lock(&mu_);
  for (const auto& [_, c] : counters_) {
    v1::CounterTotal* t = h.add_counters();
    t->set_name(c.name);
    ToProtoLabels(c.labels, t->mutable_labels());
    t->set_value(c.value);
  }
  for (const auto& [_, s] : histograms_) {
    v1::HistogramTotal* t = h.add_histograms();
    t->set_name(s.name);
    ToProtoLabels(s.labels, t->mutable_labels());
    for (int64_t b : s.buckets) t->add_bucket_counts(b);
    t->set_sum_seconds(s.sum_seconds);
  }
  series_.SaveTo(h.mutable_buckets());
  return h;
}

void Aggregator::LoadHistory(const v1::History& history) {
  absl::MutexLock lock(&mu_);
  for (const v1::CounterTotal& t : history.counters()) {
    stats::Labels labels = LabelsOf(t.labels());
    std::string key = stats::SeriesKey(t.name(), labels);
    counters_[key] = stats::CounterSample{key, t.name(), labels, t.value(), 0};
  }
  for (const v1::HistogramTotal& t : history.histograms()) {
    if (t.bucket_counts_size() != static_cast<int>(stats::kHistogramBuckets)) continue;
    stats::HistogramSample h;
    h.labels = LabelsOf(t.labels());
    h.key = stats::SeriesKey(t.name(), h.labels);
    h.name = t.name();
    for (size_t i = 0; i < stats::kHistogramBuckets; ++i) {
      h.buckets[i] = t.bucket_counts(static_cast<int>(i));
    }
    h.sum_seconds = t.sum_seconds();
    histograms_[h.key] = h;
  }
  for (const v1::SeriesBucket& b : history.buckets()) series_.Load(b);
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view text) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot create ", tmp, ": ", strerror(errno)));
  }
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      close(fd);
      unlink(tmp.c_str());
      return absl::UnavailableError(absl::StrCat("cannot write ", tmp, ": ", strerror(e)));
    }
    done += static_cast<size_t>(n);
  }
  bool synced = fdatasync(fd) == 0;
  int e = errno;
  bool closed = close(fd) == 0;
  if (!closed) e = errno;
  if (!synced || !closed) {
    unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot write ", tmp, ": ", strerror(e)));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot rename to ", path, ": ", strerror(e)));
  }
  return absl::OkStatus();
}

}  // namespace sagator::collector
