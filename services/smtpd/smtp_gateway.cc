#include "services/smtpd/smtp_gateway.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/mail_headers.h"
#include "common/message_filter.h"
#include "common/tcp_server.h"
#include "google/protobuf/util/time_util.h"
#include "common/config.h"

namespace sagator::smtpd {

namespace asio = boost::asio;
using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;
using net::Clock;
using net::Connection;

namespace {

constexpr size_t kReadBufferSize = 16 * 1024;


struct Counters {
  std::atomic<int64_t> messages{0};
  std::atomic<int64_t> relayed{0};
  std::atomic<int64_t> rejected{0};
  std::atomic<int64_t> dropped{0};
  std::atomic<int64_t> tempfailed{0};
  std::atomic<int64_t> fail_open{0};
  std::atomic<int64_t> relay_failures{0};
  std::atomic<int64_t> refused_memory{0};
  std::atomic<int64_t> timeouts{0};
};

// The next hop's replies shaped for our client: LMTP wants one per recipient, SMTP
// one in all. An LMTP next hop behind the SMTP gateway may answer differently per
// recipient; SMTP cannot say that, so any temporary failure makes the whole
// message temporary (a retry may duplicate it for the others: never lose it), and
// otherwise any refusal refuses it (the sender learns of it from the bounce).
std::vector<Reply> FitReplies(std::vector<Reply> hop, size_t wanted) {
  if (hop.empty()) hop.push_back(Reply{451, "4.3.0", "Error: no reply from the next hop"});
  if (hop.size() == wanted) return hop;
  if (wanted != 1) return std::vector<Reply>(wanted, hop[0]);
  for (const Reply& r : hop) {
    if (r.transient()) return {r};
  }
  for (const Reply& r : hop) {
    if (!r.positive()) return {r};
  }
  return {hop[0]};
}

}  // namespace

absl::StatusOr<GatewayOptions> OptionsFromConfig(const config::v1::Config& config,
                                                 const config::v1::Service& service) {
  const bool lmtp = service.kind_case() == config::v1::Service::kLmtpd;
  if (!lmtp && service.kind_case() != config::v1::Service::kSmtpd) {
    return absl::InvalidArgumentError(absl::StrCat("service '", service.name(),
                                                   "' is not an smtpd or lmtpd service"));
  }
  const config::v1::SmtpGatewayService& s = lmtp ? service.lmtpd() : service.smtpd();
  GatewayOptions o;
  o.dialect = lmtp ? Dialect::kLmtp : Dialect::kSmtp;
  o.host = s.host();
  o.port = s.port();
  o.prefork = std::max(1, s.prefork());
  o.max_connections = std::max(1, s.max_connections());
  o.chain = s.scanners();
  o.recipient_policy = s.recipient_policy();
  absl::StatusOr<NextHopAddress> hop = ParseNextHop(s.next_hop());
  if (!hop.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("service '", service.name(), "': ", hop.status().message()));
  }
  o.next_hop = *hop;
  o.next_hop_dialect = s.next_hop_protocol() == config::v1::LMTP ? Dialect::kLmtp : Dialect::kSmtp;
  o.timeout = ToDuration(s.timeout());
  o.relay_timeout = ToDuration(s.relay_timeout());
  o.fail_open = s.fail_open();
  o.hostname = config.global().hostname().empty() ? MachineHostname() : config.global().hostname();
  o.max_message_size = config.global().max_message_size();
  o.max_line_length = s.max_line_length();
  o.max_data_line_length = s.max_data_line_length();
  o.max_recipients = s.max_recipients();
  o.max_buffered_bytes = s.max_buffered_bytes();
  return o;
}

class SmtpGateway::Impl {
 public:
  Impl(GatewayOptions options, ScannerClient* scanner)
      : opt_(std::move(options)),
        name_(opt_.dialect == Dialect::kLmtp ? "lmtpd" : "smtpd"),
        scanner_(scanner),
        budget_(opt_.max_buffered_bytes),
        server_(
            net::TcpServerOptions{
                .host = opt_.host,
                .port = opt_.port,
                .max_connections = opt_.max_connections,
                .refuse_line = absl::StrCat("421 4.3.2 ", opt_.hostname,
                                            " Error: too many connections\r\n"),
                .shutdown_grace = opt_.shutdown_grace,
                .name = name_,
                .workers = opt_.prefork,
            },
            [this](std::shared_ptr<Connection> c) { return Serve(std::move(c)); }) {}

