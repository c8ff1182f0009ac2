#include "services/launcher/testing/harness.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

extern char** environ;

namespace sagator::launcher::testing {

std::string TestDir() {
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/",
                                 info->test_suite_name(), ".", info->name());
  std::string rm = absl::StrCat("rm -rf '", dir, "'");
  if (std::system(rm.c_str()) != 0) ADD_FAILURE() << "cannot clear " << dir;
  if (mkdir(dir.c_str(), 0755) != 0)
    ADD_FAILURE() << "mkdir " << dir << ": " << strerror(errno);
  return dir;
}

std::string RunfilePath(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/sagator/", path);
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

bool FileExists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& contents, int mode) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  ASSERT_TRUE(out) << "cannot write " << path;
  chmod(path.c_str(), mode);
}

long ReadNumber(const std::string& path) {
  long n;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(path)), &n)) return -1;
  return n;
}

bool IsRunning(pid_t pid) {
  std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

bool IsGone(pid_t pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

namespace {

pid_t StartLauncher(const std::vector<std::string>& args, const std::string& cwd,
                    const std::vector<std::string>& env, const std::string& log_path) {
  std::vector<std::string> argv_strings = {RunfilePath("services/launcher/sagator")};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  pid_t pid = fork();
  if (pid == 0) {
    if (chdir(cwd.c_str()) != 0) _exit(126);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(log_fd);
  return pid;
}

}  // namespace

LauncherProcess::LauncherProcess(const std::vector<std::string>& args,
                                 const std::string& cwd,
                                 const std::vector<std::string>& env)
    : log_path_(absl::StrCat(cwd, "/launcher.log")) {
  pid_ = StartLauncher(args, cwd, env, log_path_);
  EXPECT_GT(pid_, 0) << "fork: " << strerror(errno);
}

LauncherProcess::~LauncherProcess() {
  if (pid_ <= 0 || exited_) return;
  kill(pid_, SIGTERM);
  if (!Wait(absl::Seconds(30)).has_value()) {
    ADD_FAILURE() << "the launcher ignored SIGTERM; killing it";
    kill(pid_, SIGKILL);
    Wait(absl::Seconds(30));
  }
}

std::optional<int> LauncherProcess::Wait(absl::Duration timeout) {
  if (exited_) return wait_status_;
  bool done = WaitFor(
      [&] {
        pid_t r = waitpid(pid_, &wait_status_, WNOHANG);
        return r == pid_ || (r < 0 && errno == ECHILD);
      },
      timeout);
  if (!done) return std::nullopt;
  exited_ = true;
  return wait_status_;
}

int RunLauncher(const std::vector<std::string>& args, const std::string& cwd,
                std::string* output, absl::Duration timeout) {
  std::string log_path = absl::StrCat(cwd, "/launcher.log");
  unlink(log_path.c_str());
  LauncherProcess launcher(args, cwd);
  std::optional<int> status = launcher.Wait(timeout);
  *output = launcher.Log();
  if (!status.has_value() || !WIFEXITED(*status)) return -1;
  return WEXITSTATUS(*status);
}

}  // namespace sagator::launcher::testing
