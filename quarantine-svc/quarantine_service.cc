#include "quarantine-svc/quarantine_service.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_util.h"
#include "services/smtpd/next_hop.h"

namespace sagator::quarantine {
namespace {

constexpr size_t kChunkSize = 64 * 1024;

bool HasEightBit(absl::string_view message) {
  return std::any_of(message.begin(), message.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

}  // namespace

std::string HeloName(const LoadedConfig& config, const config::v1::QuarantineSvcService& spec) {
  if (!spec.helo_name().empty()) return spec.helo_name();
  if (!config.proto.global().hostname().empty()) return config.proto.global().hostname();
  return MachineHostname();
}

QuarantineOptions OptionsFromConfig(const LoadedConfig& config,
                                    const config::v1::QuarantineSvcService& spec) {
  QuarantineOptions o;
  o.host = spec.host();
  o.port = spec.port();
  o.relay = spec.relay();
  o.relay_timeout = ToDuration(spec.relay_timeout());
  o.helo_name = HeloName(config, spec);
  o.retention = ToDuration(spec.retention());
  o.expire_interval = ToDuration(spec.expire_interval());
  o.max_message_size = spec.max_message_size() > 0 ? spec.max_message_size()
                                                   : config.proto.global().max_message_size();
  return o;
}

grpc::Status QuarantineServiceImpl::Store(grpc::ServerContext* context,
                                          grpc::ServerReader<v1::StoreRequest>* reader,
                                          v1::StoreResponse* response) {
  v1::StoreRequest part;
  if (!reader->Read(&part) || !part.has_entry()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "a Store stream starts with the entry");
  }
  v1::Entry entry = std::move(*part.mutable_entry());
  std::string message;
  while (reader->Read(&part)) {
    if (!part.has_chunk()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "after the entry, a Store stream holds only chunks");
    }
    if (static_cast<int64_t>(message.size() + part.chunk().size()) > options_.max_message_size) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("message over the quarantine's limit of ",
                                       options_.max_message_size, " bytes"));
    }
    message += part.chunk();
  }
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "caller gone");
  absl::StatusOr<std::string> id = store_->Store(std::move(entry), message, absl::Now());
  if (!id.ok()) {
    LOG(WARNING) << "store failed: " << id.status();
    return ToGrpcStatus(id.status());
  }
  response->set_id(*id);
  return grpc::Status::OK;
}

grpc::Status QuarantineServiceImpl::List(grpc::ServerContext*, const v1::ListRequest* request,
                                         v1::ListResponse* response) {
  auto page = store_->List(*request);
  if (!page.ok()) return ToGrpcStatus(page.status());
  *response = *std::move(page);
  return grpc::Status::OK;
}

grpc::Status QuarantineServiceImpl::Get(grpc::ServerContext*, const v1::GetRequest* request,
                                        grpc::ServerWriter<v1::GetResponse>* writer) {
  std::string message;
  auto entry = store_->Get(request->id(), &message);
  if (!entry.ok()) return ToGrpcStatus(entry.status());
  v1::GetResponse out;
  *out.mutable_entry() = *std::move(entry);
  if (!writer->Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "caller gone");
  for (size_t at = 0; at < message.size(); at += kChunkSize) {
    out.set_chunk(message.substr(at, kChunkSize));
    if (!writer->Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "caller gone");
  }
  return grpc::Status::OK;
}

