// The quarantine's storage: entries (envelope, verdict, subject), their recipients,
// the raw messages and the release history, in SQL (SQLite or PostgreSQL, one
// schema). quarantine-svc serves it over gRPC; tests and the benchmark use it
// directly.
//
//   auto store = QuarantineStore::Open(db);            // migrates the schema
//   absl::StatusOr<std::string> id = (*store)->Store(entry, raw_message, absl::Now());
//   auto page = (*store)->List(request);               // newest first, keyset paging
//
// Searches use indexes: by recipient (the recipients table, newest first), sender,
// and date range; subject and detection substrings use a trigram index (PostgreSQL:
// pg_trgm GIN indexes; SQLite: an FTS5 trigram table kept by triggers), so a rare
// word does not scan the table. Every value is a bound parameter; the statement
// text is put together only from fixed fragments.
//
// Messages are kept base64-encoded in a TEXT column, so arbitrary 8-bit mail fits
// both back ends through one interface.
//
// Thread-safe (the database pools connections).
#ifndef SAGATOR_QUARANTINE_SVC_QUARANTINE_STORE_H_
#define SAGATOR_QUARANTINE_SVC_QUARANTINE_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/sql.h"
#include "sagator/quarantine/v1/quarantine.pb.h"

namespace sagator::quarantine {

namespace v1 = ::sagator::quarantine::v1;

// Page size when a List request gives none, and the most one page may hold.
inline constexpr int kDefaultPageSize = 50;
inline constexpr int kMaxPageSize = 1000;

class QuarantineStore {
 public:
  // Brings the schema up to date (component "quarantine") and returns the store.
  static absl::StatusOr<std::unique_ptr<QuarantineStore>> Open(std::shared_ptr<sql::Database> db);

  // Stores one message with its metadata in one transaction and returns the new id
  // (qm-YYYYMMDD-HHMMSS-RRRRRRRRRRRR). `entry.id` and `stored_at` are ignored; an
  // empty subject or from is read from the message header (RFC 2047 decoded).
  absl::StatusOr<std::string> Store(v1::Entry entry, absl::string_view message, absl::Time now);

  // One page of entries matching `request`, newest first, with recipients and
  // releases. InvalidArgument for a page token this store did not make.
  absl::StatusOr<v1::ListResponse> List(const v1::ListRequest& request) const;

  // One entry; with `message` set, also its raw message. NotFound for an unknown id.
  absl::StatusOr<v1::Entry> Get(absl::string_view id, std::string* message) const;

  // Appends release results to an entry's history.
  absl::Status RecordReleases(absl::string_view id, const std::vector<v1::ReleaseRecord>& records);

  // Deletes entries with everything that belongs to them; returns how many existed.
  absl::StatusOr<int> Delete(const std::vector<std::string>& ids);

  // Deletes every entry stored before `before`; returns how many.
  absl::StatusOr<int> Expire(absl::Time before);

  sql::Database& database() const { return *db_; }

 private:
  explicit QuarantineStore(std::shared_ptr<sql::Database> db) : db_(std::move(db)) {}

  // Fills recipients and releases of the entries of a page (two queries).
  absl::Status AddDetails(std::vector<v1::Entry*> entries) const;

  std::shared_ptr<sql::Database> db_;
};

// The decoded (RFC 2047, UTF-8) value of header `name` of `message`; "" when absent.
std::string DecodedHeader(absl::string_view message, absl::string_view name);

// `text` with every byte sequence that is not UTF-8 replaced by '?', so it fits a
// proto string field.
std::string ValidUtf8(absl::string_view text);

}  // namespace sagator::quarantine

#endif  // SAGATOR_QUARANTINE_SVC_QUARANTINE_STORE_H_
