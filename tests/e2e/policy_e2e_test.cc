// The SMTP-stage policy (greylisting and the SQL black/white lists) end to end, with
// nothing but real processes:
//
//   SmtpClient/swaks ─▶ Postfix smtpd ─check_policy_service─▶ smtpd_policy ─gRPC─▶
//   scanner-svc [sql_list, greylist] ─▶ SQLite file / PostgreSQL
//                 └─▶ smtp-sink (accepted mail)
//
// on both database back ends: a new triplet is deferred (450 4.7.1 Greylisted, with
// the info URL), an early retry is deferred again, a retry after `min` is accepted
// and arrives with X-Greylist; a sender blacklisted with the sglist tool is
// rejected, a whitelisted recipient passes at the first attempt. Then two
// scanner-svc replicas on one database: a triplet greylisted through one replica
// passes through the other, many concurrent calls for the same new triplets
// against both let each triplet pass exactly once, without errors, and a batch
// (CheckPolicies) gets one answer per request.
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/scanner_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sagator/scanner/v1/scanner.pb.h"
#include "tests/harness/postfix.h"
#include "tests/harness/postgres.h"
#include "tests/harness/smtp_client.h"
#include "tests/harness/subprocess.h"

namespace sagator {
namespace {

using harness::PostfixInstance;
using harness::PostgresInstance;
using harness::SinkMessage;
using harness::SmtpClient;
using harness::SmtpSink;
using sagator::testing::CommandResult;
using sagator::testing::RunCommand;
using sagator::testing::RunfilePath;
using sagator::testing::Subprocess;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

constexpr char kInfoUrl[] = "https://greylist.example/why";
// greylist min (whole seconds: the store keeps Unix seconds, so a retry less than
// min - 1 s after the first attempt is surely deferred, one min after it surely
// passes).
constexpr absl::Duration kMin = absl::Seconds(2);
// How long after a deferral a retry surely passes (with a margin).
absl::Duration RetryAfter(absl::Duration min) { return min + absl::Milliseconds(500); }
constexpr absl::Duration kStartup = absl::Seconds(30);
// A running scanner-svc sees a list change made with sglist within a second (the
// lists are held in memory; PolicyStore::kListRecheck).
constexpr absl::Duration kListChangeShows = absl::Milliseconds(1200);

enum class Backend { kSqlite, kPostgresql };

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Postgresql";
}

// One test's processes and files: the database, scanner-svc replicas, smtpd_policy.
class PolicyStack {
 public:
  explicit PolicyStack(Backend backend) : backend_(backend) {
    dir_ = sagator::testing::MakeTempDir("policy_e2e.");
  }

  ~PolicyStack() { StopAll(); }

  // Stops every process this stack started (smtpd_policy first).
  void StopAll() {
    policy_.reset();
    scanners_.clear();
  }

  // Creates the database (a PostgreSQL cluster or nothing for SQLite, whose file
  // scanner-svc creates) and writes scanner.yaml.
  absl::Status Init(absl::Duration min = kMin, int auto_whitelist = 5) {
    std::string db;
    if (backend_ == Backend::kSqlite) {
      db = absl::StrCat("{sqlite: {path: '", dir_, "/policy.db', busy_timeout: 10s}}");
    } else {
      absl::StatusOr<std::unique_ptr<PostgresInstance>> pg = PostgresInstance::Start();
      if (!pg.ok()) return pg.status();
      pg_ = std::move(*pg);
      db = absl::StrCat("{postgresql: {conninfo: '", pg_->conninfo(), "', pool_size: 8}}");
    }
    body_ = absl::StrCat(
        "databases:\n"
        "  default: ",
        db,
        "\n"
        "chains:\n"
        "  policy:\n"
        "    - sql_list\n"
        "    - greylist: {min: ",
        absl::ToInt64Seconds(min), "s, expire: 1h, auto_whitelist: ", auto_whitelist,
        ", info_url: '", kInfoUrl,
        "'}\n"
        "services:\n"
        "  - name: scanner\n"
        "    scanner_svc: {port: 0, threads: 8}\n"
        "  - name: policy\n"
        "    smtpd_policy: {scanners: policy, port: 0, policy_timeout: 10s, prefork: 8}\n");
    config_ = dir_ + "/scanner.yaml";
    sagator::testing::WriteFile(config_, absl::StrCat("global: {hostname: e2e.test}\n", body_));
    return absl::OkStatus();
  }

