#!/usr/bin/env bash
# bench/run.sh: time pcap_split against the copy floor, tcpdump and editcap on
# the two pcapgen profiles (isp, finance), side by side in the same run, and
# print a markdown report (also written to $PUSHCAP_BENCH_OUT).
#
# Method (docs: /work/shared/reference/perf-baseline.md): inputs and outputs in
# tmpfs, hyperfine median wall time of several runs after one warm-up, the
# output directory emptied by --prepare before every run, Gbit/s = input bytes
# x 8 / median, Mpps = input packets / median. Absolute figures drift 20-60%
# between runs on shared machines, so the targets are judged on ratios
# measured in the same run.
#
# Environment:
#   PUSHCAP_BENCH_BYTES  input size per profile, pcapgen -b syntax (default 2e9, the reference size;
#                        K/M/G/T are x1024, so 2G = 2 GiB)
#   PUSHCAP_BENCH_RUNS   timed runs per command (default 5)
#   PUSHCAP_BENCH_DIR    work directory, should be tmpfs (default /dev/shm/pushcap-bench);
#                        removed when the script ends
#   PUSHCAP_BENCH_OUT    report file (default <repo>/build/bench-results.md)
set -euo pipefail
export LC_ALL=C   # stable number formatting and glob order (split names sort by time)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BYTES=${PUSHCAP_BENCH_BYTES:-2e9}
RUNS=${PUSHCAP_BENCH_RUNS:-5}
WORK=${PUSHCAP_BENCH_DIR:-/dev/shm/pushcap-bench}
RESULTS=${PUSHCAP_BENCH_OUT:-$ROOT/build/bench-results.md}
PROFILES=(isp finance)
# Same work for every tool and profile: split by 60 s of packet time.
# (finance spans 10 s, so it lands in one file; isp spans 600 s, 10-11 files.)
SPLIT_S=60

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

# ---- cleanup -------------------------------------------------------------
# Long steps run in their own process group (see run_group) so that a signal can stop
# them at once: bash defers traps while a foreground child runs, which would
# keep a TERM waiting for a whole hyperfine session, and would leave children
# writing into the work dir while we delete it.
BG_PID=
OWN_WORK=0
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$BG_PID" ]; then
		# TERM the whole group, give it up to 5 s, then KILL. Count members by
		# session (setsid made group = session = BG_PID) and skip zombies: the
		# dead leader stays one until the final wait reaps it.
		kill -TERM -- "-$BG_PID" 2>/dev/null || true
		for _ in $(seq 50); do
			# shellcheck disable=SC2009  # pgrep cannot select by session and skip zombies portably
			ps -o stat= --sid "$BG_PID" | grep -qv '^Z' || break
			sleep 0.1
		done
		kill -KILL -- "-$BG_PID" 2>/dev/null || true
		wait "$BG_PID" 2>/dev/null || true
	fi
	if [ "$OWN_WORK" = 1 ]; then rm -rf -- "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_group CMD...: run CMD in a new process group and wait for it; returns its
# status. A non-interactive script has no job control, so the background child
# is not a group leader and setsid does not fork: $! is the new group's id.
# '<&0' keeps our stdin: without job control bash gives a background command
# /dev/null as stdin unless the command redirects it explicitly.
run_group() {
	setsid "$@" <&0 &
	BG_PID=$!
	local rc=0
	wait "$BG_PID" || rc=$?
	BG_PID=
	return "$rc"
}

# to_bytes 2G -> 2147483648 (pcapgen's -b syntax: K/M/G/T x1024, floats like 2e9)
to_bytes() {
	awk -v s="$1" 'BEGIN {
		m = 1; u = toupper(substr(s, length(s)))
		if (u ~ /^[KMGT]$/) { m = 1024 ^ index("KMGT", u); s = substr(s, 1, length(s) - 1) }
		if (s !~ /^[0-9]*\.?[0-9]+([eE][+]?[0-9]+)?$/) exit 1
		printf "%.0f\n", s * m }'
}

# ---- checks and build ----------------------------------------------------
for t in hyperfine tcpdump editcap setsid cmp; do
	command -v "$t" >/dev/null || die "$t is not installed"
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 2 ]] || die "PUSHCAP_BENCH_RUNS must be an integer >= 2 (got '$RUNS')"
IN_BYTES=$(to_bytes "$BYTES") || die "PUSHCAP_BENCH_BYTES: cannot parse '$BYTES'"

