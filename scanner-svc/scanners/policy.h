// SAGATOR's policy scanners, which decide from the envelope (and the shared
// PolicyStore) rather than the message, so they serve the SMTP stage
// (smtpd_policy, recipient_policy, the milter's RCPT check) as well as content
// chains:
//
// - greylist(): defers a new (client network, sender, recipient) triplet with
//   "4.7.1 Greylisted ..." (TEMPFAIL), passes a retry after `min` and adds a
//   header saying how long the mail was delayed.
// - sql_list(): a white entry forces acceptance (FORCED_PASS, Postfix OK) and
//   stops the chain, so later greylisting is skipped; a black entry rejects.
// - add_listed(flags, expire, scanners): when the inner scanners detect, adds
//   entries for the client address (xA), the sender (xS) or the recipients (xR).
//
// Thread-safe. A database error is a scanner error (TEMPFAIL, or the next
// alternative inside alternatives()).
#ifndef SAGATOR_SCANNER_SVC_SCANNERS_POLICY_H_
#define SAGATOR_SCANNER_SVC_SCANNERS_POLICY_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sagator/config/v1/config.pb.h"
#include "scanner-svc/engine/scanner.h"
#include "scanner-svc/policy/policy_store.h"

namespace sagator::scanners {

using Clock = std::function<absl::Time()>;

// The store's greylisting parameters of a greylist() entry.
policy::GreylistParams GreylistParamsOf(const config::v1::GreylistSpec& spec);

class GreylistScanner final : public engine::Scanner {
 public:
  GreylistScanner(std::shared_ptr<policy::PolicyStore> store,
                  const config::v1::GreylistSpec& spec, Clock clock = absl::Now);
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override { return "greylist()"; }
  // Passed triplets and whitelisted clients answer from the store's memory.
  bool HonorsMemoryOnly() const override { return true; }

 private:
  // Removes old records at most every ten minutes (on the scanning thread); false
  // when one is due and `memory_only` forbids it (nothing is done then).
  bool MaybeCleanup(absl::Time now, bool memory_only) const;

  std::shared_ptr<policy::PolicyStore> store_;
  policy::GreylistParams params_;
  std::string info_url_;
  int ipv4_prefix_;
  int ipv6_prefix_;
  std::string header_name_;
  std::string header_value_;  // with %d for the delay
  Clock clock_;
  mutable std::atomic<int64_t> next_cleanup_{0};
};

class SqlListScanner final : public engine::Scanner {
 public:
  SqlListScanner(std::shared_ptr<policy::PolicyStore> store, std::string name,
                 Clock clock = absl::Now)
      : store_(std::move(store)), name_(std::move(name)), clock_(std::move(clock)) {}
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override { return "sql_list()"; }
  // The lists answer from the store's memory between version checks.
  bool HonorsMemoryOnly() const override { return true; }

 private:
  std::shared_ptr<policy::PolicyStore> store_;
  std::string name_;
  Clock clock_;
};

class AddListed final : public engine::Scanner {
 public:
  // `flags` such as "BA" or "BA,BS"; an unknown flag is an error.
  static absl::StatusOr<std::unique_ptr<AddListed>> Create(
      std::shared_ptr<policy::PolicyStore> store, const config::v1::AddListedSpec& spec,
      engine::ScannerPtr inner, Clock clock = absl::Now);
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override;
  std::string Describe() const override;

 private:
  AddListed() = default;
  std::shared_ptr<policy::PolicyStore> store_;
  std::vector<policy::ListKind> kinds_;
  std::string flags_;
  absl::Duration expire_;
  engine::ScannerPtr inner_;
  Clock clock_;
};

}  // namespace sagator::scanners

#endif  // SAGATOR_SCANNER_SVC_SCANNERS_POLICY_H_
