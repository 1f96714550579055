/* pcap_write.c: nanosecond pcap 2.4 out through large buffered writes.
 *
 * The writer never drops what it has accepted: when a write fails (disk
 * full, dead pipe) the unwritten bytes stay buffered, put() stops taking
 * packets and reports how many it took, and the caller decides whether to
 * retry the flush later or give up and count the loss.
 *
 * With a compressor attached (pc_writer_set_comp) every byte goes through
 * it: the buffer is compressed at flush time and the compressed bytes are
 * written to fd; the tee still gets the plain pcap bytes. */
#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pushcap.h"

/* curl_put.c's side of a direct upload (Lua has no use for it): hands the
 * bytes to libcurl and waits until it has taken them; 0, or -EPIPE when
 * the transfer ended first */
int pc_upload_writev(pc_upload *u, const struct iovec *iov, int n);

/* compress.c's side of the hook (kept out of pushcap.h: Lua has no use for it) */
void pc_comp_begin(pc_comp *c);
int pc_comp_step(pc_comp *c, const uint8_t *in, size_t len, int end, size_t *used,
		 const uint8_t **out, size_t *outlen);

#define REC_HDR 16
#define GATHER_MIN (16u << 10)  /* fewer bytes are cheaper to copy than to write */

enum { OUT_PCAP, OUT_FMAD };

struct pc_writer {
	int fd, tee_fd;
	int fmt;                /* OUT_PCAP or OUT_FMAD */
	/* FMAD mode: the open chunk's header sits at buf[chunk_at] */
	uint32_t chunk_bytes;   /* record bytes per chunk at most */
	int chunk_open;
	size_t chunk_at;
	uint32_t chunk_pkts, chunk_len;
	uint64_t chunk_wire, chunk_cap, chunk_ts0, chunk_ts1;
	int err;                /* last errno from a failed write */
	uint8_t *buf;
	size_t cap, len;
	size_t done, tee_done;  /* bytes of buf already written to fd / tee */
	/* in-process compression: buf[0..cdone) is taken by comp, and
	 * zout[zdone..zlen) is compressed output fd has not taken yet */
	pc_comp *comp;
	size_t cdone;
	const uint8_t *zout;
	size_t zlen, zdone;
	int ending;             /* pc_writer_finish: end the compressed stream */
	pc_upload *up;          /* bytes go to this upload instead of fd */
};

