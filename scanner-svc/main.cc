// scanner-svc: runs SAGATOR's scanner chains for every gateway over gRPC.
#include <fstream>
#include <thread>

#include <glog/logging.h>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/cli.h"
#include "common/service_stats.h"
#include "common/grpc_server.h"
#include "scanner-svc/chain_set.h"
#include "scanner-svc/scanner_service.h"
#include "common/config.h"


int main(int argc, char** argv) {
  sagator::BlockShutdownSignals();
  sagator::LoadedConfig cfg = sagator::InitBinary(
      argc, argv,
      "scanner-svc --config FILE [--service NAME]: runs SAGATOR's scanner chains over gRPC");
  auto svc = sagator::FindService(cfg.proto, absl::GetFlag(FLAGS_service),
                                  sagator::config::v1::Service::kScannerSvc);
  if (!svc.ok()) {
    LOG(ERROR) << cfg.path << ": " << svc.status().message();
    return 2;
  }
  const auto& spec = (*svc)->scanner_svc();
  std::unique_ptr<sagator::ServiceStats> stats = sagator::StartServiceStatsOrExit(cfg, **svc);
  auto chains = sagator::ChainSet::Create(cfg, stats->registry());
  if (!chains.ok()) {
    LOG(ERROR) << chains.status().message();
    return 2;
  }
  int threads = spec.threads() > 0 ? spec.threads()
                                   : std::max(1u, std::thread::hardware_concurrency());
  sagator::ScannerServiceImpl service(chains->get(), threads,
                                      sagator::ToDuration(cfg.proto.global().scan_timeout()));
  sagator::GrpcServerRunner runner(spec.host(), spec.port());
  runner.AddService(&service);
  runner.SetMaxThreads(threads * 4 + 16);
  if (absl::Status s = runner.Start(); !s.ok()) {
    LOG(ERROR) << s.message();
    return 1;
  }
  if (!sagator::WritePortFile(runner.port())) {
    LOG(ERROR) << "cannot write " << absl::GetFlag(FLAGS_port_file);
    return 1;
  }
  LOG(INFO) << "scanner-svc '" << (*svc)->name() << "' listening on " << runner.address()
            << " with " << threads << " scan slots; chains: "
            << absl::StrJoin((*chains)->Names(), ", ");
  runner.WaitForShutdownSignal(absl::Seconds(5));
  stats->Stop();
  return 0;
}
