#include "scanner-svc/policy/policy_store.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/would_wait.h"

namespace sagator::policy {
namespace {

// Schema version i + 1 is kSchema[i]; never edit a step that shipped, add one.
const std::vector<std::string>& Schema() {
  static const auto* steps = new std::vector<std::string>{
      // Greylisting triplets. passed_at is NULL until a retry after `min` passed.
      "CREATE TABLE greylist ("
      " client_net TEXT NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT NULL,"
      " first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL, passed_at BIGINT,"
      " PRIMARY KEY (client_net, sender, recipient))",
      "CREATE INDEX greylist_last_seen ON greylist (last_seen)",
      // Client networks and how many triplets they passed (auto-whitelisting).
      "CREATE TABLE greylist_clients ("
      " client_net TEXT PRIMARY KEY, passes BIGINT NOT NULL, last_seen BIGINT NOT NULL)",
      // SAGATOR's black and white lists; expires NULL means never.
      "CREATE TABLE lists ("
      " kind TEXT NOT NULL, value TEXT NOT NULL, created BIGINT NOT NULL, expires BIGINT,"
      " comment TEXT NOT NULL DEFAULT '', PRIMARY KEY (kind, value))",
      "CREATE INDEX lists_value ON lists (value)",
      // Bumped after every change to lists, so replicas holding the lists in memory
      // notice changes made elsewhere.
      "CREATE TABLE lists_version (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
      "INSERT INTO lists_version (id, version) VALUES (1, 0)",
  };
  return *steps;
}

int64_t Secs(absl::Time t) { return absl::ToUnixSeconds(t); }
absl::Time FromSecs(int64_t s) { return absl::FromUnixSeconds(s); }

struct ParsedIp {
  int family = 0;  // AF_INET or AF_INET6, 0 when not an address
  unsigned char bytes[16] = {};
};

ParsedIp ParseIp(absl::string_view text) {
  ParsedIp ip;
  std::string s(text);
  // Postfix writes IPv6 client addresses bare; tolerate "IPv6:" and brackets.
  if (absl::StartsWithIgnoreCase(s, "ipv6:")) s = s.substr(5);
  if (s.size() > 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  if (inet_pton(AF_INET, s.c_str(), ip.bytes) == 1) {
    ip.family = AF_INET;
  } else if (inet_pton(AF_INET6, s.c_str(), ip.bytes) == 1) {
    ip.family = AF_INET6;
    // An IPv4-mapped address is the IPv4 client.
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(ip.bytes, kMapped, 12) == 0) {
      memmove(ip.bytes, ip.bytes + 12, 4);
      memset(ip.bytes + 4, 0, 12);
      ip.family = AF_INET;
    }
  }
  return ip;
}

std::string Network(const ParsedIp& ip, int prefix) {
  unsigned char b[16];
  memcpy(b, ip.bytes, sizeof b);
  int bytes = ip.family == AF_INET ? 4 : 16;
  for (int i = 0; i < bytes; ++i) {
    int keep = prefix - i * 8;
    if (keep >= 8) continue;
    b[i] = keep <= 0 ? 0 : static_cast<unsigned char>(b[i] & (0xff << (8 - keep)));
  }
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(ip.family, b, buf, sizeof buf);
  int full = ip.family == AF_INET ? 32 : 128;
  return prefix >= full ? std::string(buf) : absl::StrCat(buf, "/", prefix);
}

constexpr int kV4Prefixes[] = {32, 24, 16, 8};
constexpr int kV6Prefixes[] = {128, 64, 48, 32};

bool IsAddressKind(ListKind k) { return k == ListKind::kBA || k == ListKind::kWA; }

std::string Lower(absl::string_view s) { return absl::AsciiStrToLower(s); }

// The keys an address or a domain of a mail address may be listed under:
// the address, its domain and up to two parent domains. Unused slots are "".
std::array<std::string, 4> MailKeys(absl::string_view address) {
  std::array<std::string, 4> keys;
  std::string a = Lower(address);
  if (a.empty()) {
    keys[0] = "<>";
    return keys;
  }
  keys[0] = a;
  size_t at = a.rfind('@');
  if (at == std::string::npos) return keys;
  std::string domain = a.substr(at + 1);
  for (int i = 1; i < 4 && !domain.empty(); ++i) {
    keys[i] = domain;
    size_t dot = domain.find('.');
    if (dot == std::string::npos) break;
    domain = domain.substr(dot + 1);
    if (domain.find('.') == std::string::npos) break;  // never a bare TLD
  }
  return keys;
}

std::array<std::string, 4> AddressKeys(absl::string_view address) {
  std::array<std::string, 4> keys;
  if (address.empty()) return keys;
  ParsedIp ip = ParseIp(address);
  if (ip.family == 0) {
    keys[0] = Lower(address);
    return keys;
  }
  for (int i = 0; i < 4; ++i) {
    keys[i] = Network(ip, ip.family == AF_INET ? kV4Prefixes[i] : kV6Prefixes[i]);
  }
  return keys;
}

ListEntry EntryFromRow(const sql::Row& r) {
  ListEntry e;
  e.kind = *ParseListKind(r.text(0));
  e.value = r.text(1);
  e.created = FromSecs(r.integer(2));
  e.expires = r.is_null(3) ? absl::InfiniteFuture() : FromSecs(r.integer(3));
  e.comment = r.text(4);
  return e;
}

// The in-memory key of a triplet (addresses never hold a NUL).
std::string TripletKey(const Triplet& t) {
  std::string key;
  key.reserve(t.client_network.size() + t.sender.size() + t.recipient.size() + 2);
  absl::StrAppend(&key, t.client_network, absl::string_view("\0", 1), t.sender,
                  absl::string_view("\0", 1), t.recipient);
  return key;
}

// A record last seen at `last_seen` answers from memory while it needs no refresh
// (see touch in Greylist) and has not aged out.
bool FreshInMemory(int64_t now, int64_t last_seen, int64_t max_age) {
  return now - last_seen < 3600 && (max_age == 0 || now - last_seen <= max_age);
}

}  // namespace

absl::StatusOr<ListKind> ParseListKind(absl::string_view name) {
  std::string n = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(name));
  static constexpr std::pair<const char*, ListKind> kKinds[] = {
      {"BA", ListKind::kBA}, {"BS", ListKind::kBS}, {"BR", ListKind::kBR},
      {"WA", ListKind::kWA}, {"WS", ListKind::kWS}, {"WR", ListKind::kWR}};
  for (const auto& [text, kind] : kKinds) {
    if (n == text) return kind;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", name, "' is not a list flag (BA, BS, BR, WA, WS, WR)"));
}

const char* ListKindName(ListKind kind) {
  switch (kind) {
    case ListKind::kBA: return "BA";
    case ListKind::kBS: return "BS";
    case ListKind::kBR: return "BR";
    case ListKind::kWA: return "WA";
    case ListKind::kWS: return "WS";
    case ListKind::kWR: return "WR";
  }
  return "?";
}

absl::StatusOr<std::string> NormalizeListValue(ListKind kind, absl::string_view value) {
  std::string v(absl::StripAsciiWhitespace(value));
  if (v.empty()) return absl::InvalidArgumentError("an empty list value matches nothing");
  if (IsAddressKind(kind)) {
    std::vector<std::string> parts = absl::StrSplit(v, absl::MaxSplits('/', 1));
    ParsedIp ip = ParseIp(parts[0]);
    if (ip.family == 0) {
      return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not an IP address or network"));
    }
    int full = ip.family == AF_INET ? 32 : 128;
    int prefix = full;
    if (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &prefix)) prefix = -1;
    const int* allowed = ip.family == AF_INET ? kV4Prefixes : kV6Prefixes;
    if (std::find(allowed, allowed + 4, prefix) == allowed + 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", v, "': networks are listed at ",
          ip.family == AF_INET ? "/8, /16 or /24" : "/32, /48 or /64"));
    }
    return Network(ip, prefix);
  }
  v = Lower(v);
  if (v == "<>" || v.find('@') != std::string::npos) {
    if (v.front() == '@') v = v.substr(1);  // "@example.com" means the domain
    return v;
  }
  if (v.find_first_of(" \t<>,;") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not an address or domain"));
  }
  return v;
}

