// Benchmark: Postfix SMTPD policy servers (greylisting), requests per second and
// per-request p50/p99, side by side in one run on the same traffic: Postfix 3.7
// smtpd_access_policy requests at RCPT over persistent connections, most of them
// (80% by default) from a fixed pool of triplets that recur, the rest brand-new
// triplets (bench::PolicyTraffic). Contenders:
//   (0) Debian's postgrey (Perl, BerkeleyDB): the reference,
//   and any further policy server added with PolicyBench::Add (SAGATOR's smtpd_policy),
//   last the floor: a responder in this process that answers DUNNO to every request
//   without looking at it (a thread per connection, blocking reads). Its row is the
//   most this machine and this load generator can do at all; "ceiling" ratios give
//   what no real policy server here could exceed. (Its CPU column counts this whole
//   process: the load generator too.)
// Each contender gets, alone on the machine: a warm-up (every pool triplet once,
// greylisted; after the delay once more, passed: the pool is then known, as on a
// server that has run for a while), then three rows: one connection as fast as it
// goes (the latency of one smtpd), --connections connections as fast as they go
// (throughput), and --rate requests/s paced over --connections connections (p99 at
// a realistic load; latency counts from the scheduled send time). Every contender
// must be configured with the same greylisting delay (--delay) so that the action
// mixes match; each row prints its mix. It prints figures and ratios; it is not a
// pass/fail test.
// Run: scripts/bench.sh policy (or bazel run //tests/bench:policy_bench -- --seconds 2).
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/sql.h"
#include "tests/bench/bench_util.h"
#include "tests/harness/policy_client.h"
#include "tests/harness/postgres.h"
#include "tests/harness/postgrey.h"
#include "tests/harness/subprocess.h"

ABSL_FLAG(double, seconds, 5.0, "Measuring time per contender and row");
ABSL_FLAG(int, connections, 8, "Concurrent policy connections (Postfix: smtpd processes)");
ABSL_FLAG(double, rate, 2000, "Requests per second in the paced row (0 skips it)");
ABSL_FLAG(int, pool, 300, "Triplets that recur");
ABSL_FLAG(double, new_fraction, 0.2, "Share of requests with a brand-new triplet");
ABSL_FLAG(int, delay, 1, "Greylisting delay in seconds every contender is configured with");
ABSL_FLAG(bool, db_on_disk, false,
          "Keep every contender's database on disk with durable commits instead of in "
          "memory: postgrey's BerkeleyDB and SQLite under TEST_TMPDIR, PostgreSQL with "
          "fsync on. postgrey then fsyncs every request's transaction");
ABSL_FLAG(bool, floor, true, "Also measure the no-work responder (the machine's ceiling)");
ABSL_FLAG(std::string, only, "",
          "Measure only the SAGATOR contenders whose name contains this (for example "
          "\"in-process\" or \"PostgreSQL\"); postgrey, the reference, always runs");
ABSL_FLAG(bool, postgrey_system_whitelists, false,
          "Give postgrey Debian's whitelist files (a client-name regex list checked on every "
          "request) instead of empty ones");

namespace sagator {
namespace {

using bench::PolicyFigures;
using bench::PolicyLoadOptions;
using testing::PickFreePort;
using testing::RunfilePath;
using testing::Subprocess;

// The floor: answers "action=DUNNO" to each request block (up to its blank line)
// without parsing it. Thread per connection; stops with the process.
class FloorResponder {
 public:
  FloorResponder() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd_, 64) != 0) {
      return;
    }
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    std::thread([fd = fd_] {
      for (;;) {
        int c = accept(fd, nullptr, nullptr);
        if (c < 0) return;
        std::thread(Serve, c).detach();
      }
    }).detach();
  }
  int port() const { return port_; }

 private:
  static void Serve(int c) {
    static constexpr char kReply[] = "action=DUNNO\n\n";
    char buf[16384];
    bool line_start = false;  // the previous byte ended a line
    for (;;) {
      ssize_t n = read(c, buf, sizeof(buf));
      if (n <= 0) break;
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] != '\n') {
          line_start = false;
        } else if (line_start) {  // a blank line ends the request
          line_start = false;
          if (write(c, kReply, sizeof(kReply) - 1) < 0) break;
        } else {
          line_start = true;
        }
      }
    }
    close(c);
  }
  int fd_ = -1;
  int port_ = 0;
};

