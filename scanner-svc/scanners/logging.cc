#include "scanner-svc/scanners/logging.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "sagator/common/v1/common.pb.h"

namespace sagator::scanners {
namespace {

const std::vector<std::string> kScanLogSchema = {
    "CREATE TABLE scan_log ("
    " sagator_id TEXT PRIMARY KEY,"
    " logged_at BIGINT NOT NULL,"  // Unix microseconds
    " sender TEXT NOT NULL,"
    " recipients TEXT NOT NULL,"  // comma-separated
    " client_address TEXT NOT NULL,"
    " client_name TEXT NOT NULL,"
    " helo TEXT NOT NULL,"
    " size BIGINT NOT NULL,"
    " outcome TEXT NOT NULL,"  // PASS, FORCED_PASS, TEMPFAIL, REJECT, DROP
    " status TEXT NOT NULL,"   // PASSED, DELIVERED, DEFERRED, REJECTED, DROPPED
    " level DOUBLE PRECISION NOT NULL,"
    " detection TEXT NOT NULL,"
    " scanner TEXT NOT NULL,"
    " quarantine_id TEXT NOT NULL)",
    "CREATE INDEX scan_log_logged_at ON scan_log (logged_at)",
};

// A log value: bare when it is one plain word, else quoted with \ escapes.
std::string Quote(absl::string_view v) {
  bool plain = !v.empty();
  for (char c : v) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) plain = false;
  }
  if (plain) return std::string(v);
  std::string out = "\"";
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < ' ' || c == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace

std::string StatusWord(int outcome) {
  switch (outcome) {
    case common::v1::PASS: return "PASSED";
    case common::v1::FORCED_PASS: return "DELIVERED";
    case common::v1::REJECT: return "REJECTED";
    case common::v1::DROP: return "DROPPED";
    default: return "DEFERRED";
  }
}

std::vector<std::pair<std::string, std::string>> DecisionFields(const engine::Decision& d) {
  const engine::MessageEnvelope& e = *d.envelope;
  const engine::ScanResult& r = *d.result;
  std::string outcome = common::v1::Outcome_IsValid(d.outcome)
                            ? common::v1::Outcome_Name(static_cast<common::v1::Outcome>(d.outcome))
                            : absl::StrCat(d.outcome);
  return {{"id", d.sagator_id},
          {"from", e.sender},
          {"to", absl::StrJoin(e.recipients, ",")},
          {"client", e.client_address},
          {"name", e.client_name},
          {"helo", e.helo},
          {"size", absl::StrCat(d.size)},
          {"outcome", outcome},
          {"status", StatusWord(d.outcome)},
          {"level", absl::StrFormat("%.2f", r.level)},
          {"detection", r.name},
          {"scanner", r.path},
          {"quarantine", d.quarantine_id}};
}

std::string LogLine::Format(const engine::Decision& d) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : DecisionFields(d)) {
    if (v.empty() && k != "from") continue;
    parts.push_back(absl::StrCat(k, "=", v.empty() ? "\"\"" : Quote(v)));
  }
  return absl::StrCat("scan ", absl::StrJoin(parts, " "));
}

void LogLine::Finish(const engine::Decision& d, const engine::ScanResult&) const {
  LOG(INFO) << Format(d);
}

absl::StatusOr<std::unique_ptr<ScanLog>> ScanLog::Open(std::shared_ptr<sql::Database> db) {
  absl::Status s = sql::Migrate(*db, "scan_log", kScanLogSchema);
  if (!s.ok()) return s;
  return std::unique_ptr<ScanLog>(new ScanLog(std::move(db)));
}

absl::Status ScanLog::Insert(const engine::Decision& d, absl::Time at) {
  sql::Params params = {absl::ToUnixMicros(at)};
  for (const auto& [k, v] : DecisionFields(d)) {
    if (k == "size") {
      params.push_back(d.size);
    } else if (k == "level") {
      params.push_back(absl::StrFormat("%.6f", d.result->level));
    } else {
      params.push_back(v);
    }
  }
  return db_
      ->Query("INSERT INTO scan_log (logged_at, sagator_id, sender, recipients, client_address,"
              " client_name, helo, size, outcome, status, level, detection, scanner,"
              " quarantine_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
              " $14) ON CONFLICT (sagator_id) DO NOTHING",
              params)
      .status();
}

absl::StatusOr<int64_t> ScanLog::DeleteOlderThan(absl::Time before) {
  auto rows = db_->Query("DELETE FROM scan_log WHERE logged_at < $1 RETURNING sagator_id",
                         {absl::ToUnixMicros(before)});
  if (!rows.ok()) return rows.status();
  return static_cast<int64_t>(rows->size());
}

void SqlLogWriter::Finish(const engine::Decision& d, const engine::ScanResult&) const {
  absl::Status s = log_->Insert(d, absl::Now());
  if (!s.ok()) LOG(WARNING) << "log_sql: message " << d.sagator_id << " not logged: " << s;
}

absl::StatusOr<engine::ScanResult> LogCleanup::Scan(engine::ScanContext&) const {
  int64_t now = absl::ToUnixSeconds(absl::Now());
  int64_t due = next_.load(std::memory_order_relaxed);
  // One scan thread cleans; the others go on.
  if (now >= due && next_.compare_exchange_strong(
                        due, now + absl::ToInt64Seconds(interval_), std::memory_order_relaxed)) {
    absl::StatusOr<int64_t> n = log_->DeleteOlderThan(absl::Now() - keep_);
    if (!n.ok()) {
      LOG(WARNING) << "log_cleanup: " << n.status();
    } else if (*n > 0) {
      LOG(INFO) << "log_cleanup: deleted " << *n << " scan_log rows older than "
                << absl::FormatDuration(keep_);
    }
  }
  return engine::ScanResult::Clean(Describe());
}

}  // namespace sagator::scanners
