// decompress on the generated corpus: every format libarchive writes, nesting, the
// four limits (a 42.zip-style bomb among them), damaged archives, and the corpus
// message (EICAR in a zip in a zip, base64 in multipart/alternative) through the
// real chain parsemail(decompress(libclam)).
#include "scanner-svc/scanners/decompress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "scanner-svc/chain_set.h"
#include "scanner-svc/testing/recording_scanner.h"
#include "tests/harness/test_mail.h"
#include "tests/testdata/corpus.h"

namespace sagator::scanners {
namespace {

using engine::ScanContext;
using engine::ScanResult;
using ::sagator::testing::kEicar;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Outcome {
  absl::StatusOr<ScanResult> result;
  std::vector<std::string> names;
  int64_t bytes = 0;
};

Outcome Unpack(const std::string& data, DecompressLimits limits = {}) {
  auto rec = std::make_unique<testing::RecordingScanner>();
  testing::RecordingScanner* r = rec.get();
  Decompress d(std::move(rec), limits);
  ScanContext ctx(data, {}, absl::Now() + absl::Seconds(60));
  Outcome out{d.Scan(ctx), {}, 0};
  for (const auto& part : r->seen) out.names.push_back(part.filename);
  for (const auto& part_data : r->data) out.bytes += static_cast<int64_t>(part_data.size());
  return out;
}

TEST(Decompress, FindsEicarInEveryFormat) {
  std::vector<corpus::Member> m = {{"readme.txt", "hello"}, {"dir/eicar.com", kEicar}};
  for (const auto& [format, filter] : std::vector<std::pair<std::string, std::string>>{
           {"zip", "none"}, {"7zip", "none"}, {"ustar", "none"}, {"ustar", "gzip"},
           {"pax", "bzip2"}, {"pax", "xz"}, {"cpio", "gzip"}, {"ar", "none"}}) {
    Outcome o = Unpack(corpus::Archive(m, format, filter));
    ASSERT_TRUE(o.result.ok()) << format << "+" << filter << ": " << o.result.status();
    EXPECT_TRUE(o.result->detected()) << format << "+" << filter;
    EXPECT_EQ(o.result->path, "decompress(recorder())");
    EXPECT_THAT(o.result->output, HasSubstr("eicar.com")) << format << "+" << filter;
  }
  for (const std::string filter : {"gzip", "bzip2", "xz"}) {
    Outcome o = Unpack(corpus::Compressed(kEicar, filter));
    ASSERT_TRUE(o.result.ok());
    EXPECT_TRUE(o.result->detected()) << filter;
  }
}

TEST(Decompress, ScansWhatIsNoArchiveAsItIs) {
  Outcome o = Unpack("just some text\r\n");
  ASSERT_TRUE(o.result.ok());
  EXPECT_FALSE(o.result->detected());
  EXPECT_FALSE(o.result->not_scanned);
  EXPECT_EQ(o.bytes, 16);
  EXPECT_TRUE(Unpack(kEicar).result->detected());
  EXPECT_FALSE(Unpack("").result->detected());
  // Text that libarchive's text formats (mtree, WARC) would claim: plain text.
  for (const char* text : {"hello\n", "hello", "x\n", "WARC/1.0\r\n"}) {
    o = Unpack(text);
    ASSERT_TRUE(o.result.ok());
    EXPECT_FALSE(o.result->not_scanned) << text << ": " << o.result->name;
  }
}

TEST(Decompress, OpensNestedArchivesDownToTheDepthLimit) {
  std::string nested = corpus::NestedZip("eicar.com", kEicar, 3);
  Outcome o = Unpack(nested);
  ASSERT_TRUE(o.result.ok());
  ASSERT_TRUE(o.result->detected());
  EXPECT_THAT(o.result->output,
              HasSubstr("(in message/inner-2.zip/inner-1.zip/eicar.com)"));
  Outcome shallow = Unpack(nested, {.max_depth = 2});
  ASSERT_TRUE(shallow.result.ok());
  EXPECT_FALSE(shallow.result->detected());
  EXPECT_TRUE(shallow.result->not_scanned);
  EXPECT_THAT(shallow.result->name, HasSubstr("not scanned: archive limit: nested deeper than 2"));
}

TEST(Decompress, CountsFilesAndSizes) {
  std::vector<corpus::Member> many;
  for (int i = 0; i < 10; ++i) many.push_back({absl::StrCat("f", i), "x"});
  Outcome o = Unpack(corpus::Archive(many, "zip"), {.max_files = 5});
  EXPECT_TRUE(o.result->not_scanned);
  EXPECT_THAT(o.result->name, HasSubstr("more than 5 files"));
  EXPECT_EQ(o.names.size(), 5u);

  // A member over the size limit is skipped; a detection elsewhere still decides.
  std::string big(2 << 20, 'a');
  o = Unpack(corpus::Archive({{"big.bin", big}, {"eicar.com", kEicar}}, "zip"),
             {.max_file_size = 1 << 20});
  ASSERT_TRUE(o.result.ok());
  EXPECT_TRUE(o.result->detected());
  o = Unpack(corpus::Archive({{"big.bin", big}, {"small.txt", "ok"}}, "ustar", "gzip"),
             {.max_file_size = 1 << 20});
  EXPECT_FALSE(o.result->detected());
  EXPECT_TRUE(o.result->not_scanned);  // never "clean"
  EXPECT_THAT(o.result->name, HasSubstr("big.bin is larger than 1048576 bytes"));
}

TEST(Decompress, AZipBombStopsAtTheTotalSize) {
  // 16 x 16 x 16 MiB = 4 GiB unpacked, about 300 KiB packed.
  std::string bomb = corpus::ZipBomb(2, 16, 16 << 20);
  EXPECT_LT(bomb.size(), 1u << 20);
  Outcome o = Unpack(bomb);
  ASSERT_TRUE(o.result.ok());
  EXPECT_TRUE(o.result->not_scanned);
  EXPECT_THAT(o.result->name, HasSubstr("more than 52428800 bytes unpacked"));
  EXPECT_LE(o.bytes, 50 << 20);
  // With limit_detection the bomb is a detection that drop/rename/... can act on.
  o = Unpack(bomb, {.limit_detection = "Heuristics.Limits.Exceeded"});
  ASSERT_TRUE(o.result.ok());
  EXPECT_TRUE(o.result->detected());
  EXPECT_EQ(o.result->name, "Heuristics.Limits.Exceeded");
}

TEST(Decompress, DamagedArchivesAreNeverClean) {
  absl::BitGen gen;
  std::string noise(100000, ' ');
  for (char& c : noise) c = static_cast<char>(absl::Uniform<int>(gen, 0, 256));
  for (const auto& [format, filter] : std::vector<std::pair<std::string, std::string>>{
           {"ustar", "gzip"}, {"zip", "none"}, {"7zip", "none"}}) {
    for (const std::string& payload : {std::string(100000, 'q'), noise}) {
      std::string archive = corpus::Archive({{"a.txt", payload}}, format, filter);
      Outcome o = Unpack(archive.substr(0, archive.size() / 2));
      ASSERT_TRUE(o.result.ok());
      EXPECT_FALSE(o.result->detected());
      EXPECT_TRUE(o.result->not_scanned) << format << "+" << filter << ": " << o.result->name;
    }
  }
}

TEST(Decompress, TheCorpusMessageThroughTheRealChain) {
  auto cfg = LoadConfigString(
      absl::StrCat("chains:\n  c:\n    - parsemail:\n        scanners:\n"
                   "          - decompress:\n              scanners:\n"
                   "                - libclam: {database: [\"",
                   std::getenv("TEST_SRCDIR"), "/sagator/data/clamav\"]}\n"),
      "test.yaml", "/tmp");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  auto chains = ChainSet::Create(*cfg);
  ASSERT_TRUE(chains.ok()) << chains.status();
  auto run = [&](const std::string& message) {
    return (*chains)->Run("c", message, {}, absl::Now() + absl::Seconds(60));
  };
  // EICAR inside a zip inside a zip, in a base64 attachment, inside
  // multipart/alternative.
  auto v = run(corpus::MimeAttachment("docs.zip", "application/zip",
                                      corpus::NestedZip("eicar.com", kEicar, 2), true));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  EXPECT_THAT(v->result.name, HasSubstr("Eicar"));
  EXPECT_EQ(v->result.path, "parsemail(decompress(libclam()))");
  EXPECT_THAT(v->result.output, HasSubstr("inner-1.zip/eicar.com"));
  // A uuencoded attachment, and broken boundaries.
  v = run(corpus::Uuencoded("eicar.zip", corpus::Archive({{"eicar.com", kEicar}}, "zip")));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  v = run(corpus::BrokenBoundaries(corpus::Archive({{"eicar.com", kEicar}}, "7zip")));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::REJECT);
  // The bomb in a mail: not scanned, so the configured not-scanned outcome.
  v = run(corpus::MimeAttachment("42.zip", "application/zip", corpus::ZipBomb(2, 16, 16 << 20)));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::FORCED_PASS);
  EXPECT_TRUE(v->result.not_scanned);
  // Clean mail with a clean archive.
  v = run(corpus::MimeAttachment("docs.zip", "application/zip",
                                 corpus::Archive({{"a.txt", "hello"}}, "zip")));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->outcome, common::v1::PASS);
}

}  // namespace
}  // namespace sagator::scanners