  // Starts `n` scanner-svc replicas at once (they migrate the schema concurrently)
  // and waits until each listens; their ports are in scanner_ports().
  absl::Status StartScanners(int n) {
    std::vector<std::string> port_files;
    for (int i = 0; i < n; ++i) {
      std::string pf = absl::StrCat(dir_, "/scanner", i, ".port");
      port_files.push_back(pf);
      auto p = std::make_unique<Subprocess>(
          std::vector<std::string>{RunfilePath("scanner-svc/scanner-svc"), "--config", config_,
                                   "--service", "scanner", "--port_file", pf});
      p->RedirectOutput(absl::StrCat(dir_, "/scanner", i, ".log"));
      if (absl::Status s = p->Start(); !s.ok()) return s;
      scanners_.push_back(std::move(p));
    }
    for (const std::string& pf : port_files) {
      absl::StatusOr<int> port = sagator::testing::WaitForPortFile(pf, kStartup);
      if (!port.ok()) return port.status();
      scanner_ports_.push_back(*port);
    }
    return absl::OkStatus();
  }

  // Starts smtpd_policy calling the first replica; returns its port.
  absl::StatusOr<int> StartPolicy() {
    std::string cfg = dir_ + "/policy.yaml";
    sagator::testing::WriteFile(
        cfg, absl::StrCat("global: {hostname: e2e.test, scanner_target: '127.0.0.1:",
                          scanner_ports_.at(0), "'}\n", body_));
    std::string pf = dir_ + "/policy.port";
    policy_ = std::make_unique<Subprocess>(
        std::vector<std::string>{RunfilePath("services/smtpd_policy/smtpd_policy"), "--config", cfg,
                                 "--service", "policy", "--port_file", pf});
    policy_->RedirectOutput(dir_ + "/policy.log");
    if (absl::Status s = policy_->Start(); !s.ok()) return s;
    return sagator::testing::WaitForPortFile(pf, kStartup);
  }

  // Runs the sglist tool on this stack's configuration.
  CommandResult Sglist(std::vector<std::string> args) const {
    std::vector<std::string> argv = {RunfilePath("tools/sglist/sglist"), "--config", config_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, "", absl::Seconds(30));
  }

  // Every log, for a failure.
  std::string Logs() const {
    std::string out;
    for (size_t i = 0; i < scanners_.size(); ++i) {
      absl::StrAppend(&out, "--- scanner", i, ".log:\n",
                      sagator::testing::ReadFile(absl::StrCat(dir_, "/scanner", i, ".log")));
    }
    if (policy_ != nullptr) {
      absl::StrAppend(&out, "--- policy.log:\n", sagator::testing::ReadFile(dir_ + "/policy.log"));
    }
    if (pg_ != nullptr) absl::StrAppend(&out, "--- pg.log (tail):\n", pg_->LogTail());
    return out;
  }

  const std::vector<int>& scanner_ports() const { return scanner_ports_; }
  const std::string& dir() const { return dir_; }

 private:
  Backend backend_;
  std::string dir_;
  std::string config_;
  std::string body_;
  std::unique_ptr<PostgresInstance> pg_;
  std::vector<std::unique_ptr<Subprocess>> scanners_;
  std::vector<int> scanner_ports_;
  std::unique_ptr<Subprocess> policy_;
};

// ---------------------------------------------------------------------------------
// Through Postfix.

class PolicyPostfixE2eTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    stack_ = std::make_unique<PolicyStack>(GetParam());
    ASSERT_TRUE(stack_->Init().ok());
    ASSERT_TRUE(stack_->StartScanners(1).ok()) << stack_->Logs();
    absl::StatusOr<int> policy_port = stack_->StartPolicy();
    ASSERT_TRUE(policy_port.ok()) << policy_port.status() << "\n" << stack_->Logs();

