#!/bin/sh
# Tests of the deployhook cookbook, without Chef: syntax of every Ruby file and
# template, then the recipe spec (which also exercises spec/render.rb).
# Exits non-zero on any failure; the last line is "N passed, N failed".
set -u
cd "$(dirname "$0")" || exit 2

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

if ! command -v ruby >/dev/null 2>&1; then
	echo 'FAIL: ruby not found (apt-get install -y ruby)'
	echo '0 passed, 1 failed'
	exit 1
fi

for f in $(find . -name '*.rb' | sort); do
	if out=$(ruby -c "$f" 2>&1); then pass; else fail "ruby -c $f: $out"; fi
done
for f in $(find templates -name '*.erb' | sort); do
	if out=$(erb -x -T - "$f" | ruby -c 2>&1); then pass; else fail "erb -x -T - $f | ruby -c: $out"; fi
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
ruby spec/recipe_spec.rb >"$log" 2>&1
status=$?
summary=$(grep -E '^[0-9]+ runs, [0-9]+ assertions, [0-9]+ failures, [0-9]+ errors' "$log" | tail -n 1)
if [ -z "$summary" ]; then
	cat "$log"
	fail "spec/recipe_spec.rb did not run (exit $status)"
else
	set -- $summary
	runs=$1 failures=$5 errors=$7 skips=$9
	bad=$((failures + errors))
	passed=$((passed + runs - bad - skips))
	failed=$((failed + bad))
	if [ "$bad" -ne 0 ] || [ "$status" -ne 0 ]; then
		cat "$log"
		[ "$bad" -eq 0 ] && fail "spec/recipe_spec.rb exited $status"
	else
		echo "spec/recipe_spec.rb: $summary"
	fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
