#include "scanner-svc/chain_set.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <set>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "re2/re2.h"
#include "common/mail_headers.h"
#include "common/would_wait.h"
#include "scanner-svc/engine/actions.h"
#include "scanner-svc/engine/combinators.h"
#include "scanner-svc/scanners/basic.h"
#include "scanner-svc/scanners/clamd.h"
#include "scanner-svc/scanners/decompress.h"
#include "scanner-svc/scanners/files.h"
#include "scanner-svc/scanners/find.h"
#include "scanner-svc/scanners/libclam.h"
#include "scanner-svc/scanners/parsemail.h"
#include "scanner-svc/scanners/policy.h"
#include "scanner-svc/scanners/logging.h"
#include "scanner-svc/scanners/quarantine.h"
#include "scanner-svc/scanners/report.h"
#include "scanner-svc/scanners/rspamd.h"
#include "scanner-svc/scanners/spamd.h"
#include "services/smtpd/next_hop.h"

namespace sagator {
namespace {

using config::v1::ScannerSpec;
using engine::Scanner;
using engine::ScannerPtr;

// `chain: NAME` inside another chain: runs the named chain's scanners.
class ChainRef final : public Scanner {
 public:
  ChainRef(std::string name, const Scanner* target) : name_(std::move(name)), target_(target) {}
  absl::StatusOr<engine::ScanResult> Scan(engine::ScanContext& ctx) const override {
    return target_->Scan(ctx);
  }
  std::string Describe() const override { return target_->Describe(); }

 private:
  std::string name_;
  const Scanner* target_;
};

// Builds scanner trees from the configuration; shares one ClamAV engine per
// database setting.
class TreeBuilder {
 public:
  TreeBuilder(const LoadedConfig& config,
              std::map<std::string, std::unique_ptr<Scanner>>* chains,
              std::map<std::string, std::vector<const engine::FinishAfter*>>* finishers,
              stats::Registry* registry)
      : config_(config), chains_(chains), finishers_(finishers), registry_(registry) {}

  absl::Status BuildChain(const std::string& name) {
    if (chains_->count(name)) return absl::OkStatus();
    if (!building_.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("chain '", name, "' includes itself"));
    }
    const auto& spec = config_.proto.chains().at(name);
    current_.push_back(name);
    const int outer_depth = conditional_depth_;
    conditional_depth_ = 0;
    auto list = BuildList(spec.scanners(), absl::StrCat("chains.", name));
    conditional_depth_ = outer_depth;
    current_.pop_back();
    if (!list.ok()) return list.status();
    (*chains_)[name] = std::make_unique<engine::Sequence>(*std::move(list));
    building_.erase(name);
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<std::vector<ScannerPtr>> BuildList(
      const google::protobuf::RepeatedPtrField<ScannerSpec>& specs, const std::string& path) {
    std::vector<ScannerPtr> out;
    for (int i = 0; i < specs.size(); ++i) {
      auto s = Build(specs[i], absl::StrCat(path, "[", i, "]"));
      if (!s.ok()) return s.status();
      out.push_back(*std::move(s));
    }
    return out;
  }

  // Inner scanners of a wrapper: one scanner, or a Sequence of several.
  absl::StatusOr<ScannerPtr> BuildInner(
      const google::protobuf::RepeatedPtrField<ScannerSpec>& specs, const std::string& path) {
    if (specs.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_.path, ": ", path, ".scanners: needs at least one scanner"));
    }
    auto list = BuildList(specs, absl::StrCat(path, ".scanners"));
    if (!list.ok()) return list.status();
    if (list->size() == 1) return std::move((*list)[0]);
    return ScannerPtr(std::make_unique<engine::Sequence>(*std::move(list)));
  }

  absl::StatusOr<std::unique_ptr<RE2>> Regexp(const std::string& pattern,
                                              const std::string& path) {
    RE2::Options opts;
    opts.set_log_errors(false);
    auto re = std::make_unique<RE2>(pattern, opts);
    if (!re->ok()) {
      return absl::InvalidArgumentError(absl::StrCat(config_.path, ": ", path, ": '", pattern,
                                                     "' does not compile: ", re->error()));
    }
    return re;
  }

  absl::StatusOr<std::shared_ptr<const scanners::ClamEngine>> Engine(
      const config::v1::LibclamSpec& spec) {
    scanners::ClamEngine::Options o;
    for (const std::string& db : spec.database()) o.databases.push_back(config_.ResolvePath(db));
    if (o.databases.empty()) o.databases = {"/var/lib/clamav"};
    o.disable_cache = spec.disable_cache();
    o.max_scan_time = absl::Seconds(spec.max_scan_time().seconds()) +
                      absl::Nanoseconds(spec.max_scan_time().nanos());
    o.max_file_size = config_.proto.global().max_message_size() + 1;
    std::string key = absl::StrCat(absl::StrJoin(o.databases, "\n"), "|", o.disable_cache, "|",
                                   absl::FormatDuration(o.max_scan_time));
    auto it = engines_.find(key);
    if (it != engines_.end()) return it->second;
    auto e = scanners::ClamEngine::Load(o);
    if (!e.ok()) return e.status();
    engines_[key] = *e;
    return std::shared_ptr<const scanners::ClamEngine>(*e);
  }

