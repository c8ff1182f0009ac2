#include "services/milter/milter_session.h"

#include <glog/logging.h>

#include <algorithm>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/time_util.h"
#include "common/config.h"

namespace sagator::milter {
namespace {

using Action = MilterReply::Action;


// "<a@example.org>" (maybe with spaces around) → "a@example.org"; "<>" → "".
std::string StripAngles(absl::string_view address) {
  absl::string_view a = absl::StripAsciiWhitespace(address);
  if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
  return std::string(absl::StripAsciiWhitespace(a));
}

// A header value as the MTA sent it, with every line end made CRLF.
std::string CrlfValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\r') continue;
    if (c == '\n') out.push_back('\r');
    out.push_back(c);
  }
  return out;
}

std::atomic<int64_t> next_session_id{1};

}  // namespace

MilterOptions OptionsFromConfig(const config::v1::Config& config,
                                const config::v1::MilterService& service) {
  MilterOptions o;
  o.filter_name = service.name();
  o.connection = service.connection();
  o.umask = service.umask();
  o.chain = service.scanners();
  o.recipient_policy = service.recipient_policy();
  o.fail_open = service.fail_open();
  o.progress_interval = ToDuration(service.progress_interval());
  o.max_message_size = config.global().max_message_size();
  o.not_scanned_outcome = config.global().not_scanned_outcome();
  o.scan_timeout = ToDuration(config.global().scan_timeout());
  o.policy_timeout = std::min(o.scan_timeout, absl::Seconds(20));
  return o;
}

absl::Status ValidateConnection(absl::string_view connection) {
  absl::string_view rest = connection;
  if (absl::ConsumePrefix(&rest, "unix:") || absl::ConsumePrefix(&rest, "local:")) {
    if (rest.empty() || rest.front() != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("connection '", connection, "': a unix socket needs an absolute path"));
    }
    if (rest.size() > 107) {
      return absl::InvalidArgumentError(
          absl::StrCat("connection '", connection, "': the socket path is over 107 bytes"));
    }
    return absl::OkStatus();
  }
  if (absl::ConsumePrefix(&rest, "inet:") || absl::ConsumePrefix(&rest, "inet6:")) {
    size_t at = rest.find('@');
    int port = 0;
    if (at == absl::string_view::npos || at + 1 >= rest.size() ||
        !absl::SimpleAtoi(rest.substr(0, at), &port) || port < 1 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          "connection '", connection, "': expected inet:PORT@HOST or inet6:PORT@HOST"));
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "connection '", connection, "': expected inet:PORT@HOST, inet6:PORT@HOST or unix:/path"));
}

std::string MilterCounters::ToString() const {
  std::string out;
#define SAGATOR_MILTER_FIELD(name, help) \
  absl::StrAppend(&out, out.empty() ? "" : " ", #name, "=", name);
  SAGATOR_MILTER_COUNTERS(SAGATOR_MILTER_FIELD)
#undef SAGATOR_MILTER_FIELD
  return out;
}

MilterCounters MilterStats::Snapshot() const {
  MilterCounters c;
#define SAGATOR_MILTER_FIELD(name, help) c.name = name.load(std::memory_order_relaxed);
  SAGATOR_MILTER_COUNTERS(SAGATOR_MILTER_FIELD)
#undef SAGATOR_MILTER_FIELD
  return c;
}

bool ScanWorkers::Pending::WaitFor(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
  return done_;
}

FilterDecision ScanWorkers::Pending::Take() {
  absl::MutexLock lock(&mu_);
  return std::move(result_);
}

ScanWorkers::~ScanWorkers() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  auto gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return threads_ == 0; };
  mu_.Await(absl::Condition(&gone));
}

