#include "common/sql.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sqlite3.h>

#include <pqxx/pqxx>

#include <deque>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/config.h"

namespace sagator::sql {

const std::string& Row::text(size_t i) const {
  static const std::string* const kEmpty = new std::string();
  const auto& c = columns.at(i);
  return c ? *c : *kEmpty;
}

int64_t Row::integer(size_t i) const {
  int64_t v = 0;
  const auto& c = columns.at(i);
  if (c && !absl::SimpleAtoi(*c, &v)) v = 0;
  return v;
}

namespace {

// A pool of connections of type C: Acquire hands one out (creating it with `make`
// while fewer than `max` exist, else waiting), Release gives it back, Discard drops
// a broken one.
template <typename C>
class Pool {
 public:
  Pool(size_t max, std::function<absl::StatusOr<std::unique_ptr<C>>()> make)
      : max_(max), make_(std::move(make)) {}

  absl::StatusOr<std::unique_ptr<C>> Acquire() {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this] { return !idle_.empty() || open_ < max_; };
      mu_.Await(absl::Condition(&ready));
      if (!idle_.empty()) {
        std::unique_ptr<C> c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
      ++open_;
    }
    absl::StatusOr<std::unique_ptr<C>> c = make_();
    if (!c.ok()) Discard();
    return c;
  }
  void Release(std::unique_ptr<C> c) {
    absl::MutexLock lock(&mu_);
    idle_.push_back(std::move(c));
  }
  void Discard() {
    absl::MutexLock lock(&mu_);
    --open_;
  }

 private:
  const size_t max_;
  std::function<absl::StatusOr<std::unique_ptr<C>>()> make_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<C>> idle_ ABSL_GUARDED_BY(mu_);
  size_t open_ ABSL_GUARDED_BY(mu_) = 0;
};

// Borrows a connection for one call and gives it back (or drops it when broken).
template <typename C>
class Lease {
 public:
  Lease(Pool<C>* pool, std::unique_ptr<C> c) : pool_(pool), c_(std::move(c)) {}
  ~Lease() {
    if (broken_) {
      pool_->Discard();
    } else {
      pool_->Release(std::move(c_));
    }
  }
  C* operator->() { return c_.get(); }
  C& operator*() { return *c_; }
  void set_broken() { broken_ = true; }

 private:
  Pool<C>* pool_;
  std::unique_ptr<C> c_;
  bool broken_ = false;
};

// ---------------------------------------------------------------- SQLite

// SQLite numbers parameters ?NNN; the statements are written with $NNN.
std::string ToSqlitePlaceholders(absl::string_view statement) {
  std::string out(statement);
  for (size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] == '$' && absl::ascii_isdigit(static_cast<unsigned char>(out[i + 1]))) {
      out[i] = '?';
    }
  }
  return out;
}

