// The reporter: SAGATOR's daily quarantine digests. Each run lists what was
// quarantined since the last run (through quarantine-svc's List), gives every
// recipient's items to that recipient (or to the target of the first `groups` rule
// that matches, or to nobody), renders the begin/body/end templates and mails one
// digest per target through an SMTP relay. Each item links to webq and carries a
// signed one-click release link for its recipient.
//
//   Reporter reporter(options, stub.get(), signer);
//   absl::StatusOr<ReportRun> run = reporter.Run(absl::Now());
//
// A run that could not send every digest does not move the state file on, so the
// next run reports the same period again (a digest twice rather than never).
//
// Not thread-safe: one run at a time (it is a cron job).
#ifndef SAGATOR_QUARANTINE_SVC_REPORTER_H_
#define SAGATOR_QUARANTINE_SVC_REPORTER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/config.h"
#include "quarantine-svc/signing.h"
#include "re2/re2.h"
#include "sagator/quarantine/v1/quarantine.grpc.pb.h"

namespace sagator::quarantine {

struct ReporterOptions {
  std::string begin, body, end;
  std::vector<std::shared_ptr<RE2>> include, exclude;
  // (pattern, target); an empty target drops the items.
  std::vector<std::pair<std::shared_ptr<RE2>, std::string>> groups;
  std::string webq_url;  // no trailing slash
  std::string from;
  std::string relay;
  absl::Duration relay_timeout = absl::Seconds(60);
  std::string helo_name = "localhost";
  std::string state_file;
  absl::Duration first_period = absl::Hours(24);
  absl::Duration link_validity = absl::Hours(24 * 7);
  // Print the digests instead of sending them; the state file is left alone.
  bool dry_run = false;
};

// The options of a reporter entry, with the quarantine service it reports on (webq
// URL and key, relay); errors name the file and the key.
absl::StatusOr<ReporterOptions> ReporterOptionsFromConfig(
    const LoadedConfig& config, const config::v1::ReporterService& spec,
    const config::v1::QuarantineSvcService& quarantine);

// One rendered digest.
struct Digest {
  std::string to;
  int items = 0;
  std::string message;
};

struct ReportRun {
  absl::Time since, until;
  std::vector<Digest> digests;
  int sent = 0;
};

class Reporter {
 public:
  Reporter(ReporterOptions options, v1::QuarantineService::StubInterface* quarantine,
           Signer signer);

  // Reports the entries stored since the state file's time (or first_period ago)
  // and before `now`; Unavailable when quarantine-svc or the relay failed.
  absl::StatusOr<ReportRun> Run(absl::Time now);

  // The digests for `entries` (no sending); exposed for tests.
  std::vector<Digest> Render(const std::vector<v1::Entry>& entries, absl::Time now) const;

 private:
  absl::Status Send(const Digest& digest) const;

  const ReporterOptions options_;
  v1::QuarantineService::StubInterface* quarantine_;
  const Signer signer_;
};

}  // namespace sagator::quarantine

#endif  // SAGATOR_QUARANTINE_SVC_REPORTER_H_