absl::StatusOr<v1::ReleaseResponse> ReleaseMessage(const QuarantineOptions& options,
                                                   QuarantineStore& store,
                                                   const v1::ReleaseRequest& request) {
  std::string message;
  auto entry = store.Get(request.id(), &message);
  if (!entry.ok()) return entry.status();
  std::vector<std::string> recipients(request.to().begin(), request.to().end());
  if (recipients.empty()) {
    recipients.assign(entry->envelope().recipients().begin(),
                      entry->envelope().recipients().end());
  }
  auto client = smtpd::RelayClient(options.relay, options.relay_timeout, options.helo_name);
  if (!client.ok()) return client.status();
  smtpd::NextHopClient& hop = **client;
  std::vector<smtpd::Reply> replies(recipients.size());
  smtpd::Reply mail = hop.Mail(entry->envelope().sender(), static_cast<int64_t>(message.size()),
                               HasEightBit(message), {});
  if (!mail.positive()) {
    std::fill(replies.begin(), replies.end(), mail);
  } else {
    std::vector<size_t> accepted;
    for (size_t i = 0; i < recipients.size(); ++i) {
      replies[i] = hop.Recipient(recipients[i]);
      if (replies[i].positive()) accepted.push_back(i);
    }
    if (!accepted.empty()) {
      std::vector<smtpd::Reply> done = hop.Data(message, accepted.size());
      for (size_t k = 0; k < accepted.size(); ++k) {
        // SMTP has one reply for the whole message.
        replies[accepted[k]] = done.empty() ? smtpd::Reply{451, "4.4.1", "no reply to DATA"}
                                            : done[std::min(k, done.size() - 1)];
      }
    } else {
      hop.Reset();
    }
    hop.Quit();
  }
  std::vector<v1::ReleaseRecord> records;
  int64_t micros = absl::ToUnixMicros(absl::Now());
  v1::ReleaseResponse response;
  bool all = true;
  for (size_t i = 0; i < recipients.size(); ++i) {
    v1::ReleaseRecord r;
    r.set_recipient(recipients[i]);
    r.set_code(replies[i].code);
    r.set_text(ValidUtf8(absl::StrCat(replies[i].enhanced, replies[i].enhanced.empty() ? "" : " ",
                                      replies[i].text)));
    r.mutable_released_at()->set_seconds(micros / 1000000);
    r.mutable_released_at()->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
    r.set_released_by(request.released_by());
    all = all && replies[i].positive();
    records.push_back(r);
    auto* result = response.add_results();
    result->set_recipient(r.recipient());
    result->set_code(r.code());
    result->set_text(r.text());
  }
  response.set_delivered(all);
  absl::Status recorded = store.RecordReleases(request.id(), records);
  LOG(INFO) << "release of " << request.id() << " by '" << request.released_by() << "' to "
            << recipients.size() << " recipient(s): " << (all ? "delivered" : "not delivered");
  if (!recorded.ok()) {
    // The mail went out; only the history is missing. Say so, but do not make the
    // caller send it again.
    LOG(WARNING) << "release of " << request.id() << " not recorded: " << recorded;
  }
  if (!all && mail.transient()) {
    return absl::UnavailableError(
        absl::StrCat("relay ", options.relay, ": ", mail.code, " ", mail.text));
  }
  return response;
}

grpc::Status QuarantineServiceImpl::Release(grpc::ServerContext*,
                                            const v1::ReleaseRequest* request,
                                            v1::ReleaseResponse* response) {
  auto r = ReleaseMessage(options_, *store_, *request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status QuarantineServiceImpl::Delete(grpc::ServerContext*, const v1::DeleteRequest* request,
                                           v1::DeleteResponse* response) {
  auto n = store_->Delete({request->ids().begin(), request->ids().end()});
  if (!n.ok()) return ToGrpcStatus(n.status());
  response->set_deleted(*n);
  return grpc::Status::OK;
}

grpc::Status QuarantineServiceImpl::Expire(grpc::ServerContext*, const v1::ExpireRequest* request,
                                           v1::ExpireResponse* response) {
  absl::Time before = absl::FromUnixSeconds(request->stored_before().seconds()) +
                      absl::Nanoseconds(request->stored_before().nanos());
  auto n = store_->Expire(before);
  if (!n.ok()) return ToGrpcStatus(n.status());
  response->set_deleted(*n);
  return grpc::Status::OK;
}

QuarantineServer::QuarantineServer(QuarantineOptions options,
                                   std::unique_ptr<QuarantineStore> store)
    : options_(std::move(options)),
      store_(std::move(store)),
      service_(options_, store_.get()),
      runner_(options_.host, options_.port) {
  runner_.AddService(&service_);
  // A whole message travels in Get's chunks, but a Store chunk may be large.
  runner_.SetMaxMessageSize(64 << 20);
}

QuarantineServer::~QuarantineServer() { Shutdown(); }

absl::Status QuarantineServer::Start() {
  absl::Status s = runner_.Start();
  if (!s.ok()) return s;
  if (options_.retention > absl::ZeroDuration()) {
    expirer_ = std::thread([this] { ExpireLoop(); });
  }
  return absl::OkStatus();
}

void QuarantineServer::ExpireLoop() {
  do {
    auto n = store_->Expire(absl::Now() - options_.retention);
    if (!n.ok()) {
      LOG(WARNING) << "expiry failed (retried in " << options_.expire_interval
                   << "): " << n.status();
    } else if (*n > 0) {
      LOG(INFO) << "expired " << *n << " quarantined message(s) older than "
                << options_.retention;
    }
  } while (!stop_.WaitForNotificationWithTimeout(options_.expire_interval));
}

void QuarantineServer::Shutdown() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (expirer_.joinable()) expirer_.join();
  runner_.Shutdown(absl::Seconds(5));
}

}  // namespace sagator::quarantine
