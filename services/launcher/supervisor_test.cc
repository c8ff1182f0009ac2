#include "services/launcher/supervisor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/launcher/testing/harness.h"

namespace sagator::launcher {
namespace {

using testing::FileExists;
using ::testing::HasSubstr;
using testing::IsGone;
using testing::IsRunning;
using testing::ReadFile;
using testing::ReadNumber;
using testing::TestDir;
using testing::WaitFor;
using testing::WriteFile;

TEST(RestartBackoff, StartsAtTheInitialDelayAndDoublesUpToTheMaximum) {
  RestartBackoff backoff(absl::Milliseconds(50), absl::Milliseconds(300),
                         absl::Seconds(60));
  EXPECT_EQ(backoff.NextDelay(absl::ZeroDuration()), absl::Milliseconds(50));
  EXPECT_EQ(backoff.NextDelay(absl::ZeroDuration()), absl::Milliseconds(100));
  EXPECT_EQ(backoff.NextDelay(absl::ZeroDuration()), absl::Milliseconds(200));
  EXPECT_EQ(backoff.NextDelay(absl::ZeroDuration()), absl::Milliseconds(300));
  EXPECT_EQ(backoff.NextDelay(absl::Seconds(59)), absl::Milliseconds(300));
}

TEST(RestartBackoff, StartsOverAfterARunOfStableAfter) {
  RestartBackoff backoff(absl::Seconds(1), absl::Seconds(30), absl::Seconds(60));
  backoff.NextDelay(absl::ZeroDuration());
  backoff.NextDelay(absl::ZeroDuration());
  EXPECT_EQ(backoff.NextDelay(absl::ZeroDuration()), absl::Seconds(4));
  EXPECT_EQ(backoff.NextDelay(absl::Seconds(60)), absl::Seconds(1));
  EXPECT_EQ(backoff.NextDelay(absl::ZeroDuration()), absl::Seconds(2));
}

TEST(RestartBackoff, InitialDelayAboveTheMaximumIsCapped) {
  RestartBackoff backoff(absl::Seconds(10), absl::Seconds(2), absl::Seconds(60));
  EXPECT_EQ(backoff.NextDelay(absl::ZeroDuration()), absl::Seconds(2));
}

TEST(FindProgram, SearchesPathInOrder) {
  std::string dir = TestDir();
  ASSERT_EQ(mkdir((dir + "/a").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir + "/b").c_str(), 0755), 0);
  WriteFile(dir + "/a/tool", "not executable\n", 0644);
  WriteFile(dir + "/b/tool", "#!/bin/sh\n", 0755);
  absl::StatusOr<std::string> found =
      FindProgram("tool", absl::StrCat(dir, "/a:", dir, "/b"));
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, dir + "/b/tool");
}

TEST(FindProgram, NamesThePathWhenTheProgramIsMissing) {
  absl::StatusOr<std::string> found = FindProgram("no-such-tool", "/nowhere:/none");
  EXPECT_EQ(found.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(found.status().message(), HasSubstr("'no-such-tool' not found in PATH "
                                                  "(/nowhere:/none)"));
}

TEST(FindProgram, NameWithASlashIsTakenRelativeToTheWorkingDir) {
  std::string dir = TestDir();
  WriteFile(dir + "/run.sh", "#!/bin/sh\n", 0755);
  EXPECT_EQ(*FindProgram("./run.sh", "/nowhere", dir), dir + "/./run.sh");
  EXPECT_EQ(*FindProgram("/bin/sh", "/nowhere", dir), "/bin/sh");
  EXPECT_FALSE(FindProgram("./missing.sh", "/bin", dir).ok());
}

TEST(EffectivePath, PrefersThePathOfTheEnvironmentAdditions) {
  EXPECT_EQ(EffectivePath({{"PATH", "/opt/bin"}}), "/opt/bin");
  EXPECT_EQ(EffectivePath({{"LANG", "C"}}), std::getenv("PATH"));
}

TEST(WriteFileAtomically, ReplacesTheContentsAndLeavesNoTemporaryFile) {
  std::string dir = TestDir();
  std::string path = dir + "/x.pid";
  ASSERT_TRUE(WriteFileAtomically(path, "1\n").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "22\n").ok());
  EXPECT_EQ(ReadFile(path), "22\n");
  EXPECT_EQ(std::system(absl::StrCat("test $(ls '", dir, "' | wc -l) -eq 1").c_str()), 0);
  EXPECT_FALSE(WriteFileAtomically(dir + "/no/such/folder/x.pid", "1").ok());
}

// Runs a Supervisor on its own thread until the test stops it.
class RunningSupervisor {
 public:
  RunningSupervisor(std::vector<ChildSpec> children, SupervisionPolicy policy) {
    absl::StatusOr<std::unique_ptr<Supervisor>> s =
        Supervisor::Create(std::move(children), policy);
    EXPECT_TRUE(s.ok()) << s.status();
    supervisor_ = *std::move(s);
  }
  ~RunningSupervisor() { Stop(); }

  void Start(std::function<void()> on_thread = [] {}) {
    thread_ = std::thread([this, on_thread] {
      on_thread();
      EXPECT_TRUE(supervisor_->Run().ok());
    });
  }
  void Stop() {
    supervisor_->RequestStop();
    if (thread_.joinable()) thread_.join();
  }
  Supervisor& supervisor() { return *supervisor_; }

