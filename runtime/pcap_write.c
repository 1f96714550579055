/* pcap_write.c: nanosecond pcap 2.4 out through large buffered writes.
 *
 * The writer never drops what it has accepted: when a write fails (disk
 * full, dead pipe) the unwritten bytes stay buffered, put() stops taking
 * packets and reports how many it took, and the caller decides whether to
 * retry the flush later or give up and count the loss. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pushcap.h"

#define REC_HDR 16
#define DIRECT_MIN (64u << 10)  /* shorter runs are cheaper to copy than to write */

struct pc_writer {
	int fd, tee_fd;
	int err;                /* last errno from a failed write */
	uint8_t *buf;
	size_t cap, len;
	size_t done, tee_done;  /* bytes of buf already written to fd / tee */
	uint64_t bytes;
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

int pc_writer_flush(pc_writer *w)
{
	int rc = write_all(w->fd, w->buf, w->len, &w->done);
	if (rc == 0 && w->tee_fd >= 0)
		rc = write_all(w->tee_fd, w->buf, w->len, &w->tee_done);
	if (rc) {
		w->err = -rc;
		return rc;
	}
	w->len = w->done = w->tee_done = 0;
	w->err = 0;
	return 0;
}

pc_writer *pc_writer_open(int fd, int tee_fd, uint32_t linktype, size_t bufsize)
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
	uint32_t hdr[6] = { 0xa1b23c4du, 0x00040002u, 0, 0, 65535, linktype ? linktype : 1 };
	memcpy(w->buf, hdr, sizeof hdr);
	w->len = sizeof hdr;
	w->bytes = sizeof hdr;
	return w;
}

/* Writes a run of input bytes straight to the fd, bypassing the buffer.
 * Whatever the fd did not take is copied into the (empty) buffer, so the
 * caller's accounting stays "taken means kept". */
static int write_run(pc_writer *w, const uint8_t *p, size_t len)
{
	if (w->len && pc_writer_flush(w))
		return -1;
	size_t done = 0;
	int rc = write_all(w->fd, p, len, &done);
	w->bytes += len;
	if (rc == 0)
		return 0;
	w->err = -rc;
	memcpy(w->buf, p + done, len - done);
	w->len = len - done;
	w->done = 0;
	return 0;
}

/* Appends a run of ready-made records: written in place when long, copied
 * into the buffer when short.  Returns 0 when taken, -1 when not. */
static int emit(pc_writer *w, const uint8_t *run, size_t len)
{
	if (len >= DIRECT_MIN)
		return write_run(w, run, len);
	if (w->len + len > w->cap && pc_writer_flush(w))
		return -1;
	memcpy(w->buf + w->len, run, len);
	w->len += len;
	w->bytes += len;
	return 0;
}

int pc_writer_put(pc_writer *w, const pc_pkt *pkts, int n, uint32_t chomp)
{
	/* Runs of records that are already ns pcap (PC_PKT_RAW) and lie end to
	 * end in the input go out in one piece from where they are: for a
	 * mapped input file that write is the only copy made.  The tee (spool)
	 * path keeps to the buffer so both outputs always get the same bytes. */
	const int direct = chomp == 0 && w->tee_fd < 0;
	const uint8_t *run = NULL;
	size_t run_len = 0;
	int run_first = 0;
	for (int i = 0; i < n; i++) {
		const pc_pkt *p = &pkts[i];
		if (p->wirelen == 0)
			continue; /* NOP ticks move time, they are not frames */
		if (direct && (p->flags & PC_PKT_RAW)) {
			const uint8_t *rec = p->data - REC_HDR;
			size_t rlen = REC_HDR + p->caplen;
			if (run && rec == run + run_len && run_len + rlen <= w->cap) {
				run_len += rlen;
				continue;
			}
			if (run && emit(w, run, run_len))
				return run_first;
			run = rec;
			run_len = rlen;
			run_first = i;
			continue;
		}
		if (run) {
			if (emit(w, run, run_len))
				return run_first;
			run = NULL;
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
		w->bytes += need;
	}
	if (run && emit(w, run, run_len))
		return run_first;
	return n;
}

void pc_writer_retarget(pc_writer *w, int fd)
{
	w->fd = fd;
	w->err = 0;
}

int pc_writer_errno(const pc_writer *w) { return w->err; }
uint64_t pc_writer_bytes(const pc_writer *w) { return w->bytes; }
size_t pc_writer_buffered(const pc_writer *w) { return w->len - w->done; }

void pc_writer_free(pc_writer *w)
{
	if (!w)
		return;
	free(w->buf);
	free(w);
}
