// PolicyStore: the state of the SMTP-stage policy scanners, kept in SQL so every
// scanner-svc replica shares it: greylisting triplets, the clients greylisting
// auto-whitelisted, and SAGATOR's black and white lists (BA, BS, BR, WA, WS, WR).
//
//   auto store = PolicyStore::Open(db);          // migrates the schema
//   auto d = (*store)->Greylist({net, sender, rcpt}, params, absl::Now());
//   auto hit = (*store)->FindListed(client, sender, rcpt, absl::Now());
//
// Concurrent replicas stay correct because every change is one statement that
// checks the state it changes (a triplet passes exactly once, an insert that lost
// a race re-reads). Times are stored as Unix seconds.
//
// Two caches spare the database the common questions:
// - Triplets that passed and auto-whitelisted client networks are remembered in
//   memory (up to kMaxCachedTriplets). Such a record only changes when it is
//   removed for being unseen for max_age, so while the last_seen this replica knows
//   is under an hour old (older ones are refreshed in the database, as before), the
//   answer from memory is the database's answer.
// - The lists table (up to kMaxCachedListEntries entries; a larger one is queried
//   per decision) is held in memory. A change made through this store is seen at
//   once; one made elsewhere (sglist, another replica's add_listed) bumps a version
//   row that is checked at most every kListRecheck, so it takes effect on every
//   replica within that time.
//
// Never-seen triplets (most of what reaches the database: first attempts) are
// recorded together (group commit): while kMaxInsertStatements such statements
// run, the triplets that arrive meanwhile wait and go in the next one, up to
// kMaxInsertBatch rows. Under load that spares the database a statement and a
// commit for most triplets (policy_bench at 8 connections, in-process on
// PostgreSQL: 1.2-1.27 triplets a statement); alone, a triplet goes at once.
//
// A triplet this store recorded as never seen is remembered too (up to
// kMaxCachedTriplets) until `min` has passed: a retry before then is deferred from
// memory. (Only another replica's auto-whitelisting of the client network within
// that window is missed: such a retry is deferred once more than needed. This
// store's own is remembered at the pass that makes it.)
//
// Greylist and FindListed can be asked to answer from memory only
// (Access::kMemoryOnly): for a caller on an event loop's thread, which must not
// wait on the database. When memory cannot answer (a new triplet, lists due for
// their recheck or being reloaded) they return WouldWaitError (common/would_wait.h)
// and change nothing; the caller asks again with kMayWait where waiting is fine.
//
// An event loop's thread can record never-seen triplets itself, on a connection of
// its own (sql::AsyncConnection), instead of handing each to a thread that may wait:
// a memory-only Greylist that misses a triplet notes it in the thread's
// NewTripletCollector; the caller records it with InsertStatement / InsertParams and
// hands the rows to Recorded, after which memory answers "deferred" for it.
//
// Thread-safe.
#ifndef SAGATOR_SCANNER_SVC_POLICY_POLICY_STORE_H_
#define SAGATOR_SCANNER_SVC_POLICY_POLICY_STORE_H_

#include <array>
#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/sql.h"