class SqliteConnection {
 public:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  ~SqliteConnection() {
    for (auto& [_, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  absl::Status Error(int rc, absl::string_view what) const {
    std::string msg = absl::StrCat("SQLite ", what, ": ", sqlite3_errmsg(db_));
    int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_IOERR ||
        primary == SQLITE_FULL || primary == SQLITE_CANTOPEN || primary == SQLITE_NOMEM) {
      return absl::UnavailableError(msg);
    }
    return absl::InternalError(msg);
  }

  // With `write_mu`, a statement that writes runs holding it (see SqliteDatabase).
  absl::StatusOr<Rows> Query(absl::string_view statement, const Params& params,
                             absl::Mutex* write_mu) {
    sqlite3_stmt* stmt = nullptr;
    auto it = statements_.find(statement);
    if (it != statements_.end()) {
      stmt = it->second;
    } else {
      std::string sql = ToSqlitePlaceholders(statement);
      int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                  SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK) return Error(rc, absl::StrCat("cannot prepare '", statement, "'"));
      statements_.emplace(std::string(statement), stmt);
    }
    struct Reset {
      sqlite3_stmt* s;
      ~Reset() {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
      }
    } reset{stmt};
    for (size_t i = 0; i < params.size(); ++i) {
      const Param& p = params[i];
      int idx = static_cast<int>(i + 1);
      int rc;
      if (p.is_null()) {
        rc = sqlite3_bind_null(stmt, idx);
      } else if (p.is_integer()) {
        int64_t v = 0;
        (void)absl::SimpleAtoi(p.text(), &v);
        rc = sqlite3_bind_int64(stmt, idx, v);
      } else {
        rc = sqlite3_bind_text(stmt, idx, p.text().data(), static_cast<int>(p.text().size()),
                               SQLITE_STATIC);
      }
      if (rc != SQLITE_OK) return Error(rc, "cannot bind a parameter");
    }
    std::optional<absl::MutexLock> writing;
    if (write_mu != nullptr && !sqlite3_stmt_readonly(stmt)) writing.emplace(write_mu);
    Rows rows;
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return Error(rc, "statement failed");
      Row row;
      int n = sqlite3_column_count(stmt);
      row.columns.reserve(n);
      for (int c = 0; c < n; ++c) {
        if (sqlite3_column_type(stmt, c) == SQLITE_NULL) {
          row.columns.emplace_back(std::nullopt);
        } else {
          const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
          row.columns.emplace_back(std::string(t, sqlite3_column_bytes(stmt, c)));
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  absl::Status Exec(const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    if (err != nullptr) sqlite3_free(err);
    if (rc != SQLITE_OK) return Error(rc, sql);
    return absl::OkStatus();
  }

 private:
  sqlite3* db_;
  absl::flat_hash_map<std::string, sqlite3_stmt*> statements_;
};

class SqliteTransaction : public Transaction {
 public:
  explicit SqliteTransaction(SqliteConnection* c) : c_(c) {}
  absl::StatusOr<Rows> Query(absl::string_view statement, const Params& params) override {
    // The transaction holds the database's write mutex already.
    return c_->Query(statement, params, nullptr);
  }

 private:
  SqliteConnection* c_;
};

class SqliteDatabase : public Database {
 public:
  SqliteDatabase(std::string path, absl::Duration busy_timeout, bool durable)
      : path_(std::move(path)),
        busy_ms_(static_cast<int>(absl::ToInt64Milliseconds(busy_timeout))),
        durable_(durable),
        // SQLite serializes writers anyway; the cap bounds open files.
        pool_(64, [this] { return Connect(); }) {}

  Backend backend() const override { return Backend::kSqlite; }

  absl::StatusOr<std::unique_ptr<SqliteConnection>> Connect() {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path_.c_str(), &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
      if (db) sqlite3_close_v2(db);
      return absl::UnavailableError(absl::StrCat("cannot open SQLite database ", path_, ": ", msg));
    }
    auto c = std::make_unique<SqliteConnection>(db);
    sqlite3_busy_timeout(db, busy_ms_);
    // WAL: readers never wait for the writer; NORMAL sync is durable across
    // process crashes (a power loss may lose the last commits, never corrupt);
    // FULL (durable) also syncs the WAL at every commit, for data that exists
    // nowhere else once the caller was told it is stored (the quarantine).
    // Switching to WAL takes an exclusive lock without waiting in the busy handler,
    // so processes opening a new file at once retry within busy_timeout.
    absl::Time give_up = absl::Now() + absl::Milliseconds(busy_ms_);
    for (const char* pragma : {"PRAGMA journal_mode=WAL", durable_ ? "PRAGMA synchronous=FULL"
                                                                   : "PRAGMA synchronous=NORMAL"}) {
      absl::Status s = c->Exec(pragma);
      while (s.code() == absl::StatusCode::kUnavailable && absl::Now() < give_up) {
        absl::SleepFor(absl::Milliseconds(10));
        s = c->Exec(pragma);
      }
      if (!s.ok()) {
        return absl::UnavailableError(absl::StrCat(path_, ": ", s.message()));
      }
    }
    return c;
  }

  absl::StatusOr<Rows> Query(absl::string_view statement, const Params& params) override {
    auto c = pool_.Acquire();
    if (!c.ok()) return c.status();
    Lease<SqliteConnection> lease(&pool_, *std::move(c));
    return lease->Query(statement, params, &write_mu_);
  }

  absl::Status RunTransaction(std::function<absl::Status(Transaction&)> body) override {
    auto c = pool_.Acquire();
    if (!c.ok()) return c.status();
    Lease<SqliteConnection> lease(&pool_, *std::move(c));
    absl::MutexLock writing(&write_mu_);
    absl::Status s = lease->Exec("BEGIN IMMEDIATE");
    if (!s.ok()) return s;
    SqliteTransaction tx(&*lease);
    s = body(tx);
    if (s.ok()) s = lease->Exec("COMMIT");
    if (!s.ok()) {
      if (!lease->Exec("ROLLBACK").ok()) lease.set_broken();
    }
    return s;
  }

 private:
  const std::string path_;
  const int busy_ms_;
  const bool durable_;
  Pool<SqliteConnection> pool_;
  // SQLite lets one writer in at a time; the others' busy handler sleeps and
  // retries (1 ms, 2 ms, 5 ms, ...). This process's writers queue here instead,
  // and wake as soon as the one before them is done; other processes still meet
  // the busy timeout.
  absl::Mutex write_mu_;
};

// ------------------------------------------------------------ PostgreSQL

// SQLSTATE classes that mean "try again later": connection exceptions,
// serialization failures and deadlocks, insufficient resources, operator
// intervention (shutdown), system errors.
bool TemporarySqlState(const std::string& state) {
  std::string cls = state.substr(0, 2);
  return cls == "08" || cls == "40" || cls == "53" || cls == "57" || cls == "58";
}

absl::Status FromPqxx(const std::exception& e, bool* broken) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    *broken = true;
    return absl::UnavailableError(absl::StrCat("PostgreSQL connection lost: ", e.what()));
  }
  if (const auto* se = dynamic_cast<const pqxx::sql_error*>(&e)) {
    std::string msg = absl::StrCat("PostgreSQL: ", se->what(), " [", se->sqlstate(), "]");
    if (TemporarySqlState(se->sqlstate())) return absl::UnavailableError(msg);
    return absl::InternalError(msg);
  }
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    *broken = true;
    return absl::UnavailableError(absl::StrCat("PostgreSQL commit in doubt: ", e.what()));
  }
  *broken = true;
  return absl::InternalError(absl::StrCat("PostgreSQL: ", e.what()));
}

