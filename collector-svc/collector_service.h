// The gRPC face of collector-svc: sagator.collector.v1.CollectorService translated to
// the Aggregator (no logic of its own).
#ifndef SAGATOR_COLLECTOR_SVC_COLLECTOR_SERVICE_H_
#define SAGATOR_COLLECTOR_SVC_COLLECTOR_SERVICE_H_

#include "collector-svc/aggregator.h"
#include "sagator/collector/v1/collector.grpc.pb.h"

namespace sagator::collector {

class CollectorServiceImpl final : public v1::CollectorService::Service {
 public:
  explicit CollectorServiceImpl(Aggregator* aggregator) : agg_(aggregator) {}

  grpc::Status Report(grpc::ServerContext* ctx, const v1::ReportRequest* req,
                      v1::ReportResponse* resp) override;
  grpc::Status GetStatus(grpc::ServerContext* ctx, const v1::GetStatusRequest* req,
                         v1::GetStatusResponse* resp) override;

 private:
  Aggregator* agg_;
};

}  // namespace sagator::collector

#endif  // SAGATOR_COLLECTOR_SVC_COLLECTOR_SERVICE_H_
