#include "common/config.h"

#include <cstdlib>
#include <dirent.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace sagator {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<LoadedConfig> Load(const std::string& yaml) {
  return LoadConfigString(yaml, "test.yaml", "/base");
}

std::string ErrorOf(const std::string& yaml) {
  auto c = Load(yaml);
  EXPECT_FALSE(c.ok()) << "accepted:\n" << yaml;
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(ConfigLoader, LoadsEveryExampleConfigInDeploy) {
  std::string dir = std::string(std::getenv("TEST_SRCDIR")) + "/sagator/deploy/config";
  DIR* d = opendir(dir.c_str());
  ASSERT_NE(d, nullptr) << dir;
  int loaded = 0;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() < 5 || name.substr(name.size() - 5) != ".yaml") continue;
    auto c = LoadConfigFile(dir + "/" + name);
    EXPECT_TRUE(c.ok()) << c.status();
    ++loaded;
  }
  closedir(d);
  EXPECT_GE(loaded, 1);
}

TEST(ConfigLoader, ExampleConfigHasTheDocumentedShape) {
  std::string path =
      std::string(std::getenv("TEST_SRCDIR")) + "/sagator/deploy/config/sagator.yaml";
  auto c = LoadConfigFile(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->proto.chains().contains("default"));
  EXPECT_EQ(c->proto.global().max_message_size(), 50 << 20);
  auto sg = FindService(c->proto, "", config::v1::Service::kSgfilterd);
  ASSERT_TRUE(sg.ok());
  EXPECT_EQ((*sg)->sgfilterd().scanners(), "default");
  EXPECT_EQ(ScannerTarget(c->proto), "127.0.0.1:7290");
  EXPECT_EQ(QuarantineTarget(c->proto), "127.0.0.1:7293");
}

