// Statistics end to end with only real processes: collector-svc, scanner-svc,
// sgfilterd and smtpd (relaying to Postfix's smtp-sink) report to the collector; the
// sgfilter client and swaks send a known mix of mail; sgstat, the status file, the
// legacy status port and the /metrics endpoints must show exact counts. Then the
// collector is replaced by a black hole (mail must not wait for it, and the loss must
// be counted), and headless Chromium renders the graph page.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/harness/postfix.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_mail.h"

namespace sagator {
namespace {

using ::sagator::testing::kEicar;
using ::testing::HasSubstr;
using testing::RunfilePath;

std::string Mail(absl::string_view subject, absl::string_view body) {
  return absl::StrCat("From: sender@example.org\nTo: user@example.org\nSubject: ", subject,
                      "\n\n", body, "\n");
}

std::string HttpGet(int port, const std::string& path) {
  return testing::TcpExchange(port, absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: x\r\n\r\n"));
}

// "key value" lines (the status file's format) as a map.
std::map<std::string, std::string> ParseStatus(const std::string& text) {
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    size_t sp = line.rfind(' ');
    if (sp == absl::string_view::npos) continue;
    out[std::string(line.substr(0, sp))] = std::string(line.substr(sp + 1));
  }
  return out;
}

// The value of a Prometheus sample line that starts with `series ` (0 when absent).
int64_t MetricValue(const std::string& text, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      int64_t v = 0;
      if (absl::SimpleAtoi(line.substr(series.size() + 1), &v)) return v;
    }
  }
  return 0;
}

