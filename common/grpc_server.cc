#include "common/grpc_server.h"

#include <csignal>
#include <pthread.h>

#include <glog/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>

#include "absl/strings/str_cat.h"

namespace sagator {

void BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

GrpcServerRunner::GrpcServerRunner(std::string host, int port)
    : host_(std::move(host)), port_(port) {}

GrpcServerRunner::~GrpcServerRunner() {
  if (server_ != nullptr) Shutdown(absl::ZeroDuration());
}

void GrpcServerRunner::AddService(grpc::Service* service) { services_.push_back(service); }

std::string GrpcServerRunner::address() const {
  if (host_.find(':') != std::string::npos) return absl::StrCat("[", host_, "]:", bound_port_);
  return absl::StrCat(host_, ":", bound_port_);
}

absl::Status GrpcServerRunner::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::string addr = host_.find(':') != std::string::npos
                         ? absl::StrCat("[", host_, "]:", port_)
                         : absl::StrCat(host_, ":", port_);
  builder.AddListeningPort(addr, grpc::InsecureServerCredentials(), &bound_port_);
  builder.SetMaxReceiveMessageSize(max_message_size_);
  builder.SetMaxSendMessageSize(max_message_size_);
  if (max_threads_ > 0) {
    grpc::ResourceQuota quota("sagator");
    quota.SetMaxThreads(max_threads_);
    builder.SetResourceQuota(quota);
  }
  // gRPC's synchronous server lets a thread that finished a call exit once more than
  // MAX_POLLERS threads (default 2) wait for work, and starts a new thread when a call
  // arrives and none waits. Under steady concurrent load that created and destroyed a
  // thread for most calls (stacks, TLS and page faults were a third of scanner-svc's
  // CPU on small policy calls). Threads that finished a call now stay for the next.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              max_threads_ > 0 ? max_threads_ : kDefaultMaxPollers);
  for (grpc::Service* s : services_) builder.RegisterService(s);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || bound_port_ == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", addr));
  }
  server_->GetHealthCheckService()->SetServingStatus(true);
  return absl::OkStatus();
}

int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

void GrpcServerRunner::WaitForShutdownSignal(absl::Duration grace) {
  int sig = WaitForTerminationSignal();
  LOG(INFO) << "signal " << sig << ": shutting down";
  Shutdown(grace);
}

void GrpcServerRunner::Shutdown(absl::Duration grace) {
  if (server_ == nullptr) return;
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(grace));
  server_->Wait();
  server_.reset();
}

}  // namespace sagator
