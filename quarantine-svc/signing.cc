#include "quarantine-svc/signing.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sagator::quarantine {
namespace {

constexpr size_t kKeyBytes = crypto_auth_hmacsha256_KEYBYTES;

void InitSodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) abort();  // no usable random source: nothing is safe
  });
}

}  // namespace

std::string Base64Url(absl::string_view data) { return absl::WebSafeBase64Escape(data); }

bool FromBase64Url(absl::string_view text, std::string* data) {
  return absl::WebSafeBase64Unescape(text, data);
}

absl::StatusOr<Signer> Signer::FromKeyFile(const std::string& path) {
  InitSodium();
  std::string key(kKeyBytes, '\0');
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    randombytes_buf(key.data(), key.size());
    std::string tmp = absl::StrCat(path, ".tmp", getpid());
    int out = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
      return absl::UnavailableError(absl::StrCat("cannot create ", tmp, ": ", strerror(errno)));
    }
    bool ok = write(out, key.data(), key.size()) == static_cast<ssize_t>(key.size()) &&
              fsync(out) == 0;
    close(out);
    // link() fails when another process created the key first: then use that one.
    if (!ok || (link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST)) {
      unlink(tmp.c_str());
      return absl::UnavailableError(absl::StrCat("cannot write ", path, ": ", strerror(errno)));
    }
    unlink(tmp.c_str());
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot read ", path, ": ", strerror(errno)));
  }
  ssize_t n = read(fd, key.data(), key.size());
  char extra;
  bool longer = read(fd, &extra, 1) == 1;
  close(fd);
  if (n != static_cast<ssize_t>(kKeyBytes) || longer) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": not a key (", kKeyBytes, " bytes expected)"));
  }
  return Signer(std::move(key));
}

Signer::Signer(std::string key) : key_(std::move(key)) { InitSodium(); }

std::string Signer::Mac(absl::string_view payload) const {
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key_.data()),
                              key_.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(payload.data()),
                                payload.size());
  crypto_auth_hmacsha256_final(&st, mac);
  return std::string(reinterpret_cast<const char*>(mac), sizeof mac);
}

std::string Signer::Sign(absl::string_view payload) const {
  return absl::StrCat(Base64Url(payload), ".", Base64Url(Mac(payload)));
}

absl::StatusOr<std::string> Signer::Verify(absl::string_view token) const {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(token, absl::MaxSplits('.', 1));
  std::string payload, mac;
  if (!FromBase64Url(parts.first, &payload) || !FromBase64Url(parts.second, &mac) ||
      mac.size() != crypto_auth_hmacsha256_BYTES) {
    return absl::PermissionDeniedError("malformed token");
  }
  std::string want = Mac(payload);
  if (sodium_memcmp(want.data(), mac.data(), want.size()) != 0) {
    return absl::PermissionDeniedError("bad signature");
  }
  return payload;
}

std::string SignReleaseLink(const Signer& signer, const ReleaseLink& link) {
  return signer.Sign(absl::StrCat("release\n", link.id, "\n", link.recipient, "\n",
                                  absl::ToUnixSeconds(link.expires)));
}

absl::StatusOr<ReleaseLink> VerifyReleaseLink(const Signer& signer, absl::string_view token,
                                              absl::Time now) {
  absl::StatusOr<std::string> payload = signer.Verify(token);
  if (!payload.ok()) return payload.status();
  std::vector<std::string> f = absl::StrSplit(*payload, '\n');
  int64_t expires = 0;
  if (f.size() != 4 || f[0] != "release" || !absl::SimpleAtoi(f[3], &expires)) {
    return absl::PermissionDeniedError("not a release link");
  }
  ReleaseLink link{f[1], f[2], absl::FromUnixSeconds(expires)};
  if (now >= link.expires) return absl::DeadlineExceededError("the release link has expired");
  return link;
}

absl::StatusOr<std::string> HashPassword(absl::string_view password) {
  InitSodium();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(out, password.data(), password.size(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                        crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
    return absl::ResourceExhaustedError("out of memory while hashing the password");
  }
  return std::string(out);
}

bool VerifyPassword(absl::string_view hash, absl::string_view password) {
  InitSodium();
  std::string h(hash);  // needs a NUL-terminated string
  return crypto_pwhash_str_verify(h.c_str(), password.data(), password.size()) == 0;
}

}  // namespace sagator::quarantine
