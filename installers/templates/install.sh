#!/bin/sh
# edge-agent offline installer. Verifies the bundle before touching anything, installs into
# PREFIX/releases/VERSION, checks it with `edge-agent doctor`, and only when that is green switches
# PREFIX/current to it (PREFIX/previous keeps the last one).
#   sh install.sh [--prefix /opt/edge-agent] [--user edge-agent] [--verify-key PUB.pem]
#                 [--no-service] [--rollback]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=/opt/edge-agent
SERVICE_USER=edge-agent
KEY=""
SERVICE=1
ROLLBACK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --user) SERVICE_USER=$2; shift 2 ;;
    --verify-key) KEY=$2; shift 2 ;;
    --no-service) SERVICE=0; shift ;;
    --rollback) ROLLBACK=1; shift ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "install.sh: $*" >&2; exit 1; }
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
PREFIX=$(absolute "$PREFIX")
[ -z "$KEY" ] || KEY=$(absolute "$KEY")
switch() {  # atomically point PREFIX/$1 at $2
  ln -sfn "$2" "$PREFIX/$1.new" && mv -T "$PREFIX/$1.new" "$PREFIX/$1"
}

if [ "$ROLLBACK" = 1 ]; then
  [ -L "$PREFIX/previous" ] || fail "no previous release to roll back to"
  old=$(readlink "$PREFIX/current"); new=$(readlink "$PREFIX/previous")
  switch current "$new"; switch previous "$old"
  if [ -d /run/systemd/system ] && [ -f /etc/systemd/system/edge-agent.service ]; then
    systemctl try-restart edge-agent.service
  fi
  echo "edge-agent: current is now $(basename "$new")"
  exit 0
fi

cd "$HERE"
if [ -n "$KEY" ]; then
  [ -f SHA256SUMS.sig ] || fail "no SHA256SUMS.sig in the bundle, but --verify-key was given"
  openssl pkeyutl -verify -pubin -inkey "$KEY" -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig \
    >/dev/null 2>&1 || fail "signature of SHA256SUMS does not verify: nothing installed"
fi
sha256sum --quiet --strict -c SHA256SUMS 2>/dev/null || fail "bundle damaged (hash mismatch): nothing installed"
listed=$(mktemp)
cut -c67- SHA256SUMS > "$listed"
unlisted=$(find wheels models config -type f 2>/dev/null | grep -vxF -f "$listed" || true)
rm -f "$listed"
[ -z "$unlisted" ] || fail "files not listed in SHA256SUMS: $unlisted (nothing installed)"

VERSION=$(cat VERSION)
EXTRAS=$(cat EXTRAS)
# One folder per bundle: the version plus the bundle's own checksum, so a rebuilt bundle of the
# same version installs beside the old one instead of over it.
RELEASE="$PREFIX/releases/$VERSION-$(sha256sum SHA256SUMS | cut -c1-12)"
mkdir -p "$PREFIX/releases" "$PREFIX/etc" "$PREFIX/var"
if [ ! -f "$RELEASE/.installed" ]; then
  rm -rf "$RELEASE"
  mkdir -p "$RELEASE"
  python3 -m venv "$RELEASE/venv"
  "$RELEASE/venv/bin/pip" install --quiet --no-index --find-links "$HERE/wheels" \
    "edge-agent${EXTRAS:+[$EXTRAS]}==$VERSION"
  [ -d models ] && cp -R models "$RELEASE/models"
  touch "$RELEASE/.installed"
fi
[ -f "$PREFIX/etc/edge-agent.toml" ] || cp config/edge-agent.toml "$PREFIX/etc/edge-agent.toml"
OLD=""
[ -L "$PREFIX/current" ] && OLD=$(readlink "$PREFIX/current")

SYSTEMD=0
if [ "$SERVICE" = 1 ] && [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ]; then SYSTEMD=1; fi
# The new release is checked against its own models before it becomes current, with the service
# stopped: it would hold the DICOM port that doctor probes. A red doctor leaves the release that
# ran current, and running.
RUNNING=0
if [ "$SYSTEMD" = 1 ]; then
  if systemctl is-active --quiet edge-agent.service; then RUNNING=1; fi
  systemctl stop edge-agent.service 2>/dev/null || true
fi
if ! "$RELEASE/venv/bin/edge-agent" doctor --config "$PREFIX/etc/edge-agent.toml" \
  --out "$PREFIX/var" --models "$RELEASE/models"; then
  state="nothing is current yet"
  [ -z "$OLD" ] || state="$(basename "$OLD") stays current"
  if [ "$RUNNING" = 1 ]; then
    if systemctl start edge-agent.service; then
      state="$state and running"
    else
      state="$state but did not start again (systemctl status edge-agent)"
    fi
  fi
  fail "$(basename "$RELEASE") is not ready (doctor above): $state; fix what is red and" \
    "run install.sh again"
fi
if [ -n "$OLD" ] && [ "$OLD" != "$RELEASE" ]; then
  switch previous "$OLD"
fi
switch current "$RELEASE"

if [ "$SYSTEMD" = 1 ]; then
  id "$SERVICE_USER" >/dev/null 2>&1 || useradd --system --home "$PREFIX/var" "$SERVICE_USER"
  chown -R "$SERVICE_USER" "$PREFIX/var"
  sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@USER@|$SERVICE_USER|g" edge-agent.service \
    > /etc/systemd/system/edge-agent.service
  systemctl daemon-reload && systemctl enable edge-agent.service
  systemctl restart edge-agent.service  # an upgrade runs the new release at once
else
  echo "edge-agent: no systemd service installed; run the gateway with:"
  # from PREFIX/var, as the unit runs it: the config's spool_dir is relative to it, and doctor
  # checked that folder's disk
  echo "  cd $PREFIX/var && $PREFIX/current/venv/bin/edge-agent serve --config $PREFIX/etc/edge-agent.toml"
fi
