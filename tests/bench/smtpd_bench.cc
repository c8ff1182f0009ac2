// Benchmark: 10 KB mail through an SMTP content filter into Postfix's smtp-sink,
// messages per second and per-message p50/p99, side by side in one run:
//   (0) straight into smtp-sink (no filter: the reference for "added latency"),
//   (1) SAGATOR smtpd → scanner-svc (libclam) → smtp-sink,
//   (2) ClamSMTP (Debian's clamsmtp) → clamd (same signature file) → smtp-sink,
//   (3) smtpd with a chain that scans nothing: the gateway's own cost.
// Each client thread keeps one SMTP connection and sends transaction after
// transaction, as Postfix's content_filter transport does. Every message is unique.
// It prints figures and ratios; it is not a pass/fail test.
// Run: scripts/bench.sh smtpd (or bazel run //tests/bench:smtpd_bench).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/bench/bench_util.h"
#include "tests/harness/clamd_daemon.h"
#include "tests/harness/postfix.h"
#include "tests/harness/subprocess.h"

ABSL_FLAG(double, seconds, 5.0, "Measuring time per contender");
ABSL_FLAG(int, concurrency, 4, "Concurrent SMTP connections");
ABSL_FLAG(int, size, 10240, "Message size in bytes");

namespace sagator {
namespace {

using bench::Figures;
using testing::PickFreePort;
using testing::RunfilePath;
using testing::Subprocess;

int Main() {
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int conc = absl::GetFlag(FLAGS_concurrency);
  const size_t size = static_cast<size_t>(absl::GetFlag(FLAGS_size));
  std::string dir = testing::MakeTempDir("smtpd-bench.");

  harness::SmtpSink sink;
  if (absl::Status s = sink.Start(); !s.ok()) {
    fprintf(stderr, "smtp-sink: %s\n", s.ToString().c_str());
    return 1;
  }
  // smtp-sink keeps each message in a file; the load is what we measure, not that.
  harness::ClamdDaemon::Options clamd_options;
  auto clamd = harness::ClamdDaemon::Start(dir + "/clamd", clamd_options);
  if (!clamd.ok()) {
    fprintf(stderr, "clamd: %s\n", clamd.status().ToString().c_str());
    return 1;
  }

  const int scanner_port = PickFreePort(), smtpd_port = PickFreePort(),
            bare_port = PickFreePort(), clamsmtp_port = PickFreePort();
  std::string cfg = dir + "/sagator.yaml";
  testing::WriteFile(
      cfg, absl::StrCat("global: {hostname: bench.test}\n"
                        "chains:\n"
                        "  default:\n"
                        "    - libclam: {database: [", RunfilePath("data/clamav"), "]}\n"
                        "  unscanned:\n"
                        "    - nothing\n"
                        "services:\n"
                        "  - name: scanner\n"
                        "    scanner_svc: {port: ", scanner_port, "}\n"
                        "  - name: smtpd\n"
                        "    smtpd: {scanners: default, port: ", smtpd_port, ", prefork: ",
                        conc * 2, ", next_hop: '127.0.0.1:", sink.port(), "'}\n"
                        "  - name: bare\n"
                        "    smtpd: {scanners: unscanned, port: ", bare_port, ", prefork: ",
                        conc * 2, ", next_hop: '127.0.0.1:", sink.port(), "'}\n"));
  Subprocess scanner({RunfilePath("scanner-svc/scanner-svc"), "--config", cfg, "--service",
                      "scanner"});
  scanner.RedirectOutput(dir + "/scanner.log");
  Subprocess smtpd({RunfilePath("services/smtpd/smtpd"), "--config", cfg});
  smtpd.RedirectOutput(dir + "/smtpd.log");
  // The same gateway with a chain that scans nothing: what the gateway itself adds.
  Subprocess bare({RunfilePath("services/smtpd/smtpd"), "--config", cfg, "--service", "bare"});
  bare.RedirectOutput(dir + "/bare.log");

  std::string clamsmtp_cfg = dir + "/clamsmtpd.conf";
  testing::WriteFile(clamsmtp_cfg,
                     absl::StrCat("OutAddress: 127.0.0.1:", sink.port(), "\nListen: 127.0.0.1:",
                                  clamsmtp_port, "\nClamAddress: ",
                                  absl::StripPrefix((*clamd)->unix_address(), "unix:"),
                                  "\nTempDirectory: ", dir, "\nMaxConnections: 256\n"
                                  "TimeOut: 60\n"));
  Subprocess clamsmtp({"/usr/sbin/clamsmtpd", "-f", clamsmtp_cfg, "-d", "1", "-p",
                       dir + "/clamsmtpd.pid"});
  clamsmtp.RedirectOutput(dir + "/clamsmtpd.log");
  for (Subprocess* p : {&scanner, &smtpd, &bare, &clamsmtp}) {
    if (!p->Start().ok()) return 1;
  }
  for (int port : {scanner_port, smtpd_port, bare_port, clamsmtp_port}) {
    if (absl::Status s = testing::WaitForTcpPort(port, absl::Seconds(30)); !s.ok()) {
      fprintf(stderr, "port %d: %s (logs in %s)\n", port, s.ToString().c_str(), dir.c_str());
      return 1;
    }
  }

  printf("SAGATOR smtpd benchmark: %zu-byte unique MIME messages, %d connections, %.1f s per "
         "contender, into smtp-sink\n",
         size, conc, seconds);
  printf("%-34s %10s %9s %9s %8s %6s\n", "contender", "msgs/s", "p50 ms", "p99 ms", "count",
         "errors");
  // Enough messages for the fastest contender; each contender gets its own.
  const size_t n = static_cast<size_t>(seconds * 20000) + 1000;
  int64_t serial = 0;
  auto row = [](const char* who, const Figures& f) {
    printf("%-34s %10.1f %9.2f %9.2f %8lld %6lld\n", who, f.msgs_per_s, f.p50_ms, f.p99_ms,
           static_cast<long long>(f.count), static_cast<long long>(f.errors));
    fflush(stdout);
  };
  // Warm-up: first connections, first scans.
  bench::SmtpLoad(smtpd_port, conc, 0.5, bench::Corpus(200, size, &serial));
  bench::SmtpLoad(clamsmtp_port, conc, 0.5, bench::Corpus(200, size, &serial));

  Figures direct = bench::SmtpLoad(sink.port(), conc, seconds, bench::Corpus(n, size, &serial));
  row("smtp-sink directly (reference)", direct);
  Figures ours = bench::SmtpLoad(smtpd_port, conc, seconds, bench::Corpus(n, size, &serial));
  row("smtpd + scanner-svc (libclam)", ours);
  Figures theirs = bench::SmtpLoad(clamsmtp_port, conc, seconds, bench::Corpus(n, size, &serial));
  row("ClamSMTP + clamd", theirs);
  Figures gateway_only = bench::SmtpLoad(bare_port, conc, seconds, bench::Corpus(n, size, &serial));
  row("smtpd + scanner-svc (nothing)", gateway_only);

  printf("ratio smtpd / ClamSMTP throughput = %.2f (target >= 2)\n",
         theirs.msgs_per_s > 0 ? ours.msgs_per_s / theirs.msgs_per_s : 0.0);
  printf("added by smtpd itself (chain 'nothing', gRPC call included): p50 %.2f ms, p99 %.2f "
         "ms (target p50 < 2 ms)\n",
         gateway_only.p50_ms - direct.p50_ms, gateway_only.p99_ms - direct.p99_ms);
  printf("added by smtpd with the libclam scan: p50 %.2f ms, p99 %.2f ms\n",
         ours.p50_ms - direct.p50_ms, ours.p99_ms - direct.p99_ms);
  printf("added by ClamSMTP (incl. the scan): p50 %.2f ms, p99 %.2f ms\n",
         theirs.p50_ms - direct.p50_ms, theirs.p99_ms - direct.p99_ms);
  return 0;
}

}  // namespace
}  // namespace sagator

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return sagator::Main();
}
