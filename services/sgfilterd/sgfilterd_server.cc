#include "services/sgfilterd/sgfilterd_server.h"

#include <glog/logging.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"
#include "common/message_filter.h"
#include "common/tcp_server.h"
#include "services/sgfilterd/sgfilter_protocol.h"
#include "common/config.h"

namespace sagator::sgfilterd {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using net::Clock;
using net::Connection;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

constexpr size_t kReadBufferSize = 16 * 1024;
constexpr double kMiB = 1024.0 * 1024.0;

struct Counters {
  std::atomic<int64_t> refused_memory{0};
  std::atomic<int64_t> messages{0};
  std::atomic<int64_t> passed{0};
  std::atomic<int64_t> forced{0};
  std::atomic<int64_t> tempfailed{0};
  std::atomic<int64_t> rejected{0};
  std::atomic<int64_t> dropped{0};
  std::atomic<int64_t> protocol_errors{0};
  std::atomic<int64_t> too_large{0};
  std::atomic<int64_t> timeouts{0};
  std::atomic<int64_t> client_aborts{0};
};

}  // namespace

SgfilterdOptions OptionsFromConfig(const config::v1::Config& config,
                                   const config::v1::SgfilterdService& service) {
  SgfilterdOptions o;
  o.host = service.host();
  o.port = service.port();
  o.prefork = std::max(1, service.prefork());
  o.max_connections = std::max(1, service.max_connections());
  o.timeout =
      ToDuration(service.timeout());
  o.max_buffered_bytes = service.max_buffered_bytes();
  o.max_message_size = config.global().max_message_size();
  o.chain = service.scanners();
  return o;
}

class SgfilterdServer::Impl {
 public:
  Impl(SgfilterdOptions options, ScannerClient* scanner)
      : opt_(std::move(options)),
        scanner_(scanner),
        budget_(opt_.max_buffered_bytes),
        server_(
            net::TcpServerOptions{
                .host = opt_.host,
                .port = opt_.port,
                .max_connections = opt_.max_connections,
                .backlog = opt_.backlog,
                .refuse_line = FormatResultLine(451, 0, "too many connections"),
                .refuse_timeout = opt_.timeout,
                .shutdown_grace = opt_.shutdown_grace,
                .name = "sgfilterd",
                .workers = opt_.prefork,
            },
            [this](std::shared_ptr<Connection> c) { return Serve(std::move(c)); }) {}

  ~Impl() { Shutdown(); }

  absl::Status Start() {
    if (opt_.max_buffered_bytes < opt_.max_message_size) {
      LOG(WARNING) << "max_buffered_bytes (" << opt_.max_buffered_bytes
                   << ") is below max_message_size (" << opt_.max_message_size
                   << "): larger messages always get 451";
    }
    return server_.Start();
  }

  int port() const { return server_.port(); }

  // Scans still running or queued end at once; their replies are never written.
  void Shutdown() {
    server_.Shutdown([this] { scanner_->CancelAll(); });
  }

  SgfilterdStats stats() const {
    SgfilterdStats s;
    static_cast<net::ConnectionCounts&>(s) = server_.counts();
    s.refused_memory = counters_.refused_memory;
    s.messages = counters_.messages;
    s.passed = counters_.passed;
    s.forced = counters_.forced;
    s.tempfailed = counters_.tempfailed;
    s.rejected = counters_.rejected;
    s.dropped = counters_.dropped;
    s.protocol_errors = counters_.protocol_errors;
    s.too_large = counters_.too_large;
    s.timeouts = counters_.timeouts;
    s.client_aborts = counters_.client_aborts;
    s.buffered_bytes = budget_.used();
    return s;
  }

 private:
  // What the command/data phase ended with.
  enum class Phase { kRead, kScan, kBusy, kTooLarge, kProtocolError };

