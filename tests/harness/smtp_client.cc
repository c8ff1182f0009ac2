#include "tests/harness/smtp_client.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/match.h"

namespace sagator::harness {

SmtpClient::SmtpClient(int port) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd_);
    fd_ = -1;
  }
  if (fd_ < 0) return;
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv = {30, 0};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

SmtpClient::~SmtpClient() {
  if (fd_ >= 0) close(fd_);
}

void SmtpClient::Send(const std::string& data) {
  size_t off = 0;
  while (fd_ >= 0 && off < data.size()) {
    ssize_t n = send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

std::string SmtpClient::Read() {
  std::string reply;
  for (;;) {
    size_t nl;
    while ((nl = buf_.find("\r\n")) != std::string::npos) {
      std::string line = buf_.substr(0, nl + 2);
      buf_.erase(0, nl + 2);
      reply += line;
      if (line.size() < 4 || line[3] != '-') return reply;
    }
    char tmp[8192];
    ssize_t n = fd_ < 0 ? -1 : recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return reply;
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

std::string SmtpClient::Command(const std::string& line) {
  Send(line + "\r\n");
  return Read();
}

std::string SmtpClient::Greet(bool lmtp) {
  greeted_ = true;
  std::string r = Read();
  if (!absl::StartsWith(r, "220")) return r;
  return Command(lmtp ? "LHLO client.test" : "EHLO client.test");
}

std::string SmtpClient::Deliver(const std::string& from, const std::vector<std::string>& to,
                                const std::string& message) {
  if (!greeted_) {
    std::string r = Greet();
    if (!absl::StartsWith(r, "250")) return r;
  }
  std::string r = Command("MAIL FROM:<" + from + ">");
  if (!absl::StartsWith(r, "250")) return r;
  bool any = false;
  for (const std::string& rcpt : to) {
    r = Command("RCPT TO:<" + rcpt + ">");
    any |= absl::StartsWith(r, "250");
  }
  if (!any) {
    Command("RSET");
    return r;
  }
  r = Command("DATA");
  if (!absl::StartsWith(r, "354")) return r;
  Send(message + ".\r\n");
  return Read();
}

}  // namespace sagator::harness
