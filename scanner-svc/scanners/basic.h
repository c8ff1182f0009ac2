// SAGATOR's internal realscanners: const, nothing, max_file_size, string_scan and
// regexp_scan. They need no outside resource and are thread-safe after construction.
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_BASIC_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_BASIC_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "re2/re2.h"
#include "sagator/config/v1/config.pb.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::scanners {

// const(level, name): always this result.
class ConstScanner final : public engine::Scanner {
 public:
  ConstScanner(double level, std::string name) : level_(level), name_(std::move(name)) {}
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override { return "const()"; }
  bool HonorsMemoryOnly() const override { return true; }

 private:
  double level_;
  std::string name_;
};

// nothing(): always clean.
class NothingScanner final : public engine::Scanner {
 public:
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override { return "nothing()"; }
  bool HonorsMemoryOnly() const override { return true; }
};

// max_file_size(bytes): detected when the whole message is larger than `bytes`.
class MaxFileSizeScanner final : public engine::Scanner {
 public:
  MaxFileSizeScanner(int64_t bytes, std::string name) : bytes_(bytes), name_(std::move(name)) {}
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override { return "max_file_size()"; }

 private:
  int64_t bytes_;
  std::string name_;
};

// string_scan / regexp_scan: entries of patterns that must all occur.
class PatternScanner final : public engine::Scanner {
 public:
  // Builds from the config; regexp patterns that do not compile are an error.
  static absl::StatusOr<std::unique_ptr<PatternScanner>> Create(
      const config::v1::StringScanSpec& spec, bool regexp);

  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override {
    return regexp_ ? "regexp_scan()" : "string_scan()";
  }

 private:
  struct Entry {
    std::string name;
    std::vector<std::string> literals;
    std::vector<std::unique_ptr<RE2>> regexps;
  };
  PatternScanner(bool regexp, int64_t size) : regexp_(regexp), size_(size) {}

  bool regexp_;
  int64_t size_;
  std::vector<Entry> entries_;
};

// The header of a message: everything before the first empty line.
absl::string_view MessageHeader(absl::string_view message);

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_BASIC_H_
