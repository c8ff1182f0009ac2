// PolicyServer in-process over loopback sockets, asking a real gRPC scanner-svc fake
// (FakeScannerService) through the real gRPC ScannerClient; a few tests use the
// in-memory FakeScannerClient to make scanner-svc misbehave in ways gRPC would not.
#include "services/smtpd_policy/policy_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "common/scanner_client.h"
#include "common/testing/fake_scanner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sagator::smtpd_policy {
namespace {

using sagator::testing::FakeScannerClient;
using sagator::testing::FakeScannerService;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Request(absl::string_view recipient, absl::string_view state = "RCPT",
                    absl::string_view line_end = "\n") {
  return absl::StrCat("request=smtpd_access_policy", line_end,     //
                      "protocol_state=", state, line_end,          //
                      "protocol_name=ESMTP", line_end,             //
                      "client_address=192.0.2.7", line_end,        //
                      "client_name=mx.example.net", line_end,      //
                      "helo_name=mx.example.net", line_end,        //
                      "sender=alice@example.net", line_end,        //
                      "recipient=", recipient, line_end,           //
                      "queue_id=", line_end,                       //
                      "instance=1f2e.64d3c1b0.7a2b1.0", line_end,  //
                      "size=0", line_end,                          //
                      "x_unknown_future=1", line_end, line_end);
}

constexpr char kDunno[] = "action=DUNNO\n\n";

// A blocking client connection, like Postfix's.
class PolicyConnection {
 public:
  explicit PolicyConnection(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~PolicyConnection() {
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return fd_ >= 0; }

  // Writes everything; false when the server closed.
  bool Send(absl::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads up to and including the next empty line ("...\n\n"). Returns what came
  // (possibly partial) when the server closes or `timeout` passes.
  std::string ReadReply(absl::Duration timeout = absl::Seconds(10)) {
    absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      size_t end = buffer_.find("\n\n");
      if (end != std::string::npos) {
        std::string reply = buffer_.substr(0, end + 2);
        buffer_.erase(0, end + 2);
        return reply;
      }
      if (!Fill(deadline)) {
        std::string rest = std::move(buffer_);
        buffer_.clear();
        return rest;
      }
    }
  }

  std::string Ask(absl::string_view request) {
    if (!Send(request)) return "<send failed>";
    return ReadReply();
  }

  // True when the server closes within `timeout`; *received gets any bytes it sent.
  bool WaitForClose(absl::Duration timeout, std::string* received = nullptr) {
    absl::Time deadline = absl::Now() + timeout;
    while (Fill(deadline)) {
    }
    if (received != nullptr) *received = buffer_;
    return closed_;
  }

 private:
  // Reads once; false on close, error or deadline.
  bool Fill(absl::Time deadline) {
    for (;;) {
      int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      int n = poll(&p, 1, static_cast<int>(left));
      if (n == 0) return false;
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      char buf[4096];
      ssize_t r = recv(fd_, buf, sizeof(buf), 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        closed_ = true;  // EOF or a reset
        return false;
      }
      buffer_.append(buf, static_cast<size_t>(r));
      return true;
    }
  }

  int fd_ = -1;
  std::string buffer_;
  bool closed_ = false;
};

// A loopback port nothing listens on.
int DeadPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Waits until `cond` holds (up to 10 s).
template <typename F>
bool Eventually(F cond) {
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!cond()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// Answers by recipient: the policy chain a test scripts.
absl::StatusOr<scanner::v1::PolicyResponse> ScriptedPolicy(const scanner::v1::PolicyRequest& req) {
  scanner::v1::PolicyResponse p;
  const std::string& rcpt = req.recipient();
  if (absl::StartsWith(rcpt, "reject@")) {
    p.set_outcome(common::v1::REJECT);
    p.set_level(1);
    p.set_detection("Blacklist");
    p.set_reply_text("5.7.1 <" + rcpt + ">: Recipient address rejected\r\nInjected: yes");
  } else if (absl::StartsWith(rcpt, "defer@")) {
    p.set_outcome(common::v1::TEMPFAIL);
    p.set_reply_text("4.7.1 Greylisted, try again in 300 seconds");
  } else if (absl::StartsWith(rcpt, "ok@")) {
    p.set_outcome(common::v1::FORCED_PASS);
  } else if (absl::StartsWith(rcpt, "drop@")) {
    p.set_outcome(common::v1::DROP);
    p.set_reply_text("spam trap");
  } else if (absl::StartsWith(rcpt, "header@")) {
    p.set_outcome(common::v1::PASS);
    auto* h = p.add_header_edits();
    h->set_kind(common::v1::HeaderEdit::ADD);
    h->set_name("X-Greylist");
    h->set_value("delayed 300 seconds by SAGATOR");
  } else if (absl::StartsWith(rcpt, "nothing@")) {
    p.set_outcome(common::v1::OUTCOME_UNSPECIFIED);
  } else if (absl::StartsWith(rcpt, "error@")) {
    return absl::InternalError("chain broken");
  } else {
    p.set_outcome(common::v1::PASS);
  }
  return p;
}

// Decisions that take a moment (but are not slow): requests queue behind the calls
// in flight and share calls.
absl::StatusOr<scanner::v1::PolicyResponse> TakesAMoment(const scanner::v1::PolicyRequest& r) {
  absl::SleepFor(absl::Microseconds(300));
  return ScriptedPolicy(r);
}

class PolicyServerTest : public ::testing::Test {
 protected:
  static PolicyServerOptions Options() {
    PolicyServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.chain = "policy";
    o.timeout = absl::Seconds(20);
    o.policy_timeout = absl::Seconds(5);
    o.prefork = 4;
    o.shutdown_grace = absl::Seconds(1);
    return o;
  }

  // Starts the gRPC fake scanner-svc, a gRPC client for it and the server.
  void StartAll(PolicyServerOptions o = Options()) {
    scanner_service_.SetPolicyHandler(ScriptedPolicy);
    int scanner_port = scanner_service_.Start();
    ASSERT_GT(scanner_port, 0);
    StartServer(o, absl::StrCat("127.0.0.1:", scanner_port));
  }

  // The gRPC fake with TakesAMoment decisions, CheckPolicies on or off, and the
  // server with prefork 8.
  void StartWithDecisionsThatTakeAMoment(bool batching) {
    scanner_service_.SetPolicyHandler(TakesAMoment);
    scanner_service_.SetBatching(batching);
    int scanner_port = scanner_service_.Start();
    PolicyServerOptions o = Options();
    o.prefork = 8;
    StartServer(o, absl::StrCat("127.0.0.1:", scanner_port));
  }

  void StartServer(PolicyServerOptions o, const std::string& scanner_target) {
    client_ = NewGrpcScannerClient(scanner_target, o.policy_timeout, 1 << 20);
    StartServerWith(o, client_.get());
  }

  // 8 connections of 10 requests to the server on `client` (every fifth for
  // error@, which `client` does not decide on the I/O thread, the rest for reject@):
  // only the error@ requests may need a call. Shuts the server down (before
  // `client` goes).
  PolicyServerStats AskExpectingOnlyTheErrorsCalled(FakeScannerClient& client);

  void StartServerWith(PolicyServerOptions o, ScannerClient* scanner) {
    server_ = std::make_unique<PolicyServer>(o, scanner);
    ASSERT_TRUE(server_->Start().ok());
    port_ = server_->port();
    ASSERT_GT(port_, 0);
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
    scanner_service_.Stop();
  }

  FakeScannerService scanner_service_;
  std::unique_ptr<ScannerClient> client_;
  std::unique_ptr<PolicyServer> server_;
  int port_ = 0;
};

TEST_F(PolicyServerTest, AnswersManyRequestsOnOneConnection) {
  StartAll();
  PolicyConnection postfix(port_);
  ASSERT_TRUE(postfix.connected());
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(postfix.Ask(Request(absl::StrCat("user", i, "@example.org"))), kDunno) << i;
  }
  scanner::v1::PolicyRequest seen = scanner_service_.last_policy_request();
  EXPECT_EQ(seen.chain(), "policy");
  EXPECT_EQ(seen.gateway(), "smtpd_policy");
  EXPECT_EQ(seen.protocol_state(), "RCPT");
  EXPECT_EQ(seen.recipient(), "user49@example.org");
  EXPECT_THAT(seen.envelope().recipients(), ::testing::ElementsAre("user49@example.org"));
  EXPECT_EQ(seen.envelope().sender(), "alice@example.net");
  EXPECT_EQ(seen.envelope().client().address(), "192.0.2.7");
  EXPECT_EQ(seen.envelope().client().helo(), "mx.example.net");
  EXPECT_EQ(seen.attributes().at("instance"), "1f2e.64d3c1b0.7a2b1.0");
  EXPECT_EQ(seen.attributes().at("x_unknown_future"), "1");
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.connections, 1);
  EXPECT_EQ(s.requests, 50);
  EXPECT_EQ(s.dunno, 50);
  EXPECT_EQ(s.scanner_failures, 0);
  EXPECT_EQ(scanner_service_.policy_calls(), 50);
}

// One log line per request (RequestLog, on stderr like glog's), written once the
// I/O thread has answered what it had: without waiting for more requests.
TEST_F(PolicyServerTest, LogsEachRequestOnceItsThreadHasAnswered) {
  FILE* log = tmpfile();
  ASSERT_NE(log, nullptr);
  fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  ASSERT_GE(saved, 0);
  dup2(fileno(log), STDERR_FILENO);
  auto read_log = [&] {
    std::string out;
    char buf[4096];
    for (off_t off = 0;;) {
      ssize_t n = pread(fileno(log), buf, sizeof buf, off);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
      off += n;
    }
  };
  auto count = [](const std::string& s, const char* what) {
    int n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
  };
  StartAll();
  PolicyConnection c(port_);
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(c.Ask(Request("user@example.com")), kDunno);
  EXPECT_THAT(c.Ask(Request("reject@example.com")), StartsWith("action=REJECT"));
  // Client bytes are C-escaped, so a line stays one line.
  EXPECT_EQ(c.Ask(Request("o\"dd\x01@example.com")), kDunno);
  bool logged = Eventually([&] { return count(read_log(), "] request conn=") == 3; });
  const std::string text = read_log();
  dup2(saved, STDERR_FILENO);
  close(saved);
  fclose(log);
  ASSERT_TRUE(logged) << text;
  EXPECT_THAT(text, ::testing::ContainsRegex(
                        "I[0-9]{8} [0-9:.]+ +[0-9]+ policy_server\\.cc:[0-9]+\\] request conn=[0-9]+ "
                        "client=192\\.0\\.2\\.7 state=RCPT queue_id=- from=<alice@example\\.net> "
                        "to=<user@example\\.com> instance=1f2e\\.64d3c1b0\\.7a2b1\\.0 "
                        "action=DUNNO level="));
  EXPECT_THAT(text, HasSubstr("to=<reject@example.com> instance=1f2e.64d3c1b0.7a2b1.0 "
                              "action=REJECT 5.7.1 <reject@example.com>: Recipient address "
                              "rejected  Injected: yes level=1.00 detection=Blacklist"));
  EXPECT_THAT(text, HasSubstr("to=<o\\\"dd\\x01@example.com> instance="));
}

TEST_F(PolicyServerTest, MapsEveryScannerAnswerToAnAction) {
  StartAll();
  PolicyConnection postfix(port_);
  EXPECT_EQ(postfix.Ask(Request("bob@example.org")), kDunno);
  EXPECT_EQ(postfix.Ask(Request("ok@example.org")), "action=OK\n\n");
  EXPECT_EQ(postfix.Ask(Request("defer@example.org")),
            "action=DEFER_IF_PERMIT 4.7.1 Greylisted, try again in 300 seconds\n\n");
  // The CRLF in the reply text cannot split the answer.
  EXPECT_EQ(postfix.Ask(Request("reject@example.org")),
            "action=REJECT 5.7.1 <reject@example.org>: Recipient address rejected  Injected: "
            "yes\n\n");
  EXPECT_EQ(postfix.Ask(Request("drop@example.org")), "action=DISCARD spam trap\n\n");
  EXPECT_EQ(postfix.Ask(Request("header@example.org")),
            "action=PREPEND X-Greylist: delayed 300 seconds by SAGATOR\n\n");
  EXPECT_EQ(postfix.Ask(Request("header@example.org", "END-OF-MESSAGE")), kDunno);
  EXPECT_THAT(postfix.Ask(Request("nothing@example.org")),
              StartsWith("action=DEFER_IF_PERMIT 4.3.0 "));
  // A chain error is a scanner-svc failure: fail-closed.
  EXPECT_EQ(postfix.Ask(Request("error@example.org")),
            "action=DEFER_IF_PERMIT 4.3.0 Policy service unavailable (error INTERNAL), try "
            "again later\n\n");
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.requests, 9);
  EXPECT_EQ(s.dunno, 2);
  EXPECT_EQ(s.ok, 1);
  EXPECT_EQ(s.deferred, 3);
  EXPECT_EQ(s.rejected, 1);
  EXPECT_EQ(s.discarded, 1);
  EXPECT_EQ(s.prepend, 1);
  EXPECT_EQ(s.scanner_failures, 1);
  EXPECT_EQ(s.fail_open, 0);
}

