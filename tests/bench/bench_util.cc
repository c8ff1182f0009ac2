#include "tests/bench/bench_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "scanner-svc/scanners/clamd.h"
#include "tests/harness/policy_client.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/smtp_client.h"

namespace sagator::bench {

// A unique MIME message of about `size` bytes: a text part and a base64 attachment
// of random bytes, like ordinary mail with a document attached.
std::string MakeMessage(size_t size, absl::BitGen& gen, int64_t serial) {
  std::string head = absl::StrCat(
      "From: sender", serial, "@example.org\r\nTo: user@example.org\r\n",
      "Subject: benchmark message ", serial, "\r\nMessage-ID: <", serial,
      "@bench.example>\r\nMIME-Version: 1.0\r\n",
      "Content-Type: multipart/mixed; boundary=\"b-", serial, "\"\r\n\r\n--b-", serial,
      "\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, message ", serial,
      " with an attachment.\r\n\r\n--b-", serial,
      "\r\nContent-Type: application/octet-stream; name=\"doc", serial,
      ".bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
  std::string tail = absl::StrCat("\r\n--b-", serial, "--\r\n");
  size_t room = size > head.size() + tail.size() ? size - head.size() - tail.size() : 76;
  size_t raw_len = room * 3 / 4;
  std::string raw(raw_len + 8, '\0');
  for (size_t i = 0; i < raw_len; i += 8) {
    uint64_t w = absl::Uniform<uint64_t>(gen);
    memcpy(&raw[i], &w, 8);
  }
  raw.resize(raw_len);
  std::string b64 = absl::Base64Escape(raw);
  std::string body;
  for (size_t i = 0; i < b64.size(); i += 76) absl::StrAppend(&body, b64.substr(i, 76), "\r\n");
  return absl::StrCat(head, body, tail);
}

// Runs `scan(i)` from `threads` threads for `seconds`, each call on message i.
Figures Measure(int threads, double seconds, const std::vector<std::string>& corpus,
                const std::function<bool(int thread, const std::string& message)>& work) {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> errors{0};
  std::vector<std::vector<double>> lat(threads);
  absl::Time end = absl::Now() + absl::Seconds(seconds);
  absl::Time start = absl::Now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      while (absl::Now() < end) {
        int64_t i = next.fetch_add(1);
        if (i >= static_cast<int64_t>(corpus.size())) break;
        absl::Time s = absl::Now();
        if (!work(t, corpus[i])) ++errors;
        lat[t].push_back(absl::ToDoubleMilliseconds(absl::Now() - s));
      }
    });
  }
  for (auto& t : ts) t.join();
  double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  return Summarize(std::move(all), elapsed, errors.load());
}

Figures Summarize(std::vector<double> latencies_ms, double elapsed_s, int64_t errors) {
  std::vector<double>& all = latencies_ms;
  std::sort(all.begin(), all.end());
  Figures f;
  f.count = all.size();
  f.errors = errors;
  if (!all.empty()) {
    f.msgs_per_s = elapsed_s > 0 ? all.size() / elapsed_s : 0;
    f.p50_ms = all[all.size() / 2];
    f.p95_ms = all[std::min(all.size() - 1, all.size() * 95 / 100)];
    f.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return f;
}

std::vector<std::string> Corpus(size_t n, size_t size, int64_t* serial) {
  absl::BitGen gen;
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(MakeMessage(size, gen, ++*serial));
  return out;
}

Figures SmtpLoad(int port, int threads, double seconds, const std::vector<std::string>& corpus) {
  std::vector<std::unique_ptr<harness::SmtpClient>> clients(threads);
  return Measure(threads, seconds, corpus, [&](int t, const std::string& m) {
    if (clients[t] == nullptr || !clients[t]->ok()) {
      clients[t] = std::make_unique<harness::SmtpClient>(port);
    }
    std::string r = clients[t]->Deliver("sender@example.org", {"user@example.org"}, m);
    if (absl::StartsWith(r, "250")) return true;
    clients[t].reset();  // start over on a fresh connection
    return false;
  });
}

double ProcessCpuMs(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  std::getline(in, stat);
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 > stat.size()) return 0;
  std::vector<std::string> f = absl::StrSplit(stat.substr(paren + 2), ' ');
  // Fields 14 and 15 of the file (utime, stime) are 11 and 12 after the name.
  if (f.size() < 13) return 0;
  return (std::stod(f[11]) + std::stod(f[12])) * 1000.0 / sysconf(_SC_CLK_TCK);
}