std::shared_ptr<ScanWorkers::Pending> ScanWorkers::Start(std::function<FilterDecision()> scan) {
  auto pending = std::make_shared<Pending>();
  std::function<void()> job = [pending, scan = std::move(scan)]() mutable {
    FilterDecision d = scan();
    scan = nullptr;  // releases the message before the waiter wakes
    absl::MutexLock lock(&pending->mu_);
    pending->result_ = std::move(d);
    pending->done_ = true;
  };
  absl::MutexLock lock(&mu_);
  ++running_;
  queue_.push_back(std::move(job));
  if (queue_.size() > static_cast<size_t>(idle_)) {
    // Every worker is busy: one more, so that no scan waits for another.
    ++threads_;
    try {
      std::thread([this] { Work(); }).detach();
    } catch (const std::system_error& e) {
      --threads_;
      LOG(WARNING) << "cannot start a scan thread (" << e.what() << "); scanning inline";
      std::function<void()> inline_job = std::move(queue_.back());
      queue_.pop_back();
      mu_.Unlock();
      inline_job();
      mu_.Lock();
      --running_;
    }
  }
  return pending;
}

void ScanWorkers::Work() {
  absl::MutexLock lock(&mu_);
  auto has_work = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || stopping_; };
  while (true) {
    ++idle_;
    mu_.AwaitWithTimeout(absl::Condition(&has_work), idle_timeout_);
    --idle_;
    if (queue_.empty()) break;  // idle for too long, or stopping
    std::function<void()> job = std::move(queue_.front());
    queue_.pop_front();
    mu_.Unlock();
    job();
    job = nullptr;
    mu_.Lock();
    --running_;
  }
  --threads_;
}

int ScanWorkers::running() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

int ScanWorkers::threads() const {
  absl::MutexLock lock(&mu_);
  return threads_;
}

bool ScanWorkers::WaitIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

MilterSession::MilterSession(const MilterOptions* options, ScannerClient* scanner,
                             ScannerClient* policy, ScanWorkers* workers, MilterStats* stats)
    : options_(options),
      scanner_(scanner),
      policy_(policy),
      workers_(workers),
      stats_(stats),
      id_(next_session_id.fetch_add(1, std::memory_order_relaxed)) {
  ++stats_->connections;
  ++stats_->open_sessions;
}

MilterSession::~MilterSession() { --stats_->open_sessions; }

void MilterSession::Connect(absl::string_view hostname, absl::string_view address) {
  client_.set_name(std::string(hostname));
  client_.set_address(std::string(address));
}

void MilterSession::Helo(absl::string_view helo) { client_.set_helo(std::string(helo)); }

void MilterSession::SetQueueId(absl::string_view queue_id) {
  envelope_.set_queue_id(std::string(queue_id));
}

void MilterSession::SetClientAddressMacro(absl::string_view address) {
  if (client_.address().empty()) client_.set_address(std::string(address));
}

void MilterSession::SetProtocol(absl::string_view protocol) {
  client_.set_protocol(std::string(protocol));
}

void MilterSession::ResetMessage() {
  envelope_.Clear();
  policy_edits_.clear();
  std::string().swap(message_);
  header_size_ = 0;
  header_done_ = false;
  message_bytes_ = 0;
  too_large_ = false;
}

void MilterSession::MailFrom(absl::string_view sender) {
  ResetMessage();
  envelope_.set_sender(StripAngles(sender));
}

