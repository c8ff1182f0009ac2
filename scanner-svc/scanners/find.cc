#include "scanner-svc/scanners/find.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sagator::scanners {

absl::StatusOr<engine::ScanResult> FindRouter::Scan(engine::ScanContext& ctx) const {
  // The selected sets, in the order their first recipient came.
  std::vector<std::string> order;
  for (const std::string& rcpt : ctx.envelope().recipients) {
    absl::StatusOr<std::string> set = lookup_(rcpt);
    if (!set.ok()) {
      return absl::Status(set.status().code(),
                          absl::StrCat(kind_, ": recipient ", rcpt, ": ", set.status().message()));
    }
    std::string name = set->empty() ? default_ : *set;
    if (name.empty()) continue;
    if (!sets_.count(name)) {
      // Only the SQL table can name a set the configuration lacks.
      return absl::FailedPreconditionError(absl::StrCat(
          kind_, ": recipient ", rcpt, " selects scanner set '", name, "', which is not configured"));
    }
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
  }
  if (ctx.envelope().recipients.empty() && !default_.empty()) order.push_back(default_);
  engine::ScanResult best = engine::ScanResult::Clean(Describe());
  bool have = false;
  for (const std::string& name : order) {
    if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
    absl::StatusOr<engine::ScanResult> r = sets_.at(name)->Scan(ctx);
    if (!r.ok()) return r;
    if (r->detected()) return engine::Wrap(*std::move(r), kind_);
    if (!have || r->not_scanned > best.not_scanned ||
        (r->not_scanned == best.not_scanned && r->level > best.level)) {
      best = engine::Wrap(*std::move(r), kind_);
      have = true;
    }
  }
  return best;
}

std::string FindRouter::Describe() const {
  std::vector<std::string> parts;
  for (const auto& [name, s] : sets_) parts.push_back(absl::StrCat(name, ": ", s->Describe()));
  return absl::StrCat(kind_, "(", absl::StrJoin(parts, "; "), ")");
}

SetLookup RegexpLookup(std::vector<std::pair<std::unique_ptr<RE2>, std::string>> rules) {
  auto shared = std::make_shared<decltype(rules)>(std::move(rules));
  return [shared](const std::string& rcpt) -> absl::StatusOr<std::string> {
    for (const auto& [re, set] : *shared) {
      if (RE2::PartialMatch(rcpt, *re)) return set;
    }
    return std::string();
  };
}

absl::StatusOr<std::shared_ptr<ScannerSetTable>> ScannerSetTable::Open(
    std::shared_ptr<sql::Database> db) {
  absl::Status s = sql::Migrate(*db, "scanner_sets",
                                {"CREATE TABLE scanner_sets (address TEXT PRIMARY KEY,"
                                 " set_name TEXT NOT NULL)"});
  if (!s.ok()) return s;
  return std::shared_ptr<ScannerSetTable>(new ScannerSetTable(std::move(db)));
}

absl::StatusOr<std::string> ScannerSetTable::Lookup(const std::string& recipient) const {
  std::string address = absl::AsciiStrToLower(recipient);
  size_t at = address.rfind('@');
  std::string domain = at == std::string::npos ? "" : address.substr(at);
  auto rows = db_->Query("SELECT address, set_name FROM scanner_sets WHERE address IN ($1, $2)",
                         {address, domain});
  if (!rows.ok()) return rows.status();
  std::string found;
  for (const sql::Row& row : *rows) {
    if (row.text(0) == address) return row.text(1);
    found = row.text(1);
  }
  return found;
}

absl::Status ScannerSetTable::Set(const std::string& address, const std::string& set_name) {
  return db_
      ->Query("INSERT INTO scanner_sets (address, set_name) VALUES ($1, $2) ON CONFLICT"
              " (address) DO UPDATE SET set_name = excluded.set_name",
              {absl::AsciiStrToLower(address), set_name})
      .status();
}

absl::Status ScannerSetTable::Remove(const std::string& address) {
  return db_->Query("DELETE FROM scanner_sets WHERE address = $1", {absl::AsciiStrToLower(address)})
      .status();
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ScannerSetTable::List() const {
  auto rows = db_->Query("SELECT address, set_name FROM scanner_sets ORDER BY address", {});
  if (!rows.ok()) return rows.status();
  std::vector<std::pair<std::string, std::string>> out;
  for (const sql::Row& row : *rows) out.emplace_back(row.text(0), row.text(1));
  return out;
}

}  // namespace sagator::scanners