class CollectorE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::MakeTempDir("collector-e2e"));
    sink_ = new harness::SmtpSink();
    ASSERT_TRUE(sink_->Start().ok());
    collector_port_ = testing::PickFreePort();
    std::string cfg = *dir_ + "/sagator.yaml";
    testing::WriteFile(
        cfg,
        absl::StrCat(
            "global: {hostname: stats.example, state_dir: run, stats_interval: 0.2s}\n"
            "chains:\n"
            "  default:\n"
            "    - status: {prefix: Virus, scanners: [{libclam: {database: [",
            RunfilePath("data/clamav"), "]}}]}\n"
            "    - status: {prefix: Spam, scanners: [{string_scan: {entries: "
            "[{name: Spam.Offer, patterns: ['BUY NOW']}]}}]}\n"
            "    - drop: {pattern: Worm, scanners: [{string_scan: {entries: "
            "[{name: Worm.Mark, patterns: ['WORM-MARK']}]}}]}\n"
            "services:\n"
            "  - collector: {port: ", collector_port_, ", statfile: status, status_interval: 0.05s,"
            " history_file: history, http_port: 0, legacy_port: 0}\n"
            "  - scanner_svc: {port: 0}\n"
            "    metrics_port: 0\n"
            "  - sgfilterd: {scanners: default, port: 0, prefork: 2}\n"
            "    metrics_port: 0\n"
            "  - smtpd: {scanners: default, port: 0, next_hop: '127.0.0.1:", sink_->port(),
            "'}\n"));
    config_ = new std::string(cfg);
    StartCollector();
    std::string scanner_pf = *dir_ + "/scanner.port";
    scanner_ = Start({RunfilePath("scanner-svc/scanner-svc"), "--config", cfg, "--port_file",
                      scanner_pf},
                     "scanner");
    auto sp = testing::WaitForPortFile(scanner_pf, absl::Seconds(60));
    ASSERT_TRUE(sp.ok()) << sp.status();
    // The gateways find scanner-svc through global.scanner_target: the same file
    // with it added.
    std::string gw_cfg = *dir_ + "/gateways.yaml";
    std::string text = testing::ReadFile(cfg);
    text.replace(text.find("stats_interval: 0.2s"), strlen("stats_interval: 0.2s"),
                 absl::StrCat("stats_interval: 0.2s, scanner_target: '127.0.0.1:", *sp, "'"));
    testing::WriteFile(gw_cfg, text);
    sgfilterd_ = Start({RunfilePath("services/sgfilterd/sgfilterd"), "--config", gw_cfg,
                        "--port_file", *dir_ + "/sgfilterd.port", "--metrics_port_file",
                        *dir_ + "/sgfilterd.metrics"},
                       "sgfilterd");
    smtpd_ = Start({RunfilePath("services/smtpd/smtpd"), "--config", gw_cfg, "--port_file",
                    *dir_ + "/smtpd.port"},
                   "smtpd");
    auto p1 = testing::WaitForPortFile(*dir_ + "/sgfilterd.port", absl::Seconds(30));
    auto p2 = testing::WaitForPortFile(*dir_ + "/smtpd.port", absl::Seconds(30));
    auto p3 = testing::WaitForPortFile(*dir_ + "/sgfilterd.metrics", absl::Seconds(30));
    ASSERT_TRUE(p1.ok() && p2.ok() && p3.ok());
    sgfilterd_port_ = *p1;
    smtpd_port_ = *p2;
    sgfilterd_metrics_port_ = *p3;
  }

  static void TearDownTestSuite() {
    for (testing::Subprocess* p : {smtpd_, sgfilterd_, scanner_, collector_}) {
      if (p != nullptr) p->Stop();
      delete p;
    }
    delete sink_;
  }

  static testing::Subprocess* Start(std::vector<std::string> argv, const std::string& name) {
    auto* p = new testing::Subprocess(std::move(argv));
    p->RedirectOutput(absl::StrCat(*dir_, "/", name, ".log"));
    EXPECT_TRUE(p->Start().ok());
    return p;
  }

  static void StartCollector() {
    std::remove((*dir_ + "/collector.http").c_str());
    collector_ = Start({RunfilePath("collector-svc/collector-svc"), "--config", *config_,
                        "--port_file", *dir_ + "/collector.port", "--http_port_file",
                        *dir_ + "/collector.http", "--legacy_port_file", *dir_ + "/collector.legacy"},
                       "collector");
    auto http = testing::WaitForPortFile(*dir_ + "/collector.http", absl::Seconds(30));
    auto legacy = testing::WaitForPortFile(*dir_ + "/collector.legacy", absl::Seconds(30));
    ASSERT_TRUE(http.ok() && legacy.ok());
    http_port_ = *http;
    legacy_port_ = *legacy;
  }

  // One message through sgfilter -c; its exit code (0 clean, 1 detected).
  static int ViaSgfilter(const std::string& message) {
    testing::CommandResult r = testing::RunCommand(
        {RunfilePath("services/sgfilterd/sgfilter"), "--port", absl::StrCat(sgfilterd_port_), "-c"},
        message);
    return r.exit_code;
  }

  static testing::CommandResult ViaSmtpd(const std::string& message) {
    static int n = 0;
    std::string file = absl::StrCat(*dir_, "/smtp-", n++, ".eml");
    testing::WriteFile(file, message);
    return harness::Swaks(smtpd_port_, "sender@example.org", "user@example.org",
                          {"--data", "@" + file});
  }

  static testing::CommandResult Sgstat(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {RunfilePath("tools/sgstat/sgstat"), "--config", *config_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::RunCommand(argv, "");
  }

  static std::string* dir_;
  static std::string* config_;
  static harness::SmtpSink* sink_;
  static testing::Subprocess* collector_;
  static testing::Subprocess* scanner_;
  static testing::Subprocess* sgfilterd_;
  static testing::Subprocess* smtpd_;
  static int collector_port_, http_port_, legacy_port_, sgfilterd_port_, smtpd_port_,
      sgfilterd_metrics_port_;
};

