#include "scanner-svc/scanners/clamd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness/clamd_daemon.h"
#include "tests/harness/test_mail.h"

namespace sagator::scanners {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

using ::sagator::testing::kEicar;
static_assert(sizeof(kEicar) - 1 == 68, "EICAR is 68 bytes");

std::string Mail(absl::string_view body) {
  return absl::StrCat(
      "From: Sender <sender@example.com>\r\n"
      "To: rcpt@example.org\r\n"
      "Subject: clamd test\r\n"
      "Message-ID: <clamd-test@example.com>\r\n"
      "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
      "\r\n",
      body, "\r\n");
}

// A short clean message that outlives every ScanContext (which only views it).
const std::string& SmallMail() {
  static const std::string* const mail = new std::string(Mail("hi"));
  return *mail;
}

std::string TmpDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

engine::ScanContext Context(absl::string_view message,
                            absl::Duration deadline = absl::Seconds(30),
                            std::function<bool()> cancelled = nullptr) {
  return engine::ScanContext(message, engine::MessageEnvelope{}, absl::Now() + deadline,
                             std::move(cancelled));
}

std::unique_ptr<engine::Scanner> MakeScanner(const std::string& address,
                                             absl::Duration timeout = absl::Seconds(60),
                                             int chunk_size = 0) {
  config::v1::ClamdSpec spec;
  spec.set_address(address);
  spec.mutable_timeout()->set_seconds(absl::ToInt64Seconds(timeout));
  spec.mutable_timeout()->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(timeout - absl::Seconds(absl::ToInt64Seconds(timeout)))));
  spec.set_chunk_size(chunk_size);
  absl::StatusOr<std::unique_ptr<engine::Scanner>> scanner =
      MakeClamdScanner(spec, nullptr);
  EXPECT_TRUE(scanner.ok()) << scanner.status();
  return scanner.ok() ? *std::move(scanner) : nullptr;
}

// A TCP peer on 127.0.0.1 standing in for clamd. With a reply, it reads one INSTREAM
// request to its end, answers `reply` verbatim and closes; without one it accepts
// and never answers.
class FakeClamd {
 public:
  explicit FakeClamd(std::optional<std::string> reply) : reply_(std::move(reply)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    EXPECT_EQ(listen(listen_fd_, 16), 0);
    EXPECT_EQ(getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len), 0);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeClamd() {
    stop_ = true;
    thread_.join();
    for (int fd : held_) close(fd);
    close(listen_fd_);
  }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int accepted() const { return accepted_; }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++accepted_;
      if (!reply_) {
        held_.push_back(fd);
        continue;
      }
      timeval tv{5, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      std::string command(10, '\0');
      if (ReadExactly(fd, command.data(), command.size())) {
        uint32_t length_be = 0;
        while (ReadExactly(fd, &length_be, 4) && ntohl(length_be) != 0) {
          std::string chunk(ntohl(length_be), '\0');
          if (!ReadExactly(fd, chunk.data(), chunk.size())) break;
        }
        (void)!write(fd, reply_->data(), reply_->size());
      }
      close(fd);
    }
  }
  static bool ReadExactly(int fd, void* buf, size_t n) {
    char* p = static_cast<char*>(buf);
    while (n > 0) {
      ssize_t r = recv(fd, p, n, 0);
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }

  std::optional<std::string> reply_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::vector<int> held_;  // Only touched by thread_ until it is joined.
};

// Tests against one real clamd (unix socket + TCP, StreamMaxLength 1M).
class ClamdScannerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    harness::ClamdDaemon::Options options;
    options.tcp = true;
    options.stream_max_length = 1 << 20;
    options.max_threads = 4;
    absl::StatusOr<std::unique_ptr<harness::ClamdDaemon>> d =
        harness::ClamdDaemon::Start(absl::StrCat(TmpDir(), "/clamd"), options);
    if (d.ok()) {
      clamd_ = d->release();
    } else {
      *start_error_ = d.status();
    }
  }
  static void TearDownTestSuite() {
    if (clamd_ != nullptr) {
      EXPECT_TRUE(clamd_->Stop().ok());
      delete clamd_;
      clamd_ = nullptr;
    }
  }
  void SetUp() override { ASSERT_NE(clamd_, nullptr) << *start_error_; }

  static harness::ClamdDaemon* clamd_;
  static absl::Status* start_error_;
};

harness::ClamdDaemon* ClamdScannerTest::clamd_ = nullptr;
absl::Status* ClamdScannerTest::start_error_ = new absl::Status();

TEST_F(ClamdScannerTest, DetectsEicarOverUnixSocket) {
  auto scanner = MakeScanner(clamd_->unix_address());
  const std::string mail = Mail(kEicar);
  auto ctx = Context(mail);
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->detected());
  EXPECT_EQ(r->level, 1.0);
  EXPECT_THAT(r->name, HasSubstr("Eicar-Test-Signature"));
  EXPECT_EQ(r->path, "clamd()");
  EXPECT_THAT(r->output, StartsWith("stream: "));
  EXPECT_THAT(r->output, HasSubstr(" FOUND"));
  EXPECT_FALSE(r->not_scanned);
}

