#include "common/request_log.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"

namespace sagator {
namespace {

using ::testing::MatchesRegex;

// A temporary file standing in for stderr.
class RequestLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fp_ = tmpfile();
    ASSERT_NE(fp_, nullptr);
  }
  void TearDown() override {
    if (fp_ != nullptr) fclose(fp_);
    FLAGS_minloglevel = 0;
  }
  int fd() const { return fileno(fp_); }
  std::string Written() const {
    std::string out;
    char buf[4096];
    for (off_t off = 0;;) {
      ssize_t n = pread(fileno(fp_), buf, sizeof buf, off);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
      off += n;
    }
    return out;
  }
  FILE* fp_ = nullptr;
};

TEST_F(RequestLogTest, WritesGlogFormattedLinesOnlyWhenFlushed) {
  RequestLog log(fd());
  EXPECT_TRUE(log.Line("services/x/server.cc", 42, "request conn=%d action=%s", 7, "DUNNO"));
  EXPECT_FALSE(log.Line("server.cc", 43, "second %s", "line"));
  EXPECT_EQ(Written(), "");
  EXPECT_GT(log.buffered(), 0u);
  log.Flush();
  EXPECT_EQ(log.buffered(), 0u);
  std::vector<std::string> lines = absl::StrSplit(Written(), '\n');
  ASSERT_EQ(lines.size(), 3u);  // two lines and the empty rest after the last LF
  // glog's prefix: I<yyyymmdd> <hh:mm:ss.uuuuuu> <tid, width 5> <file base>:<line>]
  EXPECT_THAT(lines[0], MatchesRegex("I[0-9]{8} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6} +[0-9]+ "
                                     "server\\.cc:42\\] request conn=7 action=DUNNO"));
  EXPECT_THAT(lines[1], MatchesRegex("I[0-9]{8} .* server\\.cc:43\\] second line"));
  EXPECT_EQ(lines[2], "");
  // The next line after a flush asks for a flush again.
  EXPECT_TRUE(log.Line("server.cc", 44, "third"));
}

TEST_F(RequestLogTest, AFullBufferIsWrittenAtOnceAndTheRestAtDestruction) {
  const std::string filler(1000, 'x');
  size_t lines = 0;
  {
    RequestLog log(fd());
    while (Written().empty()) {
      log.Line("f.cc", 1, "%s", filler);
      ++lines;
      ASSERT_LT(lines, 1000u) << "the buffer was never written";
    }
    // Written when it passed kFlushBytes, not before.
    EXPECT_GE(Written().size(), RequestLog::kFlushBytes);
    EXPECT_LT(Written().size(), RequestLog::kFlushBytes + 2 * filler.size());
    log.Line("f.cc", 2, "last");
  }
  std::vector<std::string> all = absl::StrSplit(Written(), '\n', absl::SkipEmpty());
  ASSERT_EQ(all.size(), lines + 1);
  EXPECT_THAT(all.back(), MatchesRegex(".* f\\.cc:2\\] last"));
}

TEST_F(RequestLogTest, MinLogLevelAboveInfoDropsTheLines) {
  FLAGS_minloglevel = google::GLOG_WARNING;
  RequestLog log(fd());
  EXPECT_FALSE(log.Line("f.cc", 1, "hidden"));
  EXPECT_EQ(log.buffered(), 0u);
  log.Flush();
  EXPECT_EQ(Written(), "");
}

TEST_F(RequestLogTest, AClosedDescriptorDropsTheLinesWithoutBlocking) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);  // no reader: write() fails with EPIPE
  signal(SIGPIPE, SIG_IGN);
  RequestLog log(fds[1]);
  log.Line("f.cc", 1, "lost");
  log.Flush();
  EXPECT_EQ(log.buffered(), 0u);
  close(fds[1]);
}

}  // namespace
}  // namespace sagator
