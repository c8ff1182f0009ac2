// A new, empty SQL database on either back end, for tests that run once per back end
// (TEST_P over sql::Backend): a new SQLite file under TEST_TMPDIR, or a new database
// in the test binary's shared PostgreSQL cluster (SharedPostgresForTests).
//
//   std::shared_ptr<sql::Database> db = harness::FreshDatabase(GetParam());
//   ASSERT_NE(db, nullptr);
//
// Failures are recorded as test failures and give nullptr. Tests using PostgreSQL
// need tags = ["no-sandbox"] (see postgres.h). Not thread-safe.
#ifndef SAGATOR_TESTS_HARNESS_FRESH_DATABASE_H_
#define SAGATOR_TESTS_HARNESS_FRESH_DATABASE_H_

#include <memory>
#include <string>

#include "common/sql.h"

namespace sagator::harness {

// `durable` opens SQLite with full sync (as quarantine-svc does); `pool_size` is the
// PostgreSQL connection pool.
std::shared_ptr<sql::Database> FreshDatabase(sql::Backend backend, bool durable = false,
                                             int pool_size = 8);

// "Sqlite" / "Postgresql", for INSTANTIATE_TEST_SUITE_P names.
std::string BackendName(sql::Backend backend);

}  // namespace sagator::harness

#endif  // SAGATOR_TESTS_HARNESS_FRESH_DATABASE_H_
