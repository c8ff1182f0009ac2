// The libmilter side of the milter gateway: registers the callbacks, opens the
// listening socket and runs libmilter's loop. Each callback only translates between
// libmilter (SMFICTX, macros, smfi_* calls) and the MilterSession it keeps as the
// connection's private data (smfi_setpriv); the session is deleted at xxfi_close.
//
//   MilterService service(options, scanner.get(), policy.get());
//   absl::Status s = service.Open();   // binds (umask for unix sockets)
//   s = service.Run();                 // until SIGTERM, SIGINT or SIGHUP
//
// libmilter is a process-wide singleton: at most one MilterService per process.
// SIGTERM, SIGINT and SIGHUP must be blocked in every thread before any thread
// starts (main does that), so that libmilter's signal thread receives them.
// Thread-safe: libmilter calls the callbacks from one thread per connection.
#ifndef SAGATOR_SERVICES_MILTER_MILTER_SERVICE_H_
#define SAGATOR_SERVICES_MILTER_MILTER_SERVICE_H_

#include "absl/status/status.h"
#include "common/scanner_client.h"
#include "services/milter/milter_session.h"

namespace sagator::milter {

class MilterService {
 public:
  // `scanner` and `policy` (may be the same) must outlive the process's use of the
  // service: libmilter's threads may still run callbacks after Run returns.
  MilterService(MilterOptions options, ScannerClient* scanner, ScannerClient* policy);
  ~MilterService();
  MilterService(const MilterService&) = delete;
  MilterService& operator=(const MilterService&) = delete;

  // Registers with libmilter and opens options.connection: a unix socket is created
  // under options.umask (a stale one is replaced); an inet listener gets
  // TCP_NODELAY, which the accepted connections inherit (each new connection is
  // also checked at negotiation).
  absl::Status Open();
  // Serves until libmilter's signal thread sees SIGTERM, SIGINT or SIGHUP (or Stop);
  // then gives scans in flight options.shutdown_grace to finish.
  absl::Status Run();
  // Asks libmilter to stop (smfi_stop).
  static void Stop();

  MilterCounters stats() const { return stats_.Snapshot(); }

 private:
  friend struct Callbacks;
  MilterOptions options_;
  // Listening on a unix socket (the MTA is then told not to await every reply).
  bool unix_socket_ = false;
  ScannerClient* scanner_;
  ScannerClient* policy_;
  ScanWorkers workers_;
  MilterStats stats_;
};

}  // namespace sagator::milter

#endif  // SAGATOR_SERVICES_MILTER_MILTER_SERVICE_H_
