// The real `milter` binary driven by miltertest (Debian's miltertest package, the
// MTA side of the milter protocol in Lua scripts under testdata/), with a gRPC fake
// of scanner-svc in this process. Covers the replies, the header operations, several
// messages and aborts on one connection, progress replies, the size limit,
// recipient_policy, the failure contract (outage, deadline, fail_open, garbage on the
// socket), the three connection forms and SIGTERM.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/testing/fake_scanner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness/subprocess.h"

namespace sagator::milter {
namespace {

using ::sagator::testing::CommandResult;
using ::sagator::testing::FakeScannerService;
using ::sagator::testing::MakeTempDir;
using ::sagator::testing::PickFreePort;
using ::sagator::testing::ReadFile;
using ::sagator::testing::RunCommand;
using ::sagator::testing::RunfilePath;
using ::sagator::testing::ScanHandler;
using ::sagator::testing::Subprocess;
using ::sagator::testing::WaitForTcpPort;
using ::sagator::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Every message the fake scanner-svc saw, in order.
absl::Mutex scanned_mu;
std::vector<std::string>* scanned ABSL_GUARDED_BY(scanned_mu) = new std::vector<std::string>;

std::vector<std::string> Scanned() {
  absl::MutexLock lock(&scanned_mu);
  return *scanned;
}

// Messages sent head-only (too large to scan): their announced sizes. The fake
// answers them as scanner-svc does, not scanned, with not_scanned_outcome.
std::vector<int64_t>* head_only_sizes ABSL_GUARDED_BY(scanned_mu) = new std::vector<int64_t>;
common::v1::Outcome not_scanned_outcome ABSL_GUARDED_BY(scanned_mu) = common::v1::FORCED_PASS;

std::vector<int64_t> HeadOnlySizes() {
  absl::MutexLock lock(&scanned_mu);
  return *head_only_sizes;
}
void SetNotScannedOutcome(common::v1::Outcome o) {
  absl::MutexLock lock(&scanned_mu);
  not_scanned_outcome = o;
}

// PatternVerdicts, plus "SPAMMY": PASS with a subject rewrite and an added field.
ScanHandler RecordingHandler() {
  ScanHandler base = ::sagator::testing::PatternVerdicts();
  return [base](const scanner::v1::ScanHeader& header,
                const std::string& message) -> absl::StatusOr<ScanReply> {
    {
      absl::MutexLock lock(&scanned_mu);
      if (header.head_only()) {
        head_only_sizes->push_back(header.size());
        ScanReply r;
        r.verdict.set_outcome(not_scanned_outcome);
        r.verdict.set_not_scanned(true);
        r.verdict.set_detection("not scanned: too large");
        return r;
      }
      scanned->push_back(message);
    }
    absl::StatusOr<ScanReply> r = base(header, message);
    if (r.ok() && absl::StrContains(message, "SPAMMY")) {
      auto* subject = r->verdict.add_header_edits();
      subject->set_kind(common::v1::HeaderEdit::REPLACE);
      subject->set_name("Subject");
      subject->set_value("[SPAM] rewritten subject");
      auto* flag = r->verdict.add_header_edits();
      flag->set_kind(common::v1::HeaderEdit::ADD);
      flag->set_name("X-Spam-Flag");
      flag->set_value("YES");
    }
    return r;
  };
}

absl::StatusOr<scanner::v1::PolicyResponse> Policy(const scanner::v1::PolicyRequest& req) {
  scanner::v1::PolicyResponse p;
  if (absl::StartsWith(req.recipient(), "bad@")) {
    p.set_outcome(common::v1::REJECT);
    p.set_detection("Blacklisted");
  } else if (absl::StartsWith(req.recipient(), "grey@")) {
    p.set_outcome(common::v1::TEMPFAIL);
    p.set_reply_text("4.2.0 Greylisted, try again later");
  } else {
    p.set_outcome(common::v1::PASS);
  }
  return p;
}

// A running milter.
struct Milter {
  std::unique_ptr<Subprocess> process;
  // miltertest's address of it.
  std::string sock;
  std::string log;
  // Tests that do not check shutdown end it with SIGKILL (libmilter takes up to 5 s
  // to notice SIGTERM).
  ~Milter() {
    if (process != nullptr && process->Running()) {
      process->Signal(SIGKILL);
      process->Stop(absl::Seconds(2));
    }
  }
};

struct MilterSpec {
  // Extra "key: value" pairs of the milter entry and of global.
  std::string milter_extra;
  std::string global_extra;
  // Default: the fake scanner-svc.
  std::string scanner_target;
  // Default: inet on a free loopback port.
  std::string connection;
  // miltertest's address when it differs from `connection`.
  std::string sock;
  std::string max_message_size = "1M";
  std::string scan_timeout = "5s";
  std::string progress_interval = "0.2s";
};

bool CanConnect(const std::string& sock) {
  int fd = -1;
  if (absl::StartsWith(sock, "unix:")) {
    std::string path = sock.substr(5);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a = {};
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    return ok;
  }
  // inet:PORT@HOST or inet6:PORT@HOST
  bool v6 = absl::StartsWith(sock, "inet6:");
  std::string rest = sock.substr(v6 ? 6 : 5);
  int port = std::atoi(rest.substr(0, rest.find('@')).c_str());
  std::string host = rest.substr(rest.find('@') + 1);
  fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  bool ok = false;
  if (v6) {
    sockaddr_in6 a = {};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    inet_pton(AF_INET6, host.c_str(), &a.sin6_addr);
    ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  } else {
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  close(fd);
  return ok;
}

class MiltertestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("milter-mt-"));
    fake_ = new FakeScannerService(RecordingHandler());
    fake_->SetPolicyHandler(Policy);
    fake_port_ = fake_->Start();
    ASSERT_GT(fake_port_, 0);
  }
  static void TearDownTestSuite() {
    delete fake_;
    delete dir_;
  }