  ~Impl() { Shutdown(); }

  absl::Status Start() {
    return server_.Start();
  }

  int port() const { return server_.port(); }

  void Shutdown() {
    server_.Shutdown([this] { scanner_->CancelAll(); });
  }

  GatewayStats stats() const {
    GatewayStats s;
    static_cast<net::ConnectionCounts&>(s) = server_.counts();
    s.messages = counters_.messages;
    s.relayed = counters_.relayed;
    s.rejected = counters_.rejected;
    s.dropped = counters_.dropped;
    s.tempfailed = counters_.tempfailed;
    s.fail_open = counters_.fail_open;
    s.relay_failures = counters_.relay_failures;
    s.refused_memory = counters_.refused_memory;
    s.timeouts = counters_.timeouts;
    return s;
  }

 private:
  SmtpSession::Options SessionOptions() const {
    SmtpSession::Options o;
    o.dialect = opt_.dialect;
    o.hostname = opt_.hostname;
    o.max_message_size = opt_.max_message_size;
    o.max_line_length = static_cast<size_t>(opt_.max_line_length);
    o.max_data_line_length = static_cast<size_t>(opt_.max_data_line_length);
    o.max_recipients = opt_.max_recipients;
    return o;
  }

  // The envelope scanner-svc sees: the real client from XFORWARD when the MTA sent
  // it, else the peer of this connection.
  common::v1::Envelope MakeEnvelope(const SmtpSession& s, const Connection& c) const {
    common::v1::Envelope env;
    env.set_sender(s.transaction().sender);
    for (const std::string& r : s.transaction().recipients) env.add_recipients(r);
    const auto& xf = s.xforward();
    auto get = [&xf](const char* k) {
      auto it = xf.find(k);
      return it == xf.end() ? std::string() : it->second;
    };
    common::v1::ClientInfo* client = env.mutable_client();
    client->set_address(xf.count("ADDR") ? get("ADDR") : c.peer);
    client->set_name(get("NAME"));
    client->set_helo(xf.count("HELO") ? get("HELO") : s.helo());
    client->set_protocol(xf.count("PROTO") ? get("PROTO")
                                           : (opt_.dialect == Dialect::kLmtp ? "LMTP"
                                              : s.extended()        ? "ESMTP"
                                                                    : "SMTP"));
    *env.mutable_received_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
    return env;
  }

  // At RCPT (pool thread): the recipient policy, then the next hop.
  // `hop_txn` is the session transaction the next hop's open transaction belongs to.
  Reply DecideRecipient(NextHopClient& hop, uint64_t& hop_txn, const SmtpSession& s,
                        const Connection& c) {
    const std::string& rcpt = s.pending_recipient();
    if (!opt_.recipient_policy.empty()) {
      scanner::v1::PolicyRequest req;
      req.set_chain(opt_.recipient_policy);
      req.set_protocol_state("RCPT");
      *req.mutable_envelope() = MakeEnvelope(s, c);
      req.mutable_envelope()->add_recipients(rcpt);
      req.set_recipient(rcpt);
      req.set_gateway(name_);
      absl::StatusOr<scanner::v1::PolicyResponse> p = scanner_->CheckPolicy(req);
      if (!p.ok()) {
        if (!opt_.fail_open) {
          return Reply{451, "4.3.0", absl::StrCat("Error: ", ShortScanFailure(p.status()))};
        }
        ++counters_.fail_open;
        gw_.FailOpen();
        gw_.Error("scanner");
        LOG(WARNING) << name_ << " conn=" << c.id << " recipient policy failed ("
                     << p.status() << "); fail_open: accepting <" << rcpt << "> unchecked";
      } else {
        switch (p->outcome()) {
          case common::v1::REJECT:
          case common::v1::DROP:
            return Reply{550, "5.7.1",
                         p->reply_text().empty() ? absl::StrCat("<", rcpt, ">: Recipient refused")
                                                 : p->reply_text()};
          case common::v1::TEMPFAIL:
          case common::v1::OUTCOME_UNSPECIFIED:
            return Reply{451, "4.7.1",
                         p->reply_text().empty() ? absl::StrCat("<", rcpt, ">: Try again later")
                                                 : p->reply_text()};
          default:
            break;
        }
      }
    }
    if (!hop.in_transaction() || hop_txn != s.transaction_number()) {
      const Transaction& t = s.transaction();
      Reply m = hop.Mail(t.sender, t.declared_size, t.body_8bitmime, s.xforward());
      if (!m.positive()) {
        if (m.transient()) ++counters_.relay_failures;
        return m;
      }
      hop_txn = s.transaction_number();
    }
    Reply r = hop.Recipient(rcpt);
    if (r.transient()) ++counters_.relay_failures;
    return r;
  }