std::string ClientNetwork(absl::string_view address, int ipv4_prefix, int ipv6_prefix) {
  ParsedIp ip = ParseIp(address);
  if (ip.family == 0) return Lower(address);
  return Network(ip, ip.family == AF_INET ? ipv4_prefix : ipv6_prefix);
}

namespace {
thread_local NewTripletCollector* current_collector = nullptr;
}  // namespace

NewTripletCollector::NewTripletCollector() { current_collector = this; }
NewTripletCollector::~NewTripletCollector() { current_collector = nullptr; }
NewTripletCollector* NewTripletCollector::Current() { return current_collector; }

absl::StatusOr<std::unique_ptr<PolicyStore>> PolicyStore::Open(
    std::shared_ptr<sql::Database> db) {
  absl::Status s = sql::Migrate(*db, "policy", Schema());
  if (!s.ok()) return s;
  return std::unique_ptr<PolicyStore>(new PolicyStore(std::move(db)));
}

absl::StatusOr<GreylistDecision> PolicyStore::Greylist(const Triplet& t,
                                                       const GreylistParams& p,
                                                       absl::Time now_time, Access access) {
  const int64_t now = Secs(now_time);
  const int64_t min = absl::ToInt64Seconds(p.min);
  const int64_t expire = absl::ToInt64Seconds(p.expire);
  const int64_t max_age = absl::ToInt64Seconds(p.max_age);
  GreylistDecision d;
  const std::string key = TripletKey(t);
  {
    absl::MutexLock lock(&greylist_mu_);
    if (p.auto_whitelist > 0) {
      auto c = whitelisted_.find(t.client_network);
      if (c != whitelisted_.end() && c->second.passes >= p.auto_whitelist &&
          FreshInMemory(now, c->second.last_seen, max_age)) {
        d.state = GreylistDecision::State::kClientWhitelisted;
        return d;
      }
    }
    auto known = passed_.find(key);
    if (known != passed_.end() && FreshInMemory(now, known->second, max_age)) {
      d.state = GreylistDecision::State::kKnown;
      return d;
    }
    auto recorded = deferred_.find(key);
    if (recorded != deferred_.end() && now >= recorded->second &&
        now - recorded->second < min) {
      d.state = GreylistDecision::State::kDeferred;
      d.wait = absl::Seconds(recorded->second + min - now);
      return d;
    }
  }
  if (access == Access::kMemoryOnly) {
    if (NewTripletCollector* c = NewTripletCollector::Current()) {
      c->triplets().push_back({this, t, now, p.auto_whitelist, max_age});
    }
    return WouldWaitError("the triplet is not in memory");
  }
  // A triplet never seen (most of what gets this far: first attempts, which spam
  // bots never follow up) is recorded and deferred in one statement, shared with
  // other callers'. It records nothing when the triplet has a record, whatever its
  // state, or the client network is auto-whitelisted: the query below then decides.
  // (A replica inserting it at the same moment wins the conflict; this caller then
  // finds its record below.)
  absl::StatusOr<bool> fresh = RecordIfNew(t, p, now);
  if (!fresh.ok()) return fresh.status();
  if (*fresh) {
    d.state = GreylistDecision::State::kDeferred;
    d.wait = p.min;
    return d;
  }
  // One round trip for the other cases: the client's pass count and the triplet.
  auto rows = db_->Query(
      "SELECT (SELECT passes FROM greylist_clients WHERE client_net = $1),"
      " (SELECT last_seen FROM greylist_clients WHERE client_net = $1),"
      " g.first_seen, g.passed_at, g.last_seen"
      " FROM (SELECT 1 AS one) AS o LEFT JOIN greylist g"
      " ON g.client_net = $1 AND g.sender = $2 AND g.recipient = $3",
      {t.client_network, t.sender, t.recipient});
  if (!rows.ok()) return rows.status();
  const sql::Row& r = rows->at(0);

  // Refreshes last_seen at most once an hour, so busy senders cost no writes;
  // returns the last_seen the record has now.
  auto touch = [&](const char* statement, sql::Params params,
                   int64_t last_seen) -> absl::StatusOr<int64_t> {
    if (now - last_seen < 3600) return last_seen;
    absl::Status s = db_->Query(statement, params).status();
    if (!s.ok()) return s;
    return now;
  };

  if (p.auto_whitelist > 0 && !r.is_null(0) && r.integer(0) >= p.auto_whitelist &&
      (max_age == 0 || now - r.integer(1) <= max_age)) {
    absl::StatusOr<int64_t> seen =
        touch("UPDATE greylist_clients SET last_seen = $2 WHERE client_net = $1",
              {t.client_network, now}, r.integer(1));
    if (!seen.ok()) return seen.status();
    RememberClient(t.client_network, r.integer(0), *seen);
    d.state = GreylistDecision::State::kClientWhitelisted;
    return d;
  }

  bool exists = !r.is_null(2);
  int64_t first_seen = r.integer(2);
  if (exists && !r.is_null(3)) {
    if (max_age == 0 || now - r.integer(4) <= max_age) {
      absl::StatusOr<int64_t> seen = touch(
          "UPDATE greylist SET last_seen = $4"
          " WHERE client_net = $1 AND sender = $2 AND recipient = $3",
          {t.client_network, t.sender, t.recipient, now}, r.integer(4));
      if (!seen.ok()) return seen.status();
      RememberPassed(key, *seen);
      d.state = GreylistDecision::State::kKnown;
      return d;
    }
    exists = false;  // forgotten: it starts over below
  }
  if (exists && now - first_seen > expire) exists = false;

  if (!exists) {
    // New (or forgotten) triplet. Another replica may insert or restart it at the
    // same moment; the statement only (re)starts a record that is absent, expired
    // or aged out, and the caller is deferred either way.
    auto up = db_->Query(
        "INSERT INTO greylist (client_net, sender, recipient, first_seen, last_seen, passed_at)"
        " VALUES ($1, $2, $3, $4, $4, NULL)"
        " ON CONFLICT (client_net, sender, recipient) DO UPDATE SET"
        " first_seen = $4, last_seen = $4, passed_at = NULL"
        " WHERE (greylist.passed_at IS NULL AND greylist.first_seen < $5)"
        " OR (greylist.passed_at IS NOT NULL AND $6 > 0 AND greylist.last_seen < $7)",
        {t.client_network, t.sender, t.recipient, now, now - expire, max_age, now - max_age});
    if (!up.ok()) return up.status();
    d.state = GreylistDecision::State::kDeferred;
    d.wait = p.min;
    return d;
  }

  if (now - first_seen < min) {
    d.state = GreylistDecision::State::kDeferred;
    d.wait = absl::Seconds(first_seen + min - now);
    return d;
  }

  // A retry after `min`: exactly one caller flips passed_at.
  auto passed = db_->Query(
      "UPDATE greylist SET passed_at = $4, last_seen = $4"
      " WHERE client_net = $1 AND sender = $2 AND recipient = $3 AND passed_at IS NULL"
      " RETURNING first_seen",
      {t.client_network, t.sender, t.recipient, now});
  if (!passed.ok()) return passed.status();
  if (passed->empty()) {
    d.state = GreylistDecision::State::kKnown;
    return d;
  }
  d.state = GreylistDecision::State::kPassedNow;
  d.delayed = absl::Seconds(now - passed->at(0).integer(0));
  RememberPassed(key, now);
  if (p.auto_whitelist > 0) {
    auto c = db_->Query(
        "INSERT INTO greylist_clients (client_net, passes, last_seen) VALUES ($1, 1, $2)"
        " ON CONFLICT (client_net) DO UPDATE SET passes = greylist_clients.passes + 1,"
        " last_seen = $2 RETURNING passes",
        {t.client_network, now});
    if (!c.ok()) return c.status();
    // The pass that whitelists the network: memory answers for it from now on (and
    // no longer defers the network's triplets it recorded).
    if (!c->empty() && c->at(0).integer(0) >= p.auto_whitelist) {
      RememberClient(t.client_network, c->at(0).integer(0), now);
    }
  }
  return d;
}

