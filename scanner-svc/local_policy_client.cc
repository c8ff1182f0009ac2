#include "scanner-svc/local_policy_client.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "scanner-svc/policy/policy_store.h"
#include "common/would_wait.h"
#include "scanner-svc/scanner_service.h"

namespace sagator {

absl::StatusOr<ScanReply> LocalPolicyClient::Scan(const scanner::v1::ScanHeader&,
                                                  absl::string_view) {
  return absl::UnimplementedError("the in-process client decides policy only; scan in scanner-svc");
}

absl::StatusOr<scanner::v1::PolicyResponse> LocalPolicyClient::CheckPolicy(
    const scanner::v1::PolicyRequest& request) {
  if (cancelled_) return absl::CancelledError("the gateway is shutting down");
  return DecidePolicy(*chains_, request, absl::Now() + deadline_,
                      [this] { return cancelled_.load(); });
}

std::optional<absl::StatusOr<scanner::v1::PolicyResponse>> LocalPolicyClient::TryCheckPolicyNow(
    const scanner::v1::PolicyRequest& request) {
  if (cancelled_) return absl::CancelledError("the gateway is shutting down");
  absl::StatusOr<scanner::v1::PolicyResponse> r =
      DecidePolicy(*chains_, request, absl::Now() + deadline_, nullptr, /*memory_only=*/true);
  if (!r.ok() && IsWouldWait(r.status())) return std::nullopt;
  return r;
}

namespace {

namespace asio = boost::asio;
using Decision = std::optional<absl::StatusOr<scanner::v1::PolicyResponse>>;
static_assert(LocalPolicyClient::kLoopBatch <= policy::PolicyStore::kMaxInsertBatch);

// The loop side of LocalPolicyClient::NewLoopDecider. Its state lives in a
// shared_ptr the handlers hold, so none outlives what it touches. A statement's
// handlers carry the generation it was sent in: one that fires after the statement
// ended (a timer already queued when the answer came) finds a newer one and does
// nothing.
class PolicyLoopDecider final : public ScannerClient::LoopDecider {
 public:
  PolicyLoopDecider(LocalPolicyClient* client, asio::io_context& io)
      : state_(std::make_shared<State>(client, io)) {}

  ~PolicyLoopDecider() override {
    {
      // A connection still being made is dropped by its thread (detached: it may
      // wait for a server that does not answer, and shutdown does not wait for it).
      absl::MutexLock lock(&state_->connect_mu);
      state_->closed = true;
    }
    for (auto& [store, conn] : state_->conns) Drop(*state_, *conn, "shutdown");
  }

  void Decide(std::shared_ptr<const scanner::v1::PolicyRequest> request, absl::Time deadline,
              Done done) override {
    State& s = *state_;
    std::optional<policy::NewTriplet> miss;
    Decision now;
    {
      policy::NewTripletCollector misses;
      now = s.client->TryCheckPolicyNow(*request);
      if (misses.triplets().size() == 1) miss = std::move(misses.triplets()[0]);
    }
    if (now.has_value()) return done(std::move(now));
    if (!miss.has_value() ||
        miss->store->database().backend() != sql::Backend::kPostgresql) {
      return done(std::nullopt);
    }
    std::unique_ptr<Conn>& slot = s.conns[miss->store];
    if (slot == nullptr) slot = std::make_unique<Conn>(s.io);
    Conn& c = *slot;
    if (c.socket == nullptr) {
      if (!c.connecting && absl::Now() >= c.retry_at) Connect(state_, miss->store, c);
      return done(std::nullopt);
    }
    // A full statement in flight and another one waiting: the database is slow;
    // the pool's threads take the rest side by side.
    if (c.queue.size() >= LocalPolicyClient::kLoopBatch) return done(std::nullopt);
    State* raw = &s;
    c.queue.push_back({std::move(*miss), deadline,
                       [raw, request = std::move(request), done = std::move(done)](bool recorded) {
                         if (!recorded) return done(std::nullopt);
                         done(raw->client->TryCheckPolicyNow(*request));
                       }});
    if (!c.busy) Flush(state_, c);
  }

 private:
  struct Waiter {
    policy::NewTriplet triplet;
    absl::Time deadline;
    std::function<void(bool)> done;  // true: recorded (memory now answers)
  };
  struct Conn {
    explicit Conn(asio::io_context& io) : timer(io) {}
    std::unique_ptr<sql::AsyncConnection> db;
    // A duplicate of db's socket, this loop's own: libpq may close its socket when
    // the connection fails, and its number may then be reused.
    std::unique_ptr<asio::posix::stream_descriptor> socket;
    asio::steady_timer timer;  // the statement's deadline
    std::deque<Waiter> queue;
    std::vector<Waiter> in_flight;
    bool busy = false;
    uint64_t generation = 0;  // bumped by each statement and each drop
    bool connecting = false;
    absl::Time retry_at = absl::InfinitePast();
  };
  struct State {
    State(LocalPolicyClient* c, asio::io_context& i) : client(c), io(i) {}
    LocalPolicyClient* client;
    asio::io_context& io;
    absl::flat_hash_map<policy::PolicyStore*, std::unique_ptr<Conn>> conns;
    // Set (on the loop, under connect_mu) when the decider goes; connection threads
    // read it under connect_mu before they post to the loop.
    absl::Mutex connect_mu;
    bool closed = false;
  };
  // Before a new connection after one failed to be made, and after one was dropped.
  static constexpr absl::Duration kRetryConnect = absl::Seconds(5);
  static constexpr absl::Duration kRetryAfterDrop = absl::Seconds(1);