    sink_ = std::make_unique<SmtpSink>();
    ASSERT_TRUE(sink_->Start().ok());
    PostfixInstance::Options po;
    po.relay_port = sink_->port();
    // The client connects from 127.0.0.1, inside mynetworks: no permit_mynetworks
    // before the policy check, or it would never be asked.
    po.main_cf = {
        "relay_domains = example.org",
        absl::StrCat("smtpd_recipient_restrictions = reject_unauth_destination, "
                     "check_policy_service inet:127.0.0.1:",
                     *policy_port),
        "smtpd_policy_service_retry_delay = 1s",
    };
    absl::StatusOr<std::unique_ptr<PostfixInstance>> pf = PostfixInstance::Start(po);
    ASSERT_TRUE(pf.ok()) << pf.status();
    postfix_ = std::move(*pf);
  }

  void TearDown() override {
    if (HasFailure()) {
      if (postfix_ != nullptr) std::cerr << "maillog:\n" << postfix_->Maillog();
      if (stack_ != nullptr) std::cerr << stack_->Logs();
    }
    postfix_.reset();
    if (sink_) sink_->Stop();
    stack_.reset();
  }

  // The reply to RCPT TO:<rcpt> in a fresh transaction from `sender` on `c`.
  static std::string Rcpt(SmtpClient& c, const std::string& sender, const std::string& rcpt) {
    c.Command("RSET");
    std::string mail = c.Command("MAIL FROM:<" + sender + ">");
    if (!absl::StartsWith(mail, "250")) return "MAIL: " + mail;
    return c.Command("RCPT TO:<" + rcpt + ">");
  }

  static std::string Message(const std::string& id) {
    return absl::StrCat("From: a@example.net\r\nTo: b@example.org\r\nSubject: ", id,
                        "\r\nMessage-ID: <", id, "@e2e.test>\r\n\r\nbody ", id, "\r\n");
  }

  const SinkMessage* Find(const std::vector<SinkMessage>& got, const std::string& id) {
    for (const SinkMessage& m : got) {
      if (m.Header("Message-ID") == absl::StrCat("<", id, "@e2e.test>")) return &m;
    }
    return nullptr;
  }

  std::unique_ptr<PolicyStack> stack_;
  std::unique_ptr<SmtpSink> sink_;
  std::unique_ptr<PostfixInstance> postfix_;
};

