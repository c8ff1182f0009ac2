#include "quarantine-svc/reporter.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/http_server.h"
#include "common/mail_headers.h"
#include "quarantine-svc/quarantine_service.h"
#include "quarantine-svc/webq.h"
#include "services/smtpd/next_hop.h"

namespace sagator::quarantine {
namespace {

absl::StatusOr<std::vector<std::shared_ptr<RE2>>> Patterns(
    const LoadedConfig& config, const google::protobuf::RepeatedPtrField<std::string>& list,
    const char* key) {
  std::vector<std::shared_ptr<RE2>> out;
  for (const std::string& p : list) {
    auto re = std::make_shared<RE2>(p, RE2::Quiet);
    if (!re->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config.path, ": reporter.", key, ": '", p, "': ", re->error()));
    }
    out.push_back(re);
  }
  return out;
}

bool AnyMatch(const std::vector<std::shared_ptr<RE2>>& patterns, const std::string& s) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const auto& re) { return RE2::PartialMatch(s, *re); });
}

}  // namespace

absl::StatusOr<ReporterOptions> ReporterOptionsFromConfig(
    const LoadedConfig& config, const config::v1::ReporterService& spec,
    const config::v1::QuarantineSvcService& quarantine) {
  ReporterOptions o;
  o.begin = spec.begin();
  o.body = spec.body();
  o.end = spec.end();
  auto include = Patterns(config, spec.include(), "include");
  if (!include.ok()) return include.status();
  o.include = *include;
  auto exclude = Patterns(config, spec.exclude(), "exclude");
  if (!exclude.ok()) return exclude.status();
  o.exclude = *exclude;
  for (const auto& g : spec.groups()) {
    auto re = std::make_shared<RE2>(g.pattern(), RE2::Quiet);
    if (!re->ok()) {
      return absl::InvalidArgumentError(absl::StrCat(config.path, ": reporter.groups: '",
                                                     g.pattern(), "': ", re->error()));
    }
    o.groups.emplace_back(re, g.target());
  }
  o.webq_url = std::string(absl::StripSuffix(
      spec.webq().empty() ? WebqBaseUrl(quarantine.webq()) : spec.webq(), "/"));
  o.from = spec.from();
  o.relay = spec.relay().empty() ? quarantine.relay() : spec.relay();
  o.relay_timeout = ToDuration(quarantine.relay_timeout());
  o.helo_name = HeloName(config, quarantine);
  o.state_file = config.ResolvePath(spec.state_file());
  o.first_period = ToDuration(spec.first_period());
  o.link_validity = ToDuration(quarantine.webq().release_link_validity());
  return o;
}

Reporter::Reporter(ReporterOptions options, v1::QuarantineService::StubInterface* quarantine,
                   Signer signer)
    : options_(std::move(options)), quarantine_(quarantine), signer_(std::move(signer)) {}

