// Statistics benchmark (issue: collector-svc). Two figures, each against a reference
// in the same run:
//
// 1. Ingest: how many stat events per second collector-svc adds up. A batch holds
//    1000 entries over 200 distinct series (each entry one event, not pre-added),
//    sent by 2 threads over gRPC to collector-svc in this process; the reference is
//    the Aggregator called directly (no gRPC). Target: >= 100,000 events/s.
// 2. Cost on gateway throughput: the smtpd binary relaying to smtp-sink behind a
//    scanner-svc chain that scans nothing (so the gateway's own cost is all there is
//    to measure), without statistics, reporting to collector-svc every second, and
//    with the collector down; rounds alternate so drift hits all three alike.
//    Target: reporting costs under 2% of throughput.
//
//   bazel run //tests/bench:stats_bench -- --seconds 3 --rounds 3
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "collector-svc/aggregator.h"
#include "collector-svc/collector_server.h"
#include "sagator/collector/v1/collector.grpc.pb.h"
#include "tests/bench/bench_util.h"
#include "tests/harness/postfix.h"
#include "tests/harness/subprocess.h"

ABSL_FLAG(double, seconds, 3.0, "seconds per contender and round");
ABSL_FLAG(int, rounds, 3, "alternating rounds of the gateway contenders");
ABSL_FLAG(int, concurrency, 4, "SMTP connections");
ABSL_FLAG(int, size, 20000, "message size in bytes");

