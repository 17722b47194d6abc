#!/bin/sh
# Ensures <repo>/bin/consul is Consul 1.16.x: the binary already built, a
# consul 1.16+ on PATH, or a build from the pinned tools module. Idempotent
# and quiet when already satisfied.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/bin/consul"

version_of() {
	"$1" version 2>/dev/null | sed -n 's/^Consul v\([0-9][0-9.]*\).*/\1/p' | head -n 1
}

if [ -x "$bin" ]; then
	case "$(version_of "$bin")" in
	1.16.*) exit 0 ;;
	esac
fi

if onpath=$(command -v consul 2>/dev/null) && [ "$onpath" != "$bin" ]; then
	v=$(version_of "$onpath")
	major=$(echo "$v" | cut -d. -f1)
	minor=$(echo "$v" | cut -d. -f2)
	if [ -n "$v" ] && { [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 16 ]; }; }; then
		mkdir -p "$root/bin"
		ln -sf "$onpath" "$bin"
		echo "bin/consul -> $onpath (v$v)"
		exit 0
	fi
fi

echo "building Consul v1.16.1 into bin/consul (several minutes on a fresh machine)..."
mkdir -p "$root/bin"
cd "$here"
GONOSUMDB=github.com/hashicorp/consul/envoyextensions,github.com/hashicorp/hcp-sdk-go \
	GOFLAGS=-mod=mod go build -o "$bin" github.com/hashicorp/consul
"$bin" version | head -n 1