namespace sagator::policy {

// SAGATOR's list flags: Black/White for the client Address, the Sender, the
// Recipient.
enum class ListKind { kBA, kBS, kBR, kWA, kWS, kWR };

absl::StatusOr<ListKind> ParseListKind(absl::string_view name);
const char* ListKindName(ListKind kind);
inline bool IsWhite(ListKind k) {
  return k == ListKind::kWA || k == ListKind::kWS || k == ListKind::kWR;
}

// One list entry. `value` is an IP address or a network ("192.0.2.0/24") for BA/WA,
// and an address ("user@example.com"), a domain ("example.com", which covers its
// subdomains) or "<>" (the null sender) for the others.
struct ListEntry {
  ListKind kind = ListKind::kBA;
  std::string value;
  absl::Time created = absl::UnixEpoch();
  // Infinite: never expires.
  absl::Time expires = absl::InfiniteFuture();
  std::string comment;
};

// Checks and canonicalizes a list value for its kind (lower case, canonical IPv6,
// networks only at /8, /16, /24 (IPv4) or /32, /48, /64 (IPv6)).
absl::StatusOr<std::string> NormalizeListValue(ListKind kind, absl::string_view value);

// The greylisting key of a client: its network at the given prefix lengths
// ("192.0.2.0/24", "2001:db8:1:2::/64"); an unparsable address is used as it is.
std::string ClientNetwork(absl::string_view address, int ipv4_prefix, int ipv6_prefix);

struct Triplet {
  std::string client_network;
  std::string sender;
  std::string recipient;
};

struct GreylistParams {
  absl::Duration min = absl::Minutes(5);
  absl::Duration expire = absl::Hours(48);
  // Passed triplets and whitelisted clients unseen this long are forgotten;
  // zero keeps them forever.
  absl::Duration max_age = absl::Hours(24 * 35);
  // Passes after which a client network is no longer greylisted; 0: never.
  int auto_whitelist = 5;
};

struct GreylistDecision {
  enum class State {
    // First attempt, or a retry before `min`: defer.
    kDeferred,
    // This retry made the triplet pass (exactly one caller sees this).
    kPassedNow,
    // The triplet passed before.
    kKnown,
    // The client network is auto-whitelisted.
    kClientWhitelisted,
  };
  State state = State::kDeferred;
  // kDeferred: how long until a retry passes.
  absl::Duration wait;
  // kPassedNow: how long the mail was delayed.
  absl::Duration delayed;
};

// A greylisting record, for the command-line tool.
struct GreylistRecord {
  Triplet triplet;
  absl::Time first_seen;
  absl::Time last_seen;
  std::optional<absl::Time> passed_at;
};

struct CleanupCounts {
  int64_t triplets = 0;
  int64_t clients = 0;
  int64_t list_entries = 0;
};

// Whether a lookup may query the database (see the file comment).
enum class Access { kMayWait, kMemoryOnly };

class PolicyStore;

// A triplet a memory-only Greylist found nowhere in memory, with what recording it
// takes.
struct NewTriplet {
  PolicyStore* store = nullptr;
  Triplet triplet;
  int64_t now = 0;  // Unix seconds
  int64_t auto_whitelist = 0;
  int64_t max_age = 0;  // seconds
};

// While one lives, the memory-only Greylist calls on its thread note the triplets
// they miss in it. At most one per thread at a time.
//
//   policy::NewTripletCollector misses;
//   ... run the chain memory-only ...
//   for (const policy::NewTriplet& t : misses.triplets()) ...
class NewTripletCollector {
 public:
  NewTripletCollector();
  ~NewTripletCollector();
  NewTripletCollector(const NewTripletCollector&) = delete;
  NewTripletCollector& operator=(const NewTripletCollector&) = delete;

  std::vector<NewTriplet>& triplets() { return triplets_; }
  // The collector of this thread, or nullptr.
  static NewTripletCollector* Current();

 private:
  std::vector<NewTriplet> triplets_;
};

class PolicyStore {
 public:
  static constexpr size_t kMaxCachedTriplets = 200000;
  static constexpr size_t kMaxCachedListEntries = 100000;
  static constexpr absl::Duration kListRecheck = absl::Seconds(1);
  static constexpr int kMaxInsertStatements = 1;
  static constexpr size_t kMaxInsertBatch = 32;

  // Brings the schema up to date (component "policy" in schema_migrations).
  static absl::StatusOr<std::unique_ptr<PolicyStore>> Open(std::shared_ptr<sql::Database> db);

  absl::StatusOr<GreylistDecision> Greylist(const Triplet& triplet,
                                            const GreylistParams& params, absl::Time now,
                                            Access access = Access::kMayWait);

  // The entry that decides for this client address, sender and recipient (any may
  // be empty: not checked): a white entry wins over a black one; nullopt when none
  // matches. Expired entries never match.
  absl::StatusOr<std::optional<ListEntry>> FindListed(absl::string_view client_address,
                                                      absl::string_view sender,
                                                      absl::string_view recipient,
                                                      absl::Time now,
                                                      Access access = Access::kMayWait);

  // Adds the entry, or renews it (new expiry and comment) when it exists.
  absl::Status AddListEntry(const ListEntry& entry);
  // False when there was no such entry.
  absl::StatusOr<bool> RemoveListEntry(ListKind kind, absl::string_view value);
  // Entries (all kinds when `kind` is nullopt), expired ones included, by kind
  // and value.
  absl::StatusOr<std::vector<ListEntry>> ListEntries(std::optional<ListKind> kind);

  // Greylisting records whose client network, sender or recipient contains
  // `filter` (all when empty), newest first, at most `limit`.
  absl::StatusOr<std::vector<GreylistRecord>> GreylistRecords(absl::string_view filter,
                                                              int limit);
  // Removes records greylisting no longer needs and expired list entries.
  absl::StatusOr<CleanupCounts> Cleanup(const GreylistParams& params, absl::Time now);

  sql::Database& database() { return *db_; }
  const std::shared_ptr<sql::Database>& shared_database() const { return db_; }

  // The statement that records `rows` never-seen triplets at once (each unless it
  // has a record or its client network is auto-whitelisted), returning those it
  // recorded (1 to kMaxInsertBatch rows); and its parameters for `triplets` (each
  // once).
  static const std::string& InsertStatement(size_t rows);
  static sql::Params InsertParams(const std::vector<const NewTriplet*>& triplets);
  // Takes the result of that statement: remembers the triplets it recorded as
  // deferred and counts the statement. For each triplet, whether it was recorded.
  std::vector<bool> Recorded(const std::vector<const NewTriplet*>& triplets,
                             const sql::Rows& returned);

