// The scanner-tree engine's core types: a Scanner looks at one message in a
// ScanContext and returns SAGATOR's result triple (level, name, output) or an error.
//
// Realscanners (libclam, clamd, string_scan, ...) detect; interscanners (drop,
// alternatives, rename, ...) wrap other scanners and add control flow or side effects
// through the context (flags, header edits). An error is SAGATOR's ScannerError:
// unless alternatives/recover handle it, the message gets TEMPFAIL (451).
//
// Scanners are built once from the configuration and then shared by every scan
// thread: Scan() must be thread-safe and keep per-message state in the ScanContext.
#ifndef SAGATOR_SCANNER_SVC_ENGINE_SCANNER_H_
#define SAGATOR_SCANNER_SVC_ENGINE_SCANNER_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sagator::engine {

// The version in X-Sagator-Scanner and in reports.
inline constexpr char kSagatorVersion[] = "2.0.0-cpp";

// SAGATOR's result triple, plus where it came from.
struct ScanResult {
  // >= 1.0 means detected; spam scanners give fractions (score / required).
  double level = 0.0;
  // Detection name ("Eicar-Test-Signature", "SPAM", ...); empty when clean.
  std::string name;
  // Free text output of the scanner.
  std::string output;
  // Rendering of the scanner that produced the result, with the wrappers it passed
  // through, e.g. "drop(libclam())".
  std::string path;
  // The scanner could not look at the message (size limits): never "clean".
  bool not_scanned = false;

  bool detected() const { return level >= 1.0; }

  static ScanResult Clean(std::string path) {
    ScanResult r;
    r.path = std::move(path);
    return r;
  }
  static ScanResult Detected(double level, std::string name, std::string path,
                             std::string output = "") {
    ScanResult r;
    r.level = level;
    r.name = std::move(name);
    r.path = std::move(path);
    r.output = std::move(output);
    return r;
  }
};

// The envelope as the engine sees it (no proto or gRPC types in the core).
struct MessageEnvelope {
  std::string sender;
  std::vector<std::string> recipients;
  std::string client_address;
  std::string client_name;
  std::string helo;
};

// A header edit requested by a scanner; applied by the gateway.
struct HeaderEdit {
  enum class Kind { kAdd, kReplace, kRemove };
  Kind kind = Kind::kAdd;
  std::string name;
  std::string value;
};

// What a container scanner (parsemail) knows about the part being scanned.
struct PartInfo {
  // The attachment's file name, empty when it has none.
  std::string filename;
  // "text/plain", "application/zip", ...
  std::string content_type;
  // 1 for a part of the message itself, 2 for a part of an attached message, ...
  int depth = 0;
};

// What a quarantine scanner hands to its store once the chain has decided.
struct QuarantineItem {
  absl::string_view message;
  const MessageEnvelope* envelope = nullptr;
  // The detection that asked for the quarantine.
  const ScanResult* result = nullptr;
  // The chain's outcome (a sagator.common.v1.Outcome value).
  int outcome = 0;
  std::string sagator_id;
  absl::Time deadline;
};

// Where quarantined messages go (quarantine-svc over gRPC; a fake in tests).
// Thread-safe.
class QuarantineSink {
 public:
  virtual ~QuarantineSink() = default;
  // Stores the message durably and returns its quarantine id.
  virtual absl::StatusOr<std::string> Store(const QuarantineItem& item) const = 0;
};

// A quarantine asked for by a scanner during the scan.
struct QuarantineRequest {
  const QuarantineSink* sink = nullptr;
  ScanResult result;
};

// How the chain decided a message, for the scanners that act once it has (log,
// log_sql, report): the final outcome, the X-Sagator-ID and the quarantine id.
struct Decision {
  // The message; only its head (the header block) when it was too large to scan.
  absl::string_view message;
  // The message's size in bytes.
  int64_t size = 0;
  const MessageEnvelope* envelope = nullptr;
  // The chain's result (for an error: its message in output).
  const ScanResult* result = nullptr;
  // A sagator.common.v1.Outcome value.
  int outcome = 0;
  std::string sagator_id;
  std::string quarantine_id;
  absl::Time deadline;
};

