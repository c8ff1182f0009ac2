#include "services/sgfilterd/sgfilterd_server.h"

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <glog/logging.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <exception>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"
#include "common/message_filter.h"
#include "services/sgfilterd/sgfilter_protocol.h"

namespace sagator::sgfilterd {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

constexpr size_t kReadBufferSize = 16 * 1024;
constexpr double kMiB = 1024.0 * 1024.0;
// How long an error reply waits for the client to stop sending before the close.
// Closing a socket with unread input sends a reset, which can destroy the reply
// before the client reads it.
constexpr auto kLingerTime = std::chrono::seconds(2);
// Refusals ("too many connections") written at once; beyond that a connection is
// closed without a reply.
constexpr int kMaxRefusing = 256;

// Runs f() on `pool` and completes `token` with its result on the token's own
// executor (the connection's I/O thread), so blocking work never runs there.
//
// g++ 12 mishandles temporaries with destructors inside a co_await expression (they
// can be destroyed twice), so the coroutines here pass only named objects, by
// reference, to what they await: `f` is taken by reference and moved from.
template <typename F, typename Token>
auto RunOnPool(asio::thread_pool& pool, F& f, Token&& token) {
  using R = decltype(f());
  return asio::async_initiate<Token, void(R)>(
      [&pool](auto handler, F* fp) {
        F fn = std::move(*fp);
        auto work = asio::make_work_guard(asio::get_associated_executor(handler));
        asio::post(
            pool, [h = std::move(handler), fn = std::move(fn), work = std::move(work)]() mutable {
              R r = fn();
              auto ex = work.get_executor();
              asio::post(ex, [h = std::move(h), r = std::move(r)]() mutable { h(std::move(r)); });
            });
      },
      token, &f);
}

Clock::duration ToChrono(absl::Duration d) {
  return std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(d));
}

struct Counters {
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> refused_connections{0};
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
      absl::Seconds(service.timeout().seconds()) + absl::Nanoseconds(service.timeout().nanos());
  o.max_buffered_bytes = service.max_buffered_bytes();
  o.max_message_size = config.global().max_message_size();
  o.chain = service.scanners();
  return o;
}

class SgfilterdServer::Impl {
 public:
  Impl(SgfilterdOptions options, ScannerClient* scanner)
      : opt_(std::move(options)), scanner_(scanner) {}

  ~Impl() { Shutdown(); }

  absl::Status Start() {
    absl::MutexLock lock(&mu_);
    if (started_) return absl::FailedPreconditionError("already started");
    io_ = std::make_unique<asio::io_context>(1);
    pool_ = std::make_unique<asio::thread_pool>(opt_.prefork);
    acceptor_ = std::make_unique<tcp::acceptor>(*io_);
    std::string where = absl::StrCat(opt_.host, ":", opt_.port);
    boost::system::error_code ec;
    tcp::endpoint endpoint;
    asio::ip::address addr = asio::ip::make_address(opt_.host, ec);
    if (!ec) {
      endpoint = tcp::endpoint(addr, static_cast<uint16_t>(opt_.port));
    } else {
      tcp::resolver resolver(*io_);
      auto results = resolver.resolve(opt_.host, std::to_string(opt_.port), ec);
      if (ec || results.empty()) {
        return absl::UnavailableError(
            absl::StrCat("cannot resolve ", opt_.host, ": ", ec.message()));
      }
      endpoint = results.begin()->endpoint();
    }
    acceptor_->open(endpoint.protocol(), ec);
    if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_->bind(endpoint, ec);
    if (!ec) acceptor_->listen(opt_.backlog, ec);
    if (ec) {
      acceptor_.reset();
      return absl::UnavailableError(absl::StrCat("cannot listen on ", where, ": ", ec.message()));
    }
    bound_port_ = acceptor_->local_endpoint().port();
    if (opt_.max_buffered_bytes < opt_.max_message_size) {
      LOG(WARNING) << "max_buffered_bytes (" << opt_.max_buffered_bytes
                   << ") is below max_message_size (" << opt_.max_message_size
                   << "): larger messages always get 451";
    }
    SpawnAcceptLoop();
    io_thread_ = std::thread([this] {
      for (;;) {
        try {
          io_->run();
          return;
        } catch (const std::exception& e) {
          LOG(ERROR) << "I/O thread: " << e.what();
        }
      }
    });
    started_ = true;
    return absl::OkStatus();
  }

