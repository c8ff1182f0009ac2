#include "services/launcher/supervisor.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace sagator::launcher {
namespace {

// Where the SIGCHLD handler writes to wake Run() up; -1 when no Supervisor runs.
std::atomic<int> g_sigchld_wake_fd{-1};

void OnSigchld(int) {
  int saved_errno = errno;
  int fd = g_sigchld_wake_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    char c = 'c';
    // A full pipe already holds a wake-up, so a failed write loses nothing.
    (void)!write(fd, &c, 1);
  }
  errno = saved_errno;
}

// Time since an arbitrary point, unaffected by changes of the wall clock.
absl::Duration MonotonicNow() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return absl::DurationFromTimespec(ts);
}

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

std::string SignalName(int signo) {
  const char* abbrev = sigabbrev_np(signo);
  return abbrev != nullptr ? absl::StrCat("SIG", abbrev) : absl::StrCat(signo);
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return absl::StrCat("exited with status ", WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    int sig = WTERMSIG(wait_status);
    return absl::StrCat("was killed by signal ", sig, " (", SignalName(sig), ")",
                        WCOREDUMP(wait_status) ? ", core dumped" : "");
  }
  return absl::StrCat("changed state (wait status ", wait_status, ")");
}

// True while the process group `pgid` has members (zombies included).
bool GroupExists(pid_t pgid) { return kill(-pgid, 0) == 0 || errno != ESRCH; }

void RemoveFileIfSet(const std::string& path) {
  if (path.empty()) return;
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    PLOG(ERROR) << "cannot remove " << path;
  }
}

// What the child reports through the status pipe when it cannot exec.
struct ExecFailure {
  enum Stage : int { kChdir = 1, kExec = 2 };
  int stage;
  int error;
};

// The kernel's struct sigaction on Linux (glibc's differs in the size of the mask).
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};

// Runs in the forked child: only async-signal-safe calls, everything prepared by
// the parent.
[[noreturn]] void BecomeChild(const ChildSpec& spec, const char* program,
                              char* const* argv, char* const* envp, int report_fd,
                              pid_t parent) {
  if (spec.own_process_group) setpgid(0, 0);
  // The launcher going away unexpectedly must not leave its daemons behind.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(127);  // it went away before prctl()
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    if (sigaction(sig, &dfl, nullptr) != 0) {
      // glibc refuses to touch the signals it keeps for itself (32, 33), yet one
      // the launcher inherited as ignored would stay ignored across exec.
      KernelSigaction kernel_dfl = {SIG_DFL, 0, nullptr, 0};
      syscall(SYS_rt_sigaction, sig, &kernel_dfl, nullptr, sizeof kernel_dfl.mask);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  ExecFailure failure;
  if (!spec.working_dir.empty() && chdir(spec.working_dir.c_str()) != 0) {
    failure = {ExecFailure::kChdir, errno};
  } else {
    execve(program, argv, envp);
    failure = {ExecFailure::kExec, errno};
  }
  (void)!write(report_fd, &failure, sizeof failure);
  _exit(127);
}

// Forks and execs one child; returns its PID once the exec succeeded.
absl::StatusOr<pid_t> Spawn(const ChildSpec& spec) {
  if (spec.argv.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("'", spec.name, "' has no program"));
  }
  absl::StatusOr<std::string> program =
      FindProgram(spec.argv[0], EffectivePath(spec.env), spec.working_dir);
  if (!program.ok()) return program.status();

  // Everything the child needs is built here: after fork() it may not allocate.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    absl::string_view entry(*e);
    absl::string_view name = entry.substr(0, entry.find('='));
    bool replaced = std::any_of(spec.env.begin(), spec.env.end(),
                                [&](const auto& kv) { return kv.first == name; });
    if (!replaced) env_strings.emplace_back(entry);
  }
  for (const auto& [name, value] : spec.env) {
    env_strings.push_back(absl::StrCat(name, "=", value));
  }
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = spec.argv;
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  // Signals stay blocked until the child has reset its handlers, so a signal meant
  // for the launcher never runs the launcher's handlers in the child.
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    BecomeChild(spec, program->c_str(), argv.data(), envp.data(), report[1], parent);
  }
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  close(report[1]);
  if (pid < 0) {
    close(report[0]);
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", strerror(fork_errno)));
  }
  // Also done by the child; doing it here too means the group exists as soon as
  // Spawn() returns. Fails harmlessly when the child already exec'd.
  if (spec.own_process_group) setpgid(pid, pid);

  ExecFailure failure;
  ssize_t n;
  do {
    n = read(report[0], &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  close(report[0]);
  if (n != sizeof failure) return pid;  // closed on exec: the program runs

  int wait_status;
  while (waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
  }
  if (failure.stage == ExecFailure::kChdir) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot enter ", spec.working_dir, ": ", strerror(failure.error)));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot execute ", *program, ": ", strerror(failure.error)));
}

}  // namespace

