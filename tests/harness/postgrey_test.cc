#include "tests/harness/postgrey.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/harness/policy_client.h"
#include "tests/harness/subprocess.h"

namespace sagator::harness {
namespace {

std::unique_ptr<PostgreyDaemon> StartPostgrey(int delay_seconds) {
  PostgreyDaemon::Options o;
  o.delay_seconds = delay_seconds;
  absl::StatusOr<std::unique_ptr<PostgreyDaemon>> pg =
      PostgreyDaemon::Start(testing::MakeTempDir("postgrey."), o);
  EXPECT_TRUE(pg.ok()) << pg.status();
  return pg.ok() ? std::move(*pg) : nullptr;
}

TEST(PostgreyDaemon, GreylistsANewTripletAndPassesItsRetryAfterTheDelay) {
  std::unique_ptr<PostgreyDaemon> pg = StartPostgrey(1);
  ASSERT_NE(pg, nullptr);
  PolicyClient client("127.0.0.1", pg->port());
  ASSERT_TRUE(client.ok());
  PolicyRequest r;
  r.client_address = "198.51.100.7";
  r.sender = "alice@example.net";
  r.recipient = "bob@example.org";
  r.instance = "a.1";
  std::string first = client.Ask(r);
  EXPECT_EQ(ActionWord(first), "DEFER_IF_PERMIT") << client.last_reply();
  EXPECT_TRUE(absl::EndsWith(client.last_reply(), "\n\n"));

  absl::SleepFor(absl::Milliseconds(1100));
  r.instance = "a.2";
  std::string retry = client.Ask(r);  // the same connection serves many requests
  EXPECT_EQ(ActionWord(retry), "PREPEND") << retry;
  EXPECT_TRUE(absl::StrContains(retry, "X-Greylist: delayed")) << retry;
  r.instance = "a.3";
  EXPECT_EQ(client.Ask(r), "DUNNO");

  // Another recipient is another triplet.
  r.recipient = "carol@example.org";
  EXPECT_EQ(ActionWord(client.Ask(r)), "DEFER_IF_PERMIT");
  EXPECT_TRUE(pg->Stop().ok());
}

TEST(PostgreyDaemon, StopsCleanlyAndRefusesConnectionsAfterwards) {
  std::unique_ptr<PostgreyDaemon> pg = StartPostgrey(300);
  ASSERT_NE(pg, nullptr);
  int port = pg->port();
  EXPECT_TRUE(pg->Stop().ok());
  EXPECT_TRUE(pg->Stop().ok());
  PolicyClient client("127.0.0.1", port);
  EXPECT_FALSE(client.ok());
}

TEST(PostgreyDaemon, StartFailsWithTheLogWhenThePortIsTaken) {
  std::unique_ptr<PostgreyDaemon> first = StartPostgrey(300);
  ASSERT_NE(first, nullptr);
  PostgreyDaemon::Options o;
  o.port = first->port();
  o.start_timeout = absl::Seconds(10);
  absl::StatusOr<std::unique_ptr<PostgreyDaemon>> second =
      PostgreyDaemon::Start(testing::MakeTempDir("postgrey."), o);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::StrContains(second.status().message(), "in use")) << second.status();
}

}  // namespace
}  // namespace sagator::harness
