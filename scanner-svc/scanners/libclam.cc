#include "scanner-svc/scanners/libclam.h"

#include <clamav.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include <glog/logging.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sagator::scanners {
namespace {

absl::Status InitLibclamav() {
  static cl_error_t rc = [] { return cl_init(CL_INIT_DEFAULT); }();
  if (rc != CL_SUCCESS) {
    return absl::InternalError(absl::StrCat("cl_init: ", cl_strerror(rc)));
  }
  return absl::OkStatus();
}

// True when `path` is a file, or a folder holding at least one database file.
bool LooksLikeDatabase(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  if (S_ISREG(st.st_mode)) return true;
  if (!S_ISDIR(st.st_mode)) return false;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return false;
  bool found = false;
  static const char* kExt[] = {".cvd", ".cld", ".cud", ".ndb", ".hdb", ".hsb", ".ldb",
                               ".mdb", ".msb", ".db",  ".ndu", ".ldu", ".yar", ".yara",
                               ".cdb", ".idb", ".pdb", ".wdb", ".ftm", ".cbc", ".ign2"};
  while (dirent* e = readdir(d)) {
    for (const char* ext : kExt) {
      if (absl::EndsWith(e->d_name, ext)) found = true;
    }
  }
  closedir(d);
  return found;
}

std::string TempDir() {
  const char* env = std::getenv("TMPDIR");
  if (env != nullptr && *env) return env;
  if (access("/dev/shm", W_OK) == 0) return "/dev/shm";
  return "/tmp";
}

}  // namespace

absl::StatusOr<std::shared_ptr<ClamEngine>> ClamEngine::Load(const Options& options) {
  if (absl::Status s = InitLibclamav(); !s.ok()) return s;
  std::vector<std::string> tried;
  for (const std::string& db : options.databases) {
    if (!LooksLikeDatabase(db)) {
      tried.push_back(absl::StrCat(db, " (no database files)"));
      continue;
    }
    std::shared_ptr<ClamEngine> e(new ClamEngine());
    e->engine_ = cl_engine_new();
    if (e->engine_ == nullptr) return absl::InternalError("cl_engine_new failed");
    cl_engine_set_str(e->engine_, CL_ENGINE_TMPDIR, TempDir().c_str());
    cl_engine_set_num(e->engine_, CL_ENGINE_MAX_SCANTIME,
                      absl::ToInt64Milliseconds(options.max_scan_time));
    long long max_file = std::max<int64_t>(options.max_file_size, 1 << 20);
    cl_engine_set_num(e->engine_, CL_ENGINE_MAX_FILESIZE, max_file);
    cl_engine_set_num(e->engine_, CL_ENGINE_MAX_SCANSIZE,
                      std::min<long long>(max_file * 4, 4000LL << 20));
    if (options.disable_cache) cl_engine_set_num(e->engine_, CL_ENGINE_DISABLE_CACHE, 1);
    unsigned int sigs = 0;
    cl_error_t rc = cl_load(db.c_str(), e->engine_, &sigs, CL_DB_STDOPT);
    if (rc != CL_SUCCESS) {
      tried.push_back(absl::StrCat(db, " (", cl_strerror(rc), ")"));
      continue;
    }
    rc = cl_engine_compile(e->engine_);
    if (rc != CL_SUCCESS) {
      tried.push_back(absl::StrCat(db, " (compile: ", cl_strerror(rc), ")"));
      continue;
    }
    e->database_ = db;
    e->signatures_ = sigs;
    LOG(INFO) << "libclam: loaded " << sigs << " signatures from " << db;
    return e;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "libclam: no ClamAV database could be loaded; tried: ",
      tried.empty() ? "nothing (no database configured)" : absl::StrJoin(tried, ", ")));
}

ClamEngine::~ClamEngine() {
  if (engine_ != nullptr) cl_engine_free(engine_);
}

absl::StatusOr<std::string> ClamEngine::ScanBuffer(absl::string_view data,
                                                   bool parse_mail) const {
  cl_fmap_t* map = cl_fmap_open_memory(data.data(), data.size());
  if (map == nullptr) return absl::ResourceExhaustedError("cl_fmap_open_memory failed");
  struct cl_scan_options opts = {};
  opts.parse = ~0u;
  if (!parse_mail) opts.parse &= ~CL_SCAN_PARSE_MAIL;
  const char* virname = nullptr;
  unsigned long scanned = 0;
  cl_error_t rc = cl_scanmap_callback(map, nullptr, &virname, &scanned, engine_, &opts,
                                      nullptr);
  cl_fmap_close(map);
  if (rc == CL_VIRUS) return std::string(virname != nullptr ? virname : "unknown");
  if (rc == CL_CLEAN) return std::string();
  if (rc == CL_ETIMEOUT) {
    return absl::DeadlineExceededError("libclamav: scan time limit exceeded");
  }
  return absl::InternalError(absl::StrCat("libclamav: ", cl_strerror(rc)));
}

absl::StatusOr<engine::ScanResult> LibclamScanner::Scan(engine::ScanContext& ctx) const {
  if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
  absl::StatusOr<std::string> name = engine_->ScanBuffer(ctx.message(), parse_mail_);
  if (!name.ok()) return name.status();
  if (name->empty()) return engine::ScanResult::Clean(Describe());
  return engine::ScanResult::Detected(1.0, *name, Describe(),
                                      absl::StrCat("stream: ", *name, " FOUND"));
}

}  // namespace sagator::scanners
