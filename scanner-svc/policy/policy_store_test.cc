// PolicyStore against SQLite and a real PostgreSQL, with explicit times.
#include "scanner-svc/policy/policy_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/would_wait.h"
#include "tests/harness/fresh_database.h"

namespace sagator::policy {
namespace {

using State = GreylistDecision::State;

class PolicyStoreTest : public ::testing::TestWithParam<sql::Backend> {
 protected:
  void SetUp() override { store_ = OpenFresh(); }

  // A store on a fresh database (a new SQLite file, a new PostgreSQL database).
  std::unique_ptr<PolicyStore> OpenFresh() {
    std::shared_ptr<sql::Database> db = harness::FreshDatabase(GetParam());
    if (db == nullptr) return nullptr;
    db_ = db;
    auto s = PolicyStore::Open(db);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  GreylistDecision Check(const Triplet& t, absl::Time now) {
    auto d = store_->Greylist(t, params_, now);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : GreylistDecision{};
  }

  std::shared_ptr<sql::Database> db_;
  std::unique_ptr<PolicyStore> store_;
  GreylistParams params_;
  absl::Time t0_ = absl::FromUnixSeconds(1'800'000'000);
  Triplet t_{"192.0.2.0/24", "alice@example.org", "bob@example.net"};
};

TEST_P(PolicyStoreTest, DefersANewTripletAndPassesARetryAfterMin) {
  ASSERT_NE(store_, nullptr);
  GreylistDecision d = Check(t_, t0_);
  EXPECT_EQ(d.state, State::kDeferred);
  EXPECT_EQ(d.wait, absl::Minutes(5));
  d = Check(t_, t0_ + absl::Seconds(100));
  EXPECT_EQ(d.state, State::kDeferred);
  EXPECT_EQ(d.wait, absl::Seconds(200));
  d = Check(t_, t0_ + absl::Seconds(301));
  EXPECT_EQ(d.state, State::kPassedNow);
  EXPECT_EQ(d.delayed, absl::Seconds(301));
  EXPECT_EQ(Check(t_, t0_ + absl::Seconds(302)).state, State::kKnown);
  // Other triplets of the same client still wait.
  EXPECT_EQ(Check({t_.client_network, t_.sender, "carol@example.net"}, t0_ + absl::Seconds(303))
                .state,
            State::kDeferred);
}

TEST_P(PolicyStoreTest, ARetryAfterExpireStartsOver) {
  ASSERT_NE(store_, nullptr);
  Check(t_, t0_);
  GreylistDecision d = Check(t_, t0_ + params_.expire + absl::Seconds(1));
  EXPECT_EQ(d.state, State::kDeferred);
  EXPECT_EQ(d.wait, absl::Minutes(5));
  EXPECT_EQ(Check(t_, t0_ + params_.expire + absl::Seconds(302)).state, State::kPassedNow);
}

TEST_P(PolicyStoreTest, PassedTripletsAreForgottenAfterMaxAgeUnlessZero) {
  ASSERT_NE(store_, nullptr);
  Check(t_, t0_);
  Check(t_, t0_ + absl::Seconds(400));
  absl::Time later = t0_ + params_.max_age + absl::Hours(1);
  EXPECT_EQ(Check(t_, later).state, State::kDeferred);
  // max_age 0: SAGATOR's "whitelisted permanently".
  params_.max_age = absl::ZeroDuration();
  Triplet u{"198.51.100.0/24", "x@example.org", "y@example.net"};
  Check(u, t0_);
  Check(u, t0_ + absl::Seconds(400));
  EXPECT_EQ(Check(u, t0_ + absl::Hours(24 * 3650)).state, State::kKnown);
}

TEST_P(PolicyStoreTest, AutoWhitelistsAClientNetworkAfterNPasses) {
  ASSERT_NE(store_, nullptr);
  params_.auto_whitelist = 3;
  // Recorded (and deferred in memory) before the network's third pass.
  Triplet pending{t_.client_network, "pending@example.org", t_.recipient};
  EXPECT_EQ(Check(pending, t0_ + absl::Seconds(200)).state, State::kDeferred);
  for (int i = 0; i < 3; ++i) {
    Triplet t{t_.client_network, absl::StrCat("s", i, "@example.org"), t_.recipient};
    EXPECT_EQ(Check(t, t0_).state, State::kDeferred);
    EXPECT_EQ(Check(t, t0_ + absl::Seconds(301)).state, State::kPassedNow);
  }
  // The pass that whitelisted the network is in memory, ahead of the deferral.
  auto now = store_->Greylist(pending, params_, t0_ + absl::Seconds(302), Access::kMemoryOnly);
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->state, State::kClientWhitelisted);
  Triplet fresh{t_.client_network, "new@example.org", "new@example.net"};
  EXPECT_EQ(Check(fresh, t0_ + absl::Seconds(400)).state, State::kClientWhitelisted);
  // Its new triplets are not recorded.
  auto records = store_->GreylistRecords("new@example.org", 10);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_TRUE(records->empty());
  // Unseen for max_age, the network is greylisted again (a replica that has nothing
  // in memory asks the database).
  auto replica = PolicyStore::Open(db_);
  ASSERT_TRUE(replica.ok()) << replica.status();
  auto later = (*replica)->Greylist(fresh, params_, t0_ + absl::Seconds(401) + params_.max_age);
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->state, State::kDeferred);
  // Other networks are not.
  EXPECT_EQ(Check({"203.0.113.0/24", "new@example.org", "new@example.net"},
                  t0_ + absl::Seconds(400))
                .state,
            State::kDeferred);
}

TEST_P(PolicyStoreTest, ConcurrentRetriesPassATripletExactlyOnce) {
  ASSERT_NE(store_, nullptr);
  constexpr int kTriplets = 40, kThreads = 4;
  params_.auto_whitelist = 0;  // else the network is whitelisted after 5 passes
  for (int i = 0; i < kTriplets; ++i) {
    Check({t_.client_network, absl::StrCat("c", i, "@example.org"), t_.recipient}, t0_);
  }
  std::atomic<int> passed{0}, errors{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th) {
    threads.emplace_back([&] {
      for (int i = 0; i < kTriplets; ++i) {
        auto d = store_->Greylist(
            {t_.client_network, absl::StrCat("c", i, "@example.org"), t_.recipient}, params_,
            t0_ + absl::Seconds(301));
        if (!d.ok()) {
          ++errors;
        } else if (d->state == State::kPassedNow) {
          ++passed;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(passed.load(), kTriplets);
}

// Never-seen triplets asked for at the same time share insert statements; each
// caller still gets its own answer: new ones deferred and recorded once, a triplet
// that passed (on another replica) known, an auto-whitelisted network's triplet
// whitelisted and not recorded, one new triplet asked for by every thread recorded
// once and deferred for all.
TEST_P(PolicyStoreTest, ConcurrentNewTripletsShareStatementsAndEachGetsItsAnswer) {
  ASSERT_NE(store_, nullptr);
  params_.auto_whitelist = 1;
  const Triplet known{"198.51.100.0/24", "known@example.org", "rcpt@example.net"};
  Check(known, t0_);
  ASSERT_EQ(Check(known, t0_ + absl::Seconds(301)).state, State::kPassedNow);
  const std::string whitelisted_net = known.client_network;  // passed once: whitelisted
  // A replica: nothing in memory, so every answer comes through the database.
  auto replica_or = PolicyStore::Open(db_);
  ASSERT_TRUE(replica_or.ok()) << replica_or.status();
  PolicyStore& replica = **replica_or;
  const absl::Time now = t0_ + absl::Seconds(400);
  const Triplet shared{"203.0.113.0/24", "shared@example.org", "rcpt@example.net"};
  constexpr int kThreads = 12, kRounds = 30;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      auto expect = [&](const Triplet& t, State want) {
        auto d = replica.Greylist(t, params_, now);
        if (!d.ok() || d->state != want ||
            (want == State::kDeferred && d->wait != params_.min)) {
          ++wrong;
          ADD_FAILURE() << t.client_network << " " << t.sender << ": "
                        << (d.ok() ? static_cast<int>(d->state) : -1);
        }
      };
      for (int i = 0; i < kRounds; ++i) {
        const std::string who = absl::StrCat("t", th, "r", i, "@example.org");
        expect({"192.0.2.0/24", who, "rcpt@example.net"}, State::kDeferred);
        expect({whitelisted_net, who, "rcpt@example.net"}, State::kClientWhitelisted);
        if (i == 0) expect(shared, State::kDeferred);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  auto records = replica.GreylistRecords("", 10000);
  ASSERT_TRUE(records.ok()) << records.status();
  int news = 0, shared_records = 0, of_whitelisted = 0;
  for (const GreylistRecord& r : *records) {
    if (r.triplet.client_network == "192.0.2.0/24") {
      ++news;
      EXPECT_EQ(r.first_seen, now);
      EXPECT_FALSE(r.passed_at.has_value());
    }
    if (r.triplet.client_network == shared.client_network) ++shared_records;
    if (r.triplet.client_network == whitelisted_net && r.triplet.sender != known.sender) {
      ++of_whitelisted;
    }
  }
  EXPECT_EQ(news, kThreads * kRounds);
  EXPECT_EQ(shared_records, 1);
  EXPECT_EQ(of_whitelisted, 0);
  // Every new triplet was carried by an insert, the shared one once a thread at
  // most, the whitelisted network's until the replica had the network in memory;
  // with 12 threads asking at once, statements carried several.
  EXPECT_GE(replica.insert_rows(), kThreads * kRounds + 1);
  EXPECT_LE(replica.insert_rows(), 2 * kThreads * kRounds + kThreads);
  EXPECT_LT(replica.insert_statements(), replica.insert_rows());
}

// A statement that fails fails every triplet it carried, and nobody waits for
// ever: each caller gets the error (the gateway then defers).
TEST_P(PolicyStoreTest, AFailedInsertFailsEveryTripletItCarried) {
  ASSERT_NE(store_, nullptr);
  ASSERT_TRUE(db_->Query("DROP TABLE greylist", {}).ok());
  constexpr int kThreads = 8, kRounds = 5;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      for (int i = 0; i < kRounds; ++i) {
        auto d = store_->Greylist(
            {t_.client_network, absl::StrCat("t", th, "r", i, "@example.org"), t_.recipient},
            params_, t0_);
        if (!d.ok()) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), kThreads * kRounds);
}

TEST_P(PolicyStoreTest, ListsMatchAddressesNetworksDomainsAndWhiteWins) {
  ASSERT_NE(store_, nullptr);
  auto add = [&](ListKind k, const std::string& v) {
    ListEntry e;
    e.kind = k;
    e.value = v;
    e.created = t0_;
    absl::Status s = store_->AddListEntry(e);
    EXPECT_TRUE(s.ok()) << s;
  };
  add(ListKind::kBA, "192.0.2.0/24");
  add(ListKind::kBS, "Spammer.Example");
  add(ListKind::kWR, "postmaster@example.net");
  add(ListKind::kBA, "2001:DB8::/48");
  auto find = [&](absl::string_view ip, absl::string_view from, absl::string_view to) {
    auto r = store_->FindListed(ip, from, to, t0_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && *r ? absl::StrCat(ListKindName((**r).kind), " ", (**r).value)
                        : std::string("none");
  };
  EXPECT_EQ(find("192.0.2.77", "a@b.example", "x@example.net"), "BA 192.0.2.0/24");
  EXPECT_EQ(find("192.0.3.1", "joe@mail.spammer.example", "x@example.net"),
            "BS spammer.example");
  EXPECT_EQ(find("2001:db8:0:5::1", "a@b.example", "x@example.net"), "BA 2001:db8::/48");
  // A white recipient wins over a black client.
  EXPECT_EQ(find("192.0.2.77", "a@b.example", "Postmaster@Example.NET"),
            "WR postmaster@example.net");
  EXPECT_EQ(find("198.51.100.1", "a@b.example", "x@example.net"), "none");
}

TEST_P(PolicyStoreTest, ExpiredEntriesNeverMatchAndCleanupRemovesThem) {
  ASSERT_NE(store_, nullptr);
  ListEntry e;
  e.kind = ListKind::kBS;
  e.value = "old@example.org";
  e.created = t0_;
  e.expires = t0_ + absl::Hours(1);
  ASSERT_TRUE(store_->AddListEntry(e).ok());
  auto hit = store_->FindListed("", "old@example.org", "", t0_ + absl::Minutes(59));
  ASSERT_TRUE(hit.ok());
  EXPECT_TRUE(hit->has_value());
  hit = store_->FindListed("", "old@example.org", "", t0_ + absl::Hours(2));
  ASSERT_TRUE(hit.ok());
  EXPECT_FALSE(hit->has_value());
  Check(t_, t0_);  // an unpassed triplet, expired by then
  auto c = store_->Cleanup(params_, t0_ + params_.expire + absl::Hours(1));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->list_entries, 1);
  EXPECT_EQ(c->triplets, 1);
  auto left = store_->ListEntries(std::nullopt);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
}

TEST_P(PolicyStoreTest, AddRenewsRemoveReportsAndRecordsAreSearchable) {
  ASSERT_NE(store_, nullptr);
  ListEntry e;
  e.kind = ListKind::kWS;
  e.value = "@Partner.Example";
  e.created = t0_;
  e.comment = "first";
  ASSERT_TRUE(store_->AddListEntry(e).ok());
  e.comment = "second";
  ASSERT_TRUE(store_->AddListEntry(e).ok());
  auto all = store_->ListEntries(ListKind::kWS);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].value, "partner.example");
  EXPECT_EQ((*all)[0].comment, "second");
  EXPECT_EQ(*store_->RemoveListEntry(ListKind::kWS, "partner.example"), true);
  EXPECT_EQ(*store_->RemoveListEntry(ListKind::kWS, "partner.example"), false);

  Check(t_, t0_);
  Check({"203.0.113.0/24", "100%_real@example.org", "z@example.net"}, t0_);
  auto recs = store_->GreylistRecords("100%_", 10);
  ASSERT_TRUE(recs.ok()) << recs.status();
  ASSERT_EQ(recs->size(), 1u);
  EXPECT_EQ((*recs)[0].triplet.client_network, "203.0.113.0/24");
  EXPECT_FALSE((*recs)[0].passed_at.has_value());
  recs = store_->GreylistRecords("", 10);
  ASSERT_TRUE(recs.ok());
  EXPECT_EQ(recs->size(), 2u);
}

// Passed triplets and whitelisted clients answer from memory: with the greylist
// tables gone, this store still knows them, while a second store on the same
// database (a replica that never saw them) must ask and fails. Once last_seen is an
// hour old the record is refreshed in the database again.
TEST_P(PolicyStoreTest, PassedTripletsAndWhitelistedClientsAnswerFromMemory) {
  ASSERT_NE(store_, nullptr);
  params_.auto_whitelist = 2;
  Check(t_, t0_);
  EXPECT_EQ(Check(t_, t0_ + absl::Seconds(301)).state, State::kPassedNow);
  Triplet other{"198.51.100.0/24", "s@example.org", "r@example.net"};
  for (int i = 0; i < 2; ++i) {
    Triplet t{other.client_network, absl::StrCat("s", i, "@example.org"), other.recipient};
    Check(t, t0_);
    Check(t, t0_ + absl::Seconds(301));
  }
  EXPECT_EQ(Check(other, t0_ + absl::Seconds(302)).state, State::kClientWhitelisted);
  auto replica = PolicyStore::Open(db_);
  ASSERT_TRUE(replica.ok()) << replica.status();

  ASSERT_TRUE(db_->Query("DROP TABLE greylist", {}).ok());
  ASSERT_TRUE(db_->Query("DROP TABLE greylist_clients", {}).ok());
  EXPECT_EQ(Check(t_, t0_ + absl::Seconds(400)).state, State::kKnown);
  EXPECT_EQ(Check(other, t0_ + absl::Seconds(400)).state, State::kClientWhitelisted);
  EXPECT_FALSE((*replica)->Greylist(t_, params_, t0_ + absl::Seconds(400)).ok());
  // An hour after the last refresh the database is asked again.
  EXPECT_FALSE(store_->Greylist(t_, params_, t0_ + absl::Seconds(301 + 3600)).ok());
  EXPECT_FALSE(store_->Greylist(other, params_, t0_ + absl::Seconds(301 + 3600)).ok());
  // A network whitelisted at 2 passes is not whitelisted for a greylist() that wants 3.
  params_.auto_whitelist = 3;
  EXPECT_FALSE(store_->Greylist(other, params_, t0_ + absl::Seconds(400)).ok());
}

// The lists are held in memory: a change through the same store shows at once; one
// made through another store on the database (sglist, another replica) within
// kListRecheck.
TEST_P(PolicyStoreTest, ListChangesElsewhereShowWithinTheRecheckInterval) {
  ASSERT_NE(store_, nullptr);
  auto tool = PolicyStore::Open(db_);
  ASSERT_TRUE(tool.ok()) << tool.status();
  auto listed = [&] {
    auto hit = store_->FindListed("192.0.2.9", "spam@bad.example", "bob@example.net", t0_);
    EXPECT_TRUE(hit.ok()) << hit.status();
    return hit.ok() && hit->has_value() ? std::string(ListKindName((*hit)->kind)) : "";
  };
  EXPECT_EQ(listed(), "");
  ListEntry e;
  e.kind = ListKind::kBS;
  e.value = "bad.example";
  e.created = t0_;
  ASSERT_TRUE(store_->AddListEntry(e).ok());
  EXPECT_EQ(listed(), "BS");

  absl::Time changed = absl::Now();
  e.kind = ListKind::kWR;
  e.value = "bob@example.net";
  ASSERT_TRUE((*tool)->AddListEntry(e).ok());
  std::string seen = listed();
  while (seen == "BS" && absl::Now() < changed + PolicyStore::kListRecheck + absl::Seconds(1)) {
    absl::SleepFor(absl::Milliseconds(50));
    seen = listed();
  }
  EXPECT_EQ(seen, "WR");
  EXPECT_LE(absl::Now() - changed, PolicyStore::kListRecheck + absl::Milliseconds(500));
  ASSERT_TRUE(*(*tool)->RemoveListEntry(ListKind::kWR, "bob@example.net"));
  absl::SleepFor(PolicyStore::kListRecheck + absl::Milliseconds(100));
  EXPECT_EQ(listed(), "BS");
  // Expired entries are in memory too, and never match.
  e.kind = ListKind::kWA;
  e.value = "192.0.2.0/24";
  e.expires = t0_ - absl::Seconds(1);
  ASSERT_TRUE(store_->AddListEntry(e).ok());
  EXPECT_EQ(listed(), "BS");
}

// Access::kMemoryOnly (a caller on an event loop): answers only what memory holds,
// says "would wait" for the rest and then changes nothing in the database.
TEST_P(PolicyStoreTest, RecordsTheTripletsAnEventLoopMissedWithOneStatement) {
  ASSERT_NE(store_, nullptr);
  // A record another replica made, and a client network already auto-whitelisted.
  Triplet known{"192.0.2.0/24", "old@example.org", "bob@example.net"};
  auto other = PolicyStore::Open(db_);
  ASSERT_TRUE(other.ok()) << other.status();
  auto first = (*other)->Greylist(known, params_, t0_);
  ASSERT_TRUE(first.ok() && first->state == State::kDeferred) << first.status();
  ASSERT_TRUE(db_->Query("INSERT INTO greylist_clients (client_net, passes, last_seen)"
                         " VALUES ('198.51.100.0/24', 9, $1)",
                         {absl::ToUnixSeconds(t0_)})
                  .ok());
  const absl::Time now = t0_ + absl::Seconds(10);
  std::vector<Triplet> triplets = {
      t_, {"203.0.113.0/24", "x@example.org", "y@example.net"}, known,
      {"198.51.100.0/24", "big@example.com", "bob@example.net"}};
  std::vector<NewTriplet> misses;
  {
    NewTripletCollector collector;
    for (const Triplet& t : triplets) {
      auto d = store_->Greylist(t, params_, now, Access::kMemoryOnly);
      EXPECT_TRUE(!d.ok() && IsWouldWait(d.status())) << d.status();
    }
    misses = collector.triplets();
  }
  ASSERT_EQ(misses.size(), 4u);
  std::vector<const NewTriplet*> rows;
  for (const NewTriplet& m : misses) rows.push_back(&m);
  const int64_t statements = store_->insert_statements();
  auto returned = db_->Query(PolicyStore::InsertStatement(rows.size()),
                             PolicyStore::InsertParams(rows));
  ASSERT_TRUE(returned.ok()) << returned.status();
  EXPECT_THAT(store_->Recorded(rows, *returned), ::testing::ElementsAre(true, true, false, false));
  EXPECT_EQ(store_->insert_statements(), statements + 1);

  // The recorded ones are deferred from memory for min; the others still need the
  // database, which decides them as before.
  for (int i : {0, 1}) {
    auto d = store_->Greylist(triplets[i], params_, now + absl::Seconds(60), Access::kMemoryOnly);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->state, State::kDeferred);
    EXPECT_EQ(d->wait, absl::Seconds(240));
  }
  for (int i : {2, 3}) {
    auto d = store_->Greylist(triplets[i], params_, now, Access::kMemoryOnly);
    EXPECT_TRUE(!d.ok() && IsWouldWait(d.status())) << d.status();
  }
  EXPECT_EQ(Check(known, now).wait, absl::Seconds(290));
  EXPECT_EQ(Check(triplets[3], now).state, State::kClientWhitelisted);
  EXPECT_EQ(Check(t_, t0_ + absl::Seconds(311)).state, State::kPassedNow);
}

TEST_P(PolicyStoreTest, MemoryOnlyAnswersFromMemoryOrSaysItWouldWait) {
  ASSERT_NE(store_, nullptr);
  auto memory_only = [&](const Triplet& t, absl::Time now) {
    return store_->Greylist(t, params_, now, Access::kMemoryOnly);
  };
  absl::StatusOr<GreylistDecision> d;
  {
    policy::NewTripletCollector misses;
    d = memory_only(t_, t0_);
    // The miss is noted, with what recording it takes.
    ASSERT_EQ(misses.triplets().size(), 1u);
    EXPECT_EQ(misses.triplets()[0].store, store_.get());
    EXPECT_EQ(misses.triplets()[0].triplet.sender, t_.sender);
    EXPECT_EQ(misses.triplets()[0].now, absl::ToUnixSeconds(t0_));
    EXPECT_EQ(misses.triplets()[0].auto_whitelist, params_.auto_whitelist);
  }
  EXPECT_EQ(policy::NewTripletCollector::Current(), nullptr);
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(IsWouldWait(d.status())) << d.status();
  auto records = store_->GreylistRecords("", 10);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_TRUE(records->empty()) << "a memory-only lookup wrote a record";

  Check(t_, t0_);
  // A triplet this store recorded is deferred from memory until min.
  d = memory_only(t_, t0_ + absl::Seconds(100));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->state, State::kDeferred);
  EXPECT_EQ(d->wait, absl::Seconds(200));
  d = memory_only(t_, t0_ + absl::Seconds(300));
  EXPECT_TRUE(!d.ok() && IsWouldWait(d.status())) << "past min: " << d.status();
  EXPECT_EQ(Check(t_, t0_ + absl::Seconds(301)).state, State::kPassedNow);
  d = memory_only(t_, t0_ + absl::Seconds(302));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->state, State::kKnown);
  // An hour after the last refresh: the database again.
  d = memory_only(t_, t0_ + absl::Seconds(301 + 3600));
  EXPECT_TRUE(!d.ok() && IsWouldWait(d.status())) << d.status();

  // Lists: nothing in memory before the first lookup that may wait, and nothing
  // once kListRecheck has passed since the version was read.
  auto listed = [&](Access access) {
    return store_->FindListed("192.0.2.9", "spam@bad.example", "bob@example.net", t0_, access);
  };
  auto hit = listed(Access::kMemoryOnly);
  EXPECT_TRUE(!hit.ok() && IsWouldWait(hit.status())) << hit.status();
  ListEntry e;
  e.kind = ListKind::kBS;
  e.value = "bad.example";
  e.created = t0_;
  ASSERT_TRUE(store_->AddListEntry(e).ok());
  hit = listed(Access::kMemoryOnly);
  EXPECT_TRUE(!hit.ok() && IsWouldWait(hit.status())) << "stale after a change: " << hit.status();
  hit = listed(Access::kMayWait);
  ASSERT_TRUE(hit.ok() && hit->has_value()) << hit.status();
  const absl::Time read = absl::Now();
  hit = listed(Access::kMemoryOnly);
  if (absl::Now() - read < PolicyStore::kListRecheck) {
    ASSERT_TRUE(hit.ok() && hit->has_value()) << hit.status();
    EXPECT_EQ((*hit)->kind, ListKind::kBS);
  }
  absl::SleepFor(PolicyStore::kListRecheck + absl::Milliseconds(50));
  hit = listed(Access::kMemoryOnly);
  EXPECT_TRUE(!hit.ok() && IsWouldWait(hit.status())) << hit.status();
}

INSTANTIATE_TEST_SUITE_P(Backends, PolicyStoreTest,
                         ::testing::Values(sql::Backend::kSqlite, sql::Backend::kPostgresql),
                         [](const auto& info) {
                           return harness::BackendName(info.param);
                         });

TEST(ListValues, AreCheckedAndCanonicalized) {
  EXPECT_EQ(*NormalizeListValue(ListKind::kBA, " 192.0.2.9 "), "192.0.2.9");
  EXPECT_EQ(*NormalizeListValue(ListKind::kBA, "192.0.2.9/24"), "192.0.2.0/24");
  EXPECT_EQ(*NormalizeListValue(ListKind::kWA, "2001:0DB8::1"), "2001:db8::1");
  EXPECT_EQ(*NormalizeListValue(ListKind::kWA, "::ffff:192.0.2.1"), "192.0.2.1");
  EXPECT_FALSE(NormalizeListValue(ListKind::kBA, "192.0.2.0/23").ok());
  EXPECT_FALSE(NormalizeListValue(ListKind::kBA, "mail.example").ok());
  EXPECT_FALSE(NormalizeListValue(ListKind::kBS, "").ok());
  EXPECT_FALSE(NormalizeListValue(ListKind::kBS, "a b").ok());
  EXPECT_EQ(*NormalizeListValue(ListKind::kBR, "User@Example.COM"), "user@example.com");
  EXPECT_EQ(*NormalizeListValue(ListKind::kBS, "<>"), "<>");
  EXPECT_FALSE(ParseListKind("XX").ok());
  EXPECT_EQ(*ParseListKind("wr"), ListKind::kWR);
}

TEST(ClientNetworks, GroupIPv4AndIPv6ByPrefix) {
  EXPECT_EQ(ClientNetwork("192.0.2.77", 24, 64), "192.0.2.0/24");
  EXPECT_EQ(ClientNetwork("192.0.2.77", 32, 64), "192.0.2.77");
  EXPECT_EQ(ClientNetwork("2001:db8:1:2:3:4:5:6", 24, 64), "2001:db8:1:2::/64");
  EXPECT_EQ(ClientNetwork("IPv6:2001:db8::1", 24, 48), "2001:db8::/48");
  EXPECT_EQ(ClientNetwork("::ffff:198.51.100.3", 24, 64), "198.51.100.0/24");
  EXPECT_EQ(ClientNetwork("unknown", 24, 64), "unknown");
}

}  // namespace
}  // namespace sagator::policy
