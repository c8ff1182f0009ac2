// The scanners that record what the chain decided, once it has: log (one structured
// line in the service's log), log_sql (one row per message in the scan_log table of
// an SQL database) and log_cleanup (deletes old scan_log rows).
//
//   auto log = std::make_shared<ScanLog>(*ScanLog::Open(db));
//   engine::FinishAfter scanner("log_sql", std::make_shared<SqlLogWriter>(log), nullptr,
//                               std::move(inner));
//
// A log that cannot be written is reported as a warning in the service's log: the
// message's own outcome stands (nothing is lost by a full disk or a
// database that is down; the MTA already has its answer).
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_LOGGING_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_LOGGING_H_

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/sql.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::scanners {

// SAGATOR's status word for an outcome: PASSED, DELIVERED, DEFERRED, REJECTED,
// DROPPED.
std::string StatusWord(int outcome);

// The fields recorded for a decided message, in order: id, from, to, client, name,
// helo, size, outcome, status, level, detection, scanner, quarantine.
std::vector<std::pair<std::string, std::string>> DecisionFields(const engine::Decision& d);

// log(scanners): the fields as `key=value` (values with spaces, quotes or `=` in
// double quotes, escaped) on one line of the service's log.
class LogLine final : public engine::Finisher {
 public:
  void Finish(const engine::Decision& d, const engine::ScanResult& trigger) const override;
  static std::string Format(const engine::Decision& d);
};

// The scan_log table (same schema and migrations on SQLite and PostgreSQL).
class ScanLog {
 public:
  static absl::StatusOr<std::unique_ptr<ScanLog>> Open(std::shared_ptr<sql::Database> db);
  absl::Status Insert(const engine::Decision& d, absl::Time at);
  // Deletes the rows logged before `before`; returns how many.
  absl::StatusOr<int64_t> DeleteOlderThan(absl::Time before);
  sql::Database& db() { return *db_; }

 private:
  explicit ScanLog(std::shared_ptr<sql::Database> db) : db_(std::move(db)) {}
  std::shared_ptr<sql::Database> db_;
};

// log_sql(dbc, scanners): one row per message.
class SqlLogWriter final : public engine::Finisher {
 public:
  explicit SqlLogWriter(std::shared_ptr<ScanLog> log) : log_(std::move(log)) {}
  void Finish(const engine::Decision& d, const engine::ScanResult& trigger) const override;

 private:
  std::shared_ptr<ScanLog> log_;
};

// log_cleanup(dbc): deletes rows older than `keep` when `interval` has passed since
// the last cleanup of this scanner; always clean. A failed cleanup is logged and
// tried again at the next interval.
class LogCleanup final : public engine::Scanner {
 public:
  LogCleanup(std::shared_ptr<ScanLog> log, absl::Duration keep, absl::Duration interval)
      : log_(std::move(log)), keep_(keep), interval_(interval) {}
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override { return "log_cleanup()"; }

 private:
  std::shared_ptr<ScanLog> log_;
  absl::Duration keep_;
  absl::Duration interval_;
  // Unix seconds when the next cleanup is due (0: at the first message).
  mutable std::atomic<int64_t> next_{0};
};

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_LOGGING_H_