  // At the end of DATA (pool thread): scan, then relay or refuse.
  std::vector<Reply> DecideMessage(NextHopClient& hop, SmtpSession& s, const Connection& c) {
    const Transaction& t = s.transaction();
    const size_t n = t.recipients.size();
    const size_t replies = opt_.dialect == Dialect::kLmtp ? n : 1;
    auto all = [replies](const Reply& r) { return std::vector<Reply>(replies, r); };
    const absl::Time start = absl::Now();
    FilterRequest request{name_, opt_.chain, MakeEnvelope(s, c), std::move(s.mutable_data())};
    FilterDecision d = ScanAndDecide(*scanner_, request);
    const absl::Duration scan_time = absl::Now() - start;
    ++counters_.messages;

    std::vector<Reply> out;
    const char* what = "";  // for the log line
    bool relayed = false;
    int code = d.code;  // what the client's message got, for the statistics
    if (!d.scan_status.ok() && opt_.fail_open) {
      ++counters_.fail_open;
      gw_.FailOpen();
      code = 250;
      LOG(WARNING) << name_ << " conn=" << c.id << " scan failed (" << d.scan_status
                   << "); fail_open: relaying unscanned";
      out = hop.Data(request.message, n);
      what = "relayed unscanned";
      relayed = true;
    } else {
      switch (d.code) {
        case 250:
        case 251: {
          std::string message = ApplyHeaderEdits(
              d.message_rewritten ? d.rewritten_message : request.message, d.header_edits);
          out = hop.Data(message, n);
          what = "relayed";
          relayed = true;
          break;
        }
        case 550:
          ++counters_.rejected;
          hop.Reset();
          out = all(Reply{550, "5.7.1", absl::StrCat("Rejected: ", d.text)});
          what = "rejected";
          break;
        case 551:
          ++counters_.dropped;
          hop.Reset();
          out = all(Reply{250, "2.7.0", absl::StrCat("Ok, discarded: ", d.text)});
          what = "dropped";
          break;
        default:
          ++counters_.tempfailed;
          hop.Reset();
          out = all(Reply{451, "4.3.0", absl::StrCat("Error: ", d.text)});
          what = "tempfailed";
          break;
      }
    }
    if (relayed) {
      out = FitReplies(std::move(out), replies);
      bool any_ok = false, any_temp = false;
      for (const Reply& r : out) {
        any_ok |= r.positive();
        any_temp |= r.transient();
      }
      if (any_ok) ++counters_.relayed;
      if (any_temp) {
        ++counters_.relay_failures;
        gw_.Error("relay");
      }
      if (!any_ok) code = 451;
    }
    gw_.MessageWithCode(code, static_cast<int64_t>(request.message.size()), d.scan_status);
    gw_.Latency("scan", scan_time);
    gw_.Latency("total", absl::Now() - start);
    LOG(INFO) << absl::StrFormat(
        "%s message id=%s conn=%d client=%s from=<%s> rcpts=%d size=%d level=%.2f detection=%s "
        "action=%s reply=\"%d %s\" scan=%.3fs%s",
        name_, d.sagator_id.empty() ? "-" : d.sagator_id, c.id,
        request.envelope.client().address(), t.sender, n, request.message.size(), d.level,
        d.detection.empty() ? "-" : d.detection, what, out.empty() ? 0 : out[0].code,
        out.empty() ? "" : out[0].text, absl::ToDoubleSeconds(scan_time),
        d.scan_status.ok() ? "" : absl::StrCat(" error=", d.scan_status.ToString()));
    return out;
  }

