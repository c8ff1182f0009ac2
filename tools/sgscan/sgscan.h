// sgscan: scans files, mbox files and maildirs with a configured chain, in-process
// (the same ChainSet scanner-svc runs), and reports what it found.
//
//   ScanOptions o;  o.clean = true;
//   Sgscan scan(*chains, "default", o, stdout, stderr);
//   int status = scan.Run({"/var/mail/bob", "Maildir"});
//
// Inputs: a maildir (a folder with cur/ and new/: each file one message), an mbox
// file (it starts with "From "; split at "From " lines, mboxrd quoting undone), any
// other folder (walked; its files scanned), any other file (one message).
//
// Output (stdout), one line per detection: "PATH[#N]: NAME FOUND (level L, scanner
// S)", "PATH: CLEAN" with verbose, "PATH: ERROR text" for scan errors; a summary
// line on stderr at the end. quiet prints the summary only. progress draws
// "done/total, hits, ETA" on stderr. clean removes detected messages from mailboxes:
// the maildir file is deleted, the mbox is rewritten without them (a new file renamed
// over the old one); plain files are left alone.
//
// Exit status: 0 nothing found, 1 something detected, 3 scan or read errors (and
// nothing detected).
#ifndef SAGATOR_TOOLS_SGSCAN_SGSCAN_H_
#define SAGATOR_TOOLS_SGSCAN_SGSCAN_H_

#include <cstdio>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "sagator/config/v1/config.pb.h"
#include "scanner-svc/chain_set.h"

namespace sagator::sgscan {

struct ScanOptions {
  bool clean = false;
  bool verbose = false;
  bool quiet = false;
  bool progress = false;
  // Per message.
  absl::Duration timeout = absl::Seconds(300);
};

// --av-only: spamassassind and rspamd scanners of `config` become nothing().
void DisableSpamScanners(config::v1::Config* config);

// One mbox file split into messages: the "From " line and the message (LF line ends,
// ">From " unquoted).
struct MboxMessage {
  std::string from_line;
  std::string sender;
  std::string message;
};
std::vector<MboxMessage> SplitMbox(const std::string& content);

struct Summary {
  int64_t messages = 0;
  int64_t bytes = 0;
  int64_t detected = 0;
  int64_t errors = 0;
  int64_t removed = 0;
};

class Sgscan {
 public:
  Sgscan(const ChainSet& chains, std::string chain, ScanOptions options, FILE* out, FILE* err)
      : chains_(chains), chain_(std::move(chain)), options_(options), out_(out), err_(err) {}
  // Scans every path; returns the exit status.
  int Run(const std::vector<std::string>& paths);
  const Summary& summary() const { return summary_; }

 private:
  struct Item;
  void Collect(const std::string& path, std::vector<Item>* items);
  // Scans one message; true when it was detected.
  bool ScanOne(const std::string& label, const std::string& message, const std::string& sender);
  void ScanMbox(const Item& item);
  void Progress(bool final);

  const ChainSet& chains_;
  std::string chain_;
  ScanOptions options_;
  FILE* out_;
  FILE* err_;
  Summary summary_;
  int64_t total_ = 0;
  absl::Time started_;
  absl::Time last_progress_ = absl::InfinitePast();
};

}  // namespace sagator::sgscan

#endif  // SAGATOR_TOOLS_SGSCAN_SGSCAN_H_