class PgConnection {
 public:
  explicit PgConnection(const std::string& conninfo) : conn(conninfo) {}
  pqxx::connection conn;

  // The name of `statement`, prepared on this connection on first use.
  const std::string& Prepared(absl::string_view statement) {
    auto it = names_.find(statement);
    if (it != names_.end()) return it->second;
    std::string name = absl::StrCat("s", names_.size());
    conn.prepare(name, std::string(statement));
    return names_.emplace(std::string(statement), std::move(name)).first->second;
  }

 private:
  absl::flat_hash_map<std::string, std::string> names_;
};

template <typename Tx>
Rows RunPrepared(PgConnection& c, Tx& tx, absl::string_view statement, const Params& params) {
  const std::string& name = c.Prepared(statement);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const Param& p : params) values.push_back(p.is_null() ? nullptr : p.text().c_str());
  pqxx::result r = tx.exec_prepared(name, pqxx::prepare::make_dynamic_params(values));
  Rows rows;
  rows.reserve(r.size());
  for (const auto& row : r) {
    Row out;
    out.columns.reserve(row.size());
    for (const auto& f : row) {
      if (f.is_null()) {
        out.columns.emplace_back(std::nullopt);
      } else {
        out.columns.emplace_back(std::string(f.c_str(), f.size()));
      }
    }
    rows.push_back(std::move(out));
  }
  return rows;
}

