#include "services/milter/milter_service.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <glog/logging.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sagator::milter {

namespace {

// The one service of this process (libmilter is a singleton).
MilterService* g_service = nullptr;

std::string AddressText(const struct sockaddr* addr) {
  if (addr == nullptr) return "";
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const struct sockaddr_in*>(addr);
    if (inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf) != nullptr) return buf;
  } else if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(addr);
    if (inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf) != nullptr) return buf;
  }
  return "";
}

std::string Macro(SMFICTX* ctx, const char* name) {
  const char* v = smfi_getsymval(ctx, const_cast<char*>(name));
  return v == nullptr ? "" : v;
}

// Sets TCP_NODELAY on this process's TCP sockets that lack it: the listening ones
// (libmilter's; accepted sockets inherit it on Linux), or with `connected`, the
// connected ones. Without it the header edits and the final reply at the end of a
// message, several small writes in a row, wait ~40 ms for the MTA's delayed ACK.
// Returns how many sockets have it now.
int SetNoDelay(bool connected) {
  int set = 0;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  while (struct dirent* e = readdir(dir)) {
    int fd = 0;
    if (!absl::SimpleAtoi(e->d_name, &fd) || fd == dirfd(dir)) continue;
    int value = 0;
    socklen_t len = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) != 0) continue;
    if ((value != 0) == connected) continue;
    int domain = 0;
    len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 ||
        (domain != AF_INET && domain != AF_INET6)) {
      continue;
    }
    int nodelay = 0;
    len = sizeof nodelay;
    if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) != 0) continue;  // not TCP
    int one = 1;
    if (nodelay != 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) ++set;
  }
  closedir(dir);
  return set;
}

}  // namespace

// One MTA connection: the session, and the stages the MTA expects no reply for.
struct Conn {
  std::unique_ptr<MilterSession> session;
  unsigned long no_reply = 0;  // SMFIP_NR_* negotiated
};

// The stages whose callbacks always continue: the MTA need not wait for a reply to
// each header, body chunk, connect, HELO, MAIL or DATA (one round trip per header
// line otherwise). RCPT too when no recipient policy may refuse it. Only on unix
// sockets: over TCP the MTA's back-to-back small packets meet Nagle on its side and
// delayed ACKs on ours (nothing to reply with), a 40 ms stall per message.
constexpr unsigned long kNoReplyStages = SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL |
                                         SMFIP_NR_DATA | SMFIP_NR_HDR | SMFIP_NR_EOH |
                                         SMFIP_NR_BODY | SMFIP_NR_UNKN;

// The libmilter callbacks: each translates for one MilterSession.
struct Callbacks {
  static Conn* State(SMFICTX* ctx) {
    auto* c = static_cast<Conn*>(smfi_getpriv(ctx));
    if (c == nullptr) {
      MilterService* svc = g_service;
      c = new Conn;
      c->session = std::make_unique<MilterSession>(&svc->options_, svc->scanner_, svc->policy_,
                                                   &svc->workers_, &svc->stats_);
      smfi_setpriv(ctx, c);
    }
    return c;
  }
  static MilterSession* Session(SMFICTX* ctx) { return State(ctx)->session.get(); }

  // SMFIS_CONTINUE, or SMFIS_NOREPLY where the MTA was told not to wait.
  static sfsistat Continue(SMFICTX* ctx, unsigned long stage) {
    return (State(ctx)->no_reply & stage) != 0 ? SMFIS_NOREPLY : SMFIS_CONTINUE;
  }

  static sfsistat Negotiate(SMFICTX* ctx, unsigned long actions, unsigned long steps,
                            unsigned long, unsigned long, unsigned long* our_actions,
                            unsigned long* our_steps, unsigned long* f2, unsigned long* f3) {
    *our_actions = actions & (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY);
    unsigned long want = SMFIP_NOUNKNOWN;
    if (g_service->unix_socket_) {
      want |= kNoReplyStages;
      if (g_service->options_.recipient_policy.empty()) want |= SMFIP_NR_RCPT;
    }
    *our_steps = steps & want;
    *f2 = 0;
    *f3 = 0;
    State(ctx)->no_reply = *our_steps & (kNoReplyStages | SMFIP_NR_RCPT);
    // A new MTA connection: make sure it has TCP_NODELAY too, should the listening
    // socket's not have carried over (libmilter reopens its socket after accept
    // errors).
    if (!g_service->unix_socket_) SetNoDelay(/*connected=*/true);
    return SMFIS_CONTINUE;
  }

  static void NoteQueueId(SMFICTX* ctx, MilterSession* s) {
    std::string id = Macro(ctx, "i");
    if (!id.empty()) s->SetQueueId(id);
  }

