/* store_priv.h: the capture store's layout and the pieces of its reader
 * that store.c and store_ahead.c share.  Not part of the Lua surface. */
#ifndef PUSHCAP_STORE_PRIV_H
#define PUSHCAP_STORE_PRIV_H
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include "pushcap.h"

#define SB_SIZE 4096
#define CHUNK_HDR 64
#define REC_HDR 16
#define CHUNK_MAGIC 0x314b4350u      /* "PCK1" */
#define CHUNK_EXT 1u                 /* has records longer than 65535 bytes */
static const char store_magic[8] __attribute__((unused)) = { 'P', 'C', 'S', 'T', 'O', 'R', 'E', '1' };

struct superblock {
	char magic[8];
	uint32_t version;
	uint32_t chunk_size;
	uint64_t nslots;
	uint64_t created_ns;
	uint64_t head;            /* next chunk id; published after the chunk */
	uint64_t tick_ts;
	uint32_t active_capture;
	int32_t writer_pid;
	uint64_t next_capture_id;
};

struct chunk_hdr {
	uint32_t magic;
	uint32_t length;          /* record bytes after the header */
	uint64_t chunk_id;
	uint64_t hash;            /* XXH3-64 of header (hash = 0) and records */
	uint32_t capture_id;
	uint32_t pkt_cnt;         /* records, NOP ticks included */
	uint64_t bytes_wire;
	uint32_t bytes_cap;
	uint32_t flags;
	uint64_t ts_first;
	uint64_t ts_last;
};

struct pc_store {
	int fd;
	int writer;
	struct superblock *sb;
	uint32_t chunk_size;
	uint64_t nslots;
	/* writer state */
	uint8_t *chunk;           /* the chunk being filled */
	struct chunk_hdr cur;
	int open;                 /* cur holds at least one record */
	int idx_fd;
	pc_store_stats st;
	/* pc_store_sync_async: one background fdatasync at a time, on its own
	 * copies of the fds (the writer may close the index meanwhile) */
	pthread_t sync_th;
	int sync_busy;            /* sync_th was started and not joined */
	int sync_done;            /* set by sync_th when it returns (atomic) */
	int sync_rc;
	int sync_fd, sync_idx_fd;
};

struct pc_store_reader {
	pc_store *s;
	uint32_t capture_id;
	uint64_t first_id;
	uint64_t next_id;
	int idx_fd;
	int ended;
	uint8_t *buf;             /* the loaded chunk's records */
	struct chunk_hdr hdr;     /* the loaded chunk's header */
	uint32_t pos, left;       /* walk of the loaded chunk's records */
	uint32_t rec;             /* index of the next record in the chunk */
	uint32_t skip;            /* records to pass over in the first chunk */
	uint64_t cur_id;          /* the loaded chunk's id */
	pc_store_stats st;
	char err[256];
};

_Static_assert(sizeof(struct chunk_hdr) == CHUNK_HDR, "chunk header is 64 bytes");
_Static_assert(sizeof(pc_store_idx) == 40, "index entry is 40 bytes");

static inline uint64_t load_acq(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t load32_acq(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* chunk id's slot: header into *h, the rest to records; 0 or -errno */
int store_read_chunk(const pc_store *s, uint64_t id, struct chunk_hdr *h, uint8_t *records);
int store_chunk_fits(const pc_store *s, const struct chunk_hdr *h, uint64_t id);
int store_chunk_sum_ok(const struct chunk_hdr *h, const uint8_t *records);
/* chunk id, read, failed its checks: counts it in *st as lapped or corrupt
 * (with a message in err) */
void store_chunk_bad(const pc_store_reader *r, uint64_t id, pc_store_stats *st, char *err, size_t errlen);
void store_count_from_idx(const pc_store_reader *r, uint64_t from, uint64_t to, uint64_t *chunks,
			  uint64_t *pkts, uint64_t *bytes);

/* A record's header (docs/store-format.md, Chunks).  pc_store_next and
 * pc_store_cat both walk a chunk with rec_next. */
struct rec {
	uint64_t ts;
	uint32_t caplen, wire;
};

/* Decodes the record header at p.  ext = 0 for a chunk without CHUNK_EXT,
 * where the lengths' high bytes are all 0: one step less on the chain of
 * loads that a walk of records is. */
static inline void rec_decode(const uint8_t *p, struct rec *rec, int ext)
{
	uint16_t c16, w16;
	memcpy(&rec->ts, p, 8);
	memcpy(&c16, p + 8, 2);
	memcpy(&w16, p + 10, 2);
	rec->caplen = c16;
	rec->wire = w16;
	if (ext) {
		rec->caplen |= (uint32_t)p[14] << 16;
		rec->wire |= (uint32_t)p[15] << 16;
	}
}

/* Decodes the record at p and returns the next one, or NULL when this one
 * runs past end (which a chunk that passed its checksum never does). */
static inline uint8_t *rec_next(uint8_t *p, const uint8_t *end, struct rec *rec)
{
	if (end - p < REC_HDR)
		return NULL;
	rec_decode(p, rec, 1);
	if ((size_t)(end - p - REC_HDR) < rec->caplen)
		return NULL;
	return p + REC_HDR + rec->caplen;
}

/* The pc_pkt for record number idx, whose header is at h. */
static inline void rec_pkt(pc_pkt *p, uint8_t *h, const struct rec *rec, uint32_t idx)
{
	p->ts = rec->ts;
	p->data = h + REC_HDR;
	p->caplen = rec->caplen;
	p->wirelen = rec->wire;
	p->port = h[12];
	p->flags = h[13];
	p->rec = idx;
}

/* The pcap record header for r. */
static inline void pcap_header(uint8_t *to, const struct rec *r)
{
	uint32_t ph[4] = { (uint32_t)(r->ts / 1000000000u), (uint32_t)(r->ts % 1000000000u), r->caplen, r->wire };
	memcpy(to, ph, REC_HDR);
}

#endif
