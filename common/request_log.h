// RequestLog: the one INFO line per request that a busy gateway writes (smtpd_policy's
// "request conn=N ... action=..."), in glog's format and to glog's destination
// (stderr, where every SAGATOR service logs), at a fraction of glog's cost. A glog
// INFO line cost smtpd_policy about 16% of its CPU at 20,000 requests/s (a stream
// set up per line, the zone looked up per line, a lock and a write() per line).
//
// Lines are formatted straight into a buffer and written a batch at a time: the
// owner calls Flush before its thread waits for the next events (an event loop
// posts it when Line returns true), and a buffer that reaches kFlushBytes is
// written at once. Each write() carries whole lines, at most PIPE_BUF bytes, so
// lines stay whole on a pipe shared with other threads and processes. A crash may
// lose the lines of the current batch (the requests a thread served since it last
// waited), never a line half-written.
//
//   if (log.Line(__FILE__, __LINE__, "request conn=%d action=%s", id, action)) {
//     asio::post(io, [&log] { log.Flush(); });
//   }
//
// One thread at a time (one RequestLog per event-loop thread).
#ifndef SAGATOR_COMMON_REQUEST_LOG_H_
#define SAGATOR_COMMON_REQUEST_LOG_H_

#include <unistd.h>

#include <cstdint>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace sagator {

class RequestLog {
 public:
  static constexpr size_t kFlushBytes = 64 * 1024;

  explicit RequestLog(int fd = STDERR_FILENO) : fd_(fd) {}
  ~RequestLog() { Flush(); }
  RequestLog(const RequestLog&) = delete;
  RequestLog& operator=(const RequestLog&) = delete;

  // Appends one INFO line from `file`:`line` (glog's prefix: severity, date, time
  // in microseconds, thread id, file base name and line). Returns true when it is
  // the first line since the last Flush (the caller schedules one); nothing is
  // appended, and false returned, when glog's --minloglevel hides INFO.
  template <typename... Args>
  bool Line(absl::string_view file, int line, const absl::FormatSpec<Args...>& format,
            const Args&... args) {
    if (!Enabled()) return false;
    const bool first = buffer_.empty();
    AppendPrefix(file, line);
    absl::StrAppendFormat(&buffer_, format, args...);
    buffer_ += '\n';
    if (buffer_.size() >= kFlushBytes) Flush();
    return first;
  }

  // Writes the buffered lines (whole lines, at most PIPE_BUF bytes a write()).
  void Flush();

  // Lines buffered and not yet written, in bytes.
  size_t buffered() const { return buffer_.size(); }

 private:
  static bool Enabled();
  void AppendPrefix(absl::string_view file, int line);

  const int fd_;
  std::string buffer_;
  // "I20261207 03:33:36" for the second last formatted (local time, as glog).
  int64_t prefix_second_ = -1;
  std::string prefix_;
  int tid_ = 0;
  std::string tid_text_;  // "%5d " of tid_
};

}  // namespace sagator

#endif  // SAGATOR_COMMON_REQUEST_LOG_H_
