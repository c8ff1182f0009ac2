// The `sagator` binary end to end: real configuration files, real child processes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "services/launcher/testing/harness.h"

namespace sagator::launcher {
namespace {

using testing::FileExists;
using ::testing::HasSubstr;
using testing::IsGone;
using testing::IsRunning;
using testing::LauncherProcess;
using ::testing::Not;
using testing::ReadFile;
using testing::ReadNumber;
using testing::RunLauncher;
using testing::TestDir;
using testing::WaitFor;
using testing::WriteFile;

// Fast supervision, so restarts and stops take milliseconds.
constexpr char kGlobal[] = R"(global:
  state_dir: run
  supervision:
    restart_backoff: 50ms
    max_restart_backoff: 400ms
    stable_after: 30s
    stop_grace: 500ms
)";

std::string WriteConfig(const std::string& dir, const std::string& services) {
  std::string path = dir + "/sagator.yaml";
  WriteFile(path, absl::StrCat(kGlobal, services));
  return path;
}

// The soft and hard values of one line of /proc/<pid>/limits.
std::vector<std::string> LimitValues(const std::string& limits,
                                     const std::string& label) {
  for (absl::string_view line : absl::StrSplit(limits, '\n')) {
    if (!absl::StartsWith(line, label)) continue;
    std::vector<std::string> words =
        absl::StrSplit(line.substr(label.size()), ' ', absl::SkipEmpty());
    if (words.size() >= 2) return {words[0], words[1]};
  }
  return {};
}

bool HasExecdInto(pid_t pid, const std::string& comm) {
  return ReadFile(absl::StrCat("/proc/", pid, "/comm")) == comm + "\n";
}

std::string RealPath(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) != nullptr ? buf : path;
}

TEST(Launcher, ChildInheritsRlimitsAndPidFilesNameItsOwnProcessGroup) {
  std::string dir = TestDir();
  std::string config = WriteConfig(dir, R"(services:
  - rlimit: {NOFILE: 1234, CORE: 0}
  - name: limited
    chroot_execvp:
      name: /bin/sh
      args: [-c, "ulimit -n > nofile.txt; cat /proc/self/limits > limits.txt; exec sleep 1000"]
      pid_file: limited.pid
      pgrp_file: limited.pgrp
)");
  LauncherProcess launcher({"--config", config}, dir);

  pid_t pid = -1;
  ASSERT_TRUE(WaitFor([&] {
    pid = ReadNumber(dir + "/limited.pid");
    return pid > 0 && HasExecdInto(pid, "sleep");
  })) << launcher.Log();
  EXPECT_EQ(ReadFile(dir + "/nofile.txt"), "1234\n");
  std::string limits = ReadFile(dir + "/limits.txt");
  EXPECT_THAT(LimitValues(limits, "Max open files"),
              ::testing::ElementsAre("1234", "1234"))
      << limits;
  EXPECT_THAT(LimitValues(limits, "Max core file size"), ::testing::ElementsAre("0", "0"))
      << limits;
  EXPECT_TRUE(IsRunning(pid));
  long pgrp = ReadNumber(dir + "/limited.pgrp");
  EXPECT_EQ(getpgid(pid), pgrp);
  EXPECT_EQ(pgrp, pid);
  EXPECT_NE(getpgid(pid), getpgid(launcher.pid()));
}

TEST(Launcher, ExecvpeAddsItsEnvironmentToTheInheritedOne) {
  std::string dir = TestDir();
  std::string config = WriteConfig(dir, R"(services:
  - name: with-env
    chroot_execvpe:
      name: sh
      args: [-c, 'echo "$LANG|$FOO|$INHERITED" > env.tmp && mv env.tmp env.txt; exec sleep 1000']
      env: {LANG: C, FOO: bar}
)");
  LauncherProcess launcher({"--config", config}, dir, {"FOO=replaced", "INHERITED=yes"});

  ASSERT_TRUE(WaitFor([&] { return FileExists(dir + "/env.txt"); })) << launcher.Log();
  EXPECT_EQ(ReadFile(dir + "/env.txt"), "C|bar|yes\n");
}

