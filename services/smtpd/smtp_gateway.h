// smtpd's and lmtpd's socket side: accepts SMTP or LMTP sessions, drives each
// through SmtpSession, asks scanner-svc for a verdict and hands clean mail to the
// next hop with NextHopClient. The verdict-to-reply mapping of both gateways lives
// here:
//
//   verdict (FilterDecision code)   reply after DATA's "."
//   250 PASS / 251 FORCED_PASS      the next hop's own reply (250 only once it accepted)
//   550 REJECT                      550 5.7.1 Rejected: <detection> (nothing is relayed)
//   551 DROP                        250 2.7.0 Ok, discarded: <detection>
//   451 TEMPFAIL                    451 4.3.0 <reply text>
//   scanner-svc down or too slow    451 4.3.0 scanner unavailable / scan timeout, or,
//                                   with fail_open, relayed unscanned (and counted)
//
// Recipients are forwarded to the next hop as they come (after recipient_policy,
// when configured), so its per-recipient refusals reach the client at RCPT; LMTP
// then gives one reply per accepted recipient after DATA.
//
// Threads: one I/O thread (common/tcp_server) serves every session; scans and next-hop
// exchanges block, so they run on a pool of `prefork` threads.
#ifndef SAGATOR_SERVICES_SMTPD_SMTP_GATEWAY_H_
#define SAGATOR_SERVICES_SMTPD_SMTP_GATEWAY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/connection_counts.h"
#include "common/scanner_client.h"
#include "common/stats.h"
#include "sagator/config/v1/config.pb.h"
#include "services/smtpd/next_hop.h"
#include "services/smtpd/smtp_session.h"

namespace sagator::smtpd {

struct GatewayOptions {
  Dialect dialect = Dialect::kSmtp;
  std::string host = "127.0.0.1";
  // 0 picks a free port.
  int port = 10024;
  int prefork = 2;
  int max_connections = 1024;
  // The chain to run, and the recipient_policy chain ("" for none).
  std::string chain;
  std::string recipient_policy;
  NextHopAddress next_hop;
  Dialect next_hop_dialect = Dialect::kSmtp;
  absl::Duration timeout = absl::Seconds(300);
  absl::Duration relay_timeout = absl::Seconds(60);
  bool fail_open = false;
  std::string hostname = "localhost";
  int64_t max_message_size = int64_t{50} << 20;
  int max_line_length = 2048;
  int max_data_line_length = 1 << 20;
  int max_recipients = 1000;
  int64_t max_buffered_bytes = int64_t{256} << 20;
  absl::Duration shutdown_grace = absl::Seconds(5);
  // Where the gateway's statistics go (stats::GatewayStats); nullptr: nowhere.
  stats::Registry* stats = nullptr;
};

// The options of one smtpd or lmtpd service entry plus the global settings it uses.
absl::StatusOr<GatewayOptions> OptionsFromConfig(const config::v1::Config& config,
                                                 const config::v1::Service& service);

struct GatewayStats : net::ConnectionCounts {
  int64_t messages = 0;    // transactions that reached the end of DATA with a verdict
  int64_t relayed = 0;     // accepted by the next hop (all recipients, or some in LMTP)
  int64_t rejected = 0;    // 550 from the chain
  int64_t dropped = 0;     // discarded (DROP)
  int64_t tempfailed = 0;  // 451 from the chain or a failed scan
  int64_t fail_open = 0;   // relayed unscanned because scanner-svc failed
  int64_t relay_failures = 0;  // next hop unavailable or refused temporarily
  int64_t refused_memory = 0;  // 452: max_buffered_bytes spent
  int64_t timeouts = 0;
};

class SmtpGateway {
 public:
  // `scanner` must outlive the gateway.
  SmtpGateway(GatewayOptions options, ScannerClient* scanner);
  ~SmtpGateway();
  SmtpGateway(const SmtpGateway&) = delete;
  SmtpGateway& operator=(const SmtpGateway&) = delete;

  absl::Status Start();
  int port() const;
  // Stops accepting, lets sessions finish for shutdown_grace, then cancels the rest.
  void Shutdown();
  GatewayStats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sagator::smtpd

#endif  // SAGATOR_SERVICES_SMTPD_SMTP_GATEWAY_H_
