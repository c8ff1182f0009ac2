// The same statements against both back ends: SQLite in TEST_TMPDIR and a real
// PostgreSQL started by the test.
#include "common/sql.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "tests/harness/postgres.h"

namespace sagator::sql {
namespace {

using ::testing::HasSubstr;

int counter = 0;

class SqlTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kSqlite) {
      std::string path = absl::StrCat(std::getenv("TEST_TMPDIR"), "/t", ++counter, ".db");
      auto d = OpenSqlite(path, absl::Seconds(5));
      ASSERT_TRUE(d.ok()) << d.status();
      db_ = *d;
    } else {
      harness::PostgresInstance* pg = harness::SharedPostgresForTests();
      ASSERT_NE(pg, nullptr);
      auto d = OpenPostgresql(pg->conninfo(), 4);
      ASSERT_TRUE(d.ok()) << d.status();
      db_ = *d;
      // A fresh schema per test.
      ASSERT_TRUE(db_->Query("DROP TABLE IF EXISTS kv", {}).ok());
      ASSERT_TRUE(db_->Query("DROP TABLE IF EXISTS schema_migrations", {}).ok());
    }
  }
  std::shared_ptr<Database> db_;
};

const std::vector<std::string> kSteps = {
    "CREATE TABLE kv (k TEXT PRIMARY KEY, n BIGINT NOT NULL, note TEXT)",
    "CREATE INDEX kv_n ON kv (n)",
};

TEST_P(SqlTest, BindsTextIntegersAndNullsAndReturnsRows) {
  ASSERT_TRUE(Migrate(*db_, "t", kSteps).ok());
  ASSERT_TRUE(db_->Query("INSERT INTO kv (k, n, note) VALUES ($1, $2, $3)",
                         {"a'; DROP TABLE kv; --", int64_t{42}, std::nullopt})
                  .ok());
  auto rows = db_->Query("SELECT k, n, note FROM kv WHERE n > $1", {int64_t{41}});
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].text(0), "a'; DROP TABLE kv; --");
  EXPECT_EQ((*rows)[0].integer(1), 42);
  EXPECT_TRUE((*rows)[0].is_null(2));
}

TEST_P(SqlTest, UpsertWithReturningWorksOnBoth) {
  ASSERT_TRUE(Migrate(*db_, "t", kSteps).ok());
  const char* upsert =
      "INSERT INTO kv (k, n) VALUES ($1, 1) ON CONFLICT (k) DO UPDATE SET n = kv.n + 1 "
      "RETURNING n";
  for (int i = 1; i <= 3; ++i) {
    auto rows = db_->Query(upsert, {"key"});
    ASSERT_TRUE(rows.ok()) << rows.status();
    EXPECT_EQ((*rows)[0].integer(0), i);
  }
}

TEST_P(SqlTest, MigrationsRunOnceAndRefuseANewerSchema) {
  ASSERT_TRUE(Migrate(*db_, "t", kSteps).ok());
  ASSERT_TRUE(Migrate(*db_, "t", kSteps).ok());  // nothing to do
  std::vector<std::string> more = kSteps;
  more.push_back("ALTER TABLE kv ADD COLUMN extra TEXT");
  ASSERT_TRUE(Migrate(*db_, "t", more).ok());
  EXPECT_TRUE(db_->Query("SELECT extra FROM kv", {}).ok());
  absl::Status old = Migrate(*db_, "t", kSteps);
  EXPECT_EQ(old.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(old.message(), HasSubstr("schema is version 3, newer than this program's 2"));
}

TEST_P(SqlTest, AFailedMigrationLeavesNothingBehind) {
  std::vector<std::string> bad = {kSteps[0], "CREATE TABLE broken (", kSteps[1]};
  absl::Status s = Migrate(*db_, "t", bad);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("t migration 2"));
  // Step 1 was rolled back with the failing step.
  EXPECT_TRUE(Migrate(*db_, "t", kSteps).ok());
  EXPECT_TRUE(db_->Query("SELECT n FROM kv", {}).ok());
}

TEST_P(SqlTest, ConcurrentMigrationsAndUpsertsStayConsistent) {
  constexpr int kThreads = 6, kEach = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      if (!Migrate(*db_, "t", kSteps).ok()) ++failures;
      for (int i = 0; i < kEach; ++i) {
        auto r = db_->Query(
            "INSERT INTO kv (k, n) VALUES ($1, 1) ON CONFLICT (k) DO UPDATE SET n = kv.n + 1",
            {"shared"});
        if (!r.ok()) {
          ADD_FAILURE() << r.status();
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  auto rows = db_->Query("SELECT n FROM kv WHERE k = $1", {"shared"});
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].integer(0), kThreads * kEach);
}

