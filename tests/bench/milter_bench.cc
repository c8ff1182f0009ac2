// Benchmark: 10 KB mail through Postfix with a milter, into Postfix's smtp-sink,
// messages per second and per-message p50/p99 (SMTP DATA to the final 250), side by
// side in one run on the same kind of load:
//   (0) Postfix alone (no milter: the reference for "added latency"),
//   (1) Postfix + SAGATOR milter on a unix socket → scanner-svc (parsemail(libclam)),
//   (2) the same milter on inet:PORT@127.0.0.1 (TCP_NODELAY on the milter's side),
//   (3) Postfix + Debian's clamav-milter on a unix socket → clamd, same signatures,
// each with several SMTP connections and then with one (latency of a lone client,
// where delayed-ACK stalls would show as ~40 ms per message). Every message is
// unique; libclamav's and clamd's clean caches are off and their temporary files
// go to tmpfs. It prints figures and ratios; it is not a pass/fail test.
// Run: scripts/bench.sh milter (or bazel run //tests/bench:milter_bench).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/bench/bench_util.h"
#include "tests/harness/clamd_daemon.h"
#include "tests/harness/postfix.h"
#include "tests/harness/subprocess.h"

ABSL_FLAG(double, seconds, 5.0, "Measuring time per contender and concurrency");
ABSL_FLAG(int, concurrency, 4, "Concurrent SMTP connections");
ABSL_FLAG(int, size, 10240, "Message size in bytes");

