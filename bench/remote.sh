#!/usr/bin/env bash
# bench/remote.sh: push to remote targets against one single-stream upload of
# the same bytes, side by side in one run (issue 5, item 8).
#
#   push RCLONE to s3rver, 60 s splits   vs  rclone rcat of the capture as one object
#   push CURL to vsftpd, 60 s splits     vs  curl -T of the capture as one file
#   push LXC into an lxc_ring drained by ring2pcap > /dev/null
#                                        vs  cat of the capture > /dev/null
#
# Both servers run on 127.0.0.1 and are stopped at the end.  The target: the
# per-split overhead keeps each push within 0.8x of the single-stream upload
# (ratio = upload time / push time >= 0.8).
#
# Environment: PUSHCAP_BENCH_BYTES (default 1e9), PUSHCAP_BENCH_RUNS (default
# 3), PUSHCAP_BENCH_DIR (default /dev/shm/pushcap-remote-bench, removed at
# the end), PUSHCAP_BENCH_OUT (default build/bench-remote.md).
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BYTES=${PUSHCAP_BENCH_BYTES:-1e9}
RUNS=${PUSHCAP_BENCH_RUNS:-3}
WORK=${PUSHCAP_BENCH_DIR:-/dev/shm/pushcap-remote-bench}
RESULTS=${PUSHCAP_BENCH_OUT:-$ROOT/build/bench-remote.md}
die() { echo "bench-remote: $*" >&2; exit 1; }

[ ! -e "$WORK" ] || [ -e "$WORK/.pushcap-bench" ] || die "$WORK exists and is not ours; set PUSHCAP_BENCH_DIR"
[ -f "$ROOT/spec/s3server/node_modules/s3rver/package.json" ] || die "s3rver is not installed: run make deps"
mkdir -p "$WORK" && touch "$WORK/.pushcap-bench"
PIDS=()
FTPUSER=pcbench$$
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	userdel "$FTPUSER" 2>/dev/null || true
	rm -rf -- "$WORK"
}
trap cleanup EXIT
make -C "$ROOT" -s all >/dev/null || die "build failed"
export PATH="$ROOT/build:$ROOT/bin:$ROOT/analytics:$PATH"
export PUSHCAP_ROOT=$WORK/root
# rclone refuses to start when AWS_CA_BUNDLE names no usable file
unset AWS_CA_BUNDLE
IN_BYTES=$(awk -v s="$BYTES" 'BEGIN { printf "%.0f", s }')
AVAIL=$(df -P -B1 "$WORK" | awk 'NR == 2 { print $4 }')
[ "$AVAIL" -ge $((6 * IN_BYTES)) ] || die "need $((6 * IN_BYTES)) bytes in $WORK (try PUSHCAP_BENCH_BYTES=200e6)"

Q() { printf '%q' "$1"; }
median() { python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["median"])' "$1" "$2"; }
wait_port() {  # wait_port PORT
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	die "nothing listens on 127.0.0.1:$1"
}

# ten minutes of ISP-like packet time: ten 60 s splits
pcapgen -p isp -b "$BYTES" -s 600 -S 1 -o "$WORK/isp.pcap" 2>/dev/null
stream_capture --create-store $((IN_BYTES * 3 / 2)) 2>/dev/null
stream_capture --import "$WORK/isp.pcap" --name isp 2>/dev/null
IN=$(Q "$WORK/isp.pcap")

# ---- s3rver and the rclone config at the appliance path ----------------------
mkdir -p "$WORK/s3" "$PUSHCAP_ROOT/opt/fmadio/etc"
node "$ROOT/spec/s3server/start.js" "$WORK/s3" bench 0 > "$WORK/s3.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q READY "$WORK/s3.log" && break; sleep 0.1; done
S3PORT=$(sed -n 's/^READY \([0-9]*\)$/\1/p' "$WORK/s3.log")
[ -n "$S3PORT" ] || die "s3rver did not start: $(cat "$WORK/s3.log")"
CONF=$PUSHCAP_ROOT/opt/fmadio/etc/rclone.conf
printf '[s3]\ntype = s3\nprovider = Other\nendpoint = http://127.0.0.1:%d\naccess_key_id = S3RVER\nsecret_access_key = S3RVER\nforce_path_style = true\n' \
	"$S3PORT" > "$CONF"

# ---- vsftpd with a local user ------------------------------------------------
FTPPORT=$((21000 + RANDOM % 9000))
PASS=Pw$RANDOM$RANDOM
mkdir -p "$WORK/ftp" "$WORK/empty" && chmod 755 "$WORK" "$WORK/empty"
useradd -M -s /bin/bash -d "$WORK/ftp" "$FTPUSER"
echo "$FTPUSER:$PASS" | chpasswd
chown "$FTPUSER" "$WORK/ftp"
cat > "$WORK/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$FTPPORT
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
chroot_local_user=YES
allow_writeable_chroot=YES
local_root=$WORK/ftp
pasv_enable=YES
pasv_min_port=$((FTPPORT + 20000))
pasv_max_port=$((FTPPORT + 20099))
secure_chroot_dir=$WORK/empty
pam_service_name=vsftpd
seccomp_sandbox=NO
isolate_network=NO
isolate=NO
userlist_enable=NO
delay_failed_login=0
EOF
/usr/sbin/vsftpd "$WORK/vsftpd.conf" > "$WORK/vsftpd.out" 2>&1 &
PIDS+=($!)
wait_port "$FTPPORT"
FTP=ftp://127.0.0.1:$FTPPORT

