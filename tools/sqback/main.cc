// sqback: SAGATOR's tool for the quarantine. Releases quarantined mail back into the
// mail stream (optionally to other recipients, like SAGATOR's `sqback --to`), lists
// and searches the quarantine, prints a raw message, and deletes entries.
//
//   sqback qm-20261126-101010-abc123def456              # release to the recipients
//   sqback --to admin@example.org qm-...                # release to admin only
//   sqback --list --recipient bob@example.org --since 2026-11-01
//   sqback --get qm-... > message.eml
//   sqback --delete qm-... qm-...
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/cli.h"
#include "common/config.h"
#include "quarantine-svc/signing.h"
#include "sagator/quarantine/v1/quarantine.grpc.pb.h"

ABSL_FLAG(std::string, target, "",
          "quarantine-svc's gRPC address (default: from the configuration file)");
ABSL_FLAG(std::vector<std::string>, to, {},
          "release to these recipients (comma-separated) instead of the original ones");
ABSL_FLAG(bool, list, false, "list the quarantine, newest first");
ABSL_FLAG(std::string, recipient, "", "--list: only mail to this recipient");
ABSL_FLAG(std::string, sender, "", "--list: only mail from this envelope sender");
ABSL_FLAG(std::string, subject, "", "--list: only subjects containing this");
ABSL_FLAG(std::string, detection, "", "--list: only detection names containing this");
ABSL_FLAG(std::string, since, "", "--list: only mail stored on or after this day (YYYY-MM-DD, UTC)");
ABSL_FLAG(std::string, until, "", "--list: only mail stored before this day (YYYY-MM-DD, UTC)");
ABSL_FLAG(int, limit, 100, "--list: at most this many entries (0: all)");
ABSL_FLAG(bool, get, false, "print the raw message of each id to stdout");
ABSL_FLAG(bool, remove, false, "delete the given ids (also spelled --delete)");
ABSL_FLAG(bool, hash_password, false,
          "read a password from stdin and print its hash for a webq user's password_hash");
ABSL_FLAG(double, timeout, 120, "seconds to wait for quarantine-svc (and the relay)");

namespace {

namespace qv1 = sagator::quarantine::v1;

constexpr char kUsage[] =
    "sqback: releases and lists SAGATOR's quarantine (quarantine-svc).\n"
    "Usage: sqback [--config FILE | --target HOST:PORT] [--to RCPT[,RCPT]] ID...\n"
    "       sqback --list [--recipient R] [--sender S] [--subject TEXT] [--detection TEXT]\n"
    "              [--since YYYY-MM-DD] [--until YYYY-MM-DD] [--limit N]\n"
    "       sqback --get ID...    |    sqback --delete ID...\n"
    "       sqback --hash_password < password.txt    (a webq user's password_hash)\n"
    "Exit status: 0 done; 1 a release was not accepted by the relay or an id is unknown;\n"
    "2 bad usage or configuration; 75 quarantine-svc or the relay is unavailable (try "
    "again).";

constexpr int kExitTempFail = 75;  // EX_TEMPFAIL

int ExitFor(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                 s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
             ? kExitTempFail
             : 1;
}

bool ParseDay(const std::string& text, google::protobuf::Timestamp* ts) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%d", text, absl::UTCTimeZone(), &t, &err)) return false;
  ts->set_seconds(absl::ToUnixSeconds(t));
  return true;
}

std::string Day(const google::protobuf::Timestamp& ts) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixSeconds(ts.seconds()),
                          absl::UTCTimeZone());
}

class Tool {
 public:
  explicit Tool(const std::string& target)
      : target_(target),
        stub_(qv1::QuarantineService::NewStub(
            grpc::CreateChannel(target, grpc::InsecureChannelCredentials()))) {}

