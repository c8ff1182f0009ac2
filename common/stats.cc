#include "common/stats.h"

#include <algorithm>
#include <cmath>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sagator::stats {

namespace {

// Every stat SAGATOR records. Gateways: messages, bytes, latency, errors, fail_open,
// policy_answers. scanner-svc: scans, status_count, status_bytes (the status
// scanner, SAGATOR's "<prefix>-count" and "<prefix>-bytes"), latency. Reporters:
// stats_dropped_events.
const std::vector<StatInfo>* const kStatList = new std::vector<StatInfo>{
    {"messages", false, "Messages decided by a gateway, by service and outcome."},
    {"bytes", false, "Bytes of the messages decided by a gateway, by service and outcome."},
    {"latency", true,
     "Time per message or request, by service and stage (scan, relay, policy, total)."},
    {"errors", false,
     "Failures by service and kind (scanner, relay, protocol, timeout, memory)."},
    {"fail_open", false, "Messages or requests let through unscanned because of fail_open."},
    {"policy_answers", false, "Policy delegation answers by service and action."},
    {"scans", false, "Scanner runs in scanner-svc, by scanner and result (clean, detected, error)."},
    {"status_count", false, "Detections counted by the status scanner, by prefix (<prefix>-count)."},
    {"status_bytes", false,
     "Bytes of the messages counted by the status scanner, by prefix (<prefix>-bytes)."},
    {"stats_dropped_events", false,
     "Statistics events a process dropped (collector unreachable or too many series)."},
};

void AppendEscaped(std::string* out, absl::string_view v) {
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out->push_back('\\');
      out->push_back(c);
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

Labels Sorted(Labels labels) {
  std::sort(labels.begin(), labels.end());
  return labels;
}

// `labels` plus one more (le="..."), in Prometheus syntax.
std::string LabelBlock(const Labels& labels, absl::string_view extra_name = "",
                       absl::string_view extra_value = "") {
  if (labels.empty() && extra_name.empty()) return "";
  std::string out = "{";
  bool first = true;
  auto add = [&](absl::string_view n, absl::string_view v) {
    if (!first) out.push_back(',');
    first = false;
    absl::StrAppend(&out, n, "=\"");
    AppendEscaped(&out, v);
    out.push_back('"');
  };
  for (const auto& [n, v] : labels) add(n, v);
  if (!extra_name.empty()) add(extra_name, extra_value);
  out.push_back('}');
  return out;
}

std::string FormatBound(double b) { return absl::StrFormat("%g", b); }

}  // namespace

size_t BucketOf(double seconds) {
  return std::lower_bound(kHistogramBounds.begin(), kHistogramBounds.end(), seconds) -
         kHistogramBounds.begin();
}

std::string SeriesKey(absl::string_view name, const Labels& labels) {
  return absl::StrCat(name, LabelBlock(labels));
}

void Histogram::Observe(absl::Duration d) { ObserveSeconds(absl::ToDoubleSeconds(d)); }

void Histogram::ObserveSeconds(double seconds) {
  if (!(seconds >= 0)) seconds = 0;
  buckets_[BucketOf(seconds)].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<int64_t>(seconds * 1e9), std::memory_order_relaxed);
}

int64_t Histogram::count() const {
  int64_t n = 0;
  for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
  return n;
}

double Histogram::sum_seconds() const {
  return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
}

std::array<int64_t, kHistogramBuckets> Histogram::buckets() const {
  std::array<int64_t, kHistogramBuckets> out;
  for (size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
  return out;
}

int64_t HistogramSample::count() const {
  int64_t n = 0;
  for (int64_t b : buckets) n += b;
  return n;
}

double HistogramSample::Quantile(double q) const {
  int64_t total = count();
  if (total == 0) return 0;
  double rank = q * static_cast<double>(total);
  int64_t seen = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    seen += buckets[i];
    if (static_cast<double>(seen) >= rank && buckets[i] > 0) {
      return i < kHistogramBounds.size() ? kHistogramBounds[i] : kHistogramBounds.back();
    }
  }
  return kHistogramBounds.back();
}

const std::vector<StatInfo>& StatList() { return *kStatList; }