  // Database `name`, opened once.
  absl::StatusOr<std::shared_ptr<sql::Database>> Db(const std::string& name) {
    auto it = dbs_.find(name);
    if (it != dbs_.end()) return it->second;
    auto db = sql::Open(config_.proto.databases().at(name), config_.base_dir);
    if (!db.ok()) return db.status();
    dbs_[name] = *db;
    return *db;
  }

  // The scan_log table of database `name`, migrated once.
  absl::StatusOr<std::shared_ptr<scanners::ScanLog>> Log(const std::string& name) {
    auto it = logs_.find(name);
    if (it != logs_.end()) return it->second;
    auto db = Db(name);
    if (!db.ok()) return db.status();
    auto log = scanners::ScanLog::Open(*db);
    if (!log.ok()) return log.status();
    std::shared_ptr<scanners::ScanLog> shared = *std::move(log);
    logs_[name] = shared;
    return shared;
  }

  // A find scanner's sets, and its default checked against them.
  absl::StatusOr<std::map<std::string, ScannerPtr>> Sets(
      const google::protobuf::Map<std::string, config::v1::ScannerList>& specs,
      const std::string& default_set, const std::string& path) {
    std::map<std::string, ScannerPtr> sets;
    for (const auto& [name, list] : specs) {
      auto inner = BuildInner(list.scanners(), absl::StrCat(path, ".sets.", name));
      if (!inner.ok()) return inner.status();
      sets[name] = *std::move(inner);
    }
    if (!default_set.empty() && !sets.count(default_set)) {
      return absl::InvalidArgumentError(absl::StrCat(config_.path, ": ", path, ".default: '",
                                                     default_set, "' is not under sets"));
    }
    return sets;
  }

  // The policy store on database `name`, opened (and migrated) once per database.
  absl::StatusOr<std::shared_ptr<policy::PolicyStore>> Store(const std::string& name) {
    auto it = stores_.find(name);
    if (it != stores_.end()) return it->second;
    auto db = Db(name);
    if (!db.ok()) return db.status();
    auto store = policy::PolicyStore::Open(*db);
    if (!store.ok()) return store.status();
    std::shared_ptr<policy::PolicyStore> shared = *std::move(store);
    stores_[name] = shared;
    return shared;
  }

  // A node, with its runs counted (scans{scanner, result}) when it is a realscanner.
  absl::StatusOr<ScannerPtr> Build(const ScannerSpec& spec, const std::string& path) {
    // Below any scanner but log, log_sql, report and chain, a node may not run for
    // every message (a find set, a branch, a part of the message).
    const bool always_runs_inner =
        spec.kind_case() == ScannerSpec::kLog || spec.kind_case() == ScannerSpec::kLogSql ||
        spec.kind_case() == ScannerSpec::kReport ||
        spec.kind_case() == ScannerSpec::kReportRecipients ||
        spec.kind_case() == ScannerSpec::kChain;
    if (!always_runs_inner) ++conditional_depth_;
    absl::StatusOr<ScannerPtr> s = BuildNode(spec, path);
    if (!always_runs_inner) --conditional_depth_;
    if (!s.ok()) return s;
    switch (spec.kind_case()) {
      case ScannerSpec::kLibclam:
      case ScannerSpec::kClamd:
      case ScannerSpec::kSpamassassind:
      case ScannerSpec::kRspamd:
      case ScannerSpec::kFileMagic:
      case ScannerSpec::kStringScan:
      case ScannerSpec::kRegexpScan:
      case ScannerSpec::kMaxFileSize:
      case ScannerSpec::kGreylist:
      case ScannerSpec::kSqlList: {
        std::string kind = ScannerSpec::descriptor()->FindFieldByNumber(spec.kind_case())->name();
        return ScannerPtr(std::make_unique<engine::CountScans>(kind, registry_, *std::move(s)));
      }
      default:
        return s;
    }
  }