  static std::unique_ptr<Milter> StartMilter(MilterSpec spec = {}) {
    static int n = 0;
    ++n;
    if (spec.scanner_target.empty()) spec.scanner_target = absl::StrCat("127.0.0.1:", fake_port_);
    if (spec.connection.empty()) {
      spec.connection = absl::StrCat("inet:", PickFreePort(), "@127.0.0.1");
    }
    if (spec.sock.empty()) spec.sock = spec.connection;
    std::string cfg = absl::StrCat(*dir_, "/milter", n, ".yaml");
    WriteFile(cfg,
              absl::StrCat("global: {max_message_size: ", spec.max_message_size,
                           ", scan_timeout: ", spec.scan_timeout, ", scanner_target: '",
                           spec.scanner_target, "'", spec.global_extra,
                           "}\n"
                           "chains:\n"
                           "  default: [{string_scan: {entries: [{name: X, patterns: [x]}]}}]\n"
                           "  rcpt: [{string_scan: {entries: [{name: Y, patterns: [y]}]}}]\n"
                           "services:\n"
                           "  - name: test-milter\n"
                           "    milter: {scanners: default, connection: '",
                           spec.connection, "', progress_interval: ", spec.progress_interval,
                           spec.milter_extra, "}\n"));
    auto m = std::make_unique<Milter>();
    m->sock = spec.sock;
    m->log = absl::StrCat(*dir_, "/milter", n, ".log");
    m->process = std::make_unique<Subprocess>(
        std::vector<std::string>{RunfilePath("services/milter/milter"), "--config", cfg});
    m->process->RedirectOutput(m->log);
    EXPECT_TRUE(m->process->Start().ok());
    absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!CanConnect(m->sock) && absl::Now() < deadline && m->process->Running()) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_TRUE(CanConnect(m->sock)) << ReadFile(m->log);
    return m;
  }

  static CommandResult Miltertest(const Milter& m, const std::string& script,
                                  const std::vector<std::string>& defines = {}) {
    std::vector<std::string> argv = {
        "/usr/bin/miltertest", "-s", RunfilePath("services/milter/testdata/" + script),       "-D",
        "sock=" + m.sock,      "-D", "lib=" + RunfilePath("services/milter/testdata/lib.lua")};
    for (const std::string& d : defines) {
      argv.push_back("-D");
      argv.push_back(d);
    }
    return RunCommand(argv, "", absl::Seconds(60));
  }

  static void ExpectOk(const CommandResult& r, const Milter& m) {
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err << "\n--- milter log\n" << ReadFile(m.log);
    EXPECT_THAT(r.out, HasSubstr("OK")) << r.out << r.err;
  }

  // SIGTERM; the milter must exit 0. Returns its log.
  static std::string StopCleanly(Milter& m) {
    m.process->Signal(SIGTERM);
    int st = m.process->Wait(absl::Seconds(20));
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st << "\n"
                                                       << ReadFile(m.log);
    return ReadFile(m.log);
  }

  static std::string* dir_;
  static FakeScannerService* fake_;
  static int fake_port_;
};

