// SAGATOR's interscanners that need no outside resource: alternatives, match_any,
// match_all, drop, deliver, rename, add_header, and `chain` (runs a named chain).
// Each wraps inner scanners built elsewhere (see builder.h).
#ifndef SAGATOR_SCANNER_SVC_ENGINE_COMBINATORS_H_
#define SAGATOR_SCANNER_SVC_ENGINE_COMBINATORS_H_

#include <memory>
#include <string>
#include <vector>

#include "re2/re2.h"
#include "common/stats.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::engine {

// Runs a list of scanners in order; the first detection decides, an error stops the
// list. When all are clean, the result is clean and carries the highest level seen.
// This is both a chain's top level and the body of drop/deliver/rename/add_header.
class Sequence final : public Scanner {
 public:
  explicit Sequence(std::vector<ScannerPtr> scanners) : scanners_(std::move(scanners)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;  // "a(), b()"
  // An error stops the list, so a WouldWaitError comes back as it is.
  bool HonorsMemoryOnly() const override;

 private:
  std::vector<ScannerPtr> scanners_;
};

// alternatives(s1, s2, ...): the first scanner that does not fail decides.
class Alternatives final : public Scanner {
 public:
  explicit Alternatives(std::vector<ScannerPtr> s) : scanners_(std::move(s)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::vector<ScannerPtr> scanners_;
};

// match_any(...): detected when any inner scanner detects (the first one wins);
// an error counts only when no scanner detects.
class MatchAny final : public Scanner {
 public:
  explicit MatchAny(std::vector<ScannerPtr> s) : scanners_(std::move(s)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::vector<ScannerPtr> scanners_;
};

// match_all(...): detected only when every inner scanner detects; the result has the
// lowest level and the first scanner's name.
class MatchAll final : public Scanner {
 public:
  explicit MatchAll(std::vector<ScannerPtr> s) : scanners_(std::move(s)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::vector<ScannerPtr> scanners_;
};

// drop(pattern, scanners) and deliver(pattern, scanners): when the inner result is a
// detection whose name matches `pattern`, set the context's drop/deliver flag.
class FlagOnMatch final : public Scanner {
 public:
  enum class Flag { kDrop, kDeliver };
  FlagOnMatch(Flag flag, std::unique_ptr<RE2> pattern, ScannerPtr inner)
      : flag_(flag), pattern_(std::move(pattern)), inner_(std::move(inner)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  Flag flag_;
  std::unique_ptr<RE2> pattern_;
  ScannerPtr inner_;
};

// rename(newname, scanners).multiplier(MP): renames a detection and scales its level.
class Rename final : public Scanner {
 public:
  Rename(std::string name_template, double multiplier, ScannerPtr inner)
      : template_(std::move(name_template)), multiplier_(multiplier), inner_(std::move(inner)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::string template_;
  double multiplier_;
  ScannerPtr inner_;
};

// add_header(name, data, scanners).onlyif(pattern): adds a header for a detection
// whose name matches `onlyif`. The result passes through unchanged.
class AddHeader final : public Scanner {
 public:
  AddHeader(std::string name, std::string data, std::unique_ptr<RE2> onlyif, ScannerPtr inner)
      : name_(std::move(name)),
        data_(std::move(data)),
        onlyif_(std::move(onlyif)),
        inner_(std::move(inner)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::string name_;
  std::string data_;
  std::unique_ptr<RE2> onlyif_;
  ScannerPtr inner_;
};

// status(prefix, scanners): when the inner scanners detect, adds 1 to the stat
// status_count{prefix} and the message size to status_bytes{prefix} (SAGATOR's
// "<prefix>-count" and "<prefix>-bytes"). The prefix may use %(VIRNAME)s. The result
// passes through unchanged.
class CountDetections final : public Scanner {
 public:
  CountDetections(std::string prefix, stats::Registry* registry, ScannerPtr inner);
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::string prefix_;
  stats::Registry* registry_;
  // For a prefix without a template, looked up once.
  stats::Counter* count_ = nullptr;
  stats::Counter* bytes_ = nullptr;
  ScannerPtr inner_;
};

// quarantine(scanners): when the inner scanners detect, asks the chain runner to
// store the message in `sink` once the chain has decided. The result passes through
// unchanged (with the path "quarantine(...)").
class Quarantine final : public Scanner {
 public:
  Quarantine(std::shared_ptr<const QuarantineSink> sink, ScannerPtr inner)
      : sink_(std::move(sink)), inner_(std::move(inner)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::shared_ptr<const QuarantineSink> sink_;
  ScannerPtr inner_;
};

// Counts the runs of one realscanner in the stat scans{scanner, result} with result
// clean, detected or error; the scanner's result passes through unchanged.
class CountScans final : public Scanner {
 public:
  CountScans(std::string kind, stats::Registry* registry, ScannerPtr inner);
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override { return inner_->Describe(); }
  bool HonorsMemoryOnly() const override { return inner_->HonorsMemoryOnly(); }

 private:
  stats::Counter* clean_;
  stats::Counter* detected_;
  stats::Counter* error_;
  ScannerPtr inner_;
};

// Expands %(VIRNAME)s, %(LEVEL)s, %(STARS)s, and the short forms %V, %L, %S
// (scanner path) in a template.
std::string ExpandTemplate(absl::string_view tmpl, const ScanResult& r);

}  // namespace sagator::engine

#endif  // SAGATOR_SCANNER_SVC_ENGINE_COMBINATORS_H_