TEST_P(PolicyPostfixE2eTest, GreylistingAndListsDecideAtRcpt) {
  // The lists are changed with the tool while scanner-svc runs: no restart needed.
  CommandResult add = stack_->Sglist({"add", "BS", "spammer.example"});
  ASSERT_EQ(add.exit_code, 0) << add.out << add.err;
  EXPECT_THAT(add.out, HasSubstr("added BS spammer.example"));
  add = stack_->Sglist({"add", "WR", "vip@example.org", "--comment", "e2e"});
  ASSERT_EQ(add.exit_code, 0) << add.out << add.err;

  SmtpClient c(postfix_->smtp_port());
  ASSERT_TRUE(c.ok());
  ASSERT_THAT(c.Greet(), StartsWith("250"));

  // a. The first attempt of a new triplet is deferred, with the explanation.
  std::string first = Rcpt(c, "alice@example.net", "bob@example.org");
  absl::Time deferred_at = absl::Now();
  EXPECT_THAT(first, StartsWith("450 4.7.1 "));
  EXPECT_THAT(first, HasSubstr("Greylisted, try again in"));
  EXPECT_THAT(first, HasSubstr(kInfoUrl));

  // b. A retry before `min` is still deferred.
  std::string early = Rcpt(c, "alice@example.net", "bob@example.org");
  EXPECT_THAT(early, StartsWith("450 4.7.1 "));
  EXPECT_THAT(early, HasSubstr("Greylisted"));

  // c. A blacklisted sender (its domain and subdomains) is rejected outright,
  // before greylisting.
  std::string black = Rcpt(c, "mallory@spammer.example", "bob@example.org");
  EXPECT_THAT(black, MatchesRegex("^55[04] 5\\.7\\.1 (.|\r|\n)*"));
  EXPECT_THAT(black, HasSubstr("blacklisted"));
  EXPECT_THAT(black, HasSubstr("spammer.example"));
  EXPECT_THAT(Rcpt(c, "eve@mx.Spammer.example", "bob@example.org"),
              MatchesRegex("^55[04] 5\\.7\\.1 (.|\r|\n)*blacklisted(.|\r|\n)*"));

  // d. A whitelisted recipient passes at the first attempt (swaks, a plain client),
  // without greylisting and without the delay header.
  std::string wr_file = stack_->dir() + "/wr.eml";
  sagator::testing::WriteFile(wr_file, Message("whitelisted"));
  CommandResult sw = harness::Swaks(postfix_->smtp_port(), "carol@example.net", "vip@example.org",
                                    {"--data", "@" + wr_file});
  EXPECT_EQ(sw.exit_code, 0) << sw.out << sw.err;

  // b. After `min` the retry passes and the mail arrives with X-Greylist.
  absl::SleepFor(deferred_at + RetryAfter(kMin) - absl::Now());
  c.Command("RSET");
  EXPECT_THAT(c.Deliver("alice@example.net", {"bob@example.org"}, Message("retry")),
              StartsWith("250 "));
  // The triplet is known now: later mail passes at once, without the header.
  c.Command("RSET");
  EXPECT_THAT(c.Deliver("Alice@example.net", {"bob@example.org"}, Message("known")),
              StartsWith("250 "));
  c.Command("QUIT");

  std::vector<SinkMessage> got = sink_->WaitForMessages(3, absl::Seconds(30));
  ASSERT_EQ(got.size(), 3u);
  const SinkMessage* retry = Find(got, "retry");
  ASSERT_NE(retry, nullptr);
  EXPECT_THAT(retry->recipients, ::testing::ElementsAre("bob@example.org"));
  EXPECT_THAT(retry->Header("X-Greylist"), MatchesRegex("delayed [2-4] seconds by SAGATOR"));
  const SinkMessage* known = Find(got, "known");
  ASSERT_NE(known, nullptr);
  EXPECT_EQ(known->Header("X-Greylist"), "");
  const SinkMessage* white = Find(got, "whitelisted");
  ASSERT_NE(white, nullptr);
  EXPECT_THAT(white->recipients, ::testing::ElementsAre("vip@example.org"));
  EXPECT_EQ(white->Header("X-Greylist"), "");
  EXPECT_EQ(sink_->Messages().size(), 3u);  // nothing else (no bounce)

  // What the database holds: the greylisted triplet passed, none for the
  // whitelisted recipient or the blacklisted sender.
  CommandResult gl = stack_->Sglist({"greylist"});
  ASSERT_EQ(gl.exit_code, 0) << gl.err;
  EXPECT_THAT(gl.out, MatchesRegex("(.|\n)*127\\.0\\.0\\.0/24 +alice@example\\.net +"
                                   "bob@example\\.org .*passed after [2-4] s\n(.|\n)*"));
  EXPECT_THAT(gl.out, ::testing::Not(HasSubstr("vip@example.org")));
  EXPECT_THAT(gl.out, ::testing::Not(HasSubstr("spammer.example")));

  // Removing the blacklist entry lets the sender through to greylisting.
  CommandResult rm = stack_->Sglist({"remove", "BS", "spammer.example"});
  ASSERT_EQ(rm.exit_code, 0) << rm.out << rm.err;
  absl::SleepFor(kListChangeShows);
  SmtpClient c2(postfix_->smtp_port());
  ASSERT_THAT(c2.Greet(), StartsWith("250"));
  EXPECT_THAT(Rcpt(c2, "mallory@spammer.example", "bob@example.org"), StartsWith("450 4.7.1 "));
  c2.Command("QUIT");
}

INSTANTIATE_TEST_SUITE_P(Backends, PolicyPostfixE2eTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgresql), BackendName);

// ---------------------------------------------------------------------------------
// Two scanner-svc replicas on one database, called over gRPC as the gateways do.

class PolicyReplicasE2eTest : public ::testing::TestWithParam<Backend> {
 protected:
  // A round of concurrent first attempts must end within min - 1 s to be surely
  // deferred: 3 s leaves it 2 s on a loaded machine.
  static constexpr absl::Duration kReplicaMin = absl::Seconds(3);

  void SetUp() override {
    stack_ = std::make_unique<PolicyStack>(GetParam());
    // Auto-whitelisting off: every triplet below must go through greylisting.
    ASSERT_TRUE(stack_->Init(kReplicaMin, /*auto_whitelist=*/0).ok());
    // Both start at once, so both migrate the fresh database at the same time.
    ASSERT_TRUE(stack_->StartScanners(2).ok()) << stack_->Logs();
    for (int port : stack_->scanner_ports()) {
      clients_.push_back(
          NewGrpcScannerClient(absl::StrCat("127.0.0.1:", port), absl::Seconds(20), 1 << 20));
    }
  }

  void TearDown() override {
    if (HasFailure() && stack_ != nullptr) std::cerr << stack_->Logs();
    clients_.clear();
    stack_.reset();
  }