// A scanner's action that runs after the chain has decided. Thread-safe; failures
// are its own to log: the decision stands.
class Finisher {
 public:
  virtual ~Finisher() = default;
  // `trigger` is the result of the finisher's inner scanners for this message.
  virtual void Finish(const Decision& decision, const ScanResult& trigger) const = 0;
};

struct FinishRequest {
  const Finisher* finisher = nullptr;
  ScanResult trigger;
};

// Per-message state of one scan. Not thread-safe: one scan, one thread.
class ScanContext {
 public:
  ScanContext(absl::string_view message, MessageEnvelope envelope, absl::Time deadline,
              std::function<bool()> cancelled = nullptr)
      : message_(message),
        envelope_(std::move(envelope)),
        deadline_(deadline),
        cancelled_(std::move(cancelled)) {}

  // A context for scanning one part of this message (parsemail): the same envelope,
  // deadline and cancellation, with `data` as its message. MergeChild brings the
  // flags and header edits the inner scanners set back into this context.
  ScanContext Child(absl::string_view data, PartInfo part) const {
    ScanContext c(data, envelope_, deadline_, cancelled_);
    c.memory_only_ = memory_only_;
    c.part_ = std::move(part);
    c.cache_ = cache_;
    return c;
  }
  void MergeChild(const ScanContext& child) {
    drop_ = drop_ || child.drop_;
    deliver_ = deliver_ || child.deliver_;
    defer_ = defer_ || child.defer_;
    if (reply_text_.empty()) reply_text_ = child.reply_text_;
    edits_.insert(edits_.end(), child.edits_.begin(), child.edits_.end());
    quarantine_.insert(quarantine_.end(), child.quarantine_.begin(), child.quarantine_.end());
    finish_.insert(finish_.end(), child.finish_.begin(), child.finish_.end());
  }
  // The part this context scans; nullopt for the whole message.
  const std::optional<PartInfo>& part() const { return part_; }

  // The raw message (or the rewritten one, once a scanner replaced it).
  absl::string_view message() const {
    return rewritten_ ? absl::string_view(*rewritten_) : message_;
  }
  const MessageEnvelope& envelope() const { return envelope_; }
  absl::Time deadline() const { return deadline_; }

  // OK while the scan may go on; DeadlineExceeded or Cancelled once the caller's
  // deadline passed or the caller went away. Scanners check it between steps, and
  // network scanners bound their waits by deadline().
  absl::Status CheckAlive() const;

  // Set by a caller on an event loop's thread (smtpd_policy deciding in-process,
  // scanner-svc's gRPC threads): the scanners must not wait (database, network,
  // disk). One that cannot answer from memory returns WouldWaitError
  // (common/would_wait.h) without side effects, and the caller runs the chain again
  // on a thread that may wait. Only chains whose scanners all HonorsMemoryOnly() are
  // run so.
  void set_memory_only(bool v) { memory_only_ = v; }
  bool memory_only() const { return memory_only_; }

  // Flags set by drop() and deliver() for the detection that decides.
  void set_drop(bool v) { drop_ = v; }
  bool drop() const { return drop_; }
  void set_deliver(bool v) { deliver_ = v; }
  bool deliver() const { return deliver_; }
  // Set by policy scanners (greylist): the detection that decides means "try
  // again later" (TEMPFAIL), not a rejection.
  void set_defer(bool v) { defer_ = v; }
  bool defer() const { return defer_; }
  // Reply text for the MTA chosen by the deciding scanner (after the status code,
  // e.g. "4.7.1 Greylisted, ..."); empty: the engine's default text.
  void set_reply_text(std::string text) { reply_text_ = std::move(text); }
  const std::string& reply_text() const { return reply_text_; }

  // Set by quarantine(): the whole message is stored once the chain has decided
  // (with the final outcome), by the chain runner.
  void RequestQuarantine(QuarantineRequest request) { quarantine_.push_back(std::move(request)); }
  const std::vector<QuarantineRequest>& quarantine_requests() const { return quarantine_; }