PolicyTraffic::PolicyTraffic(Options options) : options_(options) {
  options_.pool_size = std::max(1, options_.pool_size);
}

namespace {

// About three pool triplets per client.
int PoolClients(int pool_size) { return std::max(1, pool_size / 3); }

// Pool client c: its own /24 in 172.16.0.0/12.
std::string PoolClientAddress(int c) {
  return absl::StrCat("172.", 16 + (c / 250) % 16, ".", c % 250, ".", 10 + c % 200);
}

}  // namespace

std::string PolicyTraffic::Encode(int client, const std::string& client_address,
                                  const std::string& sender, const std::string& recipient,
                                  absl::BitGen& gen) {
  harness::PolicyRequest r;
  r.protocol_state = "RCPT";
  r.protocol_name = "ESMTP";
  r.client_address = client_address;
  r.client_name =
      client >= 0 ? absl::StrCat("mx", client % 7, ".mail", client, ".example.com") : "unknown";
  r.reverse_client_name = client >= 0 ? r.client_name : "unknown";
  r.client_port = absl::StrCat(absl::Uniform(gen, 1024, 65536));
  r.server_address = "192.0.2.25";
  r.server_port = "25";
  r.helo_name = client >= 0 ? r.client_name : absl::StrCat("[", client_address, "]");
  r.sender = sender;
  r.recipient = recipient;
  r.recipient_count = "0";
  // smtpd opens the queue file at the first accepted RCPT (smtpd_delay_open_until_valid_rcpt),
  // so at the first RCPT there is no queue id yet.
  r.queue_id = "";
  const int64_t n = serial_.fetch_add(1, std::memory_order_relaxed);
  r.instance = absl::StrFormat("%x.%x.%x.0", 4096 + n % 997, 1700000000 + n / 1000, n);
  r.size = absl::StrCat(absl::Uniform(gen, 2000, 200000));
  r.encryption_protocol = "TLSv1.3";
  r.encryption_cipher = "TLS_AES_256_GCM_SHA384";
  r.encryption_keysize = "256";
  return r.Encode();
}

std::string PolicyTraffic::PoolRequest(int i, absl::BitGen& gen) {
  const int c = i % PoolClients(options_.pool_size);
  return Encode(c, PoolClientAddress(c), absl::StrCat("news", i, "@list", c, ".example.com"),
                absl::StrCat("user", i % 97, "@example.org"), gen);
}

std::string PolicyTraffic::Next(absl::BitGen& gen) {
  if (!absl::Bernoulli(gen, options_.new_fraction)) {
    return PoolRequest(absl::Uniform(gen, 0, options_.pool_size), gen);
  }
  const int64_t n = serial_.fetch_add(1, std::memory_order_relaxed);
  const std::string recipient = absl::StrCat("user", absl::Uniform(gen, 0, 97), "@example.org");
  if (n % 2 == 0) {
    // A client never seen: 10.0.0.0/8, a fresh /24 for each of the first 65536.
    const int64_t k = n / 2;
    return Encode(-1, absl::StrCat("10.", (k >> 8) & 255, ".", k & 255, ".", 1 + k % 250),
                  absl::StrCat("promo", n, "@new", k, ".example.net"), recipient, gen);
  }
  const int c = absl::Uniform(gen, 0, PoolClients(options_.pool_size));
  return Encode(c, PoolClientAddress(c), absl::StrCat("first", n, "@list", c, ".example.com"),
                recipient, gen);
}

std::vector<std::string> PolicyTraffic::PoolRequests() {
  absl::BitGen gen;
  std::vector<std::string> out;
  out.reserve(options_.pool_size);
  for (int i = 0; i < options_.pool_size; ++i) out.push_back(PoolRequest(i, gen));
  return out;
}