class PolicyBench {
 public:
  struct Options {
    double seconds = 5;
    int connections = 8;
    double rate = 2000;
    int delay_seconds = 1;
    bench::PolicyTraffic::Options traffic;
  };
  explicit PolicyBench(Options options) : options_(options), traffic_(options.traffic) {}

  // Adds a policy server at host:port (an IPv4 literal). `pids` are its processes:
  // their CPU time per request is reported. The first one added is the reference
  // that the ratios compare the others with.
  void Add(std::string name, std::string host, int port, std::vector<pid_t> pids = {}) {
    contenders_.push_back({std::move(name), std::move(host), port, std::move(pids)});
  }

  int Run() {
    printf(
        "SAGATOR policy benchmark: smtpd_access_policy at RCPT, pool of %d recurring triplets "
        "+ %.0f%% new triplets, greylisting delay %d s, %.1f s per row\n",
        options_.traffic.pool_size, 100 * options_.traffic.new_fraction, options_.delay_seconds,
        options_.seconds);
    printf("%-34s %-10s %5s %10s %8s %8s %8s %6s %6s %8s  %s\n", "contender", "mode", "conns",
           "req/s", "p50 ms", "p99 ms", "count", "errors", "late", "cpu ms", "actions");
    for (Contender& c : contenders_) {
      if (!WarmUp(c)) return 1;
      c.one = Row(c, "max", 1, 0);
      c.many = Row(c, "max", options_.connections, 0);
      if (options_.rate > 0) c.paced = Row(c, "paced", options_.connections, options_.rate);
    }
    PrintRatios();
    return 0;
  }

 private:
  struct Contender {
    std::string name;
    std::string host;
    int port;
    std::vector<pid_t> pids;
    PolicyFigures one, many, paced;
    double cpu_one = 0, cpu_many = 0, cpu_paced = 0;
  };

  double Cpu(const Contender& c) const {
    double ms = 0;
    for (pid_t p : c.pids) ms += bench::ProcessCpuMs(p);
    return ms;
  }

  // Every pool triplet once (greylisted), then again after the delay (passed).
  bool WarmUp(Contender& c) {
    std::vector<std::string> pool = traffic_.PoolRequests();
    harness::PolicyClient client(c.host, c.port);
    if (!client.ok()) {
      fprintf(stderr, "%s: cannot connect to %s:%d\n", c.name.c_str(), c.host.c_str(), c.port);
      return false;
    }
    std::map<std::string, int64_t> first, second;
    for (const std::string& r : pool) ++first[harness::ActionWord(client.Ask(r))];
    absl::SleepFor(absl::Seconds(options_.delay_seconds) + absl::Milliseconds(1100));
    for (const std::string& r : pool) ++second[harness::ActionWord(client.Ask(r))];
    printf("%-34s warm-up: pool first seen: %s; after the delay: %s\n", c.name.c_str(),
           bench::FormatActions(first).c_str(), bench::FormatActions(second).c_str());
    fflush(stdout);
    return true;
  }

  PolicyFigures Row(Contender& c, const char* mode, int connections, double rate) {
    PolicyLoadOptions o;
    o.host = c.host;
    o.port = c.port;
    o.connections = connections;
    o.seconds = options_.seconds;
    o.rate = rate;
    const double before = Cpu(c);
    PolicyFigures f = bench::PolicyLoad(o, traffic_);
    const double cpu =
        c.pids.empty() ? 0 : (Cpu(c) - before) / std::max<int64_t>(1, f.figures.count);
    if (rate > 0) {
      c.cpu_paced = cpu;
    } else if (connections == 1) {
      c.cpu_one = cpu;
    } else {
      c.cpu_many = cpu;
    }
    std::string label = rate > 0 ? absl::StrCat(mode, " ", static_cast<int>(rate)) : mode;
    printf("%-34s %-10s %5d %10.1f %8.3f %8.3f %8lld %6lld %6lld %8.3f  %s\n", c.name.c_str(),
           label.c_str(), connections, f.figures.msgs_per_s, f.figures.p50_ms, f.figures.p99_ms,
           static_cast<long long>(f.figures.count), static_cast<long long>(f.figures.errors),
           static_cast<long long>(f.late), cpu, bench::FormatActions(f.actions).c_str());
    fflush(stdout);
    return f;
  }

