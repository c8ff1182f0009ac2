// Quarantine benchmark (issue: quarantine-svc). For each back end (PostgreSQL with
// fsync and synchronous commits on, as in production; SQLite with full sync):
//
// 1. Store rate: 50 KB messages streamed to quarantine-svc's Store over gRPC by
//    `concurrency` clients, each call committed durably before it returns. The
//    reference in the same run is QuarantineStore::Store called directly (no gRPC).
//    Target: >= 500 stores/s into PostgreSQL.
// 2. Search at `items` entries: the store is filled to 1,000,000 entries (generated
//    in SQL, in bulk: metadata and recipients; their message bodies are not needed by
//    List), then each kind of List request webq and sqback make is timed `queries`
//    times with random parameters: p50 and p95 per kind and over all. Target: p95
//    under 200 ms.
//
//   scripts/bench.sh quarantine [--seconds 5] [--concurrency 8] [--items 1000000]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "quarantine-svc/quarantine_service.h"
#include "quarantine-svc/quarantine_store.h"
#include "tests/bench/bench_util.h"
#include "tests/harness/postgres.h"

ABSL_FLAG(double, seconds, 5.0, "seconds of Store load per contender");
ABSL_FLAG(int, concurrency, 8, "Store clients");
ABSL_FLAG(int, size, 51200, "message size in bytes");
ABSL_FLAG(int, items, 1000000, "entries in the store for the search figures");
ABSL_FLAG(int, queries, 100, "requests per search kind");
ABSL_FLAG(std::string, backends, "postgresql,sqlite", "back ends to measure");

