#include "common/mail_headers.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace sagator {
namespace {

using common::v1::HeaderEdit;

constexpr size_t kFoldWidth = 78;
constexpr size_t kMaxNameLength = 200;

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// One field of the header as it will be written: either a slice of the original
// message (kept byte for byte) or newly rendered text.
struct Field {
  absl::string_view original;
  std::string rendered;
  bool is_rendered = false;
  // Length of the name at the start of text(); 0 when the line has none (e.g. an
  // mbox "From " line or garbage): such lines are kept and never match an edit. A
  // length rather than a view, because moving a short std::string moves its bytes.
  size_t name_size = 0;

  absl::string_view text() const { return is_rendered ? absl::string_view(rendered) : original; }
  absl::string_view name() const { return text().substr(0, name_size); }
};

// The name of a field line: the text before the colon, without trailing whitespace
// (RFC 5322's obsolete "Name : value" form); empty when it has no valid name.
absl::string_view FieldName(absl::string_view line) {
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return {};
  absl::string_view name = line.substr(0, colon);
  while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
  return IsValidHeaderName(name) ? name : absl::string_view();
}

// Splits the header (header_size bytes) into fields with their continuation lines.
std::vector<Field> SplitFields(absl::string_view header) {
  std::vector<Field> fields;
  size_t pos = 0;
  while (pos < header.size()) {
    size_t nl = header.find('\n', pos);
    size_t end = nl == absl::string_view::npos ? header.size() : nl + 1;
    absl::string_view line = header.substr(pos, end - pos);
    if (!fields.empty() && IsWsp(line.front()) && !fields.back().is_rendered) {
      // A continuation line: extend the previous field's slice.
      Field& prev = fields.back();
      prev.original = absl::string_view(prev.original.data(), prev.original.size() + line.size());
    } else {
      Field f;
      f.original = line;
      f.name_size = FieldName(line).size();
      fields.push_back(std::move(f));
    }
    pos = end;
  }
  return fields;
}

std::string SanitizeValue(absl::string_view value) {
  std::string out(value);
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) c = ' ';
  }
  return out;
}

template <typename Edits>
std::string ApplyEdits(absl::string_view message, const Edits& edits) {
  HeaderBounds bounds = FindHeaderBounds(message);
  absl::string_view eol = DetectLineEnding(message);
  std::vector<Field> fields = SplitFields(message.substr(0, bounds.header_size));
  // Fields added so far sit at the top; the next one goes after them.
  size_t added = 0;
  auto add_field = [&](const HeaderEdit& edit) {
    Field f;
    f.rendered = FormatHeaderField(edit.name(), edit.value(), eol);
    f.is_rendered = true;
    f.name_size = FieldName(f.rendered).size();
    fields.insert(fields.begin() + added, std::move(f));
    ++added;
  };
  for (const HeaderEdit& edit : edits) {
    if (!IsValidHeaderName(edit.name())) continue;
    switch (edit.kind()) {
      case HeaderEdit::ADD:
        add_field(edit);
        break;
      case HeaderEdit::REPLACE: {
        bool found = false;
        for (Field& f : fields) {
          if (!absl::EqualsIgnoreCase(f.name(), edit.name())) continue;
          f.rendered = FormatHeaderField(edit.name(), edit.value(), eol);
          f.is_rendered = true;
          f.name_size = FieldName(f.rendered).size();
          found = true;
        }
        if (!found) add_field(edit);
        break;
      }
      case HeaderEdit::REMOVE: {
        std::vector<Field> kept;
        kept.reserve(fields.size());
        size_t removed_added = 0;
        for (size_t i = 0; i < fields.size(); ++i) {
          if (absl::EqualsIgnoreCase(fields[i].name(), edit.name())) {
            if (i < added) ++removed_added;
            continue;
          }
          kept.push_back(std::move(fields[i]));
        }
        fields = std::move(kept);
        added -= removed_added;
        break;
      }
      default:
        break;
    }
  }

  size_t total = message.size() - bounds.header_size;
  for (const Field& f : fields) total += f.text().size() + eol.size();
  std::string out;
  out.reserve(total);
  for (const Field& f : fields) {
    absl::string_view t = f.text();
    out.append(t.data(), t.size());
    // The last original line may lack a line end when the message has no body.
    if (!t.empty() && t.back() != '\n') out.append(eol.data(), eol.size());
  }
  absl::string_view rest = message.substr(bounds.header_size);
  out.append(rest.data(), rest.size());
  return out;
}

}  // namespace

