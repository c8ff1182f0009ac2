// A throw-away PostgreSQL 15 cluster (Debian's postgresql package) for tests that
// cross into a real database: initdb into a fresh folder, pg_ctl start on a free
// loopback port, one empty database, and `pg_ctl stop -m immediate` plus removal of
// the folder when the instance goes away.
//
//   absl::StatusOr<std::unique_ptr<PostgresInstance>> pg = PostgresInstance::Start();
//   ASSERT_TRUE(pg.ok()) << pg.status();
//   pqxx::connection c((*pg)->conninfo());   // host=127.0.0.1 port=... dbname=...
//
// The server runs as the `postgres` user (through runuser when the test runs as
// root; PostgreSQL refuses to run as root), so its folder must be one that user can
// enter: a folder under TEST_TMPDIR when it can, else a fresh one under /tmp (Bazel's
// TEST_TMPDIR usually sits below /root, which postgres cannot enter). Authentication
// is `trust` for every local and loopback connection, so any user name works; use
// `postgres` (the superuser). The cluster trades durability for speed (fsync off), as
// a test database can.
//
// Several instances can run at once (each has its own folder and port). Start() takes
// about 1 s (initdb dominates), so a test binary may share one instance between its
// tests; one still alive at exit() (a leaked static) is stopped and removed by an
// atexit handler. Only a process killed by a signal leaves its postmaster behind.
// SAGATOR_KEEP_POSTGRES=1 keeps the folder, for a look after a failure. Tests using it need tags =
// ["no-sandbox"]: the server runs as another user and lives under /tmp.
//
// Not thread-safe: one owner per object. conninfo() and port() may be read from any
// thread while the instance runs.
#ifndef SAGATOR_TESTS_HARNESS_POSTGRES_H_
#define SAGATOR_TESTS_HARNESS_POSTGRES_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sagator::harness {

class PostgresInstance {
 public:
  struct Options {
    // The database Start() creates (empty, owned by postgres).
    std::string database = "sagator_test";
    // TCP port on 127.0.0.1; 0 picks a free one (and retries with another when it
    // was taken in the meantime).
    int port = 0;
    // Further server settings, "name=value" each, passed as `-c name=value`.
    std::vector<std::string> settings;
    // How long pg_ctl waits for the server to accept connections.
    absl::Duration start_timeout = absl::Seconds(60);
  };

  // Creates, starts and fills (one database) a cluster; fails with the tail of the
  // server's log (pg.log) when any step does.
  static absl::StatusOr<std::unique_ptr<PostgresInstance>> Start(Options options);
  static absl::StatusOr<std::unique_ptr<PostgresInstance>> Start() { return Start(Options()); }

  // Stop()s the server and removes its folder.
  ~PostgresInstance();
  PostgresInstance(const PostgresInstance&) = delete;
  PostgresInstance& operator=(const PostgresInstance&) = delete;

  // `pg_ctl stop -m immediate`; an error (with the log's tail) when the server had
  // already gone or would not stop. Idempotent.
  absl::Status Stop();

  // libpq connection string for the database Start() created.
  std::string conninfo() const { return ConnInfoFor(database_); }
  // The same for another database of the cluster (e.g. "postgres").
  std::string ConnInfoFor(const std::string& database) const;
  int port() const { return port_; }
  const std::string& database() const { return database_; }
  // The folder holding data/ (the cluster), sock/ (the unix socket) and pg.log.
  const std::string& dir() const { return dir_; }
  // The unix socket folder (for host=<this> connections).
  const std::string& socket_dir() const { return socket_dir_; }
  // The last lines of pg.log, for failure messages.
  std::string LogTail() const;

 private:
  PostgresInstance() = default;

  // Runs a PostgreSQL program from /usr/lib/postgresql/15/bin as the postgres user.
  std::vector<std::string> AsPostgres(const std::string& program,
                                      std::vector<std::string> args) const;

  std::string dir_;
  std::string socket_dir_;
  // A /tmp folder made for a socket path that did not fit under dir_.
  std::string short_socket_dir_;
  std::string database_;
  int port_ = 0;
  bool running_ = false;
};

// One instance for the whole test binary, started on first use (and stopped at
// exit by the handler above); nullptr, after a recorded test failure, when it
// cannot start. For tests that each want a fresh database rather than a cluster.
PostgresInstance* SharedPostgresForTests();

}  // namespace sagator::harness

#endif  // SAGATOR_TESTS_HARNESS_POSTGRES_H_
