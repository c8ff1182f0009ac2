// lmtpd: SAGATOR's LMTP gateway; the code is smtpd's (services/smtpd), in LMTP mode.
#include "services/smtpd/gateway_main.h"

int main(int argc, char** argv) {
  return sagator::smtpd::GatewayMain(argc, argv, sagator::smtpd::Dialect::kLmtp);
}
