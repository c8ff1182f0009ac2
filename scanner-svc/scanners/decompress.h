// decompress(scanners, [depth, files, total size, file size]): unpacks archives with
// libarchive (zip, tar, 7z, cpio, ar, iso9660, rar where libarchive reads it, and
// gzip, bzip2, xz, lzma, zstd compression, also of a single file) and runs the inner
// scanners on every member, with its path in ScanContext::part(). Archives inside
// archives are opened too, down to max_depth. Data that is not an archive goes to
// the inner scanners as it is, so decompress(libclam) scans everything once.
//
// SAGATOR's four limits: nesting depth, member count, total unpacked size and the
// size of one member. Members are read in bounded chunks, so a zip bomb costs at
// most max_file_size of memory per level and stops at max_total_size. Going over a
// limit, or a member that cannot be read (encrypted, damaged), ends in an explicit
// "not scanned: archive limit ..." result, or in a detection named limit_detection
// when that is set; never in "clean".
//
// Thread-safe.
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_DECOMPRESS_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_DECOMPRESS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::scanners {

struct DecompressLimits {
  int max_depth = 3;
  int max_files = 500;
  int64_t max_total_size = 50 << 20;
  int64_t max_file_size = 20 << 20;
  // Empty: going over a limit is "not scanned"; else a detection of this name.
  std::string limit_detection;
};

class Decompress final : public engine::Scanner {
 public:
  Decompress(engine::ScannerPtr inner, DecompressLimits limits)
      : inner_(std::move(inner)), limits_(std::move(limits)) {}
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  engine::ScannerPtr inner_;
  DecompressLimits limits_;
};

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_DECOMPRESS_H_
