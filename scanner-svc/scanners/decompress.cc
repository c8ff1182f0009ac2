#include "scanner-svc/scanners/decompress.h"

#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"

namespace sagator::scanners {
namespace {

using engine::ScanContext;
using engine::ScanResult;

struct ArchiveCloser {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveCloser>;

// One scan's walk through nested archives; the counters span every level.
class Unpacker {
 public:
  Unpacker(const engine::Scanner& inner, ScanContext& ctx, const DecompressLimits& limits)
      : inner_(inner), ctx_(ctx), limits_(limits) {}

  // Scans `data`: as an archive when it is one, else with the inner scanners.
  // nullopt when nothing was detected.
  absl::StatusOr<std::optional<ScanResult>> ScanData(absl::string_view data, const std::string& name,
                                                     int depth) {
    if (absl::Status alive = ctx_.CheckAlive(); !alive.ok()) return alive;
    ArchivePtr a(archive_read_new());
    archive_read_support_filter_all(a.get());
    // Every archive format but the text-based ones (mtree, WARC), which take plain
    // text for a damaged archive.
    for (auto support : {archive_read_support_format_7zip, archive_read_support_format_ar,
                         archive_read_support_format_cab, archive_read_support_format_cpio,
                         archive_read_support_format_iso9660, archive_read_support_format_lha,
                         archive_read_support_format_rar, archive_read_support_format_rar5,
                         archive_read_support_format_tar, archive_read_support_format_xar,
                         archive_read_support_format_zip}) {
      support(a.get());
    }
    // A single compressed file (file.gz) is the "raw" format behind a filter.
    archive_read_support_format_raw(a.get());
    archive_entry* entry = nullptr;
    if (data.empty()) return ScanPlain(data, name, depth);
    int rc = archive_read_open_memory(a.get(), data.data(), data.size());
    if (rc == ARCHIVE_OK) rc = archive_read_next_header(a.get(), &entry);
    // An archive without members (or data a format takes for one, such as zeros
    // for tar) holds nothing to unpack: scan it as it is.
    if (rc == ARCHIVE_EOF) return ScanPlain(data, name, depth);
    if (rc != ARCHIVE_OK) {
      // The raw format takes any data, so failing here means a compression or an
      // archive format was recognised and then broke off: damaged, not "clean".
      Limit(absl::StrCat(name, " is a damaged archive (",
                         archive_error_string(a.get()) ? archive_error_string(a.get()) : "error",
                         ")"));
      return std::nullopt;
    }
    if (archive_format(a.get()) == ARCHIVE_FORMAT_RAW && archive_filter_count(a.get()) <= 1) {
      return ScanPlain(data, name, depth);
    }
    if (depth >= limits_.max_depth) {
      Limit(absl::StrCat("nested deeper than ", limits_.max_depth, " in ", name));
      return std::nullopt;
    }
    do {
      if (archive_entry_filetype(entry) != AE_IFREG) continue;
      std::string member_name = archive_format(a.get()) == ARCHIVE_FORMAT_RAW
                                    ? absl::StrCat(name, "/(uncompressed)")
                                    : absl::StrCat(name, "/", archive_entry_pathname(entry)
                                                                  ? archive_entry_pathname(entry)
                                                                  : "?");
      if (++files_ > limits_.max_files) {
        Limit(absl::StrCat("more than ", limits_.max_files, " files"));
        return std::nullopt;
      }
      if (archive_entry_size_is_set(entry) && archive_entry_size(entry) > limits_.max_file_size) {
        Limit(absl::StrCat(member_name, " is larger than ", limits_.max_file_size, " bytes"));
        continue;
      }
      std::string member;
      bool complete = false;
      if (!ReadMember(a.get(), member_name, &member, &complete)) return std::nullopt;
      if (!complete) continue;
      absl::StatusOr<std::optional<ScanResult>> r = ScanData(member, member_name, depth + 1);
      if (!r.ok() || r->has_value()) return r;
    } while (NextHeader(a.get(), &entry, name));
    return std::nullopt;
  }