  int port() const { return bound_port_; }

  void Shutdown() {
    absl::MutexLock lock(&mu_);
    if (!started_ || stopped_) return;
    stopped_ = true;
    asio::post(*io_, [this] {
      boost::system::error_code ec;
      acceptor_->close(ec);
    });
    absl::Time deadline = absl::Now() + opt_.shutdown_grace;
    while (active_.load() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
    if (active_.load() > 0) {
      LOG(WARNING) << active_.load() << " connection(s) still open after " << opt_.shutdown_grace
                   << "; closing them";
    }
    io_->stop();
    io_thread_.join();
    // Scans still running or queued end at once; their replies are never written.
    scanner_->CancelAll();
    pool_->join();
    // Destroys the coroutines still suspended, and with them their sockets.
    acceptor_.reset();
    io_.reset();
    pool_.reset();
  }

  SgfilterdStats stats() const {
    SgfilterdStats s;
    s.connections = counters_.connections;
    s.refused_connections = counters_.refused_connections;
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
    s.active_connections = active_;
    s.buffered_bytes = buffered_;
    return s;
  }

 private:
  // One client connection. Lives on the I/O thread only.
  struct Conn {
    Conn(tcp::socket s, uint64_t conn_id)
        : sock(std::move(s)), timer(sock.get_executor()), id(conn_id) {}
    tcp::socket sock;
    asio::steady_timer timer;
    uint64_t id;
    std::string peer;
    // Bumped at every Arm/Disarm so a timer that fired late does not count.
    uint64_t generation = 0;
    bool timed_out = false;
  };

  // Bytes of the shared memory budget held by one connection; returned when it ends.
  class Reservation {
   public:
    explicit Reservation(Impl* impl) : impl_(impl) {}
    ~Reservation() { impl_->buffered_ -= held_; }
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    bool Take(int64_t n) {
      int64_t cur = impl_->buffered_.load();
      do {
        if (cur + n > impl_->opt_.max_buffered_bytes) return false;
      } while (!impl_->buffered_.compare_exchange_weak(cur, cur + n));
      held_ += n;
      return true;
    }

   private:
    Impl* impl_;
    int64_t held_ = 0;
  };

  // What the command/data phase ended with.
  enum class Phase { kRead, kScan, kBusy, kTooLarge, kProtocolError };

  // Cancels the connection's pending I/O at `when` (the timeout). The coroutine sees
  // operation_aborted with conn->timed_out set.
  static void Arm(const std::shared_ptr<Conn>& c, Clock::time_point when) {
    uint64_t gen = ++c->generation;
    c->timed_out = false;
    c->timer.expires_at(when);
    c->timer.async_wait([weak = std::weak_ptr<Conn>(c), gen](const boost::system::error_code& ec) {
      if (ec) return;
      std::shared_ptr<Conn> conn = weak.lock();
      if (conn == nullptr || conn->generation != gen) return;
      conn->timed_out = true;
      boost::system::error_code ignored;
      conn->sock.cancel(ignored);
    });
  }

  static void Disarm(const std::shared_ptr<Conn>& c) {
    ++c->generation;
    c->timer.cancel();
  }

  // Runs AcceptLoop, and runs it again should it ever throw (out of memory), so the
  // server does not silently stop accepting.
  void SpawnAcceptLoop() {
    asio::co_spawn(*io_, AcceptLoop(), [this](std::exception_ptr e) {
      if (e == nullptr) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        LOG(ERROR) << "accept loop: " << ex.what();
      }
      if (acceptor_->is_open()) SpawnAcceptLoop();
    });
  }

