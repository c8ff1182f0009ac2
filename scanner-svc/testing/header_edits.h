// For tests that check the header edits of a verdict: one edit of a header as text,
// "add:VALUE", "replace:VALUE" or "remove", or "" when there is none.
#ifndef SAGATOR_SCANNER_SVC_TESTING_HEADER_EDITS_H_
#define SAGATOR_SCANNER_SVC_TESTING_HEADER_EDITS_H_

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "scanner-svc/engine/scanner.h"

namespace sagator::testing {

enum class Which { kFirst, kLast };

// The first (or last: a header removed before it is added) edit of header `name`.
inline std::string EditOf(const std::vector<engine::HeaderEdit>& edits, const std::string& name,
                          Which which = Which::kFirst) {
  const engine::HeaderEdit* found = nullptr;
  for (const engine::HeaderEdit& e : edits) {
    if (e.name != name) continue;
    found = &e;
    if (which == Which::kFirst) break;
  }
  if (found == nullptr) return "";
  switch (found->kind) {
    case engine::HeaderEdit::Kind::kRemove: return "remove";
    case engine::HeaderEdit::Kind::kReplace: return absl::StrCat("replace:", found->value);
    default: return absl::StrCat("add:", found->value);
  }
}

}  // namespace sagator::testing

#endif  // SAGATOR_SCANNER_SVC_TESTING_HEADER_EDITS_H_