 private:
  std::unique_ptr<Supervisor> supervisor_;
  std::thread thread_;
};

SupervisionPolicy FastPolicy() {
  return {.restart_backoff = absl::Milliseconds(20),
          .max_restart_backoff = absl::Milliseconds(100),
          .stable_after = absl::Seconds(30),
          .stop_grace = absl::Seconds(5)};
}

TEST(Supervisor, ChildStartsWithACleanSignalMaskAndDefaultHandlers) {
  std::string dir = TestDir();
  ChildSpec child{.name = "signals",
                  .argv = {"/bin/sh", "-c",
                           "grep -E '^Sig(Blk|Ign):' /proc/self/status > signals.tmp && "
                           "mv signals.tmp signals.txt; exec sleep 1000"},
                  .working_dir = dir};
  RunningSupervisor running({child}, FastPolicy());
  struct sigaction ignore = {}, saved_usr2;
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGUSR2, &ignore, &saved_usr2);
  running.Start([] {
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
  });
  bool written = WaitFor([&] { return FileExists(dir + "/signals.txt"); });
  sigaction(SIGUSR2, &saved_usr2, nullptr);
  ASSERT_TRUE(written);
  EXPECT_EQ(ReadFile(dir + "/signals.txt"),
            "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST(Supervisor, StopRequestedBeforeRunStartsNothing) {
  std::string dir = TestDir();
  ChildSpec child{.name = "never", .argv = {"touch", dir + "/started"}};
  absl::StatusOr<std::unique_ptr<Supervisor>> s =
      Supervisor::Create({child}, FastPolicy());
  ASSERT_TRUE(s.ok());
  (*s)->RequestStop();
  EXPECT_TRUE((*s)->Run().ok());
  EXPECT_FALSE(FileExists(dir + "/started"));
}

TEST(Supervisor, RetriesAProgramThatCannotBeExecutedUntilItCan) {
  std::string dir = TestDir();
  std::string program = dir + "/daemon";
  WriteFile(program, "not a program\n", 0755);  // executable bit, no #! line: ENOEXEC
  ChildSpec child{.name = "broken", .argv = {program}, .pid_file = dir + "/daemon.pid"};
  RunningSupervisor running({child}, FastPolicy());
  running.Start();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(FileExists(dir + "/daemon.pid"));

  WriteFile(program + ".new", "#!/bin/sh\nexec sleep 1000\n", 0755);
  ASSERT_EQ(rename((program + ".new").c_str(), program.c_str()), 0);
  pid_t pid = -1;
  ASSERT_TRUE(WaitFor([&] {
    pid = ReadNumber(dir + "/daemon.pid");
    return pid > 0;
  }));
  EXPECT_TRUE(IsRunning(pid));
  running.Stop();
  EXPECT_TRUE(IsGone(pid));
  EXPECT_FALSE(FileExists(dir + "/daemon.pid"));
}

TEST(Supervisor, LeftoversOfACrashedDaemonsGroupAreTerminated) {
  std::string dir = TestDir();
  ChildSpec child{
      .name = "leaky",
      .argv = {"/bin/sh", "-c",
               "if [ -e helper.pid ]; then exec sleep 1000; fi; "
               "sleep 1000 & echo $! > helper.tmp; mv helper.tmp helper.pid; exit 1"},
      .own_process_group = true,
      .working_dir = dir,
      .pid_file = dir + "/leaky.pid"};
  RunningSupervisor running({child}, FastPolicy());
  running.Start();
  // The first run leaves a helper behind and exits; the second one stays up.
  pid_t helper = -1;
  ASSERT_TRUE(WaitFor([&] {
    helper = ReadNumber(dir + "/helper.pid");
    return helper > 0;
  }));
  EXPECT_TRUE(WaitFor([&] { return IsGone(helper); }));
  pid_t second = -1;
  ASSERT_TRUE(WaitFor([&] {
    second = ReadNumber(dir + "/leaky.pid");
    return second > 0 && IsRunning(second) &&
           ReadFile(absl::StrCat("/proc/", second, "/comm")) == "sleep\n";
  }));
}

TEST(Supervisor, StopKillsTheWholeGroupOfADaemon) {
  std::string dir = TestDir();
  ChildSpec child{.name = "forking",
                  .argv = {"/bin/sh", "-c",
                           "sleep 1000 & echo $! > helper.tmp; mv helper.tmp helper.pid; "
                           "wait"},
                  .own_process_group = true,
                  .working_dir = dir,
                  .pid_file = dir + "/forking.pid"};
  RunningSupervisor running({child}, FastPolicy());
  running.Start();
  ASSERT_TRUE(WaitFor([&] {
    return FileExists(dir + "/helper.pid") && FileExists(dir + "/forking.pid");
  }));
  pid_t leader = ReadNumber(dir + "/forking.pid");
  pid_t helper = ReadNumber(dir + "/helper.pid");
  EXPECT_EQ(getpgid(helper), leader);
  running.Stop();
  EXPECT_TRUE(IsGone(leader));
  EXPECT_TRUE(IsGone(helper));
}

}  // namespace
}  // namespace sagator::launcher