class PgTransaction : public Transaction {
 public:
  PgTransaction(PgConnection* c, pqxx::work* tx) : c_(c), tx_(tx) {}
  absl::StatusOr<Rows> Query(absl::string_view statement, const Params& params) override {
    try {
      return RunPrepared(*c_, *tx_, statement, params);
    } catch (const std::exception& e) {
      bool broken = false;
      return FromPqxx(e, &broken);
    }
  }

 private:
  PgConnection* c_;
  pqxx::work* tx_;
};

// AsyncConnection over libpq's non-blocking calls (libpqxx has none).
class PgAsyncConnection : public AsyncConnection {
 public:
  ~PgAsyncConnection() override {
    if (conn_ != nullptr) PQfinish(conn_);
  }

  static absl::StatusOr<std::unique_ptr<AsyncConnection>> Connect(
      const std::string& conninfo, const std::vector<std::string>& statements) {
    auto c = std::unique_ptr<PgAsyncConnection>(new PgAsyncConnection());
    // Named for pg_stat_activity unless the conninfo names its connections; a bounded
    // wait for a server that does not answer (libpq's default: none) unless the
    // conninfo sets its own. (Later keywords override earlier ones.)
    const char* keywords[] = {"application_name", "dbname", "connect_timeout", nullptr};
    const char* values[] = {kAsyncApplicationName, conninfo.c_str(), "5", nullptr};
    if (conninfo.find("connect_timeout") != std::string::npos) keywords[2] = nullptr;
    c->conn_ = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
    if (PQstatus(c->conn_) != CONNECTION_OK) {
      return absl::UnavailableError(absl::StrCat(
          "cannot connect to PostgreSQL: ", absl::StripAsciiWhitespace(PQerrorMessage(c->conn_))));
    }
    for (const std::string& statement : statements) {
      std::string name = absl::StrCat("a", c->names_.size());
      PGresult* r = PQprepare(c->conn_, name.c_str(), statement.c_str(), 0, nullptr);
      absl::StatusOr<Rows> done = c->Take(r);
      if (!done.ok()) return done.status();
      c->names_.emplace(statement, std::move(name));
    }
    if (PQsetnonblocking(c->conn_, 1) != 0) {
      return absl::UnavailableError("PostgreSQL: cannot make the connection non-blocking");
    }
    return std::unique_ptr<AsyncConnection>(std::move(c));
  }

  int fd() const override { return PQsocket(conn_); }
  bool connected() const override { return PQstatus(conn_) == CONNECTION_OK; }