TEST(ConfigLoader, ReporterTemplateDefaultsKeepTheirLines) {
  auto c = Load("services:\n  - reporter: {}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  const auto& r = c->proto.services(0).reporter();
  EXPECT_TRUE(absl::StartsWith(r.begin(), "From: %(FROM)s\nTo: %(TO)s\nSubject: ")) << r.begin();
  EXPECT_THAT(r.body(), HasSubstr("\n  Release to your mailbox: %(RELEASE_URL)s\n"));
  EXPECT_EQ(r.state_file(), "run/reporter.state");
}

TEST(ConfigLoader, QuarantineServiceDefaultsAndTarget) {
  auto c = Load(
      "databases: {default: {sqlite: {path: q.db}}}\n"
      "services:\n  - quarantine: {}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  const auto& q = c->proto.services(0).quarantine();
  EXPECT_EQ(q.port(), 7293);
  EXPECT_EQ(q.db(), "default");
  EXPECT_EQ(q.relay(), "127.0.0.1:10025");
  EXPECT_EQ(q.retention().seconds(), 30 * 86400);
  EXPECT_EQ(QuarantineTarget(c->proto), "127.0.0.1:7293");
  c = Load("global: {quarantine_target: \"q:1\"}\nservices:\n  - quarantine: {}\n");
  ASSERT_FALSE(c.ok());  // the database `default` it names is not configured
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("default"));
}

TEST(ConfigLoader, AppliesSchemaDefaults) {
  auto c = Load("chains: {c: [nothing]}\nservices:\n  - sgfilterd: {scanners: c}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  const auto& sg = c->proto.services(0).sgfilterd();
  EXPECT_EQ(sg.host(), "127.0.0.1");
  EXPECT_EQ(sg.port(), 27);
  EXPECT_EQ(sg.prefork(), 2);
  EXPECT_EQ(sg.timeout().seconds(), 60);
  EXPECT_EQ(c->proto.global().max_message_size(), 52428800);
  EXPECT_EQ(c->proto.global().supervision().stop_grace().seconds(), 10);
  EXPECT_EQ(c->proto.services(0).name(), "sgfilterd");
}

TEST(ConfigLoader, AcceptsBareScannerNamesAndListsForCombinators) {
  auto c = Load(
      "chains:\n"
      "  a:\n"
      "    - nothing\n"
      "    - alternatives:\n"
      "        - const: {level: 1.5, name: X}\n"
      "        - chain: b\n"
      "  b: [libclam]\n");
  ASSERT_TRUE(c.ok()) << c.status();
  const auto& a = c->proto.chains().at("a");
  ASSERT_EQ(a.scanners_size(), 2);
  EXPECT_TRUE(a.scanners(0).has_nothing());
  ASSERT_EQ(a.scanners(1).alternatives().scanners_size(), 2);
  EXPECT_EQ(a.scanners(1).alternatives().scanners(0).const_().level(), 1.5);
  EXPECT_EQ(a.scanners(1).alternatives().scanners(1).chain(), "b");
  EXPECT_TRUE(c->proto.chains().at("b").scanners(0).libclam().scan_mail());
}

TEST(ConfigLoader, AcceptsSizeSuffixesAndDurations) {
  auto c = Load("global: {max_message_size: 10M, scan_timeout: 1500ms}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->proto.global().max_message_size(), 10 << 20);
  EXPECT_EQ(c->proto.global().scan_timeout().nanos(), 500000000);
  EXPECT_EQ(c->proto.global().scan_timeout().seconds(), 1);
}

TEST(ConfigLoader, RefusesUnknownKeyWithFileLineAndKey) {
  std::string e = ErrorOf("global:\n  max_mesage_size: 10\n");
  EXPECT_THAT(e, HasSubstr("test.yaml:2:3: global.max_mesage_size: unknown key"));
  EXPECT_THAT(e, HasSubstr("max_message_size"));  // the allowed keys are listed
}

TEST(ConfigLoader, RefusesWrongTypes) {
  EXPECT_THAT(ErrorOf("global:\n  max_message_size: lots\n"),
              HasSubstr("test.yaml:2:21: global.max_message_size: 'lots' is not a whole number"));
  EXPECT_THAT(ErrorOf("chains: {c: [nothing]}\nservices:\n  - sgfilterd: {scanners: c, port: [1]}\n"),
              HasSubstr("test.yaml:3:36: services[0].sgfilterd.port: expected a single value"));
  EXPECT_THAT(ErrorOf("chains: {c: [{libclam: {scan_mail: maybe}}]}\n"),
              HasSubstr("test.yaml:1:36: chains.c[0].libclam.scan_mail: 'maybe' is not true or false"));
  EXPECT_THAT(ErrorOf("global: {scan_timeout: soon}\n"),
              HasSubstr("global.scan_timeout: 'soon' is not a duration"));
  EXPECT_THAT(ErrorOf("global: {not_scanned_outcome: MAYBE}\n"),
              HasSubstr("'MAYBE' is not one of PASS, FORCED_PASS, TEMPFAIL, REJECT, DROP"));
  EXPECT_THAT(ErrorOf("global: [1, 2]\n"), HasSubstr("global: expected a mapping"));
}

TEST(ConfigLoader, RefusesOutOfRangeValues) {
  EXPECT_THAT(
      ErrorOf("chains: {c: [nothing]}\nservices:\n  - sgfilterd:\n      scanners: c\n      port: 70000\n"),
      HasSubstr("test.yaml:5:13: services[0].sgfilterd.port: 70000 is out of range [0, 65535]"));
  EXPECT_THAT(ErrorOf("chains: {c: [nothing]}\nservices: [{sgfilterd: {scanners: c, prefork: 0}}]\n"),
              HasSubstr("services[0].sgfilterd.prefork: 0 is out of range [1, 1024]"));
  EXPECT_THAT(ErrorOf("global: {scan_timeout: 2h}\n"),
              HasSubstr("global.scan_timeout: 2h is out of range"));
}

TEST(ConfigLoader, RefusesDanglingChainNames) {
  EXPECT_THAT(ErrorOf("chains: {c: [nothing]}\nservices:\n  - sgfilterd: {scanners: nope}\n"),
              HasSubstr("test.yaml:3:27: services[0].sgfilterd.scanners: unknown chain 'nope' "
                        "(configured: c)"));
  EXPECT_THAT(ErrorOf("chains:\n  a: [{chain: b}]\n"),
              HasSubstr("test.yaml:2:15: chains.a[0].chain: unknown chain 'b'"));
}

TEST(ConfigLoader, RefusesDanglingDatabaseNames) {
  // The default database name "default" must exist too.
  EXPECT_THAT(ErrorOf("chains:\n  p: [greylist]\n"),
              HasSubstr("chains.p[0].greylist.db: unknown database 'default' (configured under "
                        "databases: none)"));
  EXPECT_THAT(ErrorOf("databases: {main: {sqlite: {path: x.db}}}\n"
                      "chains:\n  p: [{sql_list: {db: other}}]\n"),
              HasSubstr("test.yaml:3:23: chains.p[0].sql_list.db: unknown database 'other' "
                        "(configured under databases: main)"));
  auto c = Load("databases:\n  default: {sqlite: {path: g.db}}\n"
                "  pg: {postgresql: {conninfo: 'host=db'}}\n"
                "chains:\n  p: [greylist, {add_listed: {db: pg, flags: BA, scanners: [nothing]}}]\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->proto.databases().at("default").sqlite().busy_timeout().seconds(), 5);
  EXPECT_EQ(c->proto.databases().at("pg").postgresql().pool_size(), 8);
  EXPECT_EQ(c->proto.chains().at("p").scanners(0).greylist().min().seconds(), 300);
}

TEST(ConfigLoader, RefusesChainsThatIncludeThemselves) {
  EXPECT_THAT(ErrorOf("chains:\n  a: [{chain: b}]\n  b: [{match_any: [{chain: a}]}]\n"),
              HasSubstr("includes itself"));
}

TEST(ConfigLoader, RefusesMissingRequiredKeysAndAmbiguousEntries) {
  EXPECT_THAT(ErrorOf("services:\n  - sgfilterd: {port: 1}\n"),
              HasSubstr("services[0].sgfilterd.scanners: missing required key 'scanners'"));
  EXPECT_THAT(ErrorOf("chains: {c: [{nothing: {}, libclam: {}}]}\n"),
              HasSubstr("cannot both be given"));
  EXPECT_THAT(ErrorOf("chains: {c: [{}]}\n"), HasSubstr("test.yaml:1:14: chains.c[0]: names no kind"));
  EXPECT_THAT(ErrorOf("chains: {c: [clamav]}\n"), HasSubstr("unknown kind 'clamav'"));
  EXPECT_THAT(ErrorOf("services:\n  - name: x\n    rlimit: {}\n  - name: x\n    rlimit: {}\n"),
              HasSubstr("two services are named 'x'"));
}

TEST(ConfigLoader, RefusesBrokenYamlWithLine) {
  EXPECT_THAT(ErrorOf("global:\n  a: [1, 2\n"), HasSubstr("test.yaml:"));
}

TEST(ConfigLoader, ResolvesRelativePathsAgainstTheFile) {
  auto c = Load("{}");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->ResolvePath("data/x"), "/base/data/x");
  EXPECT_EQ(c->ResolvePath("/abs"), "/abs");
}

TEST(ConfigLoader, NamesRepeatedServiceKinds) {
  auto c = Load("services: [{rlimit: {}}, {rlimit: {NOFILE: 10}}]\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->proto.services(0).name(), "rlimit");
  EXPECT_EQ(c->proto.services(1).name(), "rlimit-2");
  EXPECT_TRUE(c->proto.services(1).rlimit().has_nofile());
  EXPECT_FALSE(c->proto.services(0).rlimit().has_nofile());
}

}  // namespace
}  // namespace sagator
