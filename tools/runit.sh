#!/bin/sh
# Ensures svlogd (Debian package runit) is installed. Idempotent and quiet
# when already satisfied.
set -eu

command -v svlogd >/dev/null 2>&1 && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "runit.sh: svlogd is missing; run as root or: apt-get install -y runit" >&2
	exit 1
fi
echo "installing runit (apt-get install runit)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq runit >/dev/null
command -v svlogd >/dev/null 2>&1 || { echo "runit.sh: svlogd still missing after install" >&2; exit 1; }