  absl::StatusOr<ScannerPtr> BuildNode(const ScannerSpec& spec, const std::string& path) {
    auto with_path = [&](absl::Status s) {
      return absl::Status(s.code(), absl::StrCat(config_.path, ": ", path, ": ", s.message()));
    };
    switch (spec.kind_case()) {
      case ScannerSpec::kLibclam: {
        auto e = Engine(spec.libclam());
        if (!e.ok()) return with_path(e.status());
        return ScannerPtr(
            std::make_unique<scanners::LibclamScanner>(*e, spec.libclam().scan_mail()));
      }
      case ScannerSpec::kClamd: {
        auto s = scanners::MakeClamdScanner(
            spec.clamd(), [this](absl::string_view p) { return config_.ResolvePath(p); });
        if (!s.ok()) return with_path(s.status());
        return ScannerPtr(*std::move(s));
      }
      case ScannerSpec::kStringScan:
      case ScannerSpec::kRegexpScan: {
        bool re = spec.kind_case() == ScannerSpec::kRegexpScan;
        auto s = scanners::PatternScanner::Create(re ? spec.regexp_scan() : spec.string_scan(),
                                                  re);
        if (!s.ok()) return with_path(s.status());
        return ScannerPtr(*std::move(s));
      }
      case ScannerSpec::kMaxFileSize:
        return ScannerPtr(std::make_unique<scanners::MaxFileSizeScanner>(
            spec.max_file_size().bytes(), spec.max_file_size().name()));
      case ScannerSpec::kConst:
        return ScannerPtr(
            std::make_unique<scanners::ConstScanner>(spec.const_().level(), spec.const_().name()));
      case ScannerSpec::kNothing:
        return ScannerPtr(std::make_unique<scanners::NothingScanner>());
      case ScannerSpec::kAlternatives:
      case ScannerSpec::kMatchAny:
      case ScannerSpec::kMatchAll: {
        const auto& list = spec.kind_case() == ScannerSpec::kAlternatives ? spec.alternatives()
                           : spec.kind_case() == ScannerSpec::kMatchAny   ? spec.match_any()
                                                                          : spec.match_all();
        std::string kind = spec.kind_case() == ScannerSpec::kAlternatives ? "alternatives"
                           : spec.kind_case() == ScannerSpec::kMatchAny   ? "match_any"
                                                                          : "match_all";
        if (list.scanners().empty()) {
          return with_path(absl::InvalidArgumentError("needs at least one scanner"));
        }
        auto inner = BuildList(list.scanners(), absl::StrCat(path, ".", kind));
        if (!inner.ok()) return inner.status();
        if (spec.kind_case() == ScannerSpec::kAlternatives) {
          return ScannerPtr(std::make_unique<engine::Alternatives>(*std::move(inner)));
        }
        if (spec.kind_case() == ScannerSpec::kMatchAny) {
          return ScannerPtr(std::make_unique<engine::MatchAny>(*std::move(inner)));
        }
        return ScannerPtr(std::make_unique<engine::MatchAll>(*std::move(inner)));
      }
      case ScannerSpec::kDrop:
      case ScannerSpec::kDeliver: {
        bool drop = spec.kind_case() == ScannerSpec::kDrop;
        const std::string& pattern = drop ? spec.drop().pattern() : spec.deliver().pattern();
        std::string sub = absl::StrCat(path, drop ? ".drop" : ".deliver");
        auto re = Regexp(pattern, absl::StrCat(sub, ".pattern"));
        if (!re.ok()) return re.status();
        auto inner = BuildInner(drop ? spec.drop().scanners() : spec.deliver().scanners(), sub);
        if (!inner.ok()) return inner.status();
        return ScannerPtr(std::make_unique<engine::FlagOnMatch>(
            drop ? engine::FlagOnMatch::Flag::kDrop : engine::FlagOnMatch::Flag::kDeliver,
            *std::move(re), *std::move(inner)));
      }
      case ScannerSpec::kRename: {
        auto inner = BuildInner(spec.rename().scanners(), absl::StrCat(path, ".rename"));
        if (!inner.ok()) return inner.status();
        return ScannerPtr(std::make_unique<engine::Rename>(
            spec.rename().name(), spec.rename().multiplier(), *std::move(inner)));
      }
      case ScannerSpec::kAddHeader: {
        std::string sub = absl::StrCat(path, ".add_header");
        auto re = Regexp(spec.add_header().onlyif(), absl::StrCat(sub, ".onlyif"));
        if (!re.ok()) return re.status();
        auto inner = BuildInner(spec.add_header().scanners(), sub);
        if (!inner.ok()) return inner.status();
        return ScannerPtr(std::make_unique<engine::AddHeader>(
            spec.add_header().name(), spec.add_header().data(), *std::move(re),
            *std::move(inner)));
      }
      case ScannerSpec::kParsemail: {
        auto inner = BuildInner(spec.parsemail().scanners(), absl::StrCat(path, ".parsemail"));
        if (!inner.ok()) return inner.status();
        return ScannerPtr(std::make_unique<scanners::Parsemail>(
            *std::move(inner), spec.parsemail().max_parts(), spec.parsemail().max_depth()));
      }
      case ScannerSpec::kGreylist: {
        auto store = Store(spec.greylist().db());
        if (!store.ok()) return with_path(store.status());
        return ScannerPtr(std::make_unique<scanners::GreylistScanner>(*store, spec.greylist()));
      }
      case ScannerSpec::kSqlList: {
        auto store = Store(spec.sql_list().db());
        if (!store.ok()) return with_path(store.status());
        return ScannerPtr(
            std::make_unique<scanners::SqlListScanner>(*store, spec.sql_list().name()));
      }
      case ScannerSpec::kAddListed: {
        std::string sub = absl::StrCat(path, ".add_listed");
        auto inner = BuildInner(spec.add_listed().scanners(), sub);
        if (!inner.ok()) return inner.status();
        auto store = Store(spec.add_listed().db());
        if (!store.ok()) return with_path(store.status());
        auto s = scanners::AddListed::Create(*store, spec.add_listed(), *std::move(inner));
        if (!s.ok()) return with_path(s.status());
        return ScannerPtr(*std::move(s));
      }
      case ScannerSpec::kStatus: {
        auto inner = BuildInner(spec.status().scanners(), absl::StrCat(path, ".status"));
        if (!inner.ok()) return inner.status();
        return ScannerPtr(std::make_unique<engine::CountDetections>(spec.status().prefix(),
                                                                    registry_, *std::move(inner)));
      }
      case ScannerSpec::kRecover: {
        auto inner = BuildInner(spec.recover().scanners(), absl::StrCat(path, ".recover"));
        if (!inner.ok()) return inner.status();
        return ScannerPtr(std::make_unique<engine::Recover>(
            spec.recover().level(), spec.recover().name(), *std::move(inner)));
      }
      case ScannerSpec::kRetry: {
        auto inner = BuildInner(spec.retry().scanners(), absl::StrCat(path, ".retry"));
        if (!inner.ok()) return inner.status();
        return ScannerPtr(std::make_unique<engine::Retry>(
            spec.retry().count(), ToDuration(spec.retry().delay()), *std::move(inner)));
      }
      case ScannerSpec::kModifySubject: {
        const auto& m = spec.modify_subject();
        std::string sub = absl::StrCat(path, ".modify_subject");
        auto inner = BuildInner(m.scanners(), sub);
        if (!inner.ok()) return inner.status();
        auto re = Regexp(m.onlyif(), absl::StrCat(sub, ".onlyif"));
        if (!re.ok()) return re.status();
        return ScannerPtr(
            std::make_unique<engine::ModifySubject>(m.prefix(), *std::move(re), *std::move(inner)));
      }
      case ScannerSpec::kModifyHeader: {
        const auto& m = spec.modify_header();
        std::string sub = absl::StrCat(path, ".modify_header");
        if (!IsValidHeaderName(m.name())) {
          return absl::InvalidArgumentError(
              absl::StrCat(config_.path, ": ", sub, ".name: '", m.name(), "' is no header name"));
        }
        auto inner = BuildInner(m.scanners(), sub);
        if (!inner.ok()) return inner.status();
        auto re = Regexp(m.onlyif(), absl::StrCat(sub, ".onlyif"));
        if (!re.ok()) return re.status();
        return ScannerPtr(std::make_unique<engine::ModifyHeader>(
            m.name(), m.value(), m.remove(), *std::move(re), *std::move(inner)));
      }
      case ScannerSpec::kCheckLevel: {
        const auto& c = spec.check_level();
        std::string sub = absl::StrCat(path, ".check_level");
        auto test = BuildInner(c.test(), absl::StrCat(sub, ".test"));
        if (!test.ok()) return test.status();
        std::vector<std::pair<double, ScannerPtr>> branches;
        for (int i = 0; i < c.levels_size(); ++i) {
          auto b = BuildInner(c.levels(i).scanners(), absl::StrCat(sub, ".levels[", i, "]"));
          if (!b.ok()) return b.status();
          branches.emplace_back(c.levels(i).min(), *std::move(b));
        }
        return ScannerPtr(
            std::make_unique<engine::CheckLevel>(*std::move(test), std::move(branches)));
      }
      case ScannerSpec::kCustomAction: {
        const auto& c = spec.custom_action();
        std::string sub = absl::StrCat(path, ".custom_action");
        using D = engine::CustomAction::Disposition;
        D d;
        switch (c.outcome()) {
          case common::v1::REJECT: d = D::kReject; break;
          case common::v1::DROP: d = D::kDrop; break;
          case common::v1::TEMPFAIL: d = D::kTempfail; break;
          case common::v1::FORCED_PASS: d = D::kDeliver; break;
          default:
            return absl::InvalidArgumentError(absl::StrCat(
                config_.path, ": ", sub, ".outcome: one of REJECT, DROP, TEMPFAIL, FORCED_PASS"));
        }
        auto inner = BuildInner(c.scanners(), sub);
        if (!inner.ok()) return inner.status();
        auto re = Regexp(c.onlyif(), absl::StrCat(sub, ".onlyif"));
        if (!re.ok()) return re.status();
        return ScannerPtr(
            std::make_unique<engine::CustomAction>(d, c.reply(), *std::move(re), *std::move(inner)));
      }
      case ScannerSpec::kCache: {
        auto inner = BuildInner(spec.cache().scanners(), absl::StrCat(path, ".cache"));
        if (!inner.ok()) return inner.status();
        return ScannerPtr(std::make_unique<engine::Cache>(spec.cache().name(), *std::move(inner)));
      }
      case ScannerSpec::kSpamassassind: {
        auto s = scanners::SpamdScanner::Create(
            spec.spamassassind(), [this](absl::string_view p) { return config_.ResolvePath(p); });
        if (!s.ok()) return with_path(s.status());
        return ScannerPtr(*std::move(s));
      }
      case ScannerSpec::kDecompress: {
        const auto& d = spec.decompress();
        auto inner = BuildInner(d.scanners(), absl::StrCat(path, ".decompress"));
        if (!inner.ok()) return inner.status();
        return ScannerPtr(std::make_unique<scanners::Decompress>(
            *std::move(inner),
            scanners::DecompressLimits{d.max_depth(), d.max_files(), d.max_total_size(),
                                       d.max_file_size(), d.limit_detection()}));
      }
      case ScannerSpec::kQuarantine: {
        auto inner =
            BuildInner(spec.quarantine().scanners(), absl::StrCat(path, ".quarantine"));
        if (!inner.ok()) return inner.status();
        std::string target = QuarantineTarget(config_.proto);
        if (target.empty()) {
          return with_path(absl::InvalidArgumentError(
              "needs quarantine-svc: configure a quarantine service or "
              "global.quarantine_target"));
        }
        absl::Duration timeout = ToDuration(spec.quarantine().timeout());
        auto& sink = quarantine_sinks_[absl::StrCat(target, "|", absl::FormatDuration(timeout))];
        if (sink == nullptr) {
          sink = std::make_shared<scanners::QuarantineClient>(target, timeout);
        }
        return ScannerPtr(std::make_unique<engine::Quarantine>(sink, *std::move(inner)));
      }
      case ScannerSpec::kFileMagic: {
        if (magic_ == nullptr) {
          auto m = scanners::Magic::Load();
          if (!m.ok()) return with_path(m.status());
          magic_ = *m;
        }
        std::vector<scanners::FileMagicRule> rules;
        for (int i = 0; i < spec.file_magic().rules_size(); ++i) {
          const auto& r = spec.file_magic().rules(i);
          std::string sub = absl::StrCat(path, ".file_magic.rules[", i, "]");
          if (r.mime().empty() && r.description().empty()) {
            return absl::InvalidArgumentError(
                absl::StrCat(config_.path, ": ", sub, ": needs mime or description"));
          }
          scanners::FileMagicRule rule;
          if (!r.mime().empty()) {
            auto re = Regexp(r.mime(), absl::StrCat(sub, ".mime"));
            if (!re.ok()) return re.status();
            rule.mime = *std::move(re);
          }
          if (!r.description().empty()) {
            auto re = Regexp(r.description(), absl::StrCat(sub, ".description"));
            if (!re.ok()) return re.status();
            rule.description = *std::move(re);
          }
          rule.name = r.name();
          rule.level = r.level();
          rules.push_back(std::move(rule));
        }
        return ScannerPtr(std::make_unique<scanners::FileMagic>(magic_, std::move(rules)));
      }
      case ScannerSpec::kBuffer2File:
      case ScannerSpec::kBuffer2Mbox: {
        bool mbox = spec.kind_case() == ScannerSpec::kBuffer2Mbox;
        const auto& b = mbox ? spec.buffer2mbox() : spec.buffer2file();
        auto inner = BuildInner(b.scanners(),
                                absl::StrCat(path, mbox ? ".buffer2mbox" : ".buffer2file"));
        if (!inner.ok()) return inner.status();
        std::string dir = b.tmp_dir().empty() ? "" : config_.ResolvePath(b.tmp_dir());
        return ScannerPtr(std::make_unique<scanners::BufferToFile>(dir, mbox, *std::move(inner)));
      }
      case ScannerSpec::kFile2Buffer: {
        auto inner = BuildInner(spec.file2buffer().scanners(), absl::StrCat(path, ".file2buffer"));
        if (!inner.ok()) return inner.status();
        return ScannerPtr(std::make_unique<scanners::FileToBuffer>(*std::move(inner)));
      }
      case ScannerSpec::kRspamd: {
        auto s = scanners::RspamdScanner::Create(
            spec.rspamd(), [this](absl::string_view p) { return config_.ResolvePath(p); });
        if (!s.ok()) return with_path(s.status());
        return ScannerPtr(*std::move(s));
      }
      case ScannerSpec::kReport:
      case ScannerSpec::kReportRecipients: {
        bool own = spec.kind_case() == ScannerSpec::kReportRecipients;
        const auto& r = own ? spec.report_recipients() : spec.report();
        std::string sub = absl::StrCat(path, own ? ".report_recipients" : ".report");
        if (!own && r.recipients().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(config_.path, ": ", sub, ".recipients: needs at least one"));
        }
        if (auto a = smtpd::ParseNextHop(r.relay()); !a.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(config_.path, ": ", sub, ".relay: ", a.status().message()));
        }
        auto re = Regexp(r.onlyif(), absl::StrCat(sub, ".onlyif"));
        if (!re.ok()) return re.status();
        auto inner = BuildInner(r.scanners(), sub);
        if (!inner.ok()) return inner.status();
        scanners::ReportOptions o;
        o.recipients.assign(r.recipients().begin(), r.recipients().end());
        o.to_envelope_recipients = own;
        o.from = r.from();
        o.template_text = r.template_();
        o.relay = r.relay();
        o.timeout = ToDuration(r.timeout());
        o.helo_name = config_.proto.global().hostname().empty()
                          ? MachineHostname()
                          : config_.proto.global().hostname();
        o.max_body = r.max_body();
        return Finishing(std::make_unique<engine::FinishAfter>(
            own ? "report_recipients" : "report",
            std::make_shared<scanners::Report>(std::move(o)), *std::move(re), *std::move(inner)));
      }
      case ScannerSpec::kLog: {
        auto inner = BuildInner(spec.log().scanners(), absl::StrCat(path, ".log"));
        if (!inner.ok()) return inner.status();
        return Finishing(std::make_unique<engine::FinishAfter>(
            "log", std::make_shared<scanners::LogLine>(), nullptr, *std::move(inner)));
      }
      case ScannerSpec::kLogSql: {
        auto inner = BuildInner(spec.log_sql().scanners(), absl::StrCat(path, ".log_sql"));
        if (!inner.ok()) return inner.status();
        auto log = Log(spec.log_sql().db());
        if (!log.ok()) return with_path(log.status());
        return Finishing(std::make_unique<engine::FinishAfter>(
            "log_sql", std::make_shared<scanners::SqlLogWriter>(*log), nullptr,
            *std::move(inner)));
      }
      case ScannerSpec::kLogCleanup: {
        auto log = Log(spec.log_cleanup().db());
        if (!log.ok()) return with_path(log.status());
        return ScannerPtr(std::make_unique<scanners::LogCleanup>(
            *log, ToDuration(spec.log_cleanup().keep()),
            ToDuration(spec.log_cleanup().interval())));
      }
      case ScannerSpec::kRegexpFind: {
        const auto& f = spec.regexp_find();
        std::string sub = absl::StrCat(path, ".regexp_find");
        auto sets = Sets(f.sets(), f.default_(), sub);
        if (!sets.ok()) return sets.status();
        std::vector<std::pair<std::unique_ptr<RE2>, std::string>> rules;
        for (int i = 0; i < f.rules_size(); ++i) {
          std::string rsub = absl::StrCat(sub, ".rules[", i, "]");
          if (!sets->count(f.rules(i).set())) {
            return absl::InvalidArgumentError(absl::StrCat(
                config_.path, ": ", rsub, ".set: '", f.rules(i).set(), "' is not under sets"));
          }
          auto re = Regexp(absl::StrCat("(?i)", f.rules(i).pattern()),
                           absl::StrCat(rsub, ".pattern"));
          if (!re.ok()) return re.status();
          rules.emplace_back(*std::move(re), f.rules(i).set());
        }
        return ScannerPtr(std::make_unique<scanners::FindRouter>(
            "regexp_find", scanners::RegexpLookup(std::move(rules)), *std::move(sets),
            f.default_()));
      }
      case ScannerSpec::kSqlFind: {
        const auto& f = spec.sql_find();
        auto sets = Sets(f.sets(), f.default_(), absl::StrCat(path, ".sql_find"));
        if (!sets.ok()) return sets.status();
        auto db = Db(f.db());
        if (!db.ok()) return with_path(db.status());
        auto table = scanners::ScannerSetTable::Open(*db);
        if (!table.ok()) return with_path(table.status());
        std::shared_ptr<scanners::ScannerSetTable> t = *table;
        return ScannerPtr(std::make_unique<scanners::FindRouter>(
            "sql_find", [t](const std::string& r) { return t->Lookup(r); }, *std::move(sets),
            f.default_()));
      }
      case ScannerSpec::kChain: {
        absl::Status s = BuildChain(spec.chain());
        if (!s.ok()) return s;
        // Its log, log_sql and report that run for every message are this chain's
        // too when this reference does.
        if (conditional_depth_ == 0) {
          for (const engine::FinishAfter* f : (*finishers_)[spec.chain()]) AddFinisher(f);
        }
        return ScannerPtr(
            std::make_unique<ChainRef>(spec.chain(), chains_->at(spec.chain()).get()));
      }
      case ScannerSpec::KIND_NOT_SET:
        break;
    }
    return with_path(absl::InvalidArgumentError("names no scanner kind"));
  }

  // A log, log_sql or report node, remembered as one of the current chain's when it
  // runs for every message the chain scans.
  ScannerPtr Finishing(std::unique_ptr<engine::FinishAfter> node) {
    if (conditional_depth_ == 0) AddFinisher(node.get());
    return node;
  }
  void AddFinisher(const engine::FinishAfter* f) {
    auto& ours = (*finishers_)[current_.back()];
    // A chain reached by two paths is one chain.
    if (std::find(ours.begin(), ours.end(), f) == ours.end()) ours.push_back(f);
  }

  const LoadedConfig& config_;
  std::map<std::string, std::unique_ptr<Scanner>>* chains_;
  std::map<std::string, std::vector<const engine::FinishAfter*>>* finishers_;
  // The chains being built, innermost last.
  std::vector<std::string> current_;
  // Scanners above the node being built (within its chain) that may not run their
  // inner scanners for every message.
  int conditional_depth_ = 0;
  stats::Registry* registry_;
  std::set<std::string> building_;
  std::map<std::string, std::shared_ptr<scanners::ClamEngine>> engines_;
  std::map<std::string, std::shared_ptr<policy::PolicyStore>> stores_;
  std::map<std::string, std::shared_ptr<sql::Database>> dbs_;
  std::map<std::string, std::shared_ptr<scanners::ScanLog>> logs_;
  std::shared_ptr<scanners::Magic> magic_;
  std::map<std::string, std::shared_ptr<const engine::QuarantineSink>> quarantine_sinks_;
};

