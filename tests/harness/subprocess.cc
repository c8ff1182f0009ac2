#include "tests/harness/subprocess.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

extern char** environ;

namespace sagator::testing {

Subprocess::Subprocess(std::vector<std::string> argv, std::map<std::string, std::string> env)
    : argv_(std::move(argv)), env_(std::move(env)) {}

Subprocess::~Subprocess() {
  if (pid_ > 0) Stop(absl::Seconds(5));
}

absl::Status Subprocess::Start() {
  std::vector<char*> args;
  for (std::string& a : argv_) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    for (const auto& [k, v] : env_) setenv(k.c_str(), v.c_str(), 1);
    if (!output_path_.empty()) {
      int fd = open(output_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
    }
    execv(args[0], args.data());
    fprintf(stderr, "exec %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  pid_ = pid;
  status_ = -1;
  return absl::OkStatus();
}

void Subprocess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool Subprocess::Running() {
  if (pid_ <= 0) return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = st;
    pid_ = -1;
    return false;
  }
  return true;
}

int Subprocess::Wait(absl::Duration timeout) {
  absl::Time end = absl::Now() + timeout;
  while (Running()) {
    if (absl::Now() >= end) return -1;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return status_;
}

int Subprocess::Stop(absl::Duration grace) {
  if (pid_ <= 0) return status_;
  kill(pid_, SIGTERM);
  int st = Wait(grace);
  if (st == -1 && pid_ > 0) {
    kill(pid_, SIGKILL);
    st = Wait(absl::Seconds(10));
  }
  return st;
}

absl::StatusOr<int> WaitForPortFile(const std::string& path, absl::Duration timeout) {
  absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    std::ifstream in(path);
    std::string s;
    if (in && std::getline(in, s)) {
      int port;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(s), &port) && port > 0) return port;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("no port in ", path));
}

absl::Status WaitForTcpPort(int port, absl::Duration timeout) {
  absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    if (ok) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("nothing listens on port ", port));
}

int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

int64_t ResidentBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "VmRSS:")) {
      int64_t kb = 0;
      std::istringstream(std::string(rest)) >> kb;
      return kb * 1024;
    }
  }
  return -1;
}

std::string RunfilePath(const std::string& repo_relative) {
  const char* srcdir = getenv("TEST_SRCDIR");
  if (srcdir != nullptr) return absl::StrCat(srcdir, "/sagator/", repo_relative);
  return repo_relative;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  if (!out) {
    fprintf(stderr, "cannot write %s\n", path.c_str());
    abort();
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string MakeTempDir(const std::string& prefix) {
  const char* base = getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base ? base : "/tmp", "/", prefix, "XXXXXX");
  char* d = mkdtemp(tmpl.data());
  if (d == nullptr) abort();
  return d;
}

}  // namespace sagator::testing
