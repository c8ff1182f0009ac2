#include "scanner-svc/chain_set.h"

#include "common/would_wait.h"

#include <cstdlib>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "scanner-svc/engine/combinators.h"
#include "tests/harness/test_mail.h"

namespace sagator {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

using ::sagator::testing::kEicar;

std::string SignatureDir() {
  return absl::StrCat(std::getenv("TEST_SRCDIR"), "/sagator/data/clamav");
}

std::string Mail(absl::string_view body) {
  return absl::StrCat("From: a@example.org\nTo: b@example.org\nSubject: test\n\n", body, "\n");
}

std::unique_ptr<ChainSet> Chains(const std::string& yaml) {
  auto cfg = LoadConfigString(
      absl::StrCat("global: {hostname: testhost, max_message_size: 64K}\n", yaml), "t.yaml", "/");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  if (!cfg.ok()) return nullptr;
  auto set = ChainSet::Create(*cfg);
  EXPECT_TRUE(set.ok()) << set.status();
  return set.ok() ? *std::move(set) : nullptr;
}

ChainVerdict ScanWith(const ChainSet& set, absl::string_view chain, absl::string_view msg) {
  auto v = set.Run(chain, msg, {}, absl::Now() + absl::Seconds(30));
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : ChainVerdict{};
}

std::string LibclamYaml() {
  return absl::StrCat("{libclam: {database: [/nonexistent, ", SignatureDir(), "]}}");
}

TEST(ChainSet, LibclamRejectsEicarWithItsName) {
  auto set = Chains(absl::StrCat("chains: {av: [", LibclamYaml(), "]}\n"));
  ASSERT_NE(set, nullptr);
  ChainVerdict v = ScanWith(*set, "av", Mail(kEicar));
  EXPECT_EQ(v.outcome, common::v1::REJECT);
  EXPECT_EQ(v.result.level, 1.0);
  EXPECT_THAT(v.result.name, StartsWith("Eicar-Test-Signature"));
  EXPECT_EQ(v.result.path, "libclam()");
  EXPECT_THAT(v.reply_text, HasSubstr("5.7.1"));
}

TEST(ChainSet, StatusCountsDetectionsAndScansAreCountedPerScanner) {
  auto cfg = LoadConfigString(
      absl::StrCat("chains:\n  av:\n    - status: {prefix: Virus, scanners: [", LibclamYaml(),
                   "]}\n    - status: {prefix: 'Pat-%(VIRNAME)s', scanners: [{string_scan: "
                   "{entries: [{name: Junk, patterns: [JUNK]}]}}]}\n"),
      "t.yaml", "/");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  stats::Registry registry;
  auto set = ChainSet::Create(*cfg, &registry);
  ASSERT_TRUE(set.ok()) << set.status();
  std::string eicar = Mail(kEicar);
  ChainVerdict v = ScanWith(**set, "av", eicar);
  EXPECT_EQ(v.result.path, "status(libclam())");
  ScanWith(**set, "av", eicar);
  ScanWith(**set, "av", Mail("JUNK"));
  ScanWith(**set, "av", Mail("clean"));
  EXPECT_EQ(registry.GetCounter("status_count", {{"prefix", "Virus"}})->value(), 2);
  EXPECT_EQ(registry.GetCounter("status_bytes", {{"prefix", "Virus"}})->value(),
            2 * static_cast<int64_t>(eicar.size()));
  EXPECT_EQ(registry.GetCounter("status_count", {{"prefix", "Pat-Junk"}})->value(), 1);
  auto scans = [&](const char* scanner, const char* result) {
    return registry.GetCounter("scans", {{"scanner", scanner}, {"result", result}})->value();
  };
  EXPECT_EQ(scans("libclam", "detected"), 2);
  EXPECT_EQ(scans("libclam", "clean"), 2);
  EXPECT_EQ(scans("string_scan", "detected"), 1);
  EXPECT_EQ(scans("string_scan", "clean"), 1);
  EXPECT_EQ(scans("libclam", "error"), 0);
}

TEST(ChainSet, CleanMailPassesWithSagatorHeaders) {
  auto set = Chains(absl::StrCat("chains: {av: [", LibclamYaml(), "]}\n"));
  ASSERT_NE(set, nullptr);
  ChainVerdict v = ScanWith(*set, "av", Mail("hello"));
  EXPECT_EQ(v.outcome, common::v1::PASS);
  ASSERT_GE(v.edits.size(), 2u);
  EXPECT_EQ(v.edits[0].name, "X-Sagator-ID");
  EXPECT_THAT(v.edits[0].value,
              MatchesRegex("[0-9]{8}-[0-9]{6}-[0-9]{4}-[0-9]{5}-[0-9A-Za-z]{6}@testhost"));
  EXPECT_EQ(v.edits[0].value, v.sagator_id);
  EXPECT_EQ(v.edits[1].name, "X-Sagator-Scanner");
  EXPECT_EQ(v.edits[1].value, absl::StrCat(kSagatorVersion, " at testhost; libclam()"));
}

TEST(ChainSet, EicarInsideBase64MimePartIsFoundByLibclamMailParsing) {
  auto set = Chains(absl::StrCat("chains: {av: [", LibclamYaml(), "]}\n"));
  ASSERT_NE(set, nullptr);
  std::string msg =
      "From: a@example.org\nTo: b@example.org\nSubject: att\nMIME-Version: 1.0\n"
      "Content-Type: multipart/mixed; boundary=\"XX\"\n\n--XX\nContent-Type: text/plain\n\nhi\n"
      "--XX\nContent-Type: application/octet-stream; name=\"e.com\"\n"
      "Content-Transfer-Encoding: base64\n\n"
      "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNU\n"
      "LUZJTEUhJEgrSCo=\n--XX--\n";
  EXPECT_EQ(ScanWith(*set, "av", msg).outcome, common::v1::REJECT);
}

TEST(ChainSet, NoLoadableDatabaseIsAStartError) {
  auto cfg = LoadConfigString("chains: {av: [{libclam: {database: [/nonexistent]}}]}\n", "t.yaml",
                              "/");
  ASSERT_TRUE(cfg.ok());
  auto set = ChainSet::Create(*cfg);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("chains.av[0]"));
  EXPECT_THAT(set.status().message(), HasSubstr("no ClamAV database could be loaded"));
}

