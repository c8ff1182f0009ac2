#include "tests/testdata/corpus.h"

#include <archive.h>
#include <archive_entry.h>

#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace sagator::corpus {
namespace {

la_ssize_t Append(archive*, void* out, const void* buf, size_t n) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

void Check(int rc, archive* a, const char* what) {
  if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
    // A corpus that cannot be made is a broken test set-up: stop loudly.
    fprintf(stderr, "corpus: %s: %s\n", what, archive_error_string(a));
    abort();
  }
}

std::string Write(const std::vector<Member>& members, const std::string& format,
                  const std::string& filter) {
  std::string out;
  archive* a = archive_write_new();
  Check(archive_write_set_format_by_name(a, format.c_str()), a, "format");
  if (filter != "none") Check(archive_write_add_filter_by_name(a, filter.c_str()), a, "filter");
  // Small archives would be padded to 10 KiB blocks otherwise.
  archive_write_set_bytes_in_last_block(a, 1);
  Check(archive_write_open(a, &out, nullptr, Append, nullptr), a, "open");
  for (const Member& m : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_size(e, static_cast<la_int64_t>(m.data.size()));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    Check(archive_write_header(a, e), a, "header");
    if (!m.data.empty()) archive_write_data(a, m.data.data(), m.data.size());
    archive_entry_free(e);
  }
  Check(archive_write_close(a), a, "close");
  archive_write_free(a);
  return out;
}

std::string Base64Lines(const std::string& data) {
  std::string b64 = absl::Base64Escape(data);
  std::string out;
  for (size_t i = 0; i < b64.size(); i += 76) absl::StrAppend(&out, b64.substr(i, 76), "\r\n");
  return out;
}

}  // namespace

std::string Archive(const std::vector<Member>& members, const std::string& format,
                    const std::string& filter) {
  return Write(members, format, filter);
}

std::string Compressed(const std::string& data, const std::string& filter) {
  return Write({{"data", data}}, "raw", filter);
}

std::string ZipBomb(int levels, int copies, int64_t leaf_bytes) {
  std::vector<Member> leaves;
  std::string zeros(static_cast<size_t>(leaf_bytes), '\0');
  for (int i = 0; i < copies; ++i) leaves.push_back({absl::StrCat("zeros-", i, ".bin"), zeros});
  std::string level = Archive(leaves, "zip");
  for (int l = 1; l < levels; ++l) {
    std::vector<Member> zips;
    for (int i = 0; i < copies; ++i) zips.push_back({absl::StrCat("level", l, "-", i, ".zip"), level});
    level = Archive(zips, "zip");
  }
  return level;
}

std::string NestedZip(const std::string& name, const std::string& data, int depth) {
  std::string inner = Archive({{name, data}}, "zip");
  for (int d = 2; d <= depth; ++d) inner = Archive({{absl::StrCat("inner-", d - 1, ".zip"), inner}}, "zip");
  return inner;
}

std::string MimeAttachment(const std::string& filename, const std::string& content_type,
                           const std::string& data, bool alternative) {
  std::string attachment = absl::StrCat(
      "Content-Type: ", content_type, "; name=\"", filename, "\"\r\n",
      "Content-Transfer-Encoding: base64\r\n",
      "Content-Disposition: attachment; filename=\"", filename, "\"\r\n\r\n",
      Base64Lines(data));
  std::string head =
      "From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: corpus\r\n"
      "MIME-Version: 1.0\r\n";
  if (alternative) {
    return absl::StrCat(head, "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n",
                        "--alt\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n",
                        "--alt\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n",
                        "--rel\r\nContent-Type: text/html\r\n\r\n<p>See the attachment.</p>\r\n",
                        "--rel\r\n", attachment, "--rel--\r\n--alt--\r\n");
  }
  return absl::StrCat(head, "Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n",
                      "--mix\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n",
                      "--mix\r\n", attachment, "--mix--\r\n");
}

std::string Uuencoded(const std::string& filename, const std::string& data) {
  std::string out = absl::StrCat(
      "From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: uu\r\n\r\n"
      "Here it is:\r\n\r\nbegin 644 ", filename, "\r\n");
  auto enc = [](unsigned v) { return static_cast<char>(v == 0 ? '`' : v + 32); };
  for (size_t i = 0; i < data.size(); i += 45) {
    std::string chunk = data.substr(i, 45);
    out.push_back(enc(static_cast<unsigned>(chunk.size())));
    while (chunk.size() % 3 != 0) chunk.push_back('\0');
    for (size_t k = 0; k < chunk.size(); k += 3) {
      unsigned b0 = static_cast<unsigned char>(chunk[k]);
      unsigned b1 = static_cast<unsigned char>(chunk[k + 1]);
      unsigned b2 = static_cast<unsigned char>(chunk[k + 2]);
      out.push_back(enc(b0 >> 2));
      out.push_back(enc(((b0 << 4) | (b1 >> 4)) & 63));
      out.push_back(enc(((b1 << 2) | (b2 >> 6)) & 63));
      out.push_back(enc(b2 & 63));
    }
    out += "\r\n";
  }
  return out + "`\r\nend\r\n";
}

std::string BrokenBoundaries(const std::string& data) {
  return absl::StrCat(
      "From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: broken\r\n"
      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n",
      "--b1\r\nContent-Type: text/plain\r\n\r\nfirst\r\n",
      "--b1-misspelled\r\nContent-Type: text/plain\r\n\r\nsecond\r\n",
      "--b1\r\nContent-Type: application/octet-stream; name=\"x.bin\"\r\n"
      "Content-Transfer-Encoding: base64\r\n\r\n",
      Base64Lines(data));  // no closing boundary
}

}  // namespace sagator::corpus