std::string ReplyText(const ChainVerdict& v) {
  switch (v.outcome) {
    case common::v1::PASS:
      return "2.0.0 Ok: clean";
    case common::v1::FORCED_PASS:
      return v.result.not_scanned ? absl::StrCat("2.0.0 Ok: ", v.result.name)
                                  : absl::StrCat("2.0.0 Ok: delivered although detected: ",
                                                 v.result.name);
    case common::v1::REJECT:
      return absl::StrCat("5.7.1 Rejected: ", v.result.name);
    case common::v1::DROP:
      return absl::StrCat("2.0.0 Ok: dropped: ", v.result.name);
    default:
      return "4.3.0 Temporary failure while scanning, try again later";
  }
}

}  // namespace

std::string NewSagatorId(absl::string_view hostname, absl::Time now) {
  static std::atomic<unsigned> counter{0};
  unsigned n = counter.fetch_add(1, std::memory_order_relaxed) % 10000;
  return absl::StrCat(absl::FormatTime("%Y%m%d-%H%M%S", now, absl::LocalTimeZone()), "-",
                      absl::StrFormat("%04u-%05d-", n, static_cast<int>(getpid()) % 100000),
                      engine::RandomAlnum(6), "@", hostname);
}

absl::StatusOr<std::unique_ptr<ChainSet>> ChainSet::Create(const LoadedConfig& config,
                                                          stats::Registry* registry) {
  std::vector<std::string> all;
  for (const auto& [name, _] : config.proto.chains()) all.push_back(name);
  return Create(config, all, registry);
}