TEST(ChainSet, StringScanNeedsAllPatternsOfAnEntry) {
  auto set = Chains(
      "chains: {s: [{string_scan: {entries: [{name: Both, patterns: [alpha, beta]}]}}]}\n");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(ScanWith(*set, "s", Mail("alpha only")).outcome, common::v1::PASS);
  ChainVerdict v = ScanWith(*set, "s", Mail("beta and alpha"));
  EXPECT_EQ(v.outcome, common::v1::REJECT);
  EXPECT_EQ(v.result.name, "Both");
}

TEST(ChainSet, StringScanSizeLimitsWhereItLooks) {
  auto set = Chains(
      "chains:\n"
      "  hdr: [{string_scan: {size: -1, entries: [{name: H, patterns: [secret]}]}}]\n"
      "  first: [{string_scan: {size: 10, entries: [{name: F, patterns: [secret]}]}}]\n");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(ScanWith(*set, "hdr", Mail("secret")).outcome, common::v1::PASS);
  EXPECT_EQ(ScanWith(*set, "hdr", "Subject: secret\n\nbody\n").outcome, common::v1::REJECT);
  EXPECT_EQ(ScanWith(*set, "first", "0123456789secret").outcome, common::v1::PASS);
  EXPECT_EQ(ScanWith(*set, "first", "secret").outcome, common::v1::REJECT);
}

TEST(ChainSet, RegexpScanUsesRe2AndCaseOption) {
  auto set = Chains(
      "chains:\n"
      "  r: [{regexp_scan: {entries: [{name: Exe, patterns: ['name=\"[^\"]+\\.exe\"']}]}}]\n"
      "  ri: [{regexp_scan: {case_insensitive: true, entries: [{name: V, patterns: [viagra]}]}}]\n");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(ScanWith(*set, "r", Mail("name=\"x.exe\"")).result.name, "Exe");
  EXPECT_EQ(ScanWith(*set, "r", Mail("name=\"x.txt\"")).outcome, common::v1::PASS);
  EXPECT_EQ(ScanWith(*set, "ri", Mail("VIAGRA")).outcome, common::v1::REJECT);
}

