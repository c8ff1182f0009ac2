#include "common/stats.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace sagator::stats {
namespace {

TEST(Registry, SameSeriesSamePointerWhateverTheLabelOrder) {
  Registry r;
  Counter* a = r.GetCounter("messages", {{"service", "smtpd"}, {"outcome", "PASS"}});
  Counter* b = r.GetCounter("messages", {{"outcome", "PASS"}, {"service", "smtpd"}});
  Counter* c = r.GetCounter("messages", {{"outcome", "REJECT"}, {"service", "smtpd"}});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  a->Add(3);
  b->Add();
  Snapshot s = r.Take();
  ASSERT_EQ(s.counters.size(), 2u);
  EXPECT_EQ(s.counters[0].key, "messages{outcome=\"PASS\",service=\"smtpd\"}");
  EXPECT_EQ(s.counters[0].value, 4);
  EXPECT_EQ(s.counters[0].events, 2);
}

TEST(Registry, CountsExactlyFromManyThreads) {
  Registry r;
  Counter* c = r.GetCounter("scans");
  Histogram* h = r.GetHistogram("latency");
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c->Add(2);
        h->ObserveSeconds(0.003);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->value(), 160000);
  EXPECT_EQ(c->events(), 80000);
  EXPECT_EQ(h->count(), 80000);
  EXPECT_NEAR(h->sum_seconds(), 240.0, 0.01);
  EXPECT_EQ(h->buckets()[BucketOf(0.003)], 80000);
}

TEST(Registry, SeriesBeyondTheLimitGoToAnOverflowThatIsCounted) {
  Registry r(/*max_series=*/3);
  for (int i = 0; i < 5; ++i) r.GetCounter("status_count", {{"prefix", std::to_string(i)}})->Add();
  EXPECT_EQ(r.Take().counters.size(), 3u);
  EXPECT_EQ(r.overflow_events(), 2);
}

TEST(Histogram, BucketsAndQuantiles) {
  EXPECT_EQ(BucketOf(0.0), 0u);
  EXPECT_EQ(BucketOf(0.0005), 0u);
  EXPECT_EQ(BucketOf(0.0006), 1u);
  EXPECT_EQ(BucketOf(1000.0), kHistogramBuckets - 1);
  HistogramSample h;
  h.buckets[BucketOf(0.002)] = 90;
  h.buckets[BucketOf(0.2)] = 10;
  EXPECT_DOUBLE_EQ(h.Quantile(0.5), 0.0025);
  EXPECT_DOUBLE_EQ(h.Quantile(0.95), 0.25);
  EXPECT_EQ(HistogramSample().Quantile(0.5), 0);
}

TEST(Prometheus, RendersCountersAndCumulativeHistogramsWithHelp) {
  Registry r;
  r.GetCounter("messages", {{"service", "sgfilterd"}, {"outcome", "REJECT"}})->Add(2);
  r.GetCounter("status_count", {{"prefix", "Virus \"x\""}})->Add();
  Histogram* h = r.GetHistogram("latency", {{"service", "sgfilterd"}, {"stage", "scan"}});
  h->ObserveSeconds(0.0004);
  h->ObserveSeconds(0.02);
  std::string text = RenderPrometheus(r.Take());
  EXPECT_NE(text.find("# TYPE sagator_messages_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# HELP sagator_messages_total Messages"), std::string::npos);
  EXPECT_NE(text.find("sagator_messages_total{outcome=\"REJECT\",service=\"sgfilterd\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("sagator_status_count_total{prefix=\"Virus \\\"x\\\"\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE sagator_latency_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("sagator_latency_seconds_bucket{service=\"sgfilterd\",stage=\"scan\","
                      "le=\"0.0005\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("le=\"0.025\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("sagator_latency_seconds_count{service=\"sgfilterd\",stage=\"scan\"} 2\n"),
            std::string::npos);
}

TEST(GatewayStats, CountsMessagesBytesAndUnknownOutcomesAsTempfail) {
  Registry r;
  GatewayStats g(&r, "smtpd");
  g.Message(common::v1::REJECT, 100);
  g.Message(common::v1::REJECT, 50);
  g.Message(common::v1::OUTCOME_UNSPECIFIED, 7);
  g.Error("relay");
  g.FailOpen();
  g.PolicyAnswer("DUNNO");
  g.Latency("relay", absl::Milliseconds(3));
  EXPECT_EQ(r.GetCounter("messages", {{"service", "smtpd"}, {"outcome", "REJECT"}})->value(), 2);
  EXPECT_EQ(r.GetCounter("bytes", {{"service", "smtpd"}, {"outcome", "REJECT"}})->value(), 150);
  EXPECT_EQ(r.GetCounter("messages", {{"service", "smtpd"}, {"outcome", "TEMPFAIL"}})->value(), 1);
  EXPECT_EQ(r.GetCounter("errors", {{"service", "smtpd"}, {"kind", "relay"}})->value(), 1);
  EXPECT_EQ(r.GetCounter("fail_open", {{"service", "smtpd"}})->value(), 1);
  EXPECT_EQ(r.GetCounter("policy_answers", {{"service", "smtpd"}, {"action", "DUNNO"}})->value(), 1);
  EXPECT_EQ(r.GetHistogram("latency", {{"service", "smtpd"}, {"stage", "relay"}})->count(), 1);
  GatewayStats off(nullptr, "smtpd");
  off.Message(common::v1::PASS, 1);  // no registry: nothing, no crash
}

TEST(StatList, EveryGatewayStatIsDeclared) {
  for (const char* name : {"messages", "bytes", "latency", "errors", "fail_open", "policy_answers",
                           "scans", "status_count", "status_bytes", "stats_dropped_events"}) {
    EXPECT_NE(FindStat(name), nullptr) << name;
  }
  EXPECT_EQ(FindStat("nonsense"), nullptr);
}

}  // namespace
}  // namespace sagator::stats