  awaitable<void> Serve(std::shared_ptr<Connection> c) {
    SmtpSession s(SessionOptions());
    NextHopClient hop({.address = opt_.next_hop,
                       .dialect = opt_.next_hop_dialect,
                       .timeout = opt_.relay_timeout,
                       .helo_name = opt_.hostname});
    net::MemoryBudget::Reservation reservation(&budget_);
    std::array<char, kReadBufferSize> buf;
    boost::system::error_code ec;
    std::string out = s.Greeting();
    bool refused_data = false;
    uint64_t hop_txn = 0;

    for (;;) {
      SmtpSession::Action a = s.Next(&out);
      if (!out.empty()) {
        c->Arm(opt_.timeout);
        co_await asio::async_write(c->sock, asio::buffer(out), redirect_error(use_awaitable, ec));
        c->Disarm();
        out.clear();
        if (ec) break;
      }
      if (a == SmtpSession::Action::kClose) break;
      if (a == SmtpSession::Action::kRecipient) {
        auto work = [this, &hop, &hop_txn, &s, &c] { return DecideRecipient(hop, hop_txn, s, *c); };
        Reply r = co_await net::RunOnPool(server_.pool(), work, use_awaitable);
        s.CompleteRecipient(r);
        continue;
      }
      if (a == SmtpSession::Action::kMessage) {
        auto work = [this, &hop, &s, &c] { return DecideMessage(hop, s, *c); };
        std::vector<Reply> replies = co_await net::RunOnPool(server_.pool(), work, use_awaitable);
        s.CompleteMessage(replies);
        reservation.Release();
        refused_data = false;
        continue;
      }
      // kRead
      if (!s.in_data()) {
        reservation.Release();
        refused_data = false;
      }
      c->Arm(opt_.timeout);
      size_t n =
          co_await c->sock.async_read_some(asio::buffer(buf), redirect_error(use_awaitable, ec));
      c->Disarm();
      if (ec) {
        if (c->timed_out()) {
          ++counters_.timeouts;
          gw_.Error("timeout");
          LOG(WARNING) << name_ << " conn=" << c->id << " client=" << c->peer
                       << ": timeout after " << opt_.timeout;
          const std::string line = s.TimeoutReply();
          co_await net::ReplyAndClose(c, line, absl::Seconds(10));
        }
        break;
      }
      if (s.in_data() && !refused_data &&
          !reservation.TakeUpTo(static_cast<int64_t>(s.data_bytes() + n + kReadBufferSize))) {
        ++counters_.refused_memory;
        gw_.Error("memory");
        refused_data = true;
        LOG(WARNING) << name_ << " conn=" << c->id << ": memory budget of " << budget_.limit()
                     << " bytes is spent; answering 452";
        s.RefuseData(Reply{452, "4.3.1", "Error: insufficient system storage"});
        reservation.Release();
      }
      s.Feed(absl::string_view(buf.data(), n));
    }
    // Hand the next-hop connection back politely, off the I/O thread.
    if (hop.connected()) {
      auto quit = [&hop] {
        hop.Quit();
        return 0;
      };
      co_await net::RunOnPool(server_.pool(), quit, use_awaitable);
    }
    c->sock.close(ec);
  }

  const GatewayOptions opt_;
  const std::string name_;
  ScannerClient* const scanner_;
  net::MemoryBudget budget_;
  Counters counters_;
  stats::GatewayStats gw_{opt_.stats, name_};
  net::TcpServer server_;
};

SmtpGateway::SmtpGateway(GatewayOptions options, ScannerClient* scanner)
    : impl_(std::make_unique<Impl>(std::move(options), scanner)) {}
SmtpGateway::~SmtpGateway() = default;
absl::Status SmtpGateway::Start() { return impl_->Start(); }
int SmtpGateway::port() const { return impl_->port(); }
void SmtpGateway::Shutdown() { impl_->Shutdown(); }
GatewayStats SmtpGateway::stats() const { return impl_->stats(); }

}  // namespace sagator::smtpd
