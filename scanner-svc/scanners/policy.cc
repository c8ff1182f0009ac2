#include "scanner-svc/scanners/policy.h"

#include <glog/logging.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/config.h"
#include "common/would_wait.h"

namespace sagator::scanners {
namespace {


// Postfix hands the null sender as "" and addresses as typed; keys are lower case.
std::string Key(absl::string_view address) { return absl::AsciiStrToLower(address); }

// How the store may answer for this scan (ScanContext::memory_only).
policy::Access AccessOf(const engine::ScanContext& ctx) {
  return ctx.memory_only() ? policy::Access::kMemoryOnly : policy::Access::kMayWait;
}

}  // namespace

policy::GreylistParams GreylistParamsOf(const config::v1::GreylistSpec& spec) {
  policy::GreylistParams p;
  p.min = ToDuration(spec.min());
  p.expire = ToDuration(spec.expire());
  p.max_age = ToDuration(spec.max_age());
  p.auto_whitelist = spec.auto_whitelist();
  return p;
}

GreylistScanner::GreylistScanner(std::shared_ptr<policy::PolicyStore> store,
                                 const config::v1::GreylistSpec& spec, Clock clock)
    : store_(std::move(store)),
      params_(GreylistParamsOf(spec)),
      info_url_(spec.info_url()),
      ipv4_prefix_(spec.ipv4_prefix()),
      ipv6_prefix_(spec.ipv6_prefix()),
      clock_(std::move(clock)) {
  std::vector<std::string> h = absl::StrSplit(spec.header(), absl::MaxSplits(':', 1));
  if (h.size() == 2) {
    header_name_ = std::string(absl::StripAsciiWhitespace(h[0]));
    header_value_ = std::string(absl::StripAsciiWhitespace(h[1]));
  }
}

bool GreylistScanner::MaybeCleanup(absl::Time now, bool memory_only) const {
  int64_t next = next_cleanup_.load(std::memory_order_relaxed);
  int64_t n = absl::ToUnixSeconds(now);
  if (n < next) return true;
  if (memory_only) return false;
  if (!next_cleanup_.compare_exchange_strong(next, n + 600)) return true;
  absl::StatusOr<policy::CleanupCounts> c = store_->Cleanup(params_, now);
  if (!c.ok()) {
    LOG(WARNING) << "greylist cleanup failed: " << c.status();
  } else if (c->triplets + c->clients + c->list_entries > 0) {
    LOG(INFO) << "greylist cleanup removed " << c->triplets << " triplets, " << c->clients
              << " clients, " << c->list_entries << " expired list entries";
  }
  return true;
}

absl::StatusOr<engine::ScanResult> GreylistScanner::Scan(engine::ScanContext& ctx) const {
  const engine::MessageEnvelope& env = ctx.envelope();
  if (env.client_address.empty() || env.recipients.empty()) {
    engine::ScanResult r = engine::ScanResult::Clean(Describe());
    r.output = "greylist: no client address or recipient to greylist";
    return r;
  }
  absl::Time now = clock_();
  const policy::Access access = AccessOf(ctx);
  if (!MaybeCleanup(now, ctx.memory_only())) return WouldWaitError("a cleanup is due");
  std::string net = policy::ClientNetwork(env.client_address, ipv4_prefix_, ipv6_prefix_);
  absl::Duration wait, delayed;
  bool deferred = false, passed_now = false;
  for (const std::string& rcpt : env.recipients) {
    if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
    absl::StatusOr<policy::GreylistDecision> d =
        store_->Greylist({net, Key(env.sender), Key(rcpt)}, params_, now, access);
    if (!d.ok()) return d.status();
    switch (d->state) {
      case policy::GreylistDecision::State::kDeferred:
        deferred = true;
        wait = std::max(wait, d->wait);
        break;
      case policy::GreylistDecision::State::kPassedNow:
        passed_now = true;
        delayed = std::max(delayed, d->delayed);
        break;
      case policy::GreylistDecision::State::kClientWhitelisted:
        // The whole client network is trusted: no other recipient needs a look.
        return engine::ScanResult::Clean(Describe());
      case policy::GreylistDecision::State::kKnown:
        break;
    }
  }
  if (deferred) {
    int64_t secs = std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(wait, absl::Seconds(1))));
    ctx.set_defer(true);
    std::string text = absl::StrCat("4.7.1 Greylisted, try again in ", secs, " seconds");
    if (!info_url_.empty()) absl::StrAppend(&text, ", see ", info_url_);
    ctx.set_reply_text(text);
    return engine::ScanResult::Detected(
        1.0, "Greylisted", Describe(),
        absl::StrCat("greylisted ", net, " <", env.sender, ">, retry in ", secs, " s"));
  }
  engine::ScanResult r = engine::ScanResult::Clean(Describe());
  if (passed_now && !header_name_.empty()) {
    ctx.AddHeaderEdit({engine::HeaderEdit::Kind::kAdd, header_name_,
                       absl::StrReplaceAll(header_value_,
                                           {{"%d", absl::StrCat(absl::ToInt64Seconds(delayed))}})});
    r.output = absl::StrCat("greylist passed after ", absl::ToInt64Seconds(delayed), " s");
  }
  return r;
}

