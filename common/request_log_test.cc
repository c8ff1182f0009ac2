#include "common/request_log.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
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

// Every write() carries whole lines and at most PIPE_BUF bytes (a longer line
// alone), so a pipe never interleaves them with other writers' lines. A
// SOCK_SEQPACKET pair keeps each write() a message of its own.
TEST_F(RequestLogTest, WritesWholeLinesAtMostPipeBufAtATime) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  std::string expected_tail;
  {
    RequestLog log(sv[0]);
    for (int i = 0; i < 60; ++i) log.Line("f.cc", i, "%s", std::string(150, 'a' + i % 26));
    log.Line("f.cc", 99, "%s", std::string(PIPE_BUF + 500, 'L'));  // longer than PIPE_BUF
    log.Line("f.cc", 100, "last");
    ASSERT_LT(log.buffered(), RequestLog::kFlushBytes);
    log.Flush();
  }
  close(sv[0]);
  std::vector<std::string> writes;
  std::string all;
  for (;;) {
    std::string msg(2 * PIPE_BUF + 1000, '\0');
    ssize_t n = recv(sv[1], msg.data(), msg.size(), 0);
    if (n <= 0) break;
    msg.resize(static_cast<size_t>(n));
    writes.push_back(msg);
    all += msg;
  }
  close(sv[1]);
  ASSERT_GE(writes.size(), 4u);
  for (const std::string& w : writes) {
    EXPECT_EQ(w.back(), '\n');
    const bool long_line = w.find(std::string(PIPE_BUF, 'L')) != std::string::npos;
    if (long_line) {
      EXPECT_EQ(std::count(w.begin(), w.end(), '\n'), 1) << "the long line goes alone";
    } else {
      EXPECT_LE(w.size(), static_cast<size_t>(PIPE_BUF));
    }
  }
  std::vector<std::string> lines = absl::StrSplit(all, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 62u);
  EXPECT_THAT(lines[0], MatchesRegex(".* f\\.cc:0\\] a{150}"));
  EXPECT_THAT(lines[61], MatchesRegex(".* f\\.cc:100\\] last"));
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
