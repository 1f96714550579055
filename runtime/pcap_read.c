/* pcap_read.c: one reader for every input pcap_split and push accept:
 * classic pcap (us or ns, either byte order), pcapng, and the FMAD chunked
 * stream (0x1337BAB3).
 *
 * The input is read in large blocks into one buffer and packets are handed
 * out as pc_pkt descriptors pointing into it, so a batch costs one read()
 * at most and no copy.  The buffer is compacted only at the start of a call,
 * which is why pointers stay valid until the next call. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pushcap.h"

#define BUF_SIZE (8u << 20)
#define MAX_CAPLEN (256u << 10)          /* the documented sanity limit */
#define MAX_CHUNK (1u << 20)
#define FMAD_CHUNK_HDR 48
#define FMAD_REC_HDR 16
#define PCAP_REC_HDR 16
#define NG_MAX_IF 256
/* A mapped input is faulted in ahead of the reader and let go behind it in
 * windows of this size: one fault per window instead of one per page, and
 * a capture larger than memory never has to be resident at once. */
#define MAP_WINDOW (32u << 20)
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

struct ng_if {
	uint32_t linktype;
	uint64_t mult;       /* ns per unit when the resolution is a power of 10 */
	uint64_t div;        /* units per ns when finer than 1 ns */
	int pow2;            /* resolution is 2^-pow2 s (0 = decimal) */
	int64_t offset_s;
};

struct pc_reader {
	int fd;
	int format;
	int swap;                /* file byte order differs from ours */
	int raw_ok;              /* records are already ns pcap in host order */
	uint32_t linktype;
	uint8_t *buf;
	size_t pos, len;         /* unread bytes are buf[pos..len) */
	uint64_t base;           /* input offset of buf[0] */
	int at_eof;
	int mapped;              /* buf is an mmap of the whole input file */
	size_t map_len;
	size_t map_ahead;        /* populated up to here */
	size_t map_behind;       /* released below here */
	int failed;              /* sticky PC_ERR_* once something went wrong */
	uint32_t chunk_left;     /* FMAD: records still to come in this chunk */
	uint32_t chunk_bytes;    /* FMAD: record bytes still to come */
	int ng_nif;
	int ng_swap;
	struct ng_if ng_if[NG_MAX_IF];
	uint64_t last_ts;
	pc_reader_stats st;
	char err[320];
};

static uint16_t rd16(const uint8_t *p, int swap)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return swap ? __builtin_bswap16(v) : v;
}

static uint32_t rd32(const uint8_t *p, int swap)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return swap ? __builtin_bswap32(v) : v;
}

static uint64_t rd64le(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static int fail(pc_reader *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof r->err, fmt, ap);
	va_end(ap);
	r->failed = code;
	return code;
}

static uint64_t offset_of(const pc_reader *r)
{
	return r->base + r->pos;
}

/* Makes at least n unread bytes available.  Returns 1 when they are, 0 at a
 * clean end of input with nothing unread, or a PC_ERR_* code.  May move the
 * buffer, so callers must not hold pointers handed out in this call. */
static int fill(pc_reader *r, size_t n)
{
	if (r->len - r->pos >= n)
		return 1;
	if (r->mapped)
		return r->len == r->pos ? 0 : PC_ERR_TRUNC;
	if (r->pos) {
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->base += r->pos;
		r->len -= r->pos;
		r->pos = 0;
	}
	while (r->len < n) {
		if (r->at_eof)
			return r->len == 0 ? 0 : PC_ERR_TRUNC;
		ssize_t got = read(r->fd, r->buf + r->len, BUF_SIZE - r->len);
		if (got < 0) {
			if (errno == EINTR) {
				if (pc_signal_pending())
					return PC_ERR_INTR;
				continue;
			}
			return fail(r, PC_ERR_IO, "read error at byte offset %llu: %s",
				    (unsigned long long)offset_of(r), strerror(errno));
		}
		if (got == 0)
			r->at_eof = 1;
		r->len += (size_t)got;
	}
	return 1;
}

