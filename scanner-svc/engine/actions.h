// SAGATOR's interscanners that shape what happens to a message rather than detect:
// recover, retry, modify_subject, modify_header, check_level, custom_action, cache,
// and the wrapper of the scanners that act once the chain has decided (log, report).
// Each wraps inner scanners built by the chain builder.
#ifndef SAGATOR_SCANNER_SVC_ENGINE_ACTIONS_H_
#define SAGATOR_SCANNER_SVC_ENGINE_ACTIONS_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "re2/re2.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::engine {

// recover(scanners): an error of the inner scanners becomes `on_error` (with the
// error in its output) instead of TEMPFAIL.
class Recover final : public Scanner {
 public:
  Recover(double level, std::string name, ScannerPtr inner)
      : level_(level), name_(std::move(name)), inner_(std::move(inner)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  double level_;
  std::string name_;
  ScannerPtr inner_;
};

// retry(scanners): up to `count` runs while the inner scanners fail, `delay` apart;
// a cancelled or expired scan stops at once.
class Retry final : public Scanner {
 public:
  Retry(int count, absl::Duration delay, ScannerPtr inner)
      : count_(count), delay_(delay), inner_(std::move(inner)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  int count_;
  absl::Duration delay_;
  ScannerPtr inner_;
};

// modify_subject(scanners): a detection matching `onlyif` puts `prefix` (a template)
// in front of the Subject.
class ModifySubject final : public Scanner {
 public:
  ModifySubject(std::string prefix, std::unique_ptr<RE2> onlyif, ScannerPtr inner)
      : prefix_(std::move(prefix)), onlyif_(std::move(onlyif)), inner_(std::move(inner)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::string prefix_;
  std::unique_ptr<RE2> onlyif_;
  ScannerPtr inner_;
};

// modify_header(scanners): a detection matching `onlyif` replaces (or removes) a header.
class ModifyHeader final : public Scanner {
 public:
  ModifyHeader(std::string name, std::string value, bool remove, std::unique_ptr<RE2> onlyif,
               ScannerPtr inner)
      : name_(std::move(name)),
        value_(std::move(value)),
        remove_(remove),
        onlyif_(std::move(onlyif)),
        inner_(std::move(inner)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::string name_;
  std::string value_;
  bool remove_;
  std::unique_ptr<RE2> onlyif_;
  ScannerPtr inner_;
};

// check_level(test, levels): runs the branch with the highest minimum at or below
// the test's level; no branch: the test's result.
class CheckLevel final : public Scanner {
 public:
  CheckLevel(ScannerPtr test, std::vector<std::pair<double, ScannerPtr>> branches);
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  ScannerPtr test_;
  std::vector<std::pair<double, ScannerPtr>> branches_;  // highest minimum first
};

// custom_action(scanners): a detection matching `onlyif` gets this disposition and
// reply text.
class CustomAction final : public Scanner {
 public:
  enum class Disposition { kReject, kDrop, kTempfail, kDeliver };
  CustomAction(Disposition disposition, std::string reply, std::unique_ptr<RE2> onlyif,
               ScannerPtr inner)
      : disposition_(disposition),
        reply_(std::move(reply)),
        onlyif_(std::move(onlyif)),
        inner_(std::move(inner)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  Disposition disposition_;
  std::string reply_;
  std::unique_ptr<RE2> onlyif_;
  ScannerPtr inner_;
};

// cache('VAR', scanners): the inner scanners run once per message for `name`.
class Cache final : public Scanner {
 public:
  Cache(std::string name, ScannerPtr inner) : name_(std::move(name)), inner_(std::move(inner)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::string name_;
  ScannerPtr inner_;
};

// log/log_sql/report(scanners): runs the inner scanners and asks for `finisher` to
// run once the chain has decided: for every message when `onlyif` is null, else
// only for detections whose name onlyif finds. The result passes through.
class FinishAfter final : public Scanner {
 public:
  FinishAfter(std::string kind, std::shared_ptr<const Finisher> finisher,
              std::unique_ptr<RE2> onlyif, ScannerPtr inner)
      : kind_(std::move(kind)),
        finisher_(std::move(finisher)),
        onlyif_(std::move(onlyif)),
        inner_(std::move(inner)) {}
  absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const override;
  std::string Describe() const override;
  // Asks for the finisher when `r` passes onlyif, as Scan does with its inner
  // scanners' result. For a message no scanner saw (too large), `r` is the chain's.
  void RequestFinish(ScanContext& ctx, const ScanResult& r) const;

 private:
  std::string kind_;
  std::shared_ptr<const Finisher> finisher_;
  std::unique_ptr<RE2> onlyif_;
  ScannerPtr inner_;
};

}  // namespace sagator::engine

#endif  // SAGATOR_SCANNER_SVC_ENGINE_ACTIONS_H_
