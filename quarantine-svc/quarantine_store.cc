#include "quarantine-svc/quarantine_store.h"

#include <gmime/gmime.h>

#include <cmath>
#include <map>
#include <mutex>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/mail_headers.h"

namespace sagator::quarantine {
namespace {

// Version i + 1 of the schema is step i; never edit a step, add one.
const std::vector<std::string>& Migrations() {
  static const auto* steps = new std::vector<std::string>{
      "CREATE TABLE quarantine_entries ("
      " id TEXT PRIMARY KEY,"
      " stored_at BIGINT NOT NULL,"  // microseconds since the epoch
      " sagator_id TEXT NOT NULL,"
      " sender TEXT NOT NULL,"
      " sender_key TEXT NOT NULL,"  // lower case, for searching
      " from_header TEXT NOT NULL,"
      " subject TEXT NOT NULL,"
      " detection TEXT NOT NULL,"
      " level_micro BIGINT NOT NULL,"  // SAGATOR's level times 10^6
      " outcome BIGINT NOT NULL,"
      " size BIGINT NOT NULL,"
      " scanner_path TEXT NOT NULL,"
      " client_address TEXT NOT NULL,"
      " client_name TEXT NOT NULL,"
      " helo TEXT NOT NULL,"
      " queue_id TEXT NOT NULL)",
      "CREATE INDEX quarantine_entries_stored ON quarantine_entries (stored_at, id)",
      "CREATE INDEX quarantine_entries_sender ON quarantine_entries (sender_key, stored_at, id)",
      "CREATE INDEX quarantine_entries_detection ON quarantine_entries (detection, stored_at, id)",
      "CREATE TABLE quarantine_recipients ("
      " entry_id TEXT NOT NULL,"
      " position BIGINT NOT NULL,"
      " recipient TEXT NOT NULL,"
      " recipient_key TEXT NOT NULL,"  // lower case
      " stored_at BIGINT NOT NULL,"     // copied from the entry, for ordered scans
      " PRIMARY KEY (entry_id, position))",
      "CREATE INDEX quarantine_recipients_key ON quarantine_recipients"
      " (recipient_key, stored_at, entry_id)",
      "CREATE TABLE quarantine_messages ("
      " entry_id TEXT PRIMARY KEY,"
      " data TEXT NOT NULL)",  // base64
      "CREATE TABLE quarantine_releases ("
      " entry_id TEXT NOT NULL,"
      " released_at BIGINT NOT NULL,"
      " seq BIGINT NOT NULL,"  // order within one release
      " recipient TEXT NOT NULL,"
      " code BIGINT NOT NULL,"
      " text TEXT NOT NULL,"
      " released_by TEXT NOT NULL)",
      "CREATE INDEX quarantine_releases_entry ON quarantine_releases (entry_id, released_at)",
  };
  return *steps;
}

// Substring search indexes, one kind per back end, kept apart from the shared schema:
// PostgreSQL's trigram GIN indexes (pg_trgm, a trusted extension since PostgreSQL
// 13) serve LIKE '%...%' directly; SQLite gets an FTS5 table with the trigram
// tokenizer, filled by triggers, whose LIKE uses its index.
const std::vector<std::string>& PostgresqlSearchMigrations() {
  static const auto* steps = new std::vector<std::string>{
      "CREATE EXTENSION IF NOT EXISTS pg_trgm",
      "CREATE INDEX quarantine_entries_subject_trgm ON quarantine_entries"
      " USING gin (LOWER(subject) gin_trgm_ops)",
      "CREATE INDEX quarantine_entries_detection_trgm ON quarantine_entries"
      " USING gin (LOWER(detection) gin_trgm_ops)",
      // Messages are base64 already: compressing them costs CPU and saves little.
      "ALTER TABLE quarantine_messages ALTER COLUMN data SET STORAGE EXTERNAL",
  };
  return *steps;
}

const std::vector<std::string>& SqliteSearchMigrations() {
  static const auto* steps = new std::vector<std::string>{
      "CREATE VIRTUAL TABLE quarantine_search USING fts5(subject, detection,"
      " tokenize = 'trigram')",
      "CREATE TRIGGER quarantine_search_insert AFTER INSERT ON quarantine_entries BEGIN"
      " INSERT INTO quarantine_search (rowid, subject, detection)"
      " VALUES (new.rowid, LOWER(new.subject), LOWER(new.detection)); END",
      "CREATE TRIGGER quarantine_search_delete AFTER DELETE ON quarantine_entries BEGIN"
      " DELETE FROM quarantine_search WHERE rowid = old.rowid; END",
      "INSERT INTO quarantine_search (rowid, subject, detection)"
      " SELECT rowid, LOWER(subject), LOWER(detection) FROM quarantine_entries",
  };
  return *steps;
}

// Matches in the trigram index from which a word counts as common (see List).
constexpr int kCommonMatches = 2000;

// True when `text` can go into the trigram index's LIKE as it is (no LIKE
// wildcards to escape: FTS5 does not take ESCAPE).
bool PlainText(absl::string_view text) {
  return text.find_first_of("%_\\") == absl::string_view::npos;
}

constexpr char kEntryColumns[] =
    "e.id, e.stored_at, e.sagator_id, e.sender, e.from_header, e.subject, e.detection,"
    " e.level_micro, e.outcome, e.size, e.scanner_path, e.client_address, e.client_name,"
    " e.helo, e.queue_id";

int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }

void SetTimestamp(int64_t micros, google::protobuf::Timestamp* ts) {
  ts->set_seconds(micros / 1000000);
  ts->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
}

int64_t TimestampMicros(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000 + ts.nanos() / 1000;
}

v1::Entry EntryFromRow(const sql::Row& row) {
  v1::Entry e;
  e.set_id(row.text(0));
  SetTimestamp(row.integer(1), e.mutable_stored_at());
  e.set_sagator_id(row.text(2));
  e.mutable_envelope()->set_sender(row.text(3));
  e.set_from(row.text(4));
  e.set_subject(row.text(5));
  e.set_detection(row.text(6));
  e.set_level(static_cast<double>(row.integer(7)) / 1e6);
  int64_t outcome = row.integer(8);
  e.set_outcome(common::v1::Outcome_IsValid(static_cast<int>(outcome))
                    ? static_cast<common::v1::Outcome>(outcome)
                    : common::v1::OUTCOME_UNSPECIFIED);
  e.set_size(row.integer(9));
  e.set_scanner_path(row.text(10));
  auto* client = e.mutable_envelope()->mutable_client();
  client->set_address(row.text(11));
  client->set_name(row.text(12));
  client->set_helo(row.text(13));
  e.mutable_envelope()->set_queue_id(row.text(14));
  return e;
}

std::string NewId(absl::Time now) {
  static const char kAlnum[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  thread_local absl::BitGen gen;
  std::string rnd(12, ' ');
  for (char& c : rnd) c = kAlnum[absl::Uniform<int>(gen, 0, sizeof kAlnum - 1)];
  return absl::StrCat("qm-", absl::FormatTime("%Y%m%d-%H%M%S", now, absl::UTCTimeZone()), "-",
                      rnd);
}

// A LIKE pattern matching `text` anywhere, with LIKE's own characters escaped ('\').
std::string ContainsPattern(absl::string_view text) {
  std::string out = "%";
  for (char c : absl::AsciiStrToLower(text)) {
    if (c == '%' || c == '_' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('%');
  return out;
}

// Page tokens: "<stored_at micros>/<id>" of the last entry of the page.
std::string PageToken(const v1::Entry& last) {
  return absl::StrCat(TimestampMicros(last.stored_at()), "/", last.id());
}

bool ParsePageToken(absl::string_view token, int64_t* micros, std::string* id) {
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(token, absl::MaxSplits('/', 1));
  if (!absl::SimpleAtoi(parts.first, micros) || parts.second.empty()) return false;
  *id = std::string(parts.second);
  return true;
}

// Statement builder: fixed SQL fragments, every value a numbered parameter.
class Where {
 public:
  // Adds "fragment" where each '?' is the next parameter.
  void Add(absl::string_view fragment, std::vector<sql::Param> values) {
    std::string out;
    size_t v = 0;
    for (char c : fragment) {
      if (c == '?') {
        params_.push_back(std::move(values.at(v++)));
        absl::StrAppend(&out, "$", params_.size());
      } else {
        out.push_back(c);
      }
    }
    conditions_.push_back(std::move(out));
  }
  std::string Sql() const {
    return conditions_.empty() ? "" : absl::StrCat(" WHERE ", absl::StrJoin(conditions_, " AND "));
  }
  std::string NextParam(sql::Param p) {
    params_.push_back(std::move(p));
    return absl::StrCat("$", params_.size());
  }
  const sql::Params& params() const { return params_; }

 private:
  std::vector<std::string> conditions_;
  sql::Params params_;
};

std::once_flag gmime_once;

}  // namespace

std::string ValidUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= text.size();
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    }
    // Overlong forms and surrogates are not UTF-8 either.
    if (ok && len == 2) ok = c >= 0xc2;
    if (ok && len == 3) {
      unsigned char c1 = static_cast<unsigned char>(text[i + 1]);
      ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
    }
    if (ok && len == 4) {
      unsigned char c1 = static_cast<unsigned char>(text[i + 1]);
      ok = c <= 0xf4 && !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
    }
    if (ok) {
      out.append(text.data() + i, len);
      i += len;
    } else {
      out.push_back('?');
      ++i;
    }
  }
  return out;
}