  absl::Status Send(absl::string_view statement, const Params& params) override {
    if (in_flight_) return absl::FailedPreconditionError("a statement is in flight");
    auto it = names_.find(statement);
    if (it == names_.end()) return absl::FailedPreconditionError("statement not prepared");
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const Param& p : params) values.push_back(p.is_null() ? nullptr : p.text().c_str());
    if (PQsendQueryPrepared(conn_, it->second.c_str(), static_cast<int>(values.size()),
                            values.data(), nullptr, nullptr, 0) != 1) {
      return Lost();
    }
    // A statement fits the socket's buffer: PQflush is done at once but when the
    // server stopped reading, and then waits for it up to a second.
    for (int tries = 0;; ++tries) {
      int f = PQflush(conn_);
      if (f == 0) break;
      if (f < 0 || tries == 10) return Lost();
      pollfd p{fd(), POLLOUT, 0};
      poll(&p, 1, 100);
    }
    in_flight_ = true;
    rows_.reset();
    return absl::OkStatus();
  }

  std::optional<absl::StatusOr<Rows>> Receive() override {
    if (!in_flight_) return absl::StatusOr<Rows>(absl::FailedPreconditionError("nothing sent"));
    if (PQconsumeInput(conn_) != 1) {
      in_flight_ = false;
      return absl::StatusOr<Rows>(Lost());
    }
    // A statement gives one result, then NULL once it is complete.
    while (PQisBusy(conn_) == 0) {
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) {
        in_flight_ = false;
        if (!rows_.has_value()) return absl::StatusOr<Rows>(Lost());
        absl::StatusOr<Rows> done = std::move(*rows_);
        rows_.reset();
        return done;
      }
      absl::StatusOr<Rows> rows = Take(r);
      if (!rows_.has_value() || rows_->ok()) rows_ = std::move(rows);
    }
    return std::nullopt;
  }

 private:
  PgAsyncConnection() = default;

  absl::Status Lost() {
    return absl::UnavailableError(absl::StrCat("PostgreSQL connection lost: ",
                                               absl::StripAsciiWhitespace(PQerrorMessage(conn_))));
  }

  // The rows of `r` (which it frees), or its error.
  absl::StatusOr<Rows> Take(PGresult* r) {
    const ExecStatusType st = PQresultStatus(r);
    absl::StatusOr<Rows> out;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
      Rows rows;
      const int n = PQntuples(r), cols = PQnfields(r);
      rows.reserve(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        Row row;
        row.columns.reserve(static_cast<size_t>(cols));
        for (int j = 0; j < cols; ++j) {
          if (PQgetisnull(r, i, j)) {
            row.columns.emplace_back(std::nullopt);
          } else {
            row.columns.emplace_back(std::string(PQgetvalue(r, i, j),
                                                 static_cast<size_t>(PQgetlength(r, i, j))));
          }
        }
        rows.push_back(std::move(row));
      }
      out = std::move(rows);
    } else {
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      std::string msg =
          absl::StrCat("PostgreSQL: ", absl::StripAsciiWhitespace(PQresultErrorMessage(r)),
                       " [", state == nullptr ? "" : state, "]");
      out = r == nullptr || state == nullptr || TemporarySqlState(state)
                ? absl::UnavailableError(msg)
                : absl::InternalError(msg);
    }
    PQclear(r);
    return out;
  }

  PGconn* conn_ = nullptr;
  absl::flat_hash_map<std::string, std::string> names_;
  bool in_flight_ = false;
  std::optional<absl::StatusOr<Rows>> rows_;
};

class PostgresqlDatabase : public Database {
 public:
  PostgresqlDatabase(std::string conninfo, int pool_size)
      : conninfo_(std::move(conninfo)), pool_(pool_size, [this] { return Connect(); }) {}

  Backend backend() const override { return Backend::kPostgresql; }

  absl::StatusOr<std::unique_ptr<PgConnection>> Connect() {
    try {
      return std::make_unique<PgConnection>(conninfo_);
    } catch (const std::exception& e) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to PostgreSQL: ", absl::StripAsciiWhitespace(e.what())));
    }
  }

  absl::StatusOr<Rows> Query(absl::string_view statement, const Params& params) override {
    auto c = pool_.Acquire();
    if (!c.ok()) return c.status();
    Lease<PgConnection> lease(&pool_, *std::move(c));
    try {
      pqxx::nontransaction tx(lease->conn);
      return RunPrepared(*lease, tx, statement, params);
    } catch (const std::exception& e) {
      bool broken = false;
      absl::Status s = FromPqxx(e, &broken);
      if (broken) lease.set_broken();
      return s;
    }
  }

  absl::StatusOr<std::unique_ptr<AsyncConnection>> ConnectAsync(
      const std::vector<std::string>& statements) override {
    return PgAsyncConnection::Connect(conninfo_, statements);
  }

  absl::Status RunTransaction(std::function<absl::Status(Transaction&)> body) override {
    auto c = pool_.Acquire();
    if (!c.ok()) return c.status();
    Lease<PgConnection> lease(&pool_, *std::move(c));
    try {
      pqxx::work tx(lease->conn);
      PgTransaction t(&*lease, &tx);
      absl::Status s = body(t);
      if (!s.ok()) {
        tx.abort();
        return s;
      }
      tx.commit();
      return absl::OkStatus();
    } catch (const std::exception& e) {
      bool broken = false;
      absl::Status s = FromPqxx(e, &broken);
      if (broken) lease.set_broken();
      return s;
    }
  }

 private:
  const std::string conninfo_;
  Pool<PgConnection> pool_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<Database>> OpenSqlite(const std::string& path,
                                                     absl::Duration busy_timeout, bool durable) {
  auto db = std::make_shared<SqliteDatabase>(path, busy_timeout, durable);
  // Open one connection now, so a bad path fails at start.
  absl::StatusOr<Rows> probe = db->Query("SELECT 1", {});
  if (!probe.ok()) return probe.status();
  return db;
}

