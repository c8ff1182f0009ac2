// sgfilterd's domain core: scans one message through a ScannerClient and decides
// what goes back to the sgfilter client. The verdict-to-reply mapping of this
// gateway lives here and only here:
//
//   outcome              code  result line text             message sent back
//   PASS                 250   detection, else "OK"         yes
//   FORCED_PASS          251   detection, else "OK"         yes
//   REJECT               550   detection                    yes
//   DROP                 551   detection                    yes
//   TEMPFAIL             451   reply text, else "scan failed"  no
//   OUTCOME_UNSPECIFIED  451   "scanner-svc gave no outcome"   no
//   Scan call failed     451   short reason (e.g. "scanner unavailable")  no
//
// The message sent back is the original (or, when a scanner rewrote it, the
// rewritten one) with the verdict's header edits applied. Detected mail (level >=
// 1.0, or REJECT/DROP) also gets "X-Sagator-Status: <detection> <level>", which
// procmail recipes match with ^X-Sagator-Status: . ; any X-Sagator-Status field the
// message already had is removed, so only this scan's result is there.
//
// Thread-safe when the ScannerClient is; blocks for the duration of the scan.
#ifndef SAGATOR_SERVICES_SGFILTERD_MESSAGE_FILTER_H_
#define SAGATOR_SERVICES_SGFILTERD_MESSAGE_FILTER_H_

#include <string>

#include "absl/status/status.h"
#include "sagator/common/v1/common.pb.h"
#include "common/scanner_client.h"

namespace sagator::sgfilterd {

// Name given to scanner-svc as ScanHeader.gateway and written into logs.
inline constexpr char kGatewayName[] = "sgfilterd";
// The header field added to detected mail.
inline constexpr char kStatusHeader[] = "X-Sagator-Status";

struct FilterRequest {
  // The chain to run (the service's `scanners`).
  std::string chain;
  common::v1::Envelope envelope;
  // The raw message; moved from, so the caller's copy is released early.
  std::string message;
};

struct FilterResult {
  int code = 451;
  double level = 0;
  // Text of the result line.
  std::string text;
  // False for 451: only the result line is written.
  bool send_message = false;
  std::string message;
  // For the log line.
  std::string detection;
  std::string sagator_id;
  absl::Status scan_status;
};

// SAGATOR's status code for an outcome (OUTCOME_UNSPECIFIED is 451).
int CodeForOutcome(common::v1::Outcome outcome);

// The result-line text for a failed scan call: short and free of internals.
std::string ShortScanFailure(const absl::Status& status);

// Scans and builds the reply. Never throws; scan failures become 451.
FilterResult FilterMessage(ScannerClient& scanner, FilterRequest request);

}  // namespace sagator::sgfilterd

#endif  // SAGATOR_SERVICES_SGFILTERD_MESSAGE_FILTER_H_