absl::StatusOr<bool> PolicyStore::RecordIfNew(const Triplet& t, const GreylistParams& p,
                                              int64_t now) {
  PendingInsert me{{this, t, now, p.auto_whitelist, absl::ToInt64Seconds(p.max_age)}};
  absl::MutexLock lock(&insert_mu_);
  inserts_waiting_.push_back(&me);
  // Lead a statement when none runs (it carries the oldest waiting triplets, this
  // one among them unless kMaxInsertBatch came first); else wait for one to carry
  // this triplet or to end.
  auto can_lead = [this] {
    insert_mu_.AssertHeld();
    return inserts_running_ < kMaxInsertStatements && !inserts_waiting_.empty();
  };
  auto ready = [&] {
    insert_mu_.AssertHeld();
    return me.done || can_lead();
  };
  while (!me.done) {
    if (!can_lead()) {
      insert_mu_.Await(absl::Condition(&ready));
      continue;
    }
    std::vector<PendingInsert*> batch;
    while (!inserts_waiting_.empty() && batch.size() < kMaxInsertBatch) {
      batch.push_back(inserts_waiting_.front());
      inserts_waiting_.pop_front();
    }
    ++inserts_running_;
    insert_mu_.Unlock();
    InsertBatch(batch);
    insert_mu_.Lock();
    --inserts_running_;
    for (PendingInsert* b : batch) b->done = true;
  }
  return me.inserted;
}

