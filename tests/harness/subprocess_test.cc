// RunCommand from several threads at once: each command sees the end of its own
// input (no child inherits another command's pipes).
#include "tests/harness/subprocess.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace sagator::testing {
namespace {

TEST(RunCommand, ConcurrentCommandsEachSeeTheEndOfTheirInput) {
  const std::string input(256 * 1024, 'x');
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        CommandResult r = RunCommand({"/bin/cat"}, input, absl::Seconds(10));
        if (r.exit_code != 0 || r.out.size() != input.size()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace sagator::testing