absl::StatusOr<engine::ScanResult> SqlListScanner::Scan(engine::ScanContext& ctx) const {
  const engine::MessageEnvelope& env = ctx.envelope();
  absl::Time now = clock_();
  std::vector<std::string> rcpts = env.recipients;
  if (rcpts.empty()) rcpts.push_back("");
  std::optional<policy::ListEntry> black;
  for (const std::string& rcpt : rcpts) {
    if (absl::Status alive = ctx.CheckAlive(); !alive.ok()) return alive;
    auto hit = store_->FindListed(env.client_address, env.sender, rcpt, now, AccessOf(ctx));
    if (!hit.ok()) return hit.status();
    if (!*hit) continue;
    std::string what = absl::StrCat(policy::ListKindName((*hit)->kind), " ", (*hit)->value);
    if (policy::IsWhite((*hit)->kind)) {
      // White wins for the whole message: the chain stops here and delivers.
      ctx.set_deliver(true);
      ctx.set_reply_text(absl::StrCat("2.0.0 Ok: whitelisted (", what, ")"));
      return engine::ScanResult::Detected(1.0, "Whitelisted", Describe(), what);
    }
    if (!black) black = *std::move(*hit);
  }
  if (!black) return engine::ScanResult::Clean(Describe());
  const char* subject = black->kind == policy::ListKind::kBA   ? "client address"
                        : black->kind == policy::ListKind::kBS ? "sender"
                                                               : "recipient";
  ctx.set_reply_text(absl::StrCat("5.7.1 Rejected: ", subject, " ", black->value,
                                  " is blacklisted"));
  return engine::ScanResult::Detected(
      1.0, name_, Describe(), absl::StrCat(policy::ListKindName(black->kind), " ", black->value));
}

absl::StatusOr<std::unique_ptr<AddListed>> AddListed::Create(
    std::shared_ptr<policy::PolicyStore> store, const config::v1::AddListedSpec& spec,
    engine::ScannerPtr inner, Clock clock) {
  std::unique_ptr<AddListed> a(new AddListed());
  for (absl::string_view f : absl::StrSplit(spec.flags(), absl::ByAnyChar(", "), absl::SkipEmpty())) {
    absl::StatusOr<policy::ListKind> k = policy::ParseListKind(f);
    if (!k.ok()) return k.status();
    a->kinds_.push_back(*k);
  }
  if (a->kinds_.empty()) {
    return absl::InvalidArgumentError("flags: name at least one of BA, BS, BR, WA, WS, WR");
  }
  a->store_ = std::move(store);
  a->flags_ = spec.flags();
  a->expire_ = ToDuration(spec.expire());
  a->inner_ = std::move(inner);
  a->clock_ = std::move(clock);
  return a;
}

std::string AddListed::Describe() const {
  return absl::StrCat("add_listed('", flags_, "', ", inner_->Describe(), ")");
}

absl::StatusOr<engine::ScanResult> AddListed::Scan(engine::ScanContext& ctx) const {
  absl::StatusOr<engine::ScanResult> r = inner_->Scan(ctx);
  if (!r.ok() || !r->detected()) return r;
  const engine::MessageEnvelope& env = ctx.envelope();
  absl::Time now = clock_();
  for (policy::ListKind kind : kinds_) {
    std::vector<std::string> values;
    switch (kind) {
      case policy::ListKind::kBA:
      case policy::ListKind::kWA:
        if (!env.client_address.empty()) values.push_back(env.client_address);
        break;
      case policy::ListKind::kBS:
      case policy::ListKind::kWS:
        // Never list the null sender: bounces must get through.
        if (!env.sender.empty()) values.push_back(env.sender);
        break;
      default:
        values = env.recipients;
    }
    for (const std::string& v : values) {
      policy::ListEntry e;
      e.kind = kind;
      e.value = v;
      e.created = now;
      if (expire_ > absl::ZeroDuration()) e.expires = now + expire_;
      e.comment = absl::StrCat("add_listed: ", r->name);
      // The detection stands even when the list cannot be written.
      absl::Status s = store_->AddListEntry(e);
      if (!s.ok()) {
        LOG(WARNING) << "add_listed " << policy::ListKindName(kind) << " " << v << ": " << s;
      }
    }
  }
  r->path = absl::StrCat("add_listed(", r->path, ")");
  return r;
}

}  // namespace sagator::scanners
