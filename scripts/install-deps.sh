#!/usr/bin/env bash
# Installs every Debian package SAGATOR needs to build, run and test. Idempotent:
# packages already present are skipped, so a second run costs a few seconds.
set -euo pipefail

PKGS=(
  build-essential pkg-config bazel-bootstrap bazel-rules-java
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgtest-dev libgmock-dev googletest grpc-proto
  libyaml-cpp-dev libre2-dev libgoogle-glog-dev libgflags-dev libboost1.74-dev
  libclamav-dev clamav clamav-daemon libsqlite3-dev sqlite3
  python3-grpcio python3-grpc-tools procps
  postfix swaks miltertest libmilter-dev clamsmtp clamav-milter
  libgmime-3.0-dev libsodium-dev libarchive-dev libmagic-dev
  spamassassin spamd spamc rspamd
  libpqxx-dev postgresql postgrey
  chromium fonts-dejavu-core
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Postfix asks which configuration to install; the tests bring their own.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The clamav-daemon package may start a system clamd and freshclam; the project runs
# its own clamd with its own signature file, so stop the system ones where they run.
if command -v service >/dev/null 2>&1; then
  $SUDO service clamav-daemon stop >/dev/null 2>&1 || true
  $SUDO service clamav-freshclam stop >/dev/null 2>&1 || true
  # Postfix, ClamSMTP and clamav-milter are peers the tests start themselves.
  $SUDO service postfix stop >/dev/null 2>&1 || true
  $SUDO service clamsmtp stop >/dev/null 2>&1 || true
  $SUDO service clamav-milter stop >/dev/null 2>&1 || true
  # PostgreSQL and postgrey too: tests run throw-away clusters and their own postgrey.
  $SUDO service postgresql stop >/dev/null 2>&1 || true
  $SUDO service postgrey stop >/dev/null 2>&1 || true
  # spamd as well: the tests start their own on a free port.
  $SUDO service spamd stop >/dev/null 2>&1 || true
  $SUDO service rspamd stop >/dev/null 2>&1 || true
fi
# Keep them from coming back at boot where an init system manages services.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now postgresql postgrey >/dev/null 2>&1 || true
elif command -v update-rc.d >/dev/null 2>&1; then
  $SUDO update-rc.d postgresql disable >/dev/null 2>&1 || true
  $SUDO update-rc.d postgrey disable >/dev/null 2>&1 || true
fi
