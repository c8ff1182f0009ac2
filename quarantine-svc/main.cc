// quarantine-svc: SAGATOR's quarantine (storage, search, release, retention). See
// README.md.
#include <glog/logging.h>

#include "common/cli.h"
#include "common/config.h"
#include "common/grpc_server.h"
#include "common/sql.h"
#include "quarantine-svc/quarantine_service.h"

int main(int argc, char** argv) {
  sagator::BlockShutdownSignals();
  sagator::LoadedConfig cfg = sagator::InitBinary(
      argc, argv,
      "quarantine-svc --config FILE [--service NAME]: keeps quarantined mail, searches, "
      "releases and expires it");
  const sagator::config::v1::Service& service =
      sagator::ServiceOrExit(cfg, sagator::config::v1::Service::kQuarantine);
  const auto& spec = service.quarantine();
  auto db = sagator::sql::Open(cfg.proto.databases().at(spec.db()), cfg.base_dir,
                               /*durable=*/true);
  if (!db.ok()) {
    LOG(ERROR) << "database '" << spec.db() << "': " << db.status().message();
    return 1;
  }
  auto store = sagator::quarantine::QuarantineStore::Open(*db);
  if (!store.ok()) {
    LOG(ERROR) << "database '" << spec.db() << "': " << store.status().message();
    return 1;
  }
  sagator::quarantine::QuarantineOptions options =
      sagator::quarantine::OptionsFromConfig(cfg, spec);
  sagator::quarantine::QuarantineServer server(options, *std::move(store));
  if (absl::Status s = server.Start(); !s.ok()) {
    LOG(ERROR) << s.message();
    return 1;
  }
  if (!sagator::WritePortFile(server.port())) {
    LOG(ERROR) << "cannot write the port file";
    return 1;
  }
  LOG(INFO) << "quarantine-svc '" << service.name() << "' on " << options.host << ":"
            << server.port() << ", database '" << spec.db() << "', releases to "
            << options.relay << ", retention "
            << (options.retention > absl::ZeroDuration() ? absl::FormatDuration(options.retention)
                                                         : std::string("forever"));
  int sig = sagator::WaitForTerminationSignal();
  LOG(INFO) << "signal " << sig << ": stopping";
  server.Shutdown();
  return 0;
}