MilterReply MilterSession::Recipient(absl::string_view recipient) {
  std::string rcpt = StripAngles(recipient);
  if (options_->recipient_policy.empty()) {
    envelope_.add_recipients(rcpt);
    return MilterReply();
  }
  scanner::v1::PolicyRequest request;
  request.set_chain(options_->recipient_policy);
  request.set_protocol_state("RCPT");
  *request.mutable_envelope() = envelope_;
  *request.mutable_envelope()->mutable_client() = client_;
  request.set_recipient(rcpt);
  request.set_gateway("milter");
  auto& attrs = *request.mutable_attributes();
  attrs["protocol_state"] = "RCPT";
  attrs["client_address"] = client_.address();
  attrs["client_name"] = client_.name();
  attrs["helo_name"] = client_.helo();
  attrs["sender"] = envelope_.sender();
  attrs["recipient"] = rcpt;
  attrs["queue_id"] = envelope_.queue_id();
  absl::StatusOr<scanner::v1::PolicyResponse> response = policy_->CheckPolicy(request);
  if (!response.ok()) {
    ++stats_->policy_failures;
    stats_->gateway.Error("scanner");
    if (options_->fail_open) {
      int64_t n = ++stats_->policy_fail_open;
      stats_->gateway.FailOpen();
      LOG(WARNING) << "session " << id_ << ": recipient_policy failed for <" << rcpt
                   << ">: " << response.status() << "; fail_open lets it through (" << n
                   << " so far)";
    } else {
      LOG(WARNING) << "session " << id_ << ": recipient_policy failed for <" << rcpt
                   << ">: " << response.status() << "; tempfail";
    }
  }
  MilterReply reply = ReplyForPolicy(response, options_->fail_open);
  switch (reply.action) {
    case Action::kContinue:
      envelope_.add_recipients(rcpt);
      if (response.ok()) {
        policy_edits_.insert(policy_edits_.end(), response->header_edits().begin(),
                             response->header_edits().end());
      }
      break;
    case Action::kTempfail:
      ++stats_->recipients_tempfailed;
      LOG(INFO) << "session " << id_ << ": recipient <" << rcpt << "> from <" << envelope_.sender()
                << "> deferred: " << reply.rcode << " " << reply.xcode << " " << reply.text;
      break;
    default:
      ++stats_->recipients_rejected;
      LOG(INFO) << "session " << id_ << ": recipient <" << rcpt << "> from <" << envelope_.sender()
                << "> rejected: " << reply.rcode << " " << reply.xcode << " " << reply.text;
      break;
  }
  return reply;
}

void MilterSession::Append(absl::string_view bytes) {
  message_bytes_ += static_cast<int64_t>(bytes.size());
  if (too_large_) return;
  if (message_bytes_ > options_->max_message_size) {
    // Stop buffering; keep only the header fields for the not-scanned reply.
    too_large_ = true;
    message_.resize(header_done_ ? header_size_ : message_.size());
    message_.shrink_to_fit();
    return;
  }
  message_.append(bytes.data(), bytes.size());
}

void MilterSession::Header(absl::string_view name, absl::string_view value) {
  if (header_done_) return;
  Append(absl::StrCat(name, ": ", CrlfValue(value), "\r\n"));
}

void MilterSession::EndOfHeaders() {
  if (header_done_) return;
  header_size_ = message_.size();
  Append("\r\n");
  header_done_ = true;
}

void MilterSession::Body(absl::string_view chunk) {
  EndOfHeaders();
  Append(chunk);
}

void MilterSession::Abort() {
  if (!envelope_.sender().empty() || envelope_.recipients_size() > 0 || message_bytes_ > 0) {
    ++stats_->aborted;
  }
  ResetMessage();
}

absl::string_view MilterSession::ReceivedHeader() const {
  absl::string_view m(message_);
  return header_done_ ? m.substr(0, header_size_) : m;
}

void MilterSession::Count(const MilterReply& reply, const FilterDecision* decision,
                          int64_t size) {
  ++stats_->messages;
  common::v1::Outcome outcome = common::v1::TEMPFAIL;
  switch (reply.action) {
    case Action::kAccept:
    case Action::kContinue:
      outcome = decision != nullptr && decision->code == 251 ? common::v1::FORCED_PASS
                                                             : common::v1::PASS;
      break;
    case Action::kReject:
      outcome = common::v1::REJECT;
      break;
    case Action::kDiscard:
      outcome = common::v1::DROP;
      break;
    case Action::kTempfail:
      break;
  }
  stats_->gateway.Message(outcome, size);
  switch (reply.action) {
    case Action::kAccept:
    case Action::kContinue:
      if (decision != nullptr && decision->code == 251) {
        ++stats_->forced;
      } else {
        ++stats_->accepted;
      }
      break;
    case Action::kReject:
      ++stats_->rejected;
      break;
    case Action::kDiscard:
      ++stats_->discarded;
      break;
    case Action::kTempfail:
      ++stats_->tempfailed;
      break;
  }
}

