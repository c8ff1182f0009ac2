// SQL access for every component that keeps state in a database (greylisting and
// lists, the scan log, the quarantine): one small interface with two back ends,
// SQLite (embedded, the default) and PostgreSQL (libpqxx), so the same statements
// and the same migrations serve both.
//
//   absl::StatusOr<std::shared_ptr<sql::Database>> db = sql::Open(spec, base_dir);
//   absl::Status s = sql::Migrate(**db, "policy", {"CREATE TABLE ...", ...});
//   auto rows = (*db)->Query("SELECT a FROM t WHERE k = $1", {key});
//
// Statements use PostgreSQL's $1, $2, ... placeholders on both back ends, and only
// SQL both understand (INSERT ... ON CONFLICT ... RETURNING, BIGINT, TEXT). Every
// value is a bound parameter: no SQL is built from data. Statements are prepared
// once per connection and cached.
//
// Errors: a database that is down or busy gives Unavailable (a temporary failure
// for the caller's MTA), a bad statement gives Internal. Exceptions of libpqxx are
// caught here and never leave this unit.
//
// Thread-safe: each call takes a connection from a pool (SQLite: one connection per
// concurrent caller, WAL mode; PostgreSQL: pool_size connections).
#ifndef SAGATOR_COMMON_SQL_H_
#define SAGATOR_COMMON_SQL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sagator/config/v1/config.pb.h"

namespace sagator::sql {

// A bound parameter: text, an integer, or NULL.
class Param {
 public:
  Param() = default;  // NULL
  Param(std::nullopt_t) {}
  Param(std::string s) : value_(std::move(s)) {}
  Param(absl::string_view s) : value_(std::string(s)) {}
  Param(const char* s) : value_(std::string(s)) {}
  Param(int64_t v) : value_(std::to_string(v)), integer_(true) {}
  Param(int v) : Param(static_cast<int64_t>(v)) {}
  template <typename T>
  Param(const std::optional<T>& v) {
    if (v) *this = Param(*v);
  }

  bool is_null() const { return !value_.has_value(); }
  bool is_integer() const { return integer_; }
  const std::string& text() const { return *value_; }

 private:
  std::optional<std::string> value_;
  bool integer_ = false;
};

using Params = std::vector<Param>;

// One result row: each column as text, nullopt for NULL.
struct Row {
  std::vector<std::optional<std::string>> columns;

  bool is_null(size_t i) const { return !columns.at(i).has_value(); }
  const std::string& text(size_t i) const;  // "" for NULL
  int64_t integer(size_t i) const;          // 0 for NULL or non-numbers
};

using Rows = std::vector<Row>;

enum class Backend { kSqlite, kPostgresql };

// Statements run inside Transaction() see and change the database as one unit.
class Transaction {
 public:
  virtual ~Transaction() = default;
  virtual absl::StatusOr<Rows> Query(absl::string_view statement, const Params& params) = 0;
};

class Database {
 public:
  virtual ~Database() = default;

  virtual Backend backend() const = 0;

  // Runs one statement on its own (it commits at once) and returns its rows.
  virtual absl::StatusOr<Rows> Query(absl::string_view statement, const Params& params) = 0;

  // Runs `body` in one transaction, committed when it returns OK and rolled back
  // otherwise. PostgreSQL: `body` may take pg_advisory_xact_lock; SQLite: the
  // transaction holds the write lock from the start (BEGIN IMMEDIATE), and this
  // process's other writers wait for it, so `body` writes through `tx` only (a
  // write through the Database itself would wait for its own transaction).
  virtual absl::Status RunTransaction(std::function<absl::Status(Transaction&)> body) = 0;
};

// Opens the database the configuration describes; `base_dir` resolves a relative
// SQLite path. Connects once, so a wrong conninfo fails here. `durable`: every commit
// survives a power loss (SQLite synchronous=FULL; PostgreSQL commits are synchronous
// already), for data that exists nowhere else once stored.
absl::StatusOr<std::shared_ptr<Database>> Open(const config::v1::Database& spec,
                                               const std::string& base_dir,
                                               bool durable = false);

// Convenience for tests and tools.
absl::StatusOr<std::shared_ptr<Database>> OpenSqlite(const std::string& path,
                                                     absl::Duration busy_timeout,
                                                     bool durable = false);
absl::StatusOr<std::shared_ptr<Database>> OpenPostgresql(const std::string& conninfo,
                                                         int pool_size);

// Brings `component`'s schema up to date: step i (0-based) is version i + 1, and
// every step not yet recorded in schema_migrations runs, in order, in one
// transaction with the record. Safe when several processes start at once.
absl::Status Migrate(Database& db, absl::string_view component,
                     const std::vector<std::string>& steps);

}  // namespace sagator::sql

#endif  // SAGATOR_COMMON_SQL_H_