  // Set by log, log_sql and report: run by the chain runner once the chain has
  // decided (after the quarantine store), in the order they were asked for.
  void RequestFinish(FinishRequest request) { finish_.push_back(std::move(request)); }
  const std::vector<FinishRequest>& finish_requests() const { return finish_; }

  // buffer2file: the message is also in this file, for scanners that read files
  // (clamd's SCAN). Unset for parts and under file2buffer.
  const std::optional<std::string>& file_path() const { return file_path_; }
  void set_file_path(std::optional<std::string> path) { file_path_ = std::move(path); }

  // cache('VAR', ...): results remembered for this message (its parts included).
  const ScanResult* Cached(const std::string& name) const {
    auto it = cache_->find(name);
    return it == cache_->end() ? nullptr : &it->second;
  }
  void Remember(const std::string& name, ScanResult result) {
    (*cache_)[name] = std::move(result);
  }

  void AddHeaderEdit(HeaderEdit edit) { edits_.push_back(std::move(edit)); }
  const std::vector<HeaderEdit>& header_edits() const { return edits_; }

  // Replaces the message for the scanners that follow and for delivery.
  void RewriteMessage(std::string message) {
    rewritten_ = std::move(message);
    file_path_.reset();  // the file holds the old message
  }
  const std::optional<std::string>& rewritten() const { return rewritten_; }

 private:
  absl::string_view message_;
  MessageEnvelope envelope_;
  absl::Time deadline_;
  std::function<bool()> cancelled_;
  bool memory_only_ = false;
  bool drop_ = false;
  bool deliver_ = false;
  bool defer_ = false;
  std::string reply_text_;
  std::vector<HeaderEdit> edits_;
  std::vector<QuarantineRequest> quarantine_;
  std::vector<FinishRequest> finish_;
  std::optional<std::string> file_path_;
  std::optional<std::string> rewritten_;
  std::optional<PartInfo> part_;
  std::shared_ptr<std::map<std::string, ScanResult>> cache_ =
      std::make_shared<std::map<std::string, ScanResult>>();
};

// One node of a scanner tree.
class Scanner {
 public:
  virtual ~Scanner() = default;

  // Scans ctx.message(). Thread-safe.
  virtual absl::StatusOr<ScanResult> Scan(ScanContext& ctx) const = 0;

  // SAGATOR-style rendering of this node and its children, e.g. "drop(libclam())",
  // used in X-Sagator-Scanner and in result paths.
  virtual std::string Describe() const = 0;

  // True when Scan keeps ScanContext::memory_only's promise: with it set, the
  // scanner (and every scanner under it) answers without waiting or returns
  // WouldWaitError before any side effect. The default, false, keeps a chain
  // that contains the scanner off event loops.
  virtual bool HonorsMemoryOnly() const { return false; }
};

using ScannerPtr = std::unique_ptr<Scanner>;

// `r` with its path wrapped: "wrapper(" + path + ")".
ScanResult Wrap(ScanResult r, absl::string_view wrapper);

// `n` random letters and digits (X-Sagator-ID, report's %(RANDOM)s, Message-IDs).
std::string RandomAlnum(int n);

// SAGATOR's stars: one '*' per tenth of level, at most 50.
std::string Stars(double level);

// For container scanners (parsemail, decompress): runs `inner` on `data` as one part
// of ctx's message, in a child context with `part`, and merges the child's flags and
// header edits back. Returns the detection, with "(in NAME)" added to its output when
// part.filename is set and `show_name`, or nullopt; a part that was not scanned
// (size limits) sets *not_scanned to its reason (or `fallback`), so the container
// can say so instead of "clean".
absl::StatusOr<std::optional<ScanResult>> ScanPart(const Scanner& inner, ScanContext& ctx,
                                                   absl::string_view data, PartInfo part,
                                                   bool show_name, std::string* not_scanned,
                                                   absl::string_view fallback);

}  // namespace sagator::engine

#endif  // SAGATOR_SCANNER_SVC_ENGINE_SCANNER_H_
