// sglist: see sglist.h.
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/time/clock.h"
#include "common/cli.h"
#include "common/sql.h"
#include "scanner-svc/scanners/policy.h"
#include "tools/sglist/sglist.h"
#include "common/config.h"

ABSL_FLAG(std::string, db, "default", "the database (a name under `databases:`)");
ABSL_FLAG(absl::Duration, expire, absl::ZeroDuration(),
          "add: lifetime of the entry (e.g. 30d is 720h); 0 keeps it forever");
ABSL_FLAG(std::string, comment, "", "add: a note stored with the entry");
ABSL_FLAG(int, limit, 100, "greylist: most records shown");

namespace {


// Cleanup follows the first greylist scanner on this database, if any.
bool FindGreylist(const google::protobuf::RepeatedPtrField<sagator::config::v1::ScannerSpec>& specs,
                  const std::string& db, sagator::policy::GreylistParams* out) {
  for (const auto& s : specs) {
    if (s.has_greylist() && s.greylist().db() == db) {
      *out = sagator::scanners::GreylistParamsOf(s.greylist());
      return true;
    }
    if (s.has_alternatives() && FindGreylist(s.alternatives().scanners(), db, out)) return true;
    if (s.has_match_any() && FindGreylist(s.match_any().scanners(), db, out)) return true;
    if (s.has_match_all() && FindGreylist(s.match_all().scanners(), db, out)) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> positional;
  sagator::LoadedConfig cfg = sagator::InitBinary(argc, argv, sagator::sglist::kUsage, &positional);
  std::string name = absl::GetFlag(FLAGS_db);
  auto it = cfg.proto.databases().find(name);
  if (it == cfg.proto.databases().end()) {
    std::cerr << "sglist: " << cfg.path << " configures no database named '" << name << "'\n";
    return 2;
  }
  auto db = sagator::sql::Open(it->second, cfg.base_dir);
  if (!db.ok()) {
    std::cerr << "sglist: " << db.status().message() << "\n";
    return 1;
  }
  auto store = sagator::policy::PolicyStore::Open(*db);
  if (!store.ok()) {
    std::cerr << "sglist: " << store.status().message() << "\n";
    return 1;
  }
  sagator::sglist::Options options;
  options.expire = absl::GetFlag(FLAGS_expire);
  options.comment = absl::GetFlag(FLAGS_comment);
  options.limit = absl::GetFlag(FLAGS_limit);
  for (const auto& [_, chain] : cfg.proto.chains()) {
    if (FindGreylist(chain.scanners(), name, &options.greylist)) break;
  }
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  std::shared_ptr<sagator::scanners::ScannerSetTable> sets;
  if (!args.empty() && (args[0] == "sets" || args[0] == "set" || args[0] == "unset")) {
    auto table = sagator::scanners::ScannerSetTable::Open(*db);
    if (!table.ok()) {
      std::cerr << "sglist: " << table.status().message() << "\n";
      return 1;
    }
    sets = *table;
    options.sets = sets.get();
  }
  return sagator::sglist::Run(**store, args, options, absl::Now(), std::cout, std::cerr);
}