void PolicyStore::InsertBatch(const std::vector<PendingInsert*>& batch) {
  // Each triplet once: a second caller with the same one finds its record (the
  // query after RecordIfNew) and is deferred like the first. row_of: each caller's
  // row, or rows.size() for a repeat.
  absl::flat_hash_map<std::string, size_t> first;
  std::vector<const NewTriplet*> rows;
  std::vector<size_t> row_of;
  row_of.reserve(batch.size());
  for (PendingInsert* b : batch) {
    if (first.emplace(TripletKey(b->triplet.triplet), rows.size()).second) {
      row_of.push_back(rows.size());
      rows.push_back(&b->triplet);
    } else {
      row_of.push_back(batch.size());
    }
  }
  absl::StatusOr<sql::Rows> done = db_->Query(InsertStatement(rows.size()), InsertParams(rows));
  if (!done.ok()) {
    for (PendingInsert* b : batch) b->inserted = done.status();
    return;
  }
  std::vector<bool> recorded = Recorded(rows, *done);
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->inserted = row_of[i] < rows.size() && recorded[row_of[i]];
  }
}

const std::string& PolicyStore::InsertStatement(size_t rows) {
  // Built once for each row count (the statement is sent for every new triplet).
  static const auto* statements = [] {
    auto* all = new std::vector<std::string>(kMaxInsertBatch + 1);
    for (size_t rows = 1; rows <= kMaxInsertBatch; ++rows) {
      // The client network may not be auto-whitelisted (column5: auto_whitelist,
      // column6: max_age, column7: the oldest last_seen that counts).
      std::string& statement = (*all)[rows];
      statement =
          "INSERT INTO greylist (client_net, sender, recipient, first_seen, last_seen, "
          "passed_at) SELECT v.column1, v.column2, v.column3, v.column4, v.column4, NULL "
          "FROM (VALUES ";
      for (size_t i = 0; i < rows; ++i) {
        const size_t n = i * 7;
        absl::StrAppend(&statement, i == 0 ? "" : ", ", "(CAST($", n + 1, " AS TEXT), CAST($",
                        n + 2, " AS TEXT), CAST($", n + 3, " AS TEXT), CAST($", n + 4,
                        " AS BIGINT), CAST($", n + 5, " AS BIGINT), CAST($", n + 6,
                        " AS BIGINT), CAST($", n + 7, " AS BIGINT))");
      }
      absl::StrAppend(&statement,
                      ") AS v WHERE NOT EXISTS (SELECT 1 FROM greylist_clients c WHERE "
                      "c.client_net = v.column1 AND v.column5 > 0 AND c.passes >= v.column5 "
                      "AND (v.column6 = 0 OR c.last_seen >= v.column7)) ON CONFLICT "
                      "(client_net, sender, recipient) DO NOTHING"
                      " RETURNING client_net, sender, recipient");
    }
    return all;
  }();
  return statements->at(rows);
}