absl::StatusOr<std::shared_ptr<Database>> OpenPostgresql(const std::string& conninfo,
                                                         int pool_size) {
  auto db = std::make_shared<PostgresqlDatabase>(conninfo, pool_size);
  absl::StatusOr<Rows> probe = db->Query("SELECT 1", {});
  if (!probe.ok()) return probe.status();
  return db;
}

absl::StatusOr<std::shared_ptr<Database>> Open(const config::v1::Database& spec,
                                               const std::string& base_dir, bool durable) {
  switch (spec.kind_case()) {
    case config::v1::Database::kSqlite: {
      std::string path = spec.sqlite().path();
      if (!path.empty() && path[0] != '/' && !base_dir.empty() && path != ":memory:") {
        path = absl::StrCat(base_dir, "/", path);
      }
      const auto& t = spec.sqlite().busy_timeout();
      return OpenSqlite(path, ToDuration(t), durable);
    }
    case config::v1::Database::kPostgresql:
      return OpenPostgresql(spec.postgresql().conninfo(), spec.postgresql().pool_size());
    default:
      return absl::InvalidArgumentError("the database names no back end (sqlite or postgresql)");
  }
}

absl::Status Migrate(Database& db, absl::string_view component,
                     const std::vector<std::string>& steps) {
  return db.RunTransaction([&](Transaction& tx) -> absl::Status {
    if (db.backend() == Backend::kPostgresql) {
      // Concurrent CREATE TABLE IF NOT EXISTS races in PostgreSQL; one lock for
      // every process migrating this database.
      auto locked = tx.Query("SELECT pg_advisory_xact_lock(7290001)", {});
      if (!locked.ok()) return locked.status();
    }
    auto made = tx.Query(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " component TEXT NOT NULL, version BIGINT NOT NULL, applied_at BIGINT NOT NULL,"
        " PRIMARY KEY (component, version))",
        {});
    if (!made.ok()) return made.status();
    auto current = tx.Query(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = $1",
        {std::string(component)});
    if (!current.ok()) return current.status();
    int64_t have = current->empty() ? 0 : (*current)[0].integer(0);
    if (have > static_cast<int64_t>(steps.size())) {
      return absl::FailedPreconditionError(
          absl::StrCat("the database's ", component, " schema is version ", have,
                       ", newer than this program's ", steps.size(), ": upgrade the program"));
    }
    for (size_t v = have; v < steps.size(); ++v) {
      auto done = tx.Query(steps[v], {});
      if (!done.ok()) {
        return absl::Status(done.status().code(),
                            absl::StrCat(component, " migration ", v + 1, ": ",
                                         done.status().message()));
      }
      auto recorded = tx.Query(
          "INSERT INTO schema_migrations (component, version, applied_at) VALUES ($1, $2, $3)",
          {std::string(component), static_cast<int64_t>(v + 1), absl::ToUnixSeconds(absl::Now())});
      if (!recorded.ok()) return recorded.status();
    }
    return absl::OkStatus();
  });
}

}  // namespace sagator::sql
