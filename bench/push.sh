#!/usr/bin/env bash
# bench/push.sh: offline push from the store against what tcpdump and zstd
# do with the same input, side by side in one run (issue 4, item 14).
#
#   isp, Decap + FilterBPF "net 192.168.1.0/24 and tcp"  vs  tcpdump -r -w 'same filter'
#   isp, no filter                                      vs  tcpdump -r -w
#   isp, PipeCmd "zstd -c -1 -T2" (in-process)           vs  zstd -1 -c in > out
#   finance, one group (udp and dst port 10001), NULL mode: packets per second
#
# Environment: PUSHCAP_BENCH_BYTES (default 2e9), PUSHCAP_BENCH_RUNS (default
# 5), PUSHCAP_BENCH_DIR (default /dev/shm/pushcap-push-bench, removed at the
# end), PUSHCAP_BENCH_OUT (default build/bench-push.md).
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BYTES=${PUSHCAP_BENCH_BYTES:-2e9}
RUNS=${PUSHCAP_BENCH_RUNS:-5}
WORK=${PUSHCAP_BENCH_DIR:-/dev/shm/pushcap-push-bench}
RESULTS=${PUSHCAP_BENCH_OUT:-$ROOT/build/bench-push.md}
die() { echo "bench-push: $*" >&2; exit 1; }

[ ! -e "$WORK" ] || [ -e "$WORK/.pushcap-bench" ] || die "$WORK exists and is not ours; set PUSHCAP_BENCH_DIR"
mkdir -p "$WORK" && touch "$WORK/.pushcap-bench"
trap 'rm -rf -- "$WORK"' EXIT
make -C "$ROOT" -s all >/dev/null || die "build failed"
export PATH="$ROOT/build:$ROOT/bin:$ROOT/analytics:$PATH"
export PUSHCAP_ROOT=$WORK/root
IN_BYTES=$(awk -v s="$BYTES" 'BEGIN { printf "%.0f", s }')
AVAIL=$(df -P -B1 "$WORK" | awk 'NR == 2 { print $4 }')
[ "$AVAIL" -ge $((6 * IN_BYTES)) ] || die "need $((6 * IN_BYTES)) bytes in $WORK (try PUSHCAP_BENCH_BYTES=200e6)"

Q() { printf '%q' "$1"; }
median() { python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["median"])' "$1" "$2"; }

pcapgen -p isp -b "$BYTES" -s 600 -S 1 -o "$WORK/isp.pcap" 2>/dev/null
pcapgen -p finance -b "$BYTES" -s 10 -S 1 -o "$WORK/finance.pcap" 2>"$WORK/finance.gen"
FIN_PKTS=$(sed -n 's/^pcapgen: .*: \([0-9]*\) packets .*/\1/p' "$WORK/finance.gen")
stream_capture --create-store $((IN_BYTES * 5 / 2)) 2>/dev/null
stream_capture --import "$WORK/isp.pcap" --name isp 2>/dev/null
stream_capture --import "$WORK/finance.pcap" --name finance 2>/dev/null

conf() {  # conf NAME TARGET-FIELDS
	mkdir -p "$PUSHCAP_ROOT/opt/fmadio/etc"
	printf 'return { Target = { { Desc = "b", Split = "--split-time 60e9", FileName = "--filename-tstr-HHMMSS", %s } } }\n' \
		"$2" > "$PUSHCAP_ROOT/opt/fmadio/etc/$1.lua"
}
OUT=$WORK/out
conf filtered "Path = \"$OUT/f-\", FilterBPF = \"net 192.168.1.0/24 and tcp\""
conf plain "Path = \"$OUT/p-\""
conf zstd "Path = \"$OUT/z-\", PipeCmd = \"zstd -c -1 -T2\", FileSuffix = \".pcap.zst\""
conf onegroup "Mode = \"NULL\", Path = \"\", FilterBPF = \"udp and dst port 10001\""
push() { echo "push_pcap.lua --config $(Q "$PUSHCAP_ROOT/opt/fmadio/etc/$1.lua") --offline $2 > /dev/null"; }
prep="rm -rf $(Q "$OUT") $(Q "$PUSHCAP_ROOT/mnt/store0/push") && mkdir -p $(Q "$OUT")"
IN=$(Q "$WORK/isp.pcap")

hyperfine --style basic --warmup 1 --runs "$RUNS" --prepare "$prep" --export-json "$WORK/isp.json" \
	-n push_filtered "$(push filtered isp)" \
	-n tcpdump_filtered "tcpdump --time-stamp-precision=nano -r $IN -w $(Q "$OUT/t") 'net 192.168.1.0/24 and tcp' 2>/dev/null" \
	-n push_plain "$(push plain isp)" \
	-n tcpdump "tcpdump --time-stamp-precision=nano -r $IN -w $(Q "$OUT/t") 2>/dev/null" \
	-n push_zstd "$(push zstd isp)" \
	-n zstd "zstd -1 -c $IN > $(Q "$OUT/z")" \
	-n push_onegroup "$(push onegroup finance)" >&2

M() { median "$WORK/isp.json" "$1"; }
r() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }
{
	echo "## offline push benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(git -C "$ROOT" describe --always --dirty))"
	echo
	echo "Medians of $RUNS runs after a warm-up; $BYTES bytes per profile imported into a store on tmpfs; 60 s splits to tmpfs."
	echo
	echo "| case | push s | reference | reference s | ratio | target |"
	echo "|---|---:|---|---:|---:|---|"
	echo "| isp, Decap + BPF | $(M 0) | tcpdump -r -w 'net 192.168.1.0/24 and tcp' | $(M 1) | $(r "$(M 1)" "$(M 0)")x | >= 1.5 |"
	echo "| isp, no filter | $(M 2) | tcpdump -r -w | $(M 3) | $(r "$(M 3)" "$(M 2)")x | >= 1.5 |"
	echo "| isp, zstd -1 -T2 in-process | $(M 4) | zstd -1 -c | $(M 5) | $(r "$(M 5)" "$(M 4)")x | >= 1.5 |"
	echo "| finance, one group, NULL | $(M 6) | | | $(awk "BEGIN { printf \"%.2f\", $FIN_PKTS / $(M 6) / 1e6 }") Mpps | >= 10 Mpps |"
} > "$WORK/report.md"
mkdir -p "$(dirname "$RESULTS")"
cp "$WORK/report.md" "$RESULTS"
cat "$WORK/report.md"