  // Statements sent so far to record never-seen triplets, and the triplets (rows)
  // they carried, recorded or not (up to kMaxInsertBatch a statement).
  int64_t insert_statements() const { return insert_statements_.load(); }
  int64_t insert_rows() const { return insert_rows_.load(); }

 private:
  explicit PolicyStore(std::shared_ptr<sql::Database> db) : db_(std::move(db)) {}

  // A never-seen triplet waiting to be recorded (RecordIfNew).
  struct PendingInsert {
    NewTriplet triplet;
    absl::StatusOr<bool> inserted = false;  // set by the statement that carried it
    bool done = false;                      // under insert_mu_
  };
  // Records `t` as first seen `now` unless it has a record (in any state) or its
  // client network is auto-whitelisted; true when it recorded it (the caller is
  // then deferred for `min`). Batched with the calls running at the same time.
  absl::StatusOr<bool> RecordIfNew(const Triplet& t, const GreylistParams& p, int64_t now);
  // One statement for `batch` (each triplet once); sets each one's `inserted`.
  void InsertBatch(const std::vector<PendingInsert*>& batch);

  // Remembers a passed triplet (key TripletKey) or a whitelisted client network
  // last seen at `last_seen` (Unix seconds).
  void RememberPassed(const std::string& key, int64_t last_seen);
  // Remembers a triplet this store recorded as first seen at `first_seen`.
  void RememberDeferred(const std::string& key, int64_t first_seen);
  void RememberClient(const std::string& client_net, int64_t passes, int64_t last_seen);
  // Marks the in-memory lists stale and bumps the version other replicas check.
  absl::Status ListsChanged();
  // Brings the lists held in memory up to date (reloads them when this store
  // changed them, or when the version row moved; it is read at most every
  // kListRecheck of wall time); false when the table is too large to hold (then
  // FindListed queries).
  absl::StatusOr<bool> FreshLists() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lists_mu_);
  // True when the lists in memory may answer without a database query.
  bool ListsFreshInMemory(absl::Time wall) const ABSL_SHARED_LOCKS_REQUIRED(lists_mu_);
  // The entry that decides among the lists in memory (see FindListed), from the
  // lookup keys of the client address, the sender and the recipient.
  std::optional<ListEntry> FindInMemory(const std::array<std::string, 4>& address,
                                        const std::array<std::string, 4>& sender,
                                        const std::array<std::string, 4>& recipient,
                                        absl::Time now) const
      ABSL_SHARED_LOCKS_REQUIRED(lists_mu_);

  std::shared_ptr<sql::Database> db_;

  absl::Mutex greylist_mu_;
  // Passed triplets -> last_seen (Unix seconds).
  absl::flat_hash_map<std::string, int64_t> passed_ ABSL_GUARDED_BY(greylist_mu_);
  // Whitelisted client networks: their passes and last_seen as last read.
  struct ClientRecord {
    int64_t passes = 0;
    int64_t last_seen = 0;
  };
  absl::flat_hash_map<std::string, ClientRecord> whitelisted_ ABSL_GUARDED_BY(greylist_mu_);
  // Triplets this store recorded as never seen -> first_seen (Unix seconds).
  absl::flat_hash_map<std::string, int64_t> deferred_ ABSL_GUARDED_BY(greylist_mu_);

  absl::Mutex insert_mu_;
  std::deque<PendingInsert*> inserts_waiting_ ABSL_GUARDED_BY(insert_mu_);
  int inserts_running_ ABSL_GUARDED_BY(insert_mu_) = 0;
  std::atomic<int64_t> insert_statements_{0};
  std::atomic<int64_t> insert_rows_{0};

  absl::Mutex lists_mu_;
  bool lists_loaded_ ABSL_GUARDED_BY(lists_mu_) = false;
  bool lists_too_large_ ABSL_GUARDED_BY(lists_mu_) = false;
  bool lists_stale_ ABSL_GUARDED_BY(lists_mu_) = true;
  int64_t lists_version_ ABSL_GUARDED_BY(lists_mu_) = -1;
  absl::Time lists_checked_ ABSL_GUARDED_BY(lists_mu_) = absl::InfinitePast();
  // Entries by value (any kind).
  absl::flat_hash_map<std::string, std::vector<ListEntry>> lists_ ABSL_GUARDED_BY(lists_mu_);
};

}  // namespace sagator::policy

#endif  // SAGATOR_SCANNER_SVC_POLICY_POLICY_STORE_H_
