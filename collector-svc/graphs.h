// collector-svc's web page: graphs of messages, viruses, spam, bytes and scan latency
// over the last day, week, month or year, drawn on the server as SVG from the
// Aggregator's time series, plus a table of the current totals. No JavaScript is
// needed to see them (a tiny script only marks the page once the browser has laid
// the graphs out, which the Chromium test reads).
//
//   std::string svg = RenderGraph(aggregator, "messages", Range::kDay, absl::Now());
//   std::string html = RenderPage(aggregator, Range::kWeek, absl::Now());
//
// Every text that comes from reporters (series names, label values) is HTML-escaped.
#ifndef SAGATOR_COLLECTOR_SVC_GRAPHS_H_
#define SAGATOR_COLLECTOR_SVC_GRAPHS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "collector-svc/aggregator.h"

namespace sagator::collector {

// The graphs the page shows: "messages", "viruses", "spam", "bytes", "latency".
const std::vector<std::string>& GraphNames();

// One graph as a standalone SVG document; empty for an unknown name.
std::string RenderGraph(const Aggregator& agg, absl::string_view graph, Range range,
                        absl::Time now);

// The whole page.
std::string RenderPage(const Aggregator& agg, Range range, absl::Time now);

}  // namespace sagator::collector

#endif  // SAGATOR_COLLECTOR_SVC_GRAPHS_H_