TEST_F(PolicyServerTest, AnswersRequestsSentTogetherInOrder) {
  StartAll();
  PolicyConnection postfix(port_);
  ASSERT_TRUE(postfix.Send(absl::StrCat(Request("reject@example.org"), Request("ok@example.org"),
                                        Request("bob@example.org", "RCPT", "\r\n"))));
  EXPECT_THAT(postfix.ReadReply(), StartsWith("action=REJECT "));
  EXPECT_EQ(postfix.ReadReply(), "action=OK\n\n");
  EXPECT_EQ(postfix.ReadReply(), kDunno);
  // And a request dribbled in byte by byte.
  std::string slow = Request("ok@example.org");
  for (char ch : slow) ASSERT_TRUE(postfix.Send(std::string(1, ch)));
  EXPECT_EQ(postfix.ReadReply(), "action=OK\n\n");
}

TEST_F(PolicyServerTest, ServesConcurrentConnections) {
  PolicyServerOptions o = Options();
  o.prefork = 8;
  scanner_service_.SetDelay(absl::Milliseconds(200));
  StartAll(o);
  // Eight connections at once, one decision each: they run side by side.
  {
    std::vector<std::thread> threads;
    std::atomic<int> dunno{0};
    absl::Time start = absl::Now();
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&, i] {
        PolicyConnection postfix(port_);
        if (postfix.Ask(Request(absl::StrCat("u", i, "@example.org"))) == kDunno) ++dunno;
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(dunno.load(), 8);
    EXPECT_LT(absl::Now() - start, absl::Milliseconds(1200)) << "decisions ran one by one";
  }
  scanner_service_.SetDelay(absl::ZeroDuration());
  // Many connections, many requests each.
  std::vector<std::thread> threads;
  std::atomic<int> answers{0};
  for (int i = 0; i < 40; ++i) {
    threads.emplace_back([&, i] {
      PolicyConnection postfix(port_);
      for (int j = 0; j < 10; ++j) {
        std::string rcpt = absl::StrCat(j % 2 ? "ok" : "defer", "@example.org");
        std::string reply = postfix.Ask(Request(rcpt));
        if (reply == (j % 2 ? "action=OK\n\n"
                            : "action=DEFER_IF_PERMIT 4.7.1 Greylisted, try again in 300 "
                              "seconds\n\n")) {
          ++answers;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(answers.load(), 400);
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.connections, 48);
  EXPECT_EQ(s.requests, 408);
  EXPECT_EQ(s.ok, 200);
  EXPECT_EQ(s.deferred, 200);
  EXPECT_TRUE(Eventually([&] { return server_->stats().active_connections == 0; }));
}

// Sixteen connections asking at once, each request with an answer of its own (the
// reject text names the recipient; error@ fails alone): returns how many answers
// matched their requests.
int AskConcurrently(int port, int connections, int per_connection) {
  std::vector<std::thread> threads;
  std::atomic<int> right{0};
  for (int i = 0; i < connections; ++i) {
    threads.emplace_back([&, i] {
      PolicyConnection postfix(port);
      for (int j = 0; j < per_connection; ++j) {
        std::string reply;
        if (j % 5 == 4) {
          reply = postfix.Ask(Request("error@example.org"));
          if (absl::StartsWith(reply, "action=DEFER_IF_PERMIT 4.3.0 ")) ++right;
          continue;
        }
        std::string rcpt = absl::StrCat("reject@", i, "-", j, ".example.org");
        reply = postfix.Ask(Request(rcpt));
        if (reply == absl::StrCat("action=REJECT 5.7.1 <", rcpt,
                                  ">: Recipient address rejected  Injected: yes\n\n")) {
          ++right;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return right.load();
}

PolicyServerStats PolicyServerTest::AskExpectingOnlyTheErrorsCalled(FakeScannerClient& client) {
  EXPECT_EQ(AskConcurrently(port_, 8, 10), 80);
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.requests, 80);
  EXPECT_EQ(s.rejected, 64);
  EXPECT_EQ(client.policy_calls(), 16);
  EXPECT_EQ(s.scanner_failures, 16);
  EXPECT_LE(s.scanner_calls, 16);
  server_->Shutdown();
  return s;
}

TEST_F(PolicyServerTest, BatchesRequestsThatArriveWhileCallsAreInFlight) {
  StartWithDecisionsThatTakeAMoment(/*batching=*/true);
  EXPECT_EQ(AskConcurrently(port_, 16, 30), 16 * 30);
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.requests, 16 * 30);
  EXPECT_EQ(s.rejected, 16 * 24);
  EXPECT_EQ(s.scanner_failures, 16 * 6);
  EXPECT_EQ(scanner_service_.policy_calls(), 16 * 30);
  EXPECT_GT(scanner_service_.batch_calls(), 0);
  EXPECT_LT(s.scanner_calls, s.requests) << "requests were not batched";
}

// Several I/O threads, each with its share of the connections and its own batches.
TEST_F(PolicyServerTest, ServesOnSeveralIOThreads) {
  scanner_service_.SetPolicyHandler(TakesAMoment);
  int scanner_port = scanner_service_.Start();
  PolicyServerOptions o = Options();
  o.prefork = 6;
  o.io_threads = 3;
  StartServer(o, absl::StrCat("127.0.0.1:", scanner_port));
  EXPECT_EQ(AskConcurrently(port_, 12, 20), 12 * 20);
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.requests, 12 * 20);
  EXPECT_EQ(s.connections, 12);
  EXPECT_EQ(scanner_service_.policy_calls(), 12 * 20);
  EXPECT_LT(s.scanner_calls, s.requests) << "requests were not batched";
  EXPECT_TRUE(Eventually([&] { return server_->stats().active_connections == 0; }));
}

TEST_F(PolicyServerTest, BatchesGoRequestByRequestToAScannerSvcWithoutCheckPolicies) {
  StartWithDecisionsThatTakeAMoment(/*batching=*/false);
  EXPECT_EQ(AskConcurrently(port_, 16, 30), 16 * 30);
  EXPECT_EQ(server_->stats().scanner_failures, 16 * 6);
  EXPECT_EQ(scanner_service_.batch_calls(), 0);
  EXPECT_EQ(scanner_service_.policy_calls(), 16 * 30);
}

TEST_F(PolicyServerTest, SlowDecisionsStillRunSideBySide) {
  FakeScannerClient slow;
  slow.SetPolicyHandler([](const scanner::v1::PolicyRequest& r) {
    absl::SleepFor(absl::Milliseconds(20));
    return ScriptedPolicy(r);
  });
  PolicyServerOptions o = Options();
  o.prefork = 64;
  StartServerWith(o, &slow);
  // 64 connections with 5 requests each: one after the other that is 6.4 s; side
  // by side 0.1 s.
  absl::Time start = absl::Now();
  EXPECT_EQ(AskConcurrently(port_, 64, 5), 320);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1.5));
  // Two calls in flight with everything else batched behind them would take 3.2 s.
  server_->Shutdown();  // before `slow` goes
}

// What the client can answer without waiting (in-process, records in memory) is
// decided on the I/O thread: no call, no batch.
TEST_F(PolicyServerTest, RequestsTheClientCanAnswerAtOnceNeedNoCall) {
  FakeScannerClient client;
  client.SetPolicyHandler(TakesAMoment);
  client.SetAtOnce([](const scanner::v1::PolicyRequest& r) {
    return absl::StartsWith(r.recipient(), "reject@");
  });
  StartServerWith(Options(), &client);
  PolicyServerStats s = AskExpectingOnlyTheErrorsCalled(client);
  EXPECT_EQ(s.decided_at_once, 64);
  EXPECT_EQ(client.at_once_calls(), 64);
}

// What the client's LoopDecider can decide on the I/O thread (in-process on
// PostgreSQL: a new triplet recorded there) needs no call either; what it sends
// back goes the usual way.
TEST_F(PolicyServerTest, RequestsTheLoopDeciderDecidesNeedNoCall) {
  FakeScannerClient client;
  client.SetPolicyHandler(ScriptedPolicy);
  client.SetAtOnce([](const scanner::v1::PolicyRequest& r) {
    return absl::StrContains(r.recipient(), "-0.");  // the first of each connection
  });
  client.SetOnLoop([](const scanner::v1::PolicyRequest& r) {
    return absl::StartsWith(r.recipient(), "reject@");
  });
  StartServerWith(Options(), &client);
  PolicyServerStats s = AskExpectingOnlyTheErrorsCalled(client);
  EXPECT_EQ(s.decided_at_once, 8);
  EXPECT_EQ(s.decided_on_loop, 56);
  EXPECT_EQ(client.on_loop_calls(), 56);
}

// max_batch 1 (in-process): every queued request gets a call of its own at once.
TEST_F(PolicyServerTest, WithoutBatchingEachRequestGetsItsOwnCall) {
  FakeScannerClient client;
  client.SetPolicyHandler(TakesAMoment);
  PolicyServerOptions o = Options();
  o.prefork = 8;
  o.max_batch = 1;
  StartServerWith(o, &client);
  EXPECT_EQ(AskConcurrently(port_, 16, 10), 160);
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.scanner_calls, 160);
  EXPECT_EQ(client.policy_calls(), 160);
  EXPECT_TRUE(client.policy_batches().empty());
  server_->Shutdown();
}

TEST_F(PolicyServerTest, ConnectionsOverMaxChildrenAreClosedWithoutAnAnswer) {
  PolicyServerOptions o = Options();
  o.max_children = 2;
  StartAll(o);
  auto first = std::make_unique<PolicyConnection>(port_);
  PolicyConnection second(port_);
  ASSERT_EQ(first->Ask(Request("a@example.org")), kDunno);
  ASSERT_EQ(second.Ask(Request("a@example.org")), kDunno);
  PolicyConnection third(port_);
  third.Send(Request("a@example.org"));
  std::string got;
  EXPECT_TRUE(third.WaitForClose(absl::Seconds(5), &got));
  EXPECT_EQ(got, "");
  EXPECT_EQ(server_->stats().refused_connections, 1);
  // The two served ones still work; once one goes, a new one is served.
  EXPECT_EQ(second.Ask(Request("ok@example.org")), "action=OK\n\n");
  first.reset();
  ASSERT_TRUE(Eventually([&] { return server_->stats().active_connections == 1; }));
  PolicyConnection fourth(port_);
  EXPECT_EQ(fourth.Ask(Request("a@example.org")), kDunno);
  EXPECT_EQ(server_->stats().connections, 3);
}

TEST_F(PolicyServerTest, IdleConnectionIsClosedAfterTimeout) {
  PolicyServerOptions o = Options();
  o.timeout = absl::Milliseconds(300);
  StartAll(o);
  PolicyConnection postfix(port_);
  ASSERT_EQ(postfix.Ask(Request("a@example.org")), kDunno);
  absl::Time start = absl::Now();
  std::string got;
  EXPECT_TRUE(postfix.WaitForClose(absl::Seconds(5), &got));
  EXPECT_EQ(got, "");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
  // A block that never ends: closed without an answer too.
  PolicyConnection stuck(port_);
  std::string partial = Request("a@example.org");
  partial.resize(partial.size() / 2);
  ASSERT_TRUE(stuck.Send(partial));
  EXPECT_TRUE(stuck.WaitForClose(absl::Seconds(5), &got));
  EXPECT_EQ(got, "");
  // Dribbling bytes does not keep a block alive past the timeout.
  PolicyConnection dribble(port_);
  absl::Time dribble_start = absl::Now();
  bool closed = false;
  for (int i = 0; i < 100 && !closed; ++i) {
    closed = !dribble.Send("x");
    absl::SleepFor(absl::Milliseconds(50));
    if (!closed) closed = dribble.WaitForClose(absl::Milliseconds(1));
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(absl::Now() - dribble_start, absl::Seconds(2));
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.timeouts, 3);
  EXPECT_EQ(s.requests, 1);
}

// Each request moves the idle deadline on (Connection::Arm only notes a later
// deadline; the timer, when it goes off at the earlier one, waits again).
TEST_F(PolicyServerTest, RequestsWithinTheTimeoutKeepTheConnectionOpen) {
  PolicyServerOptions o = Options();
  o.timeout = absl::Milliseconds(300);
  StartAll(o);
  PolicyConnection postfix(port_);
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(postfix.Ask(Request("a@example.org")), kDunno) << i;
    absl::SleepFor(absl::Milliseconds(150));
  }
  ASSERT_EQ(postfix.Ask(Request("a@example.org")), kDunno);
  absl::Time last = absl::Now();
  std::string got;
  EXPECT_TRUE(postfix.WaitForClose(absl::Seconds(5), &got));
  EXPECT_GE(absl::Now() - last, absl::Milliseconds(250));
  EXPECT_EQ(server_->stats().timeouts, 1);
}

TEST_F(PolicyServerTest, ScannerDownDefersAndKeepsTheConnection) {
  StartServer(Options(), absl::StrCat("127.0.0.1:", DeadPort()));
  PolicyConnection postfix(port_);
  const std::string defer =
      "action=DEFER_IF_PERMIT 4.3.0 Policy service unavailable (scanner-svc unavailable), try "
      "again later\n\n";
  EXPECT_EQ(postfix.Ask(Request("a@example.org")), defer);
  EXPECT_EQ(postfix.Ask(Request("b@example.org")), defer);
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.requests, 2);
  EXPECT_EQ(s.deferred, 2);
  EXPECT_EQ(s.scanner_failures, 2);
  EXPECT_EQ(s.fail_open, 0);
  EXPECT_EQ(s.connections, 1);
}

TEST_F(PolicyServerTest, ScannerDownWithFailOpenAnswersDunnoAndCounts) {
  PolicyServerOptions o = Options();
  o.fail_open = true;
  StartServer(o, absl::StrCat("127.0.0.1:", DeadPort()));
  PolicyConnection postfix(port_);
  EXPECT_EQ(postfix.Ask(Request("a@example.org")), kDunno);
  EXPECT_EQ(postfix.Ask(Request("b@example.org")), kDunno);
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.fail_open, 2);
  EXPECT_EQ(s.scanner_failures, 2);
  EXPECT_EQ(s.dunno, 2);
}

