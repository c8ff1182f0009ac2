#include "collector-svc/collector_service.h"

#include "absl/time/clock.h"
#include "common/status_util.h"

namespace sagator::collector {

grpc::Status CollectorServiceImpl::Report(grpc::ServerContext*, const v1::ReportRequest* req,
                                          v1::ReportResponse* resp) {
  absl::StatusOr<int64_t> n = agg_->Ingest(*req, absl::Now());
  if (!n.ok()) return ToGrpcStatus(n.status());
  resp->set_accepted_events(*n);
  return grpc::Status::OK;
}

grpc::Status CollectorServiceImpl::GetStatus(grpc::ServerContext*,
                                             const v1::GetStatusRequest* req,
                                             v1::GetStatusResponse* resp) {
  agg_->FillStatus(req->name_prefix(), resp);
  return grpc::Status::OK;
}

}  // namespace sagator::collector