  // Sends the reply's modifications and reply text; returns the callback's status.
  static sfsistat Answer(SMFICTX* ctx, MilterSession* s, const MilterReply& reply) {
    for (const HeaderOp& op : reply.header_ops) {
      std::string name = op.name;
      std::string value = op.value;
      int rc = MI_FAILURE;
      switch (op.kind) {
        case HeaderOp::Kind::kChange:
          rc = smfi_chgheader(ctx, name.data(), op.index, value.data());
          break;
        case HeaderOp::Kind::kDelete:
          rc = smfi_chgheader(ctx, name.data(), op.index, nullptr);
          break;
        case HeaderOp::Kind::kInsertTop:
          rc = smfi_insheader(ctx, 0, name.data(), value.data());
          break;
        case HeaderOp::Kind::kAppend:
          rc = smfi_addheader(ctx, name.data(), value.data());
          break;
      }
      if (rc != MI_SUCCESS) {
        LOG(WARNING) << "session " << s->id() << ": the MTA refused a header change of " << op.name
                     << "; tempfail";
        return SMFIS_TEMPFAIL;
      }
    }
    if (reply.replace_body) {
      constexpr size_t kChunk = 1 << 20;
      std::string body = reply.body;
      size_t pos = 0;
      do {
        size_t n = std::min(kChunk, body.size() - pos);
        if (smfi_replacebody(ctx, reinterpret_cast<unsigned char*>(body.data() + pos),
                             static_cast<int>(n)) != MI_SUCCESS) {
          LOG(WARNING) << "session " << s->id() << ": the MTA refused the new body; tempfail";
          return SMFIS_TEMPFAIL;
        }
        pos += n;
      } while (pos < body.size());
    }
    if (!reply.rcode.empty()) {
      std::string rcode = reply.rcode, xcode = reply.xcode, text = reply.text;
      if (smfi_setreply(ctx, rcode.data(), xcode.empty() ? nullptr : xcode.data(),
                        text.empty() ? nullptr : text.data()) != MI_SUCCESS) {
        LOG(WARNING) << "session " << s->id() << ": smfi_setreply refused '" << rcode << " "
                     << xcode << " " << text << "'";
      }
    }
    switch (reply.action) {
      case MilterReply::Action::kContinue:
        return SMFIS_CONTINUE;
      case MilterReply::Action::kAccept:
        return SMFIS_ACCEPT;
      case MilterReply::Action::kReject:
        return SMFIS_REJECT;
      case MilterReply::Action::kDiscard:
        return SMFIS_DISCARD;
      case MilterReply::Action::kTempfail:
        return SMFIS_TEMPFAIL;
    }
    return SMFIS_TEMPFAIL;
  }

  static sfsistat Connect(SMFICTX* ctx, char* hostname, _SOCK_ADDR* addr) {
    MilterSession* s = Session(ctx);
    s->Connect(hostname == nullptr ? "" : hostname, AddressText(addr));
    std::string macro_addr = Macro(ctx, "{client_addr}");
    if (!macro_addr.empty()) s->SetClientAddressMacro(macro_addr);
    return Continue(ctx, SMFIP_NR_CONN);
  }

  static sfsistat Helo(SMFICTX* ctx, char* helo) {
    Session(ctx)->Helo(helo == nullptr ? "" : helo);
    return Continue(ctx, SMFIP_NR_HELO);
  }

  static sfsistat EnvFrom(SMFICTX* ctx, char** argv) {
    MilterSession* s = Session(ctx);
    s->MailFrom(argv != nullptr && argv[0] != nullptr ? argv[0] : "");
    NoteQueueId(ctx, s);
    std::string protocol = Macro(ctx, "r");
    if (!protocol.empty()) s->SetProtocol(protocol);
    return Continue(ctx, SMFIP_NR_MAIL);
  }

  static sfsistat EnvRcpt(SMFICTX* ctx, char** argv) {
    MilterSession* s = Session(ctx);
    NoteQueueId(ctx, s);
    MilterReply reply = s->Recipient(argv != nullptr && argv[0] != nullptr ? argv[0] : "");
    // Without a recipient policy the answer is always "continue", and not awaited.
    if ((State(ctx)->no_reply & SMFIP_NR_RCPT) != 0) return SMFIS_NOREPLY;
    return Answer(ctx, s, reply);
  }

  static sfsistat Data(SMFICTX* ctx) {
    NoteQueueId(ctx, Session(ctx));
    return Continue(ctx, SMFIP_NR_DATA);
  }

  static sfsistat Header(SMFICTX* ctx, char* name, char* value) {
    Session(ctx)->Header(name == nullptr ? "" : name, value == nullptr ? "" : value);
    return Continue(ctx, SMFIP_NR_HDR);
  }