static int write_all(int fd, const uint8_t *p, size_t len, size_t *done)
{
	while (*done < len) {
		ssize_t n = write(fd, p + *done, len - *done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		*done += (size_t)n;
	}
	return 0;
}

/* write_all to the writer's output: its fd, or its upload */
static int out_all(pc_writer *w, const uint8_t *p, size_t len, size_t *done)
{
	if (!w->up)
		return write_all(w->fd, p, len, done);
	if (*done >= len)
		return 0;
	struct iovec v = { (void *)(p + *done), len - *done };
	int rc = pc_upload_writev(w->up, &v, 1);
	if (rc == 0)
		*done = len;
	return rc;
}

static void fmad_close_chunk(pc_writer *w);

/* Compresses buf[cdone..len) (and ends the stream when ending) and writes
 * the result to fd.  "Nothing taken is lost" holds as far as a compressed
 * stream allows: the compressor's output is one stream, so bytes cannot be
 * skipped or reordered.  When a write of compressed bytes fails partway,
 * the unwritten rest stays in zout[zdone..zlen) and is written first on the
 * next flush, before anything more is compressed; the input the compressor
 * has not taken stays in buf (cdone marks where it is).  A compressor
 * failure (not a write) is reported like a write error (-EIO, -ENOMEM). */
static int comp_flush(pc_writer *w)
{
	int more = 1;
	for (;;) {
		if (w->zdone < w->zlen) {
			int rc = out_all(w, w->zout, w->zlen, &w->zdone);
			if (rc)
				return rc;
		}
		w->zlen = w->zdone = 0;
		if (!more)
			return 0;
		size_t used = 0;
		more = pc_comp_step(w->comp, w->buf + w->cdone, w->len - w->cdone, w->ending, &used,
				    &w->zout, &w->zlen);
		if (more < 0)
			return more;
		w->cdone += used;
	}
}

int pc_writer_flush(pc_writer *w)
{
	if (w->chunk_open)
		fmad_close_chunk(w);
	int rc = w->comp ? comp_flush(w) : out_all(w, w->buf, w->len, &w->done);
	if (rc == 0 && w->tee_fd >= 0)
		rc = write_all(w->tee_fd, w->buf, w->len, &w->tee_done);
	if (rc) {
		w->err = -rc;
		return rc;
	}
	w->len = w->done = w->tee_done = w->cdone = 0;
	w->err = 0;
	return 0;
}

void pc_writer_set_comp(pc_writer *w, pc_comp *c)
{
	w->comp = c;
	w->cdone = w->zlen = w->zdone = 0;
	w->zout = NULL;
	w->ending = 0;
	if (c)
		pc_comp_begin(c); /* a new stream (the compressor may have served another split) */
}

int pc_writer_finish(pc_writer *w)
{
	if (w->comp)
		w->ending = 1; /* stays set: a retried finish goes on ending the stream */
	return pc_writer_flush(w);
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* FMAD chunk header (fmadio-behaviour.md 1.1): counts, length, time span;
 * the stream_cat backlog and CPU fields are left 0. */
static void fmad_close_chunk(pc_writer *w)
{
	uint8_t *h = w->buf + w->chunk_at;
	memset(h, 0, 48);
	put16(h, (uint16_t)w->chunk_pkts);
	put32(h + 4, (uint32_t)w->chunk_wire);
	put32(h + 8, (uint32_t)w->chunk_cap);
	put32(h + 12, w->chunk_len);
	put64(h + 16, w->chunk_ts0);
	put64(h + 24, w->chunk_ts1);
	w->chunk_open = 0;
}

/* Room for one more record of rec bytes in an open chunk, opening a new
 * chunk (and flushing) as needed.  0, or -1 when a flush failed. */
static int fmad_room(pc_writer *w, size_t rec)
{
	if (w->chunk_open && (w->chunk_len + rec > w->chunk_bytes || w->chunk_pkts == 65535))
		fmad_close_chunk(w);
	if (!w->chunk_open) {
		if (w->len + 48 + rec > w->cap && pc_writer_flush(w))
			return -1;
		w->chunk_open = 1;
		w->chunk_at = w->len;
		w->chunk_pkts = w->chunk_len = 0;
		w->chunk_wire = w->chunk_cap = 0;
		w->len += 48;
	} else if (w->len + rec > w->cap) {
		if (pc_writer_flush(w))
			return -1;
		return fmad_room(w, rec);
	}
	return 0;
}

static int fmad_put(pc_writer *w, const pc_pkt *p)
{
	/* the FMAD record has 16-bit lengths: longer frames are cut */
	uint32_t caplen = p->caplen > 65535 ? 65535 : p->caplen;
	uint32_t wire = p->wirelen > 65535 ? 65535 : p->wirelen;
	if (fmad_room(w, REC_HDR + caplen))
		return -1;
	uint8_t *r = w->buf + w->len;
	put64(r, p->ts);
	put16(r + 8, (uint16_t)caplen);
	put16(r + 10, (uint16_t)wire);
	r[12] = p->port;
	r[13] = p->flags & PC_PKT_FCS_ERR;
	put16(r + 14, 0);
	memcpy(r + REC_HDR, p->data, caplen);
	if (w->chunk_pkts == 0)
		w->chunk_ts0 = p->ts;
	w->chunk_ts1 = p->ts;
	w->chunk_pkts++;
	w->chunk_len += REC_HDR + caplen;
	w->chunk_wire += wire;
	w->chunk_cap += caplen;
	w->len += REC_HDR + caplen;
	return 0;
}

int pc_writer_keepalive(pc_writer *w)
{
	if (w->chunk_open)
		fmad_close_chunk(w);
	if (w->len + 48 > w->cap && pc_writer_flush(w))
		return -1;
	memset(w->buf + w->len, 0, 48);
	w->len += 48;
	return pc_writer_flush(w);
}

static pc_writer *writer_new(int fd, int tee_fd, size_t bufsize)
{
	if (bufsize < (512u << 10))
		bufsize = 512u << 10; /* must hold the largest record (256 KiB + 16) */
	pc_writer *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->buf = malloc(bufsize);
	if (!w->buf) {
		free(w);
		return NULL;
	}
	w->fd = fd;
	w->tee_fd = tee_fd;
	w->cap = bufsize;
	return w;
}

pc_writer *pc_writer_open_raw(int fd, size_t bufsize)
{
	return writer_new(fd, -1, bufsize);
}

pc_writer *pc_writer_open_fmad(int fd, size_t bufsize, uint32_t chunk_bytes, int header)
{
	pc_writer *w = writer_new(fd, -1, bufsize);
	if (!w)
		return NULL;
	w->fmt = OUT_FMAD;
	/* readers assert a chunk is under 1 MiB */
	w->chunk_bytes = chunk_bytes && chunk_bytes < (1u << 20) - 48 ? chunk_bytes : (256u << 10);
	if (header) {
		uint32_t hdr[6] = { 0x1337bab3u, 0x00040002u, 0, 0, 65535, 1 };
		memcpy(w->buf, hdr, sizeof hdr);
		w->len = sizeof hdr;
	}
	return w;
}

pc_writer *pc_writer_open(int fd, int tee_fd, uint32_t linktype, size_t bufsize)
{
	pc_writer *w = writer_new(fd, tee_fd, bufsize);
	if (!w)
		return NULL;
	uint32_t hdr[6] = { 0xa1b23c4du, 0x00040002u, 0, 0, 65535, linktype ? linktype : 1 };
	memcpy(w->buf, hdr, sizeof hdr);
	w->len = sizeof hdr;
	return w;
}

/* Runs of ready-made records on their way out, without a copy: up to
 * GATHER of them, written with one writev behind what the buffer holds.
 * They never add up to more than the buffer has room for, so whatever fd
 * does not take can still be copied into the buffer: gathered is taken. */
#define GATHER 256
struct gather {
	struct iovec iov[GATHER + 1];   /* [0]: the buffer's unwritten bytes */
	int n;
	size_t bytes;
};

static int gather_flush(pc_writer *w, struct gather *g)
{
	if (!g->n)
		return 0;
	struct iovec *v = g->iov + 1;
	int cnt = g->n;
	size_t held = w->len - w->done;
	if (g->bytes < GATHER_MIN) {
		/* a little: cheaper to copy than to write */
		for (int i = 0; i < cnt; i++) {
			memcpy(w->buf + w->len, v[i].iov_base, v[i].iov_len);
			w->len += v[i].iov_len;
		}
		g->n = 0;
		g->bytes = 0;
		return 0;
	}
	if (held) {
		v = g->iov;
		v[0] = (struct iovec){ w->buf + w->done, held };
		cnt++;
	}
	size_t wrote = 0;
	int i = 0;
	if (w->up) {
		/* libcurl takes it all, or the transfer is over */
		if (pc_upload_writev(w->up, v, cnt) == 0) {
			wrote = held + g->bytes;
			i = cnt;
		} else {
			w->err = EPIPE;
		}
	}
	while (i < cnt && !w->up) {
		ssize_t k = writev(w->fd, v + i, cnt - i > IOV_MAX ? IOV_MAX : cnt - i);
		if (k <= 0) {
			if (k < 0 && errno == EINTR)
				continue;
			w->err = k < 0 ? errno : EIO;
			break;
		}
		wrote += (size_t)k;
		while (k > 0) {
			if ((size_t)k >= v[i].iov_len) {
				k -= (ssize_t)v[i++].iov_len;
			} else {
				v[i].iov_base = (uint8_t *)v[i].iov_base + k;
				v[i].iov_len -= (size_t)k;
				k = 0;
			}
		}
	}
	if (wrote >= held) {
		w->len = w->done = 0;
		if (held && i == 0)
			i = 1; /* the buffer's part was all written */
	} else {
		w->done += wrote;
		i = held ? 1 : 0; /* the gathered runs all wait in v[1..] */
	}
	for (; i < cnt; i++) {
		memcpy(w->buf + w->len, v[i].iov_base, v[i].iov_len);
		w->len += v[i].iov_len;
	}
	g->n = 0;
	g->bytes = 0;
	return 0;
}

/* Appends a run of ready-made records: gathered without a compressor,
 * copied into the buffer (which the compressor reads) with one.  Returns
 * 0 when taken, -1 when not. */
static int emit(pc_writer *w, struct gather *g, const uint8_t *run, size_t len)
{
	if (!w->comp) {
		if (g->n == GATHER || g->bytes + len > w->cap - w->len)
			gather_flush(w, g);
		if (g->bytes + len > w->cap - w->len && (pc_writer_flush(w) || len > w->cap))
			return -1;
		g->iov[1 + g->n++] = (struct iovec){ (void *)run, len };
		g->bytes += len;
		return 0;
	}
	if (w->len + len > w->cap && pc_writer_flush(w))
		return -1;
	memcpy(w->buf + w->len, run, len);
	w->len += len;
	return 0;
}

int pc_writer_put(pc_writer *w, const pc_pkt *pkts, int n, uint32_t chomp)
{
	/* Runs of records that are already ns pcap (PC_PKT_RAW) and lie end to
	 * end in the input go out in one piece from where they are, gathered
	 * (emit): for a mapped input file that write is the only copy made.  The tee (spool)
	 * path keeps to the buffer so both outputs always get the same bytes.
	 * With a compressor there is no direct write (every byte must go
	 * through it); runs are still copied into the buffer in one piece
	 * (emit), which keeps both outputs identical, tee or not. */
	const int direct = chomp == 0 && w->fmt == OUT_PCAP && (w->tee_fd < 0 || w->comp);
	const uint8_t *run = NULL;
	size_t run_len = 0;
	int run_first = 0;
	struct gather g;
	g.n = 0;
	g.bytes = 0;
	for (int i = 0; i < n; i++) {
		const pc_pkt *p = &pkts[i];
		if (p->wirelen == 0 && w->fmt == OUT_PCAP)
			continue; /* NOP ticks move time; only the FMAD stream carries them */
		if (direct && (p->flags & PC_PKT_RAW)) {
			const uint8_t *rec = p->data - REC_HDR;
			size_t rlen = REC_HDR + p->caplen;
			if (run && rec == run + run_len && run_len + rlen <= w->cap) {
				run_len += rlen;
				continue;
			}
			if (run && emit(w, &g, run, run_len))
				return gather_flush(w, &g), run_first;
			run = rec;
			run_len = rlen;
			run_first = i;
			continue;
		}
		if (run) {
			if (emit(w, &g, run, run_len))
				return gather_flush(w, &g), run_first;
			run = NULL;
		}
		/* what the buffer takes next goes out after the gathered runs */
		gather_flush(w, &g);
		if (w->fmt == OUT_FMAD) {
			if (fmad_put(w, p))
				return i;
			continue;
		}
		uint32_t caplen = p->caplen > chomp ? p->caplen - chomp : 0;
		uint32_t wire = p->wirelen > chomp ? p->wirelen - chomp : 0;
		size_t need = REC_HDR + caplen;
		if (w->len + need > w->cap && pc_writer_flush(w))
			return i;
		uint32_t h[4] = { (uint32_t)(p->ts / 1000000000u), (uint32_t)(p->ts % 1000000000u),
				  caplen, wire };
		memcpy(w->buf + w->len, h, REC_HDR);
		memcpy(w->buf + w->len + REC_HDR, p->data, caplen);
		w->len += need;
	}
	if (run && emit(w, &g, run, run_len))
		return gather_flush(w, &g), run_first;
	gather_flush(w, &g);
	return n;
}

void pc_writer_retarget(pc_writer *w, int fd)
{
	w->fd = fd;
	w->up = NULL;
	w->err = 0;
}

void pc_writer_set_upload(pc_writer *w, pc_upload *u) { w->up = u; }

int pc_writer_errno(const pc_writer *w) { return w->err; }
/* With a compressor: the plain bytes not yet compressed plus the compressed
 * bytes not yet written (what a loss at this point would cost, roughly). */
size_t pc_writer_buffered(const pc_writer *w)
{
	if (w->comp)
		return (w->len - w->cdone) + (w->zlen - w->zdone);
	return w->len - w->done;
}

void pc_writer_free(pc_writer *w)
{
	if (!w)
		return;
	free(w->buf);
	free(w);
}
