// The milter gateway's domain core: one MilterSession per MTA connection collects
// the envelope and the message as the libmilter callbacks deliver them, runs the
// recipient policy at RCPT, and at the end of the message scans on a worker thread
// while the caller's thread sends progress replies, then answers with a MilterReply
// (milter_decision.h). No libmilter types here; milter_service.cc calls it.
//
//   MilterSession s(options, &scanner, &policy_scanner, &workers, &stats);
//   s.Connect("client.example.org", "192.0.2.1");
//   s.Helo("client.example.org");
//   s.MailFrom("<a@example.org>");
//   MilterReply r = s.Recipient("<b@example.org>");
//   s.Header("Subject", "hi"); s.EndOfHeaders(); s.Body("text\r\n");
//   MilterReply done = s.EndOfMessage([&] { return SendProgress(); });
//
// Several messages may follow on one session: MailFrom, Abort and EndOfMessage
// start a fresh message; the connection's client data stays.
//
// Thread-compatible: one session is used by one libmilter callback at a time.
// ScanWorkers and MilterStats are shared by every session and thread-safe.
#ifndef SAGATOR_SERVICES_MILTER_MILTER_SESSION_H_
#define SAGATOR_SERVICES_MILTER_MILTER_SESSION_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/message_filter.h"
#include "common/scanner_client.h"
#include "sagator/common/v1/common.pb.h"
#include "sagator/config/v1/config.pb.h"
#include "common/stats.h"
#include "services/milter/milter_decision.h"

namespace sagator::milter {

struct MilterOptions {
  // The service entry's name (logs).
  std::string service_name = "milter";
  // smfiDesc's filter name (MilterService.name).
  std::string filter_name = "sagator";
  // "inet:PORT@HOST", "inet6:PORT@HOST" or "unix:/path".
  std::string connection = "inet:3333@127.0.0.1";
  // Applied while the unix socket is created.
  int umask = 077;
  // The chain scanned at the end of each message.
  std::string chain;
  // The policy chain run at each RCPT; empty: none.
  std::string recipient_policy;
  // A failed Scan (or policy) call accepts instead of tempfailing.
  bool fail_open = false;
  // global.max_message_size: header and body bytes buffered per message at most.
  int64_t max_message_size = int64_t{50} << 20;
  // global.not_scanned_outcome: what mail over max_message_size gets.
  common::v1::Outcome not_scanned_outcome = common::v1::FORCED_PASS;
  // How often EndOfMessage sends a progress reply while the scan runs.
  absl::Duration progress_interval = absl::Seconds(10);
  // global.scan_timeout: the deadline of each Scan call.
  absl::Duration scan_timeout = absl::Seconds(60);
  // The deadline of each recipient_policy call: below Postfix's 30 s
  // milter_command_timeout, which no progress reply can extend at RCPT.
  absl::Duration policy_timeout = absl::Seconds(20);
  // Time scans in flight get at shutdown.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // Listen backlog.
  int backlog = 4096;
  // Where the gateway's statistics go (stats::GatewayStats); nullptr: nowhere.
  stats::Registry* stats = nullptr;
};

// The options of one milter service entry plus the global settings it uses.
MilterOptions OptionsFromConfig(const config::v1::Config& config,
                                const config::v1::MilterService& service);

// Checks a connection string: "inet:PORT@HOST", "inet6:PORT@HOST" (PORT 1-65535,
// HOST required) or "unix:/absolute/path" ("local:" is the same).
absl::Status ValidateConnection(absl::string_view connection);

// The counters, declared once here; MilterStats holds them as atomics.
#define SAGATOR_MILTER_COUNTERS(X)                                                 \
  X(connections, "MTA connections opened")                                         \
  X(open_sessions, "sessions alive now (a gauge: 0 once every connection closed)") \
  X(messages, "messages that reached the end of the message")                      \
  X(accepted, "accepted after a scan (PASS)")                                      \
  X(forced, "accepted after a scan (FORCED_PASS)")                                 \
  X(rejected, "rejected after a scan (REJECT)")                                    \
  X(discarded, "discarded after a scan (DROP)")                                    \
  X(tempfailed, "tempfailed at the end of the message")                            \
  X(scan_failures, "Scan calls that failed (down, deadline, broken answer)")       \
  X(fail_open, "messages accepted unscanned because of fail_open")                 \
  X(too_large, "messages over max_message_size")                                   \
  X(aborted, "messages the MTA aborted")                                           \
  X(mta_gone, "scans whose MTA stopped taking progress replies")                   \
  X(progress_replies, "progress replies sent while scanning")                      \
  X(recipients_rejected, "recipients rejected by recipient_policy")                \
  X(recipients_tempfailed, "recipients tempfailed by recipient_policy")            \
  X(policy_failures, "recipient_policy calls that failed")                         \
  X(policy_fail_open, "recipients let through because of fail_open")

struct MilterCounters {
#define SAGATOR_MILTER_FIELD(name, help) int64_t name = 0;
  SAGATOR_MILTER_COUNTERS(SAGATOR_MILTER_FIELD)
#undef SAGATOR_MILTER_FIELD
  // "connections=N open_sessions=N ..." for logs.
  std::string ToString() const;
};

class MilterStats {
 public:
  explicit MilterStats(stats::Registry* registry = nullptr) : gateway(registry, "milter") {}
  // The suite-wide gateway statistics (messages and bytes by outcome, latency, ...).
  stats::GatewayStats gateway;
#define SAGATOR_MILTER_FIELD(name, help) std::atomic<int64_t> name{0};
  SAGATOR_MILTER_COUNTERS(SAGATOR_MILTER_FIELD)
#undef SAGATOR_MILTER_FIELD
  MilterCounters Snapshot() const;
};

// Runs scans on worker threads, so that the libmilter thread that waits for one can
// send progress replies. A worker is started whenever every worker is busy (so no
// scan waits for another) and ends after a minute without work; the count of scans
// in flight serves shutdown.
class ScanWorkers {
 public:
  // One scan's result, filled in by its worker.
  class Pending {
   public:
    // Waits up to `timeout`; true when the result is there.
    bool WaitFor(absl::Duration timeout);
    // The result; only after WaitFor returned true.
    FilterDecision Take();

