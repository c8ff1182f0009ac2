// quarantine-svc: SAGATOR's quarantine (storage, search, release, retention). See
// README.md.
#include <glog/logging.h>

#include "absl/flags/flag.h"

#include "common/cli.h"
#include "common/config.h"
#include "common/grpc_server.h"
#include "common/sql.h"
#include "quarantine-svc/quarantine_service.h"
#include "quarantine-svc/signing.h"
#include "quarantine-svc/webq.h"
#include "scanner-svc/policy/policy_store.h"

ABSL_FLAG(std::string, webq_port_file, "", "Write the bound webq port here");

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
  std::unique_ptr<sagator::quarantine::Webq> webq;
  if (spec.webq().port() >= 0) {
    auto webq_options = sagator::quarantine::WebqOptionsFromConfig(cfg, spec.webq());
    if (!webq_options.ok()) {
      LOG(ERROR) << webq_options.status().message();
      return 1;
    }
    auto signer =
        sagator::quarantine::Signer::FromKeyFile(cfg.ResolvePath(spec.webq().secret_file()));
    if (!signer.ok()) {
      LOG(ERROR) << "webq secret_file: " << signer.status().message();
      return 1;
    }
    // The whitelist action writes SAGATOR's policy lists (a WS entry).
    std::shared_ptr<sagator::sql::Database> lists_db = *db;
    if (spec.webq().whitelist_db() != spec.db()) {
      auto other = sagator::sql::Open(cfg.proto.databases().at(spec.webq().whitelist_db()),
                                      cfg.base_dir);
      if (!other.ok()) {
        LOG(ERROR) << "database '" << spec.webq().whitelist_db() << "': " << other.status().message();
        return 1;
      }
      lists_db = *other;
    }
    auto lists = sagator::policy::PolicyStore::Open(lists_db);
    if (!lists.ok()) {
      LOG(ERROR) << "database '" << spec.webq().whitelist_db() << "': " << lists.status().message();
      return 1;
    }
    std::shared_ptr<sagator::policy::PolicyStore> shared_lists = *std::move(lists);
    webq = std::make_unique<sagator::quarantine::Webq>(
        *std::move(webq_options), &server.store(),
        [&server, options](const sagator::quarantine::v1::ReleaseRequest& r) {
          return sagator::quarantine::ReleaseMessage(options, server.store(), r);
        },
        *std::move(signer), shared_lists);
    if (absl::Status s = webq->Start(); !s.ok()) {
      LOG(ERROR) << "webq: " << s.message();
      return 1;
    }
  }
  if (!sagator::WritePortFile(server.port()) ||
      !sagator::WritePortFileTo(absl::GetFlag(FLAGS_webq_port_file),
                                webq != nullptr ? webq->port() : -1)) {
    LOG(ERROR) << "cannot write a port file";
    return 1;
  }
  LOG(INFO) << "quarantine-svc '" << service.name() << "' on " << options.host << ":"
            << server.port() << ", database '" << spec.db() << "', releases to "
            << options.relay << ", retention "
            << (options.retention > absl::ZeroDuration() ? absl::FormatDuration(options.retention)
                                                         : std::string("forever"))
            << ", webq "
            << (webq != nullptr ? absl::StrCat("http://", spec.webq().host(), ":", webq->port(), "/")
                                : std::string("off"));
  int sig = sagator::WaitForTerminationSignal();
  LOG(INFO) << "signal " << sig << ": stopping";
  if (webq != nullptr) webq->Shutdown();
  server.Shutdown();
  return 0;
}
