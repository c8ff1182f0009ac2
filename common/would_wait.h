// "Would wait": the answer of code asked to decide without waiting (on an event
// loop's thread) when deciding needs something that can block: a database query, a
// network peer, a lock held by a thread that waits on one of those. The caller then
// asks again where waiting is fine (a worker thread). It is never an error to show
// to a client.
//
//   absl::StatusOr<Answer> a = store.Lookup(key, Access::kMemoryOnly);
//   if (!a.ok() && IsWouldWait(a.status())) ... hand the work to a pool ...
#ifndef SAGATOR_COMMON_WOULD_WAIT_H_
#define SAGATOR_COMMON_WOULD_WAIT_H_

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sagator {

inline constexpr absl::string_view kWouldWaitPayload = "sagator/would-wait";

// UNAVAILABLE, marked so IsWouldWait tells it from a real outage.
inline absl::Status WouldWaitError(absl::string_view why) {
  absl::Status s(absl::StatusCode::kUnavailable, absl::StrCat("would wait: ", why));
  s.SetPayload(kWouldWaitPayload, absl::Cord());
  return s;
}

inline bool IsWouldWait(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable && s.GetPayload(kWouldWaitPayload).has_value();
}

}  // namespace sagator

#endif  // SAGATOR_COMMON_WOULD_WAIT_H_