std::string DecodedHeader(absl::string_view message, absl::string_view name) {
  std::string raw;
  if (!FindHeaderValue(message, name, &raw)) return "";
  std::call_once(gmime_once, [] { g_mime_init(); });
  char* decoded = g_mime_utils_header_decode_text(nullptr, raw.c_str());
  std::string out = decoded != nullptr ? decoded : raw;
  g_free(decoded);
  // Decoded text may hold line breaks or NULs from hostile encoded words.
  for (char& c : out) {
    if (c == '\r' || c == '\n' || c == '\0' || c == '\t') c = ' ';
  }
  return ValidUtf8(out);
}

absl::StatusOr<std::unique_ptr<QuarantineStore>> QuarantineStore::Open(
    std::shared_ptr<sql::Database> db) {
  absl::Status s = sql::Migrate(*db, "quarantine", Migrations());
  if (!s.ok()) return s;
  bool sqlite = db->backend() == sql::Backend::kSqlite;
  s = sqlite ? sql::Migrate(*db, "quarantine_search_sqlite", SqliteSearchMigrations())
             : sql::Migrate(*db, "quarantine_search_postgresql", PostgresqlSearchMigrations());
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("the quarantine's search indexes", sqlite ? "" :
                                               " (PostgreSQL's pg_trgm extension: run CREATE "
                                               "EXTENSION pg_trgm as the database owner)",
                                               ": ", s.message()));
  }
  return std::unique_ptr<QuarantineStore>(new QuarantineStore(std::move(db)));
}