  void PrintRatios() const {
    if (contenders_.size() < 2) return;
    const Contender& ref = contenders_[0];
    auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
    for (size_t i = 1; i < contenders_.size(); ++i) {
      const Contender& c = contenders_[i];
      printf(
          "ratio %s / %s: throughput 1 conn %.2f, %d conns %.2f; p50 1 conn %.2f; paced p99 "
          "%.2f; CPU per request (%d conns) %.2f\n",
          c.name.c_str(), ref.name.c_str(),
          ratio(c.one.figures.msgs_per_s, ref.one.figures.msgs_per_s), options_.connections,
          ratio(c.many.figures.msgs_per_s, ref.many.figures.msgs_per_s),
          ratio(c.one.figures.p50_ms, ref.one.figures.p50_ms),
          ratio(c.paced.figures.p99_ms, ref.paced.figures.p99_ms), options_.connections,
          ratio(c.cpu_many, ref.cpu_many));
    }
    const Contender& floor = contenders_.back();
    if (floor.name.rfind("floor", 0) == 0) {
      printf(
          "ceiling on this machine (floor / %s): %d conns %.2fx, 1 conn %.2fx: no policy server "
          "can go faster here than its connections, the kernel and this load generator allow\n",
          ref.name.c_str(), options_.connections,
          ratio(floor.many.figures.msgs_per_s, ref.many.figures.msgs_per_s),
          ratio(floor.one.figures.msgs_per_s, ref.one.figures.msgs_per_s));
    }
  }

  Options options_;
  bench::PolicyTraffic traffic_;
  std::vector<Contender> contenders_;
};

