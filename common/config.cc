#include "common/config.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"

namespace sagator {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// A place in the file where a chain name is used.
struct ChainRef {
  std::string name;
  std::string path;
  YAML::Mark mark;
  // The chain the reference sits in; empty for services.
  std::string inside_chain;
};

bool IsOneofOnly(const Descriptor* d) {
  if (d->field_count() == 0 || d->oneof_decl_count() != 1) return false;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->containing_oneof() != d->oneof_decl(0)) return false;
  }
  return true;
}

bool HasDefaults(const Descriptor* d) {
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->options().HasExtension(config::v1::default_value) ||
        f->options().GetExtension(config::v1::required)) {
      return true;
    }
  }
  return false;
}

// Parses an integer, accepting "_" separators and K/M/G (1024-based) suffixes.
bool ParseInteger(std::string s, int64_t* out) {
  s = absl::StrReplaceAll(absl::AsciiStrToLower(absl::StripAsciiWhitespace(s)),
                          {{"_", ""}});
  int64_t mult = 1;
  for (const auto& [suffix, m] :
       std::vector<std::pair<std::string, int64_t>>{{"kib", 1LL << 10},
                                                    {"mib", 1LL << 20},
                                                    {"gib", 1LL << 30},
                                                    {"kb", 1LL << 10},
                                                    {"mb", 1LL << 20},
                                                    {"gb", 1LL << 30},
                                                    {"k", 1LL << 10},
                                                    {"m", 1LL << 20},
                                                    {"g", 1LL << 30}}) {
    if (s.size() > suffix.size() && absl::EndsWith(s, suffix)) {
      s.resize(s.size() - suffix.size());
      mult = m;
      break;
    }
  }
  int64_t v;
  if (absl::SimpleAtoi(s, &v)) {
    *out = v * mult;
    return true;
  }
  // Scientific notation such as 1e6, when it is a whole number.
  double d;
  if (absl::SimpleAtod(s, &d) && std::isfinite(d) && d == std::floor(d) &&
      std::fabs(d) < 9.2e18) {
    *out = static_cast<int64_t>(d) * mult;
    return true;
  }
  return false;
}

class Converter {
 public:
  explicit Converter(std::string file) : file_(std::move(file)) {}

  absl::Status Error(const YAML::Mark& mark, const std::string& path,
                     absl::string_view what) const {
    std::string where = file_;
    if (mark.line >= 0) {
      absl::StrAppend(&where, ":", mark.line + 1, ":", mark.column + 1);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", path.empty() ? "(top level)" : path, ": ", what));
  }

  absl::Status ConvertMessage(const YAML::Node& node, const YAML::Mark& mark,
                              Message* msg, const std::string& path);

  const std::vector<ChainRef>& refs() const { return refs_; }
  const std::vector<ChainRef>& database_refs() const { return database_refs_; }

 private:
  absl::Status ConvertField(const YAML::Node& node, const YAML::Mark& mark,
                            Message* msg, const FieldDescriptor* f,
                            const std::string& path);
  absl::Status ConvertValue(const YAML::Node& node, const YAML::Mark& mark,
                            Message* msg, const FieldDescriptor* f,
                            const std::string& path, bool repeated);
  absl::Status ApplyDefaults(const YAML::Mark& mark, Message* msg,
                             const std::set<std::string>& seen,
                             const std::string& path);

  std::string file_;
  std::vector<ChainRef> refs_;
  std::vector<ChainRef> database_refs_;
  std::string current_chain_;
};

// The field a YAML key names: its own name or its `alias`.
const FieldDescriptor* FieldForKey(const Descriptor* d, const std::string& key) {
  if (const FieldDescriptor* f = d->FindFieldByName(key)) return f;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->options().GetExtension(config::v1::alias) == key) return d->field(i);
  }
  return nullptr;
}