RestartBackoff::RestartBackoff(absl::Duration initial, absl::Duration max,
                               absl::Duration stable_after)
    : initial_(std::min(initial, max)),
      max_(max),
      stable_after_(stable_after),
      next_(initial_) {}

absl::Duration RestartBackoff::NextDelay(absl::Duration ran) {
  if (ran >= stable_after_) next_ = initial_;
  absl::Duration delay = next_;
  next_ = std::min(next_ * 2, max_);
  return delay;
}

absl::StatusOr<std::string> FindProgram(absl::string_view program,
                                        absl::string_view path_list,
                                        absl::string_view working_dir) {
  if (program.empty()) return absl::InvalidArgumentError("empty program name");
  auto in_working_dir = [&](absl::string_view p) {
    if (p.empty()) p = ".";
    if (p[0] == '/' || working_dir.empty()) return std::string(p);
    return absl::StrCat(working_dir, "/", p);
  };
  if (program.find('/') != absl::string_view::npos) {
    std::string path = in_working_dir(program);
    if (IsExecutableFile(path)) return path;
    return absl::NotFoundError(
        absl::StrCat("program ", path, " is not an executable file"));
  }
  for (absl::string_view dir : absl::StrSplit(path_list, ':')) {
    std::string path = absl::StrCat(in_working_dir(dir), "/", program);
    if (IsExecutableFile(path)) return path;
  }
  return absl::NotFoundError(
      absl::StrCat("program '", program, "' not found in PATH (", path_list, ")"));
}

std::string EffectivePath(const std::vector<std::pair<std::string, std::string>>& env) {
  for (auto it = env.rbegin(); it != env.rend(); ++it) {
    if (it->first == "PATH") return it->second;
  }
  const char* path = std::getenv("PATH");
  return path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", tmp, ": ", strerror(errno)));
  }
  while (!contents.empty()) {
    ssize_t n = write(fd, contents.data(), contents.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      unlink(tmp.c_str());
      return absl::UnavailableError(
          absl::StrCat("cannot write ", tmp, ": ", strerror(err)));
    }
    contents.remove_prefix(n);
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat("cannot rename ", tmp, " to ", path, ": ", strerror(err)));
  }
  return absl::OkStatus();
}

struct Supervisor::Child {
  Child(ChildSpec s, const SupervisionPolicy& policy)
      : spec(std::move(s)),
        backoff(policy.restart_backoff, policy.max_restart_backoff, policy.stable_after) {
  }

  ChildSpec spec;
  RestartBackoff backoff;
  // 0 while not running.
  pid_t pid = 0;
  absl::Duration started_at;
  // When a child that is not running starts again.
  absl::Duration start_due;
};

absl::StatusOr<std::unique_ptr<Supervisor>> Supervisor::Create(
    std::vector<ChildSpec> children, SupervisionPolicy policy) {
  int wake[2];
  if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("pipe: ", strerror(errno)));
  }
  return std::unique_ptr<Supervisor>(
      new Supervisor(std::move(children), policy, wake[0], wake[1]));
}

Supervisor::Supervisor(std::vector<ChildSpec> children, SupervisionPolicy policy,
                       int wake_read_fd, int wake_write_fd)
    : policy_(policy), wake_read_fd_(wake_read_fd), wake_write_fd_(wake_write_fd) {
  children_.reserve(children.size());
  for (ChildSpec& spec : children) children_.emplace_back(std::move(spec), policy_);
}

