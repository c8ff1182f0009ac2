// parsemail(scanners): parses the message's MIME structure with GMime and runs the
// inner scanners on every decoded part and attachment (base64, quoted-printable and
// uuencode transfer encodings undone, attached messages opened), each with its
// file name and content type in ScanContext::part(). The first detection decides.
//
// Decoding happens in memory: no temporary files, which is what makes
// parsemail(libclam) faster than libclamav parsing the mail itself.
//
// Limits: more than max_parts parts, or nesting deeper than max_depth, gives a
// "not scanned" result (never "clean") for what was left. A message GMime cannot
// parse at all is given to the inner scanners whole.
//
// Thread-safe.
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_PARSEMAIL_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_PARSEMAIL_H_

#include <string>

#include "absl/status/statusor.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::scanners {

class Parsemail final : public engine::Scanner {
 public:
  Parsemail(engine::ScannerPtr inner, int max_parts, int max_depth);
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  engine::ScannerPtr inner_;
  int max_parts_;
  int max_depth_;
};

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_PARSEMAIL_H_