# ---- push configs ----------------------------------------------------------------
conf() {  # conf NAME TARGET-FIELDS
	printf 'return { Target = { { Desc = "b", Split = "--split-time 60e9", FileName = "--filename-tstr-HHMMSS", %s } } }\n' \
		"$2" > "$PUSHCAP_ROOT/opt/fmadio/etc/$1.lua"
}
RING=$WORK/ring.lxc
conf rclone 'Mode = "RCLONE", Path = "s3:bench/push/all-"'
conf curl "Mode = \"CURL\", Path = \"$FTP/push/all-\", CurlArgs = \"-u $FTPUSER:$PASS --ftp-create-dirs\""
conf lxc "Mode = \"LXC\", Path = \"$RING\""
push() { echo "push_pcap.lua --config $(Q "$PUSHCAP_ROOT/opt/fmadio/etc/$1.lua") --offline isp > /dev/null"; }
clean="rm -rf $(Q "$PUSHCAP_ROOT/mnt/store0/push") $(Q "$WORK/s3/bench/push") $(Q "$WORK/ftp/push") $(Q "$WORK/ftp/one.pcap")"
# the ring's reader runs for the whole push and ends at the EOF mark
lxc_cmd="rm -f $(Q "$RING"); { ring2pcap $(Q "$RING") > /dev/null & } ; $(push lxc); wait"

hyperfine --style basic --warmup 1 --runs "$RUNS" --prepare "$clean" --export-json "$WORK/remote.json" \
	-n push_rclone "$(push rclone)" \
	-n rclone_rcat "rclone --config=$(Q "$CONF") rcat s3:bench/one.pcap < $IN" \
	-n push_curl "$(push curl)" \
	-n curl_T "curl -s -S -u $FTPUSER:$PASS -T $IN $FTP/one.pcap" \
	-n push_lxc "$lxc_cmd" \
	-n cat "cat $IN > /dev/null"

# each push delivered every byte: one more run of each, checked
eval "$clean"
eval "$(push rclone)" || die "the check push to S3 failed: $(tail -5 "$PUSHCAP_ROOT/mnt/store0/log/push_b.cur")"
eval "$(push curl)" || die "the check push to FTP failed: $(tail -5 "$PUSHCAP_ROOT/mnt/store0/log/push_b.cur")"
sum_remote() { rclone --config="$CONF" lsl "$1" | awk '{ n++; b += $1 - 24 } END { printf "%d %d\n", n, b }'; }
read -r objs obytes < <(sum_remote s3:bench/push)
read -r ftps fbytes < <(sum_remote "$WORK/ftp/push")
want=$(( $(stat -c %s "$WORK/isp.pcap") - 24 ))
[ "$objs" -ge 10 ] && [ "$obytes" -eq "$want" ] || die "S3 holds $objs objects with $obytes packet bytes, want >= 10 and $want"
[ "$ftps" -ge 10 ] && [ "$fbytes" -eq "$want" ] || die "FTP holds $ftps files with $fbytes packet bytes, want >= 10 and $want"

P_R=$(median "$WORK/remote.json" 0); B_R=$(median "$WORK/remote.json" 1)
P_C=$(median "$WORK/remote.json" 2); B_C=$(median "$WORK/remote.json" 3)
P_L=$(median "$WORK/remote.json" 4); B_L=$(median "$WORK/remote.json" 5)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mbs() { awk -v s="$1" -v n="$IN_BYTES" 'BEGIN { printf "%.0f", n / s / 1e6 }'; }
{
	echo "## Remote targets ($(date -u +%Y-%m-%d), $IN_BYTES bytes of ISP profile, 60 s splits, median of $RUNS)"
	echo
	echo "| push | s | MB/s | single-stream upload | s | ratio (upload / push), target >= 0.8 |"
	echo "|---|---|---|---|---|---|"
	echo "| RCLONE to s3rver | $P_R | $(mbs "$P_R") | rclone rcat | $B_R | $(ratio "$B_R" "$P_R") |"
	echo "| CURL to vsftpd | $P_C | $(mbs "$P_C") | curl -T | $B_C | $(ratio "$B_C" "$P_C") |"
	echo "| LXC, ring2pcap > /dev/null | $P_L | $(mbs "$P_L") | cat > /dev/null | $B_L | $(ratio "$B_L" "$P_L") |"
} | tee "$RESULTS"
