// quarantine-svc's gRPC API (sagator.quarantine.v1) over a QuarantineStore, and the
// server around it: release over SMTP, periodic expiry, health and reflection.
//
//   QuarantineServer server(options, std::move(store));
//   server.Start();                       // binds; expiry runs every expire_interval
//   ... server.port() ...
//   server.Shutdown();
//
// Release sends the stored message, unchanged, to `relay` (an SMTP listener that
// delivers without scanning again), to the original recipients or to the request's
// override, and records each recipient's reply with the entry. A relay that cannot
// be reached gives every recipient a 4xx result and the call UNAVAILABLE, so the
// caller can try again; nothing is deleted by a release.
//
// Thread-safe: gRPC calls run on the server's threads; each release opens its own
// SMTP connection.
#ifndef SAGATOR_QUARANTINE_SVC_QUARANTINE_SERVICE_H_
#define SAGATOR_QUARANTINE_SVC_QUARANTINE_SERVICE_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/config.h"
#include "common/grpc_server.h"
#include "quarantine-svc/quarantine_store.h"
#include "services/smtpd/next_hop.h"
#include "sagator/quarantine/v1/quarantine.grpc.pb.h"

namespace sagator::quarantine {

struct QuarantineOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  // "host:port", "[host]:port" or "unix:/path" of the SMTP relay for releases.
  std::string relay;
  absl::Duration relay_timeout = absl::Seconds(60);
  std::string helo_name = "localhost";
  // Entries older than this are deleted every expire_interval; zero keeps them.
  absl::Duration retention = absl::ZeroDuration();
  absl::Duration expire_interval = absl::Hours(1);
  // Largest message Store accepts.
  int64_t max_message_size = 50 << 20;
};

// Our name in EHLO towards the relay: helo_name, else global.hostname, else the
// machine's (releases and reports share it).
std::string HeloName(const LoadedConfig& config, const config::v1::QuarantineSvcService& spec);

// The options of a `quarantine` service entry.
QuarantineOptions OptionsFromConfig(const LoadedConfig& config,
                                    const config::v1::QuarantineSvcService& spec);

// Sends entry request.id() to request.to() (empty: its recipients) through
// options.relay and records each recipient's result. NotFound for an unknown id;
// Unavailable (after recording the 4xx) when the relay could not take it.
absl::StatusOr<v1::ReleaseResponse> ReleaseMessage(const QuarantineOptions& options,
                                                   QuarantineStore& store,
                                                   const v1::ReleaseRequest& request);

class QuarantineServiceImpl final : public v1::QuarantineService::Service {
 public:
  QuarantineServiceImpl(QuarantineOptions options, QuarantineStore* store)
      : options_(std::move(options)), store_(store) {}

  grpc::Status Store(grpc::ServerContext* context, grpc::ServerReader<v1::StoreRequest>* reader,
                     v1::StoreResponse* response) override;
  grpc::Status List(grpc::ServerContext* context, const v1::ListRequest* request,
                    v1::ListResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request,
                   grpc::ServerWriter<v1::GetResponse>* writer) override;
  grpc::Status Release(grpc::ServerContext* context, const v1::ReleaseRequest* request,
                       v1::ReleaseResponse* response) override;
  grpc::Status Delete(grpc::ServerContext* context, const v1::DeleteRequest* request,
                      v1::DeleteResponse* response) override;
  grpc::Status Expire(grpc::ServerContext* context, const v1::ExpireRequest* request,
                      v1::ExpireResponse* response) override;

 private:
  const QuarantineOptions options_;
  QuarantineStore* store_;
};

class QuarantineServer {
 public:
  QuarantineServer(QuarantineOptions options, std::unique_ptr<QuarantineStore> store);
  ~QuarantineServer();

  absl::Status Start();
  int port() const { return runner_.port(); }
  void Shutdown();

  QuarantineStore& store() { return *store_; }

 private:
  void ExpireLoop();

  QuarantineOptions options_;
  std::unique_ptr<QuarantineStore> store_;
  QuarantineServiceImpl service_;
  GrpcServerRunner runner_;
  absl::Notification stop_;
  std::thread expirer_;
};

}  // namespace sagator::quarantine

#endif  // SAGATOR_QUARANTINE_SVC_QUARANTINE_SERVICE_H_
