#include "scanner-svc/local_policy_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace sagator {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<LocalPolicyClient> Client(const std::string& extra_chain,
                                          std::vector<std::string> build = {"policy"}) {
  std::string db = absl::StrCat(std::getenv("TEST_TMPDIR"), "/local.db");
  auto cfg = LoadConfigString(
      absl::StrCat("databases: {default: {sqlite: {path: '", db, "'}}}\n"
                   "chains:\n"
                   "  policy: [sql_list, {greylist: {min: 0s}}]\n",
                   extra_chain),
      "t.yaml", "/");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  if (!cfg.ok()) return nullptr;
  auto chains = ChainSet::Create(*cfg, build);
  EXPECT_TRUE(chains.ok()) << chains.status();
  if (!chains.ok()) return nullptr;
  return std::make_unique<LocalPolicyClient>(*std::move(chains), absl::Seconds(10));
}

scanner::v1::PolicyRequest Request(const std::string& chain) {
  scanner::v1::PolicyRequest r;
  r.set_chain(chain);
  r.set_protocol_state("RCPT");
  r.mutable_envelope()->set_sender("a@example.org");
  r.mutable_envelope()->mutable_client()->set_address("192.0.2.7");
  r.set_recipient("b@example.net");
  return r;
}

TEST(LocalPolicyClient, DecidesLikeScannerSvcWithoutAHop) {
  auto client = Client("");
  ASSERT_NE(client, nullptr);
  auto r = client->CheckPolicy(Request("policy"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), common::v1::TEMPFAIL);
  EXPECT_THAT(r->reply_text(), HasSubstr("Greylisted"));
  r = client->CheckPolicy(Request("policy"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome(), common::v1::PASS);
  ASSERT_EQ(r->header_edits_size(), 1);
  EXPECT_EQ(r->header_edits(0).name(), "X-Greylist");
}

TEST(LocalPolicyClient, BuildsOnlyThePolicyChainAndRefusesScansAndOtherChains) {
  // A content chain that could not load here is not built at all.
  auto client = Client("  av: [{libclam: {database: [/nonexistent]}}]\n");
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->CheckPolicy(Request("av")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client->Scan({}, "x").status().code(), absl::StatusCode::kUnimplemented);
  client->CancelAll();
  EXPECT_EQ(client->CheckPolicy(Request("policy")).status().code(),
            absl::StatusCode::kCancelled);
}

// TryCheckPolicyNow (smtpd_policy's I/O thread): an answer only when the chain's
// records are in memory and every scanner of the chain keeps memory_only's promise.
TEST(LocalPolicyClient, AnswersAtOnceOnlyWhatMemoryHolds) {
  auto client = Client("  mixed: [{max_file_size: {bytes: 1000}}, sql_list]\n", {"policy", "mixed"});
  ASSERT_NE(client, nullptr);
  scanner::v1::PolicyRequest req = Request("policy");
  req.mutable_envelope()->set_sender("at-once@example.org");
  EXPECT_FALSE(client->TryCheckPolicyNow(req).has_value()) << "a new triplet needs the database";
  EXPECT_EQ(client->CheckPolicy(req)->outcome(), common::v1::TEMPFAIL);
  EXPECT_FALSE(client->TryCheckPolicyNow(req).has_value()) << "deferred triplets are not in memory";
  EXPECT_EQ(client->CheckPolicy(req)->outcome(), common::v1::PASS);
  std::optional<absl::StatusOr<scanner::v1::PolicyResponse>> now = client->TryCheckPolicyNow(req);
  ASSERT_TRUE(now.has_value());
  ASSERT_TRUE(now->ok()) << now->status();
  EXPECT_EQ((*now)->outcome(), common::v1::PASS);
  EXPECT_EQ((*now)->header_edits_size(), 0);

  // max_file_size() does not promise to answer from memory: that chain always waits.
  scanner::v1::PolicyRequest mixed = req;
  mixed.set_chain("mixed");
  ASSERT_TRUE(client->CheckPolicy(mixed).ok());
  EXPECT_FALSE(client->TryCheckPolicyNow(mixed).has_value());
  // An unknown chain is an answer (NotFound), not a wait.
  now = client->TryCheckPolicyNow(Request("nonexistent"));
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ(now->status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sagator
