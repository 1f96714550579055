/* ring.c: FMADIO's lxc_ring, the shared-memory packet ring that hands
 * packets to a consumer in an analytics container (fmadio-behaviour.md 4).
 *
 * The file layout is byte-compatible with the appliance's fmadio_packet.h
 * ring, so its consumers (fmadio2pcap, the Suricata plugin) read ours and
 * ours reads theirs: three 4 KiB header pages (settings; Put; Get, each on
 * its own page so producer and consumer never share a cache line), then
 * 1024 slots of 12 KiB.  Put and Get count up forever; a slot is index &
 * Mask.  The producer writes the slot, then publishes Put; the consumer
 * reads the slot, then publishes Get. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pushcap.h"

#define RING_VERSION 0x00000100u
#define RING_SIZE 12595200u
#define SLOT_SIZE 12288u
#define RING_DEPTH 1024u
#define SLOT_PAYLOAD 10240u
#define SLOTS_AT 12288u
#define FLAG_EOF 0x01
#define FLAG_FCS 0x02

/* header page 0, packed as the appliance lays it out */
#define OFF_VERSION 0
#define OFF_SIZE 4
#define OFF_SIZEPKT 8
#define OFF_PATH 12
#define OFF_DEPTH 140
#define OFF_MASK 148
#define OFF_FLOWCTL 156
#define OFF_TIMEOUT 160
#define OFF_PENDING 168
#define OFF_PUT 4096
#define OFF_PUTBYTE 4104
#define OFF_PUTTS 4112
#define OFF_GET 8192
#define OFF_GETBYTE 8200
#define OFF_GETTS 8208

struct pc_ring {
	uint8_t *m;
	int tx;
	int eof;
	int stalled;
	int flow_control;
	int64_t timeout_ns;
	uint8_t *buf;            /* consumer: copies of the slots handed out */
	uint64_t truncated;
};

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void set32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void set64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static int64_t *put_p(const pc_ring *r) { return (int64_t *)(void *)(r->m + OFF_PUT); }
static int64_t *get_p(const pc_ring *r) { return (int64_t *)(void *)(r->m + OFF_GET); }

static uint8_t *slot(const pc_ring *r, int64_t i)
{
	return r->m + SLOTS_AT + (size_t)(i & (RING_DEPTH - 1)) * SLOT_SIZE;
}

