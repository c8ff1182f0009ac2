#include "scanner-svc/scanners/files.h"

#include <fcntl.h>
#include <magic.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "common/mail_headers.h"

namespace sagator::scanners {

absl::StatusOr<std::shared_ptr<Magic>> Magic::Load() {
  std::shared_ptr<Magic> m(new Magic());
  // Loads the database once now, so a missing one fails at start, not per message.
  absl::StatusOr<void*> cookie = m->Borrow();
  if (!cookie.ok()) return cookie.status();
  m->Return(*cookie);
  return m;
}

Magic::~Magic() {
  for (void* c : idle_) magic_close(static_cast<magic_t>(c));
}

absl::StatusOr<void*> Magic::Borrow() const {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      void* c = idle_.back();
      idle_.pop_back();
      return c;
    }
  }
  magic_t c = magic_open(MAGIC_NONE);
  if (c == nullptr) return absl::InternalError("libmagic: magic_open failed");
  if (magic_load(c, nullptr) != 0) {
    std::string why = magic_error(c) ? magic_error(c) : "no database";
    magic_close(c);
    return absl::FailedPreconditionError(absl::StrCat("libmagic: cannot load its database: ", why));
  }
  return static_cast<void*>(c);
}

void Magic::Return(void* cookie) const {
  absl::MutexLock lock(&mu_);
  idle_.push_back(cookie);
}

absl::StatusOr<MagicType> Magic::Identify(absl::string_view data, bool describe) const {
  absl::StatusOr<void*> borrowed = Borrow();
  if (!borrowed.ok()) return borrowed.status();
  magic_t c = static_cast<magic_t>(*borrowed);
  absl::Cleanup give_back = [&] { Return(c); };
  MagicType out;
  for (auto [flags, field] : {std::pair{MAGIC_MIME_TYPE, &out.mime},
                              std::pair{MAGIC_NONE, &out.description}}) {
    if (field == &out.description && !describe) break;
    magic_setflags(c, flags);
    const char* what = magic_buffer(c, data.data(), data.size());
    if (what == nullptr) {
      return absl::InternalError(
          absl::StrCat("libmagic: ", magic_error(c) ? magic_error(c) : "failed"));
    }
    *field = what;
  }
  return out;
}

FileMagic::FileMagic(std::shared_ptr<Magic> magic, std::vector<FileMagicRule> rules)
    : magic_(std::move(magic)), rules_(std::move(rules)) {
  for (const FileMagicRule& r : rules_) describe_ = describe_ || r.description != nullptr;
}

absl::StatusOr<engine::ScanResult> FileMagic::Scan(engine::ScanContext& ctx) const {
  absl::StatusOr<MagicType> type = magic_->Identify(ctx.message(), describe_);
  if (!type.ok()) return type.status();
  std::string output =
      type->description.empty() ? type->mime : absl::StrCat(type->mime, "; ", type->description);
  for (const FileMagicRule& rule : rules_) {
    if (rule.mime && !RE2::PartialMatch(type->mime, *rule.mime)) continue;
    if (rule.description && !RE2::PartialMatch(type->description, *rule.description)) continue;
    std::string name = ExpandVariables(
        rule.name, {{"MIME", type->mime}, {"DESCRIPTION", type->description}});
    return engine::ScanResult::Detected(rule.level, std::move(name), Describe(),
                                        std::move(output));
  }
  engine::ScanResult r = engine::ScanResult::Clean(Describe());
  r.output = std::move(output);
  return r;
}

std::string MboxQuote(absl::string_view message) {
  std::string out;
  std::string lf = absl::StrReplaceAll(message, {{"\r\n", "\n"}});
  size_t start = 0;
  while (start < lf.size()) {
    size_t end = lf.find('\n', start);
    absl::string_view line(lf.data() + start,
                           (end == std::string::npos ? lf.size() : end) - start);
    size_t quotes = line.find_first_not_of('>');
    if (quotes != absl::string_view::npos && line.substr(quotes).rfind("From ", 0) == 0) {
      out.push_back('>');
    }
    absl::StrAppend(&out, line, "\n");
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

std::string MboxEntry(absl::string_view message, absl::string_view sender, absl::Time when) {
  return absl::StrCat("From ", sender.empty() ? "MAILER-DAEMON" : sender, " ",
                      absl::FormatTime("%a %b %e %H:%M:%S %Y", when, absl::UTCTimeZone()), "\n",
                      MboxQuote(message), "\n");
}

absl::StatusOr<engine::ScanResult> BufferToFile::Scan(engine::ScanContext& ctx) const {
  std::string dir = tmp_dir_;
  if (dir.empty()) {
    const char* env = getenv("TMPDIR");
    dir = env && *env ? env : "/tmp";
  }
  std::string path = absl::StrCat(dir, "/sagator-scan-XXXXXX");
  int fd = mkstemp(path.data());
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("buffer2file: cannot create a file in ", dir, ": ", strerror(errno)));
  }
  absl::Cleanup remove = [&] { unlink(path.c_str()); };
  std::string mbox;
  absl::string_view data = ctx.message();
  if (mbox_) {
    mbox = MboxEntry(data, ctx.envelope().sender, absl::Now());
    data = mbox;
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = strerror(errno);
      close(fd);
      return absl::UnavailableError(absl::StrCat("buffer2file: writing ", path, ": ", why));
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd) != 0) {
    return absl::UnavailableError(absl::StrCat("buffer2file: closing ", path, ": ",
                                               strerror(errno)));
  }
  std::optional<std::string> outer = ctx.file_path();
  ctx.set_file_path(path);
  absl::StatusOr<engine::ScanResult> r = inner_->Scan(ctx);
  ctx.set_file_path(std::move(outer));
  if (!r.ok()) return r;
  return engine::Wrap(*std::move(r), mbox_ ? "buffer2mbox" : "buffer2file");
}

std::string BufferToFile::Describe() const {
  return absl::StrCat(mbox_ ? "buffer2mbox(" : "buffer2file(", inner_->Describe(), ")");
}

absl::StatusOr<engine::ScanResult> FileToBuffer::Scan(engine::ScanContext& ctx) const {
  std::optional<std::string> outer = ctx.file_path();
  ctx.set_file_path(std::nullopt);
  absl::StatusOr<engine::ScanResult> r = inner_->Scan(ctx);
  ctx.set_file_path(std::move(outer));
  if (!r.ok()) return r;
  return engine::Wrap(*std::move(r), "file2buffer");
}

std::string FileToBuffer::Describe() const {
  return absl::StrCat("file2buffer(", inner_->Describe(), ")");
}

}  // namespace sagator::scanners