absl::Status Converter::ConvertMessage(const YAML::Node& in, const YAML::Mark& mark,
                                       Message* msg, const std::string& path) {
  const Descriptor* d = msg->GetDescriptor();
  YAML::Node node = in;
  // A bare list stands for the message's `scanners` list (chains, combinators).
  if (node.IsSequence()) {
    const FieldDescriptor* scanners = d->FindFieldByName("scanners");
    if (scanners == nullptr || !scanners->is_repeated()) {
      return Error(node.Mark(), path, "expected a mapping, not a list");
    }
    std::set<std::string> seen = {"scanners"};
    absl::Status s = ConvertField(node, node.Mark(), msg, scanners, path);
    if (!s.ok()) return s;
    return ApplyDefaults(node.Mark(), msg, seen, path);
  }
  // A bare word names a kind without parameters: "- nothing".
  if (node.IsScalar() && IsOneofOnly(d)) {
    const FieldDescriptor* f = FieldForKey(d, node.Scalar());
    if (f == nullptr) {
      std::vector<std::string> names;
      for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->name());
      return Error(node.Mark(), path,
                   absl::StrCat("unknown kind '", node.Scalar(), "' (known: ",
                                absl::StrJoin(names, ", "), ")"));
    }
    return ConvertField(YAML::Node(YAML::NodeType::Null), node.Mark(), msg, f,
                        absl::StrCat(path, ".", f->name()));
  }
  if (!node.IsDefined() || node.IsNull()) {
    if (IsOneofOnly(d)) {
      return Error(mark, path, "expected one kind, got nothing");
    }
    return ApplyDefaults(mark, msg, {}, path);
  }
  if (!node.IsMap()) {
    return Error(node.Mark(), path, "expected a mapping");
  }
  std::set<std::string> seen;
  const google::protobuf::OneofDescriptor* oneof_set = nullptr;
  std::string oneof_key;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node& key = it->first;
    if (!key.IsScalar()) return Error(key.Mark(), path, "keys must be plain words");
    std::string name = key.Scalar();
    std::string sub = path.empty() ? name : absl::StrCat(path, ".", name);
    const FieldDescriptor* f = FieldForKey(d, name);
    if (f == nullptr) {
      std::vector<std::string> names;
      for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->name());
      return Error(key.Mark(), sub,
                   absl::StrCat("unknown key '", name, "' (allowed here: ",
                                absl::StrJoin(names, ", "), ")"));
    }
    if (!seen.insert(f->name()).second) {
      return Error(key.Mark(), sub, absl::StrCat("duplicate key '", name, "'"));
    }
    if (f->containing_oneof() != nullptr && !f->containing_oneof()->is_synthetic()) {
      if (oneof_set == f->containing_oneof()) {
        return Error(key.Mark(), sub,
                     absl::StrCat("'", name, "' and '", oneof_key,
                                  "' cannot both be given: an entry has one kind"));
      }
      oneof_set = f->containing_oneof();
      oneof_key = name;
    }
    absl::Status s = ConvertField(it->second, key.Mark(), msg, f, sub);
    if (!s.ok()) return s;
  }
  if (d->oneof_decl_count() > 0 && oneof_set == nullptr &&
      !d->oneof_decl(0)->is_synthetic()) {
    std::vector<std::string> names;
    const auto* o = d->oneof_decl(0);
    for (int i = 0; i < o->field_count(); ++i) names.push_back(o->field(i)->name());
    return Error(node.Mark(), path,
                 absl::StrCat("names no kind (one of: ", absl::StrJoin(names, ", "),
                              ")"));
  }
  return ApplyDefaults(node.Mark(), msg, seen, path);
}