TEST_P(SqlTest, BadStatementsAreInternalErrorsAndTheConnectionStaysUsable) {
  auto r = db_->Query("SELECT * FROM no_such_table", {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
  EXPECT_TRUE(db_->Query("SELECT 1", {}).ok());
}

TEST_P(SqlTest, TransactionsRollBackOnError) {
  ASSERT_TRUE(Migrate(*db_, "t", kSteps).ok());
  absl::Status s = db_->RunTransaction([](Transaction& tx) -> absl::Status {
    auto r = tx.Query("INSERT INTO kv (k, n) VALUES ($1, $2)", {"x", int64_t{1}});
    if (!r.ok()) return r.status();
    return absl::AbortedError("changed my mind");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  auto rows = db_->Query("SELECT COUNT(*) FROM kv", {});
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].integer(0), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, SqlTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgresql),
                         [](const auto& info) {
                           return info.param == Backend::kSqlite ? "Sqlite" : "Postgresql";
                         });

// Waits until `c`'s statement has its result (poll on its socket, as a loop would).
absl::StatusOr<Rows> AwaitResult(AsyncConnection& c) {
  for (;;) {
    pollfd p{c.fd(), POLLIN, 0};
    if (poll(&p, 1, 10'000) != 1) return absl::DeadlineExceededError("no result in 10 s");
    std::optional<absl::StatusOr<Rows>> r = c.Receive();
    if (r.has_value()) return *std::move(r);
  }
}

TEST(SqlAsync, SendsPreparedStatementsAndCollectsTheirRowsOrErrors) {
  harness::PostgresInstance* pg = harness::SharedPostgresForTests();
  ASSERT_NE(pg, nullptr);
  auto db = OpenPostgresql(pg->conninfo(), 2);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)->Query("DROP TABLE IF EXISTS async_kv", {}).ok());
  ASSERT_TRUE((*db)->Query("CREATE TABLE async_kv (k TEXT PRIMARY KEY, n BIGINT)", {}).ok());
  const std::string insert =
      "INSERT INTO async_kv (k, n) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING RETURNING k, n";
  const std::string divide = "SELECT 1 / CAST($1 AS BIGINT)";
  auto c = (*db)->ConnectAsync({insert, divide});
  ASSERT_TRUE(c.ok()) << c.status();
  AsyncConnection& conn = **c;

  ASSERT_TRUE(conn.Send(insert, {"a", 7}).ok());
  // One statement at a time.
  EXPECT_EQ(conn.Send(insert, {"b", 8}).code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<Rows> rows = AwaitResult(conn);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].text(0), "a");
  EXPECT_EQ((*rows)[0].integer(1), 7);
  // The row is committed: the pool's connections see it.
  auto seen = (*db)->Query("SELECT n FROM async_kv WHERE k = 'a'", {});
  ASSERT_TRUE(seen.ok() && seen->size() == 1) << seen.status();

  // A conflict returns no row; NULL parameters go as NULL.
  ASSERT_TRUE(conn.Send(insert, {"a", Param()}).ok());
  rows = AwaitResult(conn);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_TRUE(rows->empty());

  // A statement's error is Internal (not a temporary failure), and the connection
  // goes on.
  ASSERT_TRUE(conn.Send(divide, {0}).ok());
  rows = AwaitResult(conn);
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInternal) << rows.status();
  EXPECT_THAT(rows.status().message(), HasSubstr("22012"));
  EXPECT_TRUE(conn.connected());
  ASSERT_TRUE(conn.Send(divide, {2}).ok());
  rows = AwaitResult(conn);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ((*rows)[0].integer(0), 0);

  // Only what ConnectAsync prepared.
  EXPECT_EQ(conn.Send("SELECT 2", {}).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SqlAsync, ALostConnectionIsUnavailableAndSqliteHasNone) {
  harness::PostgresInstance* pg = harness::SharedPostgresForTests();
  ASSERT_NE(pg, nullptr);
  auto db = OpenPostgresql(pg->conninfo(), 2);
  ASSERT_TRUE(db.ok()) << db.status();
  const std::string pid = "SELECT pg_backend_pid() + 0 * CAST($1 AS INTEGER)";
  auto c = (*db)->ConnectAsync({pid});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->Send(pid, {0}).ok());
  absl::StatusOr<Rows> rows = AwaitResult(**c);
  ASSERT_TRUE(rows.ok()) << rows.status();
  // The server ends this connection's backend (as a restart or an administrator would).
  auto killed = (*db)->Query("SELECT pg_terminate_backend(CAST($1 AS INTEGER))",
                             {(*rows)[0].text(0)});
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_TRUE((*c)->connected()) << "not noticed before the next statement";
  absl::Status sent = (*c)->Send(pid, {0});
  if (sent.ok()) {
    rows = AwaitResult(**c);
    EXPECT_EQ(rows.status().code(), absl::StatusCode::kUnavailable) << rows.status();
  } else {
    EXPECT_EQ(sent.code(), absl::StatusCode::kUnavailable) << sent;
  }
  EXPECT_FALSE((*c)->connected());

  auto lite = OpenSqlite(absl::StrCat(std::getenv("TEST_TMPDIR"), "/async.db"), absl::Seconds(1));
  ASSERT_TRUE(lite.ok()) << lite.status();
  EXPECT_EQ((*lite)->ConnectAsync({}).status().code(), absl::StatusCode::kUnimplemented);
}