PolicyFigures PolicyLoad(const PolicyLoadOptions& options, PolicyTraffic& traffic) {
  const int n = std::max(1, options.connections);
  std::vector<std::unique_ptr<harness::PolicyClient>> clients(n);
  // Connect first: the measured window holds requests only.
  for (auto& c : clients) {
    c = std::make_unique<harness::PolicyClient>(options.host, options.port);
  }
  std::vector<std::vector<double>> lat(n);
  std::vector<std::map<std::string, int64_t>> actions(n);
  std::atomic<int64_t> errors{0}, late{0};
  const absl::Time start = absl::Now() + absl::Milliseconds(10);
  const absl::Time end = start + absl::Seconds(options.seconds);
  std::vector<std::thread> ts;
  for (int t = 0; t < n; ++t) {
    ts.emplace_back([&, t] {
      absl::BitGen gen;
      lat[t].reserve(static_cast<size_t>(options.seconds * 5000 / n) + 16);
      for (int64_t k = 0;; ++k) {
        std::string request = traffic.Next(gen);
        absl::Time sent;
        if (options.rate > 0) {
          sent = start + absl::Seconds((t + static_cast<double>(k) * n) / options.rate);
          if (sent >= end) break;
          absl::Time now = absl::Now();
          if (now < sent) {
            absl::SleepFor(sent - now);
          } else if (now - sent > absl::Milliseconds(1)) {
            ++late;
          }
        } else {
          if (k == 0 && absl::Now() < start) absl::SleepFor(start - absl::Now());
          sent = absl::Now();
          if (sent >= end) break;
        }
        std::unique_ptr<harness::PolicyClient>& c = clients[t];
        if (c == nullptr || !c->ok()) {
          c = std::make_unique<harness::PolicyClient>(options.host, options.port);
          if (!c->ok()) {
            ++errors;
            absl::SleepFor(absl::Milliseconds(10));
            continue;
          }
        }
        std::string action = c->Ask(request);
        absl::Time got = absl::Now();
        if (action.empty()) {
          ++errors;
          continue;
        }
        lat[t].push_back(absl::ToDoubleMilliseconds(got - sent));
        ++actions[t][harness::ActionWord(action)];
      }
    });
  }
  for (auto& t : ts) t.join();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  PolicyFigures out;
  for (int t = 0; t < n; ++t) {
    all.insert(all.end(), lat[t].begin(), lat[t].end());
    for (const auto& [word, count] : actions[t]) out.actions[word] += count;
  }
  out.figures = Summarize(std::move(all), elapsed, errors.load());
  out.late = late.load();
  return out;
}

std::string FormatActions(const std::map<std::string, int64_t>& actions) {
  std::vector<std::pair<std::string, int64_t>> sorted(actions.begin(), actions.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  int64_t total = 0;
  for (const auto& [word, count] : sorted) total += count;
  std::vector<std::string> parts;
  for (const auto& [word, count] : sorted) {
    parts.push_back(absl::StrFormat("%s %.1f%%", word, total > 0 ? 100.0 * count / total : 0.0));
  }
  return parts.empty() ? "(no replies)" : absl::StrJoin(parts, ", ");
}

std::string TmpfsDir(const std::string& name) {
  std::string dir = absl::StrCat("/dev/shm/sagator-", name, "-", getpid());
  mkdir(dir.c_str(), 0700);
  setenv("TMPDIR", dir.c_str(), 1);
  return dir;
}

absl::StatusOr<std::unique_ptr<harness::ClamdDaemon>> StartClamd(const std::string& dir,
                                                                 const std::string& tmp_dir,
                                                                 int max_threads) {
  harness::ClamdDaemon::Options o;
  o.signature_file = testing::RunfilePath("data/clamav/sagator.ndb");
  o.disable_cache = true;
  o.temporary_directory = tmp_dir;
  o.max_threads = max_threads;
  return harness::ClamdDaemon::Start(dir, o);
}

absl::StatusOr<std::unique_ptr<engine::Scanner>> ClamdScannerFor(
    const harness::ClamdDaemon& clamd) {
  config::v1::ClamdSpec spec;
  spec.set_address(clamd.unix_address());
  spec.mutable_timeout()->set_seconds(60);
  spec.set_chunk_size(256 * 1024);
  return scanners::MakeClamdScanner(spec, [](absl::string_view p) { return std::string(p); });
}

}  // namespace sagator::bench