sql::Params PolicyStore::InsertParams(const std::vector<const NewTriplet*>& triplets) {
  sql::Params params;
  params.reserve(triplets.size() * 7);
  for (const NewTriplet* r : triplets) {
    params.insert(params.end(), {r->triplet.client_network, r->triplet.sender,
                                 r->triplet.recipient, r->now, r->auto_whitelist, r->max_age,
                                 r->now - r->max_age});
  }
  return params;
}

std::vector<bool> PolicyStore::Recorded(const std::vector<const NewTriplet*>& triplets,
                                        const sql::Rows& returned) {
  ++insert_statements_;
  insert_rows_ += static_cast<int64_t>(triplets.size());
  absl::flat_hash_map<std::string, size_t> index;
  for (size_t i = 0; i < triplets.size(); ++i) index.emplace(TripletKey(triplets[i]->triplet), i);
  std::vector<bool> recorded(triplets.size(), false);
  for (const sql::Row& r : returned) {
    std::string key = TripletKey({r.text(0), r.text(1), r.text(2)});
    auto it = index.find(key);
    if (it == index.end()) continue;
    recorded[it->second] = true;
    RememberDeferred(key, triplets[it->second]->now);
  }
  return recorded;
}

void PolicyStore::RememberPassed(const std::string& key, int64_t last_seen) {
  absl::MutexLock lock(&greylist_mu_);
  if (passed_.size() >= kMaxCachedTriplets) passed_.clear();
  passed_[key] = last_seen;
  deferred_.erase(key);
}