# Quiet build: show make's output only when it fails.
if ! build_log=$(make -C "$ROOT" -s all 2>&1); then
	echo "$build_log" >&2
	die "build failed (make -C $ROOT all)"
fi
# pcap_split's shebang is '#!/usr/bin/env fmadiolua'; hyperfine's shell inherits this PATH.
export PATH="$ROOT/build:$ROOT/bin:$PATH"

# ---- work directory --------------------------------------------------------
# Refuse a directory that holds someone else's files: we delete it at the end.
# A marker file identifies a stale one left by a killed run, which is safe to reuse.
MARK=.pushcap-bench
if [ -d "$WORK" ] && [ ! -e "$WORK/$MARK" ] && [ -n "$(ls -A "$WORK")" ]; then
	die "$WORK exists and is not empty (not made by this script); set PUSHCAP_BENCH_DIR"
fi
mkdir -p "$WORK"
OWN_WORK=1
rm -rf -- "${WORK:?}"/* && touch "$WORK/$MARK"

# Peak use: both inputs, one command's outputs (--prepare deletes the previous
# ones) and headroom of one more input for the verification outputs and
# fragmentation: 4 x input + 512 MiB, about 9 GB for 2G profiles.
NEED=$((4 * IN_BYTES + 512 * 1024 * 1024))
AVAIL=$(df -P -B1 "$WORK" | awk 'NR == 2 { print $4 }')
FSTYPE=$(stat -f -c %T "$WORK")
if [ "$FSTYPE" = tmpfs ]; then
	# tmpfs pages are RAM: its size limit can exceed what memory can actually hold.
	MEMAVAIL=$(awk '/^MemAvailable:/ { printf "%.0f\n", $2 * 1024 }' /proc/meminfo)
	if [ "$MEMAVAIL" -lt "$AVAIL" ]; then AVAIL=$MEMAVAIL; fi
else
	note "warning: $WORK is $FSTYPE, not tmpfs; results will not match the reference method"
fi
if [ "$AVAIL" -lt "$NEED" ]; then
	die "not enough space in $WORK: need $(numfmt --to=iec "$NEED"), have $(numfmt --to=iec "$AVAIL") (try PUSHCAP_BENCH_BYTES=200M)"
fi

q() { printf '%q' "$1"; }   # shell-quote a path for the hyperfine command strings
OUT=$WORK/out
QOUT=$(q "$OUT")

# ---- datasets --------------------------------------------------------------
declare -A GEN SECONDS_OF PKTS SIZE
SECONDS_OF=([isp]=600 [finance]=10)
for p in "${PROFILES[@]}"; do
	GEN[$p]="pcapgen -p $p -b $BYTES -s ${SECONDS_OF[$p]} -S 1"
	note "generating $p: ${GEN[$p]}"
	run_group pcapgen -p "$p" -b "$BYTES" -s "${SECONDS_OF[$p]}" -S 1 -o "$WORK/$p.pcap" 2>"$WORK/$p.gen" ||
		{ cat "$WORK/$p.gen" >&2; die "pcapgen failed for $p"; }
	# pcapgen: <profile> seed <S>: <packets> packets <bytes> bytes span <first>..<last>
	PKTS[$p]=$(sed -n 's/^pcapgen: .*: \([0-9]*\) packets [0-9]* bytes span .*/\1/p' "$WORK/$p.gen")
	SIZE[$p]=$(stat -c %s "$WORK/$p.pcap")
	[ -n "${PKTS[$p]}" ] || die "no packet count in pcapgen's summary: $(cat "$WORK/$p.gen")"
	grep -q " ${SIZE[$p]} bytes " "$WORK/$p.gen" || die "$p: file size ${SIZE[$p]} differs from pcapgen's summary"
	note "  $(cat "$WORK/$p.gen")"
done

