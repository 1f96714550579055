#!/usr/bin/env bash
# Oracle tests for runtime/pcapgen.c: the generated captures are checked with
# capinfos, tcpdump and tshark rather than with our own parser.
#
# Usage: spec/pcapgen_test.sh [path/to/pcapgen]   (default: <repo>/build/pcapgen)
# Build: gcc -O2 -Wall -Wextra -std=gnu11 -o build/pcapgen runtime/pcapgen.c -lm
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gen=${1:-$root/build/pcapgen}

passed=0
pass() { passed=$((passed + 1)); }
fail() {
	echo "FAIL: $*" >&2
	echo "$passed passed, 1 failed"
	exit 1
}
# check DESCRIPTION COMMAND...: one counted check
check() {
	local desc=$1
	shift
	if "$@"; then pass; else fail "$desc"; fi
}

[[ -x $gen ]] || fail "pcapgen binary not found or not executable: $gen"
for tool in capinfos tcpdump tshark sha256sum; do
	command -v "$tool" >/dev/null || fail "required tool missing: $tool"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# generate NAME ARGS...: writes $tmp/NAME.pcap, keeps stderr in $tmp/NAME.log
generate() {
	local name=$1
	shift
	"$gen" "$@" -o "$tmp/$name.pcap" 2>"$tmp/$name.log" ||
		fail "pcapgen $* exited with $? ($(cat "$tmp/$name.log"))"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }
file_size() { stat -c %s "$1"; }

# capfield FILE KEY [capinfos flags]: value of "KEY: value" in capinfos -M output
capfield() {
	local file=$1 key=$2
	shift 2
	capinfos -M "$@" "$file" | awk -v k="$key" -F':[ \t]+' '$1 == k { print $2; exit }'
}

# count FILE FILTER: packets matching a tshark display filter; prints "error"
# (which makes any numeric test fail) if tshark fails, e.g. on a bad filter
count() {
	local n
	if n=$(tshark -r "$1" -Y "$2" -T fields -e frame.number 2>"$tmp/tshark.err" | wc -l); then
		echo "$n"
	else
		echo "tshark -Y '$2' failed: $(grep -v 'Running as user' "$tmp/tshark.err")" >&2
		echo error
	fi
}

# summary NAME: the stderr summary line split into "profile seed packets bytes first last"
summary() {
	sed -nE 's/^pcapgen: ([a-z]+) seed ([0-9]+): ([0-9]+) packets ([0-9]+) bytes span ([0-9]+)\.\.([0-9]+)$/\1 \2 \3 \4 \5 \6/p' \
		"$tmp/$1.log"
}

# within VALUE LOW HIGH (floats)
within() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'; }

# expect_status STATUS STDERR_PATTERN ARGS...: pcapgen exits with STATUS and,
# unless the pattern is empty, says something matching it on stderr
expect_status() {
	local want=$1 pattern=$2 rc=0
	shift 2
	"$gen" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
	[[ $rc -eq $want ]] && { [[ -z $pattern ]] || grep -q -- "$pattern" "$tmp/err"; }
}

# tcpdump_clean FILE [flags]: tcpdump reads every packet, exit 0, and prints no
# truncation ("[|proto]", "truncated"), bad length or bad IPv4 checksum marks
tcpdump_clean() {
	local file=$1
	shift
	tcpdump -nn "$@" -r "$file" >"$tmp/tcpdump.out" 2>"$tmp/tcpdump.err" || return 1
	! grep -q -i -e '\[|' -e 'truncated' -e 'bad-len' -e 'bad cksum' "$tmp/tcpdump.out"
}

# --- 1. determinism --------------------------------------------------------
for profile in isp finance; do
	generate "$profile" -p "$profile" -n 20000 -S 7
	generate "$profile.again" -p "$profile" -n 20000 -S 7
	generate "$profile.seed8" -p "$profile" -n 20000 -S 8
	check "$profile: same seed gives identical output" \
		test "$(sha "$tmp/$profile.pcap")" = "$(sha "$tmp/$profile.again.pcap")"
	check "$profile: another seed gives different output" \
		test "$(sha "$tmp/$profile.pcap")" != "$(sha "$tmp/$profile.seed8.pcap")"
	read -r s_profile s_seed s_packets s_bytes s_first _ <<<"$(summary "$profile")"
	check "$profile: summary line matches the file" \
		test "$s_profile $s_seed $s_packets $s_bytes $s_first" = \
		"$profile 7 20000 $(file_size "$tmp/$profile.pcap") 1700000000000000000"
