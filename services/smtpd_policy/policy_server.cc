#include "services/smtpd_policy/policy_server.h"

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
// (separate block: keep the include above first)
#include <glog/logging.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <deque>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "common/config.h"
#include "common/request_log.h"
#include "common/tcp_server.h"

namespace sagator::smtpd_policy {

namespace asio = boost::asio;
using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;
using net::Clock;
using net::Connection;
using tcp = asio::ip::tcp;

namespace {

// Postfix's request blocks are about 1 KiB; bigger ones arrive in several reads.
constexpr size_t kReadBufferSize = 8 * 1024;

// Batching (see Pump): calls to scanner-svc that start as soon as a request is
// queued (every call when max_batch is 1), and how long a queued request waits
// for one of those calls before a call of its own starts.
constexpr int kEagerCalls = 2;
constexpr std::chrono::microseconds kMaxQueueWait(2000);


struct Counters {
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> dunno{0};
  std::atomic<int64_t> ok{0};
  std::atomic<int64_t> prepend{0};
  std::atomic<int64_t> deferred{0};
  std::atomic<int64_t> rejected{0};
  std::atomic<int64_t> discarded{0};
  std::atomic<int64_t> scanner_failures{0};
  std::atomic<int64_t> policy_timeouts{0};
  std::atomic<int64_t> fail_open{0};
  std::atomic<int64_t> protocol_errors{0};
  std::atomic<int64_t> timeouts{0};
  std::atomic<int64_t> scanner_calls{0};
  std::atomic<int64_t> decided_at_once{0};
  std::atomic<int64_t> decided_on_loop{0};
};

using PolicyResult = absl::StatusOr<scanner::v1::PolicyResponse>;

// One decision waiting for scanner-svc. The coroutine waits on `timer`, which
// expires at the decision's deadline; the call's completion (on the I/O thread)
// cancels it early when the answer is in. Shared, so an answer that comes after the
// coroutine gave up (or was destroyed) is dropped safely.
struct PendingDecision {
  explicit PendingDecision(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;            // I/O thread only
  std::optional<PolicyResult> result;  // I/O thread only
  bool answered = false;               // the LoopDecider called back (I/O thread only)
  std::atomic<bool> abandoned{false};  // the coroutine gave up: skip the call
};

// For logs: client bytes on one line (C escapes), `none` when empty. Most need no
// escaping and are used as they are; *storage keeps an escaped copy.
absl::string_view Printable(absl::string_view s, std::string* storage,
                            absl::string_view none = "-") {
  if (s.empty()) return none;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\'' || c == '\\') {
      *storage = absl::CHexEscape(s);
      return *storage;
    }
  }
  return s;
}

}  // namespace

PolicyServerOptions OptionsFromConfig(const config::v1::SmtpdPolicyService& service) {
  PolicyServerOptions o;
  o.host = service.host();
  o.port = service.port();
  o.max_children = std::max(1, service.max_children());
  o.timeout = ToDuration(service.timeout());
  o.fail_open = service.fail_open();
  o.policy_timeout = ToDuration(service.policy_timeout());
  o.prefork = std::max(1, service.prefork());
  o.io_threads = service.io_threads() > 0
                     ? service.io_threads()
                     : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
  o.chain = service.scanners();
  return o;
}

class PolicyServer::Impl {
 public:
  Impl(PolicyServerOptions options, ScannerClient* scanner)
      : opt_(std::move(options)),
        scanner_(scanner),
        server_(
            net::TcpServerOptions{
                .host = opt_.host,
                .port = opt_.port,
                .max_connections = opt_.max_children,
                .backlog = opt_.backlog,
                // Over max_children: close without an answer; Postfix retries.
                .refuse_line = "",
                .refuse_timeout = absl::Seconds(1),
                .shutdown_grace = opt_.shutdown_grace,
                .name = std::string(kGatewayName),
                .workers = opt_.prefork,
                .io_threads = opt_.io_threads,
            },
            [this](std::shared_ptr<Connection> c) { return Serve(std::move(c)); }),
        lanes_(static_cast<size_t>(std::max(1, opt_.io_threads))),
        lane_calls_(std::max(1, opt_.prefork / std::max(1, opt_.io_threads))) {}