  void Prepare(grpc::ClientContext* ctx) const {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout))));
  }

  int Fail(const std::string& what, const grpc::Status& s) const {
    std::fprintf(stderr, "sqback: %s: quarantine-svc at %s: %s\n", what.c_str(), target_.c_str(),
                 s.error_message().c_str());
    return ExitFor(s);
  }

  int List() {
    qv1::ListRequest req;
    if (!absl::GetFlag(FLAGS_recipient).empty()) req.add_recipients(absl::GetFlag(FLAGS_recipient));
    req.set_sender(absl::GetFlag(FLAGS_sender));
    req.set_subject_contains(absl::GetFlag(FLAGS_subject));
    req.set_detection_contains(absl::GetFlag(FLAGS_detection));
    if (!absl::GetFlag(FLAGS_since).empty() &&
        !ParseDay(absl::GetFlag(FLAGS_since), req.mutable_stored_after())) {
      std::fprintf(stderr, "sqback: --since: not a day (YYYY-MM-DD)\n");
      return 2;
    }
    if (!absl::GetFlag(FLAGS_until).empty() &&
        !ParseDay(absl::GetFlag(FLAGS_until), req.mutable_stored_before())) {
      std::fprintf(stderr, "sqback: --until: not a day (YYYY-MM-DD)\n");
      return 2;
    }
    int limit = absl::GetFlag(FLAGS_limit);
    int printed = 0;
    do {
      req.set_page_size(limit > 0 ? std::min(500, limit - printed) : 500);
      grpc::ClientContext ctx;
      Prepare(&ctx);
      qv1::ListResponse page;
      grpc::Status s = stub_->List(&ctx, req, &page);
      if (!s.ok()) return Fail("list", s);
      for (const qv1::Entry& e : page.entries()) {
        std::printf("%s  %s  %-24s %6.2f  %s -> %s  %s\n", e.id().c_str(), Day(e.stored_at()).c_str(),
                    e.detection().c_str(), e.level(),
                    e.envelope().sender().empty() ? "<>" : e.envelope().sender().c_str(),
                    absl::StrJoin(e.envelope().recipients(), ",").c_str(), e.subject().c_str());
        for (const auto& r : e.releases()) {
          std::printf("    released %s by %s to %s: %d %s\n", Day(r.released_at()).c_str(),
                      r.released_by().c_str(), r.recipient().c_str(), r.code(), r.text().c_str());
        }
        ++printed;
      }
      req.set_page_token(page.next_page_token());
    } while (!req.page_token().empty() && (limit <= 0 || printed < limit));
    return 0;
  }

  int Get(const std::string& id) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    qv1::GetRequest req;
    req.set_id(id);
    auto reader = stub_->Get(&ctx, req);
    qv1::GetResponse part;
    while (reader->Read(&part)) {
      if (part.has_chunk()) std::fwrite(part.chunk().data(), 1, part.chunk().size(), stdout);
    }
    grpc::Status s = reader->Finish();
    return s.ok() ? 0 : Fail(id, s);
  }

  int Release(const std::string& id) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    qv1::ReleaseRequest req;
    req.set_id(id);
    for (const std::string& to : absl::GetFlag(FLAGS_to)) {
      if (!to.empty()) req.add_to(to);
    }
    req.set_released_by("sqback");
    qv1::ReleaseResponse resp;
    grpc::Status s = stub_->Release(&ctx, req, &resp);
    if (!s.ok()) return Fail(id, s);
    for (const auto& r : resp.results()) {
      std::printf("%s: %s: %d %s\n", id.c_str(), r.recipient().c_str(), r.code(), r.text().c_str());
    }
    return resp.delivered() ? 0 : 1;
  }

  int Delete(const std::vector<std::string>& ids) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    qv1::DeleteRequest req;
    for (const auto& id : ids) req.add_ids(id);
    qv1::DeleteResponse resp;
    grpc::Status s = stub_->Delete(&ctx, req, &resp);
    if (!s.ok()) return Fail("delete", s);
    std::printf("deleted %d of %zu\n", resp.deleted(), ids.size());
    return resp.deleted() == static_cast<int>(ids.size()) ? 0 : 1;
  }

 private:
  std::string target_;
  std::unique_ptr<qv1::QuarantineService::Stub> stub_;
};

}  // namespace

int main(int argc, char** argv) {
  // SAGATOR spells it --delete; "delete" cannot be a flag's C++ name.
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--delete") argv[i] = const_cast<char*>("--remove");
  }
  std::vector<char*> args = sagator::InitFlagsAndLogging(argc, argv, kUsage);
  std::vector<std::string> ids(args.begin() + 1, args.end());
  if (absl::GetFlag(FLAGS_hash_password)) {
    std::string password;
    int c;
    while ((c = std::getchar()) != EOF && c != '\n') password.push_back(static_cast<char>(c));
    if (!password.empty() && password.back() == '\r') password.pop_back();
    if (password.empty()) {
      std::fprintf(stderr, "sqback: --hash_password: no password on stdin\n");
      return 2;
    }
    auto hash = sagator::quarantine::HashPassword(password);
    if (!hash.ok()) {
      std::fprintf(stderr, "sqback: %s\n", std::string(hash.status().message()).c_str());
      return 1;
    }
    std::printf("%s\n", hash->c_str());
    return 0;
  }
  bool list = absl::GetFlag(FLAGS_list);
  bool get = absl::GetFlag(FLAGS_get);
  bool remove = absl::GetFlag(FLAGS_remove);
  if (list + get + remove > 1 || (list && !ids.empty()) || (!list && ids.empty())) {
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  std::string target = sagator::ToolTargetOrExit(
      absl::GetFlag(FLAGS_target), sagator::QuarantineTarget,
      "no quarantine service and no global.quarantine_target");
  Tool tool(target);
  if (list) return tool.List();
  if (remove) return tool.Delete(ids);
  int rc = 0;
  for (const std::string& id : ids) rc = std::max(rc, get ? tool.Get(id) : tool.Release(id));
  return rc;
}