# ---- correctness (not timed) -------------------------------------------------
# A fast but broken split must not be reported as a result: the split files
# without their 24-byte headers, in time order, must be exactly the input's
# packet records, and every file must be nanosecond pcap like the input.
magic() { od -An -tx4 -N4 "$1" | tr -d ' '; }
declare -A NFILES
for p in "${PROFILES[@]}"; do
	IN=$WORK/$p.pcap
	note "verifying pcap_split on $p"
	rm -rf -- "$OUT" && mkdir -p "$OUT"
	rc=0
	run_group pcap_split -o "$OUT/x_" --split-time "${SPLIT_S}e9" <"$IN" >"$WORK/$p.verify.log" 2>&1 || rc=$?
	[ "$rc" = 0 ] || { cat "$WORK/$p.verify.log" >&2; die "pcap_split exited with status $rc on $p"; }
	files=("$OUT"/x_*)
	[ -e "${files[0]}" ] || die "pcap_split wrote no files for $p"
	for f in "${files[@]}"; do
		case $f in *.pending) die "pcap_split left $f unfinished on $p" ;; esac
		[ "$(magic "$f")" = a1b23c4d ] || die "$f is not nanosecond pcap (magic $(magic "$f"))"
	done
	[ "$(magic "$IN")" = a1b23c4d ] || die "$IN is not nanosecond pcap"
	grep -q "Total Pkts ${PKTS[$p]} Lost Pkts 0 Failed Splits 0" "$WORK/$p.verify.log" ||
		{ cat "$WORK/$p.verify.log" >&2; die "pcap_split's summary on $p does not report ${PKTS[$p]} packets, none lost"; }
	if ! cmp <(tail -c +25 "$IN") <(for f in "${files[@]}"; do tail -c +25 "$f"; done) >&2; then
		die "pcap_split output on $p differs from the input (records compared without headers)"
	fi
	NFILES[$p]=${#files[@]}
	note "  ok: ${#files[@]} file(s), records identical to the input"
done
rm -rf -- "$OUT"

# ---- timing ----------------------------------------------------------------
NAMES=(copy tcpdump editcap pcap_split)
declare -A CMD MED MIN MAX
commands_for() {  # $1 = profile; fills CMD[profile,name]
	local in
	in=$(q "$WORK/$1.pcap")
	CMD[$1,copy]="cat $in > $QOUT/copy"
	CMD[$1,tcpdump]="tcpdump --time-stamp-precision=nano -r $in -w $QOUT/t 2>/dev/null"
	CMD[$1,editcap]="editcap -F nsecpcap -i $SPLIT_S $in $QOUT/e"
	CMD[$1,pcap_split]="pcap_split -o $QOUT/x_ --split-time ${SPLIT_S}e9 < $in > /dev/null"
}

# stats JSON CSV: print "name median min max" per command.
stats() {
	if command -v python3 >/dev/null; then
		python3 -c 'import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(r["command"], r["median"], r["min"], r["max"])' "$1"
	elif command -v jq >/dev/null; then
		jq -r '.results[] | "\(.command) \(.median) \(.min) \(.max)"' "$1"
	else
		# CSV columns: command,mean,stddev,median,user,system,min,max (names have no commas)
		awk -F, 'NR > 1 { print $1, $4, $7, $8 }' "$2"
	fi
}

for p in "${PROFILES[@]}"; do
	commands_for "$p"
	args=()
	for n in "${NAMES[@]}"; do args+=(-n "$n" "${CMD[$p,$n]}"); done
	note "timing $p (1 warm-up + $RUNS runs per command)"
	run_group hyperfine --style basic --warmup 1 --runs "$RUNS" \
		--prepare "rm -rf $QOUT; mkdir -p $QOUT" \
		--export-json "$WORK/$p.json" --export-csv "$WORK/$p.csv" \
		"${args[@]}" >&2 || die "hyperfine failed on $p (a command exited non-zero?)"
	while read -r n med mn mx; do
		MED[$p,$n]=$med MIN[$p,$n]=$mn MAX[$p,$n]=$mx
	done < <(stats "$WORK/$p.json" "$WORK/$p.csv")
	for n in "${NAMES[@]}"; do [ -n "${MED[$p,$n]:-}" ] || die "no median for $n on $p"; done
	rm -rf -- "$OUT"
done

# ---- report ----------------------------------------------------------------
calc() { awk "BEGIN { printf \"$1\", $2 }"; }   # calc FORMAT EXPR
ratio() { calc %.2f "$1 / $2"; }                 # speed ratio = inverse time ratio
commas() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }  # 1234567 -> 1,234,567
REPORT=$WORK/report.md
{
	echo "## pcap_split benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
		"$(awk '/^MemTotal:/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)," \
		"kernel $(uname -srm), load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- pushcap: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)," \
		"$(hyperfine --version), tcpdump $(tcpdump --version 2>&1 | awk 'NR == 1 { print $3 }')," \
		"editcap $(editcap -h 2>&1 | awk 'NR == 1 { print $3 }')"
	echo "- work dir: $WORK ($FSTYPE); inputs and outputs both there (warm page cache)"
	echo "- method: hyperfine median wall time of $RUNS runs after 1 warm-up; \`--prepare 'rm -rf OUT; mkdir -p OUT'\`" \
		"before every run. Commands run through hyperfine's default shell (\`-N\` cannot do the redirections);" \
		"hyperfine subtracts its own measured shell-spawn time (~1 ms) as usual, this script subtracts nothing."
	echo "- Gbit/s = input bytes x 8 / median; Mpps = input packets / median; x copy = copy's median / this row's" \
		"median (speed relative to the read+write floor); x tcpdump, x editcap likewise, for pcap_split." \
		"Every command writes all the input; editcap and pcap_split split by ${SPLIT_S} s of packet time."
	echo
	echo "| profile | generator | bytes | packets | avg frame | pcap_split files |"
	echo "|---|---|---:|---:|---:|---:|"
	for p in "${PROFILES[@]}"; do
		echo "| $p | \`${GEN[$p]}\` | $(commas <<<"${SIZE[$p]}") | $(commas <<<"${PKTS[$p]}") |" \
			"$(calc %.0f "(${SIZE[$p]} - 24) / ${PKTS[$p]} - 16") B | ${NFILES[$p]} |"
	done
	echo
	echo "Commands (IN = $WORK/<profile>.pcap, OUT = $OUT; pcap_split verified byte-exact first, untimed):"
	echo
	echo '```'
	commands_for PROFILE
	for n in "${NAMES[@]}"; do
		echo "${CMD[PROFILE,$n]}" | sed -e "s|$(q "$WORK/PROFILE.pcap")|IN|g" -e "s|$QOUT|OUT|g"
	done
	echo '```'
	echo
	echo "| profile | command | median s | Gbit/s | Mpps | x copy | x tcpdump | x editcap | min-max s |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
	for p in "${PROFILES[@]}"; do
		for n in "${NAMES[@]}"; do
			m=${MED[$p,$n]}
			xt='' xe=''
			if [ "$n" = pcap_split ]; then
				xt=$(ratio "${MED[$p,tcpdump]}" "$m")
				xe=$(ratio "${MED[$p,editcap]}" "$m")
			fi
			echo "| $p | $n | $(calc %.3f "$m") | $(calc %.2f "${SIZE[$p]} * 8 / $m / 1e9") |" \
				"$(calc %.2f "${PKTS[$p]} / $m / 1e6") | $(ratio "${MED[$p,copy]}" "$m") | $xt | $xe |" \
				"$(calc %.3f "${MIN[$p,$n]}")-$(calc %.3f "${MAX[$p,$n]}") |"
		done
	done
	echo
	echo "### Targets (pcap_split, both profiles, ratios from this run)"
	echo
	echo "| target | isp | finance | met |"
	echo "|---|---:|---:|---|"
	for t in "editcap 2.0" "tcpdump 1.5" "copy 0.6"; do
		read -r ref goal <<<"$t"
		cells='' ok=yes
		for p in "${PROFILES[@]}"; do
			cells+=" $(ratio "${MED[$p,$ref]}" "${MED[$p,pcap_split]}")x |"
			# judged on the unrounded ratio
			awk "BEGIN { exit !(${MED[$p,$ref]} / ${MED[$p,pcap_split]} >= $goal) }" || ok=NO
		done
		label="copy floor"; [ "$ref" = copy ] || label=$ref
		echo "| pcap_split >= ${goal}x $label |$cells $ok |"
	done
} >"$REPORT"

mkdir -p "$(dirname "$RESULTS")"
cp "$REPORT" "$RESULTS"
cat "$REPORT"
note "report written to $RESULTS"
