#include "tests/harness/policy_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace sagator::harness {

std::string PolicyRequest::Encode() const {
  // The order smtpd writes them in (it does not matter to a server).
  const std::pair<const char*, const std::string*> attrs[] = {
      {"protocol_state", &protocol_state},
      {"protocol_name", &protocol_name},
      {"client_address", &client_address},
      {"client_name", &client_name},
      {"client_port", &client_port},
      {"reverse_client_name", &reverse_client_name},
      {"server_address", &server_address},
      {"server_port", &server_port},
      {"helo_name", &helo_name},
      {"sender", &sender},
      {"recipient", &recipient},
      {"recipient_count", &recipient_count},
      {"queue_id", &queue_id},
      {"instance", &instance},
      {"size", &size},
      {"etrn_domain", &etrn_domain},
      {"stress", &stress},
      {"sasl_method", &sasl_method},
      {"sasl_username", &sasl_username},
      {"sasl_sender", &sasl_sender},
      {"ccert_subject", &ccert_subject},
      {"ccert_issuer", &ccert_issuer},
      {"ccert_fingerprint", &ccert_fingerprint},
      {"ccert_pubkey_fingerprint", &ccert_pubkey_fingerprint},
      {"encryption_protocol", &encryption_protocol},
      {"encryption_cipher", &encryption_cipher},
      {"encryption_keysize", &encryption_keysize},
      {"policy_context", &policy_context},
  };
  std::string out = "request=smtpd_access_policy\n";
  out.reserve(768);
  for (const auto& [name, value] : attrs) absl::StrAppend(&out, name, "=", *value, "\n");
  for (const auto& [name, value] : extra) absl::StrAppend(&out, name, "=", value, "\n");
  out += "\n";
  return out;
}

PolicyClient::PolicyClient(const std::string& host, int port, absl::Duration timeout) {
  sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) return;
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) Close();
  if (fd_ < 0) return;
  // One small request and one small reply per exchange: without TCP_NODELAY each
  // exchange can stall on a delayed ACK (about 40 ms).
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv = absl::ToTimeval(timeout);
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

PolicyClient::~PolicyClient() { Close(); }

void PolicyClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

std::string PolicyClient::Ask(absl::string_view encoded_request) {
  last_reply_.clear();
  if (fd_ < 0) return "";
  size_t off = 0;
  while (off < encoded_request.size()) {
    ssize_t n = send(fd_, encoded_request.data() + off, encoded_request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      Close();
      return "";
    }
    off += static_cast<size_t>(n);
  }
  // The reply ends with an empty line.
  size_t end;
  while ((end = buffer_.find("\n\n")) == std::string::npos) {
    char tmp[4096];
    ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      Close();
      return "";
    }
    buffer_.append(tmp, static_cast<size_t>(n));
  }
  last_reply_ = buffer_.substr(0, end + 2);
  buffer_.erase(0, end + 2);
  absl::string_view reply = last_reply_;
  while (!reply.empty()) {
    size_t nl = reply.find('\n');
    absl::string_view line = reply.substr(0, nl);
    reply.remove_prefix(nl == absl::string_view::npos ? reply.size() : nl + 1);
    if (absl::ConsumePrefix(&line, "action=")) return std::string(line);
  }
  Close();
  return "";
}

std::string ActionWord(absl::string_view action) {
  action = absl::StripLeadingAsciiWhitespace(action);
  size_t space = action.find_first_of(" \t");
  return absl::AsciiStrToUpper(action.substr(0, space));
}

}  // namespace sagator::harness