/* fill() for the middle of a record: running out is a truncation. */
static int need(pc_reader *r, size_t n, const char *what)
{
	int rc = fill(r, n);
	if (rc == 1 || rc == PC_ERR_INTR || rc == PC_ERR_IO)
		return rc;
	return fail(r, PC_ERR_TRUNC,
		    "truncated input: %s at byte offset %llu needs %zu bytes, only %zu left",
		    what, (unsigned long long)offset_of(r), n, r->len - r->pos);
}

/* Inside the batch loops: an error found after some packets were collected
 * returns those first; the error is sticky and comes back on the next call. */
#define FAIL(r, ...) do { fail(r, __VA_ARGS__); return n ? n : (r)->failed; } while (0)

/* fill() at a record boundary: nothing left is a clean end, a part left is
 * a truncation. */
static int start(pc_reader *r, size_t n, const char *what)
{
	int rc = fill(r, n);
	if (rc == PC_ERR_TRUNC)
		return need(r, n, what);
	return rc;
}

/* ---- classic pcap ---------------------------------------------------- */
static int open_pcap(pc_reader *r, uint32_t magic_le)
{
	const uint8_t *h = r->buf + r->pos;
	r->swap = magic_le == 0xd4c3b2a1u || magic_le == 0x4d3cb2a1u;
	r->format = (magic_le == 0xa1b23c4du || magic_le == 0x4d3cb2a1u) ? PC_FMT_PCAP_NS
									   : PC_FMT_PCAP_US;
	uint16_t major = rd16(h + 4, r->swap), minor = rd16(h + 6, r->swap);
	if (major != 2 || minor != 4)
		return fail(r, PC_ERR_FORMAT, "unsupported pcap version %u.%u at byte offset 4",
			    major, minor);
	uint32_t lt = rd32(h + 20, r->swap);
	/* The low 16 bits name the type, the top bits may carry an FCS length;
	 * reserved bits set mean a file we do not understand. */
	if (lt & 0x03ff0000u)
		return fail(r, PC_ERR_FORMAT,
			    "pcap linktype field 0x%08x has reserved bits set at byte offset 20", lt);
	r->linktype = lt & 0xffff;
	r->raw_ok = !r->swap && r->format == PC_FMT_PCAP_NS;
	r->pos += 24;
	return 0;
}

static int next_pcap(pc_reader *r, pc_pkt *out, int max)
{
	int n = 0;
	while (n < max) {
		size_t avail = r->len - r->pos;
		if (avail < PCAP_REC_HDR || avail < PCAP_REC_HDR + rd32(r->buf + r->pos + 8, r->swap)) {
			if (n)
				break;  /* hand out what we have before moving the buffer */
			int rc = start(r, PCAP_REC_HDR, "pcap record header");
			if (rc <= 0)
				return rc;
		}
		const uint8_t *h = r->buf + r->pos;
		uint32_t caplen = rd32(h + 8, r->swap), wire = rd32(h + 12, r->swap);
		if (caplen > MAX_CAPLEN)
			FAIL(r, PC_ERR_FORMAT,
				    "pcap record at byte offset %llu has caplen %u, over the %u limit",
				    (unsigned long long)offset_of(r), caplen, MAX_CAPLEN);
		if (r->len - r->pos < PCAP_REC_HDR + caplen) {
			if (n)
				break;
			int rc = need(r, PCAP_REC_HDR + caplen, "pcap record");
			if (rc <= 0)
				return rc;
			h = r->buf + r->pos;
		}
		/* the next header's address depends on this caplen, so the walk
		 * is a chain of cache misses unless the lines ahead are requested */
		__builtin_prefetch(h + 4096);
		__builtin_prefetch(h + 8192);
		uint64_t sec = rd32(h, r->swap), sub = rd32(h + 4, r->swap);
		pc_pkt *p = &out[n++];
		p->ts = sec * 1000000000ull + (r->format == PC_FMT_PCAP_US ? sub * 1000ull : sub);
		p->data = h + PCAP_REC_HDR;
		p->caplen = caplen;
		/* a zero wire length would read as a NOP; a frame has at least its bytes */
		p->wirelen = wire ? wire : (caplen ? caplen : 1);
		p->port = 0;
		p->flags = r->raw_ok && wire ? PC_PKT_RAW : 0;
		r->pos += PCAP_REC_HDR + caplen;
		r->st.packets++;
	}
	return n;
}

