// The scanner-tree engine as scanner-svc runs it: every chain of the configuration
// built once at start, and Run(), which scans a message through a named chain and
// maps SAGATOR's result to an outcome with the headers to add.
//
//   auto chains = ChainSet::Create(config);          // loads ClamAV etc. once
//   absl::StatusOr<ChainVerdict> v = (*chains)->Run("default", message, env, deadline);
//
// Outcome mapping (SAGATOR's status codes): a scanner error gives TEMPFAIL (451);
// a result not scanned for its size gives global.not_scanned_outcome; a detection
// (level >= 1.0) gives TEMPFAIL when a policy scanner deferred it (greylist), DROP
// (551) when drop() matched it, FORCED_PASS (251) when deliver() matched it (or a
// white list), else REJECT (550); anything else is PASS (250). The deciding
// scanner may choose the reply text.
//
// Thread-safe: Run() may be called from many threads at once.
#ifndef SAGATOR_SCANNER_SVC_CHAIN_SET_H_
#define SAGATOR_SCANNER_SVC_CHAIN_SET_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/config.h"
#include "common/stats.h"
#include "sagator/common/v1/common.pb.h"
#include "scanner-svc/engine/actions.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator {

using engine::kSagatorVersion;

// The decision about one message.
struct ChainVerdict {
  common::v1::Outcome outcome = common::v1::OUTCOME_UNSPECIFIED;
  engine::ScanResult result;
  // Why the outcome is TEMPFAIL, when a scanner failed.
  absl::Status error;
  // Header edits for the gateway: X-Sagator-ID and X-Sagator-Scanner first, then
  // those of the scanners.
  std::vector<engine::HeaderEdit> edits;
  std::string sagator_id;
  // Set when a quarantine scanner stored the message.
  std::string quarantine_id;
  std::optional<std::string> rewritten;
  // Text that follows the status code towards the MTA.
  std::string reply_text;
};

// Makes X-Sagator-ID values: YYYYMMDD-HHMMSS-NNNN-PPPPP-RRRRRR@hostname, where
// NNNN is a per-process counter, PPPPP the process id and RRRRRR random. Thread-safe.
std::string NewSagatorId(absl::string_view hostname, absl::Time now);

class ChainSet {
 public:
  // Builds every chain of `config`. Fails when a scanner cannot be built (a regexp
  // that does not compile, no loadable ClamAV database, ...), naming the key.
  // The scanners count into `registry` (scans by scanner, the status scanner's
  // counters); nullptr: a registry of the ChainSet's own.
  static absl::StatusOr<std::unique_ptr<ChainSet>> Create(const LoadedConfig& config,
                                                          stats::Registry* registry = nullptr);
  // Builds only `chains` and the chains they name (smtpd_policy in_process).
  static absl::StatusOr<std::unique_ptr<ChainSet>> Create(const LoadedConfig& config,
                                                          const std::vector<std::string>& chains,
                                                          stats::Registry* registry = nullptr);

  bool Has(absl::string_view chain) const { return chains_.count(std::string(chain)) > 0; }
  std::vector<std::string> Names() const;

  // Scans `message` with `chain`. NotFound for an unknown chain; DeadlineExceeded or
  // Cancelled when the caller's time ran out (no verdict then). Scanner errors are
  // not errors here: they give a TEMPFAIL verdict.
  absl::StatusOr<ChainVerdict> Run(absl::string_view chain, absl::string_view message,
                                   engine::MessageEnvelope envelope, absl::Time deadline,
                                   std::function<bool()> cancelled = nullptr) const;

  // Runs a policy chain at an SMTP stage (no message): the same outcome mapping,
  // without X-Sagator-ID and X-Sagator-Scanner. With `memory_only` (a caller on an
  // event loop's thread; see engine::ScanContext::memory_only) the chain runs only
  // if its scanners honor it, and WouldWaitError comes back when it does not run or
  // a scanner would wait: run it again without.
  absl::StatusOr<ChainVerdict> RunPolicy(absl::string_view chain,
                                         engine::MessageEnvelope envelope, absl::Time deadline,
                                         std::function<bool()> cancelled = nullptr,
                                         bool memory_only = false) const;

  // False for a configured chain with a scanner that does not honor memory_only
  // (RunPolicy would answer WouldWaitError at once): callers skip preparing such a
  // run. True for an unknown chain (RunPolicy answers NotFound).
  bool MayRunMemoryOnly(absl::string_view chain) const;
  // The WouldWaitError for such a chain.
  static absl::Status MayWait(absl::string_view chain);

  // The verdict for a message that is too large to scan (`size` bytes, of which
  // `head` is the start that was kept: its header block at least, when it can be).
  // The chain's log and log_sql that run for every message record it (see
  // finishers_).
  absl::StatusOr<ChainVerdict> TooLarge(absl::string_view chain, absl::string_view head,
                                        int64_t size, engine::MessageEnvelope envelope,
                                        absl::Time deadline) const;

  int64_t max_message_size() const { return max_message_size_; }
  const std::string& hostname() const { return hostname_; }

 private:
  ChainSet() = default;
  absl::StatusOr<ChainVerdict> RunChain(absl::string_view chain, absl::string_view message,
                                        engine::MessageEnvelope envelope, absl::Time deadline,
                                        std::function<bool()> cancelled, bool content,
                                        bool memory_only = false) const;
  // Maps the result to the outcome; `content` adds the X-Sagator headers.
  // Stores the message for the context's first quarantine request; a failure
  // becomes the verdict's error (TEMPFAIL).
  void StoreInQuarantine(const engine::ScanContext& ctx, ChainVerdict* v) const;
  ChainVerdict Finish(const engine::Scanner& chain, ChainVerdict v, bool content) const;
  // Runs the finishers `ctx` asked for with the decision `v` about a message of
  // `size` bytes.
  void RunFinishers(const engine::ScanContext& ctx, int64_t size, const ChainVerdict& v) const;

  std::unique_ptr<stats::Registry> own_registry_;
  std::map<std::string, std::unique_ptr<engine::Scanner>> chains_;
  // Each chain's log, log_sql and report nodes that run for every message: in its
  // list, inside each other, and those of the chains it includes there; not those
  // below a scanner that runs its inner scanners only sometimes (parsemail, a find
  // set, a branch).
  std::map<std::string, std::vector<const engine::FinishAfter*>> finishers_;
  std::string hostname_;
  int64_t max_message_size_ = 0;
  common::v1::Outcome not_scanned_outcome_ = common::v1::FORCED_PASS;
};

}  // namespace sagator

#endif  // SAGATOR_SCANNER_SVC_CHAIN_SET_H_