  // Connects on a thread of its own (connecting waits); the loop takes the
  // connection over when it is made. Until then the loop's requests go the usual way.
  static void Connect(const std::shared_ptr<State>& state, policy::PolicyStore* store, Conn& c) {
    c.connecting = true;
    std::thread([state, store, db = store->shared_database()] {
      std::vector<std::string> statements;
      for (size_t n = 1; n <= LocalPolicyClient::kLoopBatch; ++n) {
        statements.push_back(policy::PolicyStore::InsertStatement(n));
      }
      auto made = std::make_shared<absl::StatusOr<std::unique_ptr<sql::AsyncConnection>>>(
          db->ConnectAsync(statements));
      absl::MutexLock lock(&state->connect_mu);
      if (state->closed) return;  // the loop may be gone
      asio::post(state->io, [state, store, made] { TakeOver(*state, *state->conns[store], made); });
    }).detach();
  }

  static void TakeOver(State& state,
                       Conn& c, const std::shared_ptr<absl::StatusOr<std::unique_ptr<sql::AsyncConnection>>>& made) {
    if (state.closed) return;
    c.connecting = false;
    absl::Status s = made->status();
    int fd = -1;
    if (s.ok() && (fd = dup((**made)->fd())) < 0) {
      s = absl::InternalError(absl::StrCat("dup: ", strerror(errno)));
    }
    if (!s.ok()) {
      LOG(WARNING) << "in-process greylisting: no connection of the I/O thread's own (" << s
                   << "); new triplets are recorded on the pool threads";
      c.retry_at = absl::Now() + kRetryConnect;
      return;
    }
    c.db = std::move(**made);
    c.socket = std::make_unique<asio::posix::stream_descriptor>(state.io, fd);
  }

  // Sends the next statement for up to kLoopBatch waiting triplets.
  static void Flush(const std::shared_ptr<State>& state, Conn& c) {
    if (c.queue.empty() || c.socket == nullptr) return;
    c.in_flight.clear();
    while (!c.queue.empty() && c.in_flight.size() < LocalPolicyClient::kLoopBatch) {
      c.in_flight.push_back(std::move(c.queue.front()));
      c.queue.pop_front();
    }
    std::vector<const policy::NewTriplet*> rows;
    absl::Time deadline = absl::InfiniteFuture();
    for (const Waiter& w : c.in_flight) {
      rows.push_back(&w.triplet);
      deadline = std::min(deadline, w.deadline);
    }
    absl::Status sent = c.db->Send(policy::PolicyStore::InsertStatement(rows.size()),
                                   policy::PolicyStore::InsertParams(rows));
    if (!sent.ok()) return Drop(*state, c, sent.ToString());
    c.busy = true;
    const uint64_t gen = ++c.generation;
    c.timer.expires_after(std::chrono::microseconds(
        std::max<int64_t>(0, absl::ToInt64Microseconds(deadline - absl::Now()))));
    c.timer.async_wait([state, &c, gen](const boost::system::error_code& ec) {
      if (!ec && c.generation == gen) Drop(*state, c, "no answer before the deadline");
    });
    Await(state, c, gen);
  }

  static void Await(const std::shared_ptr<State>& state, Conn& c, uint64_t gen) {
    c.socket->async_wait(
        asio::posix::stream_descriptor::wait_read,
        [state, &c, gen](const boost::system::error_code& ec) {
          if (c.generation != gen) return;  // ended (dropped, shut down)
          if (ec) return Drop(*state, c, ec.message());
          std::optional<absl::StatusOr<sql::Rows>> r = c.db->Receive();
          if (!r.has_value()) return Await(state, c, gen);
          c.busy = false;
          ++c.generation;
          c.timer.cancel();
          std::vector<Waiter> done = std::move(c.in_flight);
          c.in_flight.clear();
          if (!r->ok() && !c.db->connected()) {
            c.in_flight = std::move(done);
            return Drop(*state, c, r->status().ToString());
          }
          if (!r->ok()) {
            // The statement failed (a deadlock with another replica's insert, ...), the
            // connection did not: these requests go the usual way, the next ones here.
            LOG(WARNING) << "in-process greylisting: " << r->status()
                         << "; deciding the statement's requests on the pool threads";
            for (Waiter& w : done) w.done(false);
          } else {
            Answer(done, r->value());
          }
          Flush(state, c);
        });
  }

  static void Answer(std::vector<Waiter>& done, const sql::Rows& returned) {
    std::vector<const policy::NewTriplet*> rows;
    for (const Waiter& w : done) rows.push_back(&w.triplet);
    std::vector<bool> recorded = rows.front()->store->Recorded(rows, returned);
    for (size_t i = 0; i < done.size(); ++i) done[i].done(recorded[i]);
  }

  // Closes the connection (a new one is made on a later request, kRetryAfterDrop
  // from now) and sends every waiting request the usual way.
  static void Drop(State& state, Conn& c, absl::string_view why) {
    const bool closed = state.closed;
    if (!closed) {
      LOG(WARNING) << "in-process greylisting: dropping the I/O thread's connection (" << why
                   << "); its requests are decided on the pool threads";
    }
    c.busy = false;
    ++c.generation;
    c.timer.cancel();
    c.socket.reset();  // closes this loop's duplicate of the socket
    c.db.reset();
    c.retry_at = absl::Now() + kRetryAfterDrop;
    std::vector<Waiter> failed = std::move(c.in_flight);
    c.in_flight.clear();
    for (Waiter& w : c.queue) failed.push_back(std::move(w));
    c.queue.clear();
    if (closed) return;
    for (Waiter& w : failed) w.done(false);
  }

  std::shared_ptr<State> state_;
};

}  // namespace

std::unique_ptr<ScannerClient::LoopDecider> LocalPolicyClient::NewLoopDecider(
    boost::asio::io_context& io) {
  return std::make_unique<PolicyLoopDecider>(this, io);
}

}  // namespace sagator