namespace sagator {
namespace {

using bench::Figures;
using harness::PostfixInstance;
using testing::PickFreePort;
using testing::RunfilePath;
using testing::Subprocess;

// CPU time (user + system) a process has used so far, in milliseconds; 0 when gone.
double CpuMs(pid_t pid) {
  std::string stat = testing::ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<std::string> f = absl::StrSplit(stat.substr(paren + 2), ' ');
  // Fields 14 and 15 of the file (utime, stime) are 11 and 12 after the name.
  if (f.size() < 13) return 0;
  return (std::stod(f[11]) + std::stod(f[12])) * 1000.0 / sysconf(_SC_CLK_TCK);
}

bool WaitForFile(const std::string& path, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  struct stat st;
  while (stat(path.c_str(), &st) != 0) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

int Main() {
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int conc = absl::GetFlag(FLAGS_concurrency);
  const size_t size = static_cast<size_t>(absl::GetFlag(FLAGS_size));
  std::string dir = testing::MakeTempDir("milter-bench.");
  // Sockets Postfix's smtpd (user postfix) can reach, with short paths.
  char tmpl[] = "/tmp/sagator-mb-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 1;
  chmod(tmpl, 0755);
  const std::string sock_dir = tmpl;
  const std::string shm = bench::TmpfsDir("milter-bench");

  harness::SmtpSink sink;
  if (absl::Status s = sink.Start(); !s.ok()) {
    fprintf(stderr, "smtp-sink: %s\n", s.ToString().c_str());
    return 1;
  }
  auto clamd = bench::StartClamd(dir + "/clamd", shm, 0);
  if (!clamd.ok()) {
    fprintf(stderr, "clamd: %s\n", clamd.status().ToString().c_str());
    return 1;
  }

  const int scanner_port = PickFreePort(), inet_port = PickFreePort();
  const std::string unix_sock = sock_dir + "/sagator.sock";
  const std::string clamav_sock = sock_dir + "/clamav-milter.sock";
  std::string cfg = dir + "/sagator.yaml";
  testing::WriteFile(cfg, absl::StrCat("global: {hostname: bench.test}\n"
                                       "chains:\n"
                                       "  default:\n"
                                       "    - parsemail:\n"
                                       "        scanners:\n"
                                       "          - libclam: {disable_cache: true, database: [",
                                       RunfilePath("data/clamav"),
                                       "]}\n"
                                       "services:\n"
                                       "  - name: scanner\n"
                                       "    scanner_svc: {port: ",
                                       scanner_port,
                                       "}\n"
                                       "  - name: unix\n"
                                       "    milter: {scanners: default, connection: 'unix:",
                                       unix_sock,
                                       "', umask: 0}\n"
                                       "  - name: inet\n"
                                       "    milter: {scanners: default, connection: 'inet:",
                                       inet_port, "@127.0.0.1'}\n"));
  Subprocess scanner(
      {RunfilePath("scanner-svc/scanner-svc"), "--config", cfg, "--service", "scanner"},
      {{"TMPDIR", shm}});
  scanner.RedirectOutput(dir + "/scanner.log");
  Subprocess milter_unix(
      {RunfilePath("services/milter/milter"), "--config", cfg, "--service", "unix"});
  milter_unix.RedirectOutput(dir + "/milter-unix.log");
  Subprocess milter_inet(
      {RunfilePath("services/milter/milter"), "--config", cfg, "--service", "inet"});
  milter_inet.RedirectOutput(dir + "/milter-inet.log");

  std::string clamav_cfg = dir + "/clamav-milter.conf";
  testing::WriteFile(clamav_cfg, absl::StrCat("MilterSocket unix:", clamav_sock,
                                              "\nMilterSocketMode 666\nFixStaleSocket yes\n"
                                              "ClamdSocket ",
                                              (*clamd)->unix_address(),
                                              "\nForeground yes\nOnInfected Reject\nOnFail Defer\n"
                                              "AddHeader Replace\nLogFile ",
                                              dir, "/clamav-milter.log\nTemporaryDirectory ", shm,
                                              "\nPidFile ", dir, "/clamav-milter.pid\n"));
  Subprocess clamav_milter({"/usr/sbin/clamav-milter", "-c", clamav_cfg});
  clamav_milter.RedirectOutput(dir + "/clamav-milter.out");
  for (Subprocess* p : {&scanner, &milter_unix, &milter_inet, &clamav_milter}) {
    if (!p->Start().ok()) return 1;
  }
  for (int port : {scanner_port, inet_port}) {
    if (absl::Status s = testing::WaitForTcpPort(port, absl::Seconds(30)); !s.ok()) {
      fprintf(stderr, "port %d: %s (logs in %s)\n", port, s.ToString().c_str(), dir.c_str());
      return 1;
    }
  }
  for (const std::string& s : {unix_sock, clamav_sock}) {
    if (!WaitForFile(s, absl::Seconds(30))) {
      fprintf(stderr, "no socket %s (logs in %s)\n", s.c_str(), dir.c_str());
      return 1;
    }
  }

  auto postfix = [&](const std::string& milter) -> std::unique_ptr<PostfixInstance> {
    PostfixInstance::Options o;
    o.relay_port = sink.port();
    o.main_cf = {"milter_default_action = tempfail", "default_process_limit = 200"};
    if (!milter.empty()) o.main_cf.push_back("smtpd_milters = " + milter);
    auto pf = PostfixInstance::Start(o);
    if (!pf.ok()) {
      fprintf(stderr, "postfix: %s\n", pf.status().ToString().c_str());
      return nullptr;
    }
    return std::move(*pf);
  };
  auto pf_plain = postfix("");
  auto pf_unix = postfix("unix:" + unix_sock);
  auto pf_inet = postfix(absl::StrCat("inet:127.0.0.1:", inet_port));
  auto pf_clamav = postfix("unix:" + clamav_sock);
  if (!pf_plain || !pf_unix || !pf_inet || !pf_clamav) return 1;

  printf(
      "SAGATOR milter benchmark: %zu-byte unique MIME messages into Postfix (smtpd_milters) "
      "and on to smtp-sink, %.1f s per row\n",
      size, seconds);
  printf("%-40s %5s %10s %9s %9s %8s %6s\n", "contender", "conns", "msgs/s", "p50 ms", "p99 ms",
         "count", "errors");
  const size_t n = static_cast<size_t>(seconds * 3000) + 1000;
  int64_t serial = 0;
  auto row = [](const char* who, int c, const Figures& f) {
    printf("%-40s %5d %10.1f %9.2f %9.2f %8lld %6lld\n", who, c, f.msgs_per_s, f.p50_ms, f.p99_ms,
           static_cast<long long>(f.count), static_cast<long long>(f.errors));
    fflush(stdout);
  };
  struct Contender {
    const char* name;
    PostfixInstance* pf;
    // The filter's own processes (their CPU time is reported per message).
    std::vector<pid_t> pids;
    Figures many, one;
    double cpu_ms_per_msg = 0;
    // The same, per process of `pids`.
    std::vector<double> cpu_split;
  };
  std::vector<Contender> all = {
      {"Postfix alone (reference)", pf_plain.get(), {}},
      {"Postfix + milter unix + scanner-svc", pf_unix.get(), {milter_unix.pid(), scanner.pid()}},
      {"Postfix + milter inet + scanner-svc", pf_inet.get(), {milter_inet.pid(), scanner.pid()}},
      {"Postfix + clamav-milter unix + clamd",
       pf_clamav.get(),
       {clamav_milter.pid(), (*clamd)->pid()}}};
  auto cpu = [](const Contender& c) {
    double ms = 0;
    for (pid_t p : c.pids) ms += CpuMs(p);
    return ms;
  };
  for (Contender& c : all) bench::SmtpLoad(c.pf->smtp_port(), conc, 0.5, bench::Corpus(100, size, &serial));
  for (Contender& c : all) {
    std::vector<std::string> corpus = bench::Corpus(n, size, &serial);
    double before = cpu(c);
    std::vector<double> each;
    for (pid_t p : c.pids) each.push_back(CpuMs(p));
    c.many = bench::SmtpLoad(c.pf->smtp_port(), conc, seconds, corpus);
    double count = std::max<double>(1, c.many.count);
    c.cpu_ms_per_msg = (cpu(c) - before) / count;
    for (size_t i = 0; i < c.pids.size(); ++i) {
      c.cpu_split.push_back((CpuMs(c.pids[i]) - each[i]) / count);
    }
    row(c.name, conc, c.many);
    // Let Postfix empty its queue so the next row does not pay for this one.
    c.pf->WaitForEmptyQueue(absl::Seconds(120));
  }
  for (Contender& c : all) {
    c.one = bench::SmtpLoad(c.pf->smtp_port(), 1, seconds, bench::Corpus(n, size, &serial));
    row(c.name, 1, c.one);
    c.pf->WaitForEmptyQueue(absl::Seconds(120));
  }

  const Figures& ref = all[0].many;
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  printf("ratio milter(unix) / clamav-milter throughput, %d conns = %.2f; 1 conn = %.2f\n", conc,
         ratio(all[1].many.msgs_per_s, all[3].many.msgs_per_s),
         ratio(all[1].one.msgs_per_s, all[3].one.msgs_per_s));
  printf(
      "ratio milter(inet) / milter(unix) throughput, 1 conn = %.2f (delayed-ACK stalls would "
      "show as inet p50 ~40 ms above unix)\n",
      ratio(all[2].one.msgs_per_s, all[1].one.msgs_per_s));
  for (size_t i = 1; i < all.size(); ++i) {
    printf(
        "CPU of the filter's processes per message, %s: %.3f ms (milter %.3f + scanner "
        "%.3f)\n",
        all[i].name, all[i].cpu_ms_per_msg, all[i].cpu_split[0], all[i].cpu_split[1]);
  }
  for (size_t i = 1; i < all.size(); ++i) {
    printf(
        "added to Postfix alone by %s: p50 %.2f ms, p99 %.2f ms (%d conns); p50 %.2f ms "
        "(1 conn)\n",
        all[i].name, all[i].many.p50_ms - ref.p50_ms, all[i].many.p99_ms - ref.p99_ms, conc,
        all[i].one.p50_ms - all[0].one.p50_ms);
  }
  std::filesystem::remove_all(shm);
  std::filesystem::remove_all(sock_dir);
  return 0;
}

}  // namespace
}  // namespace sagator

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return sagator::Main();
}