MilterReply MilterSession::EndOfMessage(const std::function<bool()>& progress) {
  const absl::Time start = absl::Now();
  EndOfHeaders();
  const std::string received_header(ReceivedHeader());
  const int64_t size = message_bytes_;
  MilterReply reply;
  FilterDecision decision;
  bool scanned = false;
  std::string note;

  if (too_large_) {
    ++stats_->too_large;
    note = absl::StrCat(" not_scanned=too_large limit=", options_->max_message_size);
  }
  FilterRequest request;
  request.gateway = "milter";
  request.chain = options_->chain;
  request.envelope = envelope_;
  *request.envelope.mutable_client() = client_;
  if (request.envelope.client().protocol().empty()) {
    request.envelope.mutable_client()->set_protocol("SMTP");
  }
  *request.envelope.mutable_received_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
  // A message over the limit goes as its header block only: scanner-svc logs it
  // (log, log_sql) without scanning it.
  request.message = std::move(message_);
  if (too_large_) request.head_of = size;
  ScannerClient* scanner = scanner_;
  const absl::Time scan_start = absl::Now();
  std::shared_ptr<ScanWorkers::Pending> pending = workers_->Start(
      [scanner, request = std::move(request)] { return ScanAndDecide(*scanner, request); });
  bool mta_gone = false;
  while (!pending->WaitFor(options_->progress_interval)) {
    if (!progress()) {
      mta_gone = true;
      break;
    }
    ++stats_->progress_replies;
  }
  if (mta_gone) {
    // Nobody takes the answer any more; the scan ends at its deadline.
    ++stats_->mta_gone;
    reply.action = Action::kTempfail;
    note = " error=the MTA stopped taking progress replies";
  } else if (too_large_) {
    decision = pending->Take();
    // scanner-svc's outcome for mail not scanned; ours when it could not answer
    // (the message is not scanned either way).
    common::v1::Outcome outcome = decision.outcome;
    if (!decision.scan_status.ok()) {
      ++stats_->scan_failures;
      stats_->gateway.Error("scanner");
      absl::StrAppend(&note, " error=", decision.scan_status.ToString());
      outcome = options_->not_scanned_outcome;
    }
    reply = ReplyForTooLarge(outcome, received_header, size, options_->max_message_size,
                             decision.sagator_id);
  } else {
    decision = pending->Take();
    stats_->gateway.Latency("scan", absl::Now() - scan_start);
    scanned = true;
    if (!decision.scan_status.ok()) {
      ++stats_->scan_failures;
      stats_->gateway.Error("scanner");
      note = absl::StrCat(" error=", decision.scan_status.ToString());
    }
    if (decision.code == 451 && !decision.scan_status.ok() && options_->fail_open) {
      int64_t n = ++stats_->fail_open;
      stats_->gateway.FailOpen();
      LOG(WARNING) << "session " << id_ << ": scan failed (" << decision.scan_status
                   << "); fail_open accepts the message unscanned (" << n << " so far)";
      reply = AcceptUnscanned(received_header, decision.text);
      absl::StrAppend(&note, " fail_open=", n);
    } else {
      if (decision.code != 451 && !policy_edits_.empty()) {
        // After the removal of a forged X-Sagator-Status, before the verdict's own.
        auto at = decision.header_edits.empty() ? decision.header_edits.end()
                                                : decision.header_edits.begin() + 1;
        decision.header_edits.insert(at, policy_edits_.begin(), policy_edits_.end());
      }
      reply = ReplyForDecision(decision, received_header);
    }
  }
  Count(reply, scanned ? &decision : nullptr, size);
  stats_->gateway.Latency("total", absl::Now() - start);
  LOG(INFO) << absl::StrFormat(
      "message session=%d queue_id=%s id=%s client=%s from=<%s> rcpts=%d size=%d action=%s "
      "code=%d level=%.2f detection=%s headers=%d%s elapsed=%.3fs%s",
      id_, envelope_.queue_id().empty() ? "-" : envelope_.queue_id(),
      decision.sagator_id.empty() ? "-" : decision.sagator_id,
      client_.address().empty() ? "-" : client_.address(), envelope_.sender(),
      envelope_.recipients_size(), size, ActionName(reply.action), scanned ? decision.code : 0,
      decision.level, decision.detection.empty() ? "-" : decision.detection,
      reply.header_ops.size(), reply.replace_body ? " body=replaced" : "",
      absl::ToDoubleSeconds(absl::Now() - start), note);
  ResetMessage();
  return reply;
}

}  // namespace sagator::milter