  ~Impl() { Shutdown(); }

  absl::Status Start() {
    if (opt_.policy_timeout >= absl::Seconds(100)) {
      LOG(WARNING) << "policy_timeout " << opt_.policy_timeout
                   << " is not below Postfix's smtpd_policy_service_timeout (100s): Postfix "
                      "may give up before the failure answer";
    }
    return server_.Start();
  }

  int port() const { return server_.port(); }

  // Decisions still running or queued end at once; their answers are never written.
  void Shutdown() {
    server_.Shutdown([this] {
      scanner_->CancelAll();
      // The I/O threads have stopped: their timers go while their io_contexts exist.
      for (Lane& lane : lanes_) {
        lane.queue.clear();
        lane.pump_timer.reset();
        lane.decider.reset();
        lane.log.Flush();
      }
    });
  }

  PolicyServerStats stats() const {
    PolicyServerStats s;
    static_cast<net::ConnectionCounts&>(s) = server_.counts();
    s.requests = counters_.requests;
    s.dunno = counters_.dunno;
    s.ok = counters_.ok;
    s.prepend = counters_.prepend;
    s.deferred = counters_.deferred;
    s.rejected = counters_.rejected;
    s.discarded = counters_.discarded;
    s.scanner_failures = counters_.scanner_failures;
    s.policy_timeouts = counters_.policy_timeouts;
    s.fail_open = counters_.fail_open;
    s.protocol_errors = counters_.protocol_errors;
    s.timeouts = counters_.timeouts;
    s.scanner_calls = counters_.scanner_calls;
    s.decided_at_once = counters_.decided_at_once;
    s.decided_on_loop = counters_.decided_on_loop;
    return s;
  }

 private:
  static void Close(const std::shared_ptr<Connection>& c) {
    boost::system::error_code ec;
    c->Disarm();
    c->sock.shutdown(tcp::socket::shutdown_both, ec);
    c->sock.close(ec);
  }

  awaitable<void> Serve(std::shared_ptr<Connection> c) {
    const Clock::duration timeout = net::ToChrono(opt_.timeout);
    PolicyParser parser(opt_.limits);
    // In the coroutine frame, which lives on the heap: one buffer per connection.
    std::array<char, kReadBufferSize> buf;
    // When the block being read must be complete (set while a block is partial).
    Clock::time_point block_deadline = Clock::now() + timeout;
    boost::system::error_code ec;

    for (;;) {
      const bool idle = parser.idle();
      c->Arm(idle ? Clock::now() + timeout : block_deadline);
      size_t n =
          co_await c->sock.async_read_some(asio::buffer(buf), redirect_error(use_awaitable, ec));
      if (ec) {
        if (c->timed_out()) {
          ++counters_.timeouts;
          gw_.Error("timeout");
          if (idle) {
            LOG(INFO) << "connection " << c->id << " from " << c->peer << ": idle for "
                      << opt_.timeout << " after " << parser.requests() << " request(s); closing";
          } else {
            LOG(WARNING) << "connection " << c->id << " from " << c->peer
                         << ": request block not complete within " << opt_.timeout
                         << "; closing without an answer";
          }
        } else if (!idle) {
          LOG(WARNING) << "connection " << c->id << " from " << c->peer
                       << ": closed in the middle of a request block (" << ec.message() << ")";
        }
        Close(c);
        co_return;
      }
      bool new_block = idle;
      absl::string_view in(buf.data(), n);
      for (;;) {
        PolicyEvent ev = parser.Next(&in);
        if (ev.type == PolicyEventType::kNeedMore) break;
        if (ev.type == PolicyEventType::kError) {
          // No answer: Postfix logs "malformed response", retries, then applies its
          // default_action.
          ++counters_.protocol_errors;
          gw_.Error("protocol");
          LOG(WARNING) << "connection " << c->id << " from " << c->peer
                       << ": protocol error: " << ev.error << "; closing without an answer";
          Close(c);
          co_return;
        }
        c->Disarm();
        std::string reply = co_await Answer(c, ev.attributes);
        c->Arm(Clock::now() + timeout);
        co_await asio::async_write(c->sock, asio::buffer(reply), redirect_error(use_awaitable, ec));
        if (ec) {
          LOG(WARNING) << "connection " << c->id << " from " << c->peer
                       << (c->timed_out() ? ": timeout writing the answer"
                                          : ": cannot write the answer: ")
                       << (c->timed_out() ? "" : ec.message());
          Close(c);
          co_return;
        }
        new_block = true;
      }
      if (new_block && !parser.idle()) block_deadline = Clock::now() + timeout;
    }
  }