/* ---- FMAD chunked ----------------------------------------------------- */
static int next_fmad(pc_reader *r, pc_pkt *out, int max)
{
	int n = 0;
	while (n < max) {
		if (r->chunk_left == 0) {
			if (r->chunk_bytes)
				FAIL(r, PC_ERR_FORMAT,
					    "FMAD chunk ending at byte offset %llu has %u bytes beyond its records",
					    (unsigned long long)offset_of(r), r->chunk_bytes);
			if (r->len - r->pos < FMAD_CHUNK_HDR) {
				if (n)
					break;
				int rc = start(r, FMAD_CHUNK_HDR, "FMAD chunk header");
				if (rc <= 0)
					return rc;
			}
			const uint8_t *c = r->buf + r->pos;
			uint32_t cnt = rd16(c, 0), length = rd32(c + 12, 0);
			if (length >= MAX_CHUNK)
				FAIL(r, PC_ERR_FORMAT,
					    "FMAD chunk at byte offset %llu has length %u, over the 1 MiB limit",
					    (unsigned long long)offset_of(r), length);
			r->pos += FMAD_CHUNK_HDR;
			r->st.chunks++;
			r->chunk_left = cnt;
			r->chunk_bytes = length;
			if (cnt == 0) {
				/* keep-alive: its payload (normally none) carries nothing */
				r->st.keepalives++;
				while (r->chunk_bytes) {
					if (r->len == r->pos) {
						if (n)
							return n;
						int rc = need(r, 1, "FMAD keep-alive payload");
						if (rc <= 0)
							return rc;
					}
					size_t skip = r->len - r->pos;
					if (skip > r->chunk_bytes)
						skip = r->chunk_bytes;
					r->pos += skip;
					r->chunk_bytes -= (uint32_t)skip;
				}
			}
			continue;
		}
		if (r->len - r->pos < FMAD_REC_HDR ||
		    r->len - r->pos < FMAD_REC_HDR + (size_t)rd16(r->buf + r->pos + 8, 0)) {
			if (n)
				break;
			int rc = need(r, FMAD_REC_HDR, "FMAD packet header");
			if (rc <= 0)
				return rc;
			rc = need(r, FMAD_REC_HDR + rd16(r->buf + r->pos + 8, 0), "FMAD packet");
			if (rc <= 0)
				return rc;
		}
		const uint8_t *h = r->buf + r->pos;
		__builtin_prefetch(h + 4096);
		__builtin_prefetch(h + 8192);
		uint32_t caplen = rd16(h + 8, 0), wire = rd16(h + 10, 0);
		if (FMAD_REC_HDR + caplen > r->chunk_bytes)
			FAIL(r, PC_ERR_FORMAT,
				    "FMAD packet at byte offset %llu (%u bytes) runs past the end of its chunk",
				    (unsigned long long)offset_of(r), caplen);
		pc_pkt *p = &out[n++];
		p->ts = rd64le(h);
		p->data = h + FMAD_REC_HDR;
		p->caplen = caplen;
		p->wirelen = wire;
		p->port = h[12];
		p->flags = h[13];
		r->pos += FMAD_REC_HDR + caplen;
		r->chunk_left--;
		r->chunk_bytes -= FMAD_REC_HDR + caplen;
		if (wire)
			r->st.packets++;
		else
			r->st.nops++;
	}
	return n;
}

