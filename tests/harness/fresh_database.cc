#include "tests/harness/fresh_database.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "tests/harness/postgres.h"

namespace sagator::harness {

std::shared_ptr<sql::Database> FreshDatabase(sql::Backend backend, bool durable, int pool_size) {
  static int counter = 0;
  std::string name = absl::StrCat("fresh", getpid(), "_", ++counter);
  absl::StatusOr<std::shared_ptr<sql::Database>> db;
  if (backend == sql::Backend::kSqlite) {
    const char* tmp = std::getenv("TEST_TMPDIR");
    db = sql::OpenSqlite(absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name, ".db"),
                         absl::Seconds(5), durable);
  } else {
    PostgresInstance* pg = SharedPostgresForTests();
    if (pg == nullptr) return nullptr;
    auto admin = sql::OpenPostgresql(pg->ConnInfoFor("postgres"), 1);
    EXPECT_TRUE(admin.ok()) << admin.status();
    if (!admin.ok()) return nullptr;
    auto created = (*admin)->Query(absl::StrCat("CREATE DATABASE ", name), {});
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return nullptr;
    db = sql::OpenPostgresql(pg->ConnInfoFor(name), pool_size);
  }
  EXPECT_TRUE(db.ok()) << db.status();
  return db.ok() ? *db : nullptr;
}

std::string BackendName(sql::Backend backend) {
  return backend == sql::Backend::kSqlite ? "Sqlite" : "Postgresql";
}

}  // namespace sagator::harness
