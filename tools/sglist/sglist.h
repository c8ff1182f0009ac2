// sglist: the command-line tool for SAGATOR's policy state: list, add and remove
// black/white list entries, show greylisting records, clean up. The commands run
// against a PolicyStore, so the tool works on SQLite and PostgreSQL alike.
//
//   sglist --config /etc/sagator/sagator.yaml list [KIND]
//   sglist add BS spammer.example --expire 30d --comment "spam run"
//   sglist remove BS spammer.example
//   sglist greylist [FILTER] [--limit 50]
//   sglist cleanup
//   sglist set @example.com strict        (sql_find's table)
#ifndef SAGATOR_TOOLS_SGLIST_SGLIST_H_
#define SAGATOR_TOOLS_SGLIST_SGLIST_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "scanner-svc/policy/policy_store.h"
#include "scanner-svc/scanners/find.h"

namespace sagator::sglist {

struct Options {
  // Lifetime of added entries; zero: forever.
  absl::Duration expire = absl::ZeroDuration();
  std::string comment;
  int limit = 100;
  // Cleanup's greylisting parameters (those of the configured greylist scanner).
  policy::GreylistParams greylist;
  // sql_find's table for sets/set/unset; null: those commands fail.
  scanners::ScannerSetTable* sets = nullptr;
};

extern const char kUsage[];

// Runs one command (`args` without the program name). Output goes to `out`, errors
// to `err`. Returns the exit status: 0 done, 1 failed (e.g. no such entry, the
// database is down), 2 bad usage.
int Run(policy::PolicyStore& store, const std::vector<std::string>& args,
        const Options& options, absl::Time now, std::ostream& out, std::ostream& err);

}  // namespace sagator::sglist

#endif  // SAGATOR_TOOLS_SGLIST_SGLIST_H_