/* ---- pcapng ----------------------------------------------------------- */
static int ng_add_if(pc_reader *r, const uint8_t *b, uint32_t blen)
{
	if (r->ng_nif >= NG_MAX_IF)
		return fail(r, PC_ERR_FORMAT, "pcapng: more than %d interfaces at byte offset %llu",
			    NG_MAX_IF, (unsigned long long)offset_of(r));
	struct ng_if *f = &r->ng_if[r->ng_nif++];
	f->linktype = rd16(b + 8, r->ng_swap);
	f->mult = 1000; /* default resolution: microseconds */
	f->div = 1;
	f->pow2 = 0;
	f->offset_s = 0;
	for (uint32_t o = 16; o + 4 <= blen - 4;) {
		uint16_t code = rd16(b + o, r->ng_swap), olen = rd16(b + o + 2, r->ng_swap);
		if (code == 0)
			break;
		if (o + 4 + olen > blen - 4)
			return fail(r, PC_ERR_FORMAT, "pcapng: interface option runs past its block at byte offset %llu",
				    (unsigned long long)(offset_of(r) + o));
		const uint8_t *v = b + o + 4;
		if (code == 9 && olen >= 1) {
			uint8_t res = v[0];
			if (res & 0x80) {
				f->pow2 = res & 0x7f;
			} else {
				uint64_t m = 1, d = 1;
				for (int i = res; i < 9; i++)
					m *= 10;
				for (int i = 9; i < res && i < 19; i++)
					d *= 10;
				f->mult = m;
				f->div = d;
			}
		} else if (code == 14 && olen >= 8) {
			uint64_t off;
			memcpy(&off, v, 8);
			f->offset_s = (int64_t)(r->ng_swap ? __builtin_bswap64(off) : off);
		}
		o += 4 + ((olen + 3u) & ~3u);
	}
	if (r->ng_nif == 1)
		r->linktype = f->linktype;
	return 0;
}

static uint64_t ng_ts(const struct ng_if *f, uint64_t units)
{
	uint64_t ns;
	if (f->pow2)
		ns = (uint64_t)(((unsigned __int128)units * 1000000000u) >> f->pow2);
	else
		ns = units * f->mult / f->div;
	return ns + (uint64_t)f->offset_s * 1000000000ull;
}

static int ng_shb(pc_reader *r, const uint8_t *b)
{
	uint32_t bom;
	memcpy(&bom, b + 8, 4);
	if (bom == 0x1a2b3c4du)
		r->ng_swap = 0;
	else if (bom == 0x4d3c2b1au)
		r->ng_swap = 1;
	else
		return fail(r, PC_ERR_FORMAT, "pcapng: bad byte-order magic at byte offset %llu",
			    (unsigned long long)offset_of(r) + 8);
	uint16_t major = rd16(b + 12, r->ng_swap), minor = rd16(b + 14, r->ng_swap);
	if (major != 1 || minor != 0)
		return fail(r, PC_ERR_FORMAT, "unsupported pcapng version %u.%u at byte offset %llu",
			    major, minor, (unsigned long long)offset_of(r) + 12);
	r->ng_nif = 0;  /* a new section starts a new interface list */
	return 0;
}

