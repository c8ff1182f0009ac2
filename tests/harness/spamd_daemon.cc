#include "tests/harness/spamd_daemon.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sagator::harness {

absl::StatusOr<std::unique_ptr<SpamdDaemon>> SpamdDaemon::Start(const std::string& dir,
                                                                Options options) {
  std::unique_ptr<SpamdDaemon> d(new SpamdDaemon());
  d->dir_ = dir;
  mkdir(dir.c_str(), 0755);
  // spamd switches to `nobody` before it reads its configuration, and Bazel's
  // TEST_TMPDIR sits below /root: the site configuration goes to a folder under /tmp.
  char site_template[] = "/tmp/sagator-spamd-XXXXXX";
  if (mkdtemp(site_template) == nullptr) return absl::UnavailableError("mkdtemp failed");
  std::string site = site_template;
  d->site_dir_ = site;
  // spamd reads the shipped rules from /usr/share/spamassassin and the site
  // configuration from here.
  testing::WriteFile(absl::StrCat(site, "/local.cf"), options.local_cf);
  // The plugin list (the .pre files) is the system's; only local.cf is ours.
  if (DIR* d = opendir("/etc/spamassassin")) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (absl::EndsWith(name, ".pre")) {
        testing::WriteFile(absl::StrCat(site, "/", name),
                           testing::ReadFile(absl::StrCat("/etc/spamassassin/", name)));
      }
    }
    closedir(d);
  }
  chmod(site.c_str(), 0755);
  d->port_ = testing::PickFreePort();
  d->process_ = std::make_unique<testing::Subprocess>(std::vector<std::string>{
      "/usr/sbin/spamd", absl::StrCat("--listen=127.0.0.1:", d->port_),
      absl::StrCat("--max-children=", options.max_children), "--min-children=1", "--local",
      "-x", "--syslog=stderr", absl::StrCat("--pidfile=", site, "/spamd.pid"), "-u", "nobody",
      absl::StrCat("--siteconfigpath=", site), "--timeout-child=60"});
  d->process_->RedirectOutput(absl::StrCat(dir, "/spamd.log"));
  if (absl::Status s = d->process_->Start(); !s.ok()) return s;
  absl::Time give_up = absl::Now() + absl::Seconds(120);
  while (absl::Now() < give_up) {
    std::string pong = testing::TcpExchange(d->port_, "PING SPAMC/1.5\r\n\r\n", absl::Seconds(5));
    if (absl::StrContains(pong, "PONG")) return d;
    if (!d->process_->Running()) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  return absl::UnavailableError(absl::StrCat("spamd did not start; its log:\n", d->Log()));
}

SpamdDaemon::~SpamdDaemon() { Stop(); }

void SpamdDaemon::Stop() {
  if (process_ != nullptr) process_->Stop();
  process_.reset();
  if (!site_dir_.empty()) {
    if (DIR* d = opendir(site_dir_.c_str())) {
      while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != "..") unlink(absl::StrCat(site_dir_, "/", name).c_str());
      }
      closedir(d);
    }
    rmdir(site_dir_.c_str());
    site_dir_.clear();
  }
}

std::string SpamdDaemon::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string SpamdDaemon::Log() const { return testing::ReadFile(absl::StrCat(dir_, "/spamd.log")); }

}  // namespace sagator::harness
