#include "common/tcp_server.h"

#include <glog/logging.h>

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <exception>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sagator::net {

using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

// How long an error reply waits for the client to stop sending before the close.
constexpr absl::Duration kLingerTime = absl::Seconds(2);
// Refusals written at once; beyond that a connection is closed without a reply.
constexpr int kMaxRefusing = 256;

}  // namespace

Connection::Connection(tcp::socket s, uint64_t conn_id, int index)
    : sock(std::move(s)), id(conn_id), io_index(index), timer_(sock.get_executor()) {}

void Connection::Arm(Clock::time_point when) {
  timed_out_ = false;
  deadline_ = when;
  if (!waiting_ || when < timer_.expiry()) StartWait(when);
}

void Connection::StartWait(Clock::time_point when) {
  timer_.expires_at(when);  // a pending wait is cancelled: its handler returns at once
  waiting_ = true;
  const uint64_t number = ++wait_number_;
  timer_.async_wait([self = weak_from_this(), number](const boost::system::error_code& ec) {
    // Cancelled: a newer wait replaced it, or the Connection is being destroyed.
    if (ec) return;
    std::shared_ptr<Connection> c = self.lock();
    if (c == nullptr || c->wait_number_ != number) return;
    c->waiting_ = false;
    c->OnTimer();
  });
}

void Connection::OnTimer() {
  if (deadline_ == Clock::time_point::max()) return;
  if (Clock::now() < deadline_) {
    StartWait(deadline_);
    return;
  }
  timed_out_ = true;
  boost::system::error_code ignored;
  sock.cancel(ignored);
}

bool MemoryBudget::Reservation::Take(int64_t n) {
  int64_t cur = budget_->used_.load();
  do {
    if (cur + n > budget_->limit_) return false;
  } while (!budget_->used_.compare_exchange_weak(cur, cur + n));
  held_ += n;
  return true;
}

void MemoryBudget::Reservation::Release() {
  budget_->used_ -= held_;
  held_ = 0;
}

awaitable<void> ReplyAndClose(const std::shared_ptr<Connection>& c, const std::string& line,
                              absl::Duration timeout) {
  boost::system::error_code ec;
  c->Arm(timeout);
  co_await asio::async_write(c->sock, asio::buffer(line), redirect_error(use_awaitable, ec));
  if (!ec) {
    c->sock.shutdown(tcp::socket::shutdown_send, ec);
    c->Arm(std::min(kLingerTime, timeout));
    std::array<char, 4096> sink;
    while (!ec) {
      co_await c->sock.async_read_some(asio::buffer(sink), redirect_error(use_awaitable, ec));
    }
  }
  c->Disarm();
  c->sock.close(ec);
}

TcpServer::TcpServer(TcpServerOptions options, Handler serve)
    : opt_(std::move(options)), serve_(std::move(serve)) {}

TcpServer::~TcpServer() { Shutdown(); }

