// sgfilter: filters one mail message through sgfilterd (procmail, Courier xfilter).
// See README.md and `sgfilter --help`.
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "common/config.h"
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "services/sgfilterd/sgfilter_client.h"

namespace {

constexpr char kUsage[] =
    "Usage: sgfilter [--help] [--host H] [--port N] [--codes|-c] [--non-safe|-x]\n"
    "                [--sender ADDR] [--recipient ADDR]... [--timeout SECONDS] [file]\n"
    "\n"
    "Sends one message (the file, or stdin when none or \"-\" is given) to sgfilterd\n"
    "and writes the filtered message to stdout.\n"
    "\n"
    "  --config FILE      take sgfilterd's host and port from the suite's config\n"
    "  --service NAME     with --config: the sgfilterd entry (default: the first)\n"
    "  --check-config     with --config: validate the file, exit 0 or 2\n"
    "  --host H           sgfilterd's host (default 127.0.0.1)\n"
    "  --port N           sgfilterd's port (default 27)\n"
    "  -c, --codes        exit 1 when the message is detected (virus, spam, ...)\n"
    "  -x, --non-safe     exit 64 when sgfilterd cannot scan the message, 65 when it\n"
    "                     cannot be reached (the original message is still written)\n"
    "  --sender ADDR      envelope sender (default $SENDER, else empty)\n"
    "  --recipient ADDR   envelope recipient, repeatable (default $RECIPIENT, else\n"
    "                     $LOGNAME, $USER or postmaster)\n"
    "  --timeout SECONDS  connect timeout and longest wait for sgfilterd (default 120)\n"
    "\n"
    "Safe by default: on any error the original message is written unchanged and the\n"
    "exit code is 0. Exit codes: 0 passed; 1 detected (-c); 64 scan error (-x);\n"
    "65 cannot talk to sgfilterd (-x); 2 bad usage; 66 cannot read the input;\n"
    "74 cannot write the output.\n";

constexpr int kExitUsage = 2;
constexpr int kExitNoInput = 66;
constexpr int kExitIoError = 74;

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

int UsageError(const std::string& msg) {
  std::fprintf(stderr, "sgfilter: %s\n%s", msg.c_str(), kUsage);
  return kExitUsage;
}

bool ReadInput(const std::string& path, std::string* out) {
  if (path.empty() || path == "-") {
    std::string data;
    char buf[65536];
    for (;;) {
      ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data.append(buf, static_cast<size_t>(n));
    }
    *out = std::move(data);
    return true;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

bool WriteAll(absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(STDOUT_FILENO, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  sagator::sgfilterd::SgfilterClientOptions opt;
  bool codes = false;
  bool non_safe = false;
  std::string file;
  bool have_file = false;
  std::vector<std::string> recipients;
  bool sender_given = false;
  std::string config_path;
  std::string service_name;
  bool check_config = false;
  bool host_given = false;
  bool port_given = false;

  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    // --name=value and --name value.
    std::string name = arg;
    std::string value;
    bool has_inline_value = false;
    if (absl::StartsWith(arg, "--")) {
      size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        has_inline_value = true;
      }
    }
    auto take_value = [&](std::string* v) {
      if (has_inline_value) {
        *v = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      *v = argv[++i];
      return true;
    };
    if (name == "--help" || name == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (name == "--codes") {
      codes = true;
    } else if (name == "--non-safe") {
      non_safe = true;
    } else if (name == "--config") {
      if (!take_value(&config_path) || config_path.empty()) {
        return UsageError("--config needs a file");
      }
    } else if (name == "--service") {
      if (!take_value(&service_name)) return UsageError("--service needs a name");
    } else if (name == "--check-config" || name == "--check_config") {
      check_config = true;
    } else if (name == "--host") {
      if (!take_value(&opt.host) || opt.host.empty()) return UsageError("--host needs a value");
      host_given = true;
    } else if (name == "--port") {
      std::string v;
      if (!take_value(&v) || !absl::SimpleAtoi(v, &opt.port) || opt.port < 1 || opt.port > 65535) {
        return UsageError("--port needs a number from 1 to 65535");
      }
      port_given = true;
    } else if (name == "--sender") {
      if (!take_value(&opt.sender)) return UsageError("--sender needs a value");
      sender_given = true;
    } else if (name == "--recipient") {
      std::string v;
      if (!take_value(&v)) return UsageError("--recipient needs a value");
      recipients.push_back(v);
    } else if (name == "--timeout") {
      std::string v;
      double seconds = 0;
      if (!take_value(&v) || !absl::SimpleAtod(v, &seconds) || !(seconds > 0)) {
        return UsageError("--timeout needs a positive number of seconds");
      }
      opt.timeout = absl::Seconds(seconds);
    } else if (arg == "--") {
      if (i + 1 < argc) {
        if (have_file || i + 2 < argc) return UsageError("only one file may be given");
        file = argv[i + 1];
        have_file = true;
      }
      break;
    } else if (arg.size() > 1 && arg[0] == '-' && arg[1] != '-') {
      // Bundled short options: -c, -x, -cx.
      for (size_t k = 1; k < arg.size(); ++k) {
        if (arg[k] == 'c') {
          codes = true;
        } else if (arg[k] == 'x') {
          non_safe = true;
        } else if (arg[k] == 'h') {
          std::fputs(kUsage, stdout);
          return 0;
        } else {
          return UsageError(std::string("unknown option -") + arg[k]);
        }
      }
    } else if (absl::StartsWith(arg, "--")) {
      return UsageError("unknown option " + name);
    } else {
      if (have_file) return UsageError("only one file may be given");
      file = arg;
      have_file = true;
    }
  }

  // --config: sgfilterd's address comes from the suite's configuration (the entry
  // named by --service, else the first sgfilterd); --host and --port still win.
  std::string config_error;
  if (check_config && config_path.empty()) return UsageError("--check-config needs --config");
  if (!config_path.empty()) {
    absl::StatusOr<sagator::LoadedConfig> cfg = sagator::LoadConfigFile(config_path);
    absl::StatusOr<const sagator::config::v1::Service*> svc =
        cfg.ok() ? sagator::FindService(cfg->proto, service_name,
                                        sagator::config::v1::Service::kSgfilterd)
                 : absl::StatusOr<const sagator::config::v1::Service*>(cfg.status());
    if (!svc.ok()) {
      config_error = cfg.ok() ? absl::StrCat(config_path, ": ", svc.status().message())
                              : std::string(cfg.status().message());
    } else {
      if (!host_given) opt.host = (*svc)->sgfilterd().host();
      if (!port_given) opt.port = (*svc)->sgfilterd().port();
    }
    if (check_config) {
      if (!config_error.empty()) {
        std::fprintf(stderr, "%s\n", config_error.c_str());
        return 2;
      }
      std::printf("%s: configuration OK\n", config_path.c_str());
      return 0;
    }
  }

  if (!sender_given) {
    if (const char* s = Env("SENDER")) opt.sender = s;
  }
  if (recipients.empty()) {
    for (const char* var : {"RECIPIENT", "LOGNAME", "USER"}) {
      if (const char* r = Env(var)) {
        recipients.push_back(r);
        break;
      }
    }
  }
  if (recipients.empty()) recipients.push_back("postmaster");
  opt.recipients = recipients;

  std::string message;
  if (!ReadInput(file, &message)) {
    std::fprintf(stderr, "sgfilter: cannot read %s: %s\n", file.empty() ? "stdin" : file.c_str(),
                 std::strerror(errno));
    return kExitNoInput;
  }

  if (!config_error.empty()) {
    // Safe as ever: without a usable configuration the mail passes unchanged, and
    // -x reports it like an unreachable sgfilterd.
    std::fprintf(stderr, "sgfilter: %s; the message passes unscanned\n", config_error.c_str());
    if (!WriteAll(message)) return kExitIoError;
    return non_safe ? 65 : 0;
  }

  sagator::sgfilterd::SgfilterCall call = sagator::sgfilterd::CallSgfilterd(opt, message);
  sagator::sgfilterd::SgfilterOutput out =
      sagator::sgfilterd::DecideOutput(call, message, codes, non_safe);
  if (!out.warning.empty()) std::fprintf(stderr, "sgfilter: %s\n", out.warning.c_str());
  if (!WriteAll(out.message)) {
    // A truncated output must not pass for the message: procmail's `w` flag keeps
    // the original when the filter fails.
    std::fprintf(stderr, "sgfilter: cannot write the message: %s\n", std::strerror(errno));
    return kExitIoError;
  }
  return out.exit_code;
}