const StatInfo* FindStat(absl::string_view name) {
  for (const StatInfo& s : *kStatList) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

std::string RenderPrometheus(const Snapshot& snapshot) {
  std::string out;
  std::string last;
  auto header = [&](const std::string& name, bool histogram) {
    if (name == last) return;
    last = name;
    const StatInfo* info = FindStat(name);
    std::string metric =
        absl::StrCat("sagator_", name, histogram ? "_seconds" : "_total");
    if (info != nullptr) absl::StrAppend(&out, "# HELP ", metric, " ", info->help, "\n");
    absl::StrAppend(&out, "# TYPE ", metric, histogram ? " histogram\n" : " counter\n");
  };
  for (const CounterSample& c : snapshot.counters) {
    header(c.name, false);
    absl::StrAppend(&out, "sagator_", c.name, "_total", LabelBlock(c.labels), " ", c.value, "\n");
  }
  last.clear();
  for (const HistogramSample& h : snapshot.histograms) {
    header(h.name, true);
    std::string base = absl::StrCat("sagator_", h.name, "_seconds");
    int64_t cumulative = 0;
    for (size_t i = 0; i < kHistogramBuckets; ++i) {
      cumulative += h.buckets[i];
      std::string le = i < kHistogramBounds.size() ? FormatBound(kHistogramBounds[i]) : "+Inf";
      absl::StrAppend(&out, base, "_bucket", LabelBlock(h.labels, "le", le), " ", cumulative,
                      "\n");
    }
    absl::StrAppend(&out, base, "_sum", LabelBlock(h.labels), " ",
                    absl::StrFormat("%.6f", h.sum_seconds), "\n");
    absl::StrAppend(&out, base, "_count", LabelBlock(h.labels), " ", cumulative, "\n");
  }
  return out;
}

Counter* Registry::GetCounter(absl::string_view name, Labels labels) {
  labels = Sorted(std::move(labels));
  std::string key = SeriesKey(name, labels);
  absl::MutexLock lock(&mu_);
  auto it = counters_.find(key);
  if (it != counters_.end()) return it->second.counter.get();
  if (counters_.size() + histograms_.size() >= max_series_) return &overflow_counter_;
  CounterEntry& e = counters_[key];
  e.name = std::string(name);
  e.labels = std::move(labels);
  e.counter = std::make_unique<Counter>();
  return e.counter.get();
}

Histogram* Registry::GetHistogram(absl::string_view name, Labels labels) {
  labels = Sorted(std::move(labels));
  std::string key = SeriesKey(name, labels);
  absl::MutexLock lock(&mu_);
  auto it = histograms_.find(key);
  if (it != histograms_.end()) return it->second.histogram.get();
  if (counters_.size() + histograms_.size() >= max_series_) return &overflow_histogram_;
  HistogramEntry& e = histograms_[key];
  e.name = std::string(name);
  e.labels = std::move(labels);
  e.histogram = std::make_unique<Histogram>();
  return e.histogram.get();
}

Snapshot Registry::Take() const {
  Snapshot s;
  absl::MutexLock lock(&mu_);
  s.counters.reserve(counters_.size());
  for (const auto& [key, e] : counters_) {
    s.counters.push_back(
        CounterSample{key, e.name, e.labels, e.counter->value(), e.counter->events()});
  }
  s.histograms.reserve(histograms_.size());
  for (const auto& [key, e] : histograms_) {
    HistogramSample h;
    h.key = key;
    h.name = e.name;
    h.labels = e.labels;
    h.buckets = e.histogram->buckets();
    h.sum_seconds = e.histogram->sum_seconds();
    s.histograms.push_back(std::move(h));
  }
  return s;
}

GatewayStats::GatewayStats(Registry* registry, std::string service)
    : registry_(registry), service_(std::move(service)) {
  if (registry_ == nullptr) return;
  for (int o = common::v1::Outcome_MIN; o <= common::v1::Outcome_MAX; ++o) {
    std::string name = common::v1::Outcome_Name(o);
    if (o == common::v1::OUTCOME_UNSPECIFIED) continue;
    messages_[o] = registry_->GetCounter("messages", {{"service", service_}, {"outcome", name}});
    bytes_[o] = registry_->GetCounter("bytes", {{"service", service_}, {"outcome", name}});
  }
  scan_ = registry_->GetHistogram("latency", {{"service", service_}, {"stage", "scan"}});
  total_ = registry_->GetHistogram("latency", {{"service", service_}, {"stage", "total"}});
  policy_ = registry_->GetHistogram("latency", {{"service", service_}, {"stage", "policy"}});
  fail_open_ = registry_->GetCounter("fail_open", {{"service", service_}});
}

void GatewayStats::Message(common::v1::Outcome outcome, int64_t bytes) {
  if (registry_ == nullptr) return;
  // An outcome a gateway could not map is a temporary failure towards the MTA.
  if (outcome <= common::v1::OUTCOME_UNSPECIFIED || outcome > common::v1::Outcome_MAX) {
    outcome = common::v1::TEMPFAIL;
  }
  messages_[outcome]->Add();
  bytes_[outcome]->Add(bytes);
}

void GatewayStats::MessageWithCode(int code, int64_t bytes, const absl::Status& scan_status) {
  common::v1::Outcome o = code == 250   ? common::v1::PASS
                          : code == 251 ? common::v1::FORCED_PASS
                          : code == 550 ? common::v1::REJECT
                          : code == 551 ? common::v1::DROP
                                        : common::v1::TEMPFAIL;
  Message(o, bytes);
  if (!scan_status.ok()) Error("scanner");
}

void GatewayStats::Latency(absl::string_view stage, absl::Duration elapsed) {
  if (registry_ == nullptr) return;
  Histogram* h = stage == "scan"     ? scan_
                 : stage == "total"  ? total_
                 : stage == "policy" ? policy_
                                     : registry_->GetHistogram(
                                          "latency", {{"service", service_},
                                                      {"stage", std::string(stage)}});
  h->Observe(elapsed);
}

void GatewayStats::Error(absl::string_view kind) {
  if (registry_ == nullptr) return;
  registry_->GetCounter("errors", {{"service", service_}, {"kind", std::string(kind)}})->Add();
}

void GatewayStats::FailOpen() {
  if (registry_ != nullptr) fail_open_->Add();
}

void GatewayStats::PolicyAnswer(absl::string_view action) {
  if (registry_ == nullptr) return;
  static constexpr absl::string_view kCommon[] = {"DUNNO",  "OK",      "PREPEND",
                                                  "REJECT", "DISCARD", "DEFER_IF_PERMIT"};
  size_t i = 0;
  while (i < std::size(kCommon) && kCommon[i] != action) ++i;
  Counter* c = i < std::size(kCommon) ? answers_[i].load(std::memory_order_acquire) : nullptr;
  if (c == nullptr) {
    c = registry_->GetCounter("policy_answers",
                              {{"service", service_}, {"action", std::string(action)}});
    if (i < std::size(kCommon)) answers_[i].store(c, std::memory_order_release);
  }
  c->Add();
}

}  // namespace sagator::stats
