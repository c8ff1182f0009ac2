#include "tests/harness/postfix.h"

#include <dirent.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace sagator::harness {
namespace {

using testing::CommandResult;
using testing::RunCommand;

// A fresh folder under /tmp that the postfix user may enter.
absl::StatusOr<std::string> MakeSharedTempDir(const std::string& prefix) {
  std::string tmpl = absl::StrCat("/tmp/", prefix, "XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  chmod(tmpl.c_str(), 0755);
  return tmpl;
}

void RemoveTree(const std::string& dir) {
  if (dir.empty() || !absl::StartsWith(dir, "/tmp/")) return;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

std::string SlurpFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out << text;
  return out.good();
}

// Postfix's own services, chroot off (the instance has no chroot tree).
constexpr char kMasterCf[] = R"(pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
)";

}  // namespace

absl::StatusOr<std::unique_ptr<PostfixInstance>> PostfixInstance::Start(Options options) {
  if (getpwnam("postfix") == nullptr) {
    return absl::FailedPreconditionError("no postfix user: install the postfix package");
  }
  absl::StatusOr<std::string> dir = MakeSharedTempDir("sagator-postfix.");
  if (!dir.ok()) return dir.status();
  std::unique_ptr<PostfixInstance> pf(new PostfixInstance());
  pf->dir_ = *dir;
  pf->smtp_port_ = options.smtp_port != 0 ? options.smtp_port : testing::PickFreePort();
  const std::string& d = pf->dir_;
  for (const char* sub : {"/etc", "/queue", "/data"}) mkdir((d + sub).c_str(), 0755);
  struct passwd* pw = getpwnam("postfix");
  if (chown((d + "/data").c_str(), pw->pw_uid, pw->pw_gid) != 0) {
    return absl::InternalError("cannot chown the data folder to postfix (not root?)");
  }
  // postfix-files names the files `postfix check` and set-permissions look after.
  RunCommand({"cp", "-r", "/etc/postfix/postfix-files", "/etc/postfix/postfix-files.d",
              "/etc/postfix/dynamicmaps.cf", "/etc/postfix/dynamicmaps.cf.d", d + "/etc/"},
             "");

  std::vector<std::string> main_cf = {
      "compatibility_level = 3.6",
      absl::StrCat("config_directory = ", d, "/etc"),
      absl::StrCat("queue_directory = ", d, "/queue"),
      absl::StrCat("data_directory = ", d, "/data"),
      absl::StrCat("maillog_file = ", d, "/maillog"),
      absl::StrCat("maillog_file_prefixes = ", d),
      "inet_interfaces = 127.0.0.1",
      "inet_protocols = ipv4",
      "mynetworks = 127.0.0.0/8",
      "mydestination =",
      "alias_maps =",
      "alias_database =",
      absl::StrCat("myhostname = ", options.hostname),
      "smtp_dns_support_level = disabled",
      "smtputf8_enable = no",
      // Retry deferred mail quickly (tests call Flush() too).
      "queue_run_delay = 1s",
      "minimal_backoff_time = 1s",
      "maximal_backoff_time = 2s",
      "bounce_queue_lifetime = 1d",
      "maximal_queue_lifetime = 1d",
      // A loopback peer that vanished is retried quickly.
      "smtp_connect_timeout = 5s",
      "lmtp_connect_timeout = 5s",
  };
  if (options.relay_port != 0) {
    main_cf.push_back(absl::StrCat("relayhost = [127.0.0.1]:", options.relay_port));
  }
  main_cf.insert(main_cf.end(), options.main_cf.begin(), options.main_cf.end());
  std::string master = absl::StrCat("127.0.0.1:", pf->smtp_port_,
                                    " inet n - n - - smtpd\n", kMasterCf);
  for (const std::string& line : options.master_cf) absl::StrAppend(&master, line, "\n");
  if (!WriteText(d + "/etc/main.cf", absl::StrJoin(main_cf, "\n") + "\n") ||
      !WriteText(d + "/etc/master.cf", master)) {
    return absl::InternalError("cannot write the Postfix configuration");
  }
  CommandResult r = RunCommand({"/usr/sbin/postfix", "-c", d + "/etc", "start"}, "",
                               absl::Seconds(60));
  if (r.exit_code != 0) {
    return absl::InternalError(absl::StrCat("postfix start failed (", r.exit_code, "): ", r.err,
                                            r.out, "\n", SlurpFile(d + "/maillog")));
  }
  pf->running_ = true;
  absl::Status up = testing::WaitForTcpPort(pf->smtp_port_, absl::Seconds(20));
  if (!up.ok()) {
    return absl::InternalError(
        absl::StrCat("Postfix does not listen: ", up.message(), "\n", pf->Maillog()));
  }
  return pf;
}

