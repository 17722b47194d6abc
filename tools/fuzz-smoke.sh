#!/usr/bin/env bash
# Runs one fuzz target for a fixed number of executions and fails only on a
# real finding.
#
#   tools/fuzz-smoke.sh PACKAGE TARGET EXECS
#
# A count budget (-fuzztime=Nx) rather than a time budget: Go's fuzz
# coordinator can report "context deadline exceeded" at the end of a time
# window on a loaded machine without having found anything (go.dev/issue/75804).
# For the same reason a failure counts only when it wrote a crasher under
# PACKAGE/testdata/fuzz/TARGET; any other failure is shown and retried once.
set -euo pipefail
pkg=$1 target=$2 execs=$3
corpus="$pkg/testdata/fuzz/$target"

crashers() { ls "$corpus" 2>/dev/null | sort || true; }

for try in 1 2; do
	before=$(crashers)
	out=$(mktemp)
	if go test -run=NONE -fuzz="^$target\$" -fuzztime="${execs}x" "./$pkg" >"$out" 2>&1; then
		tail -n 3 "$out"
		rm -f "$out"
		exit 0
	fi
	after=$(crashers)
	new=$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d')
	cat "$out"
	rm -f "$out"
	if [ -n "$new" ]; then
		echo "fuzz-smoke: $target found a failing input: $corpus/$new" >&2
		echo "fuzz-smoke: reproduce with: go test -run='$target/$new' ./$pkg" >&2
		exit 1
	fi
	echo "fuzz-smoke: $target failed without writing a crasher (try $try of 2): the fuzz coordinator, not a finding" >&2
done
echo "fuzz-smoke: $target: no crasher in two tries; not a finding, passing" >&2
exit 0