std::string* MiltertestTest::dir_ = nullptr;
FakeScannerService* MiltertestTest::fake_ = nullptr;
int MiltertestTest::fake_port_ = 0;

TEST_F(MiltertestTest, CleanMailGetsTheVerdictHeadersAndLosesAForgedStatus) {
  auto m = StartMilter();
  ExpectOk(Miltertest(*m, "clean.lua"), *m);
  scanner::v1::ScanHeader h = fake_->last_header();
  EXPECT_EQ(h.chain(), "default");
  EXPECT_EQ(h.gateway(), "milter");
  EXPECT_EQ(h.envelope().sender(), "alice@example.org");
  EXPECT_THAT(h.envelope().recipients(), ElementsAre("bob@example.org"));
  EXPECT_EQ(h.envelope().queue_id(), "4QID1");
  EXPECT_EQ(h.envelope().client().address(), "192.0.2.7");
  EXPECT_EQ(h.envelope().client().name(), "client.example.org");
  EXPECT_EQ(h.envelope().client().helo(), "helo.example.org");
  EXPECT_EQ(Scanned().back(),
            "From: alice@example.org\r\nX-Sagator-Status: Fake 9.00\r\nSubject: hello\r\n\r\n"
            "Just a clean body.\r\n");
}

TEST_F(MiltertestTest, VirusIsRejectedWithTheDetectionName) {
  auto m = StartMilter();
  ExpectOk(Miltertest(*m, "virus.lua"), *m);
  EXPECT_THAT(ReadFile(m->log),
              HasSubstr("action=reject code=550 level=1.00 detection=EICAR-Test"));
}

TEST_F(MiltertestTest, HeaderEditsBecomeMilterModifications) {
  auto m = StartMilter();
  ExpectOk(Miltertest(*m, "edits.lua"), *m);
}

TEST_F(MiltertestTest, SeveralMessagesOnOneConnectionAndAnAbortInBetween) {
  auto m = StartMilter();
  size_t before = Scanned().size();
  ExpectOk(Miltertest(*m, "several.lua"), *m);
  std::vector<std::string> all = Scanned();
  ASSERT_EQ(all.size(), before + 3);
  EXPECT_EQ(all[before], "Subject: one\r\n\r\nfirst\r\n");
  EXPECT_EQ(all[before + 2], "Subject: four\r\n\r\nfourth\r\n");
  scanner::v1::ScanHeader h = fake_->last_header();
  EXPECT_EQ(h.envelope().sender(), "a4@example.org");
  EXPECT_THAT(h.envelope().recipients(), ElementsAre("b4@example.org"));
}

TEST_F(MiltertestTest, ScannerOutageTempfails) {
  auto m = StartMilter({.scanner_target = "127.0.0.1:1"});
  ExpectOk(Miltertest(*m, "outage.lua", {"mode=tempfail"}), *m);
}