static int next_ng(pc_reader *r, pc_pkt *out, int max)
{
	int n = 0;
	while (n < max) {
		if (r->len - r->pos < 12) {
			if (n)
				break;
			int rc = start(r, 12, "pcapng block header");
			if (rc <= 0)
				return rc;
		}
		const uint8_t *b = r->buf + r->pos;
		uint32_t type = rd32(b, r->ng_swap);
		if (type == 0x0a0d0d0au) {
			uint32_t bom;
			memcpy(&bom, b + 8, 4);
			r->ng_swap = bom == 0x4d3c2b1au;
		}
		uint32_t blen = rd32(b + 4, r->ng_swap);
		if (blen < 12 || blen % 4)
			FAIL(r, PC_ERR_FORMAT, "pcapng: bad block length %u at byte offset %llu",
				    blen, (unsigned long long)offset_of(r));
		int packet = type == 6 || type == 3 || type == 2;
		if (packet && blen > MAX_CAPLEN + 64)
			FAIL(r, PC_ERR_FORMAT, "pcapng: packet block of %u bytes at byte offset %llu is over the %u limit",
				    blen, (unsigned long long)offset_of(r), MAX_CAPLEN);
		if (blen > BUF_SIZE) {
			/* a huge non-packet block (names, comments): skip it in pieces */
			uint64_t left = blen;
			while (left) {
				if (r->len == r->pos) {
					if (n)
						return n;
					int rc = need(r, 1, "pcapng block");
					if (rc <= 0)
						return rc;
				}
				size_t step = r->len - r->pos;
				if (step > left)
					step = left;
				r->pos += step;
				left -= step;
			}
			r->st.skipped++;
			continue;
		}
		if (r->len - r->pos < blen) {
			if (n)
				break;
			int rc = need(r, blen, "pcapng block");
			if (rc <= 0)
				return rc;
			b = r->buf + r->pos;
		}
		if (rd32(b + blen - 4, r->ng_swap) != blen)
			FAIL(r, PC_ERR_FORMAT,
				    "pcapng: block total length in header (%u) and trailer (%u) differ at byte offset %llu",
				    blen, rd32(b + blen - 4, r->ng_swap), (unsigned long long)offset_of(r));
		int rc = 0;
		if (type == 0x0a0d0d0au) {
			rc = ng_shb(r, b);
		} else if (type == 1) {
			rc = ng_add_if(r, b, blen);
		} else if (packet) {
			uint32_t ifid = 0, caplen, wire, hdr;
			uint64_t units = 0;
			if (type == 6 || type == 2) {
				ifid = type == 6 ? rd32(b + 8, r->ng_swap) : rd16(b + 8, r->ng_swap);
				units = ((uint64_t)rd32(b + 12, r->ng_swap) << 32) | rd32(b + 16, r->ng_swap);
				caplen = rd32(b + 20, r->ng_swap);
				wire = rd32(b + 24, r->ng_swap);
				hdr = 28;
			} else {
				wire = rd32(b + 8, r->ng_swap);
				caplen = wire < blen - 16 ? wire : blen - 16;
				hdr = 12;
			}
			if (hdr + caplen > blen - 4)
				FAIL(r, PC_ERR_FORMAT, "pcapng: packet of %u bytes overruns its block at byte offset %llu",
					    caplen, (unsigned long long)offset_of(r));
			if ((int)ifid >= r->ng_nif)
				FAIL(r, PC_ERR_FORMAT, "pcapng: packet names interface %u but only %d are defined, at byte offset %llu",
					    ifid, r->ng_nif, (unsigned long long)offset_of(r));
			const struct ng_if *f = &r->ng_if[ifid];
			/* one pcap output has one linktype: refuse a section that mixes
			 * them, as libpcap does, before handing out any of its packets */
			for (int k = 0; k < r->ng_nif; k++)
				if (r->ng_if[k].linktype != r->linktype)
					FAIL(r, PC_ERR_FORMAT,
						    "pcapng: interface %d has linktype %u but interface 0 has %u "
						    "(block at byte offset %llu); one pcap output cannot hold both, "
						    "split the capture per interface first",
						    k, r->ng_if[k].linktype, r->linktype,
						    (unsigned long long)offset_of(r));
			pc_pkt *p = &out[n++];
			p->ts = type == 3 ? r->last_ts : ng_ts(f, units);
			r->last_ts = p->ts;
			p->data = b + hdr;
			p->caplen = caplen;
			p->wirelen = wire ? wire : (caplen ? caplen : 1);
			p->port = (uint8_t)ifid;
			p->flags = 0;
			r->st.packets++;
		} else {
			r->st.skipped++;
		}
		if (rc)
			return n ? n : rc;
		r->pos += blen;
	}
	return n;
}

