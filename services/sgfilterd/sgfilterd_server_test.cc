// SgfilterdServer in-process, over real loopback sockets, with the in-memory
// FakeScannerClient in place of scanner-svc. The tests that run the real binaries
// (and the real scanner-svc) are in sgfilterd_e2e_test.cc.
#include "services/sgfilterd/sgfilterd_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/testing/fake_scanner.h"
#include "services/sgfilterd/testing/test_util.h"

namespace sagator::sgfilterd {
namespace {

using testing::ConnectLocal;
using testing::Exchange;
using sagator::testing::FakeScannerClient;
using testing::FirstLine;
using ::testing::HasSubstr;
using sagator::testing::kEicarString;
using ::testing::MatchesRegex;
using testing::ReadUntilClose;
using testing::SendAll;
using ::testing::StartsWith;
using testing::Transaction;

const char kClean[] = "Subject: hello\nFrom: a@example.org\n\nclean body\n";

class SgfilterdServerTest : public ::testing::Test {
 protected:
  void StartServer(SgfilterdOptions o = {}) {
    o.host = "127.0.0.1";
    o.port = 0;
    if (o.chain.empty()) o.chain = "default";
    server_ = std::make_unique<SgfilterdServer>(o, &scanner_);
    ASSERT_TRUE(server_->Start().ok());
    port_ = server_->port();
    ASSERT_GT(port_, 0);
  }