void PolicyStore::RememberDeferred(const std::string& key, int64_t first_seen) {
  absl::MutexLock lock(&greylist_mu_);
  if (deferred_.size() >= kMaxCachedTriplets) deferred_.clear();
  deferred_[key] = first_seen;
}

void PolicyStore::RememberClient(const std::string& client_net, int64_t passes,
                                 int64_t last_seen) {
  absl::MutexLock lock(&greylist_mu_);
  if (whitelisted_.size() >= kMaxCachedTriplets) whitelisted_.clear();
  whitelisted_[client_net] = {passes, last_seen};
}

absl::StatusOr<std::optional<ListEntry>> PolicyStore::FindListed(
    absl::string_view client_address, absl::string_view sender, absl::string_view recipient,
    absl::Time now, Access access) {
  std::array<std::string, 4> a, s, r;
  auto make_keys = [&] {
    a = AddressKeys(client_address);
    // An empty sender is the null sender, listed as "<>".
    s = MailKeys(sender);
    if (!recipient.empty()) r = MailKeys(recipient);
  };
  if (access == Access::kMemoryOnly) {
    // A reload holds the lock while it queries: do not wait for it.
    if (!lists_mu_.ReaderTryLock()) return WouldWaitError("the lists are being reloaded");
    std::optional<std::optional<ListEntry>> hit;
    if (ListsFreshInMemory(absl::Now())) {
      hit.emplace();
      if (!lists_.empty()) {
        make_keys();
        hit = FindInMemory(a, s, r, now);
      }
    }
    lists_mu_.ReaderUnlock();
    if (!hit) return WouldWaitError("the lists are due for their version check");
    return *std::move(hit);
  }
  make_keys();
  {
    absl::MutexLock lock(&lists_mu_);
    absl::StatusOr<bool> in_memory = FreshLists();
    if (!in_memory.ok()) return in_memory.status();
    if (*in_memory) return FindInMemory(a, s, r, now);
  }
  auto rows = db_->Query(
      "SELECT kind, value, created, expires, comment FROM lists"
      " WHERE ((kind IN ('BA', 'WA') AND value IN ($1, $2, $3, $4))"
      " OR (kind IN ('BS', 'WS') AND value IN ($5, $6, $7, $8))"
      " OR (kind IN ('BR', 'WR') AND value IN ($9, $10, $11, $12)))"
      " AND value <> '' AND (expires IS NULL OR expires > $13)",
      {a[0], a[1], a[2], a[3], s[0], s[1], s[2], s[3], r[0], r[1], r[2], r[3], Secs(now)});
  if (!rows.ok()) return rows.status();
  std::optional<ListEntry> black;
  for (const sql::Row& row : *rows) {
    absl::StatusOr<ListKind> k = ParseListKind(row.text(0));
    if (!k.ok()) continue;
    if (IsWhite(*k)) return EntryFromRow(row);
    if (!black) black = EntryFromRow(row);
  }
  return black;
}

