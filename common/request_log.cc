#include "common/request_log.h"

#include <glog/logging.h>
#include <sys/syscall.h>

#include <cerrno>
#include <climits>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sagator {

bool RequestLog::Enabled() { return FLAGS_minloglevel <= google::GLOG_INFO; }

void RequestLog::AppendPrefix(absl::string_view file, int line) {
  const int64_t micros = absl::GetCurrentTimeNanos() / 1000;
  const int64_t second = micros / 1000000;
  if (second != prefix_second_) {
    const time_t t = static_cast<time_t>(second);
    struct tm tm;
    localtime_r(&t, &tm);
    prefix_ = absl::StrFormat("I%04d%02d%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                              tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    prefix_second_ = second;
  }
  if (tid_ == 0) {
    tid_ = static_cast<int>(syscall(SYS_gettid));
    tid_text_ = absl::StrFormat("%5d ", tid_);
  }
  const size_t slash = file.rfind('/');
  if (slash != absl::string_view::npos) file.remove_prefix(slash + 1);
  // ".uuuuuu" by hand: the formatter was a third of a line's cost.
  char us[8] = {'.'};
  for (int i = 6, v = static_cast<int>(micros % 1000000); i >= 1; --i, v /= 10) {
    us[i] = static_cast<char>('0' + v % 10);
  }
  absl::StrAppend(&buffer_, prefix_, absl::string_view(us, 7), " ", tid_text_, file, ":", line,
                  "] ");
}

void RequestLog::Flush() {
  size_t start = 0;
  while (start < buffer_.size()) {
    // Whole lines, at most PIPE_BUF bytes a write (a longer line alone): a pipe or
    // a stream to journald never mixes such a write with other writers' lines.
    size_t end = buffer_.size();
    if (end - start > PIPE_BUF) {
      const size_t cut = buffer_.rfind('\n', start + PIPE_BUF - 1);
      end = cut != std::string::npos && cut >= start ? cut + 1 : buffer_.find('\n', start) + 1;
    }
    while (start < end) {
      ssize_t n = ::write(fd_, buffer_.data() + start, end - start);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {  // nowhere to write: the lines are dropped, as glog would
        start = buffer_.size();
        break;
      }
      start += static_cast<size_t>(n);
    }
  }
  buffer_.clear();
  // A burst can grow the buffer far past what a quiet thread needs.
  if (buffer_.capacity() > 4 * kFlushBytes) buffer_.shrink_to_fit();
}

}  // namespace sagator