TEST(Launcher, RestartsAnExitingChildWithGrowingBackoff) {
  std::string dir = TestDir();
  std::string config = WriteConfig(dir, R"(services:
  - name: flaky
    chroot_execvp:
      name: sh
      args: [-c, "date +%s%N >> starts.txt; exit 3"]
)");
  LauncherProcess launcher({"--config", config}, dir);

  std::vector<int64_t> starts;
  ASSERT_TRUE(WaitFor([&] {
    starts.clear();
    for (absl::string_view line :
         absl::StrSplit(ReadFile(dir + "/starts.txt"), '\n', absl::SkipEmpty())) {
      int64_t ns;
      if (absl::SimpleAtoi(line, &ns)) starts.push_back(ns);
    }
    return starts.size() >= 5;
  })) << launcher.Log();

  // Restart delays are 50, 100, 200, 400ms: each gap is at least its delay.
  const int64_t kDelaysMs[] = {50, 100, 200, 400};
  std::vector<int64_t> gaps_ms;
  for (int i = 0; i < 4; ++i) {
    gaps_ms.push_back((starts[i + 1] - starts[i]) / 1000000);
    EXPECT_GE(gaps_ms[i], kDelaysMs[i] - 2) << "gap " << i;
  }
  EXPECT_GT(gaps_ms[3], gaps_ms[0]);
  std::string log = launcher.Log();
  EXPECT_THAT(log, HasSubstr("'flaky'"));
  EXPECT_THAT(log, HasSubstr("exited with status 3"));
  EXPECT_THAT(log, HasSubstr("restarting in 50ms"));
  EXPECT_THAT(log, HasSubstr("restarting in 100ms"));
  EXPECT_THAT(log, HasSubstr("restarting in 200ms"));
}

TEST(Launcher, RestartsAKilledDaemonWithANewPid) {
  std::string dir = TestDir();
  std::string config = WriteConfig(dir, R"(services:
  - name: victim
    chroot_execvp: {name: sleep, args: ["1000"], pid_file: victim.pid}
)");
  LauncherProcess launcher({"--config", config}, dir);

  pid_t first = -1;
  ASSERT_TRUE(WaitFor([&] {
    first = ReadNumber(dir + "/victim.pid");
    return first > 0;
  })) << launcher.Log();
  ASSERT_EQ(kill(first, SIGKILL), 0);

  pid_t second = -1;
  ASSERT_TRUE(WaitFor([&] {
    second = ReadNumber(dir + "/victim.pid");
    return second > 0 && second != first && IsRunning(second);
  })) << launcher.Log();
  EXPECT_TRUE(IsGone(first));
  EXPECT_THAT(launcher.Log(), HasSubstr("was killed by signal 9 (SIGKILL)"));
}

TEST(Launcher, SigtermStopsEveryChildKillsStubbornOnesAndRemovesPidFiles) {
  std::string dir = TestDir();
  std::string config = WriteConfig(dir, R"(services:
  - name: polite
    chroot_execvp: {name: sleep, args: ["1000"], pid_file: polite.pid}
  - name: stubborn
    chroot_execvp:
      name: sh
      args: [-c, "trap '' TERM; touch ready; while :; do sleep 0.05; done"]
      pid_file: stubborn.pid
      pgrp_file: stubborn.pgrp
)");
  LauncherProcess launcher({"--config", config}, dir);
  ASSERT_TRUE(WaitFor([&] {
    return FileExists(dir + "/polite.pid") && FileExists(dir + "/stubborn.pgrp") &&
           FileExists(dir + "/ready");
  })) << launcher.Log();
  pid_t polite = ReadNumber(dir + "/polite.pid");
  pid_t stubborn = ReadNumber(dir + "/stubborn.pid");
  pid_t stubborn_group = ReadNumber(dir + "/stubborn.pgrp");

  absl::Time sent = absl::Now();
  ASSERT_EQ(kill(launcher.pid(), SIGTERM), 0);
  std::optional<int> status = launcher.Wait(absl::Seconds(30));
  ASSERT_TRUE(status.has_value()) << launcher.Log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << launcher.Log();
  // The stubborn one was given stop_grace before SIGKILL.
  EXPECT_GE(absl::Now() - sent, absl::Milliseconds(450));
  EXPECT_TRUE(IsGone(polite));
  EXPECT_TRUE(IsGone(stubborn));
  EXPECT_NE(kill(-stubborn_group, 0), 0) << "members of the stubborn group survived";
  EXPECT_FALSE(FileExists(dir + "/polite.pid"));
  EXPECT_FALSE(FileExists(dir + "/stubborn.pid"));
  EXPECT_FALSE(FileExists(dir + "/stubborn.pgrp"));
  EXPECT_THAT(launcher.Log(), HasSubstr("'stubborn'"));
  EXPECT_THAT(launcher.Log(), HasSubstr("sending SIGKILL"));
}

