#include "scanner-svc/local_policy_client.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "absl/container/flat_hash_map.h"
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

// The loop side of LocalPolicyClient::NewLoopDecider. Its state lives in a
// shared_ptr the handlers hold, so none outlives what it touches.
class PolicyLoopDecider final : public ScannerClient::LoopDecider {
 public:
  PolicyLoopDecider(LocalPolicyClient* client, asio::io_context& io)
      : state_(std::make_shared<State>(client, io)) {}

  ~PolicyLoopDecider() override {
    state_->closed = true;
    for (auto& [store, conn] : state_->conns) Drop(*state_, *conn, "shutdown");
    // A connection being made posts to the loop: wait for it here.
    for (auto& [store, conn] : state_->conns) {
      if (conn->connector.joinable()) conn->connector.join();
    }
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
    if (c.db == nullptr) {
      if (!c.connecting && absl::Now() >= c.retry_at) Connect(state_, miss->store, c);
      return done(std::nullopt);
    }
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
    std::optional<asio::posix::stream_descriptor> socket;  // db's, not owned
    asio::steady_timer timer;                              // the statement's deadline
    std::deque<Waiter> queue;
    std::vector<Waiter> in_flight;
    bool busy = false;
    bool connecting = false;
    std::thread connector;  // the last connection attempt's
    absl::Time retry_at = absl::InfinitePast();
  };
  struct State {
    State(LocalPolicyClient* c, asio::io_context& i) : client(c), io(i) {}
    LocalPolicyClient* client;
    asio::io_context& io;
    absl::flat_hash_map<policy::PolicyStore*, std::unique_ptr<Conn>> conns;
    bool closed = false;
  };

  // Connects on a thread of its own (connecting waits); the loop takes the
  // connection over when it is made. Until then the loop's requests go the usual way.
  static void Connect(const std::shared_ptr<State>& state, policy::PolicyStore* store, Conn& c) {
    c.connecting = true;
    // The last attempt has posted its outcome: its thread is done or about to be.
    if (c.connector.joinable()) c.connector.join();
    c.connector = std::thread([state, store, &io = state->io] {
      std::vector<std::string> statements;
      for (size_t n = 1; n <= LocalPolicyClient::kLoopBatch; ++n) {
        statements.push_back(policy::PolicyStore::InsertStatement(n));
      }
      auto db = std::make_shared<absl::StatusOr<std::unique_ptr<sql::AsyncConnection>>>(
          store->database().ConnectAsync(statements));
      asio::post(io, [state, store, db] {
        if (state->closed) return;
        Conn& c = *state->conns[store];
        c.connecting = false;
        if (!db->ok()) {
          LOG(WARNING) << "in-process greylisting: no connection of the I/O thread's own ("
                       << db->status() << "); new triplets are recorded on the pool threads";
          c.retry_at = absl::Now() + absl::Seconds(5);
          return;
        }
        c.db = std::move(**db);
        c.socket.emplace(state->io, c.db->fd());
      });
    });
  }

  // Sends the next statement for up to kLoopBatch waiting triplets.
  static void Flush(const std::shared_ptr<State>& state, Conn& c) {
    if (c.queue.empty() || c.db == nullptr) return;
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
    c.timer.expires_after(std::chrono::microseconds(
        std::max<int64_t>(0, absl::ToInt64Microseconds(deadline - absl::Now()))));
    c.timer.async_wait([state, &c](const boost::system::error_code& ec) {
      if (!ec && !state->closed && c.busy) Drop(*state, c, "no answer before the deadline");
    });
    Await(state, c);
  }

  static void Await(const std::shared_ptr<State>& state, Conn& c) {
    c.socket->async_wait(asio::posix::stream_descriptor::wait_read,
                         [state, &c](const boost::system::error_code& ec) {
                           if (ec || state->closed || !c.busy) return;
                           std::optional<absl::StatusOr<sql::Rows>> r = c.db->Receive();
                           if (!r.has_value()) return Await(state, c);
                           c.busy = false;
                           c.timer.cancel();
                           if (!r->ok()) return Drop(*state, c, r->status().ToString());
                           Answer(c, r->value());
                           Flush(state, c);
                         });
  }

  static void Answer(Conn& c, const sql::Rows& returned) {
    std::vector<const policy::NewTriplet*> rows;
    for (const Waiter& w : c.in_flight) rows.push_back(&w.triplet);
    std::vector<bool> recorded = rows.front()->store->Recorded(rows, returned);
    std::vector<Waiter> done = std::move(c.in_flight);
    c.in_flight.clear();
    for (size_t i = 0; i < done.size(); ++i) done[i].done(recorded[i]);
  }

  // Closes the connection (a new one is made on a later request) and sends every
  // waiting request the usual way.
  static void Drop(State& state, Conn& c, absl::string_view why) {
    if (!state.closed) {
      LOG(WARNING) << "in-process greylisting: dropping the I/O thread's connection (" << why
                   << "); its requests are decided on the pool threads";
    }
    c.busy = false;
    c.timer.cancel();
    if (c.socket.has_value()) {
      c.socket->cancel();
      c.socket->release();  // libpq closes it
      c.socket.reset();
    }
    c.db.reset();
    std::vector<Waiter> failed = std::move(c.in_flight);
    c.in_flight.clear();
    for (Waiter& w : c.queue) failed.push_back(std::move(w));
    c.queue.clear();
    if (state.closed) return;
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