  static sfsistat EndOfHeaders(SMFICTX* ctx) {
    Session(ctx)->EndOfHeaders();
    return Continue(ctx, SMFIP_NR_EOH);
  }

  static sfsistat Body(SMFICTX* ctx, unsigned char* data, size_t size) {
    Session(ctx)->Body(absl::string_view(reinterpret_cast<const char*>(data), size));
    return Continue(ctx, SMFIP_NR_BODY);
  }

  static sfsistat EndOfMessage(SMFICTX* ctx) {
    MilterSession* s = Session(ctx);
    NoteQueueId(ctx, s);
    MilterReply reply = s->EndOfMessage([ctx] { return smfi_progress(ctx) == MI_SUCCESS; });
    return Answer(ctx, s, reply);
  }

  static sfsistat Abort(SMFICTX* ctx) {
    if (auto* c = static_cast<Conn*>(smfi_getpriv(ctx))) c->session->Abort();
    return SMFIS_CONTINUE;
  }

  static sfsistat Close(SMFICTX* ctx) {
    delete static_cast<Conn*>(smfi_getpriv(ctx));
    smfi_setpriv(ctx, nullptr);
    return SMFIS_CONTINUE;
  }

  static sfsistat Unknown(SMFICTX* ctx, const char*) { return Continue(ctx, SMFIP_NR_UNKN); }
};

MilterService::MilterService(MilterOptions options, ScannerClient* scanner, ScannerClient* policy)
    : options_(std::move(options)), scanner_(scanner), policy_(policy), stats_(options_.stats) {}

MilterService::~MilterService() {
  if (g_service == this) g_service = nullptr;
}

absl::Status MilterService::Open() {
  if (g_service != nullptr) return absl::FailedPreconditionError("a milter is already open");
  absl::Status valid = ValidateConnection(options_.connection);
  if (!valid.ok()) return valid;
  g_service = this;
  unix_socket_ = absl::StartsWith(options_.connection, "unix:") ||
                 absl::StartsWith(options_.connection, "local:");

  static std::string name;  // libmilter keeps the pointer
  name = options_.filter_name.empty() ? "sagator" : options_.filter_name;
  struct smfiDesc desc = {};
  desc.xxfi_name = name.data();
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY;
  desc.xxfi_connect = &Callbacks::Connect;
  desc.xxfi_helo = &Callbacks::Helo;
  desc.xxfi_envfrom = &Callbacks::EnvFrom;
  desc.xxfi_envrcpt = &Callbacks::EnvRcpt;
  desc.xxfi_header = &Callbacks::Header;
  desc.xxfi_eoh = &Callbacks::EndOfHeaders;
  desc.xxfi_body = &Callbacks::Body;
  desc.xxfi_eom = &Callbacks::EndOfMessage;
  desc.xxfi_abort = &Callbacks::Abort;
  desc.xxfi_close = &Callbacks::Close;
  desc.xxfi_unknown = &Callbacks::Unknown;
  desc.xxfi_data = &Callbacks::Data;
  desc.xxfi_negotiate = &Callbacks::Negotiate;
  if (smfi_register(desc) != MI_SUCCESS) return absl::InternalError("smfi_register failed");

  static std::string conn;  // libmilter keeps the pointer
  conn = options_.connection;
  if (smfi_setconn(conn.data()) != MI_SUCCESS) {
    return absl::InvalidArgumentError(absl::StrCat("smfi_setconn(", conn, ") failed"));
  }
  smfi_setbacklog(options_.backlog);
  mode_t old_mask = umask(static_cast<mode_t>(options_.umask));
  int opened = smfi_opensocket(true);
  umask(old_mask);
  if (opened != MI_SUCCESS) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", conn, " (in use, or not permitted?)"));
  }
  if (conn.rfind("inet", 0) == 0) {
    int n = SetNoDelay(/*connected=*/false);
    if (n == 0) LOG(WARNING) << "could not set TCP_NODELAY on the listening socket";
  }
  return absl::OkStatus();
}

absl::Status MilterService::Run() {
  int rc = smfi_main();
  LOG(INFO) << "milter loop ended; waiting up to " << options_.shutdown_grace << " for "
            << workers_.running() << " scan(s) in flight";
  if (!workers_.WaitIdle(options_.shutdown_grace)) {
    scanner_->CancelAll();
    if (policy_ != scanner_) policy_->CancelAll();
    workers_.WaitIdle(absl::Seconds(2));
  }
  LOG(INFO) << "milter counters: " << stats_.Snapshot().ToString();
  if (rc != MI_SUCCESS) return absl::InternalError("smfi_main failed");
  return absl::OkStatus();
}

void MilterService::Stop() { smfi_stop(); }

}  // namespace sagator::milter
