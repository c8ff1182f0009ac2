#include "services/launcher/rlimits.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sagator::launcher {
namespace {

using config::v1::RlimitService;

// The parameters of SAGATOR's rlimit() and the resource each one sets.
struct Parameter {
  const char* name;
  int resource;
  bool (RlimitService::*has)() const;
  int64_t (RlimitService::*value)() const;
};

constexpr Parameter kParameters[] = {
    {"AS", RLIMIT_AS, &RlimitService::has_as, &RlimitService::as},
    {"NOFILE", RLIMIT_NOFILE, &RlimitService::has_nofile, &RlimitService::nofile},
    {"VMEM", RLIMIT_AS, &RlimitService::has_vmem, &RlimitService::vmem},
    {"DATA", RLIMIT_DATA, &RlimitService::has_data, &RlimitService::data},
    {"RSS", RLIMIT_RSS, &RlimitService::has_rss, &RlimitService::rss},
    {"STACK", RLIMIT_STACK, &RlimitService::has_stack, &RlimitService::stack},
    {"FSIZE", RLIMIT_FSIZE, &RlimitService::has_fsize, &RlimitService::fsize},
    {"CPU", RLIMIT_CPU, &RlimitService::has_cpu, &RlimitService::cpu},
    {"CORE", RLIMIT_CORE, &RlimitService::has_core, &RlimitService::core},
    {"NPROC", RLIMIT_NPROC, &RlimitService::has_nproc, &RlimitService::nproc},
};

std::string FormatLimit(rlim_t value) {
  return value == RLIM_INFINITY ? "unlimited" : absl::StrCat(value);
}

}  // namespace

std::vector<ResourceLimit> ResourceLimitsFromConfig(const RlimitService& rlimit) {
  std::vector<ResourceLimit> limits;
  for (const Parameter& p : kParameters) {
    if (!(rlimit.*p.has)()) continue;
    int64_t v = (rlimit.*p.value)();
    limits.push_back(
        {p.name, p.resource, v < 0 ? RLIM_INFINITY : static_cast<rlim_t>(v)});
  }
  return limits;
}

absl::Status ApplyResourceLimits(absl::Span<const ResourceLimit> limits) {
  for (const ResourceLimit& limit : limits) {
    rlimit current;
    getrlimit(limit.resource, &current);
    rlimit wanted = {limit.value, limit.value};
    if (setrlimit(limit.resource, &wanted) != 0) {
      int err = errno;
      return absl::FailedPreconditionError(absl::StrCat(
          "rlimit ", limit.name, "=", FormatLimit(limit.value),
          ": setrlimit failed: ", strerror(err), " (now soft ",
          FormatLimit(current.rlim_cur), ", hard ", FormatLimit(current.rlim_max), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace sagator::launcher
