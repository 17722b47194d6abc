#!/bin/sh
# Ensures PostgreSQL's initdb and pg_ctl are installed (Debian package
# postgresql, binaries under /usr/lib/postgresql/<major>/bin). Idempotent and
# quiet when already satisfied.
set -eu

have() {
	for d in /usr/lib/postgresql/*/bin; do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			return 0
		fi
	done
	return 1
}

have && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "postgres.sh: PostgreSQL is missing; run as root or: apt-get install -y postgresql" >&2
	exit 1
fi
echo "installing PostgreSQL (apt-get install postgresql)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql >/dev/null
have || { echo "postgres.sh: initdb/pg_ctl still missing after install" >&2; exit 1; }