  // Feeds `in` to the parser until it needs more input or the phase ends.
  Phase Consume(SgfilterParser& parser, absl::string_view in, common::v1::Envelope& env,
                std::string& message, net::MemoryBudget::Reservation& reservation, Clock::time_point start,
                Clock::time_point* overall, std::string* error) {
    for (;;) {
      SgfilterEvent ev = parser.Next(&in);
      switch (ev.type) {
        case SgfilterEventType::kNeedMore:
          return Phase::kRead;
        case SgfilterEventType::kSender:
          if (!reservation.Take(static_cast<int64_t>(ev.value.size()))) return Phase::kBusy;
          env.set_sender(ev.value);
          break;
        case SgfilterEventType::kRecipient:
          // The envelope is held in memory too: up to 1000 lines of 1000 bytes.
          if (!reservation.Take(static_cast<int64_t>(ev.value.size()))) return Phase::kBusy;
          env.add_recipients(ev.value);
          break;
        case SgfilterEventType::kDataStart: {
          if (!reservation.Take(ev.length)) return Phase::kBusy;
          message.reserve(static_cast<size_t>(ev.length));
          *overall = start + net::ToChrono(opt_.timeout * (1.0 + static_cast<double>(ev.length) / kMiB));
          break;
        }
        case SgfilterEventType::kData:
          message.append(ev.data.data(), ev.data.size());
          break;
        case SgfilterEventType::kMessageEnd:
          if (!in.empty()) {
            *error = parser.Next(&in).value;
            return Phase::kProtocolError;
          }
          return Phase::kScan;
        case SgfilterEventType::kError:
          *error = ev.value;
          return ev.too_large ? Phase::kTooLarge : Phase::kProtocolError;
      }
    }
  }

  awaitable<void> Serve(std::shared_ptr<Connection> c) {
    const Clock::time_point start = Clock::now();
    const Clock::duration timeout = net::ToChrono(opt_.timeout);
    Clock::time_point overall = start + timeout;
    SgfilterParser parser({.max_message_size = opt_.max_message_size});
    common::v1::Envelope env;
    std::string message;
    net::MemoryBudget::Reservation reservation(&budget_);
    std::string error;
    // In the coroutine frame, which lives on the heap: one buffer per connection.
    std::array<char, kReadBufferSize> buf;

    Phase phase = Phase::kRead;
    while (phase == Phase::kRead) {
      c->Arm(std::min(Clock::now() + timeout, overall));
      boost::system::error_code ec;
      size_t n =
          co_await c->sock.async_read_some(asio::buffer(buf), redirect_error(use_awaitable, ec));
      if (ec) {
        if (c->timed_out()) {
          ++counters_.timeouts;
          gw_.Error("timeout");
          LOG(WARNING) << "connection " << c->id << " from " << c->peer << ": timeout after "
                       << parser.recipients() << " recipient(s), "
                       << (parser.state() == SgfilterParser::State::kData
                               ? absl::StrCat(parser.remaining(), " message bytes missing")
                               : std::string("no DATA"));
          const std::string line = FormatResultLine(451, 0, "timeout");
          co_await net::ReplyAndClose(c, line, opt_.timeout);
        } else {
          ++counters_.client_aborts;
          LOG(WARNING) << "connection " << c->id << " from " << c->peer
                       << ": closed before the message was complete (" << ec.message() << ")";
          c->sock.close(ec);
        }
        c->Disarm();
        co_return;
      }
      phase = Consume(parser, absl::string_view(buf.data(), n), env, message, reservation, start,
                      &overall, &error);
    }
    c->Disarm();
    if (phase == Phase::kBusy) {
      ++counters_.refused_memory;
      gw_.Error("memory");
      LOG(WARNING) << "connection " << c->id << " from " << c->peer << ": memory budget of "
                   << opt_.max_buffered_bytes << " bytes is spent; answering 451";
      const std::string line = FormatResultLine(451, 0, "server busy, try later");
      co_await net::ReplyAndClose(c, line, opt_.timeout);
      co_return;
    }
    if (phase == Phase::kTooLarge) {
      ++counters_.too_large;
      gw_.Error("too_large");
      LOG(WARNING) << "connection " << c->id << " from " << c->peer << ": " << error;
      const std::string line = FormatResultLine(451, 0, error);
      co_await net::ReplyAndClose(c, line, opt_.timeout);
      co_return;
    }
    if (phase == Phase::kProtocolError) {
      co_await ProtocolError(c, error);
      co_return;
    }

    // A whole message: scan it on the pool.
    const int64_t size = static_cast<int64_t>(message.size());
    const size_t recipients = static_cast<size_t>(env.recipients_size());
    const std::string sender = env.sender();
    env.mutable_client()->set_address(c->peer);
    env.mutable_client()->set_protocol("sgfilter");
    *env.mutable_received_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
    FilterRequest request{"sgfilterd", opt_.chain, std::move(env), std::move(message)};
    const Clock::time_point scan_start = Clock::now();
    auto scan = [this, request = std::move(request)]() mutable {
      return FilterMessage(*scanner_, std::move(request));
    };
    FilterResult result = co_await net::RunOnPool(server_.pool(), scan, use_awaitable);
    const double scan_seconds = std::chrono::duration<double>(Clock::now() - scan_start).count();

    // Bytes that arrived beyond the announced length are not part of the message.
    boost::system::error_code ec;
    size_t extra = c->sock.available(ec);
    if (!ec && extra > 0) {
      const std::string reason =
          absl::StrCat("more bytes than the announced DATA length (", extra, " extra)");
      co_await ProtocolError(c, reason);
      co_return;
    }

    ++counters_.messages;
    gw_.MessageWithCode(result.code, size, result.scan_status);
    gw_.Latency("scan", absl::Seconds(scan_seconds));
    switch (result.code) {
      case 250:
        ++counters_.passed;
        break;
      case 251:
        ++counters_.forced;
        break;
      case 550:
        ++counters_.rejected;
        break;
      case 551:
        ++counters_.dropped;
        break;
      default:
        ++counters_.tempfailed;
        break;
    }
    LOG(INFO) << absl::StrFormat(
        "message id=%s conn=%d client=%s from=<%s> rcpts=%d size=%d code=%d level=%.2f "
        "detection=%s scan=%.3fs elapsed=%.3fs%s",
        result.sagator_id.empty() ? "-" : result.sagator_id, c->id, c->peer, sender, recipients,
        size, result.code, result.level, result.detection.empty() ? "-" : result.detection,
        scan_seconds, std::chrono::duration<double>(Clock::now() - start).count(),
        result.scan_status.ok() ? "" : absl::StrCat(" error=", result.scan_status.ToString()));

    std::string line = FormatResultLine(result.code, result.level, result.text);
    double reply_mib = static_cast<double>(result.message.size()) / kMiB;
    c->Arm(Clock::now() + net::ToChrono(opt_.timeout * (1.0 + reply_mib)));
    if (result.send_message) {
      std::array<asio::const_buffer, 2> bufs = {asio::buffer(line), asio::buffer(result.message)};
      co_await asio::async_write(c->sock, bufs, redirect_error(use_awaitable, ec));
    } else {
      co_await asio::async_write(c->sock, asio::buffer(line), redirect_error(use_awaitable, ec));
    }
    if (ec) {
      LOG(WARNING) << "connection " << c->id << " from " << c->peer
                   << (c->timed_out() ? ": timeout writing the reply" : ": cannot write the reply: ")
                   << (c->timed_out() ? "" : ec.message());
    }
    c->Disarm();
    c->sock.shutdown(tcp::socket::shutdown_both, ec);
    c->sock.close(ec);
  }

