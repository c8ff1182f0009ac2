#include "scanner-svc/scanners/parsemail.h"

#include <gmime/gmime.h>

#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sagator::scanners {
namespace {

using engine::PartInfo;
using engine::ScanContext;
using engine::ScanResult;

// GObject references released at scope exit.
struct Unref {
  void operator()(gpointer p) const {
    if (p != nullptr) g_object_unref(p);
  }
};
template <typename T>
using Ref = std::unique_ptr<T, Unref>;

// One walk over one message.
class Walker {
 public:
  Walker(const engine::Scanner& inner, ScanContext& ctx, int max_parts, int max_depth)
      : inner_(inner), ctx_(ctx), max_parts_(max_parts), max_depth_(max_depth) {}

  // Returns the first detection, an error, or nullopt (clean so far).
  absl::StatusOr<std::optional<ScanResult>> Walk(GMimeObject* obj, int depth) {
    if (obj == nullptr) return std::nullopt;
    if (depth > max_depth_) {
      not_scanned_ = absl::StrCat("MIME nesting deeper than ", max_depth_);
      return std::nullopt;
    }
    if (GMIME_IS_MULTIPART(obj)) {
      GMimeMultipart* mp = GMIME_MULTIPART(obj);
      int n = g_mime_multipart_get_count(mp);
      for (int i = 0; i < n; ++i) {
        auto r = Walk(g_mime_multipart_get_part(mp, i), depth);
        if (!r.ok() || r->has_value()) return r;
      }
      return std::nullopt;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
      GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
      if (inner == nullptr) return std::nullopt;
      return Walk(g_mime_message_get_mime_part(inner), depth + 1);
    }
    if (!GMIME_IS_PART(obj)) return std::nullopt;
    if (++parts_ > max_parts_) {
      not_scanned_ = absl::StrCat("more than ", max_parts_, " MIME parts");
      return std::nullopt;
    }
    if (absl::Status alive = ctx_.CheckAlive(); !alive.ok()) return alive;
    GMimePart* part = GMIME_PART(obj);
    PartInfo info;
    info.depth = depth;
    if (const char* f = g_mime_part_get_filename(part)) info.filename = f;
    if (GMimeContentType* ct = g_mime_object_get_content_type(obj)) {
      if (char* t = g_mime_content_type_get_mime_type(ct)) {
        info.content_type = t;
        g_free(t);
      }
    }
    // The decoded content (transfer encoding undone), in memory.
    Ref<GMimeStream> out(g_mime_stream_mem_new());
    if (GMimeDataWrapper* content = g_mime_part_get_content(part)) {
      g_mime_data_wrapper_write_to_stream(content, out.get());
    }
    GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out.get()));
    absl::string_view data(reinterpret_cast<const char*>(bytes->data), bytes->len);
    return engine::ScanPart(inner_, ctx_, data, std::move(info), /*show_name=*/true,
                            &not_scanned_, "a part was not scanned");
  }

  const std::string& not_scanned() const { return not_scanned_; }

 private:
  const engine::Scanner& inner_;
  ScanContext& ctx_;
  const int max_parts_;
  const int max_depth_;
  int parts_ = 0;
  std::string not_scanned_;
};

}  // namespace

Parsemail::Parsemail(engine::ScannerPtr inner, int max_parts, int max_depth)
    : inner_(std::move(inner)), max_parts_(max_parts), max_depth_(max_depth) {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

std::string Parsemail::Describe() const { return absl::StrCat("parsemail(", inner_->Describe(), ")"); }

absl::StatusOr<ScanResult> Parsemail::Scan(ScanContext& ctx) const {
  absl::string_view message = ctx.message();
  // The stream reads the caller's buffer; GMime copies nothing up front.
  Ref<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(message.data(), message.size()));
  Ref<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
  Ref<GMimeMessage> parsed(g_mime_parser_construct_message(parser.get(), nullptr));
  absl::StatusOr<ScanResult> result;
  if (parsed == nullptr || g_mime_message_get_mime_part(parsed.get()) == nullptr) {
    // Not MIME at all: the inner scanners get the message as it is.
    result = inner_->Scan(ctx);
  } else {
    Walker walker(*inner_, ctx, max_parts_, max_depth_);
    absl::StatusOr<std::optional<ScanResult>> found =
        walker.Walk(g_mime_message_get_mime_part(parsed.get()), 1);
    if (!found.ok()) return found.status();
    if (found->has_value()) {
      result = **std::move(found);
    } else if (!walker.not_scanned().empty()) {
      ScanResult r = ScanResult::Clean(Describe());
      r.not_scanned = true;
      r.name = absl::StrCat("not scanned: ", walker.not_scanned());
      return r;
    } else {
      return ScanResult::Clean(Describe());
    }
  }
  if (result.ok() && result->detected()) result->path = absl::StrCat("parsemail(", result->path, ")");
  return result;
}

}  // namespace sagator::scanners