absl::StatusOr<std::string> QuarantineStore::Store(v1::Entry entry, absl::string_view message,
                                                   absl::Time now) {
  if (entry.envelope().recipients().empty()) {
    return absl::InvalidArgumentError("a quarantined message needs at least one recipient");
  }
  if (entry.subject().empty()) entry.set_subject(DecodedHeader(message, "Subject"));
  if (entry.from().empty()) entry.set_from(DecodedHeader(message, "From"));
  std::string id = NewId(now);
  int64_t at = Micros(now);
  std::string data = absl::Base64Escape(message);
  const auto& env = entry.envelope();
  int64_t level = static_cast<int64_t>(std::llround(entry.level() * 1e6));
  absl::Status s = db_->RunTransaction([&](sql::Transaction& tx) -> absl::Status {
    auto r = tx.Query(
        "INSERT INTO quarantine_entries (id, stored_at, sagator_id, sender, sender_key,"
        " from_header, subject, detection, level_micro, outcome, size, scanner_path,"
        " client_address, client_name, helo, queue_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        {id, at, entry.sagator_id(), env.sender(), absl::AsciiStrToLower(env.sender()),
         entry.from(), entry.subject(), entry.detection(), level,
         static_cast<int64_t>(entry.outcome()), static_cast<int64_t>(message.size()),
         entry.scanner_path(), env.client().address(), env.client().name(), env.client().helo(),
         env.queue_id()});
    if (!r.ok()) return r.status();
    for (int i = 0; i < env.recipients_size(); ++i) {
      r = tx.Query(
          "INSERT INTO quarantine_recipients (entry_id, position, recipient, recipient_key,"
          " stored_at) VALUES ($1, $2, $3, $4, $5)",
          {id, i, env.recipients(i), absl::AsciiStrToLower(env.recipients(i)), at});
      if (!r.ok()) return r.status();
    }
    r = tx.Query("INSERT INTO quarantine_messages (entry_id, data) VALUES ($1, $2)", {id, data});
    return r.status();
  });
  if (!s.ok()) return s;
  return id;
}

