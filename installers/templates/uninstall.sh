#!/bin/sh
# Removes the edge-agent service and PREFIX (default /opt/edge-agent). The spool in PREFIX/var is
# kept unless --purge is given: it may hold studies not yet read or results not yet delivered.
set -eu
PREFIX=/opt/edge-agent
PURGE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --purge) PURGE=1; shift ;;
    *) echo "uninstall.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -f /etc/systemd/system/edge-agent.service ]; then
  systemctl disable --now edge-agent.service || true
  rm -f /etc/systemd/system/edge-agent.service
  systemctl daemon-reload || true
fi
rm -rf "$PREFIX/releases" "$PREFIX/current" "$PREFIX/previous"
[ "$PURGE" = 1 ] && rm -rf "$PREFIX"
echo "edge-agent removed from $PREFIX"
