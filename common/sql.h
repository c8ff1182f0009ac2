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

inline constexpr char kAsyncApplicationName[] = "sagator-loop";

// A PostgreSQL connection for an event loop's thread: a statement is sent without
// waiting, and its result is collected once the socket is readable, so one thread
// serves its sockets and the database's at once. Only the statements given to
// Database::ConnectAsync (prepared there). One statement in flight at a time.
// Not thread-safe: one owner.
//
//   auto c = db->ConnectAsync({kInsert});           // blocks: connects, prepares
//   absl::Status s = (*c)->Send(kInsert, params);    // does not wait
//   ... wait until (*c)->fd() is readable ...
//   std::optional<absl::StatusOr<Rows>> r = (*c)->Receive();  // nullopt: not yet
// Its application_name (pg_stat_activity) is kAsyncApplicationName unless the
// conninfo sets one.
class AsyncConnection {
 public:
  virtual ~AsyncConnection() = default;
  // The socket to wait on for readability.
  virtual int fd() const = 0;
  // Sends one of the prepared statements. Unavailable when the connection is lost,
  // FailedPrecondition while a statement is in flight or for one not prepared.
  virtual absl::Status Send(absl::string_view statement, const Params& params) = 0;
  // Reads what arrived: nullopt while the result is incomplete (wait for fd() again),
  // else the statement's rows or its error (as Database::Query's).
  virtual std::optional<absl::StatusOr<Rows>> Receive() = 0;
  // False once the connection is lost (make a new one); a statement's error alone
  // leaves it usable.
  virtual bool connected() const = 0;
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

  // A new connection of its own for an event loop (AsyncConnection), with
  // `statements` prepared on it. Blocks while it connects. PostgreSQL only:
  // Unimplemented for SQLite, which never waits on a network.
  virtual absl::StatusOr<std::unique_ptr<AsyncConnection>> ConnectAsync(
      const std::vector<std::string>& statements) {
    return absl::UnimplementedError("only PostgreSQL connects asynchronously");
  }
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
