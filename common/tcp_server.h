// The socket frame every line-protocol gateway (sgfilterd, smtpd, lmtpd) serves on:
// I/O threads running C++20 coroutines (Boost.Asio), so no connection needs a
// thread of its own, plus the pieces those coroutines share. One I/O thread by
// default; with io_threads > 1 each thread runs an io_context of its own and the
// accepted connections are dealt out to them in turn (a connection stays on its
// thread: Connection::io_index).
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
#include <vector>

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

// One client connection, owned by a shared_ptr (TcpServer makes it). Used on its
// I/O thread only.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket s, uint64_t id, int io_index = 0);
  tcp::socket sock;
  const uint64_t id;
  // Which I/O thread serves it (TcpServer::io(io_index)).
  const int io_index;
  // The client's address and port ("" and 0 when unknown).
  std::string peer;
  uint16_t peer_port = 0;

  // Cancels pending I/O on the socket at `when`. Cheap to call per request: a
  // later deadline only updates a field (the pending wait, when it ends, waits
  // again for the rest); only an earlier one moves the timer.
  void Arm(Clock::time_point when);
  void Arm(absl::Duration from_now) { Arm(Clock::now() + ToChrono(from_now)); }
  void Disarm() { deadline_ = Clock::time_point::max(); }
  bool timed_out() const { return timed_out_; }

 private:
  // Waits on timer_ until `when`.
  void StartWait(Clock::time_point when);
  // timer_ went off: cancels the socket's I/O when the deadline has passed, else
  // waits again until it.
  void OnTimer();

  asio::steady_timer timer_;
  // When pending I/O is cancelled; max(): never (disarmed).
  Clock::time_point deadline_ = Clock::time_point::max();
  // A wait on timer_ is pending; its number (older waits that still complete are
  // ignored).
  bool waiting_ = false;
  uint64_t wait_number_ = 0;
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
  // I/O threads, each with its own io_context; at least 1.
  int io_threads = 1;
};

class TcpServer {
 public:
  using Handler = std::function<asio::awaitable<void>(std::shared_ptr<Connection>)>;

  TcpServer(TcpServerOptions options, Handler serve);
  ~TcpServer();
  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;

  // Binds, listens and starts the I/O threads and the worker pool.
  absl::Status Start();
  int port() const { return bound_port_; }
  // Stops accepting, gives connections in flight up to shutdown_grace, stops the
  // I/O thread, runs `cancel_work` (make the blocking work in pool() end soon, e.g.
  // ScannerClient::CancelAll), joins the pool, then destroys the coroutines still
  // suspended. Idempotent.
  void Shutdown(const std::function<void()>& cancel_work = nullptr);

  // The I/O threads' io_contexts (the first one also accepts); valid after Start.
  asio::io_context& io(int index = 0) { return *ios_[static_cast<size_t>(index)]; }
  int io_threads() const { return static_cast<int>(ios_.size()); }
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
  // The accepting thread (io(0)) only.
  uint64_t next_id_ = 0;
  std::atomic<int> refusing_{0};

  absl::Mutex mu_;  // serializes Start and Shutdown
  bool started_ = false;
  bool stopped_ = false;
  std::vector<std::unique_ptr<asio::io_context>> ios_;
  std::unique_ptr<asio::thread_pool> pool_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::vector<std::thread> io_threads_;
};

}  // namespace sagator::net

#endif  // SAGATOR_COMMON_TCP_SERVER_H_