// Asks for `recipient`, expecting the answer to a decision past policy_timeout
// (300 ms in these tests) well within 2 s.
void ExpectTimeoutAnswer(PolicyConnection& postfix, const std::string& recipient) {
  absl::Time start = absl::Now();
  EXPECT_EQ(postfix.Ask(Request(recipient)),
            "action=DEFER_IF_PERMIT 4.3.0 Policy service unavailable (timeout), try again "
            "later\n\n");
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(PolicyServerTest, SlowScannerPastPolicyTimeoutDefers) {
  PolicyServerOptions o = Options();
  o.policy_timeout = absl::Milliseconds(300);
  scanner_service_.SetDelay(absl::Seconds(5));
  StartAll(o);
  PolicyConnection postfix(port_);
  ExpectTimeoutAnswer(postfix, "ok@example.org");
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.policy_timeouts, 1);
  EXPECT_EQ(s.scanner_failures, 1);
  EXPECT_EQ(s.fail_open, 0);
}

// A request the LoopDecider sends back at the deadline (its database stalled) gets
// the failure answer at once: no call that could only come too late.
TEST_F(PolicyServerTest, ARequestTheLoopDeciderHeldPastTheDeadlineDefers) {
  FakeScannerClient client;
  client.SetPolicyHandler(ScriptedPolicy);
  client.SetOnLoop([](const scanner::v1::PolicyRequest&) { return true; });
  client.SetLoopStalls([](const scanner::v1::PolicyRequest& r) {
    return absl::StartsWith(r.recipient(), "stall@");
  });
  PolicyServerOptions o = Options();
  o.policy_timeout = absl::Milliseconds(300);
  StartServerWith(o, &client);
  PolicyConnection postfix(port_);
  ExpectTimeoutAnswer(postfix, "stall@example.org");
  EXPECT_EQ(postfix.Ask(Request("reject@example.org")).substr(0, 13), "action=REJECT");
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.policy_timeouts, 1);
  EXPECT_EQ(s.decided_on_loop, 1);
  EXPECT_EQ(client.policy_calls(), 0);
  server_->Shutdown();  // before `client` goes
}

