#include "tools/sglist/sglist.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace sagator::sglist {

const char kUsage[] =
    "sglist: SAGATOR's black/white lists and greylisting state.\n"
    "Usage: sglist [--config FILE] [--db NAME] COMMAND\n"
    "  list [KIND]                       list entries (KIND: BA BS BR WA WS WR)\n"
    "  add KIND VALUE [--expire D] [--comment TEXT]\n"
    "                                    add or renew an entry; VALUE is an IP address,\n"
    "                                    a network (/8 /16 /24, IPv6 /32 /48 /64), a mail\n"
    "                                    address, a domain or <> (the null sender)\n"
    "  remove KIND VALUE                 remove an entry\n"
    "  greylist [FILTER] [--limit N]     greylisting records matching FILTER\n"
    "  cleanup                           remove expired records and entries\n"
    "  sets                              sql_find's table: address or @domain -> set\n"
    "  set ADDRESS SET                   ADDRESS (user@domain or @domain) uses scanner set SET\n"
    "  unset ADDRESS                     ADDRESS goes back to sql_find's default\n"
    "Running scanner-svc replicas see list changes within a second.";

namespace {

std::string Time(absl::Time t) {
  if (t == absl::InfiniteFuture()) return "never";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", t, absl::UTCTimeZone());
}

}  // namespace

int Run(policy::PolicyStore& store, const std::vector<std::string>& args,
        const Options& options, absl::Time now, std::ostream& out, std::ostream& err) {
  auto usage = [&](absl::string_view why) {
    err << "sglist: " << why << "\n" << kUsage << "\n";
    return 2;
  };
  auto failed = [&](const absl::Status& s) {
    err << "sglist: " << s.message() << "\n";
    return 1;
  };
  if (args.empty()) return usage("no command given");
  const std::string& cmd = args[0];

  if (cmd == "list") {
    if (args.size() > 2) return usage("list takes at most a kind");
    std::optional<policy::ListKind> kind;
    if (args.size() == 2) {
      auto k = policy::ParseListKind(args[1]);
      if (!k.ok()) return usage(k.status().message());
      kind = *k;
    }
    auto entries = store.ListEntries(kind);
    if (!entries.ok()) return failed(entries.status());
    out << absl::StrFormat("%-4s %-40s %-19s %-19s %s\n", "KIND", "VALUE", "ADDED (UTC)",
                           "EXPIRES (UTC)", "COMMENT");
    for (const policy::ListEntry& e : *entries) {
      std::string expires = Time(e.expires);
      if (e.expires <= now) absl::StrAppend(&expires, " (expired)");
      out << absl::StrFormat("%-4s %-40s %-19s %-19s %s\n", policy::ListKindName(e.kind),
                             e.value, Time(e.created), expires, e.comment);
    }
    return 0;
  }

  if (cmd == "add" || cmd == "remove") {
    if (args.size() != 3) return usage(absl::StrCat(cmd, " takes a kind and a value"));
    auto kind = policy::ParseListKind(args[1]);
    if (!kind.ok()) return usage(kind.status().message());
    if (cmd == "remove") {
      auto removed = store.RemoveListEntry(*kind, args[2]);
      if (!removed.ok()) return failed(removed.status());
      if (!*removed) {
        err << "sglist: no " << policy::ListKindName(*kind) << " entry " << args[2] << "\n";
        return 1;
      }
      out << "removed " << policy::ListKindName(*kind) << " " << args[2] << "\n";
      return 0;
    }
    policy::ListEntry e;
    e.kind = *kind;
    e.value = args[2];
    e.created = now;
    if (options.expire > absl::ZeroDuration()) e.expires = now + options.expire;
    e.comment = options.comment;
    absl::Status s = store.AddListEntry(e);
    if (s.code() == absl::StatusCode::kInvalidArgument) return usage(s.message());
    if (!s.ok()) return failed(s);
    out << "added " << policy::ListKindName(*kind) << " "
        << *policy::NormalizeListValue(*kind, args[2]) << ", expires " << Time(e.expires)
        << "\n";
    return 0;
  }

  if (cmd == "greylist") {
    if (args.size() > 2) return usage("greylist takes at most a filter");
    auto recs = store.GreylistRecords(args.size() == 2 ? args[1] : "", options.limit);
    if (!recs.ok()) return failed(recs.status());
    out << absl::StrFormat("%-20s %-30s %-30s %-19s %-19s %s\n", "CLIENT NETWORK", "SENDER",
                           "RECIPIENT", "FIRST SEEN (UTC)", "LAST SEEN (UTC)", "STATE");
    for (const policy::GreylistRecord& r : *recs) {
      std::string state =
          r.passed_at ? absl::StrCat("passed after ",
                                     absl::ToInt64Seconds(*r.passed_at - r.first_seen), " s")
                      : "waiting";
      out << absl::StrFormat("%-20s %-30s %-30s %-19s %-19s %s\n", r.triplet.client_network,
                             r.triplet.sender.empty() ? "<>" : r.triplet.sender,
                             r.triplet.recipient, Time(r.first_seen), Time(r.last_seen), state);
    }
    return 0;
  }

  if (cmd == "cleanup") {
    if (args.size() != 1) return usage("cleanup takes no arguments");
    auto c = store.Cleanup(options.greylist, now);
    if (!c.ok()) return failed(c.status());
    out << "removed " << c->triplets << " greylisting triplets, " << c->clients
        << " clients, " << c->list_entries << " expired list entries\n";
    return 0;
  }
  if (cmd == "sets" || cmd == "set" || cmd == "unset") {
    if (options.sets == nullptr) return failed(absl::FailedPreconditionError("no sql_find table"));
    if (cmd == "sets") {
      if (args.size() != 1) return usage("sets takes nothing");
      auto list = options.sets->List();
      if (!list.ok()) return failed(list.status());
      out << absl::StrFormat("%-40s %s\n", "ADDRESS", "SET");
      for (const auto& [address, set] : *list) out << absl::StrFormat("%-40s %s\n", address, set);
      return 0;
    }
    if (cmd == "set" && args.size() != 3) return usage("set takes an address and a set");
    if (cmd == "unset" && args.size() != 2) return usage("unset takes an address");
    if (args[1].find('@') == std::string::npos) {
      return usage("the address is user@domain or @domain");
    }
    absl::Status s = cmd == "set" ? options.sets->Set(args[1], args[2])
                                  : options.sets->Remove(args[1]);
    if (!s.ok()) return failed(s);
    out << (cmd == "set" ? absl::StrCat(args[1], " uses ", args[2]) : absl::StrCat("unset ", args[1]))
        << "\n";
    return 0;
  }
  return usage(absl::StrCat("unknown command '", cmd, "'"));
}

}  // namespace sagator::sglist