TEST_F(ClamdScannerTest, DetectsEicarOverTcp) {
  auto scanner = MakeScanner(clamd_->tcp_address());
  const std::string mail = Mail(kEicar);
  auto ctx = Context(mail);
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->detected());
  EXPECT_THAT(r->name, HasSubstr("Eicar-Test-Signature"));
}

TEST_F(ClamdScannerTest, DetectsEicarOverTcpByHostName) {
  // "localhost" may resolve to ::1 first, where nothing listens: the scanner must
  // fall through to 127.0.0.1.
  auto scanner = MakeScanner(absl::StrCat("localhost:", clamd_->tcp_port()));
  const std::string mail = Mail(kEicar);
  auto ctx = Context(mail);
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->detected());
}

TEST_F(ClamdScannerTest, DetectsEicarSplitAcrossChunks) {
  auto scanner = MakeScanner(clamd_->unix_address(), absl::Seconds(60), 1024);
  // Header plus padding puts the signature across the first chunk boundary.
  std::string mail = Mail("");
  mail.append(1024 - mail.size() - 30, 'a');
  mail.append(kEicar);
  mail.append(5000, 'b');
  auto ctx = Context(mail);
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->detected());
}

TEST_F(ClamdScannerTest, CleanMessageIsLevelZero) {
  for (const std::string& address : {clamd_->unix_address(), clamd_->tcp_address()}) {
    auto scanner = MakeScanner(address);
    const std::string mail = Mail("Hello, this is a perfectly harmless message.");
    auto ctx = Context(mail);
    absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
    ASSERT_TRUE(r.ok()) << address << ": " << r.status();
    EXPECT_FALSE(r->detected()) << address;
    EXPECT_EQ(r->level, 0.0);
    EXPECT_EQ(r->name, "");
    EXPECT_FALSE(r->not_scanned);
    EXPECT_EQ(r->output, "stream: OK");
    EXPECT_EQ(r->path, "clamd()");
  }
}

TEST_F(ClamdScannerTest, LargeCleanMessageUnderLimitInSmallChunks) {
  auto scanner = MakeScanner(clamd_->tcp_address(), absl::Seconds(60), 1024);
  const std::string mail = Mail(std::string(900 * 1024, 'x'));
  auto ctx = Context(mail);
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->detected());
  EXPECT_FALSE(r->not_scanned);
}

TEST_F(ClamdScannerTest, EmptyMessageIsClean) {
  auto scanner = MakeScanner(clamd_->unix_address());
  auto ctx = Context("");
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->detected());
  EXPECT_FALSE(r->not_scanned);
}

TEST_F(ClamdScannerTest, OverStreamMaxLengthIsNotScannedNotClean) {
  // 3 MB against StreamMaxLength 1M: clamd answers and closes while we still send.
  const std::string mail = Mail(std::string(3 << 20, 'y'));
  for (const std::string& address : {clamd_->unix_address(), clamd_->tcp_address()}) {
    auto scanner = MakeScanner(address);
    auto ctx = Context(mail);
    absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
    ASSERT_TRUE(r.ok()) << address << ": " << r.status();
    EXPECT_TRUE(r->not_scanned) << address;
    EXPECT_EQ(r->name, "not scanned: too large (clamd StreamMaxLength)");
    EXPECT_EQ(r->name, ClamdScanner::kTooLargeName);
    EXPECT_EQ(r->level, 0.0);
    EXPECT_THAT(r->output, HasSubstr("INSTREAM size limit exceeded"));
    EXPECT_EQ(r->path, "clamd()");
  }
}

TEST_F(ClamdScannerTest, ConcurrentScansShareOneScanner) {
  auto scanner = MakeScanner(clamd_->tcp_address());
  const std::string infected = Mail(kEicar);
  const std::string clean = Mail("nothing to see here");
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        const bool bad = (t + i) % 2 == 0;
        auto ctx = Context(bad ? infected : clean);
        absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
        if (!r.ok() || r->detected() != bad) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures, 0);
}

TEST(ClamdScanner, MissingSocketIsUnavailableError) {
  auto scanner = MakeScanner("unix:/nonexistent/sagator-clamd.sock");
  auto ctx = Context(SmallMail());
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("unix:/nonexistent/sagator-clamd.sock"));
}

TEST(ClamdScanner, RefusedTcpConnectionIsUnavailableError) {
  // Bind a port and close it again, so that nothing listens there.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sa);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  close(fd);
  const std::string address = absl::StrCat("127.0.0.1:", ntohs(sa.sin_port));
  auto scanner = MakeScanner(address);
  auto ctx = Context(SmallMail());
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(address));
}