TEST_F(MiltertestTest, ScanPastItsDeadlineTempfails) {
  FakeScannerService slow(RecordingHandler());
  slow.SetDelay(absl::Seconds(3));
  int port = slow.Start();
  auto m =
      StartMilter({.scanner_target = absl::StrCat("127.0.0.1:", port), .scan_timeout = "0.5s"});
  absl::Time start = absl::Now();
  ExpectOk(Miltertest(*m, "outage.lua", {"mode=tempfail", "why=scan timeout"}), *m);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2.5));
  EXPECT_THAT(ReadFile(m->log), HasSubstr("action=tempfail"));
  EXPECT_THAT(ReadFile(m->log), HasSubstr("DEADLINE_EXCEEDED"));
}

TEST_F(MiltertestTest, FailOpenAcceptsUnscannedAndCountsIt) {
  auto m = StartMilter({.milter_extra = ", fail_open: true", .scanner_target = "127.0.0.1:1"});
  ExpectOk(Miltertest(*m, "outage.lua", {"mode=failopen"}), *m);
  ExpectOk(Miltertest(*m, "outage.lua", {"mode=failopen"}), *m);
  std::string log = StopCleanly(*m);
  EXPECT_THAT(log, HasSubstr("fail_open accepts the message unscanned (2 so far)"));
  EXPECT_THAT(log, HasSubstr(" fail_open=2 "));
}

TEST_F(MiltertestTest, ProgressRepliesKeepASlowScanAlive) {
  FakeScannerService slow(RecordingHandler());
  slow.SetDelay(absl::Milliseconds(2500));
  int port = slow.Start();
  // miltertest gives up after 1 s without a reply; the scan takes 2.5 s.
  auto m = StartMilter(
      {.scanner_target = absl::StrCat("127.0.0.1:", port), .progress_interval = "0.2s"});
  ExpectOk(Miltertest(*m, "progress.lua", {"timeout=1"}), *m);
  // Without progress replies within the timeout the same conversation fails.
  auto quiet =
      StartMilter({.scanner_target = absl::StrCat("127.0.0.1:", port), .progress_interval = "10s"});
  CommandResult r = Miltertest(*quiet, "progress.lua", {"timeout=1"});
  EXPECT_NE(r.exit_code, 0) << r.out;
}

TEST_F(MiltertestTest, MailOverTheSizeLimitIsNotScanned) {
  // Each message goes to scanner-svc head-only (to be logged), and its outcome for
  // unscanned mail applies.
  size_t before = Scanned().size();
  size_t heads_before = HeadOnlySizes().size();
  auto accept = StartMilter({.max_message_size = "1K"});
  ExpectOk(Miltertest(*accept, "size.lua", {"size=3000", "limit=1024", "mode=accept"}), *accept);
  SetNotScannedOutcome(common::v1::REJECT);
  ExpectOk(Miltertest(*accept, "size.lua", {"size=3000", "limit=1024", "mode=reject"}), *accept);
  SetNotScannedOutcome(common::v1::TEMPFAIL);
  ExpectOk(Miltertest(*accept, "size.lua", {"size=3000", "limit=1024", "mode=tempfail"}),
           *accept);
  SetNotScannedOutcome(common::v1::FORCED_PASS);
  EXPECT_EQ(Scanned().size(), before);
  std::vector<int64_t> heads = HeadOnlySizes();
  ASSERT_EQ(heads.size(), heads_before + 3);
  for (size_t i = heads_before; i < heads.size(); ++i) EXPECT_GT(heads[i], 3000);
  // scanner-svc down: the milter's own not_scanned_outcome applies.
  auto alone = StartMilter({.global_extra = ", not_scanned_outcome: REJECT",
                            .scanner_target = absl::StrCat("127.0.0.1:", PickFreePort()),
                            .max_message_size = "1K"});
  ExpectOk(Miltertest(*alone, "size.lua", {"size=3000", "limit=1024", "mode=reject"}), *alone);
}