TEST(ChainSet, BadRegexpIsAStartErrorNamingTheKey) {
  auto cfg = LoadConfigString("chains: {r: [{regexp_scan: {entries: [{name: X, patterns: ['(']}]}}]}\n",
                              "t.yaml", "/");
  ASSERT_TRUE(cfg.ok());
  auto set = ChainSet::Create(*cfg);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("t.yaml: chains.r[0]"));
  EXPECT_THAT(set.status().message(), HasSubstr("does not compile"));
}

TEST(ChainSet, MaxFileSizeDetectsLargeMessages) {
  auto set = Chains("chains: {m: [{max_file_size: {bytes: 100, name: Big}}]}\n");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(ScanWith(*set, "m", std::string(100, 'x')).outcome, common::v1::PASS);
  EXPECT_EQ(ScanWith(*set, "m", std::string(101, 'x')).result.name, "Big");
}

TEST(ChainSet, ConstAndNothing) {
  auto set = Chains(
      "chains:\n  c: [{const: {level: 2.5, name: C}}]\n  low: [{const: {level: 0.5, name: L}}]\n"
      "  n: [nothing]\n");
  ASSERT_NE(set, nullptr);
  ChainVerdict c = ScanWith(*set, "c", "x");
  EXPECT_EQ(c.outcome, common::v1::REJECT);
  EXPECT_EQ(c.result.level, 2.5);
  ChainVerdict low = ScanWith(*set, "low", "x");
  EXPECT_EQ(low.outcome, common::v1::PASS);
  EXPECT_EQ(low.result.level, 0.5);
  EXPECT_EQ(ScanWith(*set, "n", "x").outcome, common::v1::PASS);
}

// Memory-only runs: only chains whose scanners all honor them.
TEST(ChainSet, OnlyChainsOfScannersThatHonorMemoryOnlyRunSo) {
  auto set = Chains(
      "chains:\n  n: [nothing, {const: {level: 0.5, name: L}}]\n"
      "  m: [nothing, {max_file_size: {bytes: 100}}]\n");
  ASSERT_NE(set, nullptr);
  EXPECT_TRUE(set->MayRunMemoryOnly("n"));
  EXPECT_FALSE(set->MayRunMemoryOnly("m"));
  EXPECT_TRUE(set->MayRunMemoryOnly("unknown"));
  auto n = set->RunPolicy("n", {}, absl::InfiniteFuture(), nullptr, /*memory_only=*/true);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->outcome, common::v1::PASS);
  auto m = set->RunPolicy("m", {}, absl::InfiniteFuture(), nullptr, /*memory_only=*/true);
  EXPECT_TRUE(!m.ok() && IsWouldWait(m.status())) << m.status();
  auto unknown = set->RunPolicy("unknown", {}, absl::InfiniteFuture(), nullptr, true);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
}

TEST(ChainSet, FirstDetectionInAChainDecides) {
  auto set = Chains(
      "chains: {c: [nothing, {const: {level: 1, name: First}}, {const: {level: 3, name: Second}}]}\n");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(ScanWith(*set, "c", "x").result.name, "First");
}

TEST(ChainSet, DropTurnsMatchingDetectionsInto551) {
  auto set = Chains(
      "chains:\n"
      "  d: [{drop: {pattern: Worm, scanners: [{const: {level: 1, name: I-Worm.Klez}}]}}]\n"
      "  nd: [{drop: {pattern: Worm, scanners: [{const: {level: 1, name: Trojan}}]}}]\n"
      "  def: [{drop: [{const: {level: 1, name: Sanesecurity.Junk.1}}]}]\n");
  ASSERT_NE(set, nullptr);
  ChainVerdict d = ScanWith(*set, "d", "x");
  EXPECT_EQ(d.outcome, common::v1::DROP);
  EXPECT_EQ(d.result.path, "drop(const())");
  EXPECT_EQ(ScanWith(*set, "nd", "x").outcome, common::v1::REJECT);
  EXPECT_EQ(ScanWith(*set, "def", "x").outcome, common::v1::DROP);
}

