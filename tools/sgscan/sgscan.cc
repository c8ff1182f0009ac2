#include "tools/sgscan/sgscan.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "scanner-svc/scanners/files.h"

namespace sagator::sgscan {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

struct Sgscan::Item {
  enum class Kind { kFile, kMaildir, kMbox };
  std::string path;
  Kind kind = Kind::kFile;
  int64_t messages = 1;
};

namespace {

bool ReadWhole(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  *out = s.str();
  return !in.bad();
}

bool IsDir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Entries of a folder, sorted, without . and ..
std::vector<std::string> List(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") out.push_back(absl::StrCat(dir, "/", name));
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool IsMbox(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[5] = {};
  in.read(head, 5);
  return in.gcount() == 5 && std::string(head, 5) == "From ";
}

void DisableIn(Message* m) {
  const google::protobuf::Reflection* r = m->GetReflection();
  if (auto* spec = dynamic_cast<config::v1::ScannerSpec*>(m)) {
    if (spec->has_spamassassind() || spec->has_rspamd()) {
      spec->mutable_nothing();
      return;
    }
  }
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(*m, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(*m, f); ++i) DisableIn(r->MutableRepeatedMessage(m, f, i));
    } else {
      DisableIn(r->MutableMessage(m, f));
    }
  }
}

}  // namespace

void DisableSpamScanners(config::v1::Config* config) { DisableIn(config); }

std::vector<MboxMessage> SplitMbox(const std::string& content) {
  std::vector<MboxMessage> out;
  size_t start = 0;
  bool previous_empty = true;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    std::string line = content.substr(start, end == std::string::npos ? std::string::npos
                                                                       : end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    start = end == std::string::npos ? content.size() : end + 1;
    if (previous_empty && absl::StartsWith(line, "From ")) {
      MboxMessage m;
      m.from_line = line;
      size_t sp = line.find(' ', 5);
      m.sender = line.substr(5, sp == std::string::npos ? std::string::npos : sp - 5);
      if (m.sender == "MAILER-DAEMON") m.sender.clear();
      out.push_back(std::move(m));
      previous_empty = false;
      continue;
    }
    previous_empty = line.empty();
    if (out.empty()) continue;  // text before the first "From " line
    size_t quotes = line.find_first_not_of('>');
    if (quotes != std::string::npos && quotes > 0 &&
        line.compare(quotes, 5, "From ") == 0) {
      line.erase(0, 1);
    }
    absl::StrAppend(&out.back().message, line, "\n");
  }
  // The empty line before each "From " line (and at the end) separates; it is no
  // part of the message.
  for (MboxMessage& m : out) {
    if (absl::EndsWith(m.message, "\n\n")) m.message.pop_back();
  }
  return out;
}

void Sgscan::Collect(const std::string& path, std::vector<Item>* items) {
  if (IsDir(path)) {
    if (IsDir(path + "/cur") && IsDir(path + "/new")) {
      for (const char* sub : {"/cur", "/new"}) {
        for (const std::string& f : List(path + sub)) {
          if (!IsDir(f)) items->push_back({f, Item::Kind::kMaildir, 1});
        }
      }
      return;
    }
    for (const std::string& f : List(path)) Collect(f, items);
    return;
  }
  if (IsMbox(path)) {
    // Counting reads the mbox once more: only for the progress line's total.
    int64_t n = 1;
    std::string content;
    if (options_.progress && ReadWhole(path, &content)) {
      n = static_cast<int64_t>(SplitMbox(content).size());
    }
    items->push_back({path, Item::Kind::kMbox, n});
    return;
  }
  items->push_back({path, Item::Kind::kFile, 1});
}

bool Sgscan::ScanOne(const std::string& label, const std::string& message,
                     const std::string& sender) {
  ++summary_.messages;
  summary_.bytes += static_cast<int64_t>(message.size());
  engine::MessageEnvelope env;
  env.sender = sender;
  absl::StatusOr<ChainVerdict> v =
      chains_.Run(chain_, message, env, absl::Now() + options_.timeout);
  bool detected = false;
  std::string line;
  if (!v.ok() || v->outcome == common::v1::TEMPFAIL) {
    ++summary_.errors;
    line = absl::StrCat(label, ": ERROR ", v.ok() ? v->result.output : v.status().ToString());
  } else if (v->result.detected()) {
    ++summary_.detected;
    // Only mail that would not be delivered is removed by --clean.
    detected = v->outcome == common::v1::REJECT || v->outcome == common::v1::DROP;
    line = absl::StrFormat("%s: %s FOUND (level %.2f, scanner %s)", label, v->result.name,
                           v->result.level, v->result.path);
  } else if (options_.verbose) {
    line = v->result.not_scanned ? absl::StrCat(label, ": NOT SCANNED (", v->result.name, ")")
                                 : absl::StrCat(label, ": CLEAN");
  }
  if (!line.empty() && !options_.quiet) {
    if (options_.progress) fputs("\r\033[K", err_);
    fprintf(out_, "%s\n", line.c_str());
    fflush(out_);
  }
  Progress(false);
  return detected;
}