PostfixInstance::~PostfixInstance() {
  Stop();
  // Keep the folder when asked to, for a look after a failure.
  if (getenv("SAGATOR_KEEP_POSTFIX") == nullptr) RemoveTree(dir_);
}

void PostfixInstance::Stop() {
  if (!running_) return;
  running_ = false;
  RunCommand({"/usr/sbin/postfix", "-c", config_dir(), "stop"}, "", absl::Seconds(60));
  // `postfix stop` returns before master is gone; wait for its pid file to go.
  std::string pid_file = dir_ + "/queue/pid/master.pid";
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    int pid = 0;
    std::string text(absl::StripAsciiWhitespace(SlurpFile(pid_file)));
    if (!absl::SimpleAtoi(text, &pid) || pid <= 0 || kill(pid, 0) != 0) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

std::string PostfixInstance::Maillog() const { return SlurpFile(dir_ + "/maillog"); }

int PostfixInstance::QueueSize() const {
  CommandResult r = RunCommand({"/usr/sbin/postqueue", "-c", config_dir(), "-j"}, "",
                               absl::Seconds(30));
  if (r.exit_code != 0) return -1;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipWhitespace())) {
    if (absl::StartsWith(line, "{")) ++n;
  }
  return n;
}

void PostfixInstance::Flush() const {
  RunCommand({"/usr/sbin/postqueue", "-c", config_dir(), "-f"}, "", absl::Seconds(30));
}

bool PostfixInstance::WaitForEmptyQueue(absl::Duration timeout) const {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (QueueSize() == 0) return true;
    absl::SleepFor(absl::Milliseconds(200));
  }
  return QueueSize() == 0;
}

std::string SinkMessage::Header(const std::string& name) const {
  std::string prefix = absl::AsciiStrToLower(name) + ":";
  for (absl::string_view line : absl::StrSplit(message, '\n')) {
    line = absl::StripSuffix(line, "\r");
    if (line.empty()) break;  // end of the header
    if (absl::StartsWith(absl::AsciiStrToLower(line.substr(0, prefix.size())), prefix)) {
      return std::string(absl::StripAsciiWhitespace(line.substr(prefix.size())));
    }
  }
  return "";
}

SmtpSink::SmtpSink(Options options) : options_(std::move(options)) {}

SmtpSink::~SmtpSink() {
  Stop();
  RemoveTree(dir_);
}

absl::Status SmtpSink::Start() {
  absl::StatusOr<std::string> dir = MakeSharedTempDir("sagator-sink.");
  if (!dir.ok()) return dir.status();
  dir_ = *dir;
  mkdir((dir_ + "/mail").c_str(), 0777);
  chmod((dir_ + "/mail").c_str(), 0777);
  port_ = options_.port != 0 ? options_.port : testing::PickFreePort();
  // -u root: no privilege change; -d: one file per transaction; 1000: backlog.
  std::vector<std::string> argv = {"/usr/sbin/smtp-sink", "-u", "root",
                                   "-d", dir_ + "/mail/%Y%m%d%H%M%S."};
  if (options_.lmtp) argv.push_back("-L");
  if (!options_.soft_reject.empty()) {
    argv.push_back("-r");
    argv.push_back(absl::StrJoin(options_.soft_reject, ","));
  }
  if (!options_.hard_reject.empty()) {
    argv.push_back("-f");
    argv.push_back(absl::StrJoin(options_.hard_reject, ","));
  }
  argv.push_back(absl::StrCat("127.0.0.1:", port_));
  argv.push_back("1000");
  process_ = std::make_unique<testing::Subprocess>(argv);
  process_->RedirectOutput(dir_ + "/smtp-sink.log");
  absl::Status s = process_->Start();
  if (!s.ok()) return s;
  return testing::WaitForTcpPort(port_, absl::Seconds(20));
}