TEST_F(PolicyServerTest, SlowScannerWithFailOpenAnswersDunno) {
  PolicyServerOptions o = Options();
  o.policy_timeout = absl::Milliseconds(300);
  o.fail_open = true;
  scanner_service_.SetDelay(absl::Seconds(5));
  StartAll(o);
  PolicyConnection postfix(port_);
  EXPECT_EQ(postfix.Ask(Request("reject@example.org")), kDunno);
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.policy_timeouts, 1);
  EXPECT_EQ(s.fail_open, 1);
}

// A ScannerClient that ignores its deadline (a hung call) and more requests than
// decision threads: every request is still answered at policy_timeout.
TEST_F(PolicyServerTest, NeverHangsWhenScannerCallsDoNotReturn) {
  FakeScannerClient stuck;
  stuck.SetPolicyHandler([](const scanner::v1::PolicyRequest&) {
    absl::SleepFor(absl::Seconds(2));
    scanner::v1::PolicyResponse p;
    p.set_outcome(common::v1::FORCED_PASS);
    return absl::StatusOr<scanner::v1::PolicyResponse>(p);
  });
  PolicyServerOptions o = Options();
  o.policy_timeout = absl::Milliseconds(300);
  o.prefork = 1;
  StartServerWith(o, &stuck);
  std::vector<std::thread> threads;
  std::atomic<int> deferred{0};
  absl::Time start = absl::Now();
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      PolicyConnection postfix(port_);
      if (absl::StartsWith(postfix.Ask(Request("a@example.org")),
                           "action=DEFER_IF_PERMIT 4.3.0 ")) {
        ++deferred;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(deferred.load(), 4);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1.5));
  EXPECT_EQ(server_->stats().policy_timeouts, 4);
  // The queued ones never called scanner-svc: nobody was waiting for them.
  server_->Shutdown();
  EXPECT_EQ(stuck.policy_calls(), 1);
}