done

# --- 2. file format, tcpdump -----------------------------------------------
for profile in isp finance; do
	f=$tmp/$profile.pcap
	check "$profile: nanosecond pcap magic a1b23c4d (little-endian)" \
		test "$(od -An -tx1 -N4 "$f" | tr -d ' ')" = "4d3cb2a1"
	check "$profile: capinfos packet count" test "$(capfield "$f" 'Number of packets')" = 20000
	check "$profile: capinfos encapsulation" test "$(capfield "$f" 'File encapsulation')" = ether
	check "$profile: capinfos nanosecond precision" \
		grep -q '^nanoseconds' <<<"$(capfield "$f" 'File timestamp precision')"
	check "$profile: timestamps in order" test "$(capfield "$f" 'Strict time order')" = True
	check "$profile: tcpdump -nn reads it cleanly" tcpdump_clean "$f"
	check "$profile: tcpdump -nn -v reads it cleanly (no bad cksum)" tcpdump_clean "$f" -v
done

# --- 3. isp decodes ----------------------------------------------------------
isp=$tmp/isp.pcap
for filter in vlan ieee8021ad mpls gre erspan 'erspan.version == 2' vxlan geneve ipv6 \
	http.request dns; do
	check "isp: tshark -Y '$filter' matches some packets" test "$(count "$isp" "$filter")" -ge 1
done
home=$(count "$isp" 'ip.addr == 192.168.1.0/24')
check "isp: 192.168.1.0/24 share $home/20000 within 10-35%" within "$home" 2000 7000
check "isp: frame sizes within 60..1518" test "$(count "$isp" 'frame.len < 60 || frame.len > 1518')" -eq 0
check "isp: no malformed packets or expert errors" \
	test "$(count "$isp" '_ws.malformed || _ws.expert.severity == error')" -eq 0

# --- 4. finance decodes --------------------------------------------------------
fin=$tmp/finance.pcap
check "finance: every packet is UDP to 239.10.0.0/16" \
	test "$(count "$fin" '!(udp && ip.dst == 239.10.0.0/16)')" -eq 0
check "finance: multicast MACs and TTL 32" \
	test "$(count "$fin" 'eth.dst[0:3] != 01:00:5e || ip.ttl != 32')" -eq 0
check "finance: frame sizes within 102..342 (UDP payload 60..300)" \
	test "$(count "$fin" 'frame.len < 102 || frame.len > 342')" -eq 0
check "finance: no malformed packets or expert errors" \
	test "$(count "$fin" '_ws.malformed || _ws.expert.severity == error')" -eq 0

# --- 5. size limit, span, start time ------------------------------------------------
for profile in isp finance; do
	generate "$profile.10m" -p "$profile" -b 10M -s 10
	size=$(file_size "$tmp/$profile.10m.pcap")
	check "$profile: -b 10M gives $size bytes, within 2 KiB below 10485760" \
		within "$size" $((10485760 - 2048)) 10485760
	span=$(capfield "$tmp/$profile.10m.pcap" 'Capture duration' -u)
	check "$profile: -s 10 spans ${span% *} (within 10% of 10 s)" within "${span% *}" 9 11
done
generate span_n -n 5000 -s 10
span=$(capfield "$tmp/span_n.pcap" 'Capture duration' -u)
check "isp: -n 5000 -s 10 spans ${span% *}" within "${span% *}" 9 11

generate start -p finance -n 100 -t 1234567890123456789
check "-t sets the exact first packet time" \
	test "$(capfield "$tmp/start.pcap" 'First packet time' -a -S)" = 1234567890.123456789
generate start_float -n 10 -t 1.5e18
check "-t accepts float notation" \
	test "$(capfield "$tmp/start_float.pcap" 'First packet time' -a -S)" = 1500000000.000000000

# --- 6. command line errors -------------------------------------------------------
check "unknown option: exit 2 naming it" expect_status 2 'bogus' --bogus -n 1
check "bad profile: exit 2 naming the value" expect_status 2 'nope' -p nope -n 1
check "bad size: exit 2 naming the value" expect_status 2 '12X' -b 12X
check "no -b/-n: exit 2" expect_status 2 'required' -p isp
check "--help: exit 0" expect_status 0 '' --help
check "--help prints usage on stdout" grep -q '^usage: pcapgen' "$tmp/out"
if [[ -w /dev/full ]]; then
	check "write error: exit 1 with strerror" expect_status 1 'No space left' -n 100000 -o /dev/full
fi

echo "$passed passed, 0 failed"
