#include "common/message_filter.h"

#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/mail_headers.h"

namespace sagator {

using common::v1::HeaderEdit;
using common::v1::Outcome;

int CodeForOutcome(Outcome outcome) {
  switch (outcome) {
    case common::v1::PASS:
      return 250;
    case common::v1::FORCED_PASS:
      return 251;
    case common::v1::TEMPFAIL:
      return 451;
    case common::v1::REJECT:
      return 550;
    case common::v1::DROP:
      return 551;
    default:
      return 451;
  }
}

std::string ShortScanFailure(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
      return "scanner unavailable";
    case absl::StatusCode::kDeadlineExceeded:
      return "scan timeout";
    case absl::StatusCode::kCancelled:
      return "scan cancelled";
    case absl::StatusCode::kResourceExhausted:
      return "scanner busy";
    default:
      return absl::StrFormat("scan failed (%s)", absl::StatusCodeToString(status.code()));
  }
}

FilterDecision DecideOnScan(absl::StatusOr<ScanReply> scan) {
  FilterDecision out;
  if (!scan.ok()) {
    out.code = 451;
    out.text = ShortScanFailure(scan.status());
    out.scan_status = scan.status();
    return out;
  }
  scanner::v1::Verdict& v = scan->verdict;
  out.code = CodeForOutcome(v.outcome());
  out.outcome = v.outcome();
  out.level = v.level();
  out.detection = v.detection();
  out.sagator_id = v.sagator_id();
  out.not_scanned = v.not_scanned();
  out.reply_text = v.reply_text();
  if (out.code == 451) {
    if (v.outcome() == common::v1::OUTCOME_UNSPECIFIED) {
      out.text = "scanner-svc gave no outcome";
    } else {
      out.text = v.reply_text().empty() ? "scan failed" : v.reply_text();
    }
    return out;
  }
  out.text = v.detection().empty() ? "OK" : v.detection();

  out.detected =
      v.level() >= 1.0 || v.outcome() == common::v1::REJECT || v.outcome() == common::v1::DROP;
  // A status the message already had (forged, or from an earlier scan) goes first;
  // this scan's status follows the verdict's own headers, at the top.
  std::vector<HeaderEdit>& edits = out.header_edits;
  edits.reserve(v.header_edits_size() + 2);
  HeaderEdit& remove = edits.emplace_back();
  remove.set_kind(HeaderEdit::REMOVE);
  remove.set_name(kStatusHeader);
  edits.insert(edits.end(), v.header_edits().begin(), v.header_edits().end());
  if (out.detected) {
    HeaderEdit& status = edits.emplace_back();
    status.set_kind(HeaderEdit::REPLACE);
    status.set_name(kStatusHeader);
    status.set_value(
        absl::StrFormat("%s %.2f", v.detection().empty() ? "detected" : v.detection(), v.level()));
  }
  if (v.message_rewritten()) {
    out.message_rewritten = true;
    out.rewritten_message = std::move(scan->rewritten_message);
  }
  return out;
}

FilterDecision ScanAndDecide(ScannerClient& scanner, const FilterRequest& request) {
  scanner::v1::ScanHeader header;
  header.set_chain(request.chain);
  *header.mutable_envelope() = request.envelope;
  if (request.head_of > 0) {
    header.set_size(request.head_of);
    header.set_head_only(true);
  } else {
    header.set_size(static_cast<int64_t>(request.message.size()));
  }
  header.set_gateway(request.gateway);
  return DecideOnScan(scanner.Scan(header, request.message));
}

FilterResult FilterMessage(ScannerClient& scanner, FilterRequest request) {
  FilterDecision d = ScanAndDecide(scanner, request);
  FilterResult out;
  out.code = d.code;
  out.level = d.level;
  out.text = std::move(d.text);
  out.detection = std::move(d.detection);
  out.sagator_id = std::move(d.sagator_id);
  out.scan_status = std::move(d.scan_status);
  if (out.code == 451) return out;
  const std::string& base = d.message_rewritten ? d.rewritten_message : request.message;
  out.message = ApplyHeaderEdits(base, d.header_edits);
  out.send_message = true;
  return out;
}

}  // namespace sagator
