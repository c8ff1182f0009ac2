#include "services/launcher/rlimits.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

namespace sagator::launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ResourceLimitsFromConfig, MapsEachSetParameterToItsResource) {
  config::v1::RlimitService rlimit;
  rlimit.set_nofile(1234);
  rlimit.set_core(0);
  rlimit.set_vmem(-1);
  rlimit.set_cpu(60);
  EXPECT_THAT(ResourceLimitsFromConfig(rlimit),
              ElementsAre(ResourceLimit{"NOFILE", RLIMIT_NOFILE, 1234},
                          ResourceLimit{"VMEM", RLIMIT_AS, RLIM_INFINITY},
                          ResourceLimit{"CPU", RLIMIT_CPU, 60},
                          ResourceLimit{"CORE", RLIMIT_CORE, 0}));
}

TEST(ResourceLimitsFromConfig, EmptyEntrySetsNothing) {
  EXPECT_TRUE(ResourceLimitsFromConfig(config::v1::RlimitService()).empty());
}

TEST(ApplyResourceLimits, SetsSoftAndHardLimitOfThisProcess) {
  ASSERT_TRUE(ApplyResourceLimits({{"CORE", RLIMIT_CORE, 0}}).ok());
  rlimit core;
  ASSERT_EQ(getrlimit(RLIMIT_CORE, &core), 0);
  EXPECT_EQ(core.rlim_cur, 0u);
  EXPECT_EQ(core.rlim_max, 0u);
}

TEST(ApplyResourceLimits, RefusalNamesTheParameterValueAndReason) {
  // Above fs.nr_open, which not even root may exceed.
  absl::Status s = ApplyResourceLimits({{"NOFILE", RLIMIT_NOFILE, 1000000000}});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("rlimit NOFILE=1000000000: setrlimit failed: "));
  EXPECT_THAT(s.message(), HasSubstr("(now soft "));
}

}  // namespace
}  // namespace sagator::launcher