void Sgscan::ScanMbox(const Item& item) {
  std::string content;
  if (!ReadWhole(item.path, &content)) {
    ++summary_.errors;
    if (!options_.quiet) fprintf(out_, "%s: ERROR cannot read\n", item.path.c_str());
    return;
  }
  std::vector<MboxMessage> messages = SplitMbox(content);
  std::string kept;
  int64_t removed = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const MboxMessage& m = messages[i];
    bool found = ScanOne(absl::StrCat(item.path, "#", i + 1), m.message, m.sender);
    if (found && options_.clean) {
      ++removed;
    } else {
      absl::StrAppend(&kept, m.from_line, "\n", scanners::MboxQuote(m.message), "\n");
    }
  }
  if (removed == 0) return;
  // A new file renamed over the old one: a crash leaves one or the other, whole.
  std::string tmp = absl::StrCat(item.path, ".sgscan-tmp");
  struct stat st;
  bool have_mode = stat(item.path.c_str(), &st) == 0;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << kept;
    out.flush();
    if (!out) {
      ++summary_.errors;
      fprintf(err_, "sgscan: %s: cannot write %s; mailbox left as it was\n", item.path.c_str(),
              tmp.c_str());
      unlink(tmp.c_str());
      return;
    }
  }
  if (have_mode) chmod(tmp.c_str(), st.st_mode & 07777);
  if (rename(tmp.c_str(), item.path.c_str()) != 0) {
    ++summary_.errors;
    unlink(tmp.c_str());
    return;
  }
  summary_.removed += removed;
}

void Sgscan::Progress(bool final) {
  if (!options_.progress) return;
  absl::Time now = absl::Now();
  if (!final && now - last_progress_ < absl::Milliseconds(200)) return;
  last_progress_ = now;
  int64_t done = summary_.messages;
  std::string eta = "--:--";
  if (done > 0 && total_ > done) {
    int64_t left = absl::ToInt64Seconds((now - started_) / static_cast<double>(done) *
                                        static_cast<double>(total_ - done));
    eta = absl::StrFormat("%02d:%02d", left / 60, left % 60);
  } else if (done >= total_) {
    eta = "00:00";
  }
  fprintf(err_, "\r\033[K%lld/%lld messages, %lld found, ETA %s", static_cast<long long>(done),
          static_cast<long long>(total_), static_cast<long long>(summary_.detected), eta.c_str());
  if (final) fputs("\n", err_);
  fflush(err_);
}

int Sgscan::Run(const std::vector<std::string>& paths) {
  started_ = absl::Now();
  std::vector<Item> items;
  for (const std::string& p : paths) {
    if (access(p.c_str(), R_OK) != 0) {
      ++summary_.errors;
      fprintf(out_, "%s: ERROR cannot read\n", p.c_str());
      continue;
    }
    Collect(p, &items);
  }
  for (const Item& i : items) total_ += i.messages;
  for (const Item& item : items) {
    if (item.kind == Item::Kind::kMbox) {
      ScanMbox(item);
      continue;
    }
    std::string message;
    if (!ReadWhole(item.path, &message)) {
      ++summary_.errors;
      if (!options_.quiet) fprintf(out_, "%s: ERROR cannot read\n", item.path.c_str());
      continue;
    }
    bool found = ScanOne(item.path, message, "");
    if (found && options_.clean && item.kind == Item::Kind::kMaildir) {
      if (unlink(item.path.c_str()) == 0) {
        ++summary_.removed;
      } else {
        ++summary_.errors;
      }
    }
  }
  Progress(true);
  fprintf(err_, "sgscan: %lld messages (%lld bytes) in %s: %lld detected, %lld errors%s\n",
          static_cast<long long>(summary_.messages), static_cast<long long>(summary_.bytes),
          absl::FormatDuration(absl::Trunc(absl::Now() - started_, absl::Milliseconds(1))).c_str(),
          static_cast<long long>(summary_.detected), static_cast<long long>(summary_.errors),
          options_.clean ? absl::StrCat(", ", summary_.removed, " removed").c_str() : "");
  fflush(err_);
  if (summary_.detected > 0) return 1;
  return summary_.errors > 0 ? 3 : 0;
}

}  // namespace sagator::sgscan