  // Decides one request block; returns the reply to write. `c` and `attributes`
  // must outlive the call (the caller awaits it at once).
  awaitable<std::string> Answer(const std::shared_ptr<Connection>& c,
                                const PolicyAttributes& attributes) {
    const Clock::time_point start = Clock::now();
    // Shared with the decision thread, which may outlive this coroutine's wait.
    auto shared_request = std::make_shared<const scanner::v1::PolicyRequest>(
        ToPolicyRequest(attributes, opt_.chain, opt_.send_attributes));
    const scanner::v1::PolicyRequest& request = *shared_request;
    PolicyResult response = co_await Decide(shared_request, c->io_index, start);

    PolicyAction action;
    std::string error;
    if (response.ok()) {
      action = ActionForResponse(*response, request.protocol_state());
    } else {
      ++counters_.scanner_failures;
      if (response.status().code() == absl::StatusCode::kDeadlineExceeded) {
        ++counters_.policy_timeouts;
      }
      gw_.Error("scanner");
      if (opt_.fail_open) {
        ++counters_.fail_open;
        gw_.FailOpen();
      }
      action = ActionForFailure(response.status(), opt_.fail_open);
      error = response.status().ToString();
      LOG(WARNING) << "connection " << c->id << ": CheckPolicy failed (" << error << "); "
                   << (opt_.fail_open ? "fail_open: answering DUNNO" : "answering DEFER_IF_PERMIT");
    }
    ++counters_.requests;
    gw_.PolicyAnswer(action.action);
    gw_.Latency("policy", absl::FromChrono(Clock::now() - start));
    if (action.action == "DUNNO") {
      ++counters_.dunno;
    } else if (action.action == "OK") {
      ++counters_.ok;
    } else if (action.action == "PREPEND") {
      ++counters_.prepend;
    } else if (action.action == "REJECT") {
      ++counters_.rejected;
    } else if (action.action == "DISCARD") {
      ++counters_.discarded;
    } else {
      ++counters_.deferred;
    }
    std::string reply = FormatReply(action);
    const auto& env = request.envelope();
    // Through the I/O thread's RequestLog (a glog line per request cost 16% of the
    // CPU), written before the thread waits for its next events.
    const int io = c->io_index;
    std::string escaped[7];
    const auto instance = attributes.find("instance");
    if (lanes_[static_cast<size_t>(io)].log.Line(
            __FILE__, __LINE__,
        "request conn=%d client=%s state=%s queue_id=%s from=<%s> to=<%s> instance=%s "
        "action=%s level=%.2f detection=%s decide=%.3fs%s",
        c->id, Printable(env.client().address(), &escaped[0]),
        Printable(request.protocol_state(), &escaped[1]),
        Printable(env.queue_id(), &escaped[2]),
        Printable(env.sender(), &escaped[3], ""), Printable(request.recipient(), &escaped[4], ""),
        instance == attributes.end() ? "-" : Printable(instance->second, &escaped[5]),
        absl::string_view(reply).substr(7, reply.size() - 9),
        response.ok() ? response->level() : 0.0,
        Printable(response.ok() ? absl::string_view(response->detection()) : "", &escaped[6]),
        std::chrono::duration<double>(Clock::now() - start).count(),
        error.empty() ? "" : absl::StrCat(" error=", error))) {
      asio::post(server_.io(io), [this, io] { lanes_[static_cast<size_t>(io)].log.Flush(); });
    }
    co_return reply;
  }

