// The launcher with a real peer: Debian's clamd started through chroot_execvp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "services/launcher/testing/harness.h"

namespace sagator::launcher {
namespace {

using testing::FileExists;
using testing::IsGone;
using testing::LauncherProcess;
using testing::ReadFile;
using testing::ReadNumber;
using testing::RunfilePath;
using testing::TestDir;
using testing::WaitFor;
using testing::WriteFile;

constexpr char kClamd[] = "/usr/sbin/clamd";

// Sends a clamd command on its local socket; returns the reply, "" when it fails.
std::string AskClamd(const std::string& socket_path, const std::string& command) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  timeval timeout = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      write(fd, command.data(), command.size()) == static_cast<ssize_t>(command.size())) {
    char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) reply.append(buf, n);
  }
  close(fd);
  return reply;
}

// A folder for the socket: the test's own when its path fits in sun_path.
std::string SocketDir(const std::string& test_dir) {
  if (test_dir.size() + sizeof("/clamd.ctl") < sizeof(sockaddr_un::sun_path)) {
    return test_dir;
  }
  char tmpl[] = "/tmp/sagator-launcher-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  EXPECT_NE(dir, nullptr) << strerror(errno);
  return dir != nullptr ? dir : test_dir;
}

TEST(LauncherWithClamd, StartsClamdThatAnswersPingAndStopsItOnSigterm) {
  ASSERT_EQ(access(kClamd, X_OK), 0) << kClamd << " (Debian package clamav-daemon)";
  std::string dir = TestDir();
  std::string db = dir + "/db";
  ASSERT_EQ(mkdir(db.c_str(), 0755), 0);
  WriteFile(db + "/sagator.ndb", ReadFile(RunfilePath("data/clamav/sagator.ndb")));
  ASSERT_FALSE(ReadFile(db + "/sagator.ndb").empty());
  std::string socket_dir = SocketDir(dir);
  std::string socket_path = socket_dir + "/clamd.ctl";
  // No `User`: clamd keeps the user that starts it (root or not).
  WriteFile(dir + "/clamd.conf", absl::StrCat("DatabaseDirectory ", db,
                                              "\n"
                                              "LocalSocket ",
                                              socket_path,
                                              "\n"
                                              "Foreground yes\n"
                                              "LogFile ",
                                              dir, "/clamd.log\n"));
  std::string config = dir + "/sagator.yaml";
  WriteFile(config, absl::StrCat(R"(global:
  state_dir: run
  supervision: {restart_backoff: 100ms, stop_grace: 10s}
services:
  - name: clamd
    chroot_execvp:
      name: )",
                                 kClamd, R"(
      args: [--config-file=clamd.conf]
      pid_file: clamd.pid
      pgrp_file: clamd.pgrp
)"));
  LauncherProcess launcher({"--config", config}, dir);

  ASSERT_TRUE(
      WaitFor([&] { return AskClamd(socket_path, std::string("zPING\0", 6)) != ""; },
              absl::Seconds(60)))
      << launcher.Log() << ReadFile(dir + "/clamd.log");
  EXPECT_EQ(AskClamd(socket_path, std::string("zPING\0", 6)), std::string("PONG\0", 5));
  pid_t clamd = ReadNumber(dir + "/clamd.pid");
  ASSERT_GT(clamd, 0);
  EXPECT_EQ(ReadFile(absl::StrCat("/proc/", clamd, "/comm")), "clamd\n");
  EXPECT_EQ(ReadNumber(dir + "/clamd.pgrp"), clamd);

  ASSERT_EQ(kill(launcher.pid(), SIGTERM), 0);
  std::optional<int> status = launcher.Wait(absl::Seconds(30));
  ASSERT_TRUE(status.has_value()) << launcher.Log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << launcher.Log();
  EXPECT_TRUE(IsGone(clamd));
  EXPECT_FALSE(FileExists(dir + "/clamd.pid"));
  EXPECT_FALSE(FileExists(dir + "/clamd.pgrp"));
  // clamd went through its own SIGTERM handling, not SIGKILL.
  EXPECT_THAT(launcher.Log(), ::testing::HasSubstr("'clamd'"));
  EXPECT_THAT(launcher.Log(), ::testing::Not(::testing::HasSubstr("sending SIGKILL")));
  if (socket_dir != dir) std::system(absl::StrCat("rm -rf '", socket_dir, "'").c_str());
}

}  // namespace
}  // namespace sagator::launcher
