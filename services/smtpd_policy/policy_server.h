// smtpd_policy's socket side: accepts Postfix's check_policy_service connections,
// runs the protocol parser, asks scanner-svc (CheckPolicy) for each request block on
// a decision thread and writes one action line per block, on the same connection as
// long as Postfix keeps it open.
//
//   PolicyServer server(OptionsFromConfig(service), scanner.get());
//   absl::Status s = server.Start();   // binds; server.port() is the bound port
//   ...                                // serve until a shutdown signal
//   server.Shutdown();                 // stop accepting, let in-flight finish
//
// `io_threads` I/O threads (common/tcp_server) serve the connections with C++20
// coroutines, each thread its share of them; the calls to scanner-svc block on
// gRPC, so they run on a pool of `prefork` threads. A request the ScannerClient can
// answer without waiting (in-process, from the records in memory:
// TryCheckPolicyNow) is decided on its I/O thread itself, and so is one the
// client's LoopDecider can decide there (in-process on PostgreSQL: a never-seen
// triplet, recorded on the thread's own database connection).
// Requests that arrive while calls are in flight are batched into the next call
// (CheckPolicies): at light load each request goes alone at once, under load one
// call carries many (see Pump in the .cc). Postfix is
// never left hanging: every decision has a deadline (`policy_timeout`, counted from
// when the request arrived, queueing for a decision thread included) after which
// the request gets the failure answer (DEFER_IF_PERMIT, or DUNNO with fail_open)
// whatever scanner-svc is doing. Bad input (a protocol error) closes the connection
// without an answer, so Postfix retries and then uses its default_action.
// Limits: max_children connections (more are closed at once without an answer), an
// idle timeout between requests (`timeout`, which also bounds one request block).
//
// Thread-safe: Start, Shutdown, port and stats may be called from any thread.
#ifndef SAGATOR_SERVICES_SMTPD_POLICY_POLICY_SERVER_H_
#define SAGATOR_SERVICES_SMTPD_POLICY_POLICY_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/connection_counts.h"
#include "common/scanner_client.h"
#include "common/stats.h"
#include "sagator/config/v1/config.pb.h"
#include "services/smtpd_policy/policy_protocol.h"

namespace sagator::smtpd_policy {

struct PolicyServerOptions {
  std::string host = "127.0.0.1";
  // 0 picks a free port.
  int port = 10029;
  // Connections served at once; more are closed without an answer.
  int max_children = 200;
  // A connection idle this long between requests is closed; one request block must
  // also arrive within it.
  absl::Duration timeout = absl::Seconds(300);
  // scanner-svc down or past policy_timeout: DUNNO instead of DEFER_IF_PERMIT.
  bool fail_open = false;
  // Longest wait for one decision (give the ScannerClient the same deadline).
  absl::Duration policy_timeout = absl::Seconds(10);
  // Calls to scanner-svc in flight at most (each carries one request or a batch),
  // shared evenly by the I/O threads.
  int prefork = 16;
  // Requests one call carries at most. 1: no batching, every queued request gets a
  // call of its own at once (up to prefork), which suits a client whose calls cost
  // little of their own (in-process) but wait on a database.
  int max_batch = 64;
  // Send every Postfix attribute along (PolicyRequest.attributes) for scanner-svc's
  // scanners. The in-process chain reads only the envelope: it skips the copy.
  bool send_attributes = true;
  // Threads serving the connections (sockets, parsing, decisions from memory),
  // each with its own share of them.
  int io_threads = 1;
  // The policy chain to run.
  std::string chain;
  PolicyLimits limits;
  // Time in-flight connections get to finish at Shutdown.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // Listen backlog.
  int backlog = 4096;
  // Where the gateway's statistics go (stats::GatewayStats); nullptr: nowhere.
  stats::Registry* stats = nullptr;
};

// The options of one smtpd_policy service entry.
PolicyServerOptions OptionsFromConfig(const config::v1::SmtpdPolicyService& service);

// Counters, for logs and tests.
struct PolicyServerStats : net::ConnectionCounts {
  int64_t requests = 0;             // request blocks answered (any action)
  // Answers by action.
  int64_t dunno = 0;
  int64_t ok = 0;
  int64_t prepend = 0;
  int64_t deferred = 0;  // DEFER_IF_PERMIT (tempfail, or scanner-svc failure)
  int64_t rejected = 0;
  int64_t discarded = 0;
  // CheckPolicy failed (unreachable, error, or past policy_timeout) ...
  int64_t scanner_failures = 0;
  // ... of which past policy_timeout.
  int64_t policy_timeouts = 0;
  // Requests answered DUNNO because scanner-svc failed and fail_open is set.
  int64_t fail_open = 0;
  int64_t protocol_errors = 0;  // connections closed for bad input
  int64_t timeouts = 0;         // connections closed after `timeout` without a request
  // Calls to scanner-svc (CheckPolicy for one request, CheckPolicies for a batch).
  int64_t scanner_calls = 0;
  // Requests decided on the I/O thread, without a call (ScannerClient::
  // TryCheckPolicyNow: in-process, from the records in memory).
  int64_t decided_at_once = 0;
  // Requests decided on the I/O thread after a database write there
  // (ScannerClient::LoopDecider: in-process, a never-seen triplet recorded on the
  // I/O thread's own PostgreSQL connection).
  int64_t decided_on_loop = 0;
};

class PolicyServer {
 public:
  // `scanner` must outlive the server.
  PolicyServer(PolicyServerOptions options, ScannerClient* scanner);
  ~PolicyServer();
  PolicyServer(const PolicyServer&) = delete;
  PolicyServer& operator=(const PolicyServer&) = delete;

  // Binds, listens and starts the I/O threads and the decision pool.
  absl::Status Start();
  // The bound port, after Start.
  int port() const;
  // Stops accepting, gives connections in flight up to shutdown_grace, then cancels
  // what is left and joins every thread. Idempotent.
  void Shutdown();

  PolicyServerStats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sagator::smtpd_policy

#endif  // SAGATOR_SERVICES_SMTPD_POLICY_POLICY_SERVER_H_