absl::StatusOr<v1::ListResponse> QuarantineStore::List(const v1::ListRequest& request) const {
  int page_size = request.page_size() <= 0 ? kDefaultPageSize
                                           : std::min(request.page_size(), kMaxPageSize);
  Where where;
  std::string from = " FROM quarantine_entries e";
  // The order key: the recipients table's copy of stored_at when searching by
  // recipient, so its index delivers rows in order.
  std::string at = "e.stored_at";
  std::string id = "e.id";
  if (!request.recipients().empty()) {
    from = " FROM quarantine_recipients r JOIN quarantine_entries e ON e.id = r.entry_id";
    at = "r.stored_at";
    id = "r.entry_id";
    std::vector<std::string> placeholders;
    for (const std::string& rcpt : request.recipients()) {
      placeholders.push_back(where.NextParam(absl::AsciiStrToLower(rcpt)));
    }
    where.Add(absl::StrCat("r.recipient_key IN (", absl::StrJoin(placeholders, ", "), ")"), {});
  }
  if (!request.id().empty()) where.Add("e.id = ?", {request.id()});
  if (!request.sender().empty()) {
    where.Add("e.sender_key = ?", {absl::AsciiStrToLower(request.sender())});
  }
  bool sqlite = db_->backend() == sql::Backend::kSqlite;
  for (const auto& [column, text] :
       {std::pair<std::string, std::string>{"subject", request.subject_contains()},
        {"detection", request.detection_contains()}}) {
    if (text.empty()) continue;
    std::string pattern = ContainsPattern(text);
    if (sqlite && PlainText(text)) {
      // SQLite's planner cannot tell a rare word from a common one: ask the index.
      // A rare word lists its few rows from the index; a common one is found soon
      // enough by reading the newest entries in order and checking each.
      auto many = db_->Query(absl::StrCat("SELECT COUNT(*) FROM (SELECT rowid FROM"
                                          " quarantine_search WHERE ", column,
                                          " LIKE $1 LIMIT ", kCommonMatches, ")"),
                             {pattern});
      if (!many.ok()) return many.status();
      if (many->front().integer(0) < kCommonMatches) {
        where.Add(absl::StrCat("e.rowid IN (SELECT rowid FROM quarantine_search WHERE ", column,
                               " LIKE ?)"),
                  {pattern});
        continue;
      }
    }
    where.Add(absl::StrCat("LOWER(e.", column, ") LIKE ? ESCAPE '\\'"), {pattern});
  }
  if (request.has_stored_after()) {
    where.Add(absl::StrCat(at, " >= ?"), {TimestampMicros(request.stored_after())});
  }
  if (request.has_stored_before()) {
    where.Add(absl::StrCat(at, " < ?"), {TimestampMicros(request.stored_before())});
  }
  if (!request.page_token().empty()) {
    int64_t t = 0;
    std::string last;
    if (!ParsePageToken(request.page_token(), &t, &last)) {
      return absl::InvalidArgumentError("malformed page_token");
    }
    where.Add(absl::StrCat("(", at, " < ? OR (", at, " = ? AND ", id, " < ?))"), {t, t, last});
  }
  std::string statement =
      absl::StrCat("SELECT ", kEntryColumns, from, where.Sql(), " ORDER BY ", at, " DESC, ", id,
                   " DESC LIMIT ", page_size + 1);
  auto rows = db_->Query(statement, where.params());
  if (!rows.ok()) return rows.status();
  v1::ListResponse out;
  bool more = static_cast<int>(rows->size()) > page_size;
  if (more) rows->pop_back();
  for (const sql::Row& row : *rows) {
    // A message to two of the asked-for recipients comes twice, next to itself.
    if (out.entries_size() > 0 && out.entries(out.entries_size() - 1).id() == row.text(0)) {
      continue;
    }
    *out.add_entries() = EntryFromRow(row);
  }
  if (more && out.entries_size() > 0) {
    out.set_next_page_token(PageToken(out.entries(out.entries_size() - 1)));
  }
  std::vector<v1::Entry*> entries;
  for (auto& e : *out.mutable_entries()) entries.push_back(&e);
  absl::Status s = AddDetails(entries);
  if (!s.ok()) return s;
  return out;
}

