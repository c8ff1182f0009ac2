#!/usr/bin/env bash
# Starts the SAGATOR suite on this machine with the embedded defaults of
# deploy/config/sagator.yaml: scanner-svc (libclamav with the official database when
# freshclam filled /var/lib/clamav, else the project's own signatures in data/clamav)
# and sgfilterd on 127.0.0.1:10027, supervised by the launcher. Ctrl-C stops it all.
#
#   scripts/run-local.sh [--config FILE]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bazel build //scanner-svc //services/sgfilterd:all //services/smtpd //services/lmtpd //services/milter //services/smtpd_policy //services/launcher:sagator //collector-svc //quarantine-svc:quarantine-svc //quarantine-svc:reporter //tools/sgstat //tools/sqback //tools/sglist //tools/sgscan

config=deploy/config/sagator.yaml
if [ "${1:-}" = "--config" ] && [ -n "${2:-}" ]; then config=$2; fi
mkdir -p run
bin_path="$PWD/bazel-bin/scanner-svc:$PWD/bazel-bin/services/sgfilterd:$PWD/bazel-bin/services/smtpd:$PWD/bazel-bin/services/lmtpd:$PWD/bazel-bin/services/milter:$PWD/bazel-bin/services/smtpd_policy:$PWD/bazel-bin/collector-svc:$PWD/bazel-bin/quarantine-svc"

cat <<MSG

SAGATOR is starting (config: $config).
When "listening" lines appear, send test messages from another terminal:

  scripts/send-test-message.sh clean    # expect: 250 0.00 OK, X-Sagator headers added
  scripts/send-test-message.sh eicar    # expect: 550 1.00 Eicar-Test-Signature.UNOFFICIAL
  bazel-bin/tools/sqback/sqback --config $config --list   # the EICAR copy in quarantine

The web quarantine is on http://127.0.0.1:8008/ once a user is configured (see the
webq section of $config and \`sqback --hash_password\`).

or pipe any message through the sgfilter client:

  bazel-bin/services/sgfilterd/sgfilter --port 10027 -c < message.eml

Stop with Ctrl-C.

MSG
exec bazel-bin/services/launcher/sagator --config "$config" --bin_path "$bin_path"
