// The socket frame every line-protocol gateway (sgfilterd, smtpd, lmtpd) serves on:
// one I/O thread running C++20 coroutines (Boost.Asio), so no connection needs a
// thread of its own, plus the pieces those coroutines share.
//
//   TcpServer server(options, [&](std::shared_ptr<Connection> c) -> awaitable<void> {
//     ... co_await reads and writes on c->sock, c->Arm(deadline) before each ...
//   });
//   absl::Status s = server.Start();   // binds; server.port() is the bound port
//   ...
//   server.Shutdown([&] { scanner->CancelAll(); pool.join(); });
//
// - max_connections: a connection beyond it gets options.refuse_line and is closed.
// - Connection::Arm(when) cancels the connection's pending I/O at `when`; the
//   coroutine then sees operation_aborted with timed_out() set.
// - RunOnPool runs blocking work (a gRPC scan, a relay) on a thread pool and resumes
//   the coroutine on the I/O thread with its result.
// - MemoryBudget bounds the bytes all connections hold together.
//
// g++ 12 mishandles temporaries with destructors inside a co_await expression (they
// can be destroyed twice), so coroutines pass only named objects, by reference, to
// what they await.
//
// Thread-safe: Start, Shutdown, port and the counters may be called from any thread.
#ifndef SAGATOR_COMMON_TCP_SERVER_H_
#define SAGATOR_COMMON_TCP_SERVER_H_

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
// (separate block: keep the include above first)
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "common/connection_counts.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sagator::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

inline Clock::duration ToChrono(absl::Duration d) {
  return std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(d));
}

// One client connection. Used on the I/O thread only.
class Connection {
 public:
  Connection(tcp::socket s, uint64_t id);
  tcp::socket sock;
  const uint64_t id;
  // The client's address and port ("" and 0 when unknown).
  std::string peer;
  uint16_t peer_port = 0;

  // Cancels pending I/O on the socket at `when`.
  void Arm(Clock::time_point when);
  void Arm(absl::Duration from_now) { Arm(Clock::now() + ToChrono(from_now)); }
  void Disarm();
  bool timed_out() const { return timed_out_; }

 private:
  asio::steady_timer timer_;
  // Bumped at every Arm/Disarm so a timer that fired late does not count.
  uint64_t generation_ = 0;
  bool timed_out_ = false;
};

// Writes `line`, lets the client finish sending for a moment (closing a socket with
// unread input sends a reset, which can destroy the reply before the client reads
// it), then closes. `c` and `line` must outlive the call (await it at once).
asio::awaitable<void> ReplyAndClose(const std::shared_ptr<Connection>& c, const std::string& line,
                                    absl::Duration timeout);

// Runs f() on `pool` and completes `token` with its result on the token's executor
// (the connection's I/O thread), so blocking work never runs there. `f` is taken by
// reference and moved from (see the g++ note above).
template <typename F, typename Token>
auto RunOnPool(asio::thread_pool& pool, F& f, Token&& token) {
  using R = decltype(f());
  return asio::async_initiate<Token, void(R)>(
      [&pool](auto handler, F* fp) {
        F fn = std::move(*fp);
        auto work = asio::make_work_guard(asio::get_associated_executor(handler));
        asio::post(pool, [h = std::move(handler), fn = std::move(fn),
                          work = std::move(work)]() mutable {
          R r = fn();
          auto ex = work.get_executor();
          asio::post(ex, [h = std::move(h), r = std::move(r)]() mutable { h(std::move(r)); });
        });
      },
      token, &f);
}

// Bytes held in memory by all connections together, against a limit.
class MemoryBudget {
 public:
  explicit MemoryBudget(int64_t limit) : limit_(limit) {}
  int64_t used() const { return used_.load(); }
  int64_t limit() const { return limit_; }

  // What one connection holds; returned when it is destroyed or Released.
  class Reservation {
   public:
    explicit Reservation(MemoryBudget* budget) : budget_(budget) {}
    ~Reservation() { Release(); }
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    // Takes n more bytes; false (and nothing taken) when they do not fit.
    bool Take(int64_t n);
    // Grows the reservation to `total` bytes when it holds less.
    bool TakeUpTo(int64_t total) { return total <= held_ || Take(total - held_); }
    void Release();
    int64_t held() const { return held_; }

   private:
    MemoryBudget* budget_;
    int64_t held_ = 0;
  };

 private:
  const int64_t limit_;
  std::atomic<int64_t> used_{0};
};

struct TcpServerOptions {
  std::string host = "127.0.0.1";
  // 0 picks a free port.
  int port = 0;
  int max_connections = 1024;
  int backlog = 4096;
  // Written to a connection over max_connections before it is closed.
  std::string refuse_line;
  // How long a refused connection may take to read refuse_line.
  absl::Duration refuse_timeout = absl::Seconds(10);
  // Time in-flight connections get to finish at Shutdown.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // For logs ("sgfilterd", "smtpd").
  std::string name = "server";
  // Threads of pool(): the blocking work (scans, relays) the coroutines hand off.
  int workers = 2;
};

class TcpServer {
 public:
  using Handler = std::function<asio::awaitable<void>(std::shared_ptr<Connection>)>;

  TcpServer(TcpServerOptions options, Handler serve);
  ~TcpServer();
  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;

  // Binds, listens and starts the I/O thread and the worker pool.
  absl::Status Start();
  int port() const { return bound_port_; }
  // Stops accepting, gives connections in flight up to shutdown_grace, stops the
  // I/O thread, runs `cancel_work` (make the blocking work in pool() end soon, e.g.
  // ScannerClient::CancelAll), joins the pool, then destroys the coroutines still
  // suspended. Idempotent.
  void Shutdown(const std::function<void()>& cancel_work = nullptr);

  asio::io_context& io() { return *io_; }
  // Where coroutines run blocking work (RunOnPool); valid after Start.
  asio::thread_pool& pool() { return *pool_; }
  int64_t active_connections() const { return active_.load(); }
  ConnectionCounts counts() const {
    return {accepted_.load(), refused_.load(), active_.load()};
  }
  int64_t accepted_connections() const { return accepted_.load(); }
  int64_t refused_connections() const { return refused_.load(); }

 private:
  void SpawnAcceptLoop();
  asio::awaitable<void> AcceptLoop();
  asio::awaitable<void> Refuse(std::shared_ptr<Connection> c);

  const TcpServerOptions opt_;
  Handler serve_;
  std::atomic<int64_t> active_{0};
  std::atomic<int64_t> accepted_{0};
  std::atomic<int64_t> refused_{0};
  std::atomic<int> bound_port_{0};
  // I/O thread only.
  uint64_t next_id_ = 0;
  int refusing_ = 0;

  absl::Mutex mu_;  // serializes Start and Shutdown
  bool started_ = false;
  bool stopped_ = false;
  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<asio::thread_pool> pool_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::thread io_thread_;
};

}  // namespace sagator::net

#endif  // SAGATOR_COMMON_TCP_SERVER_H_
