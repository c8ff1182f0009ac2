#include "scanner-svc/scanners/report.h"

#include <set>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "common/http_server.h"
#include "common/mail_headers.h"
#include "glog/logging.h"
#include "scanner-svc/scanners/logging.h"
#include "services/smtpd/next_hop.h"

namespace sagator::scanners {

const char kDefaultReportTemplate[] =
    "From: %(FROM)s\n"
    "To: %(TO)s\n"
    "Subject: [SAGATOR] %(VIRNAME)s in mail from %(SENDER)s\n"
    "\n"
    "SAGATOR found %(VIRNAME)s in a message; it was %(STATUS)s.\n"
    "\n"
    "  Sender:      %(SENDER)s\n"
    "  Recipients:  %(RECIPIENTS)s\n"
    "  Subject:     %(SUBJECT)s\n"
    "  Client:      %(SENTBY_NAME)s [%(SENTBY_IP)s] HELO %(SENTBY_HELO)s\n"
    "  Scanner:     %(SCANNER_NAME)s\n"
    "  Level:       %(LEVEL)s %(STARS)s\n"
    "  ID:          %(SAGATOR_ID)s\n"
    "  Quarantine:  %(QNAME)s\n"
    "\n"
    "Scanner output:\n"
    "%(SCANNER_OUTPUT)s\n"
    "\n"
    "Header of the message:\n"
    "%(MSG_HEADER)s\n"
    "-- \n"
    "SAGATOR %(VERSION)s\n";

namespace {

// Where the header ends: the offset of the empty line, or the message's size.
size_t HeaderEnd(absl::string_view m, size_t* body_start) {
  for (absl::string_view sep : {"\r\n\r\n", "\n\n"}) {
    size_t at = m.find(sep);
    if (at != absl::string_view::npos) {
      *body_start = at + sep.size();
      return at + sep.size() / 2;
    }
  }
  *body_start = m.size();
  return m.size();
}

}  // namespace

Report::Report(ReportOptions options)
    : options_(std::move(options)), worker_([this] { Work(); }) {}

Report::~Report() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  worker_.join();
}

void Report::Work() {
  while (true) {
    Pending next;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Report* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(r->mu_) {
            return r->stopping_ || !r->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping, nothing left
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    absl::Status s = Send(next.to, next.text);
    if (!s.ok()) LOG(WARNING) << "report for " << next.id << ": " << s;
  }
}

std::vector<std::string> Report::Recipients(const engine::Decision& d) const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  auto add = [&](std::string r) {
    if (!r.empty() && seen.insert(r).second) out.push_back(std::move(r));
  };
  if (options_.to_envelope_recipients) {
    for (const std::string& r : d.envelope->recipients) add(r);
    return out;
  }
  for (const std::string& r : options_.recipients) {
    // The null sender (bounces) gets no notification.
    add(ExpandVariables(r, {{"SENDER", d.envelope->sender}}));
  }
  return out;
}

std::map<std::string, std::string> Report::Variables(const engine::Decision& d,
                                                     const engine::ScanResult& trigger,
                                                     const std::vector<std::string>& to) const {
  const engine::MessageEnvelope& e = *d.envelope;
  size_t body_start = 0;
  size_t header_end = HeaderEnd(d.message, &body_start);
  std::string subject;
  FindHeaderValue(d.message, "Subject", &subject);
  std::string comm = absl::StrCat("MAIL FROM:<", e.sender, ">\n");
  for (const std::string& r : e.recipients) absl::StrAppend(&comm, "RCPT TO:<", r, ">\n");
  absl::string_view body = d.message.substr(body_start);
  return {{"FROM", options_.from},
          {"TO", absl::StrJoin(to, ", ")},
          {"SENDER", e.sender},
          {"RECIPIENTS", absl::StrJoin(e.recipients, ", ")},
          {"VIRNAME", trigger.name},
          {"LEVEL", absl::StrFormat("%.2f", trigger.level)},
          {"STARS", engine::Stars(trigger.level)},
          {"SCANNER_NAME", trigger.path},
          {"SCANNER_OUTPUT", trigger.output},
          {"STATUS", StatusWord(d.outcome)},
          {"QNAME", d.quarantine_id},
          {"QQNAME", net::UrlEncode(d.quarantine_id)},
          {"SAGATOR_ID", d.sagator_id},
          {"SUBJECT", subject},
          {"MSG_HEADER", std::string(d.message.substr(0, header_end))},
          {"MSG_BODY", std::string(body.substr(0, static_cast<size_t>(options_.max_body)))},
          {"SMTP_COMM", comm},
          {"SENTBY_IP", e.client_address},
          {"SENTBY_NAME", e.client_name},
          {"SENTBY_HELO", e.helo},
          {"VERSION", engine::kSagatorVersion},
          {"RANDOM", engine::RandomAlnum(10)}};
}

std::string Report::Render(const engine::Decision& d, const engine::ScanResult& trigger,
                           const std::vector<std::string>& to) const {
  std::map<std::string, std::string> vars = Variables(d, trigger, to);
  std::string tmpl = absl::StrReplaceAll(
      options_.template_text.empty() ? kDefaultReportTemplate : options_.template_text,
      {{"\r\n", "\n"}});
  size_t split = tmpl.find("\n\n");
  std::string head = tmpl.substr(0, split == std::string::npos ? tmpl.size() : split + 1);
  std::string body = split == std::string::npos ? "" : tmpl.substr(split + 2);
  std::map<std::string, std::string> header_vars;
  for (const auto& [k, v] : vars) header_vars[k] = UnfoldLine(v);
  std::string header = ExpandVariables(head, header_vars);
  std::string value;
  auto add = [&](const char* name, std::string v) {
    if (!FindHeaderValue(absl::StrCat(header, "\n"), name, &value)) {
      absl::StrAppend(&header, name, ": ", v, "\n");
    }
  };
  absl::Time now = absl::Now();
  add("Date", Rfc2822Date(now));
  add("Message-ID", absl::StrFormat("<sagator-notice.%d.%s@%s>", absl::ToUnixSeconds(now),
                                    engine::RandomAlnum(10), options_.helo_name));
  add("MIME-Version", "1.0");
  add("Content-Type", "text/plain; charset=utf-8");
  add("Content-Transfer-Encoding", "8bit");
  return CrlfLines(absl::StrCat(header, "\n", ExpandVariables(body, vars)));
}

absl::Status Report::Send(const std::vector<std::string>& to, const std::string& text) const {
  auto hop = smtpd::RelayClient(options_.relay, options_.timeout, options_.helo_name);
  if (!hop.ok()) return hop.status();
  // Envelope sender of a notification: the null sender, so a bounce of it bounces
  // nowhere (no loops between two gateways).
  smtpd::Reply r = smtpd::SendMessage(**hop, "", to, text);
  if (r.positive()) return absl::OkStatus();
  std::string why = absl::StrCat("relay ", options_.relay, ": ", r.code, " ", r.enhanced, " ",
                                 r.text);
  return r.transient() ? absl::UnavailableError(why) : absl::FailedPreconditionError(why);
}

void Report::Finish(const engine::Decision& d, const engine::ScanResult& trigger) const {
  std::vector<std::string> to = Recipients(d);
  if (to.empty()) return;
  Pending p{d.sagator_id, to, Render(d, trigger, to)};
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= options_.max_queued) {
    LOG(WARNING) << "report for " << d.sagator_id << ": dropped, " << queue_.size()
                 << " notifications already wait for relay " << options_.relay;
    return;
  }
  queue_.push_back(std::move(p));
}

}  // namespace sagator::scanners