  // `c` and `reason` must outlive the call (the caller awaits it at once).
  awaitable<void> ProtocolError(const std::shared_ptr<Connection>& c, const std::string& reason) {
    ++counters_.protocol_errors;
    gw_.Error("protocol");
    LOG(WARNING) << "connection " << c->id << " from " << c->peer << ": protocol error: " << reason;
    const std::string line = FormatResultLine(451, 0, "protocol error: " + reason);
    co_await net::ReplyAndClose(c, line, opt_.timeout);
  }

  const SgfilterdOptions opt_;
  ScannerClient* const scanner_;
  net::MemoryBudget budget_;
  Counters counters_;
  stats::GatewayStats gw_{opt_.stats, "sgfilterd"};
  net::TcpServer server_;
};

SgfilterdServer::SgfilterdServer(SgfilterdOptions options, ScannerClient* scanner)
    : impl_(std::make_unique<Impl>(std::move(options), scanner)) {}

SgfilterdServer::~SgfilterdServer() = default;

absl::Status SgfilterdServer::Start() { return impl_->Start(); }
int SgfilterdServer::port() const { return impl_->port(); }
void SgfilterdServer::Shutdown() { impl_->Shutdown(); }
SgfilterdStats SgfilterdServer::stats() const { return impl_->stats(); }

}  // namespace sagator::sgfilterd
