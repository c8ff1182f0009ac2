#include "tests/harness/clamd_daemon.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace sagator::harness {
namespace {

namespace fs = std::filesystem;

constexpr char kClamd[] = "/usr/sbin/clamd";
constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;

std::string ErrnoText(int err) {
  char buf[256];
  return strerror_r(err, buf, sizeof(buf));
}

absl::Status ErrnoStatus(absl::string_view what, int err) {
  return absl::InternalError(absl::StrCat(what, ": ", ErrnoText(err)));
}

absl::StatusOr<std::string> DefaultSignatureFile() {
  for (const char* var : {"TEST_SRCDIR", "RUNFILES_DIR"}) {
    const char* root = getenv(var);
    if (root == nullptr || *root == '\0') continue;
    std::string path = absl::StrCat(root, "/sagator/data/clamav/sagator.ndb");
    if (fs::exists(path)) return path;
  }
  return absl::FailedPreconditionError(
      "no signature file: add data = [\"//data:signatures\"] to the target or set "
      "ClamdDaemon::Options::signature_file");
}

absl::StatusOr<int> PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("socket", errno);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = 0;
  socklen_t len = sizeof(sa);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus("bind 127.0.0.1:0", err);
  }
  close(fd);
  return ntohs(sa.sin_port);
}

// One zPING over a fresh connection; true when clamd answers PONG.
bool Ping(const sockaddr* sa, socklen_t len) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  std::string reply;
  if (connect(fd, sa, len) == 0 && send(fd, "zPING", 6, MSG_NOSIGNAL) == 6) {
    char buf[64];
    while (reply.find('\0') == std::string::npos && reply.size() < 64) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      reply.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return absl::StartsWith(reply, "PONG");
}

std::string Tail(const std::string& path, int lines) {
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<std::string> all = absl::StrSplit(ss.str(), '\n', absl::SkipEmpty());
  if (all.size() > static_cast<size_t>(lines)) all.erase(all.begin(), all.end() - lines);
  return absl::StrJoin(all, "\n");
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("ended with wait status ", status);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ClamdDaemon>> ClamdDaemon::Start(const std::string& dir,
                                                                Options options) {
  if (options.signature_file.empty()) {
    absl::StatusOr<std::string> sigs = DefaultSignatureFile();
    if (!sigs.ok()) return sigs.status();
    options.signature_file = *sigs;
  }
  std::unique_ptr<ClamdDaemon> d(new ClamdDaemon());
  d->dir_ = fs::absolute(dir).lexically_normal().string();
  const std::string db_dir = d->dir_ + "/db";
  const std::string tmp_dir = options.temporary_directory.empty()
                                  ? d->dir_ + "/tmp"
                                  : options.temporary_directory;
  std::error_code ec;
  for (const std::string& folder : {d->dir_, db_dir, tmp_dir}) {
    fs::create_directories(folder, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("mkdir ", folder, ": ", ec.message()));
    }
  }
  const std::string sig_copy =
      db_dir + "/" + fs::path(options.signature_file).filename().string();
  fs::copy_file(options.signature_file, sig_copy, fs::copy_options::overwrite_existing,
                ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("copy ", options.signature_file, " to ",
                                            db_dir, ": ", ec.message()));
  }

  d->socket_path_ = d->dir_ + "/clamd.sock";
  if (d->socket_path_.size() > kMaxSocketPath) {
    char short_dir[] = "/tmp/clamd-XXXXXX";
    if (mkdtemp(short_dir) == nullptr) return ErrnoStatus("mkdtemp", errno);
    d->short_socket_dir_ = short_dir;
    d->socket_path_ = d->short_socket_dir_ + "/clamd.sock";
  }
  fs::remove(d->socket_path_, ec);
  d->log_file_ = d->dir_ + "/clamd.log";
  d->output_file_ = d->dir_ + "/clamd.out";
  const std::string config_file = d->dir_ + "/clamd.conf";

  // A port picked here may be taken before clamd binds it: try a few.
  const int attempts = options.tcp ? 3 : 1;
  absl::Status last;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    std::vector<std::string> lines = {
        "# Written by tests/harness/clamd_daemon.cc",
        "Foreground yes",
        absl::StrCat("DatabaseDirectory ", db_dir),
        absl::StrCat("LocalSocket ", d->socket_path_),
        absl::StrCat("LogFile ", d->log_file_),
        "LogTime yes",
        absl::StrCat("TemporaryDirectory ", tmp_dir),
        absl::StrCat("DisableCache ", options.disable_cache ? "yes" : "no"),
    };
    d->tcp_port_ = 0;
    if (options.tcp) {
      absl::StatusOr<int> port = PickFreePort();
      if (!port.ok()) return port.status();
      d->tcp_port_ = *port;
      lines.push_back(absl::StrCat("TCPSocket ", d->tcp_port_));
      lines.push_back("TCPAddr 127.0.0.1");
    }
    if (options.stream_max_length > 0) {
      lines.push_back(absl::StrCat("StreamMaxLength ", options.stream_max_length));
    }
    if (options.max_threads > 0) {
      lines.push_back(absl::StrCat("MaxThreads ", options.max_threads));
    }
    for (const std::string& extra : options.extra_config) lines.push_back(extra);
    {
      std::ofstream out(config_file, std::ios::trunc);
      out << absl::StrJoin(lines, "\n") << "\n";
      if (!out) return absl::InternalError(absl::StrCat("cannot write ", config_file));
    }

    last = d->Launch(config_file, d->output_file_);
    if (!last.ok()) return last;
    last = d->WaitReady(options.start_timeout);
    if (last.ok()) return d;
    const bool exited = d->pid_ < 0;
    (void)d->Terminate();
    if (!exited || !absl::StrContains(absl::AsciiStrToLower(last.message()), "bind")) {
      break;
    }
  }
  return last;
}