int Main() {
  PolicyBench::Options options;
  options.seconds = absl::GetFlag(FLAGS_seconds);
  options.connections = absl::GetFlag(FLAGS_connections);
  options.rate = absl::GetFlag(FLAGS_rate);
  options.delay_seconds = std::max(1, absl::GetFlag(FLAGS_delay));
  options.traffic.pool_size = absl::GetFlag(FLAGS_pool);
  options.traffic.new_fraction = absl::GetFlag(FLAGS_new_fraction);

  const std::string dir = testing::MakeTempDir("policy-bench.");
  harness::PostgreyDaemon::Options po;
  po.delay_seconds = options.delay_seconds;
  po.system_whitelists = absl::GetFlag(FLAGS_postgrey_system_whitelists);
  const bool on_disk = absl::GetFlag(FLAGS_db_on_disk);
  // postgrey commits and fsyncs a BerkeleyDB transaction per request: on disk that,
  // not postgrey, sets the pace (a few hundred requests/s here). On tmpfs the figures
  // show postgrey's own cost.
  const std::string shm = absl::StrCat("/dev/shm/sagator-policy-bench-", getpid());
  if (!on_disk) po.db_dir = shm + "/postgrey";
  struct RemoveAtExit {
    ~RemoveAtExit() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
    std::string path;
  } remove_shm{shm};
  auto postgrey = harness::PostgreyDaemon::Start(dir + "/postgrey", po);
  if (!postgrey.ok()) {
    fprintf(stderr, "postgrey: %s\n", postgrey.status().ToString().c_str());
    return 1;
  }

  PolicyBench bench(options);
  bench.Add(absl::StrCat("postgrey (db ", on_disk ? "on disk" : "on tmpfs",
                         po.system_whitelists ? ", Debian whitelists)" : ")"),
            "127.0.0.1", (*postgrey)->port(), {(*postgrey)->pid()});

  // SAGATOR: smtpd_policy -> scanner-svc (greylist) on SQLite (in the same place
  // as postgrey's database) and on PostgreSQL.
  // PostgreSQL's own settings but for durability: in memory (the default) as fast
  // as tmpfs is for the others (fsync off, from the harness), on disk durable. The
  // harness's synchronous_commit=off is put back to PostgreSQL's default: with fsync
  // off, a synchronous commit is a write() into the page cache by the backend itself,
  // while an asynchronous one wakes the WAL writer each time, which costs more (in
  // the in-process PostgreSQL row: 21,100-22,000 req/s against 22,900-23,200).
  harness::PostgresInstance::Options pg_options;
  pg_options.settings = {"synchronous_commit=on"};
  if (on_disk) pg_options.settings = {"fsync=on", "synchronous_commit=on", "full_page_writes=on"};
  auto pg = harness::PostgresInstance::Start(pg_options);
  if (!pg.ok()) {
    fprintf(stderr, "PostgreSQL: %s\n", pg.status().ToString().c_str());
    return 1;
  }
  std::string sqlite_path = (on_disk ? dir : shm) + "/sagator-policy.db";
  std::filesystem::create_directories(on_disk ? dir : shm);
  struct Suite {
    std::string name;
    std::string database;  // YAML of the database
    bool in_process = false;
    std::unique_ptr<Subprocess> scanner, policy;
    int port = 0;
  };
  std::vector<Suite> suites;
  suites.push_back({"SAGATOR smtpd_policy (SQLite)",
                    absl::StrCat("{sqlite: {path: '", sqlite_path, "'}}")});
  suites.push_back({"SAGATOR smtpd_policy (PostgreSQL)",
                    absl::StrCat("{postgresql: {conninfo: '", (*pg)->conninfo(),
                                 "', pool_size: 8}}")});
  // smtpd_policy deciding in-process (in_process: true): no gRPC hop.
  suites.push_back({"SAGATOR in-process (SQLite)",
                    absl::StrCat("{sqlite: {path: '", sqlite_path, ".2'}}"), true});
  // A database of its own, so the pool is new to it as to every contender.
  {
    auto admin = sql::OpenPostgresql((*pg)->ConnInfoFor("postgres"), 1);
    if (!admin.ok() || !(*admin)->Query("CREATE DATABASE inprocess", {}).ok()) {
      fprintf(stderr, "PostgreSQL: cannot create a second database\n");
      return 1;
    }
  }
  suites.push_back({"SAGATOR in-process (PostgreSQL)",
                    absl::StrCat("{postgresql: {conninfo: '", (*pg)->ConnInfoFor("inprocess"),
                                 "', pool_size: 8}}"),
                    true});
  const std::string only = absl::GetFlag(FLAGS_only);
  for (size_t i = 0; i < suites.size(); ++i) {
    Suite& su = suites[i];
    if (!absl::StrContains(su.name, only)) continue;
    const int scanner_port = PickFreePort();
    su.port = PickFreePort();
    std::string cfg = absl::StrCat(dir, "/sagator-", i, ".yaml");
    testing::WriteFile(
        cfg, absl::StrCat("global: {hostname: bench.test}\n"
                          "databases: {default: ", su.database, "}\n"
                          "chains:\n"
                          "  policy: [sql_list, {greylist: {min: ", options.delay_seconds,
                          "s}}]\n"
                          "services:\n"
                          "  - scanner_svc: {port: ", scanner_port, "}\n"
                          "  - smtpd_policy: {scanners: policy, port: ", su.port,
                          su.in_process ? ", in_process: true" : "", "}\n"));
    su.scanner = std::make_unique<Subprocess>(
        std::vector<std::string>{RunfilePath("scanner-svc/scanner-svc"), "--config", cfg});
    su.scanner->RedirectOutput(absl::StrCat(dir, "/scanner-", i, ".log"));
    su.policy = std::make_unique<Subprocess>(std::vector<std::string>{
        RunfilePath("services/smtpd_policy/smtpd_policy"), "--config", cfg});
    su.policy->RedirectOutput(absl::StrCat(dir, "/smtpd_policy-", i, ".log"));
    for (Subprocess* p : {su.scanner.get(), su.policy.get()}) {
      if (!p->Start().ok()) return 1;
    }
    for (int port : {scanner_port, su.port}) {
      if (absl::Status s = testing::WaitForTcpPort(port, absl::Seconds(30)); !s.ok()) {
        fprintf(stderr, "port %d: %s (logs in %s)\n", port, s.ToString().c_str(), dir.c_str());
        return 1;
      }
    }
    bench.Add(su.name, "127.0.0.1", su.port, {su.policy->pid(), su.scanner->pid()});
  }
  std::unique_ptr<FloorResponder> floor;
  if (absl::GetFlag(FLAGS_floor)) {
    floor = std::make_unique<FloorResponder>();
    bench.Add("floor (DUNNO, no work)", "127.0.0.1", floor->port(), {getpid()});
  }
  int rc = bench.Run();
  (*postgrey)->Stop().IgnoreError();
  return rc;
}

}  // namespace
}  // namespace sagator

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return sagator::Main();
}