absl::Status Converter::ApplyDefaults(const YAML::Mark& mark, Message* msg,
                                      const std::set<std::string>& seen,
                                      const std::string& path) {
  const Descriptor* d = msg->GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (seen.count(f->name())) continue;
    std::string sub = path.empty() ? f->name() : absl::StrCat(path, ".", f->name());
    const auto& opts = f->options();
    if (opts.GetExtension(config::v1::required)) {
      return Error(mark, sub, absl::StrCat("missing required key '", f->name(), "'"));
    }
    if (opts.HasExtension(config::v1::default_value)) {
      YAML::Node def = YAML::Load(opts.GetExtension(config::v1::default_value));
      absl::Status s = ConvertField(def, mark, msg, f, sub);
      if (!s.ok()) return s;
      continue;
    }
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated() &&
        f->containing_oneof() == nullptr && HasDefaults(f->message_type())) {
      absl::Status s =
          ConvertMessage(YAML::Node(), mark, msg->GetReflection()->MutableMessage(msg, f),
                         sub);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Converter::ConvertField(const YAML::Node& node, const YAML::Mark& mark,
                                     Message* msg, const FieldDescriptor* f,
                                     const std::string& path) {
  const Reflection* r = msg->GetReflection();
  if (f->is_map()) {
    if (node.IsNull()) return absl::OkStatus();
    if (!node.IsMap()) return Error(node.Mark(), path, "expected a mapping");
    std::set<std::string> keys;
    const FieldDescriptor* kf = f->message_type()->FindFieldByName("key");
    const FieldDescriptor* vf = f->message_type()->FindFieldByName("value");
    bool chains = f->name() == "chains" && msg->GetDescriptor()->name() == "Config";
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar()) {
        return Error(it->first.Mark(), path, "keys must be plain words");
      }
      std::string key = it->first.Scalar();
      std::string sub = absl::StrCat(path, ".", key);
      if (!keys.insert(key).second) {
        return Error(it->first.Mark(), sub, absl::StrCat("duplicate key '", key, "'"));
      }
      Message* entry = r->AddMessage(msg, f);
      entry->GetReflection()->SetString(entry, kf, key);
      if (chains) current_chain_ = key;
      absl::Status s = ConvertValue(it->second, it->first.Mark(), entry, vf, sub, false);
      if (chains) current_chain_.clear();
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (f->is_repeated()) {
    if (node.IsNull()) return absl::OkStatus();
    if (node.IsScalar() && f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
      return ConvertValue(node, mark, msg, f, absl::StrCat(path, "[0]"), true);
    }
    if (!node.IsSequence()) return Error(node.Mark(), path, "expected a list");
    for (size_t i = 0; i < node.size(); ++i) {
      absl::Status s = ConvertValue(node[i], node[i].Mark(), msg, f,
                                    absl::StrCat(path, "[", i, "]"), true);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  return ConvertValue(node, mark, msg, f, path, false);
}

absl::Status Converter::ConvertValue(const YAML::Node& node, const YAML::Mark& key_mark,
                                     Message* msg, const FieldDescriptor* f,
                                     const std::string& path, bool repeated) {
  const Reflection* r = msg->GetReflection();
  YAML::Mark mark = node.IsDefined() && node.Mark().line >= 0 ? node.Mark() : key_mark;
  const auto& opts = f->options();
  auto check_range = [&](double v) -> absl::Status {
    if (!opts.HasExtension(config::v1::range)) return absl::OkStatus();
    const auto& rg = opts.GetExtension(config::v1::range);
    if (v < rg.min() || v > rg.max()) {
      return Error(mark, path,
                   absl::StrCat(node.IsScalar() ? node.Scalar() : absl::StrCat(v),
                                " is out of range [", rg.min(), ", ", rg.max(), "]"));
    }
    return absl::OkStatus();
  };

  if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    const Descriptor* md = f->message_type();
    Message* sub = repeated ? r->AddMessage(msg, f) : r->MutableMessage(msg, f);
    if (md->full_name() == "google.protobuf.Duration") {
      if (!node.IsScalar()) {
        return Error(mark, path, "expected a duration such as 30s, 500ms or 2m");
      }
      absl::Duration d;
      double secs;
      if (absl::SimpleAtod(node.Scalar(), &secs)) {
        d = absl::Seconds(secs);
      } else if (!absl::ParseDuration(node.Scalar(), &d)) {
        return Error(mark, path,
                     absl::StrCat("'", node.Scalar(),
                                  "' is not a duration (write e.g. 30s, 500ms, 2m, 1h)"));
      }
      absl::Status s = check_range(absl::ToDoubleSeconds(d));
      if (!s.ok()) return s;
      auto* dur = static_cast<google::protobuf::Duration*>(sub);
      int64_t sec = absl::IDivDuration(d, absl::Seconds(1), &d);
      dur->set_seconds(sec);
      dur->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
      return absl::OkStatus();
    }
    return ConvertMessage(node, mark, sub, path);
  }

  if (!node.IsDefined() || node.IsNull()) {
    return Error(mark, path, "missing value");
  }
  if (!node.IsScalar()) {
    return Error(mark, path, "expected a single value, not a list or mapping");
  }
  const std::string& text = node.Scalar();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: {
      if (opts.GetExtension(config::v1::chain_ref)) {
        refs_.push_back({text, path, mark, current_chain_});
      }
      if (opts.GetExtension(config::v1::database_ref)) {
        database_refs_.push_back({text, path, mark, current_chain_});
      }
      repeated ? r->AddString(msg, f, text) : r->SetString(msg, f, text);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      std::string t = absl::AsciiStrToLower(text);
      bool v;
      if (t == "true" || t == "yes" || t == "on") {
        v = true;
      } else if (t == "false" || t == "no" || t == "off") {
        v = false;
      } else {
        return Error(mark, path, absl::StrCat("'", text, "' is not true or false"));
      }
      repeated ? r->AddBool(msg, f, v) : r->SetBool(msg, f, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      int64_t v;
      if (!ParseInteger(text, &v)) {
        return Error(mark, path, absl::StrCat("'", text, "' is not a whole number"));
      }
      bool is32 = f->cpp_type() == FieldDescriptor::CPPTYPE_INT32 ||
                  f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32;
      bool is_unsigned = f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32 ||
                         f->cpp_type() == FieldDescriptor::CPPTYPE_UINT64;
      if ((is32 && (v > INT32_MAX || v < INT32_MIN)) || (is_unsigned && v < 0)) {
        return Error(mark, path, absl::StrCat(text, " does not fit this field"));
      }
      absl::Status s = check_range(static_cast<double>(v));
      if (!s.ok()) return s;
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
          repeated ? r->AddInt32(msg, f, v) : r->SetInt32(msg, f, v);
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          repeated ? r->AddInt64(msg, f, v) : r->SetInt64(msg, f, v);
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          repeated ? r->AddUInt32(msg, f, v) : r->SetUInt32(msg, f, v);
          break;
        default:
          repeated ? r->AddUInt64(msg, f, v) : r->SetUInt64(msg, f, v);
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double v;
      if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) {
        return Error(mark, path, absl::StrCat("'", text, "' is not a number"));
      }
      absl::Status s = check_range(v);
      if (!s.ok()) return s;
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
        repeated ? r->AddDouble(msg, f, v) : r->SetDouble(msg, f, v);
      } else {
        repeated ? r->AddFloat(msg, f, v) : r->SetFloat(msg, f, v);
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* ev = f->enum_type()->FindValueByName(absl::AsciiStrToUpper(text));
      if (ev == nullptr || ev->number() == 0) {
        std::vector<std::string> names;
        for (int i = 1; i < f->enum_type()->value_count(); ++i) {
          names.push_back(f->enum_type()->value(i)->name());
        }
        return Error(mark, path,
                     absl::StrCat("'", text, "' is not one of ", absl::StrJoin(names, ", ")));
      }
      repeated ? r->AddEnum(msg, f, ev) : r->SetEnum(msg, f, ev);
      return absl::OkStatus();
    }
    default:
      return Error(mark, path, "unsupported field type");
  }
}

// Checks chain references: every name exists and chains do not include themselves.
absl::Status CheckChains(const Converter& conv, const config::v1::Config& cfg) {
  std::map<std::string, std::vector<const ChainRef*>> uses;
  for (const ChainRef& ref : conv.refs()) {
    if (!cfg.chains().contains(ref.name)) {
      std::vector<std::string> names;
      for (const auto& [n, _] : cfg.chains()) names.push_back(n);
      std::sort(names.begin(), names.end());
      return conv.Error(ref.mark, ref.path,
                        absl::StrCat("unknown chain '", ref.name, "' (configured: ",
                                     names.empty() ? "none" : absl::StrJoin(names, ", "),
                                     ")"));
    }
    if (!ref.inside_chain.empty()) uses[ref.inside_chain].push_back(&ref);
  }
  // Depth-first search for a cycle.
  std::map<std::string, int> state;  // 0 new, 1 on stack, 2 done
  std::function<const ChainRef*(const std::string&)> visit =
      [&](const std::string& c) -> const ChainRef* {
    state[c] = 1;
    for (const ChainRef* r : uses[c]) {
      if (state[r->name] == 1) return r;
      if (state[r->name] == 0) {
        if (const ChainRef* bad = visit(r->name)) return bad;
      }
    }
    state[c] = 2;
    return nullptr;
  };
  for (const auto& [name, _] : cfg.chains()) {
    if (state[name] == 0) {
      if (const ChainRef* bad = visit(name)) {
        return conv.Error(bad->mark, bad->path,
                          absl::StrCat("chain '", bad->name,
                                       "' includes itself through this reference"));
      }
    }
  }
  return absl::OkStatus();
}

// Checks that every database a scanner names is configured under `databases:`.
absl::Status CheckDatabases(const Converter& conv, const config::v1::Config& cfg) {
  for (const ChainRef& ref : conv.database_refs()) {
    if (cfg.databases().contains(ref.name)) continue;
    std::vector<std::string> names;
    for (const auto& [n, _] : cfg.databases()) names.push_back(n);
    std::sort(names.begin(), names.end());
    return conv.Error(ref.mark, ref.path,
                      absl::StrCat("unknown database '", ref.name, "' (configured under "
                                   "databases: ",
                                   names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
  }
  return absl::OkStatus();
}

absl::Status NameServices(const std::string& file, config::v1::Config* cfg) {
  std::map<std::string, int> count;
  std::set<std::string> names;
  for (auto& s : *cfg->mutable_services()) {
    if (!s.name().empty() && !names.insert(s.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": services: two services are named '", s.name(), "'"));
    }
  }
  for (auto& s : *cfg->mutable_services()) {
    if (!s.name().empty()) continue;
    std::string kind = ServiceKindName(s);
    int n = ++count[kind];
    std::string name = n == 1 ? kind : absl::StrCat(kind, "-", n);
    while (names.count(name)) name = absl::StrCat(kind, "-", ++count[kind]);
    names.insert(name);
    s.set_name(name);
  }
  return absl::OkStatus();
}

}  // namespace

std::string LoadedConfig::ResolvePath(absl::string_view p) const {
  if (p.empty() || p[0] == '/' || base_dir.empty()) return std::string(p);
  return absl::StrCat(base_dir, "/", p);
}

absl::StatusOr<LoadedConfig> LoadConfigString(absl::string_view yaml,
                                              const std::string& display_name,
                                              const std::string& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(display_name, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": ", e.msg));
  }
  LoadedConfig out;
  out.path = display_name;
  out.base_dir = base_dir;
  Converter conv(display_name);
  try {
    absl::Status s = conv.ConvertMessage(root, root.Mark(), &out.proto, "");
    if (!s.ok()) return s;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(display_name, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": ", e.msg));
  }
  absl::Status s = CheckChains(conv, out.proto);
  if (!s.ok()) return s;
  s = CheckDatabases(conv, out.proto);
  if (!s.ok()) return s;
  s = NameServices(display_name, &out.proto);
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<LoadedConfig> LoadConfigFile(const std::string& path) {
  std::string text;
  {
    FILE* f = fopen(path.c_str(), "rb");
    if (f == nullptr) {
      return absl::NotFoundError(
          absl::StrCat(path, ": cannot open the configuration: ", strerror(errno)));
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    fclose(f);
  }
  std::string dir = ".";
  size_t slash = path.rfind('/');
  if (slash != std::string::npos) dir = slash == 0 ? "/" : path.substr(0, slash);
  return LoadConfigString(text, path, dir);
}

absl::StatusOr<const config::v1::Service*> FindService(
    const config::v1::Config& config, absl::string_view name,
    config::v1::Service::KindCase kind) {
  for (const auto& s : config.services()) {
    if (name.empty() ? s.kind_case() == kind : s.name() == name) {
      if (s.kind_case() != kind) {
        return absl::InvalidArgumentError(
            absl::StrCat("service '", name, "' is a ", ServiceKindName(s)));
      }
      return &s;
    }
  }
  return absl::NotFoundError(name.empty()
                                 ? absl::StrCat("no service of this kind is configured")
                                 : absl::StrCat("no service is named '", name, "'"));
}

std::string ServiceKindName(const config::v1::Service& service) {
  const auto* f = config::v1::Service::descriptor()->FindFieldByNumber(service.kind_case());
  return f == nullptr ? "unknown" : f->name();
}

std::string ScannerTarget(const config::v1::Config& config) {
  if (!config.global().scanner_target().empty()) return config.global().scanner_target();
  for (const auto& s : config.services()) {
    if (s.has_scanner_svc()) {
      return absl::StrCat(s.scanner_svc().host(), ":", s.scanner_svc().port());
    }
  }
  return "";
}

std::string CollectorTarget(const config::v1::Config& config) {
  if (!config.global().collector_target().empty()) return config.global().collector_target();
  for (const auto& s : config.services()) {
    if (s.has_collector()) return absl::StrCat(s.collector().host(), ":", s.collector().port());
  }
  return "";
}

std::string QuarantineTarget(const config::v1::Config& config) {
  if (!config.global().quarantine_target().empty()) return config.global().quarantine_target();
  for (const auto& s : config.services()) {
    if (s.has_quarantine()) return absl::StrCat(s.quarantine().host(), ":", s.quarantine().port());
  }
  return "";
}

std::string MachineHostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

absl::Duration ToDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace sagator