absl::StatusOr<std::unique_ptr<ChainSet>> ChainSet::Create(
    const LoadedConfig& config, const std::vector<std::string>& chains,
    stats::Registry* registry) {
  std::unique_ptr<ChainSet> set(new ChainSet());
  if (registry == nullptr) {
    set->own_registry_ = std::make_unique<stats::Registry>();
    registry = set->own_registry_.get();
  }
  set->hostname_ = config.proto.global().hostname().empty() ? MachineHostname()
                                                           : config.proto.global().hostname();
  set->max_message_size_ = config.proto.global().max_message_size();
  set->not_scanned_outcome_ = config.proto.global().not_scanned_outcome();
  TreeBuilder builder(config, &set->chains_, &set->finishers_, registry);
  for (const std::string& name : chains) {
    if (!config.proto.chains().contains(name)) {
      return absl::NotFoundError(absl::StrCat(config.path, ": no chain named '", name, "'"));
    }
    absl::Status s = builder.BuildChain(name);
    if (!s.ok()) return s;
  }
  return set;
}

std::vector<std::string> ChainSet::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : chains_) out.push_back(name);
  return out;
}

ChainVerdict ChainSet::Finish(const engine::Scanner& chain, ChainVerdict v,
                              bool content) const {
  if (!v.error.ok()) {
    v.outcome = common::v1::TEMPFAIL;
  } else if (v.outcome != common::v1::OUTCOME_UNSPECIFIED) {
    // Decided already (detections, too-large messages).
  } else if (v.result.not_scanned) {
    v.outcome = not_scanned_outcome_;
  } else {
    v.outcome = common::v1::PASS;
  }
  if (!content) {
    // SMTP-stage answers carry no X-Sagator headers: there is no message yet.
    if (v.reply_text.empty()) v.reply_text = ReplyText(v);
    return v;
  }
  if (v.sagator_id.empty()) v.sagator_id = NewSagatorId(hostname_, absl::Now());
  std::vector<engine::HeaderEdit> edits = {
      {engine::HeaderEdit::Kind::kAdd, "X-Sagator-ID", v.sagator_id},
      {engine::HeaderEdit::Kind::kAdd, "X-Sagator-Scanner",
       absl::StrCat(kSagatorVersion, " at ", hostname_, "; ", chain.Describe())}};
  edits.insert(edits.end(), v.edits.begin(), v.edits.end());
  v.edits = std::move(edits);
  if (v.reply_text.empty()) v.reply_text = ReplyText(v);
  return v;
}