std::vector<Digest> Reporter::Render(const std::vector<v1::Entry>& entries,
                                     absl::Time now) const {
  // Per target, in the order targets first appear; items newest first.
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::string>> items;
  for (const v1::Entry& e : entries) {
    for (const std::string& rcpt : e.envelope().recipients()) {
      std::string key = absl::AsciiStrToLower(rcpt);
      if (!options_.include.empty() && !AnyMatch(options_.include, key)) continue;
      if (AnyMatch(options_.exclude, key)) continue;
      std::string target = rcpt;
      for (const auto& [re, to] : options_.groups) {
        if (RE2::PartialMatch(key, *re)) {
          target = to;
          break;
        }
      }
      if (target.empty()) continue;
      std::string token =
          SignReleaseLink(signer_, {e.id(), rcpt, now + options_.link_validity});
      std::map<std::string, std::string> vars = {
          {"DATE", absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixSeconds(e.stored_at().seconds()),
                                    absl::UTCTimeZone())},
          {"SENDER", e.envelope().sender().empty() ? "<>" : e.envelope().sender()},
          {"FROM_HEADER", e.from().empty() ? e.envelope().sender() : e.from()},
          {"RECIPIENTS", absl::StrJoin(e.envelope().recipients(), ", ")},
          {"RECIPIENT", rcpt},
          {"SUBJECT", e.subject()},
          {"VIRNAME", e.detection()},
          {"LEVEL", absl::StrFormat("%.2f", e.level())},
          {"QNAME", e.id()},
          {"QQNAME", net::UrlEncode(e.id())},
          {"VIEW_URL", absl::StrCat(options_.webq_url, "/view?id=", net::UrlEncode(e.id()))},
          {"RELEASE_URL", absl::StrCat(options_.webq_url, "/r?t=", net::UrlEncode(token))},
      };
      if (!items.count(target)) order.push_back(target);
      items[target].push_back(ExpandVariables(options_.body, vars));
    }
  }
  std::vector<Digest> out;
  for (const std::string& target : order) {
    const auto& list = items[target];
    std::map<std::string, std::string> vars = {{"FROM", options_.from},
                                               {"TO", target},
                                               {"COUNT", absl::StrCat(list.size())},
                                               {"DATE", Rfc2822Date(now)},
                                               {"WEBQ", absl::StrCat(options_.webq_url, "/")}};
    std::string text = absl::StrCat(ExpandVariables(options_.begin, vars),
                                    absl::StrJoin(list, ""),
                                    ExpandVariables(options_.end, vars));
    text = CrlfLines(text);
    // The fields a digest needs that the template may not give.
    std::vector<common::v1::HeaderEdit> edits;
    auto add = [&](const char* name, std::string value) {
      std::string have;
      if (FindHeaderValue(text, name, &have)) return;
      common::v1::HeaderEdit e;
      e.set_kind(common::v1::HeaderEdit::ADD);
      e.set_name(name);
      e.set_value(std::move(value));
      edits.push_back(std::move(e));
    };
    thread_local absl::BitGen gen;
    add("Date", Rfc2822Date(now));
    add("Message-ID", absl::StrFormat("<sagator-report.%d.%016x@%s>", absl::ToUnixSeconds(now),
                                      absl::Uniform<uint64_t>(gen), options_.helo_name));
    add("MIME-Version", "1.0");
    add("Content-Type", "text/plain; charset=utf-8");
    add("Content-Transfer-Encoding", "8bit");
    out.push_back({target, static_cast<int>(list.size()), ApplyHeaderEdits(text, edits)});
  }
  return out;
}

absl::Status Reporter::Send(const Digest& digest) const {
  auto client = smtpd::RelayClient(options_.relay, options_.relay_timeout, options_.helo_name);
  if (!client.ok()) return client.status();
  smtpd::Reply r = smtpd::SendMessage(**client, options_.from, {digest.to}, digest.message);
  if (r.positive()) return absl::OkStatus();
  std::string why = absl::StrCat("relay ", options_.relay, " for ", digest.to, ": ", r.code, " ",
                                 r.enhanced, " ", r.text);
  return r.transient() ? absl::UnavailableError(why) : absl::FailedPreconditionError(why);
}

absl::StatusOr<ReportRun> Reporter::Run(absl::Time now) {
  ReportRun run;
  run.until = now;
  run.since = now - options_.first_period;
  {
    std::ifstream in(options_.state_file);
    int64_t last = 0;
    std::string line;
    // Microseconds since the epoch: entries stored in the same second as a run
    // belong to exactly one of two runs.
    if (in && std::getline(in, line) && absl::SimpleAtoi(line, &last)) {
      run.since = absl::FromUnixMicros(last);
    }
  }
  std::vector<v1::Entry> entries;
  v1::ListRequest req;
  for (auto [t, ts] : {std::pair{run.since, req.mutable_stored_after()},
                       std::pair{run.until, req.mutable_stored_before()}}) {
    int64_t micros = absl::ToUnixMicros(t);
    ts->set_seconds(micros / 1000000);
    ts->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
  }
  req.set_page_size(500);
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::ListResponse page;
    grpc::Status s = quarantine_->List(&ctx, req, &page);
    if (!s.ok()) return absl::UnavailableError(absl::StrCat("quarantine-svc: ", s.error_message()));
    for (auto& e : *page.mutable_entries()) entries.push_back(std::move(e));
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty());

  run.digests = Render(entries, now);
  if (options_.dry_run) return run;
  absl::Status failed;
  for (const Digest& d : run.digests) {
    absl::Status s = Send(d);
    if (s.ok()) {
      ++run.sent;
    } else if (failed.ok() || s.code() == absl::StatusCode::kUnavailable) {
      failed = s;
    }
  }
  // A permanent refusal (a target that does not exist) is not retried; a temporary
  // one keeps the period for the next run.
  if (failed.code() == absl::StatusCode::kUnavailable) return failed;
  std::string tmp = absl::StrCat(options_.state_file, ".tmp");
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << absl::ToUnixMicros(run.until) << "\n";
    if (!out.flush()) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), options_.state_file.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot write ", options_.state_file));
  }
  if (!failed.ok()) return failed;
  return run;
}

}  // namespace sagator::quarantine
