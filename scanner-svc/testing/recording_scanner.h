// RecordingScanner: a scanner for tests of container scanners (parsemail,
// decompress). It detects EICAR's test string as "EICAR" and records every part it
// was given, with its PartInfo, so a test can check what the container unpacked;
// on_scan, when set, also sees each context (adapters such as buffer2file).
// Not thread-safe: one scan at a time.
#ifndef SAGATOR_SCANNER_SVC_TESTING_RECORDING_SCANNER_H_
#define SAGATOR_SCANNER_SVC_TESTING_RECORDING_SCANNER_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::testing {

class RecordingScanner final : public engine::Scanner {
 public:
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override {
    if (on_scan) on_scan(ctx);
    seen.push_back(ctx.part().value_or(engine::PartInfo{"<whole>", "", 0}));
    data.emplace_back(ctx.message());
    if (absl::StrContains(ctx.message(), "EICAR-STANDARD-ANTIVIRUS-TEST-FILE")) {
      return engine::ScanResult::Detected(1.0, "EICAR", "recorder()");
    }
    return engine::ScanResult::Clean("recorder()");
  }
  std::string Describe() const override { return "recorder()"; }

  mutable std::vector<engine::PartInfo> seen;
  mutable std::vector<std::string> data;
  std::function<void(engine::ScanContext&)> on_scan;
};

}  // namespace sagator::testing

#endif  // SAGATOR_SCANNER_SVC_TESTING_RECORDING_SCANNER_H_