TEST(SqlOpen, UnreachableServersAndUnwritablePathsAreUnavailable) {
  auto pg = OpenPostgresql("host=127.0.0.1 port=1 connect_timeout=2", 1);
  EXPECT_EQ(pg.status().code(), absl::StatusCode::kUnavailable) << pg.status();
  EXPECT_THAT(pg.status().message(), HasSubstr("cannot connect to PostgreSQL"));
  auto lite = OpenSqlite("/nonexistent-dir/x.db", absl::Seconds(1));
  EXPECT_EQ(lite.status().code(), absl::StatusCode::kUnavailable) << lite.status();
}

TEST(SqlOpen, ProcessesOpeningANewSqliteFileAtOnceAllSucceed) {
  // Replicas starting together all switch the new file to WAL at once.
  for (int round = 0; round < 10; ++round) {
    std::string path = absl::StrCat(std::getenv("TEST_TMPDIR"), "/race", round, ".db");
    std::vector<pid_t> children;
    const absl::Time go = absl::Now() + absl::Milliseconds(100);
    for (int t = 0; t < 8; ++t) {
      pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        absl::SleepFor(go - absl::Now());  // start together
        auto db = OpenSqlite(path, absl::Seconds(5));
        if (!db.ok()) {
          fprintf(stderr, "%s\n", db.status().ToString().c_str());
          _exit(1);
        }
        _exit(Migrate(**db, "t", kSteps).ok() ? 0 : 2);
      }
      children.push_back(pid);
    }
    for (pid_t pid : children) {
      int status = 0;
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "round " << round;
    }
  }
}

// One process's SQLite writers queue on a mutex instead of meeting SQLITE_BUSY: even
// with no busy timeout at all, concurrent writers all succeed.
TEST(SqlOpen, SqliteWritersInOneProcessTakeTurns) {
  std::string path = absl::StrCat(std::getenv("TEST_TMPDIR"), "/turns.db");
  auto db = OpenSqlite(path, absl::ZeroDuration());
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)->Query("CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT)", {}).ok());
  std::atomic<int> failed{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 8; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 200; ++i) {
        auto r = (*db)->Query("INSERT INTO t (k, n) VALUES ($1, $2)",
                              {absl::StrCat(w, "-", i), int64_t{i}});
        if (!r.ok()) ++failed;
        if (!(*db)->Query("SELECT count(*) FROM t", {}).ok()) ++failed;
      }
    });
  }
  for (std::thread& t : writers) t.join();
  EXPECT_EQ(failed.load(), 0);
  auto n = (*db)->Query("SELECT count(*) FROM t", {});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->at(0).integer(0), 1600);
}

TEST(SqlOpen, ResolvesRelativeSqlitePathsAgainstTheConfigFolder) {
  config::v1::Database spec;
  spec.mutable_sqlite()->set_path("rel.db");
  auto db = Open(spec, std::getenv("TEST_TMPDIR"));
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ((*db)->backend(), Backend::kSqlite);
  EXPECT_EQ(access(absl::StrCat(std::getenv("TEST_TMPDIR"), "/rel.db").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace sagator::sql
