// report(recipients, msg, scanners) and report_recipients: a notification mail,
// made from a SAGATOR template, sent through an SMTP relay once the chain has decided
// (so %(STATUS)s and %(QNAME)s are known).
//
//   ReportOptions o;
//   o.recipients = {"%(SENDER)s", "postmaster@example.com"};
//   auto report = std::make_shared<Report>(o);
//   engine::FinishAfter scanner("report", report, std::move(onlyif), std::move(inner));
//
// The notification is rendered when the chain has decided and sent by a background
// thread of its own, so a slow relay never holds up mail; at most `max_queued` wait
// (more are dropped, with a warning). A relay that is down or refuses is logged as a
// warning; the message's own outcome stands. A message with the null sender gets no
// %(SENDER)s report (no backscatter to bounces).
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_REPORT_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_REPORT_H_

#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::scanners {

// SAGATOR's default notification (report.MSG_TMPL).
extern const char kDefaultReportTemplate[];

struct ReportOptions {
  // May use %(SENDER)s. Ignored when to_envelope_recipients.
  std::vector<std::string> recipients;
  // report_recipients: the message's own envelope recipients get it.
  bool to_envelope_recipients = false;
  std::string from = "postmaster@localhost";
  // Header lines, an empty line, the body; empty: kDefaultReportTemplate.
  std::string template_text;
  std::string relay = "127.0.0.1:10025";
  absl::Duration timeout = absl::Seconds(30);
  std::string helo_name = "localhost";
  // Most bytes of the body given as %(MSG_BODY)s.
  int64_t max_body = 64 << 10;
  // Notifications waiting for the relay at most.
  size_t max_queued = 1000;
};

class Report final : public engine::Finisher {
 public:
  explicit Report(ReportOptions options);
  // Sends what is queued (each send bounded by options.timeout), then stops.
  ~Report() override;
  // Renders the notification and queues it for sending.
  void Finish(const engine::Decision& d, const engine::ScanResult& trigger) const override;

  // The notification's recipients for this message (duplicates and empty ones
  // dropped).
  std::vector<std::string> Recipients(const engine::Decision& d) const;
  // The template variables for this message.
  std::map<std::string, std::string> Variables(const engine::Decision& d,
                                               const engine::ScanResult& trigger,
                                               const std::vector<std::string>& to) const;
  // The notification, CRLF line ends, with Date, Message-ID and MIME headers added
  // when the template has none.
  std::string Render(const engine::Decision& d, const engine::ScanResult& trigger,
                     const std::vector<std::string>& to) const;
  // Sends one notification now; FailedPrecondition for a permanent refusal,
  // Unavailable else.
  absl::Status Send(const std::vector<std::string>& to, const std::string& text) const;

 private:
  struct Pending {
    std::string id;
    std::vector<std::string> to;
    std::string text;
  };
  void Work();

  const ReportOptions options_;
  mutable absl::Mutex mu_;
  mutable std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_REPORT_H_