  // Decides at once when the client can without waiting, or on this I/O thread
  // when its LoopDecider can; else queues the request for a call to scanner-svc
  // (Pump) and waits for its answer until the decision deadline (policy_timeout
  // after `start`).
  awaitable<PolicyResult> Decide(std::shared_ptr<const scanner::v1::PolicyRequest> request,
                                 int io_index, Clock::time_point start) {
    Lane& lane = lanes_[static_cast<size_t>(io_index)];
    const Clock::time_point deadline = start + net::ToChrono(opt_.policy_timeout);
    asio::any_io_executor ex = co_await asio::this_coro::executor;
    if (!lane.decider_made) {
      lane.decider_made = true;
      lane.decider = scanner_->NewLoopDecider(server_.io(io_index));
    }
    if (lane.decider != nullptr) {
      auto pending = std::make_shared<PendingDecision>(ex);
      lane.decider->Decide(
          request, absl::Now() + absl::FromChrono(deadline - Clock::now()),
          [pending](std::optional<PolicyResult> r) {
            pending->answered = true;
            pending->result = std::move(r);
            pending->timer.cancel();
          });
      const bool at_once = pending->answered;
      if (!at_once) {
        pending->timer.expires_at(deadline);
        boost::system::error_code ec;
        co_await pending->timer.async_wait(redirect_error(use_awaitable, ec));
      }
      if (pending->result.has_value()) {
        ++(at_once ? counters_.decided_at_once : counters_.decided_on_loop);
        co_return std::move(*pending->result);
      }
      // Sent back at the deadline (the database did not answer): no call now.
      if (Clock::now() >= deadline) co_return Late();
    } else if (std::optional<PolicyResult> now = scanner_->TryCheckPolicyNow(*request)) {
      ++counters_.decided_at_once;
      co_return std::move(*now);
    }
    auto pending = std::make_shared<PendingDecision>(ex);
    pending->timer.expires_at(deadline);
    lane.queue.push_back({pending, std::move(request), Clock::now()});
    Pump(io_index);
    boost::system::error_code ec;
    co_await pending->timer.async_wait(redirect_error(use_awaitable, ec));
    if (!pending->result.has_value()) {
      pending->abandoned = true;
      co_return Late();
    }
    PolicyResult result = std::move(*pending->result);
    co_return result;
  }

  // The answer to a request past its decision deadline.
  PolicyResult Late() const {
    return absl::DeadlineExceededError(absl::StrCat(
        "no answer from scanner-svc within policy_timeout ",
        absl::FormatDuration(opt_.policy_timeout)));
  }

  // Starts calls to scanner-svc for the queued requests (I/O thread). Requests that
  // arrive while calls are in flight share the next call (up to max_batch; one
  // request goes as CheckPolicy, more as one CheckPolicies), which saves most of a
  // call's cost (thread hand-offs on both sides) per request; at light load each
  // request still goes alone and at once. kEagerCalls such calls run at once. A
  // request queued longer than kMaxQueueWait gets a call of its own, up to `prefork`
  // calls: when decisions are slow (a chain waiting for a remote service) the eager
  // calls stay busy, batches stay small, and requests are decided side by side as
  // without batching, each at most kMaxQueueWait later.
  void Pump(int io_index) {
    Lane& lane = lanes_[static_cast<size_t>(io_index)];
    const Clock::time_point now = Clock::now();
    const int eager = opt_.max_batch > 1 ? kEagerCalls : lane_calls_;
    while (!lane.queue.empty() && lane.calls_in_flight < lane_calls_) {
      if (lane.calls_in_flight < eager) {
        StartCall(io_index, static_cast<size_t>(std::max(1, opt_.max_batch)));
      } else if (now - lane.queue.front().queued >= kMaxQueueWait) {
        StartCall(io_index, 1);
      } else {
        break;
      }
    }
    if (lane.queue.empty() || lane.calls_in_flight >= lane_calls_ || lane.pump_timer_armed) {
      return;
    }
    if (!lane.pump_timer) lane.pump_timer.emplace(server_.io(io_index));
    lane.pump_timer_armed = true;
    lane.pump_timer->expires_at(lane.queue.front().queued + kMaxQueueWait);
    lane.pump_timer->async_wait([this, io_index](const boost::system::error_code&) {
      lanes_[static_cast<size_t>(io_index)].pump_timer_armed = false;
      Pump(io_index);
    });
  }

