#include "collector-svc/collector_server.h"

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <glog/logging.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "collector-svc/graphs.h"

namespace sagator::collector {

CollectorOptions OptionsFromConfig(const LoadedConfig& cfg,
                                   const config::v1::CollectorService& service) {
  CollectorOptions o;
  o.host = service.host();
  o.port = service.port();
  o.statfile = service.statfile().empty() ? "" : cfg.ResolvePath(service.statfile());
  o.status_interval = ToDuration(service.status_interval());
  o.legacy_host = service.legacy_host().empty() ? "0.0.0.0" : service.legacy_host();
  o.legacy_port = service.legacy_port();
  o.http_host = service.http_host();
  o.http_port = service.http_port();
  o.history_file = service.history_file().empty() ? "" : cfg.ResolvePath(service.history_file());
  return o;
}

CollectorServer::CollectorServer(CollectorOptions options) : opt_(std::move(options)) {}

CollectorServer::~CollectorServer() { Shutdown(); }

absl::Status CollectorServer::Start() {
  if (!opt_.history_file.empty()) {
    std::ifstream in(opt_.history_file, std::ios::binary);
    if (in) {
      std::stringstream buf;
      buf << in.rdbuf();
      v1::History h;
      if (h.ParseFromString(buf.str())) {
        agg_.LoadHistory(h);
        LOG(INFO) << "loaded " << h.counters_size() << " counters and " << h.buckets_size()
                  << " time-series buckets from " << opt_.history_file;
      } else {
        // A damaged history costs graphs, not the service.
        LOG(WARNING) << opt_.history_file << " is not a collector history file; starting empty";
      }
    }
  }
  grpc_ = std::make_unique<GrpcServerRunner>(opt_.host, opt_.port);
  grpc_->AddService(&service_);
  grpc_->SetMaxMessageSize(64 << 20);
  if (absl::Status s = grpc_->Start(); !s.ok()) return s;
  if (opt_.http_port >= 0) {
    http_ = std::make_unique<net::HttpServer>(
        net::HttpServerOptions{.host = opt_.http_host, .port = opt_.http_port, .name = "collector-web"},
        [this](const net::HttpRequest& r) { return Serve(r); });
    if (absl::Status s = http_->Start(); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("web page on ", opt_.http_host, ":",
                                                 opt_.http_port, ": ", s.message()));
    }
  }
  if (opt_.legacy_port >= 0) {
    net::TcpServerOptions o;
    o.host = opt_.legacy_host;
    o.port = opt_.legacy_port;
    o.name = "collector-legacy";
    o.workers = 1;
    o.shutdown_grace = absl::Seconds(1);
    legacy_ = std::make_unique<net::TcpServer>(
        o, [this](std::shared_ptr<net::Connection> c) -> boost::asio::awaitable<void> {
          std::string text = agg_.StatusText(absl::Now());
          co_await net::ReplyAndClose(c, text, absl::Seconds(10));
        });
    if (absl::Status s = legacy_->Start(); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("legacy status port ", opt_.legacy_host, ":",
                                                 opt_.legacy_port, ": ", s.message()));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    started_ = true;
  }
  if (absl::Status s = WriteFiles(); !s.ok()) return s;
  writer_ = std::thread([this] { WriterLoop(); });
  return absl::OkStatus();
}

void CollectorServer::WriterLoop() {
  while (true) {
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_), opt_.status_interval);
      stopping = stop_;
    }
    if (absl::Status s = WriteFiles(); !s.ok()) LOG(WARNING) << s.message();
    if (stopping) return;
  }
}

absl::Status CollectorServer::WriteFiles() {
  absl::Time now = absl::Now();
  if (!opt_.statfile.empty()) {
    absl::Status s = WriteFileAtomically(opt_.statfile, agg_.StatusText(now));
    if (!s.ok()) return s;
  }
  if (!opt_.history_file.empty()) {
    std::string bytes;
    agg_.SaveHistory().SerializeToString(&bytes);
    absl::Status s = WriteFileAtomically(opt_.history_file, bytes);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

void CollectorServer::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || stop_) return;
    stop_ = true;
  }
  if (writer_.joinable()) writer_.join();
  if (legacy_ != nullptr) legacy_->Shutdown();
  if (http_ != nullptr) http_->Shutdown();
  if (grpc_ != nullptr) grpc_->Shutdown(absl::Seconds(2));
}

net::HttpResponse CollectorServer::Serve(const net::HttpRequest& r) {
  absl::Time now = absl::Now();
  Range range = Range::kDay;
  auto it = r.query.find("range");
  if (it != r.query.end() && !ParseRange(it->second, &range)) {
    return {400, "text/plain; charset=utf-8", "range must be day, week, month or year\n"};
  }
  if (r.path == "/" || r.path == "/index.html") {
    return {200, "text/html; charset=utf-8", RenderPage(agg_, range, now)};
  }
  if (r.path == "/metrics") {
    return {200, "text/plain; version=0.0.4; charset=utf-8", agg_.PrometheusText()};
  }
  if (r.path == "/status") return net::HttpResponse::Text(agg_.StatusText(now));
  absl::string_view path = r.path;
  if (absl::ConsumePrefix(&path, "/graph/") && absl::ConsumeSuffix(&path, ".svg")) {
    std::string svg = RenderGraph(agg_, path, range, now);
    if (!svg.empty()) return {200, "image/svg+xml", std::move(svg)};
  }
  return net::HttpResponse::NotFound();
}

}  // namespace sagator::collector