Supervisor::~Supervisor() {
  close(wake_read_fd_);
  close(wake_write_fd_);
}

void Supervisor::RequestStop() {
  int saved_errno = errno;
  stop_requested_.store(true);
  char c = 's';
  (void)!write(wake_write_fd_, &c, 1);
  errno = saved_errno;
}

absl::Status Supervisor::Run() {
  g_sigchld_wake_fd.store(wake_write_fd_);
  struct sigaction on_chld, saved_chld;
  memset(&on_chld, 0, sizeof on_chld);
  on_chld.sa_handler = OnSigchld;
  on_chld.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&on_chld.sa_mask);
  sigaction(SIGCHLD, &on_chld, &saved_chld);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  pthread_sigmask(SIG_UNBLOCK, &chld, nullptr);
  // Descendants that lose their parent (a daemon's helpers) come to us to be reaped,
  // also when the launcher is not PID 1.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    PLOG(WARNING) << "cannot become a child subreaper";
  }

  for (Child& child : children_) {
    if (stop_requested_.load()) break;
    StartChild(child);
  }
  while (!stop_requested_.load()) {
    ReapChildren();
    if (stop_requested_.load()) break;
    StartDueChildren();
    absl::Duration wait = absl::InfiniteDuration();
    absl::Duration now = MonotonicNow();
    for (const Child& child : children_) {
      if (child.pid == 0) wait = std::min(wait, child.start_due - now);
    }
    WaitForWake(wait);
  }
  StopAll();

  sigaction(SIGCHLD, &saved_chld, nullptr);
  g_sigchld_wake_fd.store(-1);
  return absl::OkStatus();
}

void Supervisor::StartChild(Child& child) {
  absl::StatusOr<pid_t> pid = Spawn(child.spec);
  if (!pid.ok()) {
    absl::Duration delay = ScheduleRestart(child, absl::ZeroDuration());
    LOG(ERROR) << "cannot start '" << child.spec.name << "': " << pid.status().message()
               << "; retrying in " << absl::FormatDuration(delay);
    return;
  }
  child.pid = *pid;
  child.started_at = MonotonicNow();
  LOG(INFO) << "started '" << child.spec.name << "' (pid " << child.pid
            << "): " << absl::StrJoin(child.spec.argv, " ");
  if (!child.spec.pid_file.empty()) {
    absl::Status s =
        WriteFileAtomically(child.spec.pid_file, absl::StrCat(child.pid, "\n"));
    if (!s.ok()) LOG(ERROR) << "'" << child.spec.name << "': " << s.message();
  }
  if (!child.spec.pgrp_file.empty()) {
    pid_t pgrp = child.spec.own_process_group ? child.pid : getpgrp();
    absl::Status s = WriteFileAtomically(child.spec.pgrp_file, absl::StrCat(pgrp, "\n"));
    if (!s.ok()) LOG(ERROR) << "'" << child.spec.name << "': " << s.message();
  }
}

absl::Duration Supervisor::ScheduleRestart(Child& child, absl::Duration ran) {
  absl::Duration delay = child.backoff.NextDelay(ran);
  child.start_due = MonotonicNow() + delay;
  return delay;
}

void Supervisor::ReapChildren() {
  while (true) {
    int wait_status;
    pid_t pid = waitpid(-1, &wait_status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) return;
    HandleExit(pid, wait_status);
  }
}

void Supervisor::HandleExit(pid_t pid, int wait_status) {
  auto it = std::find_if(children_.begin(), children_.end(),
                         [pid](const Child& c) { return c.pid == pid; });
  if (it == children_.end()) {
    VLOG(1) << "reaped orphaned process " << pid << ", which "
            << DescribeWaitStatus(wait_status);
    return;
  }
  Child& child = *it;
  absl::Duration ran = MonotonicNow() - child.started_at;
  child.pid = 0;
  RemoveFileIfSet(child.spec.pid_file);
  RemoveFileIfSet(child.spec.pgrp_file);
  if (child.spec.own_process_group && GroupExists(pid)) {
    orphaned_groups_.push_back(pid);
    if (!stop_requested_.load()) {
      // What the daemon left of its group goes with it, so a restart does not run
      // beside leftovers holding its sockets and files.
      LOG(WARNING) << "'" << child.spec.name << "': process group " << pid
                   << " outlived its leader; sending SIGTERM";
      kill(-pid, SIGTERM);
    }
  }
  std::string what =
      absl::StrCat("'", child.spec.name, "' (pid ", pid, ") ",
                   DescribeWaitStatus(wait_status), " after ", absl::FormatDuration(ran));
  if (stop_requested_.load()) {
    LOG(INFO) << what;
    return;
  }
  absl::Duration delay = ScheduleRestart(child, ran);
  LOG(WARNING) << what << "; restarting in " << absl::FormatDuration(delay);
}

