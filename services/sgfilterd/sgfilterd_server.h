// sgfilterd's socket side: accepts sgfilter connections, runs the protocol parser,
// hands each complete message to FilterMessage on a scan thread, writes the reply.
//
//   SgfilterdServer server(OptionsFromConfig(cfg, service), scanner.get());
//   absl::Status s = server.Start();   // binds; server.port() is the bound port
//   ...                                // serve until a shutdown signal
//   server.Shutdown();                 // stop accepting, let in-flight finish
//
// One I/O thread (common/tcp_server) serves every connection with C++20 coroutines; there
// is no thread per connection. Scans block on gRPC, so they run on a pool of
// `prefork` threads and the connection's coroutine resumes when the scan is done.
// Limits: max_connections (more get "451 0.00 too many connections"), an inactivity
// timeout and a whole-transfer deadline, and max_buffered_bytes (a connection
// reserves its DATA length before reading it; when it does not fit the client gets
// "451 0.00 server busy, try later").
//
// Thread-safe: Start, Shutdown, port and stats may be called from any one thread.
#ifndef SAGATOR_SERVICES_SGFILTERD_SGFILTERD_SERVER_H_
#define SAGATOR_SERVICES_SGFILTERD_SGFILTERD_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/connection_counts.h"
#include "sagator/config/v1/config.pb.h"
#include "common/scanner_client.h"
#include "common/stats.h"

namespace sagator::sgfilterd {

struct SgfilterdOptions {
  std::string host = "127.0.0.1";
  // 0 picks a free port.
  int port = 27;
  // Scans that run at once.
  int prefork = 2;
  int max_connections = 1024;
  // Longest pause of a client while sending (and while reading the reply); a whole
  // transfer may take timeout * (1 + size / 1 MiB).
  absl::Duration timeout = absl::Seconds(60);
  int64_t max_buffered_bytes = int64_t{256} << 20;
  int64_t max_message_size = int64_t{50} << 20;
  // The chain to run.
  std::string chain;
  // Time in-flight connections get to finish at Shutdown.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // Listen backlog.
  int backlog = 4096;
  // Where the gateway's statistics go (stats::GatewayStats); nullptr: nowhere.
  stats::Registry* stats = nullptr;
};

// The options of one sgfilterd service entry plus the global settings it uses.
SgfilterdOptions OptionsFromConfig(const config::v1::Config& config,
                                   const config::v1::SgfilterdService& service);

// Counters, for logs and tests.
struct SgfilterdStats : net::ConnectionCounts {
  int64_t refused_memory = 0;       // over max_buffered_bytes
  int64_t messages = 0;             // scanned and answered (any code)
  int64_t passed = 0;               // 250
  int64_t forced = 0;               // 251
  int64_t tempfailed = 0;           // 451 after a scan (or a failed scan call)
  int64_t rejected = 0;             // 550
  int64_t dropped = 0;              // 551
  int64_t protocol_errors = 0;
  int64_t too_large = 0;  // DATA length over max_message_size
  int64_t timeouts = 0;
  int64_t client_aborts = 0;       // closed before the message was complete
  int64_t buffered_bytes = 0;      // now
};

class SgfilterdServer {
 public:
  // `scanner` must outlive the server.
  SgfilterdServer(SgfilterdOptions options, ScannerClient* scanner);
  ~SgfilterdServer();
  SgfilterdServer(const SgfilterdServer&) = delete;
  SgfilterdServer& operator=(const SgfilterdServer&) = delete;

  // Binds, listens and starts the I/O thread and the scan pool.
  absl::Status Start();
  // The bound port, after Start.
  int port() const;
  // Stops accepting, gives connections in flight up to shutdown_grace, then cancels
  // what is left and joins every thread. Idempotent.
  void Shutdown();

  SgfilterdStats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sagator::sgfilterd

#endif  // SAGATOR_SERVICES_SGFILTERD_SGFILTERD_SERVER_H_