absl::Status TcpServer::Start() {
  absl::MutexLock lock(&mu_);
  if (started_) return absl::FailedPreconditionError("already started");
  ios_.clear();
  for (int i = 0; i < std::max(1, opt_.io_threads); ++i) {
    ios_.push_back(std::make_unique<asio::io_context>(1));
  }
  pool_ = std::make_unique<asio::thread_pool>(std::max(1, opt_.workers));
  acceptor_ = std::make_unique<tcp::acceptor>(*ios_[0]);
  std::string where = absl::StrCat(opt_.host, ":", opt_.port);
  boost::system::error_code ec;
  tcp::endpoint endpoint;
  asio::ip::address addr = asio::ip::make_address(opt_.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(addr, static_cast<uint16_t>(opt_.port));
  } else {
    tcp::resolver resolver(*ios_[0]);
    auto results = resolver.resolve(opt_.host, std::to_string(opt_.port), ec);
    if (ec || results.empty()) {
      return absl::UnavailableError(absl::StrCat("cannot resolve ", opt_.host, ": ", ec.message()));
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
  SpawnAcceptLoop();
  for (auto& io : ios_) {
    // Each runs until Shutdown stops it, even while it has no connection.
    auto guard = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(
        io->get_executor());
    io_threads_.emplace_back([this, io = io.get(), guard] {
      for (;;) {
        try {
          io->run();
          return;
        } catch (const std::exception& e) {
          LOG(ERROR) << opt_.name << " I/O thread: " << e.what();
        }
      }
    });
  }
  started_ = true;
  return absl::OkStatus();
}

void TcpServer::Shutdown(const std::function<void()>& cancel_work) {
  absl::MutexLock lock(&mu_);
  if (!started_ || stopped_) return;
  stopped_ = true;
  asio::post(*ios_[0], [this] {
    boost::system::error_code ec;
    acceptor_->close(ec);
  });
  absl::Time deadline = absl::Now() + opt_.shutdown_grace;
  while (active_.load() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  if (active_.load() > 0) {
    LOG(WARNING) << opt_.name << ": " << active_.load() << " connection(s) still open after "
                 << opt_.shutdown_grace << "; closing them";
  }
  for (auto& io : ios_) io->stop();
  for (std::thread& t : io_threads_) t.join();
  io_threads_.clear();
  // Work still running or queued ends soon; its results are never delivered.
  if (cancel_work) cancel_work();
  pool_->join();
  // Destroys the coroutines still suspended, and with them their sockets.
  acceptor_.reset();
  ios_.clear();
  pool_.reset();
}

// Runs AcceptLoop, and runs it again should it ever throw (out of memory), so the
// server does not silently stop accepting.
void TcpServer::SpawnAcceptLoop() {
  asio::co_spawn(*ios_[0], AcceptLoop(), [this](std::exception_ptr e) {
    if (e == nullptr) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      LOG(ERROR) << opt_.name << " accept loop: " << ex.what();
    }
    if (acceptor_->is_open()) SpawnAcceptLoop();
  });
}

awaitable<void> TcpServer::AcceptLoop() {
  int next_io = 0;
  for (;;) {
    boost::system::error_code ec;
    // The connection's socket (and its coroutine) belongs to the next I/O thread.
    const int io_index = next_io;
    tcp::socket sock(*ios_[static_cast<size_t>(io_index)]);
    co_await acceptor_->async_accept(sock, redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
      LOG_EVERY_N(WARNING, 100) << opt_.name << " accept: " << ec.message();
      // Out of descriptors and the like: back off instead of spinning.
      asio::steady_timer pause(*ios_[0], std::chrono::milliseconds(50));
      co_await pause.async_wait(redirect_error(use_awaitable, ec));
      continue;
    }
    // Replies are small writes: without this they wait for delayed ACKs.
    sock.set_option(tcp::no_delay(true), ec);
    next_io = (next_io + 1) % static_cast<int>(ios_.size());
    auto conn = std::make_shared<Connection>(std::move(sock), ++next_id_, io_index);
    tcp::endpoint remote = conn->sock.remote_endpoint(ec);
    if (!ec) {
      conn->peer = remote.address().to_string();
      conn->peer_port = remote.port();
    }
    if (active_.load() >= opt_.max_connections) {
      ++refused_;
      if (refusing_ < kMaxRefusing) {
        ++refusing_;
        asio::co_spawn(conn->sock.get_executor(), Refuse(conn),
                       [this](std::exception_ptr) { --refusing_; });
      }
      continue;
    }
    ++active_;
    ++accepted_;
    asio::co_spawn(conn->sock.get_executor(), serve_(conn),
                   [this, id = conn->id](std::exception_ptr e) {
      --active_;
      if (e == nullptr) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        LOG(ERROR) << opt_.name << " connection " << id << ": " << ex.what();
      }
    });
  }
}

awaitable<void> TcpServer::Refuse(std::shared_ptr<Connection> c) {
  LOG(WARNING) << opt_.name << " connection " << c->id << " from " << c->peer << ": refused, "
               << opt_.max_connections << " connections already open";
  co_await ReplyAndClose(c, opt_.refuse_line, opt_.refuse_timeout);
}

}  // namespace sagator::net