TEST_F(PolicyServerTest, GarbageAndOversizedBlocksAreClosedWithoutAnAnswer) {
  StartAll();
  PolicyConnection bystander(port_);
  ASSERT_EQ(bystander.Ask(Request("a@example.org")), kDunno);

  std::string huge_block = "request=smtpd_access_policy\n";
  for (int i = 0; i < 20; ++i)
    huge_block += absl::StrCat("x", i, "=", std::string(4000, 'v'), "\n");
  huge_block += "\n";
  const std::vector<std::string> bad = {
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      "EHLO example.org\r\n",
      "request=smtpd_access_policy\nno equals sign here\n\n",
      "request=other_policy\n\n",
      "\n",
      std::string("request=smtpd_access_policy\nsender=a\0b\n\n", 40),
      "request=smtpd_access_policy\nsender=" + std::string(20000, 's'),  // no line end
      huge_block,
      std::string(200000, '\xff'),
  };
  for (const std::string& input : bad) {
    PolicyConnection attacker(port_);
    attacker.Send(input);
    std::string got;
    EXPECT_TRUE(attacker.WaitForClose(absl::Seconds(5), &got)) << input.substr(0, 40);
    EXPECT_EQ(got, "") << input.substr(0, 40);
  }
  // A good request followed by garbage: the good one is answered, then the close.
  PolicyConnection mixed(port_);
  mixed.Send(Request("ok@example.org") + "garbage\n\n");
  std::string got;
  EXPECT_TRUE(mixed.WaitForClose(absl::Seconds(5), &got));
  EXPECT_EQ(got, "action=OK\n\n");

  EXPECT_EQ(bystander.Ask(Request("ok@example.org")), "action=OK\n\n");
  PolicyConnection newcomer(port_);
  EXPECT_EQ(newcomer.Ask(Request("a@example.org")), kDunno);
  PolicyServerStats s = server_->stats();
  EXPECT_EQ(s.protocol_errors, static_cast<int64_t>(bad.size()) + 1);
  EXPECT_EQ(s.requests, 4);
}

