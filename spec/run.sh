#!/usr/bin/env bash
# Runs every test: the busted specs under build/fmadiolua (so specs reach the
# C primitives through ffi) and the generator's shell test, then prints one
# closing line "N passed, N failed" for the whole run.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export TZ=UTC
tap=$(mktemp)
trap 'rm -f "$tap"' EXIT

# a hung test must not hang CI: the whole run has a time limit
timeout 1500 build/fmadiolua "$(command -v busted)" -o TAP "$@" 2>&1 | tee "$tap"
passed=$(grep -ac '^ok ' "$tap")
failed=$(grep -ac '^not ok ' "$tap")
if ! grep -aq '^1\.\.' "$tap"; then
	echo "busted did not finish its run" >&2
	failed=$((failed + 1))
fi

if [ $# -eq 0 ]; then
	# (not tee /dev/stderr: reopening a log file through it truncates the log)
	gen_out=$(bash spec/pcapgen_test.sh build/pcapgen 2>&1)
	echo "$gen_out"
	gen=$(echo "$gen_out" | tail -n 1)
	gp=$(echo "$gen" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p')
	gf=$(echo "$gen" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p')
	if [ -z "$gp" ]; then gp=0; gf=1; fi
	passed=$((passed + gp))
	failed=$((failed + gf))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
