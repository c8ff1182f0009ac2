#include "tests/bench/bench_util.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
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
  std::sort(all.begin(), all.end());
  Figures f;
  f.count = all.size();
  f.errors = errors.load();
  if (!all.empty()) {
    f.msgs_per_s = all.size() / elapsed;
    f.p50_ms = all[all.size() / 2];
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

}  // namespace sagator::bench
