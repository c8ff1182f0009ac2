#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "collector-svc/aggregator.h"
#include "collector-svc/collector_server.h"
#include "collector-svc/graphs.h"
#include "collector-svc/time_series.h"
#include "common/stats.h"
#include "common/stats_reporter.h"
#include "gtest/gtest.h"
#include "tests/harness/subprocess.h"

namespace sagator::collector {
namespace {

std::string TmpPath(const std::string& name) {
  const char* d = std::getenv("TEST_TMPDIR");
  return absl::StrCat(d != nullptr ? d : "/tmp", "/", name);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

using testing::TcpExchange;

std::string HttpGet(int port, const std::string& path) {
  return TcpExchange(port, absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
}

v1::ReportRequest Batch(const std::string& source) {
  v1::ReportRequest r;
  r.set_source(source);
  return r;
}

void AddCounter(v1::ReportRequest* r, const std::string& name, stats::Labels labels, int64_t delta,
                int64_t events) {
  v1::CounterDelta* d = r->add_counters();
  d->set_name(name);
  for (auto& [n, v] : labels) {
    v1::Label* l = d->add_labels();
    l->set_name(n);
    l->set_value(v);
  }
  d->set_delta(delta);
  d->set_events(events);
}

int64_t CounterValue(const Aggregator& agg, const std::string& key) {
  for (const auto& c : agg.Totals().counters) {
    if (c.key == key) return c.value;
  }
  return -1;
}

TEST(Aggregator, AddsBatchesFromSeveralSourcesExactly) {
  Aggregator agg;
  absl::Time now = absl::Now();
  for (int i = 0; i < 3; ++i) {
    v1::ReportRequest b = Batch(absl::StrCat("sgfilterd@h:", i));
    AddCounter(&b, "messages", {{"service", "sgfilterd"}, {"outcome", "PASS"}}, 5, 5);
    AddCounter(&b, "status_count", {{"prefix", "Virus"}}, 2, 2);
    AddCounter(&b, "status_bytes", {{"prefix", "Virus"}}, 300, 2);
    auto n = agg.Ingest(b, now);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, 9);
  }
  EXPECT_EQ(CounterValue(agg, "messages{outcome=\"PASS\",service=\"sgfilterd\"}"), 15);
  EXPECT_EQ(CounterValue(agg, "status_count{prefix=\"Virus\"}"), 6);
  EXPECT_EQ(agg.events_ingested(), 27);
  EXPECT_EQ(agg.Sources().size(), 3u);
  std::string text = agg.StatusText(now);
  EXPECT_NE(text.find("\nVirus-count 6\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nVirus-bytes 900\n"), std::string::npos);
  EXPECT_NE(text.find("\nmessages{outcome=\"PASS\",service=\"sgfilterd\"} 15\n"),
            std::string::npos);
  EXPECT_TRUE(absl::EndsWith(text, "\n# end\n"));
  auto day = agg.Points(Range::kDay, now);
  EXPECT_EQ(day.back().values[static_cast<size_t>(Metric::kMessages)], 15);
  EXPECT_EQ(day.back().values[static_cast<size_t>(Metric::kClean)], 15);
  EXPECT_EQ(day.back().values[static_cast<size_t>(Metric::kViruses)], 6);
}

TEST(Aggregator, RefusesABadBatchWholeAndChangesNothing) {
  Aggregator agg;
  v1::ReportRequest b = Batch("x");
  AddCounter(&b, "messages", {{"outcome", "PASS"}}, 1, 1);
  AddCounter(&b, "bad name!", {}, 1, 1);
  EXPECT_EQ(agg.Ingest(b, absl::Now()).status().code(), absl::StatusCode::kInvalidArgument);
  v1::ReportRequest h = Batch("x");
  v1::HistogramDelta* d = h.add_histograms();
  d->set_name("latency");
  d->add_bucket_deltas(1);  // wrong bucket count
  EXPECT_EQ(agg.Ingest(h, absl::Now()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(agg.Totals().counters.empty());
  EXPECT_EQ(agg.events_ingested(), 0);
}

TEST(Aggregator, CountsDroppedEventsPerSourceAndSkipsSeriesBeyondTheLimit) {
  Aggregator agg(absl::Now(), /*max_series=*/2);
  v1::ReportRequest b = Batch("smtpd@h:7");
  AddCounter(&b, "a", {}, 1, 1);
  AddCounter(&b, "b", {}, 1, 1);
  AddCounter(&b, "c", {}, 4, 4);
  b.set_dropped_events(11);
  ASSERT_TRUE(agg.Ingest(b, absl::Now()).ok());
  EXPECT_EQ(agg.skipped_events(), 4);
  EXPECT_EQ(agg.Sources()[0].dropped_events, 11);
  Aggregator roomy;
  ASSERT_TRUE(roomy.Ingest(b, absl::Now()).ok());
  EXPECT_EQ(CounterValue(roomy, "stats_dropped_events{source=\"smtpd@h\"}"), 11);
}

TEST(Aggregator, HistoryRoundTripKeepsTotalsAndSeries) {
  Aggregator a;
  absl::Time now = absl::Now();
  v1::ReportRequest b = Batch("x");
  AddCounter(&b, "messages", {{"outcome", "REJECT"}, {"service", "smtpd"}}, 3, 3);
  v1::HistogramDelta* h = b.add_histograms();
  h->set_name("latency");
  v1::Label* l = h->add_labels();
  l->set_name("stage");
  l->set_value("scan");
  for (size_t i = 0; i < stats::kHistogramBuckets; ++i) h->add_bucket_deltas(i == 3 ? 2 : 0);
  h->set_sum_seconds(0.008);
  ASSERT_TRUE(a.Ingest(b, now).ok());
  std::string bytes;
  a.SaveHistory().SerializeToString(&bytes);
  v1::History loaded;
  ASSERT_TRUE(loaded.ParseFromString(bytes));
  Aggregator b2;
  b2.LoadHistory(loaded);
  EXPECT_EQ(CounterValue(b2, "messages{outcome=\"REJECT\",service=\"smtpd\"}"), 3);
  ASSERT_EQ(b2.Totals().histograms.size(), 1u);
  EXPECT_EQ(b2.Totals().histograms[0].count(), 2);
  EXPECT_EQ(b2.Points(Range::kWeek, now).back().values[static_cast<size_t>(Metric::kRejected)], 3);
  EXPECT_EQ(b2.Points(Range::kDay, now).back().values[static_cast<size_t>(Metric::kLatencyCount)],
            2);
}

TEST(TimeSeries, RingsForgetWhatIsOlderThanTheirSpan) {
  TimeSeries ts;
  absl::Time t0 = absl::FromUnixSeconds(1700000000);
  ts.Add(t0, Metric::kMessages, 1);
  ts.Add(t0 + absl::Minutes(1), Metric::kMessages, 2);
  auto day = ts.Points(Range::kDay, t0 + absl::Minutes(1));
  ASSERT_EQ(day.size(), 1440u);
  EXPECT_EQ(day[1438].values[0], 1);
  EXPECT_EQ(day[1439].values[0], 2);
  EXPECT_EQ(ts.Points(Range::kMonth, t0 + absl::Minutes(1)).size(), 744u);
  // A day later t0's minute is out of the day and overwritten in the ring (t0 + 1
  // minute is still inside the last 1440 minutes); the hour ring has all of it.
  ts.Add(t0 + absl::Hours(24), Metric::kMessages, 5);
  auto later = ts.Points(Range::kDay, t0 + absl::Hours(24));
  double sum = 0;
  for (const auto& p : later) sum += p.values[0];
  EXPECT_EQ(sum, 2 + 5);
  double week = 0;
  for (const auto& p : ts.Points(Range::kWeek, t0 + absl::Hours(24))) week += p.values[0];
  EXPECT_EQ(week, 8);
  EXPECT_EQ(ts.Points(Range::kYear, t0).size(), 366u);
}

TEST(Graphs, PageEscapesReporterTextAndDrawsEveryGraph) {
  Aggregator agg;
  v1::ReportRequest b = Batch("<script>alert(1)</script>");
  AddCounter(&b, "status_count", {{"prefix", "Virus<img src=x onerror=alert(1)>"}}, 1, 1);
  AddCounter(&b, "messages", {{"outcome", "PASS"}, {"service", "sgfilterd"}}, 4, 4);
  ASSERT_TRUE(agg.Ingest(b, absl::Now()).ok());
  std::string page = RenderPage(agg, Range::kDay, absl::Now());
  EXPECT_EQ(page.find("<script>alert"), std::string::npos);
  EXPECT_EQ(page.find("<img src=x"), std::string::npos);
  EXPECT_NE(page.find("&lt;img src=x"), std::string::npos);
  for (const std::string& g : GraphNames()) {
    EXPECT_NE(page.find(absl::StrCat("id=\"", g, "\"")), std::string::npos) << g;
  }
  std::string svg = RenderGraph(agg, "messages", Range::kDay, absl::Now());
  EXPECT_TRUE(absl::StartsWith(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_EQ(RenderGraph(agg, "nonsense", Range::kDay, absl::Now()), "");
}

TEST(StatusFile, IsNeverSeenHalfWritten) {
  std::string path = TmpPath("status-atomic");
  ASSERT_TRUE(WriteFileAtomically(path, "# SAGATOR\nstart 1\n# end\n").ok());
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 2000; ++i) {
      // Sizes vary so a torn read would show as a wrong length or a missing end.
      std::string body = absl::StrCat("# SAGATOR\n", std::string(static_cast<size_t>(i % 97) * 50, 'x'),
                                      "\n# end\n");
      ASSERT_TRUE(WriteFileAtomically(path, body).ok());
    }
    done = true;
  });
  int reads = 0;
  while (!done) {
    std::string s = ReadFile(path);
    ASSERT_TRUE(absl::StartsWith(s, "# SAGATOR\n")) << s.size();
    ASSERT_TRUE(absl::EndsWith(s, "\n# end\n")) << s.size();
    ++reads;
  }
  writer.join();
  EXPECT_GT(reads, 0);
  EXPECT_FALSE(WriteFileAtomically("/nonexistent-dir/status", "x").ok());
}

class CollectorServerTest : public ::testing::Test {
 protected:
  CollectorOptions Options() {
    CollectorOptions o;
    o.port = 0;
    o.http_port = 0;
    o.legacy_port = 0;
    o.statfile = TmpPath(absl::StrCat("status-", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    o.history_file = o.statfile + ".history";
    o.status_interval = absl::Milliseconds(50);
    return o;
  }
};

TEST_F(CollectorServerTest, ReporterBatchesArriveExactlyAndEveryEndpointShowsThem) {
  CollectorServer server(Options());
  ASSERT_TRUE(server.Start().ok());
  stats::Registry registry;
  stats::GatewayStats gw(&registry, "sgfilterd");
  stats::StatsReporter reporter(
      &registry, {.target = absl::StrCat("127.0.0.1:", server.port()), .source = "test@h:1",
                  .interval = absl::Milliseconds(20)});
  reporter.Start();
  for (int i = 0; i < 1000; ++i) {
    gw.Message(i % 10 == 0 ? common::v1::REJECT : common::v1::PASS, 100);
    gw.Latency("scan", absl::Milliseconds(2));
  }
  registry.GetCounter("status_count", {{"prefix", "Virus"}})->Add(100);
  reporter.Stop();  // sends the last batch
  EXPECT_EQ(reporter.dropped_events(), 0);
  Aggregator& agg = server.aggregator();
  EXPECT_EQ(CounterValue(agg, "messages{outcome=\"PASS\",service=\"sgfilterd\"}"), 900);
  EXPECT_EQ(CounterValue(agg, "messages{outcome=\"REJECT\",service=\"sgfilterd\"}"), 100);
  EXPECT_EQ(CounterValue(agg, "bytes{outcome=\"REJECT\",service=\"sgfilterd\"}"), 10000);
  EXPECT_EQ(agg.events_ingested(), 1000 * 3 + 1);

  std::string metrics = HttpGet(server.http_port(), "/metrics");
  EXPECT_NE(metrics.find("HTTP/1.1 200"), std::string::npos);
  EXPECT_NE(metrics.find("sagator_messages_total{outcome=\"PASS\",service=\"sgfilterd\"} 900\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("sagator_latency_seconds_count{service=\"sgfilterd\",stage=\"scan\"} 1000"),
            std::string::npos);
  std::string page = HttpGet(server.http_port(), "/?range=week");
  EXPECT_NE(page.find("Content-Type: text/html"), std::string::npos);
  EXPECT_NE(page.find("polyline class=\"data\""), std::string::npos);
  EXPECT_NE(HttpGet(server.http_port(), "/graph/latency.svg?range=month").find("image/svg+xml"),
            std::string::npos);
  EXPECT_NE(HttpGet(server.http_port(), "/?range=decade").find("HTTP/1.1 400"), std::string::npos);
  EXPECT_NE(HttpGet(server.http_port(), "/nothing").find("HTTP/1.1 404"), std::string::npos);
  EXPECT_NE(TcpExchange(server.http_port(), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                                         "Connection: close\r\n\r\n")
                .find("HTTP/1.1 405"),
            std::string::npos);
  std::string legacy = TcpExchange(server.legacy_port(), "");
  EXPECT_NE(legacy.find("\nVirus-count 100\n"), std::string::npos) << legacy;
  EXPECT_TRUE(absl::EndsWith(legacy, "# end\n"));
  // The status file catches up within an interval.
  absl::Time until = absl::Now() + absl::Seconds(10);
  while (ReadFile(Options().statfile).find("\nVirus-count 100\n") == std::string::npos &&
         absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_NE(ReadFile(Options().statfile).find("\nVirus-count 100\n"), std::string::npos);
}

TEST_F(CollectorServerTest, WhileTheCollectorIsDownEventsAreDroppedAndCounted) {
  CollectorOptions o = Options();
  // A port nobody listens on: bind one, learn it, stop it.
  int port;
  {
    CollectorServer probe(o);
    ASSERT_TRUE(probe.Start().ok());
    port = probe.port();
    probe.Shutdown();
  }
  stats::Registry registry;
  stats::GatewayStats gw(&registry, "smtpd");
  stats::StatsReporter reporter(&registry, {.target = absl::StrCat("127.0.0.1:", port),
                                            .source = "smtpd@h:2",
                                            .interval = absl::Hours(1),
                                            .deadline = absl::Milliseconds(300)});
  for (int i = 0; i < 7; ++i) gw.Message(common::v1::PASS, 10);
  absl::Time t0 = absl::Now();
  EXPECT_FALSE(reporter.SendNow());
  EXPECT_LT(absl::Now() - t0, absl::Seconds(2));
  EXPECT_EQ(reporter.dropped_events(), 7 * 2);
  EXPECT_EQ(registry.GetCounter("stats_dropped_events")->value(), 14);

  // The collector comes back on the same port: the first batch that gets through
  // carries the loss.
  o.port = port;
  CollectorServer server(o);
  ASSERT_TRUE(server.Start().ok());
  bool sent = false;
  for (int i = 0; i < 50 && !sent; ++i) {
    sent = reporter.SendNow();
    if (!sent) absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(sent);
  EXPECT_EQ(CounterValue(server.aggregator(), "stats_dropped_events{source=\"smtpd@h\"}"), 14);
  EXPECT_EQ(CounterValue(server.aggregator(), "messages{outcome=\"PASS\",service=\"smtpd\"}"), -1);
  gw.Message(common::v1::PASS, 10);
  ASSERT_TRUE(reporter.SendNow());
  EXPECT_EQ(CounterValue(server.aggregator(), "messages{outcome=\"PASS\",service=\"smtpd\"}"), 1);
  EXPECT_EQ(reporter.dropped_events(), 14);
}

TEST_F(CollectorServerTest, KeepsTotalsAcrossARestartThroughTheHistoryFile) {
  CollectorOptions o = Options();
  {
    CollectorServer server(o);
    ASSERT_TRUE(server.Start().ok());
    v1::ReportRequest b = Batch("x");
    AddCounter(&b, "messages", {{"outcome", "DROP"}, {"service", "milter"}}, 9, 9);
    ASSERT_TRUE(server.aggregator().Ingest(b, absl::Now()).ok());
    server.Shutdown();  // writes the files once more
  }
  CollectorServer again(o);
  ASSERT_TRUE(again.Start().ok());
  EXPECT_EQ(CounterValue(again.aggregator(), "messages{outcome=\"DROP\",service=\"milter\"}"), 9);
}

}  // namespace
}  // namespace sagator::collector