  static scanner::v1::PolicyRequest Request(const std::string& client, const std::string& sender,
                                            const std::string& rcpt) {
    scanner::v1::PolicyRequest r;
    r.set_chain("policy");
    r.set_gateway("policy_e2e_test");
    r.set_protocol_state("RCPT");
    r.set_recipient(rcpt);
    r.mutable_envelope()->set_sender(sender);
    r.mutable_envelope()->add_recipients(rcpt);
    r.mutable_envelope()->mutable_client()->set_address(client);
    r.mutable_envelope()->mutable_client()->set_protocol("ESMTP");
    (*r.mutable_attributes())["request"] = "smtpd_access_policy";
    return r;
  }

  static bool HasGreylistHeader(const scanner::v1::PolicyResponse& p) {
    for (const auto& h : p.header_edits()) {
      if (h.name() == "X-Greylist") return true;
    }
    return false;
  }

  std::unique_ptr<PolicyStack> stack_;
  std::vector<std::unique_ptr<ScannerClient>> clients_;
};

TEST_P(PolicyReplicasE2eTest, StateIsSharedBetweenReplicas) {
  ScannerClient& a = *clients_.at(0);
  ScannerClient& b = *clients_.at(1);
  scanner::v1::PolicyRequest req = Request("192.0.2.10", "alice@example.net", "bob@example.org");

  absl::StatusOr<scanner::v1::PolicyResponse> r = a.CheckPolicy(req);
  absl::Time deferred_at = absl::Now();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), common::v1::TEMPFAIL);
  EXPECT_THAT(r->reply_text(), StartsWith("4.7.1 Greylisted"));
  EXPECT_THAT(r->reply_text(), HasSubstr(kInfoUrl));

  // The retry through replica B, after `min`, passes: B found A's record (alone,
  // B would have deferred a triplet it had never seen).
  absl::SleepFor(deferred_at + RetryAfter(kReplicaMin) - absl::Now());
  r = b.CheckPolicy(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), common::v1::PASS);
  ASSERT_EQ(r->header_edits_size(), 1);
  EXPECT_EQ(r->header_edits(0).kind(), common::v1::HeaderEdit::ADD);
  EXPECT_EQ(r->header_edits(0).name(), "X-Greylist");
  EXPECT_THAT(r->header_edits(0).value(), MatchesRegex("delayed [3-5] seconds by SAGATOR"));
  // Back on A the triplet is known: no second "passed now" with its header.
  r = a.CheckPolicy(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), common::v1::PASS);
  EXPECT_FALSE(HasGreylistHeader(*r));

  // A list entry written with the tool is seen by both replicas within a second.
  CommandResult add = stack_->Sglist({"add", "BA", "198.51.100.0/24"});
  ASSERT_EQ(add.exit_code, 0) << add.out << add.err;
  absl::SleepFor(kListChangeShows);
  for (ScannerClient* c : {&a, &b}) {
    r = c->CheckPolicy(Request("198.51.100.7", "x@example.net", "bob@example.org"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcome(), common::v1::REJECT);
    EXPECT_THAT(r->reply_text(), HasSubstr("blacklisted"));
  }
}

