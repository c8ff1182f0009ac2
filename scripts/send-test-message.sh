#!/usr/bin/env bash
# Sends a clean or an EICAR test message through the running suite and shows the
# answer. With the sgfilter client (default, sgfilterd on 10027): the result line,
# the returned message, the exit code. Over SMTP (smtpd, lmtpd: give the port and
# "smtp"): the SMTP dialogue as swaks shows it.
#
#   scripts/send-test-message.sh clean|eicar [PORT] [sgfilter|smtp]
set -uo pipefail
cd "$(dirname "$0")/.."
kind=${1:-clean}
port=${2:-10027}
via=${3:-sgfilter}
case "$kind" in
  clean) body="Hello, this message is clean." ;;
  eicar) body='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' ;;
  *) echo "usage: $0 clean|eicar [PORT] [sgfilter|smtp]" >&2; exit 2 ;;
esac
msg=$(printf 'From: sender@example.org\nTo: user@example.org\nSubject: SAGATOR %s test\n\n%s\n' "$kind" "$body")
if [ "$via" = smtp ]; then
  # 250 once the next hop took it; 550 5.7.1 Rejected: <virus> for EICAR.
  printf '%s\n' "$msg" | swaks --server "127.0.0.1:$port" --from sender@example.org \
    --to user@example.org --data - --hide-informational
  exit $?
fi
# The raw sgfilter protocol answer: the result line "CODE LEVEL NAME".
msg_nl="$msg"$'\n'
if exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
  printf 'MAIL FROM: <sender@example.org>\nRCPT TO: <user@example.org>\nDATA %d\n%s' \
    "$(printf '%s' "$msg_nl" | wc -c)" "$msg_nl" >&3
  echo "--- sgfilterd answered: $(head -n 1 <&3)"
  exec 3<&-
else
  echo "--- nothing listens on 127.0.0.1:$port: is scripts/run-local.sh running?"
fi
echo "--- the message as sgfilter returns it:"
client=bazel-bin/services/sgfilterd/sgfilter
[ -x "$client" ] || bazel build //services/sgfilterd:sgfilter
printf '%s\n' "$msg" | SENDER=sender@example.org RECIPIENT=user@example.org \
  "$client" --port "$port" --codes --non-safe
rc=$?
echo "--- sgfilter exit code: $rc (0 clean, 1 detected, 64 scan error, 65 sgfilterd unreachable)"