  awaitable<void> AcceptLoop() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket sock(*io_);
      co_await acceptor_->async_accept(sock, redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
        LOG_EVERY_N(WARNING, 100) << "accept: " << ec.message();
        // Out of descriptors and the like: back off instead of spinning.
        asio::steady_timer pause(*io_, std::chrono::milliseconds(50));
        co_await pause.async_wait(redirect_error(use_awaitable, ec));
        continue;
      }
      // Replies are small writes: without this they wait for delayed ACKs.
      sock.set_option(tcp::no_delay(true), ec);
      auto conn = std::make_shared<Conn>(std::move(sock), ++next_id_);
      tcp::endpoint remote = conn->sock.remote_endpoint(ec);
      if (!ec) conn->peer = remote.address().to_string();
      if (active_.load() >= opt_.max_connections) {
        ++counters_.refused_connections;
        if (refusing_ < kMaxRefusing) {
          ++refusing_;
          asio::co_spawn(*io_, Refuse(conn), [this](std::exception_ptr) { --refusing_; });
        }
        continue;
      }
      ++active_;
      ++counters_.connections;
      asio::co_spawn(*io_, Serve(conn), [this, id = conn->id](std::exception_ptr e) {
        --active_;
        if (e == nullptr) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          LOG(ERROR) << "connection " << id << ": " << ex.what();
        }
      });
    }
  }

  awaitable<void> Refuse(std::shared_ptr<Conn> c) {
    LOG(WARNING) << "connection " << c->id << " from " << c->peer << ": refused, "
                 << opt_.max_connections << " connections already open";
    const std::string line = FormatResultLine(451, 0, "too many connections");
    co_await ReplyErrorAndClose(c, line);
  }

  // Writes one line, then lets the client finish sending (bounded), then closes.
  // `c` and `line` must outlive the call (the caller awaits it at once).
  awaitable<void> ReplyErrorAndClose(const std::shared_ptr<Conn>& c, const std::string& line) {
    boost::system::error_code ec;
    Arm(c, Clock::now() + ToChrono(opt_.timeout));
    co_await asio::async_write(c->sock, asio::buffer(line), redirect_error(use_awaitable, ec));
    if (!ec) {
      c->sock.shutdown(tcp::socket::shutdown_send, ec);
      Arm(c, Clock::now() + std::min<Clock::duration>(kLingerTime, ToChrono(opt_.timeout)));
      std::array<char, 4096> sink;
      while (!ec) {
        co_await c->sock.async_read_some(asio::buffer(sink), redirect_error(use_awaitable, ec));
      }
    }
    Disarm(c);
    c->sock.close(ec);
  }

  // Feeds `in` to the parser until it needs more input or the phase ends.
  Phase Consume(SgfilterParser& parser, absl::string_view in, common::v1::Envelope& env,
                std::string& message, Reservation& reservation, Clock::time_point start,
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
          *overall = start + ToChrono(opt_.timeout * (1.0 + static_cast<double>(ev.length) / kMiB));
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

  awaitable<void> Serve(std::shared_ptr<Conn> c) {
    const Clock::time_point start = Clock::now();
    const Clock::duration timeout = ToChrono(opt_.timeout);
    Clock::time_point overall = start + timeout;
    SgfilterParser parser({.max_message_size = opt_.max_message_size});
    common::v1::Envelope env;
    std::string message;
    Reservation reservation(this);
    std::string error;
    // In the coroutine frame, which lives on the heap: one buffer per connection.
    std::array<char, kReadBufferSize> buf;

    Phase phase = Phase::kRead;
    while (phase == Phase::kRead) {
      Arm(c, std::min(Clock::now() + timeout, overall));
      boost::system::error_code ec;
      size_t n =
          co_await c->sock.async_read_some(asio::buffer(buf), redirect_error(use_awaitable, ec));
      if (ec) {
        if (c->timed_out) {
          ++counters_.timeouts;
          LOG(WARNING) << "connection " << c->id << " from " << c->peer << ": timeout after "
                       << parser.recipients() << " recipient(s), "
                       << (parser.state() == SgfilterParser::State::kData
                               ? absl::StrCat(parser.remaining(), " message bytes missing")
                               : std::string("no DATA"));
          const std::string line = FormatResultLine(451, 0, "timeout");
          co_await ReplyErrorAndClose(c, line);
        } else {
          ++counters_.client_aborts;
          LOG(WARNING) << "connection " << c->id << " from " << c->peer
                       << ": closed before the message was complete (" << ec.message() << ")";
          c->sock.close(ec);
        }
        Disarm(c);
        co_return;
      }
      phase = Consume(parser, absl::string_view(buf.data(), n), env, message, reservation, start,
                      &overall, &error);
    }
    Disarm(c);
    if (phase == Phase::kBusy) {
      ++counters_.refused_memory;
      LOG(WARNING) << "connection " << c->id << " from " << c->peer << ": memory budget of "
                   << opt_.max_buffered_bytes << " bytes is spent; answering 451";
      const std::string line = FormatResultLine(451, 0, "server busy, try later");
      co_await ReplyErrorAndClose(c, line);
      co_return;
    }
    if (phase == Phase::kTooLarge) {
      ++counters_.too_large;
      LOG(WARNING) << "connection " << c->id << " from " << c->peer << ": " << error;
      const std::string line = FormatResultLine(451, 0, error);
      co_await ReplyErrorAndClose(c, line);
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
    FilterResult result = co_await RunOnPool(*pool_, scan, use_awaitable);
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
    Arm(c, Clock::now() + ToChrono(opt_.timeout * (1.0 + reply_mib)));
    if (result.send_message) {
      std::array<asio::const_buffer, 2> bufs = {asio::buffer(line), asio::buffer(result.message)};
      co_await asio::async_write(c->sock, bufs, redirect_error(use_awaitable, ec));
    } else {
      co_await asio::async_write(c->sock, asio::buffer(line), redirect_error(use_awaitable, ec));
    }
    if (ec) {
      LOG(WARNING) << "connection " << c->id << " from " << c->peer
                   << (c->timed_out ? ": timeout writing the reply" : ": cannot write the reply: ")
                   << (c->timed_out ? "" : ec.message());
    }
    Disarm(c);
    c->sock.shutdown(tcp::socket::shutdown_both, ec);
    c->sock.close(ec);
  }

  // `c` and `reason` must outlive the call (the caller awaits it at once).
  awaitable<void> ProtocolError(const std::shared_ptr<Conn>& c, const std::string& reason) {
    ++counters_.protocol_errors;
    LOG(WARNING) << "connection " << c->id << " from " << c->peer << ": protocol error: " << reason;
    const std::string line = FormatResultLine(451, 0, "protocol error: " + reason);
    co_await ReplyErrorAndClose(c, line);
  }

  const SgfilterdOptions opt_;
  ScannerClient* const scanner_;
  Counters counters_;
  std::atomic<int64_t> active_{0};
  std::atomic<int64_t> buffered_{0};
  // I/O thread only.
  uint64_t next_id_ = 0;
  int refusing_ = 0;

  absl::Mutex mu_;  // serializes Start and Shutdown
  bool started_ = false;
  bool stopped_ = false;
  std::atomic<int> bound_port_{0};
  std::unique_ptr<asio::thread_pool> pool_;
  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::thread io_thread_;
};

SgfilterdServer::SgfilterdServer(SgfilterdOptions options, ScannerClient* scanner)
    : impl_(std::make_unique<Impl>(std::move(options), scanner)) {}

SgfilterdServer::~SgfilterdServer() = default;

absl::Status SgfilterdServer::Start() { return impl_->Start(); }
int SgfilterdServer::port() const { return impl_->port(); }
void SgfilterdServer::Shutdown() { impl_->Shutdown(); }
SgfilterdStats SgfilterdServer::stats() const { return impl_->stats(); }

}  // namespace sagator::sgfilterd