absl::StatusOr<ChainVerdict> ChainSet::Run(absl::string_view chain, absl::string_view message,
                                           engine::MessageEnvelope envelope,
                                           absl::Time deadline,
                                           std::function<bool()> cancelled) const {
  return RunChain(chain, message, std::move(envelope), deadline, std::move(cancelled), true);
}

absl::StatusOr<ChainVerdict> ChainSet::RunPolicy(absl::string_view chain,
                                                 engine::MessageEnvelope envelope,
                                                 absl::Time deadline,
                                                 std::function<bool()> cancelled,
                                                 bool memory_only) const {
  return RunChain(chain, "", std::move(envelope), deadline, std::move(cancelled), false,
                  memory_only);
}

absl::Status ChainSet::MayWait(absl::string_view chain) {
  return WouldWaitError(absl::StrCat("chain '", chain, "' has scanners that may wait"));
}

bool ChainSet::MayRunMemoryOnly(absl::string_view chain) const {
  auto it = chains_.find(std::string(chain));
  return it == chains_.end() || it->second->HonorsMemoryOnly();
}

absl::StatusOr<ChainVerdict> ChainSet::RunChain(absl::string_view chain,
                                                absl::string_view message,
                                                engine::MessageEnvelope envelope,
                                                absl::Time deadline,
                                                std::function<bool()> cancelled,
                                                bool content, bool memory_only) const {
  auto it = chains_.find(std::string(chain));
  if (it == chains_.end()) {
    return absl::NotFoundError(absl::StrCat("no chain named '", chain, "' is configured"));
  }
  if (memory_only && !it->second->HonorsMemoryOnly()) return MayWait(chain);
  if (static_cast<int64_t>(message.size()) > max_message_size_) {
    return TooLarge(chain, message, static_cast<int64_t>(message.size()), std::move(envelope),
                    deadline);
  }
  engine::ScanContext ctx(message, std::move(envelope), deadline, std::move(cancelled));
  ctx.set_memory_only(memory_only);
  absl::StatusOr<engine::ScanResult> r = it->second->Scan(ctx);
  if (memory_only && !r.ok() && IsWouldWait(r.status())) return r.status();
  // The caller is gone or out of time: there is nobody to give a verdict to.
  if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
  ChainVerdict v;
  if (!r.ok()) {
    v.error = r.status();
    v.result.output = std::string(r.status().message());
  } else {
    v.result = *std::move(r);
    if (v.result.detected()) {
      v.outcome = ctx.defer()     ? common::v1::TEMPFAIL
                  : ctx.drop()    ? common::v1::DROP
                  : ctx.deliver() ? common::v1::FORCED_PASS
                                  : common::v1::REJECT;
      v.reply_text = ctx.reply_text();
    }
  }
  v.edits = ctx.header_edits();
  v.rewritten = ctx.rewritten();
  if (content && v.error.ok() && !ctx.quarantine_requests().empty()) {
    StoreInQuarantine(ctx, &v);
  }
  ChainVerdict out = Finish(*it->second, std::move(v), content);
  if (content) RunFinishers(ctx, static_cast<int64_t>(ctx.message().size()), out);
  return out;
}

