#include "services/sgfilterd/testing/test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

extern char** environ;

namespace sagator::sgfilterd::testing {

std::string Transaction(absl::string_view message, absl::string_view sender,
                        absl::string_view rcpt) {
  return absl::StrCat("MAIL FROM: <", sender, ">\nRCPT TO: <", rcpt, ">\nDATA ", message.size(),
                      "\n", message);
}

int ConnectLocal(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string ReadUntilClose(int fd, absl::Duration timeout, bool* closed) {
  std::string out;
  absl::Time deadline = absl::Now() + timeout;
  if (closed != nullptr) *closed = false;
  char buf[65536];
  for (;;) {
    int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) return out;
    pollfd p{fd, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left));
    if (n == 0) return out;
    if (n < 0) {
      if (errno == EINTR) continue;
      return out;
    }
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (closed != nullptr) *closed = true;
      return out;
    }
    out.append(buf, static_cast<size_t>(r));
  }
}

std::string Exchange(int port, absl::string_view request, absl::Duration timeout) {
  int fd = ConnectLocal(port);
  if (fd < 0) return "<connect failed>";
  SendAll(fd, request);
  std::string reply = ReadUntilClose(fd, timeout);
  close(fd);
  return reply;
}

std::string FirstLine(absl::string_view reply) {
  size_t nl = reply.find('\n');
  return std::string(nl == absl::string_view::npos ? reply : reply.substr(0, nl + 1));
}

long RaiseFdLimit(long n) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur != RLIM_INFINITY && static_cast<long>(rl.rlim_cur) < n) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? n : std::min<rlim_t>(n, rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur == RLIM_INFINITY ? n : static_cast<long>(rl.rlim_cur);
}

namespace {

std::string TempPath(absl::string_view suffix) {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp ? tmp : "/tmp", "/sgf-", getpid(), "-", counter++, suffix);
}

bool WriteFile(const std::string& path, absl::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return out.good();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Builds the child's environment before fork (nothing unsafe after it).
std::vector<std::string> MergeEnv(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    std::string key = entry.substr(0, entry.find('='));
    bool overridden = false;
    for (const std::string& x : extra) {
      if (x.substr(0, x.find('=')) == key) overridden = true;
    }
    if (!overridden) env.push_back(entry);
  }
  for (const std::string& x : extra) {
    if (x.back() != '=') env.push_back(x);
  }
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

int WaitWithTimeout(pid_t pid, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (r < 0) return -1;
    if (absl::Now() > deadline) return -2;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

}  // namespace

ProcessResult RunProcess(const std::vector<std::string>& argv, absl::string_view stdin_data,
                         const std::vector<std::string>& env, absl::Duration timeout) {
  ProcessResult result;
  std::string in_path = TempPath(".in");
  std::string out_path = TempPath(".out");
  std::string err_path = TempPath(".err");
  WriteFile(in_path, stdin_data);
  std::vector<std::string> args = argv;
  std::vector<std::string> envs = MergeEnv(env);
  std::vector<char*> cargs = CStrings(args);
  std::vector<char*> cenv = CStrings(envs);
  int in_fd = open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
  int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    execve(cargs[0], cargs.data(), cenv.data());
    _exit(127);
  }
  close(in_fd);
  close(out_fd);
  close(err_fd);
  int code = WaitWithTimeout(pid, timeout);
  if (code == -2) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    code = -1;
  }
  result.exit_code = code >= 128 ? -1 : code;
  result.out = ReadFile(out_path);
  result.err = ReadFile(err_path);
  unlink(in_path.c_str());
  unlink(out_path.c_str());
  unlink(err_path.c_str());
  return result;
}

}  // namespace sagator::sgfilterd::testing