TEST_F(PolicyServerTest, ShutdownWithADecisionInFlightAnswersNothing) {
  PolicyServerOptions o = Options();
  o.shutdown_grace = absl::Milliseconds(200);
  scanner_service_.SetDelay(absl::Seconds(30));
  StartAll(o);
  PolicyConnection postfix(port_);
  ASSERT_TRUE(postfix.Send(Request("a@example.org")));
  ASSERT_TRUE(Eventually([&] { return scanner_service_.policy_calls() == 1; }));
  absl::Time start = absl::Now();
  server_->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  std::string got;
  EXPECT_TRUE(postfix.WaitForClose(absl::Seconds(5), &got));
  EXPECT_EQ(got, "");
}

TEST(OptionsFromConfig, ReadsTheServiceWithTheSchemaDefaults) {
  absl::StatusOr<LoadedConfig> cfg = LoadConfigString(
      "chains: {policy: [nothing]}\n"
      "services:\n"
      "  - smtpd_policy: {scanners: policy}\n"
      "  - name: tuned\n"
      "    smtpd_policy: {scanners: policy, host: 0.0.0.0, port: 2029, max_children: 5,"
      " timeout: 60s, fail_open: true, policy_timeout: 2s, prefork: 3, io_threads: 3}\n",
      "test.yaml", "");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  PolicyServerOptions d = OptionsFromConfig(cfg->proto.services(0).smtpd_policy());
  EXPECT_EQ(d.chain, "policy");
  EXPECT_EQ(d.host, "127.0.0.1");
  EXPECT_EQ(d.port, 10029);
  EXPECT_EQ(d.max_children, 200);
  EXPECT_EQ(d.timeout, absl::Seconds(300));
  EXPECT_FALSE(d.fail_open);
  EXPECT_EQ(d.policy_timeout, absl::Seconds(10));
  EXPECT_EQ(d.prefork, 16);
  EXPECT_EQ(d.io_threads,
            static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u)));
  PolicyServerOptions t = OptionsFromConfig(cfg->proto.services(1).smtpd_policy());
  EXPECT_EQ(t.host, "0.0.0.0");
  EXPECT_EQ(t.port, 2029);
  EXPECT_EQ(t.max_children, 5);
  EXPECT_EQ(t.timeout, absl::Seconds(60));
  EXPECT_TRUE(t.fail_open);
  EXPECT_EQ(t.policy_timeout, absl::Seconds(2));
  EXPECT_EQ(t.prefork, 3);
  EXPECT_EQ(t.io_threads, 3);
}

TEST(OptionsFromConfig, RefusesAPolicyTimeoutNotBelowPostfixs) {
  absl::StatusOr<LoadedConfig> cfg = LoadConfigString(
      "chains: {policy: [nothing]}\n"
      "services:\n"
      "  - smtpd_policy: {scanners: policy, policy_timeout: 120s}\n",
      "test.yaml", "");
  EXPECT_FALSE(cfg.ok());
}

}  // namespace
}  // namespace sagator::smtpd_policy
