#include "services/launcher/launcher_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>

#include "absl/strings/str_cat.h"
#include "services/launcher/testing/harness.h"

namespace sagator::launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using testing::TestDir;
using testing::WriteFile;

// Loads YAML as if it were the file <dir>/sagator.yaml.
LoadedConfig Load(const std::string& dir, const std::string& yaml) {
  absl::StatusOr<LoadedConfig> config =
      LoadConfigString(yaml, dir + "/sagator.yaml", dir);
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *std::move(config) : LoadedConfig();
}

// A folder with fake, executable service binaries.
std::string FakeBinaries(const std::string& dir, const std::string& name,
                         const std::vector<std::string>& binaries) {
  std::string folder = dir + "/" + name;
  EXPECT_EQ(mkdir(folder.c_str(), 0755), 0);
  for (const std::string& b : binaries) WriteFile(folder + "/" + b, "#!/bin/sh\n", 0755);
  return folder;
}

TEST(ServiceBinaryName, NamesTheBinaryOfEachServiceKindOfOurs) {
  using config::v1::Service;
  EXPECT_STREQ(ServiceBinaryName(Service::kScannerSvc), "scanner-svc");
  EXPECT_STREQ(ServiceBinaryName(Service::kSgfilterd), "sgfilterd");
  EXPECT_STREQ(ServiceBinaryName(Service::kSmtpd), "smtpd");
  EXPECT_STREQ(ServiceBinaryName(Service::kLmtpd), "lmtpd");
  EXPECT_STREQ(ServiceBinaryName(Service::kMilter), "milter");
  EXPECT_STREQ(ServiceBinaryName(Service::kSmtpdPolicy), "smtpd_policy");
  EXPECT_EQ(ServiceBinaryName(Service::kChrootExecvp), nullptr);
  EXPECT_EQ(ServiceBinaryName(Service::kRlimit), nullptr);
}

TEST(BuildLaunchPlan, StartsServiceBinariesWithTheConfigAndTheirEntryName) {
  std::string dir = TestDir();
  std::string bin = FakeBinaries(dir, "bin", {"scanner-svc", "sgfilterd"});
  LoadedConfig config = Load(dir, R"(chains: {c: [nothing]}
services:
  - name: scanner
    scanner_svc: {port: 0}
  - sgfilterd: {scanners: c, port: 0}
)");
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(config, {bin});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->children.size(), 2);
  const ChildSpec& scanner = plan->children[0];
  EXPECT_EQ(scanner.name, "scanner");
  EXPECT_THAT(scanner.argv, ElementsAre(bin + "/scanner-svc", "--config",
                                        dir + "/sagator.yaml", "--service", "scanner"));
  EXPECT_FALSE(scanner.own_process_group);
  EXPECT_TRUE(scanner.pid_file.empty());
  EXPECT_THAT(plan->children[1].argv,
              ElementsAre(bin + "/sgfilterd", "--config", dir + "/sagator.yaml",
                          "--service", "sgfilterd"));
}

TEST(BuildLaunchPlan, SearchesTheBinaryFoldersInOrder) {
  std::string dir = TestDir();
  std::string first = FakeBinaries(dir, "first", {"sgfilterd"});
  std::string second = FakeBinaries(dir, "second", {"sgfilterd", "scanner-svc"});
  LoadedConfig config = Load(dir, R"(chains: {c: [nothing]}
services:
  - scanner_svc: {}
  - sgfilterd: {scanners: c}
)");
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(config, {first, second});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->children[0].argv[0], second + "/scanner-svc");
  EXPECT_EQ(plan->children[1].argv[0], first + "/sgfilterd");
}

TEST(BuildLaunchPlan, MissingServiceBinaryNamesTheEntryTheBinaryAndTheFolders) {
  std::string dir = TestDir();
  LoadedConfig config = Load(dir, "services:\n  - name: scanner\n    scanner_svc: {}\n");
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(config, {"/nowhere", "/none"});
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(plan.status().message(),
              HasSubstr("sagator.yaml: service 'scanner': service binary 'scanner-svc' "
                        "not found in /nowhere:/none"));
}