std::string* CollectorE2eTest::dir_ = nullptr;
std::string* CollectorE2eTest::config_ = nullptr;
harness::SmtpSink* CollectorE2eTest::sink_ = nullptr;
testing::Subprocess* CollectorE2eTest::collector_ = nullptr;
testing::Subprocess* CollectorE2eTest::scanner_ = nullptr;
testing::Subprocess* CollectorE2eTest::sgfilterd_ = nullptr;
testing::Subprocess* CollectorE2eTest::smtpd_ = nullptr;
int CollectorE2eTest::collector_port_ = 0;
int CollectorE2eTest::http_port_ = 0;
int CollectorE2eTest::legacy_port_ = 0;
int CollectorE2eTest::sgfilterd_port_ = 0;
int CollectorE2eTest::smtpd_port_ = 0;
int CollectorE2eTest::sgfilterd_metrics_port_ = 0;

// The tests run in this order (gtest keeps the file order): counts, graphs, outage.
TEST_F(CollectorE2eTest, AKnownMixOfMailGivesExactCountsEverywhere) {
  const std::string statfile = *dir_ + "/status";
  // A reader that checks every status file it sees is whole, while mail flows.
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0}, torn{0};
  std::thread reader([&] {
    while (!stop) {
      std::string s = testing::ReadFile(statfile);
      if (!s.empty()) {
        ++reads;
        if (!absl::StartsWith(s, "# SAGATOR status") || !absl::EndsWith(s, "\n# end\n")) ++torn;
      }
    }
  });

  const std::string clean = Mail("hello", "just text");
  const std::string eicar = Mail("virus", kEicar);
  const std::string spam = Mail("offer", "BUY NOW and save");
  const std::string worm = Mail("worm", "WORM-MARK inside");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(ViaSgfilter(clean), 0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ViaSgfilter(eicar), 1);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(ViaSgfilter(spam), 1);
  EXPECT_EQ(ViaSgfilter(worm), 1);
  for (int i = 0; i < 4; ++i) {
    testing::CommandResult r = ViaSmtpd(clean);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  for (int i = 0; i < 2; ++i) {
    testing::CommandResult r = ViaSmtpd(eicar);
    EXPECT_THAT(r.out + r.err, HasSubstr("550"));
  }
  EXPECT_EQ(sink_->WaitForMessages(4, absl::Seconds(20)).size(), 4u);

  // Wait until every event has arrived (batches every 0.2 s).
  std::map<std::string, std::string> st;
  absl::Time until = absl::Now() + absl::Seconds(30);
  while (absl::Now() < until) {
    testing::CommandResult r = Sgstat();
    st = ParseStatus(r.out);
    if (st["messages{outcome=\"PASS\",service=\"smtpd\"}"] == "4" &&
        st["messages{outcome=\"REJECT\",service=\"smtpd\"}"] == "2" &&
        st["messages{outcome=\"DROP\",service=\"sgfilterd\"}"] == "1" &&
        st["scans{result=\"detected\",scanner=\"libclam\"}"] == "5") {
      break;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(st["messages{outcome=\"PASS\",service=\"sgfilterd\"}"], "5");
  EXPECT_EQ(st["messages{outcome=\"REJECT\",service=\"sgfilterd\"}"], "5");
  EXPECT_EQ(st["messages{outcome=\"DROP\",service=\"sgfilterd\"}"], "1");
  EXPECT_EQ(st["messages{outcome=\"PASS\",service=\"smtpd\"}"], "4");
  EXPECT_EQ(st["messages{outcome=\"REJECT\",service=\"smtpd\"}"], "2");
  EXPECT_EQ(st["bytes{outcome=\"PASS\",service=\"sgfilterd\"}"], absl::StrCat(5 * clean.size()));
  EXPECT_EQ(st["Virus-count"], "5");
  EXPECT_EQ(st["Spam-count"], "2");
  EXPECT_EQ(st["scans{result=\"detected\",scanner=\"libclam\"}"], "5");
  EXPECT_EQ(st["scans{result=\"clean\",scanner=\"libclam\"}"], "12");
  // Two string_scan nodes: the spam one runs on 12 messages, the worm one on 10.
  EXPECT_EQ(st["scans{result=\"detected\",scanner=\"string_scan\"}"], "3");
  EXPECT_EQ(st["scans{result=\"clean\",scanner=\"string_scan\"}"], "19");
  EXPECT_EQ(st["latency{service=\"sgfilterd\",stage=\"scan\"}-count"], "11");
  EXPECT_EQ(st.count("messages{outcome=\"TEMPFAIL\",service=\"sgfilterd\"}"), 0u);

  // The status file, the legacy port and the aggregated /metrics agree.
  until = absl::Now() + absl::Seconds(10);
  std::map<std::string, std::string> file;
  while (absl::Now() < until) {
    file = ParseStatus(testing::ReadFile(statfile));
    if (file["Virus-count"] == "5" && file["messages{outcome=\"PASS\",service=\"smtpd\"}"] == "4") break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  stop = true;
  reader.join();
  EXPECT_EQ(file["Virus-count"], "5");
  EXPECT_EQ(file["Virus-bytes"], st["Virus-bytes"]);
  EXPECT_EQ(file["messages{outcome=\"REJECT\",service=\"sgfilterd\"}"], "5");
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(torn.load(), 0) << "a reader saw a half-written status file";

  // The legacy port answers the same text at connect and closes.
  std::map<std::string, std::string> legacy = ParseStatus(testing::TcpExchange(legacy_port_, ""));
  EXPECT_EQ(legacy["Spam-count"], "2");
  EXPECT_EQ(legacy["messages{outcome=\"PASS\",service=\"sgfilterd\"}"], "5");

  std::string metrics = HttpGet(http_port_, "/metrics");
  EXPECT_EQ(MetricValue(metrics, "sagator_messages_total{outcome=\"DROP\",service=\"sgfilterd\"}"), 1);
  EXPECT_EQ(MetricValue(metrics, "sagator_status_count_total{prefix=\"Virus\"}"), 5);
  EXPECT_EQ(MetricValue(metrics, "sagator_latency_seconds_count{service=\"smtpd\",stage=\"scan\"}"), 6);
  // Each service's own endpoint: sgfilterd's counts only its own mail.
  std::string own = HttpGet(sgfilterd_metrics_port_, "/metrics");
  EXPECT_EQ(MetricValue(own, "sagator_messages_total{outcome=\"PASS\",service=\"sgfilterd\"}"), 5);
  EXPECT_EQ(MetricValue(own, "sagator_messages_total{outcome=\"PASS\",service=\"smtpd\"}"), 0);

  testing::CommandResult prom = Sgstat({"--format", "prometheus", "--prefix", "status_"});
  EXPECT_EQ(prom.exit_code, 0);
  EXPECT_EQ(MetricValue(prom.out, "sagator_status_count_total{prefix=\"Spam\"}"), 2);
  EXPECT_THAT(prom.out, ::testing::Not(HasSubstr("sagator_messages_total")));
}

TEST_F(CollectorE2eTest, TheGraphPageRendersWithDataInHeadlessChromium) {
  std::string page = HttpGet(http_port_, "/?range=day");
  ASSERT_THAT(page, HasSubstr("200 OK"));
  const char* out_dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  std::string shot = absl::StrCat(out_dir != nullptr ? out_dir : *dir_, "/collector-graphs.png");
  std::string url = absl::StrCat("http://127.0.0.1:", http_port_, "/?range=day");
  std::vector<std::string> common = {"/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                     "--disable-dev-shm-usage", "--no-first-run",
                                     absl::StrCat("--user-data-dir=", *dir_, "/chromium"),
                                     "--virtual-time-budget=5000"};
  std::vector<std::string> dump = common;
  dump.push_back("--dump-dom");
  dump.push_back(url);
  testing::CommandResult dom = testing::RunCommand(dump, "", absl::Seconds(120));
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  // Five graphs with seven lines, laid out by the browser; those of messages,
  // viruses, spam, bytes and latency that saw traffic are not flat.
  EXPECT_THAT(dom.out, HasSubstr("data-drawn-lines=\"8\""));
  std::string marker = "data-lines-with-data=\"";
  size_t at = dom.out.find(marker);
  ASSERT_NE(at, std::string::npos) << dom.out.substr(0, 2000);
  int with_data = std::atoi(dom.out.c_str() + at + marker.size());
  EXPECT_EQ(with_data, 7) << "all, clean, rejected, viruses, spam, bytes, latency";

  std::vector<std::string> screenshot = common;
  screenshot.push_back("--window-size=1000,1500");
  screenshot.push_back(absl::StrCat("--screenshot=", shot));
  screenshot.push_back(url);
  testing::CommandResult s = testing::RunCommand(screenshot, "", absl::Seconds(120));
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_GT(testing::ReadFile(shot).size(), 10000u) << shot;
}

TEST_F(CollectorE2eTest, WithTheCollectorGoneMailIsNotDelayedAndTheLossIsCounted) {
  collector_->Stop();
  delete collector_;
  collector_ = nullptr;
  // A black hole on the collector's port: connections are queued and never answered,
  // so every Report call waits for its whole deadline.
  int hole = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(hole, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(collector_port_));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(hole, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(hole, 64), 0);

  int64_t dropped_before =
      MetricValue(HttpGet(sgfilterd_metrics_port_, "/metrics"), "sagator_stats_dropped_events_total");
  std::vector<double> seconds;
  for (int i = 0; i < 12; ++i) {
    absl::Time t0 = absl::Now();
    EXPECT_EQ(ViaSgfilter(i % 3 == 0 ? Mail("virus", kEicar) : Mail("hello", "text")),
              i % 3 == 0 ? 1 : 0);
    seconds.push_back(absl::ToDoubleSeconds(absl::Now() - t0));
    absl::SleepFor(absl::Milliseconds(100));  // let batches close while the hole holds them
  }
  std::sort(seconds.begin(), seconds.end());
  // Reporting runs on its own thread: a message does not wait for a Report call
  // (each waits out a 0.2 s deadline here, and a batch closes every 0.2 s).
  EXPECT_LT(seconds[seconds.size() / 2], 0.15) << "median seconds per message";

  int64_t dropped = 0;
  absl::Time until = absl::Now() + absl::Seconds(10);
  while (absl::Now() < until && dropped < dropped_before + 12 * 3) {
    dropped = MetricValue(HttpGet(sgfilterd_metrics_port_, "/metrics"),
                          "sagator_stats_dropped_events_total");
    absl::SleepFor(absl::Milliseconds(100));
  }
  // 12 messages, and for each one a message, a bytes and a latency event at least.
  EXPECT_GE(dropped - dropped_before, 12 * 3);
  close(hole);

  // The collector comes back; the first batch that reaches it reports the loss.
  StartCollector();
  std::map<std::string, std::string> st;
  until = absl::Now() + absl::Seconds(30);
  std::string key;
  while (absl::Now() < until) {
    st = ParseStatus(Sgstat({"--prefix", "stats_dropped"}).out);
    for (const auto& [k, v] : st) {
      if (absl::StartsWith(k, "stats_dropped_events{source=\"sgfilterd@")) key = k;
    }
    if (!key.empty()) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_FALSE(key.empty()) << "no stats_dropped_events from sgfilterd";
  int64_t reported = 0;
  ASSERT_TRUE(absl::SimpleAtoi(st[key], &reported));
  EXPECT_GE(reported, 12 * 3);
  // Totals survived the collector's restart through its history file.
  st = ParseStatus(Sgstat().out);
  EXPECT_EQ(st["messages{outcome=\"PASS\",service=\"smtpd\"}"], "4");
}

}  // namespace
}  // namespace sagator