/* ---- public ----------------------------------------------------------- */
pc_reader *pc_reader_open(int fd, char *err, size_t errlen)
{
	pc_reader *r = calloc(1, sizeof *r);
	uint8_t *buf = malloc(BUF_SIZE);
	if (!r || !buf) {
		free(r);
		free(buf);
		snprintf(err, errlen, "out of memory for the input buffer");
		return NULL;
	}
	r->fd = fd;
	r->buf = buf;
	/* A regular file is mapped whole: packets are then handed out straight
	 * from the page cache and written from there, with no read() copy. */
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
	    lseek(fd, 0, SEEK_CUR) == 0) {
		void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m != MAP_FAILED) {
			madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
			free(buf);
			r->buf = m;
			r->mapped = 1;
			r->map_len = r->len = (size_t)st.st_size;
			r->at_eof = 1;
		}
	}
	int rc = fill(r, 4);
	if (rc != 1) {
		snprintf(err, errlen, "%s", rc == 0 ? "empty input: no file header" :
			 rc == PC_ERR_TRUNC ? "input ends inside the 4-byte magic" :
			 rc == PC_ERR_INTR ? "interrupted before the file header arrived" : r->err);
		pc_reader_close(r);
		return NULL;
	}
	uint32_t magic = rd32(r->buf, 0);
	switch (magic) {
	case 0xa1b2c3d4u: case 0xd4c3b2a1u: case 0xa1b23c4du: case 0x4d3cb2a1u:
		rc = need(r, 24, "pcap file header");
		if (rc == 1)
			rc = open_pcap(r, magic);
		break;
	case 0x1337bab3u:
		rc = need(r, 24, "FMAD file header");
		if (rc == 1) {
			r->format = PC_FMT_FMAD_CHUNKED;
			r->linktype = 1;
			r->pos += 24;
			rc = 0;
		}
		break;
	case 0x0a0d0d0au:
		rc = need(r, 28, "pcapng section header");
		if (rc == 1) {
			/* the linktype is known once the first interface block is read,
			 * which is always before the first packet */
			r->format = PC_FMT_PCAPNG;
			rc = ng_shb(r, r->buf + r->pos);
			uint32_t blen = rc ? 0 : rd32(r->buf + r->pos + 4, r->ng_swap);
			if (rc == 0 && (blen < 28 || blen % 4 || blen > BUF_SIZE))
				rc = fail(r, PC_ERR_FORMAT, "pcapng: bad section header length %u at byte offset 4", blen);
			if (rc == 0 && (rc = need(r, blen, "pcapng section header")) == 1) {
				uint32_t trail = rd32(r->buf + r->pos + blen - 4, r->ng_swap);
				rc = trail == blen ? 0 : fail(r, PC_ERR_FORMAT,
					"pcapng: block total length in header (%u) and trailer (%u) differ at byte offset 0",
					blen, trail);
			}
		}
		break;
	default:
		if ((magic & 0xffff) == 0x8b1f)
			snprintf(r->err, sizeof r->err, "gzip-compressed input at byte offset 0; decompress it first (zcat FILE | ...)");
		else
			snprintf(r->err, sizeof r->err,
				 "unknown file format: magic 0x%08x at byte offset 0 is not pcap, pcapng or FMAD chunked", magic);
		rc = PC_ERR_FORMAT;
	}
	if (rc < 0 || r->failed) {
		snprintf(err, errlen, "%s", r->err[0] ? r->err : "cannot read the file header");
		pc_reader_close(r);
		return NULL;
	}
	return r;
}

static void map_slide(pc_reader *r)
{
	while (r->map_ahead < r->len && r->map_ahead < r->pos + MAP_WINDOW) {
		size_t n = r->len - r->map_ahead < MAP_WINDOW ? r->len - r->map_ahead : MAP_WINDOW;
		madvise(r->buf + r->map_ahead, n, MADV_POPULATE_READ);
		r->map_ahead += n;
	}
	/* the previous batch may still be referenced: keep two windows */
	while (r->map_behind + 3 * (size_t)MAP_WINDOW < r->pos) {
		madvise(r->buf + r->map_behind, MAP_WINDOW, MADV_DONTNEED);
		r->map_behind += MAP_WINDOW;
	}
}

int pc_reader_next(pc_reader *r, pc_pkt *out, int max)
{
	if (r->failed)
		return r->failed;
	if (r->mapped)
		map_slide(r);
	int rc;
	switch (r->format) {
	case PC_FMT_FMAD_CHUNKED: rc = next_fmad(r, out, max); break;
	case PC_FMT_PCAPNG: rc = next_ng(r, out, max); break;
	default: rc = next_pcap(r, out, max); break;
	}
	return rc;
}

int pc_reader_format(const pc_reader *r) { return r->format; }
uint32_t pc_reader_linktype(const pc_reader *r) { return r->linktype; }
const char *pc_reader_error(const pc_reader *r) { return r->err; }
void pc_reader_stats_get(const pc_reader *r, pc_reader_stats *st)
{
	*st = r->st;
	st->bytes_read = r->base + r->pos;
}

void pc_reader_close(pc_reader *r)
{
	if (!r)
		return;
	if (r->mapped)
		munmap(r->buf, r->map_len);
	else
		free(r->buf);
	free(r);
}