TEST(ChainSet, DeliverForcesDeliveryWith251) {
  auto set = Chains("chains: {d: [{deliver: [{const: {level: 1, name: SPAM}}]}]}\n");
  ASSERT_NE(set, nullptr);
  ChainVerdict v = ScanWith(*set, "d", "x");
  EXPECT_EQ(v.outcome, common::v1::FORCED_PASS);
  EXPECT_EQ(v.result.name, "SPAM");
}

TEST(ChainSet, RenameRewritesNameAndScalesLevel) {
  auto set = Chains(
      "chains:\n"
      "  r: [{rename: {name: 'Virus: %(VIRNAME)s %(STARS)s', multiplier: 2,"
      " scanners: [{const: {level: 1.2, name: X}}]}}]\n"
      "  clean: [{rename: {name: Y, scanners: [{const: {level: 0.5, name: X}}]}}]\n");
  ASSERT_NE(set, nullptr);
  ChainVerdict v = ScanWith(*set, "r", "x");
  EXPECT_DOUBLE_EQ(v.result.level, 2.4);
  EXPECT_EQ(v.result.name, "Virus: X " + std::string(24, '*'));
  EXPECT_EQ(ScanWith(*set, "clean", "x").result.name, "X");
}

TEST(ChainSet, AddHeaderAddsForMatchingNamesOnly) {
  auto set = Chains(
      "chains:\n"
      "  a: [{add_header: {name: X-Virus, data: '%V at %L', scanners: [{const: {level: 1, name: V1}}]}}]\n"
      "  o: [{add_header: {name: X-Virus, data: '%V', onlyif: '^Spam', scanners: [{const: {level: 1, name: V1}}]}}]\n"
      "  c: [{add_header: {name: X-Virus, data: '%V', scanners: [nothing]}}]\n");
  ASSERT_NE(set, nullptr);
  ChainVerdict a = ScanWith(*set, "a", "x");
  ASSERT_EQ(a.edits.size(), 3u);
  EXPECT_EQ(a.edits[2].name, "X-Virus");
  EXPECT_EQ(a.edits[2].value, "V1 at 1.00");
  EXPECT_EQ(ScanWith(*set, "o", "x").edits.size(), 2u);
  EXPECT_EQ(ScanWith(*set, "c", "x").edits.size(), 2u);
}

TEST(ChainSet, AlternativesFailsOverOnErrorsOnly) {
  // A clamd on a socket that does not exist fails; libclam then decides.
  auto set = Chains(absl::StrCat(
      "chains:\n"
      "  alt: [{alternatives: [{clamd: {address: 'unix:/nonexistent/clamd.ctl'}}, ",
      LibclamYaml(), "]}]\n"
      "  allbad: [{alternatives: [{clamd: {address: 'unix:/nonexistent/a'}},"
      " {clamd: {address: 'unix:/nonexistent/b'}}]}]\n"
      "  first: [{alternatives: [nothing, {const: {level: 1, name: X}}]}]\n"));
  ASSERT_NE(set, nullptr);
  ChainVerdict v = ScanWith(*set, "alt", Mail(kEicar));
  EXPECT_EQ(v.outcome, common::v1::REJECT);
  EXPECT_EQ(v.result.path, "alternatives(libclam())");
  ChainVerdict bad = ScanWith(*set, "allbad", "x");
  EXPECT_EQ(bad.outcome, common::v1::TEMPFAIL);
  EXPECT_THAT(bad.error.message(), HasSubstr("every alternative failed"));
  EXPECT_THAT(bad.reply_text, StartsWith("4."));
  EXPECT_EQ(ScanWith(*set, "first", "x").outcome, common::v1::PASS);  // clean also stops
}

