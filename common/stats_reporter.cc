#include "common/stats_reporter.h"

#include <glog/logging.h>
#include <grpcpp/grpcpp.h>

#include <utility>

#include "absl/time/clock.h"

namespace sagator::stats {

namespace {

constexpr char kDroppedName[] = "stats_dropped_events";

void SetLabels(const Labels& labels, google::protobuf::RepeatedPtrField<collector::v1::Label>* out) {
  for (const auto& [n, v] : labels) {
    collector::v1::Label* l = out->Add();
    l->set_name(n);
    l->set_value(v);
  }
}

}  // namespace

StatsReporter::StatsReporter(Registry* registry, ReporterOptions options)
    : registry_(registry), opt_(std::move(options)) {
  grpc::ChannelArguments args;
  // A collector that is down must cost a failed connect, not a long back-off wait:
  // calls fail at once (no wait_for_ready) and the next batch tries again.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  stub_ = collector::v1::CollectorService::NewStub(
      grpc::CreateCustomChannel(opt_.target, grpc::InsecureChannelCredentials(), args));
  dropped_counter_ = registry_->GetCounter(kDroppedName);
}

StatsReporter::~StatsReporter() { Stop(); }

void StatsReporter::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { Loop(); });
}

void StatsReporter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void StatsReporter::Loop() {
  while (true) {
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_), opt_.interval);
      stopping = stop_;
    }
    SendNow();
    if (stopping) return;
  }
}

bool StatsReporter::SendNow() {
  absl::MutexLock lock(&send_mu_);
  Snapshot snap = registry_->Take();
  collector::v1::ReportRequest req;
  req.set_source(opt_.source);
  absl::Time now = absl::Now();
  req.mutable_sent_at()->set_seconds(absl::ToUnixSeconds(now));
  int64_t events = 0;
  for (const CounterSample& c : snap.counters) {
    if (c.name == kDroppedName) continue;
    auto& last = last_counters_[c.key];
    int64_t delta = c.value - last.first;
    int64_t ev = c.events - last.second;
    last = {c.value, c.events};
    if (ev == 0) continue;
    collector::v1::CounterDelta* d = req.add_counters();
    d->set_name(c.name);
    SetLabels(c.labels, d->mutable_labels());
    d->set_delta(delta);
    d->set_events(ev);
    events += ev;
  }
  for (const HistogramSample& h : snap.histograms) {
    HistogramSample& last = last_histograms_[h.key];
    int64_t n = h.count() - last.count();
    if (n == 0) continue;
    collector::v1::HistogramDelta* d = req.add_histograms();
    d->set_name(h.name);
    SetLabels(h.labels, d->mutable_labels());
    for (size_t i = 0; i < kHistogramBuckets; ++i) d->add_bucket_deltas(h.buckets[i] - last.buckets[i]);
    d->set_sum_seconds(h.sum_seconds - last.sum_seconds);
    last.buckets = h.buckets;
    last.sum_seconds = h.sum_seconds;
    events += n;
  }
  // Events in the overflow series never travel; they are lost and counted.
  int64_t overflow = registry_->overflow_events();
  if (overflow > last_overflow_) {
    unreported_drops_ += overflow - last_overflow_;
    dropped_total_ += overflow - last_overflow_;
    dropped_counter_->Add(overflow - last_overflow_);
    last_overflow_ = overflow;
  }
  req.set_dropped_events(unreported_drops_);
  if (events == 0 && unreported_drops_ == 0 && sent_batches_.load() > 0) return true;

  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(now + opt_.deadline));
  collector::v1::ReportResponse resp;
  grpc::Status s = stub_->Report(&ctx, req, &resp);
  if (s.ok()) {
    unreported_drops_ = 0;
    ++sent_batches_;
    return true;
  }
  if (events > 0) {
    unreported_drops_ += events;
    dropped_total_ += events;
    dropped_counter_->Add(events);
  }
  if (failed_batches_++ % 60 == 0) {
    LOG(WARNING) << "statistics: collector-svc at " << opt_.target << " did not take a batch ("
                 << s.error_message() << "); " << dropped_total_.load()
                 << " events dropped so far";
  }
  return false;
}

}  // namespace sagator::stats
