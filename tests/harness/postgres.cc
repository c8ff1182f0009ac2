#include "tests/harness/postgres.h"

#include <gtest/gtest.h>

#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "tests/harness/subprocess.h"

namespace sagator::harness {
namespace {

namespace fs = std::filesystem;

using testing::CommandResult;
using testing::RunCommand;

constexpr char kUser[] = "postgres";
constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;

// /usr/lib/postgresql/<newest>/bin (15 on Debian 12).
std::string BinDir() {
  std::string best;
  int best_version = -1;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    int v = atoi(e.path().filename().c_str());
    if (v > best_version && fs::exists(e.path() / "bin" / "initdb")) {
      best_version = v;
      best = e.path() / "bin";
    }
  }
  return best.empty() ? "/usr/lib/postgresql/15/bin" : best;
}

std::string Describe(const CommandResult& r) {
  return absl::StrCat("exit ", r.exit_code, ": ", r.err, r.out);
}

// Runs as root: hands `dir` to the postgres user.
absl::Status GiveToPostgres(const std::string& dir) {
  struct passwd* pw = getpwnam(kUser);
  if (pw == nullptr) return absl::FailedPreconditionError("no postgres user");
  if (chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
    return absl::InternalError(absl::StrCat("cannot chown ", dir, " to postgres"));
  }
  chmod(dir.c_str(), 0700);
  return absl::OkStatus();
}

// A fresh folder the server's user may write to: under TEST_TMPDIR when that user
// can reach it, else under /tmp.
absl::StatusOr<std::string> MakeServerDir(bool as_root) {
  if (!as_root) return testing::MakeTempDir("pg.");
  const char* base = getenv("TEST_TMPDIR");
  if (base != nullptr && *base != '\0') {
    std::string dir = testing::MakeTempDir("pg.");
    if (GiveToPostgres(dir).ok() && RunCommand({"/usr/sbin/runuser", "-u", kUser, "--",
                                                "/usr/bin/test", "-w", dir, "-a", "-x", dir},
                                               "", absl::Seconds(30))
                                            .exit_code == 0) {
      return dir;
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string tmpl = "/tmp/sagator-pg.XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp under /tmp failed");
  if (absl::Status s = GiveToPostgres(tmpl); !s.ok()) return s;
  return tmpl;
}

void RemoveTree(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// Instances still alive when the process exits (one kept in a leaked static for a
// whole test binary, say) are stopped and removed by an atexit handler, so that no
// postmaster outlives its test. Leaked on purpose: it must outlive static destructors.
absl::Mutex registry_mu;
std::set<PostgresInstance*>* live_instances ABSL_GUARDED_BY(registry_mu) = nullptr;

void StopLiveInstances() {
  std::set<PostgresInstance*> live;
  {
    absl::MutexLock lock(&registry_mu);
    if (live_instances != nullptr) live.swap(*live_instances);
  }
  for (PostgresInstance* pg : live) {
    pg->Stop().IgnoreError();
    if (getenv("SAGATOR_KEEP_POSTGRES") == nullptr) RemoveTree(pg->dir());
  }
}

void Register(PostgresInstance* pg) {
  absl::MutexLock lock(&registry_mu);
  if (live_instances == nullptr) {
    live_instances = new std::set<PostgresInstance*>();
    std::atexit(StopLiveInstances);
  }
  live_instances->insert(pg);
}

void Unregister(PostgresInstance* pg) {
  absl::MutexLock lock(&registry_mu);
  if (live_instances != nullptr) live_instances->erase(pg);
}

}  // namespace

std::vector<std::string> PostgresInstance::AsPostgres(const std::string& program,
                                                      std::vector<std::string> args) const {
  std::vector<std::string> argv;
  if (geteuid() == 0) argv = {"/usr/sbin/runuser", "-u", kUser, "--"};
  argv.push_back(absl::StrCat(BinDir(), "/", program));
  argv.insert(argv.end(), std::make_move_iterator(args.begin()),
              std::make_move_iterator(args.end()));
  return argv;
}

absl::StatusOr<std::unique_ptr<PostgresInstance>> PostgresInstance::Start(Options options) {
  const bool as_root = geteuid() == 0;
  if (as_root && getpwnam(kUser) == nullptr) {
    return absl::FailedPreconditionError(
        "no postgres user: install the postgresql package (scripts/install-deps.sh)");
  }
  if (!fs::exists(BinDir() + "/initdb")) {
    return absl::FailedPreconditionError(
        "no initdb under /usr/lib/postgresql: install the postgresql package");
  }
  absl::StatusOr<std::string> dir = MakeServerDir(as_root);
  if (!dir.ok()) return dir.status();
  std::unique_ptr<PostgresInstance> pg(new PostgresInstance());
  pg->dir_ = *dir;
  pg->database_ = options.database;
  const std::string data = pg->dir_ + "/data";

  // The socket is <socket_dir>/.s.PGSQL.<port>: it must fit in sun_path.
  pg->socket_dir_ = pg->dir_ + "/sock";
  if (pg->socket_dir_.size() + sizeof("/.s.PGSQL.65535") - 1 > kMaxSocketPath) {
    std::string tmpl = "/tmp/sagator-pgs.XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp under /tmp failed");
    pg->short_socket_dir_ = tmpl;
    pg->socket_dir_ = tmpl;
  } else {
    mkdir(pg->socket_dir_.c_str(), 0700);
  }
  if (as_root) {
    if (absl::Status s = GiveToPostgres(pg->socket_dir_); !s.ok()) return s;
  }

  // -N: no fsync of the new cluster; a test database need not survive a crash.
  CommandResult init =
      RunCommand(pg->AsPostgres("initdb", {"-D", data, "-U", kUser, "--auth=trust", "-E", "UTF8",
                                           "--locale=C.UTF-8", "-N"}),
                 "", absl::Seconds(120));
  if (init.exit_code != 0) {
    return absl::InternalError(absl::StrCat("initdb failed (", Describe(init), ")"));
  }

  std::vector<std::string> settings = {"listen_addresses=127.0.0.1", "fsync=off",
                                       "synchronous_commit=off", "full_page_writes=off",
                                       // Several clusters at once on a small machine.
                                       "shared_buffers=32MB", "max_connections=100"};
  settings.insert(settings.end(), options.settings.begin(), options.settings.end());
  const int timeout_s =
      std::max<int>(1, static_cast<int>(absl::ToInt64Seconds(options.start_timeout)));
  CommandResult start;
  // A free port can be taken by someone else before the postmaster binds it: try again
  // with another one (only when the port was ours to choose).
  for (int attempt = 0; attempt < 5; ++attempt) {
    pg->port_ = options.port != 0 ? options.port : testing::PickFreePort();
    // pg_ctl hands -o to a shell: quote each value.
    std::string server_options = absl::StrCat("-p ", pg->port_, " -k '", pg->socket_dir_, "'");
    for (const std::string& s : settings) absl::StrAppend(&server_options, " -c '", s, "'");
    start = RunCommand(
        pg->AsPostgres("pg_ctl", {"-D", data, "-l", pg->dir_ + "/pg.log", "-w", "-t",
                                  absl::StrCat(timeout_s), "-o", server_options, "start"}),
        "", options.start_timeout + absl::Seconds(30));
    if (start.exit_code == 0) break;
    std::string log = pg->LogTail();
    bool port_taken =
        absl::StrContains(log, "could not bind") || absl::StrContains(log, "already in use");
    if (options.port != 0 || !port_taken) break;
  }
  if (start.exit_code != 0) {
    // pg_ctl may have given up waiting on a postmaster that still runs: the
    // destructor's pg_ctl stop makes sure it does not outlive the test.
    pg->running_ = true;
    Register(pg.get());
    return absl::InternalError(
        absl::StrCat("pg_ctl start failed (", Describe(start), "); pg.log:\n", pg->LogTail()));
  }
  pg->running_ = true;
  Register(pg.get());

  CommandResult created = RunCommand({absl::StrCat(BinDir(), "/createdb"), "-h", "127.0.0.1", "-p",
                                      absl::StrCat(pg->port_), "-U", kUser, pg->database_},
                                     "", absl::Seconds(60));
  if (created.exit_code != 0) {
    return absl::InternalError(absl::StrCat("createdb ", pg->database_, " failed (",
                                            Describe(created), "); pg.log:\n", pg->LogTail()));
  }
  return pg;
}

PostgresInstance::~PostgresInstance() {
  Unregister(this);
  Stop().IgnoreError();
  if (getenv("SAGATOR_KEEP_POSTGRES") == nullptr) RemoveTree(dir_);
  RemoveTree(short_socket_dir_);
}

absl::Status PostgresInstance::Stop() {
  if (!running_) return absl::OkStatus();
  running_ = false;
  CommandResult r =
      RunCommand(AsPostgres("pg_ctl", {"-D", dir_ + "/data", "-m", "immediate", "-w", "stop"}), "",
                 absl::Seconds(60));
  if (r.exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("pg_ctl stop failed (", Describe(r), "); pg.log:\n", LogTail()));
  }
  return absl::OkStatus();
}

std::string PostgresInstance::ConnInfoFor(const std::string& database) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " dbname=", database, " user=", kUser,
                      " connect_timeout=10");
}

std::string PostgresInstance::LogTail() const {
  std::string log = testing::ReadFile(dir_ + "/pg.log");
  std::vector<absl::string_view> lines = absl::StrSplit(log, '\n', absl::SkipEmpty());
  constexpr size_t kLines = 30;
  if (lines.size() > kLines) lines.erase(lines.begin(), lines.end() - kLines);
  return absl::StrJoin(lines, "\n");
}

PostgresInstance* SharedPostgresForTests() {
  static PostgresInstance* const pg = []() -> PostgresInstance* {
    auto p = PostgresInstance::Start();
    if (!p.ok()) {
      ADD_FAILURE() << p.status();
      return nullptr;
    }
    return p->release();
  }();
  return pg;
}

}  // namespace sagator::harness