// Many concurrent calls for the same new triplets, spread over both replicas: the
// first round defers them all, the round after `min` lets each triplet pass exactly
// once (one answer with the delay header), and no call fails.
TEST_P(PolicyReplicasE2eTest, ConcurrentRetriesPassEachTripletExactlyOnce) {
  constexpr int kTriplets = 24;
  constexpr int kCallsPerTriplet = 8;
  constexpr int kThreads = 16;

  struct Round {
    std::mutex mu;
    std::vector<std::string> errors;
    std::map<int, std::map<common::v1::Outcome, int>> outcomes;  // by triplet
    std::map<int, int> headers;                                  // by triplet
  };
  auto run_round = [&](Round& round) {
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int call = next++; call < kTriplets * kCallsPerTriplet; call = next++) {
          // Consecutive calls hit the same triplet on alternating replicas.
          int triplet = call / kCallsPerTriplet;
          ScannerClient& client = *clients_[call % 2];
          // One client network per triplet (and auto-whitelisting is off anyway).
          scanner::v1::PolicyRequest req =
              Request(absl::StrCat("10.1.", triplet, ".", 1 + call % 200),
                      absl::StrCat("sender", triplet, "@example.net"),
                      absl::StrCat("rcpt", triplet, "@example.org"));
          absl::StatusOr<scanner::v1::PolicyResponse> r = client.CheckPolicy(req);
          std::lock_guard<std::mutex> lock(round.mu);
          if (!r.ok()) {
            round.errors.push_back(absl::StrCat("triplet ", triplet, ": ", r.status().ToString()));
            continue;
          }
          round.outcomes[triplet][r->outcome()]++;
          if (HasGreylistHeader(*r)) round.headers[triplet]++;
        }
      });
    }
    for (std::thread& t : threads) t.join();
  };

  Round first;
  absl::Time started = absl::Now();
  run_round(first);
  absl::Duration took = absl::Now() - started;
  EXPECT_THAT(first.errors, ::testing::IsEmpty());
  // Only meaningful when the round ended before any triplet could pass.
  ASSERT_LT(took, kReplicaMin - absl::Seconds(1))
      << "the first round was too slow to check deferral";
  for (int t = 0; t < kTriplets; ++t) {
    EXPECT_EQ(first.outcomes[t][common::v1::TEMPFAIL], kCallsPerTriplet) << "triplet " << t;
    EXPECT_EQ(first.headers[t], 0) << "triplet " << t;
  }

  absl::SleepFor(started + took + RetryAfter(kReplicaMin) - absl::Now());
  Round second;
  run_round(second);
  EXPECT_THAT(second.errors, ::testing::IsEmpty());
  for (int t = 0; t < kTriplets; ++t) {
    EXPECT_EQ(second.outcomes[t][common::v1::PASS], kCallsPerTriplet) << "triplet " << t;
    EXPECT_EQ(second.headers[t], 1) << "triplet " << t << " must pass exactly once";
  }

  CommandResult gl = stack_->Sglist({"greylist", "--limit", "1000"});
  ASSERT_EQ(gl.exit_code, 0) << gl.err;
  int passed = 0;
  for (size_t pos = gl.out.find("passed after"); pos != std::string::npos;
       pos = gl.out.find("passed after", pos + 1)) {
    ++passed;
  }
  EXPECT_EQ(passed, kTriplets) << gl.out;
}

// One CheckPolicies call (what smtpd_policy sends under load): each request gets
// its own answer, in order; a request that cannot be decided fails alone; a
// triplet asked twice in the batch is recorded once (both deferred).
TEST_P(PolicyReplicasE2eTest, ABatchGetsAnAnswerPerRequest) {
  CommandResult add = stack_->Sglist({"add", "BS", "spammer@example.com"});
  ASSERT_EQ(add.exit_code, 0) << add.out << add.err;
  scanner::v1::PolicyBatchRequest batch;
  *batch.add_requests() = Request("192.0.2.20", "carol@example.net", "dave@example.org");
  *batch.add_requests() = Request("192.0.2.21", "spammer@example.com", "dave@example.org");
  scanner::v1::PolicyRequest unknown = Request("192.0.2.22", "erin@example.net", "dave@example.org");
  unknown.set_chain("no-such-chain");
  *batch.add_requests() = unknown;
  *batch.add_requests() = Request("192.0.2.20", "carol@example.net", "dave@example.org");
  std::vector<absl::StatusOr<scanner::v1::PolicyResponse>> r =
      clients_.at(0)->CheckPolicies(batch);
  ASSERT_EQ(r.size(), 4u);
  ASSERT_TRUE(r[0].ok()) << r[0].status();
  EXPECT_EQ(r[0]->outcome(), common::v1::TEMPFAIL);
  EXPECT_THAT(r[0]->reply_text(), StartsWith("4.7.1 Greylisted"));
  ASSERT_TRUE(r[1].ok()) << r[1].status();
  EXPECT_EQ(r[1]->outcome(), common::v1::REJECT);
  EXPECT_THAT(r[1]->reply_text(), HasSubstr("spammer@example.com is blacklisted"));
  EXPECT_EQ(r[2].status().code(), absl::StatusCode::kNotFound) << r[2].status();
  EXPECT_THAT(std::string(r[2].status().message()), HasSubstr("no-such-chain"));
  ASSERT_TRUE(r[3].ok()) << r[3].status();
  EXPECT_EQ(r[3]->outcome(), common::v1::TEMPFAIL);
  CommandResult gl = stack_->Sglist({"greylist", "carol@example.net"});
  ASSERT_EQ(gl.exit_code, 0) << gl.err;
  std::vector<std::string> records = absl::StrSplit(gl.out, "carol@example.net");
  EXPECT_EQ(records.size(), 2u) << gl.out;
}

INSTANTIATE_TEST_SUITE_P(Backends, PolicyReplicasE2eTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgresql), BackendName);

}  // namespace
}  // namespace sagator
