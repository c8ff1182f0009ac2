// Secrets for webq and the reporter, on libsodium: HMAC-SHA-256 signed tokens (login
// sessions, CSRF tokens, one-click release links) and Argon2id password hashes.
//
//   auto signer = Signer::FromKeyFile("run/webq.key");      // created when missing
//   std::string token = signer->Sign("payload");             // URL- and cookie-safe
//   absl::StatusOr<std::string> payload = signer->Verify(token);
//
// Tokens are base64url(payload) "." base64url(MAC); Verify compares MACs in constant
// time and never returns a payload it did not sign. Expiry lives in the payloads
// (see ReleaseLink). Thread-safe: the key is immutable.
#ifndef SAGATOR_QUARANTINE_SVC_SIGNING_H_
#define SAGATOR_QUARANTINE_SVC_SIGNING_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sagator::quarantine {

class Signer {
 public:
  // Reads the 32-byte key from `path`, or creates the file (mode 0600, random bytes)
  // when it does not exist. A file of another size is an error.
  static absl::StatusOr<Signer> FromKeyFile(const std::string& path);
  // `key` must be 32 bytes.
  explicit Signer(std::string key);

  std::string Sign(absl::string_view payload) const;
  // The payload of a token this key signed; PermissionDenied otherwise.
  absl::StatusOr<std::string> Verify(absl::string_view token) const;

 private:
  std::string Mac(absl::string_view payload) const;
  std::string key_;
};

// A one-click release link's content: release entry `id` to `recipient`, until
// `expires`.
struct ReleaseLink {
  std::string id;
  std::string recipient;
  absl::Time expires;
};

std::string SignReleaseLink(const Signer& signer, const ReleaseLink& link);
// PermissionDenied for a forged or damaged token, DeadlineExceeded once expired.
absl::StatusOr<ReleaseLink> VerifyReleaseLink(const Signer& signer, absl::string_view token,
                                              absl::Time now);

// libsodium's crypto_pwhash_str (Argon2id, interactive limits).
absl::StatusOr<std::string> HashPassword(absl::string_view password);
// True when `password` matches `hash` (crypto_pwhash_str_verify).
bool VerifyPassword(absl::string_view hash, absl::string_view password);

// URL-safe base64 without padding (tokens in links and cookies).
std::string Base64Url(absl::string_view data);
bool FromBase64Url(absl::string_view text, std::string* data);

}  // namespace sagator::quarantine

#endif  // SAGATOR_QUARANTINE_SVC_SIGNING_H_