void ChainSet::RunFinishers(const engine::ScanContext& ctx, int64_t size,
                            const ChainVerdict& v) const {
  // log, log_sql and report act on the decision, quarantine id included.
  engine::Decision d{ctx.message(), size,          &ctx.envelope(),  &v.result,
                     v.outcome,     v.sagator_id, v.quarantine_id, ctx.deadline()};
  for (const engine::FinishRequest& f : ctx.finish_requests()) f.finisher->Finish(d, f.trigger);
}

void ChainSet::StoreInQuarantine(const engine::ScanContext& ctx, ChainVerdict* v) const {
  // The decided outcome goes with the message; a chain that found nothing to decide
  // on (the detection was overruled) still keeps the copy it asked for.
  ChainVerdict decided = *v;
  decided.outcome = v->outcome == common::v1::OUTCOME_UNSPECIFIED ? common::v1::PASS : v->outcome;
  v->sagator_id = NewSagatorId(hostname_, absl::Now());
  // One copy per message, described by the first detection that asked.
  const engine::QuarantineRequest& request = ctx.quarantine_requests().front();
  engine::QuarantineItem item;
  item.message = ctx.message();
  item.envelope = &ctx.envelope();
  item.result = &request.result;
  item.outcome = decided.outcome;
  item.sagator_id = v->sagator_id;
  item.deadline = ctx.deadline();
  absl::StatusOr<std::string> id = request.sink->Store(item);
  if (!id.ok()) {
    // Mail that was to be dropped into quarantine must not be lost: the MTA retries.
    v->error = absl::Status(id.status().code(),
                            absl::StrCat("quarantine: ", id.status().message()));
    v->result.output = std::string(v->error.message());
    v->outcome = common::v1::OUTCOME_UNSPECIFIED;
    v->reply_text.clear();
    return;
  }
  v->quarantine_id = *id;
}

