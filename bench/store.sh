#!/usr/bin/env bash
# bench/store.sh: the capture store against its floors, side by side in one
# run (issue 3): import vs `cat in > out`, and stream_cat (pcap and chunked)
# to /dev/null vs `cat in > /dev/null`, on both pcapgen profiles; plus the
# peak memory of each tool at two input sizes, which must not grow with it.
#
# Environment: PUSHCAP_BENCH_BYTES (default 2e9), PUSHCAP_BENCH_RUNS (default
# 5), PUSHCAP_BENCH_DIR (default /dev/shm/pushcap-store-bench, removed at
# the end), PUSHCAP_BENCH_OUT (default build/bench-store.md).
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BYTES=${PUSHCAP_BENCH_BYTES:-2e9}
RUNS=${PUSHCAP_BENCH_RUNS:-5}
WORK=${PUSHCAP_BENCH_DIR:-/dev/shm/pushcap-store-bench}
RESULTS=${PUSHCAP_BENCH_OUT:-$ROOT/build/bench-store.md}
die() { echo "bench-store: $*" >&2; exit 1; }
note() { echo "bench-store: $*" >&2; }

[ ! -e "$WORK" ] || [ -e "$WORK/.pushcap-bench" ] || die "$WORK exists and is not ours; set PUSHCAP_BENCH_DIR"
mkdir -p "$WORK" && touch "$WORK/.pushcap-bench"
trap 'rm -rf -- "$WORK"' EXIT
make -C "$ROOT" -s all >/dev/null || die "build failed"
export PATH="$ROOT/build:$ROOT/bin:$PATH"
IN_BYTES=$(awk -v s="$BYTES" 'BEGIN { printf "%.0f", s }')
# input, a store of 2.5 inputs, and one copy
NEED=$((5 * IN_BYTES))
AVAIL=$(df -P -B1 "$WORK" | awk 'NR == 2 { print $4 }')
[ "$AVAIL" -ge "$NEED" ] || die "need $NEED bytes in $WORK, have $AVAIL (try PUSHCAP_BENCH_BYTES=200e6)"

STORE_SIZE=$((IN_BYTES * 5 / 2))
Q() { printf '%q' "$1"; }
median() { python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["median"])' "$1" "$2"; }
rss() { /usr/bin/time -f %M env "$@" 2>&1 >/dev/null | tail -n 1; }  # rss VAR=x CMD...

declare -A R
for p in isp finance; do
	secs=600; [ $p = finance ] && secs=10
	IN=$WORK/$p.pcap
	note "generating $p"
	pcapgen -p $p -b "$BYTES" -s $secs -S 1 -o "$IN" 2>/dev/null
	ST=$WORK/root-$p
	env_="PUSHCAP_ROOT=$(Q "$ST")"
	mk="rm -rf $(Q "$ST") $(Q "$WORK/out") && mkdir -p $(Q "$WORK/out") && $env_ stream_capture --create-store $STORE_SIZE 2>/dev/null"
	note "timing import on $p"
	hyperfine --style basic --warmup 1 --runs "$RUNS" --prepare "$mk" --export-json "$WORK/$p-w.json" \
		-n copy "cat $(Q "$IN") > $(Q "$WORK/out/copy")" \
		-n import "$env_ stream_capture --import $(Q "$IN") --name x 2>/dev/null" >&2
	# one capture to read back, checked byte for byte before it is timed
	eval "$mk"
	eval "$env_ stream_capture --import $(Q "$IN") --name x 2>/dev/null"
	eval "$env_ stream_cat x 2>/dev/null" | cmp - "$IN" || die "$p: stream_cat output differs from the input"
	note "timing stream_cat on $p"
	hyperfine --style basic --warmup 1 --runs "$RUNS" --export-json "$WORK/$p-r.json" \
		-n read "cat $(Q "$IN") > /dev/null" \
		-n stream_cat "$env_ stream_cat x > /dev/null 2>&1" \
		-n stream_cat_chunked "$env_ stream_cat --chunked x > /dev/null 2>&1" >&2
	R[$p,copy]=$(median "$WORK/$p-w.json" 0)
	R[$p,import]=$(median "$WORK/$p-w.json" 1)
	R[$p,read]=$(median "$WORK/$p-r.json" 0)
	R[$p,pcap]=$(median "$WORK/$p-r.json" 1)
	R[$p,chunked]=$(median "$WORK/$p-r.json" 2)
	R[$p,size]=$(stat -c %s "$IN")
	# peak memory at the full size and at a quarter of it
	R[$p,rss_cat]=$(rss PUSHCAP_ROOT="$ST" stream_cat x)
	pcapgen -p $p -b $((IN_BYTES / 4)) -s $secs -S 2 -o "$WORK/q.pcap" 2>/dev/null
	R[$p,rss_imp]=$(rss PUSHCAP_ROOT="$ST" stream_capture --import "$IN" --name full)
	R[$p,rss_imp_q]=$(rss PUSHCAP_ROOT="$ST" stream_capture --import "$WORK/q.pcap" --name quarter)
	R[$p,rss_cat_q]=$(rss PUSHCAP_ROOT="$ST" stream_cat quarter)
	rm -rf -- "$ST" "$IN" "$WORK/q.pcap" "$WORK/out"
done

r() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }
g() { awk "BEGIN { printf \"%.2f\", $1 * 8 / $2 / 1e9 }"; }
{
	echo "## capture store benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(git -C "$ROOT" describe --always --dirty))"
	echo
	echo "Medians of $RUNS runs after a warm-up, $BYTES bytes per profile in $WORK (tmpfs);"
	echo "the store is recreated (preallocated) before each timed import."
	echo
	echo "| profile | command | median s | Gbit/s | ratio | target |"
	echo "|---|---|---:|---:|---:|---|"
	for p in isp finance; do
		s=${R[$p,size]}
		echo "| $p | cat in > out | ${R[$p,copy]} | $(g "$s" "${R[$p,copy]}") | 1.00 | |"
		echo "| $p | stream_capture --import | ${R[$p,import]} | $(g "$s" "${R[$p,import]}") | $(r "${R[$p,copy]}" "${R[$p,import]}") x copy | >= 0.5 |"
		echo "| $p | cat in > /dev/null | ${R[$p,read]} | $(g "$s" "${R[$p,read]}") | 1.00 | |"
		echo "| $p | stream_cat > /dev/null | ${R[$p,pcap]} | $(g "$s" "${R[$p,pcap]}") | $(r "${R[$p,read]}" "${R[$p,pcap]}") x read | >= 0.7 |"
		echo "| $p | stream_cat --chunked > /dev/null | ${R[$p,chunked]} | $(g "$s" "${R[$p,chunked]}") | $(r "${R[$p,read]}" "${R[$p,chunked]}") x read | >= 0.7 |"
	done
	echo
	echo "Peak resident memory (KiB), full input vs a quarter of it:"
	echo
	echo "| profile | import full | import 1/4 | stream_cat full | stream_cat 1/4 |"
	echo "|---|---:|---:|---:|---:|"
	for p in isp finance; do
		echo "| $p | ${R[$p,rss_imp]} | ${R[$p,rss_imp_q]} | ${R[$p,rss_cat]} | ${R[$p,rss_cat_q]} |"
	done
} > "$WORK/report.md"
mkdir -p "$(dirname "$RESULTS")"
cp "$WORK/report.md" "$RESULTS"
cat "$WORK/report.md"
