#include "collector-svc/graphs.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/http_server.h"

namespace sagator::collector {

using net::HtmlEscape;

namespace {

constexpr int kWidth = 760, kHeight = 240;
constexpr int kLeft = 70, kRight = 20, kTop = 30, kBottom = 40;

struct Line {
  std::string label;
  std::string color;
  std::vector<double> values;
};

struct Graph {
  std::string title;
  std::string unit;
  std::vector<Line> lines;
};

// The smallest 1, 2 or 5 times a power of ten that is >= v.
double NiceCeiling(double v) {
  if (v <= 0) return 1;
  double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= v) return m * p;
  }
  return 10 * p;
}

std::string FormatValue(double v) {
  if (v >= 1e9) return absl::StrFormat("%gG", v / 1e9);
  if (v >= 1e6) return absl::StrFormat("%gM", v / 1e6);
  if (v >= 1e3) return absl::StrFormat("%gk", v / 1e3);
  return absl::StrFormat("%g", v);
}

absl::string_view PerWhat(Range range) {
  switch (range) {
    case Range::kDay:
      return "per minute";
    case Range::kWeek:
    case Range::kMonth:
      return "per hour";
    case Range::kYear:
      return "per day";
  }
  return "";
}

const char* TickFormat(Range range) {
  switch (range) {
    case Range::kDay:
      return "%H:%M";
    case Range::kWeek:
      return "%a %d";
    case Range::kMonth:
      return "%b %d";
    case Range::kYear:
      return "%b %Y";
  }
  return "%H:%M";
}

bool BuildGraph(const std::vector<TimeSeries::Point>& pts, absl::string_view name, Range range,
                Graph* g) {
  auto series = [&](Metric m) {
    std::vector<double> v;
    v.reserve(pts.size());
    for (const auto& p : pts) v.push_back(p.values[static_cast<size_t>(m)]);
    return v;
  };
  std::string per(PerWhat(range));
  if (name == "messages") {
    *g = {"Messages", absl::StrCat("messages ", per),
          {{"all", "#1f5fa8", series(Metric::kMessages)},
           {"clean", "#2e8b3a", series(Metric::kClean)},
           {"rejected or dropped", "#c0392b", series(Metric::kRejected)},
           {"temporary failures", "#d68910", series(Metric::kTempfailed)}}};
  } else if (name == "viruses") {
    *g = {"Viruses", absl::StrCat("detections ", per),
          {{"Virus-count", "#c0392b", series(Metric::kViruses)}}};
  } else if (name == "spam") {
    *g = {"Spam", absl::StrCat("detections ", per),
          {{"Spam-count", "#8e44ad", series(Metric::kSpam)}}};
  } else if (name == "bytes") {
    *g = {"Bytes", absl::StrCat("bytes ", per), {{"bytes", "#1f5fa8", series(Metric::kBytes)}}};
  } else if (name == "latency") {
    std::vector<double> avg;
    avg.reserve(pts.size());
    for (const auto& p : pts) {
      double n = p.values[static_cast<size_t>(Metric::kLatencyCount)];
      avg.push_back(n > 0 ? 1000.0 * p.values[static_cast<size_t>(Metric::kLatencySum)] / n : 0);
    }
    *g = {"Scan latency", "milliseconds (average)", {{"scan", "#117a65", std::move(avg)}}};
  } else {
    return false;
  }
  return true;
}

std::string Svg(const Graph& g, const std::vector<TimeSeries::Point>& pts, Range range,
                absl::string_view id) {
  double max = 0;
  for (const Line& l : g.lines) {
    for (double v : l.values) max = std::max(max, v);
  }
  double top = NiceCeiling(max);
  int pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  std::string out = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"graph\" id=\"%s\" width=\"%d\" "
      "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, sans-serif\" "
      "font-size=\"11\">\n",
      HtmlEscape(id), kWidth, kHeight, kWidth, kHeight);
  absl::StrAppend(&out, "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n");
  absl::StrAppend(&out, absl::StrFormat("<text x=\"%d\" y=\"18\" font-size=\"14\" "
                                        "font-weight=\"bold\">%s</text>\n",
                                        kLeft, HtmlEscape(g.title)));
  absl::StrAppend(&out, absl::StrFormat("<text x=\"12\" y=\"%d\" transform=\"rotate(-90 12 %d)\" "
                                        "text-anchor=\"middle\">%s</text>\n",
                                        kTop + ph / 2, kTop + ph / 2, HtmlEscape(g.unit)));
  // Horizontal grid with values.
  for (int i = 0; i <= 4; ++i) {
    int y = kTop + ph - ph * i / 4;
    absl::StrAppend(&out, absl::StrFormat("<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" "
                                          "stroke=\"#dddddd\"/>\n",
                                          kLeft, y, kLeft + pw, y));
    absl::StrAppend(&out, absl::StrFormat("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n",
                                          kLeft - 4, y + 4, FormatValue(top * i / 4)));
  }
  // Time ticks.
  size_t n = pts.size();
  for (int i = 0; i <= 6 && n > 1; ++i) {
    size_t idx = (n - 1) * static_cast<size_t>(i) / 6;
    int x = kLeft + static_cast<int>(static_cast<double>(pw) * static_cast<double>(idx) /
                                     static_cast<double>(n - 1));
    absl::StrAppend(&out, absl::StrFormat("<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" "
                                          "stroke=\"#eeeeee\"/>\n",
                                          x, kTop, x, kTop + ph));
    absl::StrAppend(&out, absl::StrFormat(
                              "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x,
                              kTop + ph + 16,
                              absl::FormatTime(TickFormat(range), pts[idx].start,
                                               absl::UTCTimeZone())));
  }
  absl::StrAppend(&out, absl::StrFormat("<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                                        "fill=\"none\" stroke=\"#888888\"/>\n",
                                        kLeft, kTop, pw, ph));
  // The lines, and a legend under the plot.
  int legend_x = kLeft;
  for (const Line& l : g.lines) {
    std::string points;
    for (size_t i = 0; i < l.values.size(); ++i) {
      double x = kLeft + (n > 1 ? static_cast<double>(pw) * static_cast<double>(i) /
                                      static_cast<double>(n - 1)
                                : 0.0);
      double y = kTop + ph - static_cast<double>(ph) * l.values[i] / top;
      absl::StrAppend(&points, i ? " " : "", absl::StrFormat("%.1f,%.1f", x, y));
    }
    absl::StrAppend(&out, absl::StrFormat("<polyline class=\"data\" data-series=\"%s\" "
                                          "fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                                          "points=\"%s\"/>\n",
                                          HtmlEscape(l.label), l.color, points));
    absl::StrAppend(&out, absl::StrFormat("<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" "
                                          "fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                                          legend_x, kHeight - 12, l.color, legend_x + 14,
                                          kHeight - 3, HtmlEscape(l.label)));
    legend_x += 30 + 7 * static_cast<int>(l.label.size());
  }
  absl::StrAppend(&out, "</svg>\n");
  return out;
}

}  // namespace