std::optional<ListEntry> PolicyStore::FindInMemory(const std::array<std::string, 4>& address,
                                                   const std::array<std::string, 4>& sender,
                                                   const std::array<std::string, 4>& recipient,
                                                   absl::Time now) const {
  std::optional<ListEntry> black;
  const std::tuple<const std::array<std::string, 4>*, ListKind, ListKind> groups[] = {
      {&address, ListKind::kBA, ListKind::kWA},
      {&sender, ListKind::kBS, ListKind::kWS},
      {&recipient, ListKind::kBR, ListKind::kWR}};
  for (const auto& [keys, black_kind, white_kind] : groups) {
    for (const std::string& key : *keys) {
      if (key.empty()) continue;
      auto it = lists_.find(key);
      if (it == lists_.end()) continue;
      for (const ListEntry& e : it->second) {
        if ((e.kind != black_kind && e.kind != white_kind) || e.expires <= now) continue;
        if (IsWhite(e.kind)) return e;
        if (!black) black = e;
      }
    }
  }
  return black;
}

bool PolicyStore::ListsFreshInMemory(absl::Time wall) const {
  return lists_loaded_ && !lists_stale_ && !lists_too_large_ && wall - lists_checked_ < kListRecheck;
}

absl::StatusOr<bool> PolicyStore::FreshLists() {
  const absl::Time wall = absl::Now();
  if (ListsFreshInMemory(wall)) return true;
  if (lists_loaded_ && !lists_stale_ && wall - lists_checked_ < kListRecheck) return false;
  auto v = db_->Query("SELECT version FROM lists_version WHERE id = 1", {});
  if (!v.ok()) return v.status();
  const int64_t version = v->empty() ? 0 : v->at(0).integer(0);
  lists_checked_ = wall;
  if (lists_loaded_ && !lists_stale_ && version == lists_version_) return !lists_too_large_;
  // A change after the version was read bumps it again: the next check reloads.
  auto rows = db_->Query("SELECT kind, value, created, expires, comment FROM lists LIMIT $1",
                         {static_cast<int64_t>(kMaxCachedListEntries + 1)});
  if (!rows.ok()) return rows.status();
  lists_.clear();
  lists_version_ = version;
  lists_loaded_ = true;
  lists_stale_ = false;
  lists_too_large_ = rows->size() > kMaxCachedListEntries;
  if (lists_too_large_) return false;
  for (const sql::Row& row : *rows) {
    if (ParseListKind(row.text(0)).ok()) lists_[row.text(1)].push_back(EntryFromRow(row));
  }
  return true;
}

absl::Status PolicyStore::ListsChanged() {
  {
    absl::MutexLock lock(&lists_mu_);
    lists_stale_ = true;
  }
  return db_->Query("UPDATE lists_version SET version = version + 1 WHERE id = 1", {}).status();
}

absl::Status PolicyStore::AddListEntry(const ListEntry& entry) {
  absl::StatusOr<std::string> value = NormalizeListValue(entry.kind, entry.value);
  if (!value.ok()) return value.status();
  sql::Param expires;
  if (entry.expires != absl::InfiniteFuture()) expires = Secs(entry.expires);
  auto r = db_->Query(
      "INSERT INTO lists (kind, value, created, expires, comment) VALUES ($1, $2, $3, $4, $5)"
      " ON CONFLICT (kind, value) DO UPDATE SET expires = $4, comment = $5",
      {ListKindName(entry.kind), *value, Secs(entry.created), expires, entry.comment});
  if (!r.ok()) return r.status();
  return ListsChanged();
}