  const std::string& limit() const { return limit_; }
  const std::string& not_scanned() const { return not_scanned_; }

 private:
  // Reads one member in chunks, within the size limits. False when the walk must stop
  // (the total is spent); *complete false when only this member is skipped.
  bool ReadMember(archive* a, const std::string& name, std::string* out, bool* complete) {
    char buf[64 * 1024];
    for (;;) {
      la_ssize_t n = archive_read_data(a, buf, sizeof buf);
      if (n == 0) break;
      if (n < 0) {
        Limit(absl::StrCat(name, " cannot be read (", archive_error_string(a) ? archive_error_string(a) : "error", ")"));
        return true;
      }
      if (static_cast<int64_t>(out->size()) + n > limits_.max_file_size) {
        Limit(absl::StrCat(name, " is larger than ", limits_.max_file_size, " bytes"));
        return true;
      }
      total_ += n;
      if (total_ > limits_.max_total_size) {
        Limit(absl::StrCat("more than ", limits_.max_total_size, " bytes unpacked"));
        return false;
      }
      out->append(buf, static_cast<size_t>(n));
    }
    *complete = true;
    return true;
  }

  bool NextHeader(archive* a, archive_entry** entry, const std::string& name) {
    int rc = archive_read_next_header(a, entry);
    if (rc == ARCHIVE_OK || rc == ARCHIVE_WARN) return true;
    if (rc != ARCHIVE_EOF) {
      Limit(absl::StrCat(name, " is damaged (",
                         archive_error_string(a) ? archive_error_string(a) : "error", ")"));
    }
    return false;
  }

  absl::StatusOr<std::optional<ScanResult>> ScanPlain(absl::string_view data,
                                                      const std::string& name, int depth) {
    engine::PartInfo part = ctx_.part().value_or(engine::PartInfo{});
    if (depth > 0) part.filename = name;
    return engine::ScanPart(inner_, ctx_, data, std::move(part), /*show_name=*/depth > 0,
                            &not_scanned_, "a member was not scanned");
  }

  void Limit(std::string why) {
    if (limit_.empty()) limit_ = std::move(why);
  }

  const engine::Scanner& inner_;
  ScanContext& ctx_;
  const DecompressLimits& limits_;
  int files_ = 0;
  int64_t total_ = 0;
  std::string limit_;
  std::string not_scanned_;
};

}  // namespace

std::string Decompress::Describe() const {
  return absl::StrCat("decompress(", inner_->Describe(), ")");
}

absl::StatusOr<ScanResult> Decompress::Scan(ScanContext& ctx) const {
  Unpacker unpacker(*inner_, ctx, limits_);
  std::string name = ctx.part() && !ctx.part()->filename.empty() ? ctx.part()->filename
                                                                 : std::string("message");
  absl::StatusOr<std::optional<ScanResult>> found = unpacker.ScanData(ctx.message(), name, 0);
  if (!found.ok()) return found.status();
  if (found->has_value()) {
    ScanResult r = **std::move(found);
    r.path = absl::StrCat("decompress(", r.path, ")");
    return r;
  }
  if (!unpacker.limit().empty()) {
    std::string what = absl::StrCat("archive limit: ", unpacker.limit());
    if (!limits_.limit_detection.empty()) {
      return ScanResult::Detected(1.0, limits_.limit_detection, Describe(), what);
    }
    ScanResult r = ScanResult::Clean(Describe());
    r.not_scanned = true;
    r.name = absl::StrCat("not scanned: ", what);
    return r;
  }
  if (!unpacker.not_scanned().empty()) {
    ScanResult r = ScanResult::Clean(Describe());
    r.not_scanned = true;
    r.name = absl::StrCat("not scanned: ", unpacker.not_scanned());
    return r;
  }
  return ScanResult::Clean(Describe());
}

}  // namespace sagator::scanners
