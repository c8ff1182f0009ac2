// The whole of smtpd's and lmtpd's main(): flags, configuration, scanner-svc client,
// the gateway, and a clean stop on SIGTERM/SIGINT.
#ifndef SAGATOR_SERVICES_SMTPD_GATEWAY_MAIN_H_
#define SAGATOR_SERVICES_SMTPD_GATEWAY_MAIN_H_

#include "services/smtpd/smtp_session.h"

namespace sagator::smtpd {

int GatewayMain(int argc, char** argv, Dialect dialect);

}  // namespace sagator::smtpd

#endif  // SAGATOR_SERVICES_SMTPD_GATEWAY_MAIN_H_
