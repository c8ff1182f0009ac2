// Every gateway's domain core: scans one message through a ScannerClient and
// decides what to do with it. The verdict-to-code mapping lives here and only here:
//
//   outcome              code  text                         message produced
//   PASS                 250   detection, else "OK"         yes
//   FORCED_PASS          251   detection, else "OK"         yes
//   REJECT               550   detection                    yes
//   DROP                 551   detection                    yes
//   TEMPFAIL             451   reply text, else "scan failed"  no
//   OUTCOME_UNSPECIFIED  451   "scanner-svc gave no outcome"   no
//   Scan call failed     451   short reason (e.g. "scanner unavailable")  no
//
// The codes are SAGATOR's (sgfilterd writes them as they are); the SMTP, LMTP and
// milter gateways translate them into their protocol's replies.
//
// The message produced is the original (or, when a scanner rewrote it, the
// rewritten one) with the verdict's header edits applied. Detected mail (level >=
// 1.0, or REJECT/DROP) also gets "X-Sagator-Status: <detection> <level>", which
// procmail recipes match with ^X-Sagator-Status: . ; any X-Sagator-Status field the
// message already had is removed, so only this scan's result is there.
//
// Gateways that cannot hand back a whole new message (the milter edits the MTA's
// copy field by field) use ScanAndDecide: the same mapping, with the header edits as
// a list instead of applied to the text. FilterMessage is ScanAndDecide followed by
// ApplyHeaderEdits.
//
// Thread-safe when the ScannerClient is; blocks for the duration of the scan.
#ifndef SAGATOR_COMMON_MESSAGE_FILTER_H_
#define SAGATOR_COMMON_MESSAGE_FILTER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "sagator/common/v1/common.pb.h"
#include "common/scanner_client.h"

namespace sagator {

// The header field added to detected mail.
inline constexpr char kStatusHeader[] = "X-Sagator-Status";

struct FilterRequest {
  // Name of the calling gateway (ScanHeader.gateway; logs and statistics).
  std::string gateway;
  // The chain to run (the service's `scanners`).
  std::string chain;
  common::v1::Envelope envelope;
  // The raw message; moved from, so the caller's copy is released early.
  std::string message;
  // When > 0: `message` is only the head (the header block) of a message of this
  // many bytes, too large to scan. scanner-svc logs it and gives its outcome for
  // mail not scanned (ScanHeader.head_only).
  int64_t head_of = 0;
};

struct FilterResult {
  int code = 451;
  double level = 0;
  // Text of the result line.
  std::string text;
  // False for 451: there is no message to deliver.
  bool send_message = false;
  std::string message;
  // For the log line.
  std::string detection;
  std::string sagator_id;
  absl::Status scan_status;
};

// The verdict mapped to a code and a list of header edits, not yet applied.
struct FilterDecision {
  // 250, 251, 451, 550 or 551, as in the table above.
  int code = 451;
  // The verdict's outcome (OUTCOME_UNSPECIFIED when the scan failed).
  common::v1::Outcome outcome = common::v1::OUTCOME_UNSPECIFIED;
  double level = 0;
  // Text of the result line (see the table above).
  std::string text;
  std::string detection;
  std::string sagator_id;
  // Level >= 1.0, or REJECT/DROP: the mail gets X-Sagator-Status.
  bool detected = false;
  // The verdict's not_scanned (the configured "not scanned" outcome).
  bool not_scanned = false;
  // scanner-svc's reply text (e.g. "5.7.1 Rejected: NAME"); may be empty.
  std::string reply_text;
  // For every code but 451, the edits to apply in order: REMOVE X-Sagator-Status
  // first, then the verdict's own edits, then (detected mail) REPLACE
  // X-Sagator-Status. Empty for 451.
  std::vector<common::v1::HeaderEdit> header_edits;
  // True when a scanner rewrote the message: rewritten_message replaces the
  // original, and header_edits apply to it.
  bool message_rewritten = false;
  std::string rewritten_message;
  // The failed Scan call's status (OK when scanner-svc answered).
  absl::Status scan_status;
};

// SAGATOR's status code for an outcome (OUTCOME_UNSPECIFIED is 451).
int CodeForOutcome(common::v1::Outcome outcome);

// The result-line text for a failed scan call: short and free of internals.
std::string ShortScanFailure(const absl::Status& status);

// Maps one answer of scanner-svc (a verdict, or the failed call's status).
FilterDecision DecideOnScan(absl::StatusOr<ScanReply> scan);

// Scans request.message (which is left in place) and maps the answer. Never throws;
// scan failures become 451.
FilterDecision ScanAndDecide(ScannerClient& scanner, const FilterRequest& request);

// Scans and builds the reply. Never throws; scan failures become 451.
FilterResult FilterMessage(ScannerClient& scanner, FilterRequest request);

}  // namespace sagator

#endif  // SAGATOR_COMMON_MESSAGE_FILTER_H_