TEST(BuildLaunchPlan, DaemonsRunInTheirOwnGroupInTheConfigFolderWithResolvedFiles) {
  std::string dir = TestDir();
  LoadedConfig config = Load(dir, R"(services:
  - name: clamd
    chroot_execvp:
      name: sh
      args: [-c, "exec sleep 1"]
      pid_file: clamd.pid
      pgrp_file: /var/run/clamd.pgrp
)");
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(config, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->children.size(), 1);
  const ChildSpec& clamd = plan->children[0];
  EXPECT_EQ(clamd.name, "clamd");
  EXPECT_THAT(clamd.argv, ElementsAre("sh", "-c", "exec sleep 1"));
  EXPECT_TRUE(clamd.own_process_group);
  EXPECT_EQ(clamd.working_dir, dir);
  EXPECT_EQ(clamd.pid_file, dir + "/clamd.pid");
  EXPECT_EQ(clamd.pgrp_file, "/var/run/clamd.pgrp");
  EXPECT_TRUE(clamd.env.empty());
}

TEST(BuildLaunchPlan, ExecvpeDaemonsGetTheirEnvironmentAdditions) {
  std::string dir = TestDir();
  LoadedConfig config = Load(dir, R"(services:
  - chroot_execvpe: {name: env, env: {LANG: C, FOO: bar}}
)");
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(config, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(plan->children[0].env, ElementsAre(Pair("FOO", "bar"), Pair("LANG", "C")));
  EXPECT_TRUE(plan->children[0].own_process_group);
}

TEST(BuildLaunchPlan, MissingDaemonProgramNamesTheEntryAndPath) {
  std::string dir = TestDir();
  LoadedConfig config = Load(dir, R"(services:
  - name: ghost
    chroot_execvpe: {name: no-such-daemon, env: {PATH: /nowhere}}
  )");
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(config, {});
  EXPECT_THAT(plan.status().message(),
              HasSubstr("service 'ghost': program 'no-such-daemon' not found in PATH "
                        "(/nowhere)"));
}

TEST(BuildLaunchPlan, RlimitEntriesBecomeLimitsInOrderNotChildren) {
  std::string dir = TestDir();
  LoadedConfig config = Load(dir, R"(services:
  - rlimit: {NOFILE: 100, AS: -1}
  - rlimit: {NOFILE: 200}
)");
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(config, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->children.empty());
  EXPECT_THAT(plan->resource_limits,
              ElementsAre(ResourceLimit{"AS", RLIMIT_AS, RLIM_INFINITY},
                          ResourceLimit{"NOFILE", RLIMIT_NOFILE, 100},
                          ResourceLimit{"NOFILE", RLIMIT_NOFILE, 200}));
}

TEST(BuildLaunchPlan, SupervisionTimesAndStateDirComeFromGlobal) {
  std::string dir = TestDir();
  LoadedConfig config = Load(dir, R"(global:
  state_dir: var/run
  supervision:
    restart_backoff: 50ms
    max_restart_backoff: 2s
    stable_after: 1m
    stop_grace: 3s
)");
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(config, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->policy.restart_backoff, absl::Milliseconds(50));
  EXPECT_EQ(plan->policy.max_restart_backoff, absl::Seconds(2));
  EXPECT_EQ(plan->policy.stable_after, absl::Minutes(1));
  EXPECT_EQ(plan->policy.stop_grace, absl::Seconds(3));
  EXPECT_EQ(plan->state_dir, dir + "/var/run");
}

TEST(BinarySearchDirs, TakesBinPathInOrderThenTheExecutablesFolder) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  ASSERT_GT(n, 0);
  std::string exe(self, n);
  EXPECT_THAT(BinarySearchDirs("/a::/b"),
              ElementsAre("/a", "/b", exe.substr(0, exe.rfind('/'))));
}

TEST(AbsolutePath, JoinsRelativePathsToTheCurrentFolder) {
  char cwd[PATH_MAX];
  ASSERT_NE(getcwd(cwd, sizeof cwd), nullptr);
  EXPECT_EQ(AbsolutePath("/etc/sagator.yaml"), "/etc/sagator.yaml");
  EXPECT_EQ(AbsolutePath("sagator.yaml"), absl::StrCat(cwd, "/sagator.yaml"));
  EXPECT_EQ(AbsolutePath("./x/y"), absl::StrCat(cwd, "/x/y"));
  EXPECT_EQ(AbsolutePath("."), cwd);
}

TEST(MakeDirectories, CreatesMissingParentsAndAcceptsExistingFolders) {
  std::string dir = TestDir();
  EXPECT_TRUE(MakeDirectories(dir + "/a/b/c").ok());
  EXPECT_TRUE(MakeDirectories(dir + "/a/b/c").ok());
  struct stat st;
  EXPECT_EQ(stat((dir + "/a/b/c").c_str(), &st), 0);
  WriteFile(dir + "/file", "");
  EXPECT_FALSE(MakeDirectories(dir + "/file").ok());
  EXPECT_FALSE(MakeDirectories(dir + "/file/sub").ok());
}

}  // namespace
}  // namespace sagator::launcher
