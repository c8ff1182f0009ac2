// spamassassind(): asks SpamAssassin's spamd about each message (protocol
// SPAMC/1.5: SYMBOLS, or PROCESS with filter) and gives SAGATOR's result: the name
// SPAM, level = score / required (required: reqspamlevel, else spamd's), and the
// score and rule names as output. Messages over sa_max_file are "not scanned".
// With filter, the message is replaced by SpamAssassin's rewritten one.
//
// The spamd user: the one recipient's local part when its domain matches
// mydestination, the whole address when it matches virtual_users, else sa_user.
//
// spamd down, slow past the timeout or the scan's deadline, or answering an error is
// an error (TEMPFAIL unless alternatives/recover handle it). Thread-safe.
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_SPAMD_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_SPAMD_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "re2/re2.h"
#include "sagator/config/v1/config.pb.h"
#include "scanner-svc/engine/scanner.h"
#include "scanner-svc/scanners/daemon_io.h"

namespace sagator::scanners {

class SpamdScanner final : public engine::Scanner {
 public:
  static absl::StatusOr<std::unique_ptr<SpamdScanner>> Create(
      const config::v1::SpamassassindSpec& spec,
      const std::function<std::string(absl::string_view)>& resolve_path);

  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override { return "spamassassind()"; }

  // The spamd user for an envelope (see the header comment).
  std::string UserFor(const engine::MessageEnvelope& envelope) const;

 private:
  SpamdScanner() = default;

  daemon_io::Address address_;
  config::v1::SpamassassindSpec spec_;
  absl::Duration timeout_;
  std::unique_ptr<RE2> mydestination_;
  std::unique_ptr<RE2> virtual_users_;
};

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_SPAMD_H_
