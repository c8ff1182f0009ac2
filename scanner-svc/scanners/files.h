// Scanners about files: file_magic (what the data is, by libmagic) and the adapters
// buffer2file/b2f, buffer2mbox and file2buffer/f2b.
//
// SAGATOR's scanners were either buffer or file scanners. Here every scanner reads
// memory; buffer2file additionally writes the message to a private temporary file
// for the scanners that can hand a path to a daemon (clamd with scan_file), and
// file2buffer hides that file again.
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_FILES_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_FILES_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "re2/re2.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::scanners {

// What libmagic says about some data.
struct MagicType {
  std::string mime;         // "application/zip"
  std::string description;  // "Zip archive data, at least v2.0 to extract"
};

// libmagic's compiled database, loaded once; Identify() is thread-safe (each call
// borrows one of a pool of libmagic handles, which are not).
class Magic {
 public:
  static absl::StatusOr<std::shared_ptr<Magic>> Load();
  ~Magic();
  // The MIME type, and the description when `describe` (a second libmagic pass).
  absl::StatusOr<MagicType> Identify(absl::string_view data, bool describe = true) const;

 private:
  Magic() = default;
  absl::StatusOr<void*> Borrow() const;
  void Return(void* cookie) const;

  mutable absl::Mutex mu_;
  mutable std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);
};

struct FileMagicRule {
  std::unique_ptr<RE2> mime;         // null: any
  std::unique_ptr<RE2> description;  // null: any
  std::string name;                  // may use %(MIME)s and %(DESCRIPTION)s
  double level = 1.0;
};

// file_magic(rules): the first rule whose patterns match decides; clean otherwise,
// with the type in the output. The description is asked of libmagic only when a
// rule matches descriptions (each ask is a pass over the data).
class FileMagic final : public engine::Scanner {
 public:
  FileMagic(std::shared_ptr<Magic> magic, std::vector<FileMagicRule> rules);
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override { return "file_magic()"; }

 private:
  std::shared_ptr<Magic> magic_;
  std::vector<FileMagicRule> rules_;
  // Some rule matches descriptions: libmagic's second pass is needed.
  bool describe_ = false;
};

// buffer2file(scanners) / buffer2mbox(scanners): the inner scanners run with the
// message also in a temporary file (mode 0600 in tmp_dir, removed afterwards); mbox
// adds a "From " line and quotes body lines starting with "From ".
class BufferToFile final : public engine::Scanner {
 public:
  BufferToFile(std::string tmp_dir, bool mbox, engine::ScannerPtr inner)
      : tmp_dir_(std::move(tmp_dir)), mbox_(mbox), inner_(std::move(inner)) {}
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  std::string tmp_dir_;
  bool mbox_;
  engine::ScannerPtr inner_;
};

// file2buffer(scanners) / f2b: the inner scanners see no file, only the message.
class FileToBuffer final : public engine::Scanner {
 public:
  explicit FileToBuffer(engine::ScannerPtr inner) : inner_(std::move(inner)) {}
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  engine::ScannerPtr inner_;
};

// The message in mbox form: "From <sender or MAILER-DAEMON> <asctime>" and the
// message with LF line ends, body lines starting with (>*)"From " quoted by one '>'
// (mboxrd), and an empty line.
std::string MboxEntry(absl::string_view message, absl::string_view sender, absl::Time when);
// The message part of an mbox entry: LF line ends, (>*)"From " lines quoted.
std::string MboxQuote(absl::string_view message);

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_FILES_H_