absl::StatusOr<bool> PolicyStore::RemoveListEntry(ListKind kind, absl::string_view value) {
  absl::StatusOr<std::string> v = NormalizeListValue(kind, value);
  if (!v.ok()) return v.status();
  auto r = db_->Query("DELETE FROM lists WHERE kind = $1 AND value = $2 RETURNING value",
                      {ListKindName(kind), *v});
  if (!r.ok()) return r.status();
  if (r->empty()) return false;
  if (absl::Status s = ListsChanged(); !s.ok()) return s;
  return true;
}

absl::StatusOr<std::vector<ListEntry>> PolicyStore::ListEntries(std::optional<ListKind> kind) {
  auto rows = db_->Query(
      "SELECT kind, value, created, expires, comment FROM lists"
      " WHERE $1 = '' OR kind = $1 ORDER BY kind, value",
      {kind ? ListKindName(*kind) : ""});
  if (!rows.ok()) return rows.status();
  std::vector<ListEntry> out;
  for (const sql::Row& r : *rows) {
    if (ParseListKind(r.text(0)).ok()) out.push_back(EntryFromRow(r));
  }
  return out;
}

absl::StatusOr<std::vector<GreylistRecord>> PolicyStore::GreylistRecords(
    absl::string_view filter, int limit) {
  // LIKE patterns get the filter escaped, so '%' and '_' in it match themselves.
  std::string pattern = "%";
  for (char c : filter) {
    if (c == '%' || c == '_' || c == '!') pattern += '!';
    pattern += c;
  }
  pattern += '%';
  auto rows = db_->Query(
      "SELECT client_net, sender, recipient, first_seen, last_seen, passed_at FROM greylist"
      " WHERE client_net LIKE $1 ESCAPE '!' OR sender LIKE $1 ESCAPE '!'"
      " OR recipient LIKE $1 ESCAPE '!'"
      " ORDER BY last_seen DESC, client_net, sender, recipient LIMIT $2",
      {pattern, static_cast<int64_t>(limit)});
  if (!rows.ok()) return rows.status();
  std::vector<GreylistRecord> out;
  for (const sql::Row& r : *rows) {
    GreylistRecord g;
    g.triplet = {r.text(0), r.text(1), r.text(2)};
    g.first_seen = FromSecs(r.integer(3));
    g.last_seen = FromSecs(r.integer(4));
    if (!r.is_null(5)) g.passed_at = FromSecs(r.integer(5));
    out.push_back(std::move(g));
  }
  return out;
}

absl::StatusOr<CleanupCounts> PolicyStore::Cleanup(const GreylistParams& p, absl::Time now_time) {
  const int64_t now = Secs(now_time);
  const int64_t expire = absl::ToInt64Seconds(p.expire);
  const int64_t max_age = absl::ToInt64Seconds(p.max_age);
  CleanupCounts counts;
  auto t = db_->Query(
      "DELETE FROM greylist WHERE (passed_at IS NULL AND first_seen < $1)"
      " OR ($2 > 0 AND last_seen < $3) RETURNING 1",
      {now - expire, max_age, now - max_age});
  if (!t.ok()) return t.status();
  counts.triplets = static_cast<int64_t>(t->size());
  if (max_age > 0) {
    auto c = db_->Query("DELETE FROM greylist_clients WHERE last_seen < $1 RETURNING 1",
                        {now - max_age});
    if (!c.ok()) return c.status();
    counts.clients = static_cast<int64_t>(c->size());
  }
  auto l = db_->Query("DELETE FROM lists WHERE expires IS NOT NULL AND expires <= $1 RETURNING 1",
                      {now});
  if (!l.ok()) return l.status();
  counts.list_entries = static_cast<int64_t>(l->size());
  if (counts.list_entries > 0) {
    if (absl::Status s = ListsChanged(); !s.ok()) return s;
  }
  return counts;
}

}  // namespace sagator::policy