static pc_ring *map_ring(const char *path, int tx, char *err, size_t errlen)
{
	int fd = open(path, (tx ? O_RDWR | O_CREAT : O_RDWR) | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open ring %s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st)) {
		snprintf(err, errlen, "cannot stat ring %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (st.st_size != RING_SIZE) {
		if (!tx) {
			snprintf(err, errlen, "%s is %lld bytes, not an lxc_ring (%u bytes)", path,
				 (long long)st.st_size, RING_SIZE);
			close(fd);
			return NULL;
		}
		if (ftruncate(fd, RING_SIZE)) {
			snprintf(err, errlen, "cannot size ring %s: %s", path, strerror(errno));
			close(fd);
			return NULL;
		}
	}
	void *m = mmap(NULL, RING_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		snprintf(err, errlen, "cannot map ring %s: %s", path, strerror(errno));
		return NULL;
	}
	pc_ring *r = calloc(1, sizeof *r);
	if (!r) {
		munmap(m, RING_SIZE);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->m = m;
	r->tx = tx;
	return r;
}

/* A reset writes the version last: a consumer that sees it sees the rest. */
static void reset(pc_ring *r, const char *path, int flow_control, int64_t timeout_ns)
{
	memset(r->m, 0, SLOTS_AT);
	set32(r->m + OFF_SIZE, RING_SIZE);
	set32(r->m + OFF_SIZEPKT, SLOT_SIZE);
	set64(r->m + OFF_DEPTH, RING_DEPTH);
	set64(r->m + OFF_MASK, RING_DEPTH - 1);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	__atomic_store_n((uint32_t *)(void *)(r->m + OFF_VERSION), RING_VERSION, __ATOMIC_RELEASE);
	strncpy((char *)r->m + OFF_PATH, path, 127);
	set32(r->m + OFF_FLOWCTL, flow_control ? 1 : 0);
	set64(r->m + OFF_TIMEOUT, (uint64_t)timeout_ns);
}

static int layout_ok(const pc_ring *r)
{
	return get32(r->m + OFF_VERSION) == RING_VERSION && get32(r->m + OFF_SIZE) == RING_SIZE &&
	       get32(r->m + OFF_SIZEPKT) == SLOT_SIZE && get64(r->m + OFF_DEPTH) == RING_DEPTH &&
	       get64(r->m + OFF_MASK) == RING_DEPTH - 1;
}

pc_ring *pc_ring_open_tx(const char *path, int flow_control, int64_t timeout_ns, int do_reset,
			 char *err, size_t errlen)
{
	pc_ring *r = map_ring(path, 1, err, errlen);
	if (!r)
		return NULL;
	/* as on the appliance, an existing ring keeps its settings */
	if (do_reset || !layout_ok(r))
		reset(r, path, flow_control, timeout_ns);
	r->flow_control = get32(r->m + OFF_FLOWCTL) != 0;
	r->timeout_ns = (int64_t)get64(r->m + OFF_TIMEOUT);
	return r;
}

pc_ring *pc_ring_open_rx(const char *path, char *err, size_t errlen)
{
	pc_ring *r = map_ring(path, 0, err, errlen);
	if (!r)
		return NULL;
	if (!layout_ok(r)) {
		snprintf(err, errlen, "%s: not an lxc_ring of this layout (version 0x%x, size %u, slot %u)", path,
			 get32(r->m + OFF_VERSION), get32(r->m + OFF_SIZE), get32(r->m + OFF_SIZEPKT));
		pc_ring_close(r);
		return NULL;
	}
	r->buf = malloc((size_t)RING_DEPTH * SLOT_PAYLOAD);
	if (!r->buf) {
		snprintf(err, errlen, "out of memory");
		pc_ring_close(r);
		return NULL;
	}
	/* a consumer that attaches starts at the producer's position */
	__atomic_store_n(get_p(r), __atomic_load_n(put_p(r), __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
	return r;
}

/* Waits until the consumer leaves a free slot; 0, or -1 past the timeout. */
static int wait_room(pc_ring *r)
{
	int64_t put = *put_p(r);
	if (!r->flow_control || put - __atomic_load_n(get_p(r), __ATOMIC_ACQUIRE) < (int64_t)RING_DEPTH - 1)
		return 0;
	int64_t start = pc_mono_ns();
	for (unsigned spin = 0;; spin++) {
		if (put - __atomic_load_n(get_p(r), __ATOMIC_ACQUIRE) < (int64_t)RING_DEPTH - 1)
			return 0;
		if (pc_signal_pending())
			return -1;
		if (pc_mono_ns() - start > r->timeout_ns)
			return -1;
		if (spin < 64) {
			sched_yield();
		} else {
			struct timespec ts = { 0, 20000 };
			nanosleep(&ts, NULL);
		}
	}
}

static void put_slot(pc_ring *r, uint64_t ts, uint32_t wire, uint32_t caplen, uint8_t port, uint8_t flag,
		     const uint8_t *data)
{
	int64_t put = *put_p(r);
	uint8_t *s = slot(r, put);
	set64(s, ts);
	uint16_t w16 = wire > 65535 ? 65535 : (uint16_t)wire, c16 = (uint16_t)caplen;
	memcpy(s + 8, &w16, 2);
	memcpy(s + 10, &c16, 2);
	s[12] = port;
	s[13] = flag;
	s[14] = s[15] = 0;
	set64(s + 16, 0);
	if (caplen)
		memcpy(s + 24, data, caplen);
	__atomic_store_n(put_p(r), put + 1, __ATOMIC_RELEASE);
	set64(r->m + OFF_PUTBYTE, get64(r->m + OFF_PUTBYTE) + caplen);
	set64(r->m + OFF_PUTTS, ts);
}

int pc_ring_put(pc_ring *r, const pc_pkt *pkts, int n)
{
	r->stalled = 0;
	for (int i = 0; i < n; i++) {
		const pc_pkt *p = &pkts[i];
		if (!p->wirelen)
			continue;
		if (wait_room(r)) {
			r->stalled = 1;
			return i;
		}
		uint32_t caplen = p->caplen;
		if (caplen > SLOT_PAYLOAD) {
			caplen = SLOT_PAYLOAD; /* a slot holds 10 KiB of frame */
			r->truncated++;
		}
		put_slot(r, p->ts, p->wirelen, caplen, p->port, (p->flags & PC_PKT_FCS_ERR) ? FLAG_FCS : 0, p->data);
	}
	return n;
}

int pc_ring_put_eof(pc_ring *r, uint64_t ts)
{
	if (wait_room(r)) {
		r->stalled = 1;
		return -1;
	}
	put_slot(r, ts, 0, 0, 0, FLAG_EOF, NULL);
	return 0;
}

int pc_ring_get(pc_ring *r, pc_pkt *out, int max)
{
	int n = 0;
	if (max > (int)RING_DEPTH)
		max = RING_DEPTH;
	int64_t put = __atomic_load_n(put_p(r), __ATOMIC_ACQUIRE);
	int64_t get = *get_p(r);
	while (n < max && get < put) {
		const uint8_t *s = slot(r, get);
		if (s[13] & FLAG_EOF) {
			r->eof = 1; /* left in place: every later read sees the end too */
			break;
		}
		uint16_t w16, c16;
		memcpy(&w16, s + 8, 2);
		memcpy(&c16, s + 10, 2);
		uint32_t caplen = c16 > SLOT_PAYLOAD ? SLOT_PAYLOAD : c16;
		uint8_t *dst = r->buf + (size_t)n * SLOT_PAYLOAD;
		memcpy(dst, s + 24, caplen);
		pc_pkt *p = &out[n++];
		p->ts = get64(s);
		p->data = dst;
		p->caplen = caplen;
		p->wirelen = w16 ? w16 : (caplen ? caplen : 1);
		p->port = s[12];
		p->flags = (s[13] & FLAG_FCS) ? PC_PKT_FCS_ERR : 0;
		p->rec = 0;
		get++;
		__atomic_store_n(get_p(r), get, __ATOMIC_RELEASE);
		set64(r->m + OFF_GETBYTE, get64(r->m + OFF_GETBYTE) + caplen);
		set64(r->m + OFF_GETTS, p->ts);
	}
	return n;
}

int pc_ring_eof(const pc_ring *r) { return r->eof; }
int pc_ring_stalled(const pc_ring *r) { return r->stalled; }

void pc_ring_close(pc_ring *r)
{
	if (!r)
		return;
	munmap(r->m, RING_SIZE);
	free(r->buf);
	free(r);
}