absl::StatusOr<ChainVerdict> ChainSet::TooLarge(absl::string_view chain, absl::string_view head,
                                                int64_t size, engine::MessageEnvelope envelope,
                                                absl::Time deadline) const {
  auto it = chains_.find(std::string(chain));
  if (it == chains_.end()) {
    return absl::NotFoundError(absl::StrCat("no chain named '", chain, "' is configured"));
  }
  ChainVerdict v;
  v.result.not_scanned = true;
  v.result.name = "not scanned: too large";
  v.result.output =
      size > max_message_size_
          ? absl::StrCat("message of ", size, " bytes is over the limit of ", max_message_size_,
                         " bytes")
          : absl::StrCat("message of ", size, " bytes is over the gateway's size limit");
  v.outcome = not_scanned_outcome_;
  ChainVerdict out = Finish(*it->second, std::move(v), true);
  // No scanner ran, but the message is still logged: every log and log_sql of the
  // chain that runs for every message acts on the verdict (report does not: it
  // reports detections only).
  engine::ScanContext ctx(head, std::move(envelope), deadline);
  auto f = finishers_.find(std::string(chain));
  if (f != finishers_.end()) {
    for (const engine::FinishAfter* node : f->second) node->RequestFinish(ctx, out.result);
  }
  RunFinishers(ctx, size, out);
  return out;
}

}  // namespace sagator