absl::Status ClamdDaemon::Launch(const std::string& config_file,
                                 const std::string& output_file) {
  // Everything the child needs is prepared before fork(): after it, only
  // async-signal-safe calls.
  const std::string config_arg = "--config-file=" + config_file;
  char* const argv[] = {const_cast<char*>(kClamd), const_cast<char*>(config_arg.c_str()),
                        nullptr};
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) return ErrnoStatus("open /dev/null", errno);
  int out_fd = open(output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out_fd < 0) {
    int err = errno;
    close(null_fd);
    return ErrnoStatus(absl::StrCat("open ", output_file), err);
  }
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(null_fd, STDIN_FILENO);
    dup2(out_fd, STDOUT_FILENO);
    dup2(out_fd, STDERR_FILENO);
    close_range(3, ~0U, 0);
    execv(kClamd, argv);
    _exit(127);
  }
  int err = errno;
  close(null_fd);
  close(out_fd);
  if (pid < 0) return ErrnoStatus("fork", err);
  pid_ = pid;
  return absl::OkStatus();
}

absl::Status ClamdDaemon::WaitReady(absl::Duration timeout) {
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, socket_path_.data(), socket_path_.size());
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  in.sin_port = htons(static_cast<uint16_t>(tcp_port_));

  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return absl::FailedPreconditionError(absl::StrCat(
          kClamd, " ", DescribeExit(status), " while starting; log:\n", LogTail()));
    }
    if (Ping(reinterpret_cast<sockaddr*>(&un), sizeof(un)) &&
        (tcp_port_ == 0 || Ping(reinterpret_cast<sockaddr*>(&in), sizeof(in)))) {
      return absl::OkStatus();
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(kClamd, " did not answer PING within ",
                       absl::FormatDuration(timeout), "; log:\n", LogTail()));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::Status ClamdDaemon::Stop() {
  absl::Status result = Terminate();
  if (!short_socket_dir_.empty()) {
    std::error_code ec;
    fs::remove_all(short_socket_dir_, ec);
    short_socket_dir_.clear();
  }
  return result;
}

absl::Status ClamdDaemon::Terminate() {
  absl::Status result;
  if (pid_ > 0) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      result = absl::InternalError(absl::StrCat(kClamd, " ", DescribeExit(status),
                                                " before Stop(); log:\n", LogTail()));
    } else {
      kill(pid_, SIGTERM);
      const absl::Time kill_at = absl::Now() + absl::Seconds(5);
      while ((r = waitpid(pid_, &status, WNOHANG)) == 0 && absl::Now() < kill_at) {
        absl::SleepFor(absl::Milliseconds(10));
      }
      if (r == 0) {
        kill(pid_, SIGKILL);
        while ((r = waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
        }
      }
      if (r < 0) result = ErrnoStatus("waitpid", errno);
    }
    pid_ = -1;
  }
  return result;
}

ClamdDaemon::~ClamdDaemon() { (void)Stop(); }

std::string ClamdDaemon::tcp_address() const {
  return tcp_port_ == 0 ? "" : absl::StrCat("127.0.0.1:", tcp_port_);
}

std::string ClamdDaemon::LogTail() const {
  return absl::StrCat(Tail(log_file_, 15), "\n--- clamd.out ---\n",
                      Tail(output_file_, 15));
}

}  // namespace sagator::harness