absl::Status QuarantineStore::AddDetails(std::vector<v1::Entry*> entries) const {
  if (entries.empty()) return absl::OkStatus();
  std::map<std::string, v1::Entry*> by_id;
  sql::Params ids;
  std::vector<std::string> placeholders;
  for (v1::Entry* e : entries) {
    by_id[e->id()] = e;
    ids.push_back(e->id());
    placeholders.push_back(absl::StrCat("$", ids.size()));
  }
  std::string in = absl::StrJoin(placeholders, ", ");
  auto rcpts = db_->Query(absl::StrCat("SELECT entry_id, recipient FROM quarantine_recipients"
                                       " WHERE entry_id IN (", in, ") ORDER BY entry_id, position"),
                          ids);
  if (!rcpts.ok()) return rcpts.status();
  for (const sql::Row& row : *rcpts) {
    by_id[row.text(0)]->mutable_envelope()->add_recipients(row.text(1));
  }
  auto releases = db_->Query(
      absl::StrCat("SELECT entry_id, recipient, code, text, released_at, released_by"
                   " FROM quarantine_releases WHERE entry_id IN (", in,
                   ") ORDER BY entry_id, released_at, seq"),
      ids);
  if (!releases.ok()) return releases.status();
  for (const sql::Row& row : *releases) {
    v1::ReleaseRecord* r = by_id[row.text(0)]->add_releases();
    r->set_recipient(row.text(1));
    r->set_code(static_cast<int32_t>(row.integer(2)));
    r->set_text(row.text(3));
    SetTimestamp(row.integer(4), r->mutable_released_at());
    r->set_released_by(row.text(5));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Entry> QuarantineStore::Get(absl::string_view id, std::string* message) const {
  auto rows = db_->Query(absl::StrCat("SELECT ", kEntryColumns, " FROM quarantine_entries e",
                                      " WHERE e.id = $1"),
                         {id});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return absl::NotFoundError(absl::StrCat("no quarantined message ", id));
  v1::Entry entry = EntryFromRow(rows->front());
  absl::Status s = AddDetails({&entry});
  if (!s.ok()) return s;
  if (message != nullptr) {
    auto data = db_->Query("SELECT data FROM quarantine_messages WHERE entry_id = $1", {id});
    if (!data.ok()) return data.status();
    if (data->empty() || !absl::Base64Unescape(data->front().text(0), message)) {
      return absl::DataLossError(absl::StrCat("the message of ", id, " is missing or damaged"));
    }
  }
  return entry;
}

absl::Status QuarantineStore::RecordReleases(absl::string_view id,
                                             const std::vector<v1::ReleaseRecord>& records) {
  return db_->RunTransaction([&](sql::Transaction& tx) -> absl::Status {
    for (size_t i = 0; i < records.size(); ++i) {
      const v1::ReleaseRecord& r = records[i];
      auto q = tx.Query(
          "INSERT INTO quarantine_releases (entry_id, released_at, seq, recipient, code, text,"
          " released_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
          {id, TimestampMicros(r.released_at()), static_cast<int64_t>(i), r.recipient(),
           static_cast<int64_t>(r.code()), r.text(), r.released_by()});
      if (!q.ok()) return q.status();
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<int> QuarantineStore::Delete(const std::vector<std::string>& ids) {
  int deleted = 0;
  absl::Status s = db_->RunTransaction([&](sql::Transaction& tx) -> absl::Status {
    deleted = 0;
    for (const std::string& id : ids) {
      auto r = tx.Query("DELETE FROM quarantine_entries WHERE id = $1 RETURNING id", {id});
      if (!r.ok()) return r.status();
      deleted += static_cast<int>(r->size());
      for (const char* table : {"quarantine_recipients", "quarantine_messages",
                                "quarantine_releases"}) {
        r = tx.Query(absl::StrCat("DELETE FROM ", table, " WHERE entry_id = $1"), {id});
        if (!r.ok()) return r.status();
      }
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return deleted;
}

absl::StatusOr<int> QuarantineStore::Expire(absl::Time before) {
  // In batches, so one expiry never holds the write lock for long.
  int total = 0;
  for (;;) {
    auto rows = db_->Query(
        "SELECT id FROM quarantine_entries WHERE stored_at < $1 ORDER BY stored_at LIMIT 500",
        {Micros(before)});
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return total;
    std::vector<std::string> ids;
    for (const sql::Row& row : *rows) ids.push_back(row.text(0));
    auto n = Delete(ids);
    if (!n.ok()) return n.status();
    total += *n;
    if (rows->size() < 500) return total;
  }
}

}  // namespace sagator::quarantine