  // One call for up to `max_batch` requests from the front of the lane's queue, on
  // the pool.
  void StartCall(int io_index, size_t max_batch) {
    Lane& lane = lanes_[static_cast<size_t>(io_index)];
    auto batch = std::make_shared<std::vector<Queued>>();
    while (!lane.queue.empty() && batch->size() < max_batch) {
      if (!lane.queue.front().pending->abandoned.load()) {
        batch->push_back(std::move(lane.queue.front()));
      }
      lane.queue.pop_front();
    }
    if (batch->empty()) return;
    ++lane.calls_in_flight;
    ++counters_.scanner_calls;
    asio::post(server_.pool(), [this, batch, io_index] {
      std::vector<PolicyResult> results;
      results.reserve(batch->size());
      if (batch->size() == 1) {
        results.push_back(scanner_->CheckPolicy(*batch->front().request));
      } else {
        scanner::v1::PolicyBatchRequest request;
        request.mutable_requests()->Reserve(static_cast<int>(batch->size()));
        for (const Queued& q : *batch) *request.add_requests() = *q.request;
        results = scanner_->CheckPolicies(request);
      }
      asio::post(server_.io(io_index),
                 [this, batch, io_index, results = std::move(results)]() mutable {
                   for (size_t i = 0; i < batch->size(); ++i) {
                     PendingDecision& p = *(*batch)[i].pending;
                     p.result = i < results.size() ? std::move(results[i])
                                                   : PolicyResult(absl::InternalError(
                                                         "no answer for this request"));
                     p.timer.cancel();
                   }
                   --lanes_[static_cast<size_t>(io_index)].calls_in_flight;
                   Pump(io_index);
                 });
    });
  }

  const PolicyServerOptions opt_;
  ScannerClient* const scanner_;
  Counters counters_;
  stats::GatewayStats gw_{opt_.stats, "smtpd_policy"};
  net::TcpServer server_;

  // A request waiting for a call to scanner-svc.
  struct Queued {
    std::shared_ptr<PendingDecision> pending;
    std::shared_ptr<const scanner::v1::PolicyRequest> request;
    Clock::time_point queued;
  };
  // The batching state (Pump) of one I/O thread: that thread's only (and
  // Shutdown's, once it has stopped). Each thread batches its own connections'
  // requests, with its share of the `prefork` calls (lane_calls_) in flight. The
  // timer is made on first use.
  struct Lane {
    std::deque<Queued> queue;
    int calls_in_flight = 0;
    std::optional<asio::steady_timer> pump_timer;
    bool pump_timer_armed = false;
    RequestLog log;
    // Made on the lane's thread at its first decision (ScannerClient::NewLoopDecider).
    std::unique_ptr<ScannerClient::LoopDecider> decider;
    bool decider_made = false;
  };
  std::vector<Lane> lanes_;
  const int lane_calls_;
};

PolicyServer::PolicyServer(PolicyServerOptions options, ScannerClient* scanner)
    : impl_(std::make_unique<Impl>(std::move(options), scanner)) {}

PolicyServer::~PolicyServer() = default;

absl::Status PolicyServer::Start() { return impl_->Start(); }
int PolicyServer::port() const { return impl_->port(); }
void PolicyServer::Shutdown() { impl_->Shutdown(); }
PolicyServerStats PolicyServer::stats() const { return impl_->stats(); }

}  // namespace sagator::smtpd_policy
