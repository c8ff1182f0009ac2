// Builds and runs a gRPC server the way every SAGATOR service does: with the health
// service and server reflection on (so grpcurl can list and call it), a bound port
// reported back (port 0 picks a free one), and a clean stop on SIGTERM/SIGINT.
//
//   GrpcServerRunner runner("127.0.0.1", 7290);
//   runner.AddService(&my_service);
//   absl::Status s = runner.Start();     // binds
//   runner.WaitForShutdownSignal();      // blocks until SIGTERM/SIGINT, then stops
#ifndef SAGATOR_COMMON_GRPC_SERVER_H_
#define SAGATOR_COMMON_GRPC_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace sagator {

// Blocks SIGTERM and SIGINT in the calling thread (and so in every thread it starts
// later), and ignores SIGPIPE. Call first thing in main() of a server that waits with
// WaitForShutdownSignal or sigwait.
void BlockShutdownSignals();

// Blocks until SIGTERM or SIGINT arrives (they must be blocked with
// BlockShutdownSignals first) and returns the signal number.
int WaitForTerminationSignal();

class GrpcServerRunner {
 public:
  GrpcServerRunner(std::string host, int port);
  ~GrpcServerRunner();

  // Registers a service; call before Start. The service must outlive the runner.
  void AddService(grpc::Service* service);
  // Largest message accepted (requests and responses).
  void SetMaxMessageSize(int bytes) { max_message_size_ = bytes; }
  // Most threads the synchronous server uses for calls.
  void SetMaxThreads(int threads) { max_threads_ = threads; }

  // Binds and starts serving.
  absl::Status Start();
  // The bound port (after Start).
  int port() const { return bound_port_; }
  // "host:port" after Start.
  std::string address() const;

  // Blocks until SIGTERM or SIGINT arrives, then shuts down with `grace`.
  void WaitForShutdownSignal(absl::Duration grace = absl::Seconds(5));
  // Stops serving; calls in flight get `grace` to finish, then are cancelled.
  void Shutdown(absl::Duration grace);

 private:
  std::string host_;
  int port_;
  int bound_port_ = 0;
  int max_message_size_ = 8 << 20;
  int max_threads_ = 0;
  // Idle call threads kept when no thread limit is set.
  static constexpr int kDefaultMaxPollers = 16;
  std::vector<grpc::Service*> services_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace sagator

#endif  // SAGATOR_COMMON_GRPC_SERVER_H_
