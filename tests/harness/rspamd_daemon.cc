#include "tests/harness/rspamd_daemon.h"

#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sagator::harness {
namespace {

constexpr char kTopLevel[] = R"(# Written by tests/harness/rspamd_daemon: the shipped rules, one scanning worker.
.include "$CONFDIR/common.conf"
options {
  pidfile = "$RUNDIR/rspamd.pid";
  .include "$CONFDIR/options.inc"
  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}
logging {
  type = "file";
  filename = "$LOGDIR/rspamd.log";
  .include "$CONFDIR/logging.inc"
}
worker "normal" {
  bind_socket = "127.0.0.1:${PORT}";
  count = 1;
  .include "$CONFDIR/worker-normal.inc"
}
)";

constexpr char kOptions[] = R"(disable_monitoring = true;
enable_test_patterns = true;
url_tld = "${LOCAL_CONFDIR}/tld.dat";
dns {
  nameserver = ["127.0.0.1:1"];
  timeout = 0.5s;
  retransmits = 1;
}
)";

constexpr char kMilterHeaders[] = R"(extended_spam_headers = true;
skip_local = false;
skip_authenticated = false;
use = ["spam-header", "x-spamd-bar", "x-spam-level", "x-spam-status", "remove-spam-flag"];
routines {
  spam-header {
    header = "X-Spam";
    value = "Yes";
  }
}
)";

}  // namespace

absl::StatusOr<std::unique_ptr<RspamdDaemon>> RspamdDaemon::Start(const std::string& dir) {
  std::unique_ptr<RspamdDaemon> d(new RspamdDaemon());
  d->dir_ = dir;
  mkdir(dir.c_str(), 0755);
  mkdir(absl::StrCat(dir, "/local.d").c_str(), 0755);
  mkdir(absl::StrCat(dir, "/var").c_str(), 0755);
  testing::WriteFile(absl::StrCat(dir, "/rspamd.conf"), kTopLevel);
  testing::WriteFile(absl::StrCat(dir, "/local.d/options.inc"), kOptions);
  testing::WriteFile(absl::StrCat(dir, "/local.d/milter_headers.conf"), kMilterHeaders);
  testing::WriteFile(absl::StrCat(dir, "/tld.dat"), "com\norg\nnet\nexample\ntest\nlocal\n");
  // Network checks would only time out here; "whitelist" depends on SPF and DKIM.
  for (const char* module : {"fuzzy_check", "rbl", "spf", "dkim", "dmarc", "arc", "asn",
                             "hfilter", "reputation", "neural", "whitelist"}) {
    testing::WriteFile(absl::StrCat(dir, "/local.d/", module, ".conf"), "enabled = false;\n");
  }
  d->port_ = testing::PickFreePort();
  std::string var = absl::StrCat(dir, "/var");
  // -f: foreground (our child); -i: workers may run as root (the tests do).
  d->process_ = std::make_unique<testing::Subprocess>(std::vector<std::string>{
      "/usr/bin/rspamd", "-f", "-i", "-c", absl::StrCat(dir, "/rspamd.conf"), "--var",
      absl::StrCat("LOCAL_CONFDIR=", dir), "--var", absl::StrCat("DBDIR=", var), "--var",
      absl::StrCat("RUNDIR=", var), "--var", absl::StrCat("LOGDIR=", var), "--var",
      absl::StrCat("PORT=", d->port_)});
  d->process_->RedirectOutput(absl::StrCat(dir, "/rspamd.out"));
  if (absl::Status s = d->process_->Start(); !s.ok()) return s;
  absl::Time give_up = absl::Now() + absl::Seconds(120);
  while (absl::Now() < give_up) {
    std::string pong = testing::TcpExchange(
        d->port_, "GET /ping HTTP/1.0\r\n\r\n", absl::Seconds(5));
    if (absl::StrContains(pong, "pong")) return d;
    if (!d->process_->Running()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::UnavailableError(absl::StrCat("rspamd did not start; its output:\n",
                                             testing::ReadFile(absl::StrCat(dir, "/rspamd.out")),
                                             "\nits log:\n", d->Log()));
}

RspamdDaemon::~RspamdDaemon() { Stop(); }

void RspamdDaemon::Stop() {
  // SIGTERM to the main process ends its workers too (SIGKILL would leave them).
  if (process_ != nullptr) process_->Stop(absl::Seconds(15));
  process_.reset();
}

std::string RspamdDaemon::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string RspamdDaemon::Log() const {
  return testing::ReadFile(absl::StrCat(dir_, "/var/rspamd.log"));
}

}  // namespace sagator::harness