TEST_F(MiltertestTest, RecipientPolicyRunsAtRcpt) {
  auto m = StartMilter({.milter_extra = ", recipient_policy: rcpt"});
  int calls = fake_->policy_calls();
  ExpectOk(Miltertest(*m, "rcpt.lua"), *m);
  EXPECT_EQ(fake_->policy_calls(), calls + 3);
  scanner::v1::PolicyRequest last = fake_->last_policy_request();
  EXPECT_EQ(last.chain(), "rcpt");
  EXPECT_EQ(last.protocol_state(), "RCPT");
  EXPECT_EQ(last.recipient(), "good@example.org");
  EXPECT_EQ(last.envelope().sender(), "alice@example.org");
  EXPECT_EQ(last.envelope().client().address(), "192.0.2.7");
  // Only the accepted recipient reaches the scan.
  EXPECT_THAT(fake_->last_header().envelope().recipients(), ElementsAre("good@example.org"));
  EXPECT_THAT(ReadFile(m->log), HasSubstr("recipient <bad@example.org> from <alice@example.org> "
                                          "rejected: 550 5.7.1 Recipient rejected: Blacklisted"));
  EXPECT_THAT(ReadFile(m->log), HasSubstr("recipient <grey@example.org> from <alice@example.org> "
                                          "deferred: 451 4.2.0 Greylisted, try again later"));
}

TEST_F(MiltertestTest, RecipientPolicyOutageTempfailsUnlessFailOpen) {
  auto down =
      StartMilter({.milter_extra = ", recipient_policy: rcpt", .scanner_target = "127.0.0.1:1"});
  ExpectOk(Miltertest(*down, "rcpt.lua", {"mode=down"}), *down);
  auto open = StartMilter({.milter_extra = ", recipient_policy: rcpt, fail_open: true",
                           .scanner_target = "127.0.0.1:1"});
  ExpectOk(Miltertest(*open, "rcpt.lua", {"mode=failopen"}), *open);
}