TEST(Launcher, SigintStopsTheChildrenToo) {
  std::string dir = TestDir();
  std::string config = WriteConfig(dir, R"(services:
  - name: daemon
    chroot_execvp: {name: sleep, args: ["1000"], pid_file: daemon.pid}
)");
  LauncherProcess launcher({"--config", config}, dir);
  ASSERT_TRUE(WaitFor([&] { return FileExists(dir + "/daemon.pid"); })) << launcher.Log();
  pid_t daemon = ReadNumber(dir + "/daemon.pid");

  ASSERT_EQ(kill(launcher.pid(), SIGINT), 0);
  std::optional<int> status = launcher.Wait(absl::Seconds(30));
  ASSERT_TRUE(status.has_value()) << launcher.Log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << launcher.Log();
  EXPECT_TRUE(IsGone(daemon));
  EXPECT_FALSE(FileExists(dir + "/daemon.pid"));
}

TEST(Launcher, ChildrenGetSigtermWhenTheLauncherDiesUnexpectedly) {
  std::string dir = TestDir();
  std::string config = WriteConfig(dir, R"(services:
  - name: orphan
    chroot_execvp: {name: sleep, args: ["1000"], pid_file: orphan.pid}
)");
  LauncherProcess launcher({"--config", config}, dir);
  ASSERT_TRUE(WaitFor([&] { return FileExists(dir + "/orphan.pid"); })) << launcher.Log();
  pid_t orphan = ReadNumber(dir + "/orphan.pid");
  ASSERT_TRUE(IsRunning(orphan));

  ASSERT_EQ(kill(launcher.pid(), SIGKILL), 0);
  ASSERT_TRUE(launcher.Wait(absl::Seconds(30)).has_value());
  EXPECT_TRUE(WaitFor([&] { return !IsRunning(orphan); }))
      << "the daemon outlived the launcher";
}

TEST(Launcher, CreatesTheStateDirBeforeStartingChildren) {
  std::string dir = TestDir();
  WriteFile(dir + "/sagator.yaml", R"(global:
  state_dir: state/run
services:
  - name: checker
    chroot_execvp:
      name: sh
      args: [-c, "test -d state/run && touch found; exec sleep 1000"]
      pid_file: checker.pid
)");
  LauncherProcess launcher({"--config", dir + "/sagator.yaml"}, dir);
  ASSERT_TRUE(WaitFor([&] {
    pid_t pid = ReadNumber(dir + "/checker.pid");
    return pid > 0 && HasExecdInto(pid, "sleep");
  })) << launcher.Log();
  EXPECT_TRUE(FileExists(dir + "/found"));
}