namespace sagator::bench {
namespace {

using collector::v1::ReportRequest;
using testing::PickFreePort;
using testing::RunfilePath;
using testing::Subprocess;

constexpr int kEntriesPerBatch = 1000;
constexpr int kSeries = 200;

ReportRequest MakeBatch(int thread) {
  ReportRequest r;
  r.set_source(absl::StrCat("bench@h:", thread));
  for (int i = 0; i < kEntriesPerBatch; ++i) {
    collector::v1::CounterDelta* d = r.add_counters();
    int s = i % kSeries;
    d->set_name(s % 2 == 0 ? "messages" : "bytes");
    collector::v1::Label* l = d->add_labels();
    l->set_name("outcome");
    l->set_value(absl::StrCat("O", s / 2 % 5));
    l = d->add_labels();
    l->set_name("service");
    l->set_value(absl::StrCat("gw", s / 10));
    d->set_delta(s % 2 == 0 ? 1 : 50000);
    d->set_events(1);
  }
  return r;
}

void IngestBenchmark(double seconds) {
  printf("Ingest: batches of %d events over %d series\n", kEntriesPerBatch, kSeries);
  printf("%-40s %14s %10s\n", "contender", "events/s", "batches");
  // Reference: the aggregator alone, one thread.
  {
    collector::Aggregator agg;
    ReportRequest batch = MakeBatch(0);
    absl::Time start = absl::Now(), end = start + absl::Seconds(seconds);
    int64_t batches = 0;
    while (absl::Now() < end) {
      if (!agg.Ingest(batch, absl::Now()).ok()) return;
      ++batches;
    }
    double s = absl::ToDoubleSeconds(absl::Now() - start);
    printf("%-40s %14.0f %10lld\n", "Aggregator::Ingest (no gRPC, 1 thread)",
           static_cast<double>(agg.events_ingested()) / s, static_cast<long long>(batches));
  }
  collector::CollectorOptions o;
  o.port = 0;
  collector::CollectorServer server(o);
  if (!server.Start().ok()) return;
  std::atomic<int64_t> batches{0}, errors{0};
  absl::Time start = absl::Now(), end = start + absl::Seconds(seconds);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      auto stub = collector::v1::CollectorService::NewStub(grpc::CreateChannel(
          absl::StrCat("127.0.0.1:", server.port()), grpc::InsecureChannelCredentials()));
      ReportRequest batch = MakeBatch(t);
      while (absl::Now() < end) {
        grpc::ClientContext ctx;
        collector::v1::ReportResponse resp;
        if (stub->Report(&ctx, batch, &resp).ok()) {
          ++batches;
        } else {
          ++errors;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double s = absl::ToDoubleSeconds(absl::Now() - start);
  double rate = static_cast<double>(server.aggregator().events_ingested()) / s;
  printf("%-40s %14.0f %10lld  (%lld errors)\n", "collector-svc Report over gRPC, 2 clients",
         rate, static_cast<long long>(batches.load()), static_cast<long long>(errors.load()));
  printf("target >= 100000 events/s: %s (%.1fx)\n\n", rate >= 100000 ? "met" : "NOT met",
         rate / 100000);
  server.Shutdown();
}

int GatewayBenchmark(double seconds, int rounds, int conc, size_t size) {
  std::string dir = testing::MakeTempDir("stats-bench.");
  harness::SmtpSink sink;
  if (absl::Status s = sink.Start(); !s.ok()) {
    fprintf(stderr, "smtp-sink: %s\n", s.ToString().c_str());
    return 1;
  }
  collector::CollectorOptions co;
  co.port = 0;
  co.statfile = dir + "/status";
  co.status_interval = absl::Seconds(1);
  collector::CollectorServer collector(co);
  if (!collector.Start().ok()) return 1;
  const int scanner_port = PickFreePort(), dead_port = PickFreePort();
  struct Contender {
    std::string name;
    std::string collector_target;
    int port = 0;
    std::unique_ptr<Subprocess> process;
    double msgs = 0, secs = 0;
  };
  std::vector<Contender> contenders(3);
  contenders[0].name = "smtpd, no statistics";
  contenders[1].name = "smtpd, reporting every 1 s";
  contenders[1].collector_target = absl::StrCat("127.0.0.1:", collector.port());
  contenders[2].name = "smtpd, collector down";
  contenders[2].collector_target = absl::StrCat("127.0.0.1:", dead_port);
  std::string base =
      absl::StrCat("chains:\n  unscanned:\n    - nothing\n"
                   "services:\n  - scanner_svc: {port: ", scanner_port, "}\n");
  std::string scanner_cfg = dir + "/scanner.yaml";
  testing::WriteFile(scanner_cfg, base);
  Subprocess scanner({RunfilePath("scanner-svc/scanner-svc"), "--config", scanner_cfg});
  scanner.RedirectOutput(dir + "/scanner.log");
  if (!scanner.Start().ok()) return 1;
  for (size_t i = 0; i < contenders.size(); ++i) {
    Contender& c = contenders[i];
    c.port = PickFreePort();
    std::string cfg = absl::StrCat(dir, "/smtpd", i, ".yaml");
    testing::WriteFile(
        cfg, absl::StrCat("global: {hostname: bench.test, scanner_target: '127.0.0.1:",
                          scanner_port, "', stats_interval: 1s, collector_target: '",
                          c.collector_target, "'}\n", base,
                          "  - smtpd: {scanners: unscanned, port: ", c.port, ", prefork: ",
                          conc * 2, ", next_hop: '127.0.0.1:", sink.port(), "'}\n"));
    c.process = std::make_unique<Subprocess>(
        std::vector<std::string>{RunfilePath("services/smtpd/smtpd"), "--config", cfg});
    c.process->RedirectOutput(absl::StrCat(dir, "/smtpd", i, ".log"));
    if (!c.process->Start().ok()) return 1;
  }
  for (int port : {scanner_port, contenders[0].port, contenders[1].port, contenders[2].port}) {
    if (absl::Status s = testing::WaitForTcpPort(port, absl::Seconds(30)); !s.ok()) {
      fprintf(stderr, "port %d: %s (logs in %s)\n", port, s.ToString().c_str(), dir.c_str());
      return 1;
    }
  }
  printf("Gateway cost: %zu-byte messages, %d SMTP connections, %.1f s per contender and "
         "round, into smtp-sink\n",
         size, conc, seconds);
  printf("%-6s %-30s %10s %9s %9s %8s\n", "round", "contender", "msgs/s", "p50 ms", "p99 ms",
         "errors");
  int64_t serial = 0;
  for (int r = 1; r <= rounds; ++r) {
    for (Contender& c : contenders) {
      std::vector<std::string> corpus =
          Corpus(static_cast<size_t>(seconds * 4000) + 1000, size, &serial);
      Figures f = SmtpLoad(c.port, conc, seconds, corpus);
      c.msgs += static_cast<double>(f.count);
      c.secs += seconds;
      printf("%-6d %-30s %10.0f %9.2f %9.2f %8lld\n", r, c.name.c_str(), f.msgs_per_s, f.p50_ms,
             f.p99_ms, static_cast<long long>(f.errors));
    }
  }
  double base_rate = contenders[0].msgs / contenders[0].secs;
  printf("\nall rounds:\n");
  for (Contender& c : contenders) {
    double rate = c.msgs / c.secs;
    printf("%-37s %10.0f msgs/s  %+.2f%% vs no statistics\n", c.name.c_str(), rate,
           100.0 * (rate - base_rate) / base_rate);
  }
  double cost = 100.0 * (base_rate - contenders[1].msgs / contenders[1].secs) / base_rate;
  printf("target: reporting costs < 2%% of throughput: %s (%.2f%%)\n",
         cost < 2.0 ? "met" : "NOT met", cost);
  printf("collector-svc ingested %lld events from the reporting smtpd\n",
         static_cast<long long>(collector.aggregator().events_ingested()));
  for (Contender& c : contenders) c.process->Stop();
  scanner.Stop();
  collector.Shutdown();
  return 0;
}

}  // namespace
}  // namespace sagator::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  sagator::bench::IngestBenchmark(seconds);
  return sagator::bench::GatewayBenchmark(seconds, absl::GetFlag(FLAGS_rounds),
                                          absl::GetFlag(FLAGS_concurrency),
                                          static_cast<size_t>(absl::GetFlag(FLAGS_size)));
}
