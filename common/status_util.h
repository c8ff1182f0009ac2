// The one place absl::Status and grpc::Status are converted into each other.
#ifndef SAGATOR_COMMON_STATUS_UTIL_H_
#define SAGATOR_COMMON_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace sagator {

// Same code and message; the codes of both libraries have the same numbers.
grpc::Status ToGrpcStatus(const absl::Status& s);
absl::Status FromGrpcStatus(const grpc::Status& s);

}  // namespace sagator

#endif  // SAGATOR_COMMON_STATUS_UTIL_H_