TEST(Launcher, StartsServiceBinariesFromBinPathWithAbsoluteConfigAndEntryName) {
  std::string dir = TestDir();
  ASSERT_EQ(mkdir((dir + "/bin1").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir + "/bin2").c_str(), 0755), 0);
  auto fake = [&](const std::string& folder, const std::string& binary) {
    WriteFile(absl::StrCat(dir, "/", folder, "/", binary),
              absl::StrCat("#!/bin/sh\necho \"", folder, " $*\" > '", dir, "/", binary,
                           ".args'\nexec sleep 1000\n"),
              0755);
  };
  fake("bin1", "sgfilterd");
  fake("bin2", "sgfilterd");
  fake("bin2", "scanner-svc");
  WriteConfig(dir, R"(chains: {c: [nothing]}
services:
  - name: scanner
    scanner_svc: {port: 0}
  - sgfilterd: {scanners: c, port: 0}
)");
  // A relative --config: the children still get an absolute one.
  LauncherProcess launcher({"--config", "sagator.yaml",
                            absl::StrCat("--bin_path=", dir, "/bin1:", dir, "/bin2")},
                           dir);

  ASSERT_TRUE(WaitFor([&] {
    return absl::EndsWith(ReadFile(dir + "/scanner-svc.args"), "\n") &&
           absl::EndsWith(ReadFile(dir + "/sgfilterd.args"), "\n");
  })) << launcher.Log();
  std::string config = RealPath(dir) + "/sagator.yaml";
  EXPECT_EQ(ReadFile(dir + "/scanner-svc.args"),
            absl::StrCat("bin2 --config ", config, " --service scanner\n"));
  EXPECT_EQ(ReadFile(dir + "/sgfilterd.args"),
            absl::StrCat("bin1 --config ", config, " --service sgfilterd\n"));
}

TEST(Launcher, MissingServiceBinaryIsAStartupErrorNamingItAndTheFolders) {
  std::string dir = TestDir();
  std::string config = WriteConfig(dir, R"(services:
  - name: scanner
    scanner_svc: {port: 0}
)");
  std::string output;
  EXPECT_EQ(
      RunLauncher({"--config", config, "--bin_path=" + dir + "/nowhere"}, dir, &output),
      2);
  EXPECT_THAT(output, HasSubstr("service 'scanner'"));
  EXPECT_THAT(output, HasSubstr("'scanner-svc' not found in " + dir + "/nowhere:"));
}

TEST(Launcher, MissingDaemonProgramIsAStartupError) {
  std::string dir = TestDir();
  std::string config = WriteConfig(dir, R"(services:
  - name: ghost
    chroot_execvp: {name: no-such-daemon-xyz}
)");
  std::string output;
  EXPECT_EQ(RunLauncher({"--config", config}, dir, &output), 2);
  EXPECT_THAT(output, HasSubstr("service 'ghost'"));
  EXPECT_THAT(output, HasSubstr("'no-such-daemon-xyz' not found in PATH"));
}

TEST(Launcher, RefusedRlimitIsAStartupErrorAndStartsNothing) {
  std::string dir = TestDir();
  // More open files than the kernel allows anyone (fs.nr_open).
  std::string config = WriteConfig(dir, R"(services:
  - rlimit: {NOFILE: 1000000000}
  - chroot_execvp: {name: touch, args: [started]}
)");
  std::string output;
  EXPECT_EQ(RunLauncher({"--config", config}, dir, &output), 2);
  EXPECT_THAT(output, HasSubstr("rlimit NOFILE=1000000000: setrlimit failed"));
  EXPECT_FALSE(FileExists(dir + "/started"));
}

TEST(Launcher, CheckConfigAcceptsAGoodFileAndRejectsABrokenOne) {
  std::string dir = TestDir();
  std::string good = WriteConfig(dir, R"(services:
  - chroot_execvp: {name: touch, args: [started]}
)");
  std::string output;
  EXPECT_EQ(RunLauncher({"--check-config", "--config", good}, dir, &output), 0);
  EXPECT_THAT(output, HasSubstr("configuration OK"));
  EXPECT_FALSE(FileExists(dir + "/started"));

  std::string broken = dir + "/broken.yaml";
  WriteFile(broken, "services:\n  - rlimit: {NOFILE: many}\n");
  EXPECT_EQ(RunLauncher({"--check_config", "--config", broken}, dir, &output), 2);
  EXPECT_THAT(output, HasSubstr("broken.yaml:2"));
  EXPECT_THAT(output, Not(HasSubstr("configuration OK")));
}

}  // namespace
}  // namespace sagator::launcher
