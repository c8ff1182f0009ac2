// smtpd: SAGATOR's SMTP gateway. See README.md.
#include "services/smtpd/gateway_main.h"

int main(int argc, char** argv) {
  return sagator::smtpd::GatewayMain(argc, argv, sagator::smtpd::Dialect::kSmtp);
}