TEST(ClamdScanner, SilentPeerFailsAtContextDeadlineNotSpecTimeout) {
  FakeClamd silent(std::nullopt);
  auto scanner = MakeScanner(silent.address(), absl::Seconds(60));
  const std::string mail = Mail(kEicar);
  auto ctx = Context(mail, absl::Milliseconds(300));
  const absl::Time start = absl::Now();
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  const absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(silent.address()));
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Seconds(3));
  EXPECT_EQ(silent.accepted(), 1);
}

TEST(ClamdScanner, SilentPeerFailsAtSpecTimeout) {
  FakeClamd silent(std::nullopt);
  auto scanner = MakeScanner(silent.address(), absl::Milliseconds(200));
  auto ctx = Context(SmallMail(), absl::Seconds(60));
  const absl::Time start = absl::Now();
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST(ClamdScanner, CancellationStopsWaitingForTheReply) {
  FakeClamd silent(std::nullopt);
  auto scanner = MakeScanner(silent.address(), absl::Seconds(60));
  const absl::Time cancel_at = absl::Now() + absl::Milliseconds(200);
  auto ctx = Context(SmallMail(), absl::Seconds(60),
                     [cancel_at] { return absl::Now() >= cancel_at; });
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  EXPECT_LT(absl::Now() - cancel_at, absl::Seconds(2));
}

TEST(ClamdScanner, DeadContextFailsWithoutConnecting) {
  FakeClamd peer(std::string("stream: OK\0", 11));
  auto scanner = MakeScanner(peer.address());
  const std::string mail = Mail("hi");

  auto cancelled = Context(mail, absl::Seconds(30), [] { return true; });
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(cancelled);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();

  auto expired = Context(mail, -absl::Seconds(1));
  r = scanner->Scan(expired);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();

  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(peer.accepted(), 0);

  // The same peer does answer a live context.
  auto live = Context(mail);
  r = scanner->Scan(live);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->detected());
}

TEST(ClamdScanner, ErrorReplyIsAnError) {
  FakeClamd peer(std::string("stream: Can't allocate memory ERROR\0", 36));
  auto scanner = MakeScanner(peer.address());
  auto ctx = Context(SmallMail());
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("Can't allocate memory"));
  EXPECT_THAT(r.status().message(), HasSubstr(peer.address()));
}

TEST(ClamdScanner, ReplyCutShortIsAnError) {
  // No terminating NUL: the connection ended inside the reply.
  FakeClamd peer(std::string("stream: OK"));
  auto scanner = MakeScanner(peer.address());
  auto ctx = Context(SmallMail());
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

TEST(ClamdScanner, NoReplyIsAnError) {
  FakeClamd peer(std::string(""));
  auto scanner = MakeScanner(peer.address());
  auto ctx = Context(SmallMail());
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

TEST(ClamdScanner, GarbageReplyIsAnError) {
  FakeClamd peer(std::string("HELLO\0", 6));
  auto scanner = MakeScanner(peer.address());
  auto ctx = Context(SmallMail());
  absl::StatusOr<engine::ScanResult> r = scanner->Scan(ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
}

TEST(ClamdScanner, RejectsBadAddresses) {
  for (const char* bad : {"clamd", "unix:", "host:", ":3310", "host:0", "host:65536",
                          "host:33a", "host:+3310", "::1:3310", "[]:3310"}) {
    config::v1::ClamdSpec spec;
    spec.set_address(bad);
    absl::StatusOr<std::unique_ptr<engine::Scanner>> s = MakeClamdScanner(spec, nullptr);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  config::v1::ClamdSpec spec;
  spec.set_address(absl::StrCat("unix:/", std::string(120, 'a')));
  EXPECT_EQ(MakeClamdScanner(spec, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec.set_address("127.0.0.1:3310");
  spec.set_chunk_size(10);
  EXPECT_EQ(MakeClamdScanner(spec, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ClamdScanner, AcceptsAddressForms) {
  auto address_of = [](const std::string& address) -> std::string {
    config::v1::ClamdSpec spec;
    spec.set_address(address);
    auto s = MakeClamdScanner(
        spec, [](absl::string_view p) { return absl::StrCat("/etc/sagator/", p); });
    if (!s.ok()) return std::string(s.status().message());
    EXPECT_EQ((*s)->Describe(), "clamd()");
    return static_cast<const ClamdScanner&>(**s).address();
  };
  EXPECT_EQ(address_of(""), "unix:/var/run/clamav/clamd.ctl");
  EXPECT_EQ(address_of("unix:/run/clamd.ctl"), "unix:/run/clamd.ctl");
  EXPECT_EQ(address_of("/run/clamd.ctl"), "unix:/run/clamd.ctl");
  EXPECT_EQ(address_of("unix:clamd.ctl"), "unix:/etc/sagator/clamd.ctl");
  EXPECT_EQ(address_of("clamav:3310"), "clamav:3310");
  EXPECT_EQ(address_of("[::1]:3310"), "[::1]:3310");
}

}  // namespace
}  // namespace sagator::scanners
