// SAGATOR's `rlimit` service: resource limits the launcher sets on itself before it
// starts anything, so that every child inherits them.
//
//   std::vector<ResourceLimit> limits = ResourceLimitsFromConfig(service.rlimit());
//   absl::Status s = ApplyResourceLimits(limits);  // setrlimit, soft = hard = value
//
// Thread-compatible: the functions keep no state (setrlimit is process-wide).
#ifndef SAGATOR_SERVICES_LAUNCHER_RLIMITS_H_
#define SAGATOR_SERVICES_LAUNCHER_RLIMITS_H_

#include <sys/resource.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "sagator/config/v1/config.pb.h"

namespace sagator::launcher {

// One setrlimit() call.
struct ResourceLimit {
  // The parameter as written in the configuration ("NOFILE", "VMEM", ...).
  std::string name;
  // The RLIMIT_* resource it sets (VMEM sets RLIMIT_AS, as on Linux they are one).
  int resource;
  // Soft and hard limit; RLIM_INFINITY for -1.
  rlim_t value;

  friend bool operator==(const ResourceLimit&, const ResourceLimit&) = default;
};

// The limits an `rlimit` entry sets, in the order of the schema's fields.
std::vector<ResourceLimit> ResourceLimitsFromConfig(
    const config::v1::RlimitService& rlimit);

// Sets each limit (soft and hard) on this process, in order. Stops at the first one
// the kernel refuses, with an error naming the parameter, the value and the reason.
absl::Status ApplyResourceLimits(absl::Span<const ResourceLimit> limits);

}  // namespace sagator::launcher

#endif  // SAGATOR_SERVICES_LAUNCHER_RLIMITS_H_