namespace sagator::bench {
namespace {

namespace v1 = quarantine::v1;
using quarantine::QuarantineStore;

constexpr int kUsers = 2000;
constexpr int kSenders = 5000;
constexpr int kDetections = 50;
const absl::Time kBase = absl::FromUnixSeconds(1'790'000'000);
constexpr int64_t kSpanMicros = int64_t{30} * 86400 * 1000000;  // 30 days

v1::Entry EntryFor(int64_t serial) {
  v1::Entry e;
  e.set_sagator_id(absl::StrCat("bench-", serial));
  e.mutable_envelope()->set_sender(absl::StrCat("sender", serial % kSenders, "@example.org"));
  e.mutable_envelope()->add_recipients(absl::StrCat("user", serial % kUsers, "@example.net"));
  e.set_detection("Eicar-Test-Signature");
  e.set_level(1);
  e.set_outcome(common::v1::DROP);
  return e;
}

// Fills the store with `items` entries in bulk: one INSERT ... SELECT per table and
// chunk, over a recursive counter both back ends understand. Subjects mix eight
// common words with a rare one (every 10,000th entry) for the substring searches.
absl::Status Fill(sql::Database& db, int64_t items) {
  const int64_t chunk = 100000;
  const std::string counter =
      "WITH RECURSIVE n(i) AS (SELECT CAST($1 AS BIGINT) UNION ALL SELECT i + 1 FROM n"
      " WHERE i < CAST($2 AS BIGINT)) ";
  const std::string stored_at = absl::StrCat("(CAST($3 AS BIGINT) + i * (", kSpanMicros,
                                             " / CAST($4 AS BIGINT)))");
  for (int64_t from = 0; from < items; from += chunk) {
    int64_t to = std::min(items, from + chunk) - 1;
    sql::Params p = {from, to, absl::ToUnixMicros(kBase), items};
    absl::Status s = db.RunTransaction([&](sql::Transaction& tx) -> absl::Status {
      auto r = tx.Query(
          absl::StrCat(
              counter,
              "INSERT INTO quarantine_entries (id, stored_at, sagator_id, sender, sender_key,"
              " from_header, subject, detection, level_micro, outcome, size, scanner_path,"
              " client_address, client_name, helo, queue_id) SELECT"
              " 'qm-b' || CAST(i AS TEXT), ", stored_at, ", 'bench', ",
              "'sender' || CAST((i * 7919) % ", kSenders, " AS TEXT) || '@example.org',",
              "'sender' || CAST((i * 7919) % ", kSenders, " AS TEXT) || '@example.org',",
              " 'Sender <s@example.org>',"
              " CASE i % 8 WHEN 0 THEN 'Invoice ' WHEN 1 THEN 'Payment ' WHEN 2 THEN 'Meeting '"
              " WHEN 3 THEN 'Delivery ' WHEN 4 THEN 'Account ' WHEN 5 THEN 'Offer '"
              " WHEN 6 THEN 'Report ' ELSE 'Hello ' END || CAST(i AS TEXT) ||"
              " CASE WHEN i % 10000 = 7 THEN ' zanzibar' ELSE '' END,"
              " 'Virus.Family' || CAST((i * 31) % ", kDetections, " AS TEXT),"
              " 1000000, 5, 51200, 'quarantine(libclam())', '192.0.2.1', '', 'helo', ''"
              " FROM n"),
          p);
      if (!r.ok()) return r.status();
      r = tx.Query(
          absl::StrCat(counter,
                       "INSERT INTO quarantine_recipients (entry_id, position, recipient,"
                       " recipient_key, stored_at) SELECT 'qm-b' || CAST(i AS TEXT), 0,"
                       " 'user' || CAST((i * 104729) % ", kUsers,
                       " AS TEXT) || '@example.net', 'user' || CAST((i * 104729) % ", kUsers,
                       " AS TEXT) || '@example.net', ", stored_at, " FROM n"),
          p);
      return r.status();
    });
    if (!s.ok()) return s;
    std::fprintf(stderr, "  filled %lld of %lld\r", static_cast<long long>(to + 1),
                 static_cast<long long>(items));
  }
  std::fprintf(stderr, "\n");
  return db.Query("ANALYZE", {}).status();
}

Figures StoreDirect(QuarantineStore& store, int threads, double seconds,
                    const std::vector<std::string>& corpus) {
  std::atomic<int64_t> serial{0};
  return Measure(threads, seconds, corpus, [&](int, const std::string& m) {
    return store.Store(EntryFor(serial++), m, absl::Now()).ok();
  });
}

Figures StoreGrpc(const std::string& target, int threads, double seconds,
                  const std::vector<std::string>& corpus) {
  std::vector<std::unique_ptr<v1::QuarantineService::Stub>> stubs;
  for (int i = 0; i < threads; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("bench-channel", i);  // one connection per client
    stubs.push_back(v1::QuarantineService::NewStub(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args)));
  }
  std::atomic<int64_t> serial{0};
  return Measure(threads, seconds, corpus, [&](int t, const std::string& m) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::StoreResponse resp;
    auto w = stubs[t]->Store(&ctx, &resp);
    v1::StoreRequest part;
    *part.mutable_entry() = EntryFor(serial++);
    w->Write(part);
    for (size_t at = 0; at < m.size(); at += 65536) {
      part.set_chunk(m.substr(at, 65536));
      w->Write(part);
    }
    w->WritesDone();
    return w->Finish().ok();
  });
}

void PrintStore(const char* what, const Figures& f) {
  std::printf("  %-26s %8.0f stores/s  p50 %6.2f ms  p99 %7.2f ms  (%lld stores, %lld errors)\n",
              what, f.msgs_per_s, f.p50_ms, f.p99_ms, static_cast<long long>(f.count),
              static_cast<long long>(f.errors));
}

struct SearchKind {
  const char* name;
  std::function<v1::ListRequest(absl::BitGen&)> make;
};

std::vector<SearchKind> SearchKinds(QuarantineStore& store) {
  auto day = [](absl::BitGen& g) {
    return absl::ToUnixSeconds(kBase) + absl::Uniform<int64_t>(g, 0, 29) * 86400;
  };
  return {
      {"newest (admin, no filter)", [](absl::BitGen&) { return v1::ListRequest(); }},
      {"recipient (webq user)",
       [](absl::BitGen& g) {
         v1::ListRequest r;
         r.add_recipients(absl::StrCat("user", absl::Uniform(g, 0, kUsers), "@example.net"));
         return r;
       }},
      {"recipient, page 2",
       [&store](absl::BitGen& g) {
         v1::ListRequest r;
         r.add_recipients(absl::StrCat("user", absl::Uniform(g, 0, kUsers), "@example.net"));
         auto first = store.List(r);
         if (first.ok()) r.set_page_token(first->next_page_token());
         return r;
       }},
      {"3 recipients + one day",
       [day](absl::BitGen& g) {
         v1::ListRequest r;
         for (int k = 0; k < 3; ++k) {
           r.add_recipients(absl::StrCat("user", absl::Uniform(g, 0, kUsers), "@example.net"));
         }
         int64_t d = day(g);
         r.mutable_stored_after()->set_seconds(d);
         r.mutable_stored_before()->set_seconds(d + 86400);
         return r;
       }},
      {"sender",
       [](absl::BitGen& g) {
         v1::ListRequest r;
         r.set_sender(absl::StrCat("sender", absl::Uniform(g, 0, kSenders), "@example.org"));
         return r;
       }},
      {"detection contains",
       [](absl::BitGen& g) {
         v1::ListRequest r;
         r.set_detection_contains(absl::StrCat("family", absl::Uniform(g, 10, kDetections)));
         return r;
       }},
      {"subject contains (common)",
       [](absl::BitGen& g) {
         static const char* kWords[] = {"invoice", "payment", "meeting", "offer"};
         v1::ListRequest r;
         r.set_subject_contains(kWords[absl::Uniform(g, 0, 4)]);
         return r;
       }},
      {"subject contains (rare)",
       [](absl::BitGen&) {
         v1::ListRequest r;
         r.set_subject_contains("zanzibar");
         return r;
       }},
      {"one day",
       [day](absl::BitGen& g) {
         v1::ListRequest r;
         int64_t d = day(g);
         r.mutable_stored_after()->set_seconds(d);
         r.mutable_stored_before()->set_seconds(d + 86400);
         return r;
       }},
  };
}

void SearchFigures(QuarantineStore& store, int queries) {
  absl::BitGen gen;
  std::vector<double> all;
  std::printf("  %-28s %9s %9s %9s\n", "search (page of 50)", "p50 ms", "p95 ms", "rows");
  for (const SearchKind& kind : SearchKinds(store)) {
    std::vector<double> ms;
    int64_t rows = 0, errors = 0;
    for (int q = 0; q < queries; ++q) {
      v1::ListRequest req = kind.make(gen);
      absl::Time start = absl::Now();
      auto page = store.List(req);
      ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
      if (page.ok()) {
        rows += page->entries_size();
      } else {
        ++errors;
        if (errors == 1) std::fprintf(stderr, "  %s: %s\n", kind.name, page.status().ToString().c_str());
      }
    }
    all.insert(all.end(), ms.begin(), ms.end());
    Figures f = Summarize(ms, 1, errors);
    std::printf("  %-28s %9.2f %9.2f %9.1f%s\n", kind.name, f.p50_ms, f.p95_ms,
                static_cast<double>(rows) / queries, errors ? "  ERRORS" : "");
  }
  Figures f = Summarize(all, 1, 0);
  std::printf("  %-28s %9.2f %9.2f   (target p95 < 200 ms)\n", "all kinds", f.p50_ms, f.p95_ms);
}

int RunBackend(const std::string& backend) {
  std::unique_ptr<harness::PostgresInstance> pg;
  absl::StatusOr<std::shared_ptr<sql::Database>> db;
  if (backend == "postgresql") {
    harness::PostgresInstance::Options o;
    // Durable, as in production (the harness default trades that for speed).
    o.settings = {"fsync=on", "synchronous_commit=on", "full_page_writes=on",
                  "shared_buffers=512MB"};
    auto started = harness::PostgresInstance::Start(o);
    if (!started.ok()) {
      std::fprintf(stderr, "PostgreSQL: %s\n", started.status().ToString().c_str());
      return 1;
    }
    pg = *std::move(started);
    db = sql::OpenPostgresql(pg->conninfo(), 16);
  } else {
    db = sql::OpenSqlite(absl::StrCat(std::getenv("TEST_TMPDIR"), "/quarantine-bench.db"),
                         absl::Seconds(30), /*durable=*/true);
  }
  if (!db.ok()) {
    std::fprintf(stderr, "%s: %s\n", backend.c_str(), db.status().ToString().c_str());
    return 1;
  }
  auto store = QuarantineStore::Open(*db);
  if (!store.ok()) {
    std::fprintf(stderr, "%s: %s\n", backend.c_str(), store.status().ToString().c_str());
    return 1;
  }
  std::printf("\n== %s ==\n", backend.c_str());
  int threads = absl::GetFlag(FLAGS_concurrency);
  double seconds = absl::GetFlag(FLAGS_seconds);
  int64_t serial = 0;
  // Calls beyond the corpus end the run early; 6000 unique messages outlast it here.
  std::vector<std::string> corpus = Corpus(6000, absl::GetFlag(FLAGS_size), &serial);
  std::printf("Store, %d byte messages, %d clients, durable commits:\n", absl::GetFlag(FLAGS_size),
              threads);
  Figures direct = StoreDirect(**store, threads, seconds, corpus);
  PrintStore("QuarantineStore (direct)", direct);

  quarantine::QuarantineOptions options;
  options.relay = "127.0.0.1:1";
  auto server_store = QuarantineStore::Open(*db);
  quarantine::QuarantineServer server(options, *std::move(server_store));
  if (!server.Start().ok()) return 1;
  Figures grpc_f = StoreGrpc(absl::StrCat("127.0.0.1:", server.port()), threads, seconds, corpus);
  PrintStore("quarantine-svc Store (gRPC)", grpc_f);
  std::printf("  gRPC / direct: %.2fx%s\n", direct.msgs_per_s > 0 ? grpc_f.msgs_per_s / direct.msgs_per_s : 0,
              backend == "postgresql" ? "   (target >= 500 stores/s)" : "");
  server.Shutdown();

  auto count = (*db)->Query("SELECT COUNT(*) FROM quarantine_entries", {});
  int64_t have = count.ok() ? count->front().integer(0) : 0;
  int64_t items = absl::GetFlag(FLAGS_items);
  std::printf("Search at %lld entries (%lld stored above, the rest generated):\n",
              static_cast<long long>(std::max(have, items)), static_cast<long long>(have));
  absl::Time fill_start = absl::Now();
  absl::Status filled = Fill(**db, std::max<int64_t>(0, items - have));
  if (!filled.ok()) {
    std::fprintf(stderr, "fill: %s\n", filled.ToString().c_str());
    return 1;
  }
  std::printf("  (generated in %.1f s)\n", absl::ToDoubleSeconds(absl::Now() - fill_start));
  SearchFigures(**store, absl::GetFlag(FLAGS_queries));
  return 0;
}

}  // namespace
}  // namespace sagator::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  int rc = 0;
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_backends), ',')) {
    rc |= sagator::bench::RunBackend(std::string(b));
  }
  return rc;
}
