// The client side of Postfix's SMTPD policy delegation protocol (SMTPD_POLICY_README)
// for tests and benchmarks: PolicyRequest writes the attribute block Postfix 3.7's
// smtpd sends for check_policy_service, and PolicyClient sends such blocks over one
// persistent TCP connection (TCP_NODELAY, as smtpd's connection is) and reads the
// `action=...` reply, as Postfix reuses a policy connection for many requests.
//
//   PolicyClient c("127.0.0.1", port);
//   PolicyRequest r;
//   r.client_address = "192.0.2.1"; r.sender = "a@example.net"; r.recipient = "b@example.org";
//   std::string action = c.Ask(r);   // "DEFER_IF_PERMIT Greylisted ...", "DUNNO", ...
//
// Not thread-safe: one client per thread.
#ifndef SAGATOR_TESTS_HARNESS_POLICY_CLIENT_H_
#define SAGATOR_TESTS_HARNESS_POLICY_CLIENT_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sagator::harness {

// One smtpd_access_policy request. Fields left empty go out as `name=` (Postfix sends
// every attribute, empty when it has no value).
struct PolicyRequest {
  std::string protocol_state = "RCPT";
  std::string protocol_name = "ESMTP";
  std::string client_address = "192.0.2.1";
  std::string client_name = "mail.example.net";
  std::string client_port = "40000";
  std::string reverse_client_name = "mail.example.net";
  std::string server_address = "127.0.0.1";
  std::string server_port = "25";
  std::string helo_name = "mail.example.net";
  std::string sender = "sender@example.net";
  std::string recipient = "user@example.org";
  std::string recipient_count = "0";
  std::string queue_id;
  // Postfix's per-message instance id (e.g. "2e4b.65c8a1f3.4f1a2.0").
  std::string instance = "1.1.1.0";
  std::string size;
  std::string etrn_domain;
  std::string stress;
  std::string sasl_method;
  std::string sasl_username;
  std::string sasl_sender;
  std::string ccert_subject;
  std::string ccert_issuer;
  std::string ccert_fingerprint;
  std::string ccert_pubkey_fingerprint;
  std::string encryption_protocol;
  std::string encryption_cipher;
  std::string encryption_keysize = "0";
  std::string policy_context;
  // Attributes appended after the standard ones (a newer Postfix's, or garbage).
  std::vector<std::pair<std::string, std::string>> extra;

  // The wire form: "request=smtpd_access_policy\n", one "name=value\n" per
  // attribute, then the empty line that ends the request.
  std::string Encode() const;
};

class PolicyClient {
 public:
  // Connects to host:port (an IPv4 literal); ok() says whether that worked.
  PolicyClient(const std::string& host, int port, absl::Duration timeout = absl::Seconds(30));
  ~PolicyClient();
  PolicyClient(const PolicyClient&) = delete;
  PolicyClient& operator=(const PolicyClient&) = delete;

  bool ok() const { return fd_ >= 0; }

  // Sends one encoded request block and returns the value of its `action=` line
  // ("DUNNO", "DEFER_IF_PERMIT Greylisted", ...). Returns "" and closes the
  // connection when the server closes it, times out, or answers without an action
  // (the protocol's "send nothing" on an internal error).
  std::string Ask(absl::string_view encoded_request);
  std::string Ask(const PolicyRequest& request) { return Ask(request.Encode()); }

  // The whole last reply, every line with its LF ("action=DUNNO\n\n").
  const std::string& last_reply() const { return last_reply_; }

 private:
  void Close();

  int fd_ = -1;
  std::string buffer_;  // bytes read past the last reply
  std::string last_reply_;
};

// The first word of an action ("DEFER_IF_PERMIT Greylisted" -> "DEFER_IF_PERMIT"),
// upper-cased, as access(5) reads it; "" for "".
std::string ActionWord(absl::string_view action);

}  // namespace sagator::harness

#endif  // SAGATOR_TESTS_HARNESS_POLICY_CLIENT_H_