HeaderBounds FindHeaderBounds(absl::string_view message) {
  HeaderBounds b;
  size_t pos = 0;
  while (pos < message.size()) {
    // An empty line at pos?
    if (message[pos] == '\n') {
      b.header_size = pos;
      b.body_offset = pos + 1;
      b.has_separator = true;
      return b;
    }
    if (message[pos] == '\r' && pos + 1 < message.size() && message[pos + 1] == '\n') {
      b.header_size = pos;
      b.body_offset = pos + 2;
      b.has_separator = true;
      return b;
    }
    size_t nl = message.find('\n', pos);
    if (nl == absl::string_view::npos) break;
    pos = nl + 1;
  }
  b.header_size = message.size();
  b.body_offset = message.size();
  b.has_separator = false;
  return b;
}

absl::string_view DetectLineEnding(absl::string_view message) {
  size_t nl = message.find('\n');
  if (nl != absl::string_view::npos && nl > 0 && message[nl - 1] == '\r') return "\r\n";
  return "\n";
}

bool IsValidHeaderName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 32 || u >= 127 || c == ':') return false;
  }
  return true;
}

std::string FormatHeaderField(absl::string_view name, absl::string_view raw_value,
                              absl::string_view eol) {
  std::string value = SanitizeValue(raw_value);
  // Leading and trailing whitespace would make empty continuation lines.
  absl::string_view v = absl::StripAsciiWhitespace(value);
  std::string out = absl::StrCat(name, ":");
  if (v.empty()) {
    absl::StrAppend(&out, eol);
    return out;
  }
  out.push_back(' ');
  size_t line_len = out.size();
  size_t pos = 0;
  while (pos < v.size()) {
    // The next word: optional whitespace run, then non-whitespace.
    size_t word_end = pos;
    while (word_end < v.size() && IsWsp(v[word_end])) ++word_end;
    while (word_end < v.size() && !IsWsp(v[word_end])) ++word_end;
    absl::string_view word = v.substr(pos, word_end - pos);
    // Fold before the word's whitespace when it would overflow, unless the line holds
    // nothing else yet (a word longer than the width stays whole).
    bool starts_with_space = !word.empty() && IsWsp(word.front());
    if (starts_with_space && line_len + word.size() > kFoldWidth && line_len > 1) {
      absl::StrAppend(&out, eol);
      line_len = 0;
    }
    out.append(word.data(), word.size());
    line_len += word.size();
    pos = word_end;
  }
  absl::StrAppend(&out, eol);
  return out;
}

std::string ApplyHeaderEdits(absl::string_view message, const std::vector<HeaderEdit>& edits) {
  return ApplyEdits(message, edits);
}

std::string ApplyHeaderEdits(absl::string_view message,
                             const google::protobuf::RepeatedPtrField<HeaderEdit>& edits) {
  return ApplyEdits(message, edits);
}

bool FindHeaderValue(absl::string_view message, absl::string_view name, std::string* value) {
  HeaderBounds bounds = FindHeaderBounds(message);
  for (const Field& f : SplitFields(message.substr(0, bounds.header_size))) {
    if (!absl::EqualsIgnoreCase(f.name(), name)) continue;
    absl::string_view rest = f.original.substr(f.original.find(':') + 1);
    std::string unfolded;
    unfolded.reserve(rest.size());
    for (char c : rest) {
      if (c != '\r' && c != '\n') unfolded.push_back(c);
    }
    *value = std::string(absl::StripAsciiWhitespace(unfolded));
    return true;
  }
  return false;
}

std::string ExpandVariables(absl::string_view tmpl,
                            const std::map<std::string, std::string>& vars) {
  std::string out;
  size_t i = 0;
  while (i < tmpl.size()) {
    if (tmpl.compare(i, 2, "%(") == 0) {
      size_t close = tmpl.find(")s", i + 2);
      if (close != absl::string_view::npos) {
        auto it = vars.find(std::string(tmpl.substr(i + 2, close - i - 2)));
        if (it != vars.end()) {
          out += it->second;
          i = close + 2;
          continue;
        }
      }
    }
    out.push_back(tmpl[i++]);
  }
  return out;
}

std::string UnfoldLine(absl::string_view v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '\r' && v[i] != '\n') {
      out.push_back(v[i]);
      continue;
    }
    while (i + 1 < v.size() && (v[i + 1] == '\r' || v[i + 1] == '\n' || v[i + 1] == ' ' ||
                                v[i + 1] == '\t')) {
      ++i;
    }
    out.push_back(' ');
  }
  return out;
}

std::string Rfc2822Date(absl::Time t) {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", t, absl::UTCTimeZone());
}

std::string CrlfLines(absl::string_view text) {
  std::string lf = absl::StrReplaceAll(text, {{"\r\n", "\n"}});
  return absl::StrReplaceAll(lf, {{"\n", "\r\n"}});
}

}  // namespace sagator