  static SgfilterdOptions Options() {
    SgfilterdOptions o;
    o.timeout = absl::Seconds(5);
    o.max_message_size = 1 << 20;
    return o;
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  FakeScannerClient scanner_;
  std::unique_ptr<SgfilterdServer> server_;
  int port_ = 0;
};

TEST_F(SgfilterdServerTest, CleanMessageComesBackWithVerdictHeaders) {
  StartServer(Options());
  std::string reply = Exchange(port_, Transaction(kClean));
  EXPECT_EQ(reply, absl::StrCat("250 0.00 OK\n"
                                "X-Sagator-ID: 20240101-000000-0001-00001-AbCdEf@test\n"
                                "X-Sagator-Scanner: test at test; default\n",
                                kClean));
  scanner::v1::ScanHeader h = scanner_.last_header();
  EXPECT_EQ(h.chain(), "default");
  EXPECT_EQ(h.gateway(), "sgfilterd");
  EXPECT_EQ(h.size(), static_cast<int64_t>(strlen(kClean)));
  EXPECT_EQ(h.envelope().sender(), "a@example.org");
  EXPECT_THAT(h.envelope().recipients(), ::testing::ElementsAre("b@example.org"));
  EXPECT_EQ(h.envelope().client().address(), "127.0.0.1");
  EXPECT_EQ(h.envelope().client().protocol(), "sgfilter");
  EXPECT_TRUE(h.envelope().has_received_at());
  EXPECT_EQ(scanner_.last_message(), kClean);
  SgfilterdStats s = server_->stats();
  EXPECT_EQ(s.messages, 1);
  EXPECT_EQ(s.passed, 1);
}

TEST_F(SgfilterdServerTest, AnswersEveryOutcome) {
  StartServer(Options());
  std::string eicar = Exchange(port_, Transaction("Subject: v\n\n" + kEicarString + "\n"));
  EXPECT_EQ(FirstLine(eicar), "550 1.00 EICAR-Test\n");
  EXPECT_THAT(eicar, HasSubstr("\nX-Sagator-Status: EICAR-Test 1.00\nSubject: v\n\n"));
  EXPECT_EQ(FirstLine(Exchange(port_, Transaction("S: s\n\nFORCE-ME\n"))), "251 1.50 Forced\n");
  EXPECT_EQ(FirstLine(Exchange(port_, Transaction("S: s\n\nDROP-ME\n"))), "551 2.00 Worm.Fake\n");
  // 451: only the result line.
  EXPECT_EQ(Exchange(port_, Transaction("S: s\n\nTEMPFAIL-ME\n")), "451 0.00 engine broken\n");
  SgfilterdStats s = server_->stats();
  EXPECT_EQ(s.rejected, 1);
  EXPECT_EQ(s.forced, 1);
  EXPECT_EQ(s.dropped, 1);
  EXPECT_EQ(s.tempfailed, 1);
}

TEST_F(SgfilterdServerTest, ScannerFailureIsTempfailWithShortReason) {
  scanner_.SetHandler([](const scanner::v1::ScanHeader&, const std::string&) {
    return absl::StatusOr<ScanReply>(absl::UnavailableError("failed to connect to all addresses"));
  });
  StartServer(Options());
  EXPECT_EQ(Exchange(port_, Transaction(kClean)), "451 0.00 scanner unavailable\n");
  scanner_.SetHandler([](const scanner::v1::ScanHeader&, const std::string&) {
    return absl::StatusOr<ScanReply>(absl::DeadlineExceededError("Deadline Exceeded"));
  });
  EXPECT_EQ(Exchange(port_, Transaction(kClean)), "451 0.00 scan timeout\n");
}

TEST_F(SgfilterdServerTest, MalformedInputGetsProtocolError) {
  StartServer(Options());
  EXPECT_EQ(Exchange(port_, "HELO example.org\n"),
            "451 0.00 protocol error: unknown command 'HELO'\n");
  EXPECT_EQ(Exchange(port_, "RCPT TO: <b>\r\n"),
            "451 0.00 protocol error: RCPT TO before MAIL FROM\n");
  EXPECT_EQ(Exchange(port_, "MAIL FROM: <a>\nDATA 5\nhello"),
            "451 0.00 protocol error: DATA before RCPT TO\n");
  EXPECT_EQ(Exchange(port_, "MAIL FROM: <a>\nRCPT TO: <b>\nDATA five\n"),
            "451 0.00 protocol error: bad DATA length 'five'\n");
  EXPECT_EQ(Exchange(port_, "MAIL FROM: <a>\nRCPT TO: <b>\nDATA -1\n"),
            "451 0.00 protocol error: bad DATA length '-1'\n");
  EXPECT_EQ(Exchange(port_, std::string(3000, 'A')),
            "451 0.00 protocol error: command line longer than 1000 bytes\n");
  EXPECT_EQ(server_->stats().protocol_errors, 6);
  EXPECT_EQ(scanner_.calls(), 0);
  // Still serving.
  EXPECT_EQ(FirstLine(Exchange(port_, Transaction(kClean))), "250 0.00 OK\n");
}

TEST_F(SgfilterdServerTest, MessageOverMaxMessageSizeGetsClearLine) {
  SgfilterdOptions o = Options();
  o.max_message_size = 1024;
  StartServer(o);
  EXPECT_EQ(Exchange(port_, Transaction(std::string(2000, 'x'))),
            "451 0.00 message too large: 2000 bytes, the limit is 1024\n");
  EXPECT_EQ(server_->stats().too_large, 1);
  EXPECT_EQ(FirstLine(Exchange(port_, Transaction(std::string(1024, 'x')))), "250 0.00 OK\n");
}

TEST_F(SgfilterdServerTest, DataTooShortTimesOut) {
  SgfilterdOptions o = Options();
  o.timeout = absl::Milliseconds(300);
  StartServer(o);
  int fd = ConnectLocal(port_);
  ASSERT_GE(fd, 0);
  // Announces 100 bytes, sends 10, then stays idle.
  ASSERT_TRUE(SendAll(fd, "MAIL FROM: <a>\nRCPT TO: <b>\nDATA 100\n0123456789"));
  absl::Time start = absl::Now();
  bool closed = false;
  std::string reply = ReadUntilClose(fd, absl::Seconds(10), &closed);
  close(fd);
  EXPECT_EQ(reply, "451 0.00 timeout\n");
  EXPECT_TRUE(closed);
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
  EXPECT_EQ(server_->stats().timeouts, 1);
  EXPECT_EQ(scanner_.calls(), 0);
}

TEST_F(SgfilterdServerTest, IdleClientBeforeDataTimesOut) {
  SgfilterdOptions o = Options();
  o.timeout = absl::Milliseconds(200);
  StartServer(o);
  int fd = ConnectLocal(port_);
  ASSERT_TRUE(SendAll(fd, "MAIL FROM: <a>\n"));
  EXPECT_EQ(ReadUntilClose(fd, absl::Seconds(10)), "451 0.00 timeout\n");
  close(fd);
}

TEST_F(SgfilterdServerTest, TrickleDoesNotOutliveTheWholeTransferDeadline) {
  SgfilterdOptions o = Options();
  o.timeout = absl::Milliseconds(500);
  StartServer(o);
  int fd = ConnectLocal(port_);
  ASSERT_TRUE(SendAll(fd, "MAIL FROM: <a>\nRCPT TO: <b>\nDATA 1000\n"));
  // One byte every 100 ms never trips the inactivity timeout, but the transfer may
  // take at most 500 ms * (1 + 1000 / 1 MiB).
  absl::Time start = absl::Now();
  std::string reply;
  for (int i = 0; i < 40 && reply.empty(); ++i) {
    SendAll(fd, "x");
    reply = ReadUntilClose(fd, absl::Milliseconds(100));
  }
  reply += ReadUntilClose(fd, absl::Seconds(5));
  close(fd);
  EXPECT_EQ(reply, "451 0.00 timeout\n");
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(SgfilterdServerTest, MoreBytesThanAnnouncedIsAProtocolError) {
  StartServer(Options());
  std::string reply = Exchange(port_, Transaction("12345") + "67890");
  EXPECT_EQ(reply,
            "451 0.00 protocol error: more bytes than the announced DATA length (5 extra)\n");
}

TEST_F(SgfilterdServerTest, ExtraBytesArrivingDuringTheScanAreAProtocolError) {
  scanner_.SetDelay(absl::Milliseconds(400));
  StartServer(Options());
  int fd = ConnectLocal(port_);
  ASSERT_TRUE(SendAll(fd, Transaction(kClean)));
  absl::SleepFor(absl::Milliseconds(100));
  ASSERT_TRUE(SendAll(fd, "trailing garbage"));
  std::string reply = ReadUntilClose(fd, absl::Seconds(10));
  close(fd);
  EXPECT_EQ(reply,
            "451 0.00 protocol error: more bytes than the announced DATA length (16 extra)\n");
}

TEST_F(SgfilterdServerTest, ClientClosingEarlyIsCountedAndHarmless) {
  StartServer(Options());
  int fd = ConnectLocal(port_);
  ASSERT_TRUE(SendAll(fd, "MAIL FROM: <a>\nRCPT TO: <b>\nDATA 100\nonly a few bytes"));
  close(fd);
  for (int i = 0; i < 200 && server_->stats().client_aborts == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->stats().client_aborts, 1);
  EXPECT_EQ(server_->stats().active_connections, 0);
  EXPECT_EQ(server_->stats().buffered_bytes, 0);
  EXPECT_EQ(scanner_.calls(), 0);
  EXPECT_EQ(FirstLine(Exchange(port_, Transaction(kClean))), "250 0.00 OK\n");
}

TEST_F(SgfilterdServerTest, MemoryBudgetRefusesWhatDoesNotFit) {
  SgfilterdOptions o = Options();
  o.max_buffered_bytes = 1024;
  o.max_message_size = 4096;
  StartServer(o);
  // Larger than the whole budget.
  EXPECT_EQ(Exchange(port_, Transaction(std::string(2000, 'x'))),
            "451 0.00 server busy, try later\n");
  // One connection holds 900 bytes of the budget while it sends slowly.
  int holder = ConnectLocal(port_);
  std::string big = std::string(900, 'y');
  std::string request = Transaction(big, "a", "b");
  ASSERT_TRUE(SendAll(holder, request.substr(0, request.size() - 10)));
  for (int i = 0; i < 200 && server_->stats().buffered_bytes < 900; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(Exchange(port_, Transaction(std::string(200, 'z'))),
            "451 0.00 server busy, try later\n");
  EXPECT_EQ(FirstLine(Exchange(port_, Transaction(std::string(50, 'z')))), "250 0.00 OK\n");
  ASSERT_TRUE(SendAll(holder, request.substr(request.size() - 10)));
  EXPECT_EQ(FirstLine(ReadUntilClose(holder, absl::Seconds(10))), "250 0.00 OK\n");
  close(holder);
  EXPECT_EQ(server_->stats().refused_memory, 2);
  for (int i = 0; i < 200 && server_->stats().buffered_bytes > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(server_->stats().buffered_bytes, 0);
}

TEST_F(SgfilterdServerTest, TooManyConnectionsGetTempfail) {
  SgfilterdOptions o = Options();
  o.max_connections = 2;
  StartServer(o);
  int a = ConnectLocal(port_);
  int b = ConnectLocal(port_);
  for (int i = 0; i < 200 && server_->stats().active_connections < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(server_->stats().active_connections, 2);
  EXPECT_EQ(Exchange(port_, Transaction(kClean)), "451 0.00 too many connections\n");
  EXPECT_EQ(server_->stats().refused_connections, 1);
  close(a);
  close(b);
  for (int i = 0; i < 200 && server_->stats().active_connections > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(FirstLine(Exchange(port_, Transaction(kClean))), "250 0.00 OK\n");
}

TEST_F(SgfilterdServerTest, ScansRunAtMostPreforkAtOnce) {
  std::atomic<int> running{0};
  std::atomic<int> peak{0};
  scanner_.SetHandler([&](const scanner::v1::ScanHeader&, const std::string&) {
    int now = ++running;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    absl::SleepFor(absl::Milliseconds(50));
    --running;
    ScanReply r;
    r.verdict.set_outcome(common::v1::PASS);
    return absl::StatusOr<ScanReply>(r);
  });
  SgfilterdOptions o = Options();
  o.prefork = 3;
  StartServer(o);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 12; ++i) {
    clients.emplace_back([&] {
      if (FirstLine(Exchange(port_, Transaction(kClean))) == "250 0.00 OK\n") ++ok;
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok, 12);
  EXPECT_EQ(peak, 3);
}

TEST_F(SgfilterdServerTest, ShutdownLetsInFlightScansFinish) {
  scanner_.SetDelay(absl::Milliseconds(500));
  StartServer(Options());
  std::string reply;
  std::thread client([&] { reply = Exchange(port_, Transaction(kClean)); });
  for (int i = 0; i < 200 && scanner_.calls() == 0; ++i) absl::SleepFor(absl::Milliseconds(5));
  absl::Time start = absl::Now();
  server_->Shutdown();
  client.join();
  EXPECT_EQ(FirstLine(reply), "250 0.00 OK\n");
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  // No longer listening.
  EXPECT_LT(ConnectLocal(port_), 0);
}

TEST_F(SgfilterdServerTest, ShutdownCancelsScansAfterTheGrace) {
  scanner_.SetDelay(absl::Seconds(30));
  SgfilterdOptions o = Options();
  o.shutdown_grace = absl::Milliseconds(200);
  StartServer(o);
  int fd = ConnectLocal(port_);
  ASSERT_TRUE(SendAll(fd, Transaction(kClean)));
  for (int i = 0; i < 200 && scanner_.calls() == 0; ++i) absl::SleepFor(absl::Milliseconds(5));
  absl::Time start = absl::Now();
  server_->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  bool closed = false;
  // No reply: the client passes the mail unscanned.
  EXPECT_EQ(ReadUntilClose(fd, absl::Seconds(5), &closed), "");
  EXPECT_TRUE(closed);
  close(fd);
}

TEST_F(SgfilterdServerTest, ManyConcurrentConnectionsEachGetAWellFormedLine) {
  testing::RaiseFdLimit(4096);
  scanner_.SetDelay(absl::Milliseconds(2));
  SgfilterdOptions o = Options();
  o.timeout = absl::Seconds(30);
  StartServer(o);
  constexpr int kClients = 300;
  std::vector<int> fds;
  // Every connection is open (and has sent its command lines) before any finishes.
  for (int i = 0; i < kClients; ++i) {
    int fd = ConnectLocal(port_);
    ASSERT_GE(fd, 0) << i;
    std::string t = Transaction(kClean);
    ASSERT_TRUE(SendAll(fd, t.substr(0, t.size() - 5)));
    fds.push_back(fd);
  }
  for (int fd : fds) ASSERT_TRUE(SendAll(fd, std::string(kClean).substr(strlen(kClean) - 5)));
  int ok = 0;
  for (int fd : fds) {
    std::string line = FirstLine(ReadUntilClose(fd, absl::Seconds(30)));
    EXPECT_THAT(line, MatchesRegex("(250 0\\.00 OK|451 0\\.00 .*)\n"));
    if (line == "250 0.00 OK\n") ++ok;
    close(fd);
  }
  EXPECT_EQ(ok, kClients);
  EXPECT_EQ(FirstLine(Exchange(port_, Transaction(kClean))), "250 0.00 OK\n");
}

}  // namespace
}  // namespace sagator::sgfilterd
