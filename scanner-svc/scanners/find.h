// regexp_find and sql_find: SAGATOR's per-recipient scanner configuration. Each
// envelope recipient selects a named scanner set (by regular expressions, or by an
// SQL table an administrator edits while the service runs); each selected set runs
// once on the message, in the order of the recipients, and the first detection
// decides (else the highest level). Recipients that select nothing are not scanned
// here; a message without recipients (sgscan) uses the default set.
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_FIND_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_FIND_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/sql.h"
#include "re2/re2.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::scanners {

// The set a recipient selects; "" for none (the default set applies).
using SetLookup = std::function<absl::StatusOr<std::string>(const std::string& recipient)>;

class FindRouter final : public engine::Scanner {
 public:
  FindRouter(std::string kind, SetLookup lookup, std::map<std::string, engine::ScannerPtr> sets,
             std::string default_set)
      : kind_(std::move(kind)),
        lookup_(std::move(lookup)),
        sets_(std::move(sets)),
        default_(std::move(default_set)) {}
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::string kind_;
  SetLookup lookup_;
  std::map<std::string, engine::ScannerPtr> sets_;
  std::string default_;
};

// regexp_find's lookup: the first pattern (case-insensitive, searched) that finds
// the recipient names its set.
SetLookup RegexpLookup(std::vector<std::pair<std::unique_ptr<RE2>, std::string>> rules);

// sql_find's table: scanner_sets(address, set_name), where address is a lower-case
// "user@example.com" or "@example.com".
class ScannerSetTable {
 public:
  static absl::StatusOr<std::shared_ptr<ScannerSetTable>> Open(std::shared_ptr<sql::Database> db);
  // The set of `recipient`: its address first, then its domain; "" when neither.
  absl::StatusOr<std::string> Lookup(const std::string& recipient) const;
  absl::Status Set(const std::string& address, const std::string& set_name);
  absl::Status Remove(const std::string& address);
  // address -> set, ordered.
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List() const;

 private:
  explicit ScannerSetTable(std::shared_ptr<sql::Database> db) : db_(std::move(db)) {}
  std::shared_ptr<sql::Database> db_;
};

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_FIND_H_