void SmtpSink::Stop() {
  if (process_ != nullptr) process_->Stop(absl::Seconds(2));
  process_.reset();
}

std::vector<SinkMessage> SmtpSink::Messages() const {
  // (last written, path): smtp-sink's file names do not sort by arrival within a
  // second, so the order is the files' modification times.
  std::vector<std::pair<absl::Time, std::string>> files;
  // smtp-sink writes a file as the data arrives: leave files younger than this
  // alone, they may still grow.
  const absl::Time settled = absl::Now() - absl::Milliseconds(300);
  std::string mail = dir_ + "/mail";
  if (DIR* d = opendir(mail.c_str())) {
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::string path = mail + "/" + e->d_name;
      struct stat st;
      if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
          absl::TimeFromTimespec(st.st_mtim) < settled) {
        files.emplace_back(absl::TimeFromTimespec(st.st_mtim), path);
      }
    }
    closedir(d);
  }
  std::sort(files.begin(), files.end());
  std::vector<SinkMessage> out;
  for (const auto& [written, path] : files) {
    std::string text = SlurpFile(path);
    SinkMessage m;
    m.file = path;
    // smtp-sink writes X-Client-*, X-Helo-Args, X-Mail-Args and X-Rcpt-Args lines,
    // then the data.
    size_t pos = 0;
    while (pos < text.size()) {
      size_t eol = text.find('\n', pos);
      if (eol == std::string::npos) eol = text.size();
      absl::string_view line(text.data() + pos, eol - pos);
      if (!absl::StartsWith(line, "X-Client-") && !absl::StartsWith(line, "X-Helo-Args:") &&
          !absl::StartsWith(line, "X-Mail-Args:") && !absl::StartsWith(line, "X-Rcpt-Args:")) {
        break;
      }
      auto angle = [](absl::string_view v) {
        v = absl::StripAsciiWhitespace(v);
        size_t lt = v.find('<'), gt = v.find('>');
        if (lt == absl::string_view::npos || gt == absl::string_view::npos || gt < lt) {
          return std::string(v);
        }
        return std::string(v.substr(lt + 1, gt - lt - 1));
      };
      if (absl::ConsumePrefix(&line, "X-Mail-Args:")) m.sender = angle(line);
      if (absl::ConsumePrefix(&line, "X-Rcpt-Args:")) m.recipients.push_back(angle(line));
      if (absl::ConsumePrefix(&line, "X-Helo-Args:")) {
        m.helo = std::string(absl::StripAsciiWhitespace(line));
      }
      pos = eol + 1;
    }
    if (pos >= text.size()) continue;  // a transaction without data
    m.message = text.substr(pos);
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<SinkMessage> SmtpSink::WaitForMessages(size_t count, absl::Duration timeout) const {
  absl::Time deadline = absl::Now() + timeout;
  std::vector<SinkMessage> got = Messages();
  while (got.size() < count && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    got = Messages();
  }
  return got;
}

testing::CommandResult Swaks(int port, const std::string& from, const std::string& to,
                             const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/swaks", "--server", absl::StrCat("127.0.0.1:", port),
                                   "--from", from, "--to", to, "--helo", "client.test",
                                   "--timeout", "60"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, "", absl::Seconds(120));
}

}  // namespace sagator::harness
