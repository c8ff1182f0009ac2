// sgstat: prints collector-svc's current statistics, in the status file's format
// (default) or as Prometheus text.
//
//   sgstat --config /etc/sagator/sagator.yaml
//   sgstat --target 127.0.0.1:7291 --prefix messages
//   sgstat --format prometheus
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "collector-svc/aggregator.h"
#include "common/cli.h"
#include "common/config.h"
#include "common/stats.h"
#include "sagator/collector/v1/collector.grpc.pb.h"

ABSL_FLAG(std::string, target, "",
          "collector-svc's gRPC address (default: from the configuration file)");
ABSL_FLAG(std::string, prefix, "", "only stats whose name starts with this");
ABSL_FLAG(std::string, format, "text", "text (the status file's format) or prometheus");
ABSL_FLAG(bool, sources, false, "also list the reporting processes");

namespace {
constexpr char kUsage[] =
    "sgstat: prints SAGATOR's current statistics from collector-svc.\n"
    "Usage: sgstat [--config FILE | --target HOST:PORT] [--prefix NAME] "
    "[--format text|prometheus] [--sources]\n"
    "Exit status: 0 printed, 1 collector-svc unreachable, 2 bad usage or configuration.";
}  // namespace

int main(int argc, char** argv) {
  sagator::InitFlagsAndLogging(argc, argv, kUsage);
  std::string target = sagator::ToolTargetOrExit(
      absl::GetFlag(FLAGS_target), sagator::CollectorTarget,
      "no collector service and no global.collector_target");
  std::string format = absl::GetFlag(FLAGS_format);
  if (format != "text" && format != "prometheus") {
    std::fprintf(stderr, "--format must be text or prometheus\n");
    return 2;
  }
  auto stub = sagator::collector::v1::CollectorService::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  sagator::collector::v1::GetStatusRequest req;
  req.set_name_prefix(absl::GetFlag(FLAGS_prefix));
  sagator::collector::v1::GetStatusResponse resp;
  grpc::Status s = stub->GetStatus(&ctx, req, &resp);
  if (!s.ok()) {
    std::fprintf(stderr, "sgstat: collector-svc at %s: %s\n", target.c_str(),
                 s.error_message().c_str());
    return 1;
  }
  sagator::stats::Snapshot totals = sagator::collector::SnapshotFromStatus(resp);
  std::string out =
      format == "prometheus"
          ? sagator::stats::RenderPrometheus(totals)
          : sagator::collector::RenderStatusText(
                totals, static_cast<size_t>(resp.sources_size()), resp.events_ingested(),
                absl::FromUnixSeconds(resp.started_at().seconds()), absl::Now());
  std::fwrite(out.data(), 1, out.size(), stdout);
  if (absl::GetFlag(FLAGS_sources)) {
    for (const auto& src : resp.sources()) {
      std::printf("source %s batches=%lld dropped=%lld last=%s\n", src.source().c_str(),
                  static_cast<long long>(src.batches()),
                  static_cast<long long>(src.dropped_events()),
                  absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                   absl::FromUnixSeconds(src.last_report().seconds()),
                                   absl::UTCTimeZone())
                      .c_str());
    }
  }
  return 0;
}
