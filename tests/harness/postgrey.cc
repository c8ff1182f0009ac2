#include "tests/harness/postgrey.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace sagator::harness {
namespace {

constexpr char kPostgrey[] = "/usr/sbin/postgrey";

std::string DescribeExit(int status) {
  if (status < 0) return "did not exit";
  if (WIFEXITED(status)) return absl::StrCat("exited with ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status));
  return absl::StrCat("ended with wait status ", status);
}

// True when process `pid` holds a socket listening on 127.0.0.1:port. A connect alone
// is not enough: another process may own the port, and then postgrey dies shortly
// after failing to bind it.
bool ListensOn(pid_t pid, int port) {
  std::string tcp = testing::ReadFile("/proc/net/tcp");
  std::vector<std::string> inodes;
  const std::string local = absl::StrCat(
      "0100007F:", absl::AsciiStrToUpper(absl::StrCat(absl::Hex(port, absl::kZeroPad4))));
  for (absl::string_view line : absl::StrSplit(tcp, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if (f.size() > 9 && f[1] == local && f[3] == "0A") inodes.push_back(std::string(f[9]));
  }
  if (inodes.empty()) return false;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), ec)) {
    std::string target = std::filesystem::read_symlink(e.path(), ec).string();
    for (const std::string& inode : inodes) {
      if (target == absl::StrCat("socket:[", inode, "]")) return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgreyDaemon>> PostgreyDaemon::Start(const std::string& dir,
                                                                      Options options) {
  if (access(kPostgrey, X_OK) != 0) {
    return absl::FailedPreconditionError(
        "no /usr/sbin/postgrey: install the postgrey package (scripts/install-deps.sh)");
  }
  const std::string db_dir = options.db_dir.empty() ? dir + "/db" : options.db_dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!ec) std::filesystem::create_directories(db_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", db_dir, ": ", ec.message()));
  struct passwd* pw = getpwuid(geteuid());
  struct group* gr = getgrgid(getegid());
  if (pw == nullptr || gr == nullptr) {
    return absl::FailedPreconditionError("the current user or group has no name");
  }

  std::vector<std::string> args = {
      absl::StrCat("--dbdir=", db_dir),
      absl::StrCat("--delay=", options.delay_seconds),
      // Net::Server changes to --user/--group when started as root; name ourselves
      // so that it changes nothing and can still write the database folder.
      absl::StrCat("--user=", pw->pw_name),
      absl::StrCat("--group=", gr->gr_name),
      // The kernel's default backlog drops connections under a burst of clients.
      "--listen-queue-size=999",
      "--hostname=postgrey.test",
  };
  if (options.auto_whitelist_clients >= 0) {
    args.push_back(absl::StrCat("--auto-whitelist-clients=", options.auto_whitelist_clients));
  }
  if (!options.system_whitelists) {
    for (const char* list : {"clients", "recipients"}) {
      std::string path = absl::StrCat(dir, "/whitelist_", list);
      testing::WriteFile(path, "# empty: every triplet is greylisted alike\n");
      args.push_back(absl::StrCat("--whitelist-", list, "=", path));
    }
  }
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());

  std::unique_ptr<PostgreyDaemon> pg(new PostgreyDaemon());
  pg->dir_ = dir;
  const absl::Time deadline = absl::Now() + options.start_timeout;
  // A free port can be taken before postgrey binds it; then it exits and, when the
  // port was ours to choose, the next attempt takes another.
  for (int attempt = 0;; ++attempt) {
    pg->port_ = options.port != 0 ? options.port : testing::PickFreePort();
    std::vector<std::string> argv = {kPostgrey, absl::StrCat("--inet=127.0.0.1:", pg->port_)};
    argv.insert(argv.end(), args.begin(), args.end());
    pg->process_ = std::make_unique<testing::Subprocess>(argv);
    pg->process_->RedirectOutput(dir + "/postgrey.log");
    if (absl::Status s = pg->process_->Start(); !s.ok()) return s;
    while (pg->process_->Running() && !ListensOn(pg->process_->pid(), pg->port_)) {
      if (absl::Now() >= deadline) {
        std::string tail = pg->LogTail();
        pg->process_->Stop(absl::Seconds(5));
        return absl::DeadlineExceededError(
            absl::StrCat(kPostgrey, " does not listen on ", pg->address(), " after ",
                         absl::FormatDuration(options.start_timeout), "; log:\n", tail));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    if (pg->process_->Running()) return pg;
    int status = pg->process_->Wait(absl::ZeroDuration());
    std::string tail = pg->LogTail();
    if (options.port != 0 || attempt >= 4 || !absl::StrContains(tail, "in use")) {
      return absl::InternalError(
          absl::StrCat(kPostgrey, " ", DescribeExit(status), " while starting; log:\n", tail));
    }
  }
}

PostgreyDaemon::~PostgreyDaemon() { Stop().IgnoreError(); }

absl::Status PostgreyDaemon::Stop() {
  if (process_ == nullptr) return absl::OkStatus();
  absl::Status result;
  if (!process_->Running()) {
    result = absl::InternalError(absl::StrCat(kPostgrey, " ",
                                              DescribeExit(process_->Wait(absl::ZeroDuration())),
                                              " before Stop(); log:\n", LogTail()));
  } else {
    process_->Stop(absl::Seconds(5));
  }
  process_.reset();
  return result;
}

std::string PostgreyDaemon::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string PostgreyDaemon::LogTail() const {
  std::string log = testing::ReadFile(dir_ + "/postgrey.log");
  std::vector<absl::string_view> lines = absl::StrSplit(log, '\n', absl::SkipEmpty());
  constexpr size_t kLines = 30;
  if (lines.size() > kLines) lines.erase(lines.begin(), lines.end() - kLines);
  return absl::StrJoin(lines, "\n");
}

}  // namespace sagator::harness
