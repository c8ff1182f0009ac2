#include "tests/harness/postgres.h"

#include <sys/stat.h>

#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "gtest/gtest.h"
#include "tests/harness/subprocess.h"

namespace sagator::harness {
namespace {

// `SELECT 1` through libpqxx 6.4 (it has no query_value: read the one field).
int SelectOne(const std::string& conninfo) {
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  pqxx::result r = tx.exec("SELECT 1");
  tx.commit();
  return r.at(0).at(0).as<int>();
}

TEST(PostgresInstance, AnswersQueriesOnItsDatabase) {
  absl::StatusOr<std::unique_ptr<PostgresInstance>> pg = PostgresInstance::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  EXPECT_GT((*pg)->port(), 0);
  EXPECT_NE((*pg)->conninfo().find("dbname=sagator_test"), std::string::npos);
  EXPECT_EQ(SelectOne((*pg)->conninfo()), 1);

  pqxx::connection c((*pg)->conninfo());
  pqxx::work tx(c);
  EXPECT_EQ(tx.exec("SELECT current_database()").at(0).at(0).as<std::string>(), "sagator_test");
  tx.exec("CREATE TABLE t (k text PRIMARY KEY, v int)");
  tx.exec("INSERT INTO t VALUES ('a', 7)");
  EXPECT_EQ(tx.exec("SELECT v FROM t WHERE k = 'a'").at(0).at(0).as<int>(), 7);
  tx.commit();
}

TEST(PostgresInstance, TwoInstancesRunAtOnce) {
  PostgresInstance::Options a_options;
  a_options.database = "first";
  absl::StatusOr<std::unique_ptr<PostgresInstance>> a = PostgresInstance::Start(a_options);
  ASSERT_TRUE(a.ok()) << a.status();
  PostgresInstance::Options b_options;
  b_options.database = "second";
  absl::StatusOr<std::unique_ptr<PostgresInstance>> b = PostgresInstance::Start(b_options);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE((*a)->port(), (*b)->port());
  EXPECT_NE((*a)->dir(), (*b)->dir());

  // A table in one cluster is not in the other.
  {
    pqxx::connection c((*a)->conninfo());
    pqxx::work tx(c);
    tx.exec("CREATE TABLE only_in_a (x int)");
    tx.commit();
  }
  pqxx::connection c((*b)->conninfo());
  pqxx::work tx(c);
  EXPECT_EQ(
      tx.exec("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").at(0).at(0).as<int>(),
      0);
  tx.commit();
  EXPECT_EQ(SelectOne((*a)->conninfo()), 1);
  EXPECT_EQ(SelectOne((*b)->conninfo()), 1);
}

TEST(PostgresInstance, StopEndsTheServerAndTheDestructorRemovesItsFolder) {
  std::string dir;
  std::string conninfo;
  {
    absl::StatusOr<std::unique_ptr<PostgresInstance>> pg = PostgresInstance::Start();
    ASSERT_TRUE(pg.ok()) << pg.status();
    dir = (*pg)->dir();
    conninfo = (*pg)->conninfo();
    EXPECT_TRUE((*pg)->Stop().ok());
    EXPECT_TRUE((*pg)->Stop().ok());  // idempotent
    EXPECT_THROW(pqxx::connection c(conninfo), pqxx::broken_connection);
  }
  struct stat st;
  EXPECT_NE(stat(dir.c_str(), &st), 0) << dir << " is still there";
}

TEST(PostgresInstance, OneLeftAliveAtExitIsStoppedAndRemoved) {
  const std::string record = testing::MakeTempDir("leak.") + "/dir";
  EXPECT_EXIT(
      {
        auto pg = PostgresInstance::Start();
        if (!pg.ok()) exit(2);
        testing::WriteFile(record, (*pg)->dir());
        pg->release();  // leaked, as a static shared by a whole test binary would be
        exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  const std::string dir = testing::ReadFile(record);
  ASSERT_FALSE(dir.empty());
  struct stat st;
  EXPECT_NE(stat(dir.c_str(), &st), 0) << dir << " is still there";
}

TEST(PostgresInstance, StartErrorsCarryTheServerLog) {
  PostgresInstance::Options options;
  options.settings = {"no_such_setting_at_all=1"};
  absl::StatusOr<std::unique_ptr<PostgresInstance>> pg = PostgresInstance::Start(options);
  ASSERT_FALSE(pg.ok());
  EXPECT_NE(pg.status().message().find("no_such_setting_at_all"), absl::string_view::npos)
      << pg.status();
}

}  // namespace
}  // namespace sagator::harness