void Supervisor::StartDueChildren() {
  absl::Duration now = MonotonicNow();
  for (Child& child : children_) {
    if (child.pid == 0 && child.start_due <= now && !stop_requested_.load()) {
      StartChild(child);
    }
  }
}

void Supervisor::WaitForWake(absl::Duration timeout) {
  int timeout_ms = -1;
  if (timeout != absl::InfiniteDuration()) {
    int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(timeout, absl::Milliseconds(1)));
    timeout_ms = static_cast<int>(std::clamp<int64_t>(ms, 0, INT_MAX));
  }
  pollfd p = {wake_read_fd_, POLLIN, 0};
  poll(&p, 1, timeout_ms);
  char buf[64];
  while (read(wake_read_fd_, buf, sizeof buf) > 0) {
  }
}

void Supervisor::SignalAll(int signo) {
  for (const Child& child : children_) {
    if (child.pid == 0) continue;
    if (child.spec.own_process_group && kill(-child.pid, signo) == 0) continue;
    // Not a group (yet or any more, e.g. the daemon called setsid()): the process.
    kill(child.pid, signo);
  }
  for (pid_t pgid : orphaned_groups_) kill(-pgid, signo);
}

void Supervisor::ForgetEmptyGroups() {
  orphaned_groups_.erase(std::remove_if(orphaned_groups_.begin(), orphaned_groups_.end(),
                                        [](pid_t g) { return !GroupExists(g); }),
                         orphaned_groups_.end());
}

bool Supervisor::EverythingGone() {
  ForgetEmptyGroups();
  return orphaned_groups_.empty() &&
         std::none_of(children_.begin(), children_.end(),
                      [](const Child& c) { return c.pid != 0; });
}

void Supervisor::StopAll() {
  ReapChildren();
  ForgetEmptyGroups();
  LOG(INFO) << "stopping: sending SIGTERM to every child";
  SignalAll(SIGTERM);
  // Group members that are not our children exit without waking us, so the wait
  // also polls.
  constexpr absl::Duration kPollInterval = absl::Milliseconds(20);
  auto wait_until_gone = [&](absl::Duration limit) {
    absl::Duration deadline = MonotonicNow() + limit;
    while (true) {
      ReapChildren();
      if (EverythingGone()) return true;
      absl::Duration left = deadline - MonotonicNow();
      if (left <= absl::ZeroDuration()) return false;
      WaitForWake(std::min(left, kPollInterval));
    }
  };
  if (wait_until_gone(policy_.stop_grace)) {
    LOG(INFO) << "every child stopped";
    return;
  }
  for (const Child& child : children_) {
    if (child.pid != 0) {
      LOG(WARNING) << "'" << child.spec.name << "' (pid " << child.pid
                   << ") still runs after " << absl::FormatDuration(policy_.stop_grace)
                   << "; sending SIGKILL";
    }
  }
  for (pid_t pgid : orphaned_groups_) {
    LOG(WARNING) << "process group " << pgid << " still has members after "
                 << absl::FormatDuration(policy_.stop_grace) << "; sending SIGKILL";
  }
  SignalAll(SIGKILL);
  // SIGKILL cannot be ignored; this only waits for the kernel to tear them down.
  if (wait_until_gone(absl::Seconds(10))) {
    LOG(INFO) << "every child stopped";
    return;
  }
  LOG(ERROR) << "some children are still present 10s after SIGKILL";
}

}  // namespace sagator::launcher