const std::vector<std::string>& GraphNames() {
  static const auto* names =
      new std::vector<std::string>{"messages", "viruses", "spam", "bytes", "latency"};
  return *names;
}

std::string RenderGraph(const Aggregator& agg, absl::string_view graph, Range range,
                        absl::Time now) {
  std::vector<TimeSeries::Point> pts = agg.Points(range, now);
  Graph g;
  if (!BuildGraph(pts, graph, range, &g)) return "";
  return Svg(g, pts, range, graph);
}

std::string RenderPage(const Aggregator& agg, Range range, absl::Time now) {
  std::string out = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<title>SAGATOR statistics</title>\n"
      "<meta http-equiv=\"refresh\" content=\"60\">\n"
      "<style>body{font-family:'DejaVu Sans',sans-serif;margin:1em 2em;color:#222}"
      "nav a{margin-right:1em}nav a.on{font-weight:bold}"
      "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
      "padding:2px 6px;text-align:left}td.n{text-align:right}</style>\n"
      "</head><body>\n<h1>SAGATOR statistics</h1>\n<nav>");
  for (Range r : {Range::kDay, Range::kWeek, Range::kMonth, Range::kYear}) {
    absl::StrAppend(&out, "<a href=\"/?range=", RangeName(r), "\"",
                    r == range ? " class=\"on\"" : "", ">last ", RangeName(r), "</a>");
  }
  absl::StrAppend(&out, "<a href=\"/status\">status file</a><a href=\"/metrics\">metrics</a>",
                  "</nav>\n<p>Updated ",
                  absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", now, absl::UTCTimeZone()),
                  "; one point ", PerWhat(range), ".</p>\n");
  std::vector<TimeSeries::Point> pts = agg.Points(range, now);
  for (const std::string& name : GraphNames()) {
    Graph g;
    BuildGraph(pts, name, range, &g);
    absl::StrAppend(&out, "<div class=\"graph-box\">", Svg(g, pts, range, name), "</div>\n");
  }
  absl::StrAppend(&out, "<h2>Totals</h2>\n<table><tr><th>counter</th><th>value</th></tr>\n");
  stats::Snapshot totals = agg.Totals();
  for (const stats::CounterSample& c : totals.counters) {
    absl::StrAppend(&out, "<tr><td>", HtmlEscape(c.key), "</td><td class=\"n\">", c.value,
                    "</td></tr>\n");
  }
  absl::StrAppend(&out, "</table>\n<h2>Reporters</h2>\n<table><tr><th>source</th><th>last "
                        "batch</th><th>batches</th><th>dropped events</th></tr>\n");
  for (const SourceInfo& s : agg.Sources()) {
    absl::StrAppend(&out, "<tr><td>", HtmlEscape(s.source), "</td><td>",
                    absl::FormatTime("%Y-%m-%d %H:%M:%S", s.last_report, absl::UTCTimeZone()),
                    "</td><td class=\"n\">", s.batches, "</td><td class=\"n\">", s.dropped_events,
                    "</td></tr>\n");
  }
  // Marks the page with how many data lines the browser laid out, and how many of
  // them show data (are not flat at zero).
  absl::StrAppend(
      &out,
      "</table>\n<script>window.addEventListener('load',function(){var n=0,d=0;"
      "document.querySelectorAll('polyline.data').forEach(function(p){var b=p.getBBox();"
      "if(b.width>0)n++;if(b.height>0)d++;});"
      "document.body.setAttribute('data-drawn-lines',String(n));"
      "document.body.setAttribute('data-lines-with-data',String(d));});"
      "</script>\n</body></html>\n");
  return out;
}

}  // namespace sagator::collector
