#!/usr/bin/env bash
# Ensures Debian's ruby, which the cookbook's syntax checks and spec need.
# Chef itself cannot be installed here (no RubyGems); see cookbook/README.md.
set -euo pipefail
command -v ruby >/dev/null 2>&1 && exit 0
echo "tools/ruby.sh: installing ruby (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq ruby >/dev/null