   private:
    friend class ScanWorkers;
    absl::Mutex mu_;
    bool done_ ABSL_GUARDED_BY(mu_) = false;
    FilterDecision result_ ABSL_GUARDED_BY(mu_);
  };

  explicit ScanWorkers(absl::Duration idle_timeout = absl::Seconds(60))
      : idle_timeout_(idle_timeout) {}
  // Waits for the scans in flight and the workers to end.
  ~ScanWorkers();
  ScanWorkers(const ScanWorkers&) = delete;
  ScanWorkers& operator=(const ScanWorkers&) = delete;

  // Queues `scan` for a worker. The worker keeps the Pending alive, so a caller that
  // stops waiting (its MTA went away) may drop its reference.
  std::shared_ptr<Pending> Start(std::function<FilterDecision()> scan);
  // Scans queued or running now.
  int running() const;
  // Worker threads alive now (busy or idle).
  int threads() const;
  // Waits until no scan runs; false when some still do after `timeout`.
  bool WaitIdle(absl::Duration timeout);

 private:
  void Work();

  const absl::Duration idle_timeout_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  int threads_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

class MilterSession {
 public:
  // Every pointer must outlive the session; `policy` may equal `scanner`.
  MilterSession(const MilterOptions* options, ScannerClient* scanner, ScannerClient* policy,
                ScanWorkers* workers, MilterStats* stats);
  ~MilterSession();
  MilterSession(const MilterSession&) = delete;
  MilterSession& operator=(const MilterSession&) = delete;

  // xxfi_connect: the client's host name and IP address (either may be empty).
  void Connect(absl::string_view hostname, absl::string_view address);
  void Helo(absl::string_view helo);
  // The MTA's macros, when it sends them: the queue id ("i"), {client_addr} (used
  // when Connect had no address) and the protocol ("r").
  void SetQueueId(absl::string_view queue_id);
  void SetClientAddressMacro(absl::string_view address);
  void SetProtocol(absl::string_view protocol);

  // MAIL FROM (with or without angle brackets): starts a new message.
  void MailFrom(absl::string_view sender);
  // RCPT TO: runs recipient_policy when configured. kContinue adds the recipient;
  // anything else refuses this recipient only.
  MilterReply Recipient(absl::string_view recipient);
  void Header(absl::string_view name, absl::string_view value);
  void EndOfHeaders();
  void Body(absl::string_view chunk);
  // Scans and answers. While the scan runs, calls `progress` every
  // progress_interval; when it returns false (the MTA is gone) the session stops
  // waiting and answers tempfail. Starts a fresh message afterwards.
  MilterReply EndOfMessage(const std::function<bool()>& progress);
  // xxfi_abort: forgets the message in progress (the connection stays).
  void Abort();

  // The session's state, for tests and logs.
  int64_t id() const { return id_; }
  const common::v1::Envelope& envelope() const { return envelope_; }
  // The message as collected so far ("Name: value\r\n" lines, the empty line once
  // the header ended, then the body).
  const std::string& message() const { return message_; }
  int64_t message_bytes() const { return message_bytes_; }
  bool too_large() const { return too_large_; }

 private:
  void ResetMessage();
  void Append(absl::string_view bytes);
  // The header fields received so far, as lines.
  absl::string_view ReceivedHeader() const;
  void Count(const MilterReply& reply, const FilterDecision* decision, int64_t size);

  const MilterOptions* options_;
  ScannerClient* scanner_;
  ScannerClient* policy_;
  ScanWorkers* workers_;
  MilterStats* stats_;
  const int64_t id_;

  // The connection's.
  common::v1::ClientInfo client_;
  // The message's.
  common::v1::Envelope envelope_;
  std::vector<common::v1::HeaderEdit> policy_edits_;
  std::string message_;
  size_t header_size_ = 0;
  bool header_done_ = false;
  int64_t message_bytes_ = 0;
  // Over max_message_size: the body is no longer kept (the header fields received
  // within the limit are, for the not-scanned reply's edits).
  bool too_large_ = false;
};

}  // namespace sagator::milter

#endif  // SAGATOR_SERVICES_MILTER_MILTER_SESSION_H_
