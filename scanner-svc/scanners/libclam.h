// libclam(): ClamAV's engine in-process. One ClamEngine is loaded per database set
// when scanner-svc starts and shared (read-only) by every scan thread; messages are
// scanned straight from memory (cl_fmap_open_memory), with no temporary file of ours.
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_LIBCLAM_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_LIBCLAM_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scanner-svc/engine/scanner.h"

struct cl_engine;

namespace sagator::scanners {

// A compiled libclamav engine. Thread-safe for scanning once created.
class ClamEngine {
 public:
  struct Options {
    // Folders or files to try in order; the first that exists and loads is used.
    std::vector<std::string> databases;
    bool disable_cache = false;
    absl::Duration max_scan_time = absl::Seconds(120);
    // Largest object libclamav looks at; set above the message size limit so a large
    // message is never skipped as if clean.
    int64_t max_file_size = 100 << 20;
  };

  static absl::StatusOr<std::shared_ptr<ClamEngine>> Load(const Options& options);
  ~ClamEngine();
  ClamEngine(const ClamEngine&) = delete;
  ClamEngine& operator=(const ClamEngine&) = delete;

  // Scans a buffer. Returns the detection name, empty when clean; an error when
  // libclamav fails.
  absl::StatusOr<std::string> ScanBuffer(absl::string_view data, bool parse_mail) const;

  // The database actually loaded and its signature count.
  const std::string& database() const { return database_; }
  unsigned int signatures() const { return signatures_; }

 private:
  ClamEngine() = default;
  cl_engine* engine_ = nullptr;
  std::string database_;
  unsigned int signatures_ = 0;
};

// The scanner node: shares one ClamEngine.
class LibclamScanner final : public engine::Scanner {
 public:
  LibclamScanner(std::shared_ptr<const ClamEngine> engine, bool parse_mail)
      : engine_(std::move(engine)), parse_mail_(parse_mail) {}
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override { return "libclam()"; }

 private:
  std::shared_ptr<const ClamEngine> engine_;
  bool parse_mail_;
};

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_LIBCLAM_H_
