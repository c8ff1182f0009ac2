// The Grafana dashboard in deploy/grafana is valid JSON, and every metric its
// queries use is one SAGATOR exports (declared in common/stats), with the right type;
// every declared stat has a panel.
#include <fstream>
#include <set>
#include <sstream>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <re2/re2.h>

#include "absl/strings/str_cat.h"
#include "common/stats.h"
#include "gtest/gtest.h"

namespace sagator::stats {
namespace {

void CollectExprs(const google::protobuf::Value& v, std::vector<std::string>* out) {
  if (v.has_struct_value()) {
    for (const auto& [k, f] : v.struct_value().fields()) {
      if (k == "expr" && f.has_string_value()) out->push_back(f.string_value());
      CollectExprs(f, out);
    }
  } else if (v.has_list_value()) {
    for (const auto& e : v.list_value().values()) CollectExprs(e, out);
  }
}

TEST(GrafanaDashboard, QueriesOnlyExportedMetricsAndCoversEveryStat) {
  std::ifstream in(absl::StrCat(std::getenv("TEST_SRCDIR"),
                                "/sagator/deploy/grafana/sagator-dashboard.json"));
  ASSERT_TRUE(in.good());
  std::stringstream buf;
  buf << in.rdbuf();
  google::protobuf::Value root;
  auto st = google::protobuf::util::JsonStringToMessage(buf.str(), &root);
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::vector<std::string> exprs;
  CollectExprs(root, &exprs);
  ASSERT_GE(exprs.size(), 9u);
  std::set<std::string> used;
  RE2 metric("sagator_([a-z_]+?)_(total|seconds_bucket|seconds_sum|seconds_count)\\b");
  for (const std::string& e : exprs) {
    re2::StringPiece input(e);
    std::string name, suffix;
    int found = 0;
    while (RE2::FindAndConsume(&input, metric, &name, &suffix)) {
      ++found;
      const StatInfo* info = FindStat(name);
      ASSERT_NE(info, nullptr) << name << " in " << e;
      EXPECT_EQ(info->histogram, suffix != "total") << name << " in " << e;
      used.insert(name);
    }
    EXPECT_GT(found, 0) << e;
  }
  for (const StatInfo& s : StatList()) EXPECT_TRUE(used.count(s.name)) << s.name << " has no panel";
}

}  // namespace
}  // namespace sagator::stats
