// GrpcServerRunner: a server that keeps its call threads under steady concurrent
// load instead of starting a thread for most calls.
#include "common/grpc_server.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "sagator/scanner/v1/scanner.grpc.pb.h"

namespace sagator {
namespace {

// Records the kernel thread id of every call.
class ThreadRecorder final : public scanner::v1::ScannerService::Service {
 public:
  grpc::Status CheckPolicy(grpc::ServerContext*, const scanner::v1::PolicyRequest*,
                           scanner::v1::PolicyResponse*) override {
    absl::MutexLock lock(&mu);
    tids.insert(gettid());
    ++calls;
    return grpc::Status::OK;
  }
  absl::Mutex mu;
  std::set<pid_t> tids ABSL_GUARDED_BY(mu);
  int calls ABSL_GUARDED_BY(mu) = 0;
};

TEST(GrpcServerRunnerTest, ConcurrentCallsReuseTheServersThreads) {
  ThreadRecorder service;
  GrpcServerRunner runner("127.0.0.1", 0);
  runner.AddService(&service);
  runner.SetMaxThreads(12);
  ASSERT_TRUE(runner.Start().ok());
  auto channel = grpc::CreateChannel(runner.address(), grpc::InsecureChannelCredentials());
  constexpr int kClients = 6;
  constexpr int kCalls = 300;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      auto stub = scanner::v1::ScannerService::NewStub(channel);
      for (int i = 0; i < kCalls; ++i) {
        grpc::ClientContext ctx;
        scanner::v1::PolicyRequest req;
        scanner::v1::PolicyResponse resp;
        ASSERT_TRUE(stub->CheckPolicy(&ctx, req, &resp).ok());
      }
    });
  }
  for (auto& t : clients) t.join();
  absl::MutexLock lock(&service.mu);
  EXPECT_EQ(service.calls, kClients * kCalls);
  // gRPC's default (at most 2 idle threads) ended and started threads all the
  // time: hundreds of distinct threads served these calls.
  EXPECT_LE(service.tids.size(), 12u) << "threads were started and ended per call";
}

}  // namespace
}  // namespace sagator