TEST(ChainSet, ScannerErrorIsTempfail) {
  auto set = Chains("chains: {c: [{clamd: {address: 'unix:/nonexistent/clamd.ctl'}}]}\n");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(ScanWith(*set, "c", "x").outcome, common::v1::TEMPFAIL);
}

TEST(ChainSet, MatchAnyAndMatchAll) {
  auto set = Chains(
      "chains:\n"
      "  any: [{match_any: [nothing, {const: {level: 1, name: A}}]}]\n"
      "  all_no: [{match_all: [{const: {level: 1, name: A}}, nothing]}]\n"
      "  all_yes: [{match_all: [{const: {level: 2, name: A}}, {const: {level: 1.5, name: B}}]}]\n"
      "  any_err: [{match_any: [{clamd: {address: 'unix:/nonexistent/x'}}, {const: {level: 1, name: A}}]}]\n");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(ScanWith(*set, "any", "x").result.name, "A");
  EXPECT_EQ(ScanWith(*set, "all_no", "x").outcome, common::v1::PASS);
  ChainVerdict all = ScanWith(*set, "all_yes", "x");
  EXPECT_EQ(all.outcome, common::v1::REJECT);
  EXPECT_EQ(all.result.name, "A");
  EXPECT_EQ(all.result.level, 1.5);
  EXPECT_EQ(ScanWith(*set, "any_err", "x").outcome, common::v1::REJECT);
}

TEST(ChainSet, ChainReferencesRunTheNamedChain) {
  auto set = Chains(
      "chains:\n  inner: [{const: {level: 1, name: In}}]\n  outer: [nothing, {chain: inner}]\n");
  ASSERT_NE(set, nullptr);
  ChainVerdict v = ScanWith(*set, "outer", "x");
  EXPECT_EQ(v.result.name, "In");
  EXPECT_THAT(v.edits[1].value, HasSubstr("nothing(), const()"));
}

TEST(ChainSet, TooLargeMessageIsNotScannedAndGetsTheConfiguredOutcome) {
  auto set = Chains("chains: {c: [{const: {level: 1, name: X}}]}\n");
  ASSERT_NE(set, nullptr);
  ChainVerdict v = ScanWith(*set, "c", std::string(65 * 1024, 'x'));
  EXPECT_EQ(v.outcome, common::v1::FORCED_PASS);
  EXPECT_TRUE(v.result.not_scanned);
  EXPECT_EQ(v.result.name, "not scanned: too large");

  auto cfg = LoadConfigString(
      "global: {max_message_size: 2K, not_scanned_outcome: TEMPFAIL}\nchains: {c: [nothing]}\n",
      "t.yaml", "/");
  ASSERT_TRUE(cfg.ok());
  auto strict = ChainSet::Create(*cfg);
  ASSERT_TRUE(strict.ok());
  EXPECT_EQ(ScanWith(**strict, "c", std::string(3000, 'x')).outcome, common::v1::TEMPFAIL);
}

TEST(ChainSet, UnknownChainIsNotFound) {
  auto set = Chains("chains: {c: [nothing]}\n");
  ASSERT_NE(set, nullptr);
  EXPECT_TRUE(absl::IsNotFound(set->Run("nope", "x", {}, absl::Now() + absl::Seconds(1)).status()));
}

TEST(ChainSet, ExpiredDeadlineOrCancelledCallerStopsTheScan) {
  auto set = Chains("chains: {c: [nothing, nothing]}\n");
  ASSERT_NE(set, nullptr);
  EXPECT_TRUE(absl::IsDeadlineExceeded(
      set->Run("c", "x", {}, absl::Now() - absl::Seconds(1)).status()));
  EXPECT_TRUE(absl::IsCancelled(
      set->Run("c", "x", {}, absl::Now() + absl::Seconds(5), [] { return true; }).status()));
}

