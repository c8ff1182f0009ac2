// rspamd(address): asks a running rspamd over its HTTP protocol (POST /checkv2, the
// message as the body, the envelope as the From, Rcpt, IP, Helo and Hostname
// headers). The level is score / required_score (rspamd's reject threshold), so a
// message rspamd would reject is detected; the detection name is `name` ("SPAM").
// With apply_edits, rspamd's header additions and removals (its "milter" block) and
// its subject rewrite become header edits, whatever the level.
//
// Errors: rspamd down, a non-200 reply, or JSON that is not rspamd's is an error
// (TEMPFAIL unless alternatives/recover handle it); rspamd closes the connection
// without a reply for a message over its max_message. A message over max_size is
// "not scanned" without asking.
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_RSPAMD_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_RSPAMD_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "sagator/config/v1/config.pb.h"
#include "scanner-svc/engine/scanner.h"
#include "scanner-svc/scanners/daemon_io.h"

namespace sagator::scanners {

class RspamdScanner final : public engine::Scanner {
 public:
  static absl::StatusOr<std::unique_ptr<RspamdScanner>> Create(
      const config::v1::RspamdSpec& spec,
      const std::function<std::string(absl::string_view)>& resolve_path);

  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override { return "rspamd()"; }

  // The HTTP request for a message (head and body).
  std::string Request(const engine::ScanContext& ctx) const;
  // Interprets rspamd's whole HTTP reply; adds the header edits to ctx when asked.
  absl::StatusOr<engine::ScanResult> Interpret(absl::string_view reply, engine::ScanContext& ctx,
                                               const daemon_io::Bounds& bounds) const;

 private:
  RspamdScanner() = default;

  daemon_io::Address address_;
  config::v1::RspamdSpec spec_;
};

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_RSPAMD_H_