TEST_F(MiltertestTest, GarbageOnTheSocketNeitherCrashesNorHangsTheMilter) {
  auto m = StartMilter();
  int port = std::atoi(m->sock.substr(5).c_str());
  auto connect_raw = [port] {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  };
  // Plain text, a packet of an unknown command, a length far over any limit, and a
  // zero length.
  for (const std::string& junk :
       {std::string("GET / HTTP/1.0\r\n\r\n"), std::string("\0\0\0\x05Zabcd", 9),
        std::string("\x7f\xff\xff\xff", 4) + std::string(1000, 'x'), std::string(4, '\0'),
        std::string("\0\0\0\x0dO\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff", 17)}) {
    int fd = connect_raw();
    EXPECT_EQ(write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    absl::SleepFor(absl::Milliseconds(50));
    close(fd);
  }
  // A peer that announces a packet and then says nothing holds its own connection
  // only.
  int stuck = connect_raw();
  std::string partial("\0\0\x10\0C", 5);
  EXPECT_EQ(write(stuck, partial.data(), partial.size()), 5);
  ExpectOk(Miltertest(*m, "plain.lua"), *m);
  EXPECT_TRUE(m->process->Running());
  close(stuck);
  ExpectOk(Miltertest(*m, "plain.lua"), *m);
  std::string log = StopCleanly(*m);
  EXPECT_THAT(log, HasSubstr("open_sessions=0"));
}

TEST_F(MiltertestTest, UnixSocketIsCreatedWithTheConfiguredUmask) {
  // Socket paths must fit in 108 bytes: TEST_TMPDIR may be longer.
  char tmpl[] = "/tmp/sagator-milter-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = absl::StrCat(tmpl, "/group.sock");
  auto group = StartMilter({.milter_extra = ", umask: 7", .connection = "unix:" + path});
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0770u);
  ExpectOk(Miltertest(*group, "plain.lua"), *group);

  std::string private_path = absl::StrCat(tmpl, "/private.sock");
  auto owner = StartMilter({.connection = "unix:" + private_path});  // default umask 077
  ASSERT_EQ(stat(private_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ExpectOk(Miltertest(*owner, "plain.lua"), *owner);
  // A stale socket file is replaced at start.
  group.reset();
  auto again = StartMilter({.milter_extra = ", umask: 7", .connection = "unix:" + path});
  ExpectOk(Miltertest(*again, "plain.lua"), *again);
  again.reset();
  owner.reset();
  std::filesystem::remove_all(tmpl);
}

// miltertest cannot connect over IPv6, so this test speaks the protocol itself.
class RawMilterClient {
 public:
  explicit RawMilterClient(int fd) : fd_(fd) {}
  ~RawMilterClient() { close(fd_); }

  void Send(char cmd, const std::string& data) {
    uint32_t len = htonl(static_cast<uint32_t>(data.size() + 1));
    std::string packet(reinterpret_cast<const char*>(&len), 4);
    packet.push_back(cmd);
    packet += data;
    ASSERT_EQ(write(fd_, packet.data(), packet.size()), static_cast<ssize_t>(packet.size()));
  }
  // The next packet: its command and data ('\0' command on EOF or error).
  std::pair<char, std::string> Read() {
    std::string head = ReadExactly(5);
    if (head.size() < 5) return {'\0', ""};
    uint32_t len;
    memcpy(&len, head.data(), 4);
    return {head[4], ReadExactly(ntohl(len) - 1)};
  }

 private:
  std::string ReadExactly(size_t n) {
    std::string out(n, '\0');
    size_t got = 0;
    while (got < n) {
      ssize_t r = read(fd_, out.data() + got, n - got);
      if (r <= 0) break;
      got += r;
    }
    out.resize(got);
    return out;
  }
  int fd_;
};

std::string U32(uint32_t v) {
  v = htonl(v);
  return std::string(reinterpret_cast<const char*>(&v), 4);
}

TEST_F(MiltertestTest, ListensOnIpv6) {
  int probe = socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 a = {};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool have_v6 = probe >= 0 && bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (probe >= 0) close(probe);
  if (!have_v6) GTEST_SKIP() << "no IPv6 loopback here";
  int port = PickFreePort();
  auto m = StartMilter({.connection = absl::StrCat("inet6:", port, "@::1")});
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  a.sin6_port = htons(port);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  RawMilterClient c(fd);
  // Version 6, every action, and the protocol steps without the no-reply bits.
  c.Send('O', U32(6) + U32(0x1ff) + U32(0x37f));
  EXPECT_EQ(c.Read().first, 'O');
  std::string v6_port("\x30\x39", 2);
  c.Send('C', std::string("client6.example.org\0"
                          "6",
                          21) +
                  v6_port + std::string("2001:db8::7\0", 12));
  EXPECT_EQ(c.Read().first, 'c');
  c.Send('H', std::string("helo6.example.org\0", 18));
  EXPECT_EQ(c.Read().first, 'c');
  c.Send('M', std::string("<six@example.org>\0", 18));
  EXPECT_EQ(c.Read().first, 'c');
  c.Send('R', std::string("<bob@example.org>\0", 18));
  EXPECT_EQ(c.Read().first, 'c');
  c.Send('L', std::string("Subject\0over ipv6\0", 18));
  EXPECT_EQ(c.Read().first, 'c');
  c.Send('N', "");
  EXPECT_EQ(c.Read().first, 'c');
  c.Send('B', "body\r\n");
  EXPECT_EQ(c.Read().first, 'c');
  c.Send('E', "");
  std::vector<std::string> inserted;
  std::pair<char, std::string> p = c.Read();
  for (; p.first == 'i'; p = c.Read())
    inserted.push_back(p.second.substr(4, p.second.find('\0', 4) - 4));
  EXPECT_EQ(p.first, 'a');
  EXPECT_THAT(inserted, ElementsAre("X-Sagator-Scanner", "X-Sagator-ID"));
  c.Send('Q', "");
  scanner::v1::ScanHeader h = fake_->last_header();
  EXPECT_EQ(h.envelope().sender(), "six@example.org");
  EXPECT_EQ(h.envelope().client().address(), "2001:db8::7");
  EXPECT_EQ(h.envelope().client().helo(), "helo6.example.org");
  EXPECT_EQ(Scanned().back(), "Subject: over ipv6\r\n\r\nbody\r\n");
}

// Several small packets end each message (header insertions, then accept): without
// TCP_NODELAY every message after the first waits ~40 ms for the peer's delayed ACK.
TEST_F(MiltertestTest, EndOfMessageRepliesDoNotWaitForDelayedAcks) {
  auto m = StartMilter();
  int port = std::atoi(m->sock.substr(5).c_str());
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  RawMilterClient c(fd);
  c.Send('O', U32(6) + U32(0x1ff) + U32(0x37f));
  ASSERT_EQ(c.Read().first, 'O');
  c.Send('C', std::string("client.example.org\0"
                          "4\0\x19"
                          "127.0.0.1\0",
                          32));
  ASSERT_EQ(c.Read().first, 'c');
  // The stall shows in every message but the first; a busy machine (other tests running) slows
  // some messages, not all: the fastest message tells.
  constexpr int kMessages = 20;
  absl::Duration fastest = absl::InfiniteDuration();
  for (int i = 0; i < kMessages; ++i) {
    absl::Time start = absl::Now();
    for (auto [cmd, data] :
         std::vector<std::pair<char, std::string>>{{'M', std::string("<a@example.org>\0", 16)},
                                                   {'R', std::string("<b@example.org>\0", 16)},
                                                   {'L', std::string("Subject\0fast\0", 13)},
                                                   {'N', ""},
                                                   {'B', "body\r\n"}}) {
      c.Send(cmd, data);
      ASSERT_EQ(c.Read().first, 'c') << cmd;
    }
    c.Send('E', "");
    std::pair<char, std::string> p = c.Read();
    int inserted = 0;
    for (; p.first == 'i'; p = c.Read()) ++inserted;
    ASSERT_EQ(p.first, 'a');
    ASSERT_EQ(inserted, 2);
    // The first message cannot stall: nothing is waiting for an ACK yet.
    if (i > 0) fastest = std::min(fastest, absl::Now() - start);
  }
  c.Send('Q', "");
  EXPECT_LT(fastest, absl::Milliseconds(20)) << fastest;
  std::printf("%d messages on one connection, the fastest in %s\n", kMessages,
              absl::FormatDuration(fastest).c_str());
}

TEST_F(MiltertestTest, BadConnectionStringIsAConfigError) {
  std::string cfg = absl::StrCat(*dir_, "/bad.yaml");
  WriteFile(cfg,
            "global: {scanner_target: '127.0.0.1:1'}\n"
            "chains:\n  default: [{string_scan: {entries: [{name: X, patterns: [x]}]}}]\n"
            "services:\n  - milter: {scanners: default, connection: 'tcp:3333'}\n");
  CommandResult r =
      RunCommand({RunfilePath("services/milter/milter"), "--config", cfg}, "", absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("expected inet:PORT@HOST, inet6:PORT@HOST or unix:/path"));
}

TEST_F(MiltertestTest, SigtermStopsCleanlyAndEveryConnectionIsFreed) {
  auto m = StartMilter();
  ExpectOk(Miltertest(*m, "several.lua"), *m);
  std::string log = StopCleanly(*m);
  EXPECT_THAT(log, HasSubstr("open_sessions=0"));
  EXPECT_THAT(log, HasSubstr("messages=3"));
  EXPECT_THAT(log, HasSubstr("aborted=1"));
  EXPECT_THAT(log, HasSubstr("stopped"));
}

TEST_F(MiltertestTest, SlowScansDoNotWaitForEachOther) {
  FakeScannerService slow(RecordingHandler());
  slow.SetDelay(absl::Seconds(1));
  int port = slow.Start();
  auto m = StartMilter({.scanner_target = absl::StrCat("127.0.0.1:", port)});
  constexpr int kClients = 8;
  std::vector<CommandResult> results(kClients);
  absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] { results[i] = Miltertest(*m, "plain.lua"); });
  }
  for (std::thread& t : threads) t.join();
  absl::Duration took = absl::Now() - start;
  for (const CommandResult& r : results) ExpectOk(r, *m);
  EXPECT_LT(took, absl::Seconds(4)) << "8 scans of 1 s each ran one after another";
}

}  // namespace
}  // namespace sagator::milter