TEST(ChainSet, SharesOneClamEngineAcrossThreads) {
  auto set = Chains(absl::StrCat("chains: {a: [", LibclamYaml(), "], b: [", LibclamYaml(), "]}\n"));
  ASSERT_NE(set, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> rejected{0}, passed{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        bool virus = (i + t) % 2 == 0;
        auto v = set->Run(t % 2 ? "a" : "b", Mail(virus ? kEicar : absl::StrCat("clean ", i, t)),
                          {}, absl::Now() + absl::Seconds(30));
        if (v.ok() && v->outcome == common::v1::REJECT && virus) ++rejected;
        if (v.ok() && v->outcome == common::v1::PASS && !virus) ++passed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(rejected.load(), 100);
  EXPECT_EQ(passed.load(), 100);
}

TEST(ChainSet, PolicyChainDefersGreylistsRejectsBlackAndForcesWhite) {
  std::string db = absl::StrCat(std::getenv("TEST_TMPDIR"), "/policy.db");
  auto set = Chains(absl::StrCat(
      "databases: {default: {sqlite: {path: '", db, "'}}}\n"
      "chains:\n"
      "  policy: [sql_list, {greylist: {min: 0s, info_url: ''}}]\n"
      "  av: [{add_listed: {flags: BS, scanners: [{string_scan: {entries: [{name: Bad, "
      "patterns: [BAD]}]}}]}}]\n"));
  ASSERT_NE(set, nullptr);
  auto env = [](std::string sender, std::string rcpt) {
    engine::MessageEnvelope e;
    e.client_address = "192.0.2.1";
    e.sender = std::move(sender);
    e.recipients = {std::move(rcpt)};
    return e;
  };
  auto run = [&](absl::string_view chain, absl::string_view msg, engine::MessageEnvelope e) {
    auto v = set->Run(chain, msg, std::move(e), absl::Now() + absl::Seconds(30));
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : ChainVerdict{};
  };
  ChainVerdict v = run("policy", "", env("a@example.org", "b@example.net"));
  EXPECT_EQ(v.outcome, common::v1::TEMPFAIL);
  EXPECT_EQ(v.result.name, "Greylisted");
  EXPECT_EQ(v.reply_text, "4.7.1 Greylisted, try again in 1 seconds");
  v = run("policy", "", env("a@example.org", "b@example.net"));
  EXPECT_EQ(v.outcome, common::v1::PASS);
  EXPECT_EQ(v.edits.back().name, "X-Greylist");

  // A virus sender gets listed by add_listed, and sql_list then rejects it first.
  v = run("av", Mail("BAD"), env("bad@example.org", "b@example.net"));
  EXPECT_EQ(v.outcome, common::v1::REJECT);
  v = run("policy", "", env("bad@example.org", "c@example.net"));
  EXPECT_EQ(v.outcome, common::v1::REJECT);
  EXPECT_EQ(v.reply_text, "5.7.1 Rejected: sender bad@example.org is blacklisted");

  // At the SMTP stage the answer carries only the policy's own headers.
  auto p = set->RunPolicy("policy", env("new@example.org", "b@example.net"),
                          absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->outcome, common::v1::TEMPFAIL);
  EXPECT_TRUE(p->edits.empty());
  EXPECT_TRUE(p->sagator_id.empty());
  p = set->RunPolicy("policy", env("new@example.org", "b@example.net"),
                     absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->edits.size(), 1u);
  EXPECT_EQ(p->edits[0].name, "X-Greylist");
}

TEST(ChainSet, AnUnopenableDatabaseIsAStartErrorNamingTheKey) {
  auto cfg = LoadConfigString(
      "databases: {default: {sqlite: {path: /nonexistent-dir/x.db}}}\nchains: {p: [greylist]}\n",
      "t.yaml", "/");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  auto set = ChainSet::Create(*cfg);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("chains.p[0]: cannot open SQLite database"));
}

TEST(SagatorId, HasSagatorsFormatAndIsUnique) {
  absl::Time t = absl::FromUnixSeconds(1591034662);
  std::string a = NewSagatorId("h", t), b = NewSagatorId("h", t);
  EXPECT_NE(a, b);
  EXPECT_THAT(a, MatchesRegex("20200601-[0-9]{6}-[0-9]{4}-[0-9]{5}-[0-9A-Za-z]{6}@h"));
}

}  // namespace
}  // namespace sagator
