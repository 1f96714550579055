/* store.c: the capture store, a ring of fixed-size chunks in one file.
 *
 * ring.dat = a 4 KiB superblock + nslots slots of chunk_size bytes.  Chunk
 * id i lives in slot i % nslots; ids only grow, so a slot's id tells which
 * lap wrote it.  A chunk is a 64-byte header and FMAD packet records; it is
 * written with one pwrite and is valid only when its magic, id and XXH3
 * checksum agree, so a torn write (killed writer, power cut) is never read
 * as data.  The superblock is shared (MAP_SHARED) between the writer and
 * every reader: the writer publishes `head` (the next id) after a chunk is
 * written, and readers never read at or past it.
 *
 * Each capture also has an index file (one pc_store_idx per chunk, written
 * after the chunk), which keeps the counts of chunks the ring has since
 * overwritten: that is how a lapped reader reports exactly what it lost,
 * and how a time is found without reading the ring.  docs/store-format.md
 * has the byte layout. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>
#if defined(__x86_64__)
/* the same hash values, computed with the widest vectors the CPU has */
#include <xxh_x86dispatch.h>
#endif

#include "pushcap.h"

#define SB_SIZE 4096
#define CHUNK_HDR 64
#define REC_HDR 16
#define CHUNK_MAGIC 0x314b4350u      /* "PCK1" */
#define CHUNK_EXT 1u                 /* has records longer than 65535 bytes */
static const char store_magic[8] = { 'P', 'C', 'S', 'T', 'O', 'R', 'E', '1' };

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
};

struct pc_store_reader {
	pc_store *s;
	uint32_t capture_id;
	uint64_t first_id;
	uint64_t next_id;
	int idx_fd;
	int ended;
	uint8_t *buf;             /* pc_store_next's chunk, read with pread */
	struct chunk_hdr hdr;
	uint32_t pos, left;       /* walk of the loaded chunk's records */
	uint32_t rec;             /* index of the next record in the chunk */
	uint32_t skip;            /* records to pass over in the first chunk */
	uint64_t cur_id;          /* the loaded chunk's id */
	const uint8_t *map;       /* pc_store_cat: the ring, read-only; NULL: pread */
	size_t map_len;
	uint8_t *out;             /* pc_store_cat: output of up to CAT_CHUNKS chunks */
	pc_store_stats st;
	char err[256];
};

_Static_assert(sizeof(struct chunk_hdr) == CHUNK_HDR, "chunk header is 64 bytes");
_Static_assert(sizeof(pc_store_idx) == 40, "index entry is 40 bytes");

static uint64_t load_acq(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static uint32_t load32_acq(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

static off_t slot_offset(const pc_store *s, uint64_t id)
{
	return (off_t)SB_SIZE + (off_t)(id % s->nslots) * (off_t)s->chunk_size;
}

static uint64_t chunk_hash(const struct chunk_hdr *hdr, const uint8_t *records)
{
	struct chunk_hdr h = *hdr;
	h.hash = 0;
	/* the header's hash seeds the records' hash: one value covers both */
	return XXH3_64bits_withSeed(records, h.length, XXH3_64bits(&h, CHUNK_HDR));
}

/* 1 when chunk is whole and is chunk `id`.  h is the caller's copy of its
 * header, the one it goes on to use: a reader of the mapped ring must not
 * read the header twice, as the writer may be changing it. */
static int chunk_valid(const pc_store *s, const struct chunk_hdr *h, const uint8_t *chunk, uint64_t id)
{
	return h->magic == CHUNK_MAGIC && h->chunk_id == id && h->length <= s->chunk_size - CHUNK_HDR &&
	       h->hash == chunk_hash(h, chunk + CHUNK_HDR);
}

static int read_chunk(const pc_store *s, uint64_t id, uint8_t *buf)
{
	ssize_t n = pread(s->fd, buf, s->chunk_size, slot_offset(s, id));
	if (n < 0)
		return -errno;
	if ((size_t)n < CHUNK_HDR)
		return -EIO;
	return 0;
}

/* Reads chunk id into buf and checks it; 1 valid (header in *h), 0 not. */
static int read_valid_chunk(const pc_store *s, uint64_t id, uint8_t *buf, struct chunk_hdr *h)
{
	if (read_chunk(s, id, buf))
		return 0;
	memcpy(h, buf, CHUNK_HDR);
	return chunk_valid(s, h, buf, id);
}

int pc_store_create(const char *dir, uint32_t chunk_size, uint64_t nslots, char *err, size_t errlen)
{
	if (chunk_size < 4096 || chunk_size > (1u << 20) || chunk_size % 4096 || nslots < 2) {
		snprintf(err, errlen, "chunk size must be a multiple of 4 KiB up to 1 MiB and the ring at least 2 chunks");
		return -EINVAL;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/ring.dat", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(e));
		return -e;
	}
	off_t size = (off_t)SB_SIZE + (off_t)nslots * chunk_size;
	/* reserve the whole ring now, so a full disk shows at creation, not
	 * in the middle of a capture */
	int rc = posix_fallocate(fd, 0, size);
	if (rc == EOPNOTSUPP || rc == EINVAL)
		rc = ftruncate(fd, size) ? errno : 0;
	if (rc) {
		snprintf(err, errlen, "cannot reserve %lld bytes for %s: %s", (long long)size, path, strerror(rc));
		close(fd);
		unlink(path);
		return -rc;
	}
	struct superblock sb;
	memset(&sb, 0, sizeof sb);
	memcpy(sb.magic, store_magic, 8);
	sb.version = 1;
	sb.chunk_size = chunk_size;
	sb.nslots = nslots;
	sb.created_ns = (uint64_t)pc_now_ns();
	sb.next_capture_id = 1;
	if (pwrite(fd, &sb, sizeof sb, 0) != (ssize_t)sizeof sb || fsync(fd)) {
		int e = errno;
		snprintf(err, errlen, "cannot write the superblock of %s: %s", path, strerror(e));
		close(fd);
		unlink(path);
		return -e;
	}
	close(fd);
	return 0;
}

/* A writer that died leaves head behind the chunks it wrote: walk forward
 * over every valid chunk with the expected id. */
static void recover_head(pc_store *s)
{
	struct chunk_hdr h;
	uint64_t head = s->sb->head;
	while (read_valid_chunk(s, head, s->chunk, &h))
		head++;
	__atomic_store_n(&s->sb->head, head, __ATOMIC_RELEASE);
}

pc_store *pc_store_open(const char *dir, int writer, char *err, size_t errlen)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/ring.dat", dir);
	int fd = open(path, (writer ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open store %s: %s", path, strerror(errno));
		return NULL;
	}
	if (writer && flock(fd, LOCK_EX | LOCK_NB)) {
		snprintf(err, errlen, "store %s is being written by another process", path);
		close(fd);
		return NULL;
	}
	/* readers map it read-write too: the superblock is read-only for them
	 * in practice, but a shared writable map of it is what they poll */
	void *m = mmap(NULL, SB_SIZE, writer ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	struct superblock *sb = m;
	if (memcmp(sb->magic, store_magic, 8) || sb->version != 1 || sb->chunk_size < 4096 ||
	    sb->chunk_size > (1u << 20) || sb->nslots < 2) {
		snprintf(err, errlen, "%s is not a pushcap store (bad superblock)", path);
		munmap(m, SB_SIZE);
		close(fd);
		return NULL;
	}
	pc_store *s = calloc(1, sizeof *s);
	uint8_t *chunk = aligned_alloc(4096, sb->chunk_size);
	if (!s || !chunk) {
		free(s);
		free(chunk);
		snprintf(err, errlen, "out of memory");
		munmap(m, SB_SIZE);
		close(fd);
		return NULL;
	}
	s->fd = fd;
	s->writer = writer;
	s->sb = sb;
	s->chunk_size = sb->chunk_size;
	s->nslots = sb->nslots;
	s->chunk = chunk;
	s->idx_fd = -1;
	if (writer) {
		recover_head(s);
		sb->writer_pid = (int32_t)getpid();
	}
	return s;
}

void pc_store_info_get(const pc_store *s, pc_store_info *info)
{
	memset(info, 0, sizeof *info);
	info->active_capture = load32_acq(&s->sb->active_capture);
	info->head = load_acq(&s->sb->head);
	info->chunk_size = s->chunk_size;
	info->nslots = s->nslots;
	info->oldest = info->head > s->nslots ? info->head - s->nslots : 0;
	info->tick_ts = load_acq(&s->sb->tick_ts);
	info->next_capture_id = s->sb->next_capture_id;
	info->created_ns = s->sb->created_ns;
	info->writer_pid = s->sb->writer_pid;
}

void pc_store_close(pc_store *s)
{
	if (!s)
		return;
	if (s->writer) {
		pc_store_end_capture(s);
		s->sb->writer_pid = 0;
		msync(s->sb, SB_SIZE, MS_SYNC);
		fdatasync(s->fd);
	}
	munmap(s->sb, SB_SIZE);
	close(s->fd);
	free(s->chunk);
	free(s);
}

/* ---- writer ------------------------------------------------------------- */
int pc_store_begin_capture(pc_store *s, uint32_t capture_id, int idx_fd)
{
	int rc = pc_store_end_capture(s);
	if (rc)
		return rc;
	s->idx_fd = idx_fd;
	if (capture_id >= s->sb->next_capture_id)
		s->sb->next_capture_id = capture_id + 1ull;
	__atomic_store_n(&s->sb->active_capture, capture_id, __ATOMIC_RELEASE);
	s->cur.capture_id = capture_id;
	return 0;
}

static int write_idx(int fd, const struct chunk_hdr *h)
{
	if (fd < 0)
		return 0;
	pc_store_idx e = { h->chunk_id, h->ts_first, h->ts_last, h->bytes_wire, h->pkt_cnt, h->bytes_cap };
	ssize_t n = write(fd, &e, sizeof e);
	return n == (ssize_t)sizeof e ? 0 : (n < 0 ? -errno : -EIO);
}

/* Seals the chunk being filled: checksum, one pwrite, index entry, then
 * the new head for readers. */
static int commit(pc_store *s)
{
	if (!s->open)
		return 0;
	struct chunk_hdr *h = &s->cur;
	h->magic = CHUNK_MAGIC;
	h->chunk_id = s->sb->head;
	h->hash = chunk_hash(h, s->chunk + CHUNK_HDR);
	memcpy(s->chunk, h, CHUNK_HDR);
	/* head = this id (the last commit's store) is visible before any byte
	 * of the slot changes, so a reader of the mapped ring that still sees
	 * head <= id - nslots after copying a chunk out of this slot knows its
	 * copy holds none of these bytes (pc_store_cat) */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	size_t len = CHUNK_HDR + h->length;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(s->fd, s->chunk + done, len - done, slot_offset(s, h->chunk_id) + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	int rc = write_idx(s->idx_fd, h);
	if (rc)
		return rc;
	__atomic_store_n(&s->sb->head, h->chunk_id + 1, __ATOMIC_RELEASE);
	s->st.chunks++;
	uint32_t capture = h->capture_id;
	memset(h, 0, sizeof *h);
	h->capture_id = capture;
	s->open = 0;
	return 0;
}

int pc_store_put(pc_store *s, const pc_pkt *pkts, int n)
{
	const uint32_t room = s->chunk_size - CHUNK_HDR;
	for (int i = 0; i < n; i++) {
		const pc_pkt *p = &pkts[i];
		uint32_t caplen = p->caplen;
		if (REC_HDR + caplen > room) {
			caplen = room - REC_HDR; /* a frame larger than a chunk is cut */
			s->st.truncated++;
		}
		uint32_t rec = REC_HDR + caplen;
		if (s->open && s->cur.length + rec > room) {
			int rc = commit(s);
			if (rc)
				return rc;
		}
		struct chunk_hdr *h = &s->cur;
		uint8_t *r = s->chunk + CHUNK_HDR + h->length;
		uint16_t c16 = (uint16_t)caplen, w16 = (uint16_t)p->wirelen;
		/* lengths over 16 bits keep their high bytes in the record's pad,
		 * and the chunk is marked so the FMAD stream can cut them */
		uint8_t ext[2] = { (uint8_t)(caplen >> 16), (uint8_t)(p->wirelen >> 16) };
		memcpy(r, &p->ts, 8);
		memcpy(r + 8, &c16, 2);
		memcpy(r + 10, &w16, 2);
		r[12] = p->port;
		r[13] = p->flags & PC_PKT_FCS_ERR;
		memcpy(r + 14, ext, 2);
		memcpy(r + REC_HDR, p->data, caplen);
		if (ext[0] | ext[1])
			h->flags |= CHUNK_EXT;
		if (!s->open) {
			h->ts_first = p->ts;
			s->open = 1;
		}
		h->ts_last = p->ts;
		h->length += rec;
		h->pkt_cnt++;
		if (p->wirelen) {
			h->bytes_wire += p->wirelen;
			h->bytes_cap += caplen;
			s->st.packets++;
			s->st.bytes_wire += p->wirelen;
			s->st.bytes_cap += caplen;
		}
	}
	return n;
}

int pc_store_flush(pc_store *s) { return commit(s); }

void pc_store_tick(pc_store *s, uint64_t ts)
{
	__atomic_store_n(&s->sb->tick_ts, ts, __ATOMIC_RELEASE);
}

int pc_store_end_capture(pc_store *s)
{
	int rc = commit(s);
	if (rc)
		return rc;
	if (s->idx_fd >= 0)
		fdatasync(s->idx_fd); /* a closed capture's index is complete on disk */
	__atomic_store_n(&s->sb->active_capture, 0u, __ATOMIC_RELEASE);
	s->idx_fd = -1;
	return 0;
}

int pc_store_sync(pc_store *s)
{
	/* the index too: after a power cut it must still count what the ring holds */
	if (msync(s->sb, SB_SIZE, MS_SYNC) || fdatasync(s->fd) || (s->idx_fd >= 0 && fdatasync(s->idx_fd)))
		return -errno;
	return 0;
}

void pc_store_writer_stats(const pc_store *s, pc_store_stats *st) { *st = s->st; }

int pc_store_reindex(pc_store *s, uint32_t capture_id, uint64_t from_id, int idx_fd)
{
	uint64_t head = load_acq(&s->sb->head);
	uint64_t oldest = head > s->nslots ? head - s->nslots : 0;
	int added = 0;
	for (uint64_t id = from_id > oldest ? from_id : oldest; id < head; id++) {
		struct chunk_hdr h;
		if (!read_valid_chunk(s, id, s->chunk, &h))
			continue;
		if (h.capture_id != capture_id)
			break;
		int rc = write_idx(idx_fd, &h);
		if (rc)
			return rc;
		added++;
	}
	return added;
}

/* ---- index ---------------------------------------------------------------- */
int64_t pc_store_idx_count(int idx_fd)
{
	struct stat st;
	if (fstat(idx_fd, &st))
		return -errno;
	return st.st_size / (int64_t)sizeof(pc_store_idx);
}

int pc_store_idx_get(int idx_fd, int64_t i, pc_store_idx *e)
{
	ssize_t n = pread(idx_fd, e, sizeof *e, (off_t)i * (off_t)sizeof *e);
	return n == (ssize_t)sizeof *e ? 0 : -EIO;
}

uint64_t pc_store_seek_time(int idx_fd, uint64_t first_id, uint64_t ts)
{
	int64_t lo = 0, hi = pc_store_idx_count(idx_fd);
	if (hi < 0)
		hi = 0;
	/* the first chunk whose last packet is at or after ts */
	while (lo < hi) {
		int64_t mid = lo + (hi - lo) / 2;
		pc_store_idx e;
		if (pc_store_idx_get(idx_fd, mid, &e) || e.ts_last < ts)
			lo = mid + 1;
		else
			hi = mid;
	}
	return first_id + (uint64_t)lo;
}

/* ---- reader ----------------------------------------------------------------- */
pc_store_reader *pc_store_reader_open(pc_store *s, uint32_t capture_id, uint64_t first_id,
				      uint64_t start_id, int idx_fd)
{
	pc_store_reader *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->buf = aligned_alloc(4096, s->chunk_size);
	if (!r->buf) {
		free(r);
		return NULL;
	}
	r->s = s;
	r->capture_id = capture_id;
	r->first_id = first_id;
	r->next_id = start_id < first_id ? first_id : start_id;
	r->idx_fd = idx_fd;
	return r;
}

/* Adds the index's counts for chunks [from, to) to the given counters. */
static void count_from_idx(pc_store_reader *r, uint64_t from, uint64_t to, uint64_t *chunks,
			   uint64_t *pkts, uint64_t *bytes)
{
	for (uint64_t id = from; id < to; id++) {
		pc_store_idx e;
		(*chunks)++;
		if (r->idx_fd >= 0 && pc_store_idx_get(r->idx_fd, (int64_t)(id - r->first_id), &e) == 0 &&
		    e.chunk_id == id) {
			*pkts += e.pkts;
			if (bytes)
				*bytes += e.bytes_wire;
		}
	}
}

/* 1 when the writer may have begun overwriting chunk id's slot.  It
 * stores head = id + nslots before it writes a byte of that slot's next
 * lap (see commit), so a reader that copied a chunk out of the mapped ring
 * and then still sees a lower head copied only that chunk's bytes. */
static int overwritten(const pc_store *s, uint64_t id)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE); /* the copy's loads before head's */
	return load_acq(&s->sb->head) - id >= s->nslots;
}

/* Finds chunk next_id and checks it: 1 with its header in r->hdr and the
 * chunk in *chunk, 0 when nothing is committed yet (or the capture ended:
 * see r->ended), negative on an I/O error.  With mapped the chunk is where
 * it lies in the ring: the caller copies out what it needs, then asks
 * overwritten(r->cur_id) before it uses the copy.  Otherwise the chunk is
 * read with pread into r->buf, where it stays whole. */
static int load_chunk(pc_store_reader *r, int mapped, const uint8_t **chunk)
{
	pc_store *s = r->s;
	for (;;) {
		/* active before head: a capture seen inactive has all its chunks
		 * below the head read after it */
		uint32_t active = load32_acq(&s->sb->active_capture);
		uint64_t head = load_acq(&s->sb->head);
		if (r->next_id >= head) {
			if (active != r->capture_id)
				r->ended = 1;
			return 0;
		}
		if (head - r->next_id >= s->nslots) {
			/* lapped: the slot we want holds (or is getting) a newer chunk;
			 * skip to the oldest chunk the writer cannot be rewriting */
			uint64_t resume = head - s->nslots + 1;
			count_from_idx(r, r->next_id, resume, &r->st.lost_chunks, &r->st.lost_pkts, &r->st.lost_bytes);
			r->next_id = resume;
			continue;
		}
		const uint8_t *c = r->buf;
		if (mapped) {
			c = r->map + slot_offset(s, r->next_id);
		} else {
			int rc = read_chunk(s, r->next_id, r->buf);
			if (rc) {
				snprintf(r->err, sizeof r->err, "reading chunk %llu: %s",
					 (unsigned long long)r->next_id, strerror(-rc));
				return rc;
			}
		}
		struct chunk_hdr h;
		memcpy(&h, c, CHUNK_HDR);
		if (!chunk_valid(s, &h, c, r->next_id)) {
			if (load_acq(&s->sb->head) - r->next_id >= s->nslots)
				continue; /* overwritten while we read it: count it as lapped */
			count_from_idx(r, r->next_id, r->next_id + 1, &r->st.corrupt_chunks, &r->st.corrupt_pkts, NULL);
			snprintf(r->err, sizeof r->err, "chunk %llu failed its checksum and was skipped",
				 (unsigned long long)r->next_id);
			r->next_id++;
			continue;
		}
		if (h.capture_id != r->capture_id) {
			r->ended = 1; /* the next capture starts here */
			return 0;
		}
		r->hdr = h;
		r->cur_id = r->next_id;
		r->next_id++;
		*chunk = c;
		return 1;
	}
}

/* A record's header (docs/store-format.md, Chunks).  Both ways out of the
 * store, pc_store_next and pc_store_cat, walk a chunk with rec_next. */
struct rec {
	uint64_t ts;
	uint32_t caplen, wire;
};

/* Decodes the record at p into *rec and returns the next record, or NULL
 * when this one runs past end (never in a chunk that passed its checksum,
 * but a chunk in the mapped ring may change under the walk). */
static inline const uint8_t *rec_next(const uint8_t *p, const uint8_t *end, struct rec *rec)
{
	uint16_t c16, w16;
	if (end - p < REC_HDR)
		return NULL;
	memcpy(&rec->ts, p, 8);
	memcpy(&c16, p + 8, 2);
	memcpy(&w16, p + 10, 2);
	rec->caplen = c16 | (uint32_t)p[14] << 16;
	rec->wire = w16 | (uint32_t)p[15] << 16;
	if ((size_t)(end - p - REC_HDR) < rec->caplen)
		return NULL;
	return p + REC_HDR + rec->caplen;
}

int pc_store_next(pc_store_reader *r, pc_pkt *out, int max)
{
	int n = 0;
	while (n < max) {
		if (r->left == 0) {
			if (n)
				break; /* loading reuses the buffer the packets point into */
			const uint8_t *c;
			int rc = r->ended ? 0 : load_chunk(r, 0, &c);
			if (rc <= 0)
				return rc;
			r->pos = CHUNK_HDR;
			r->left = r->hdr.pkt_cnt;
			r->rec = 0;
			r->st.chunks++;
		}
		const uint8_t *h = r->buf + r->pos;
		struct rec rec;
		const uint8_t *next = rec_next(h, r->buf + CHUNK_HDR + r->hdr.length, &rec);
		if (!next) {
			snprintf(r->err, sizeof r->err, "chunk %llu: record overruns the chunk",
				 (unsigned long long)r->cur_id);
			r->left = 0;
			break;
		}
		r->pos = (uint32_t)(next - r->buf);
		r->left--;
		if (r->skip) {
			/* resuming: these records were delivered before */
			r->skip--;
			r->rec++;
			continue;
		}
		pc_pkt *p = &out[n++];
		p->ts = rec.ts;
		p->data = h + REC_HDR;
		p->caplen = rec.caplen;
		p->wirelen = rec.wire;
		p->port = h[12];
		p->flags = h[13];
		p->rec = r->rec++;
		if (rec.wire) {
			r->st.packets++;
			r->st.bytes_wire += rec.wire;
			r->st.bytes_cap += rec.caplen;
		}
	}
	return n;
}

int pc_store_reader_ended(const pc_store_reader *r) { return r->ended && r->left == 0; }
void pc_store_reader_skip(pc_store_reader *r, uint32_t n) { r->skip = n; }
uint64_t pc_store_reader_chunk(const pc_store_reader *r) { return r->cur_id; }
uint64_t pc_store_reader_position(const pc_store_reader *r) { return r->next_id; }
void pc_store_reader_stats(const pc_store_reader *r, pc_store_stats *st) { *st = r->st; }
const char *pc_store_reader_error(const pc_store_reader *r) { return r->err; }

void pc_store_reader_close(pc_store_reader *r)
{
	if (!r)
		return;
	if (r->map)
		munmap((void *)r->map, r->map_len);
	free(r->out);
	free(r->buf);
	free(r);
}

/* ---- stream_cat's fast path -------------------------------------------------- */
/* pc_store_cat reads chunks where they lie in the ring, mapped read-only,
 * instead of copying each out with pread: the checksum pass then pulls the
 * chunk into cache and the pass that writes the output reads it from
 * there, and no copy is made that only the kernel needed (that copy is the
 * whole of `cat`'s work, so it cannot be afforded on top of ours).  The
 * output of up to CAT_CHUNKS chunks is made in r->out and written at once;
 * a chunk's output joins it only when overwritten() says the writer did
 * not touch the chunk while it was read.  Where the ring cannot be mapped
 * the same code reads from r->buf, filled by pread. */
#define CAT_CHUNKS 4
#define CAT_SLACK 64              /* copy_frame may write this far past the output */

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int cat_setup(pc_store_reader *r)
{
	const pc_store *s = r->s;
	r->out = aligned_alloc(4096, (size_t)CAT_CHUNKS * s->chunk_size + 4096);
	if (!r->out)
		return -ENOMEM;
	size_t len = (size_t)SB_SIZE + (size_t)s->nslots * s->chunk_size;
	struct stat st;
	/* a ring shorter than its superblock says would be SIGBUS in a map, an
	 * error from pread */
	if (fstat(s->fd, &st) || (uint64_t)st.st_size < len || len / s->chunk_size < s->nslots)
		return 0;
	void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, s->fd, 0);
	if (m == MAP_FAILED)
		return 0; /* address space: read with pread */
	r->map = m;
	r->map_len = len;
	return 0;
}

/* Lets the pages of chunk id's slot go from our page table (not from the
 * page cache): what was read of the map must not count as our memory. */
static void cat_release(pc_store_reader *r, uint64_t id)
{
	madvise((void *)(r->map + slot_offset(r->s, id)), r->s->chunk_size, MADV_DONTNEED);
}

/* The chunk as an FMAD chunk: its records are already FMAD records. */
static size_t cat_fmad(const struct chunk_hdr *hdr, const uint8_t *chunk, uint8_t *out, pc_store_stats *st)
{
	uint16_t cnt = (uint16_t)hdr->pkt_cnt;
	uint32_t wire = (uint32_t)hdr->bytes_wire, cap = hdr->bytes_cap, len = hdr->length;
	memset(out, 0, 48);
	memcpy(out, &cnt, 2);
	memcpy(out + 4, &wire, 4);
	memcpy(out + 8, &cap, 4);
	memcpy(out + 12, &len, 4);
	memcpy(out + 16, &hdr->ts_first, 8);
	memcpy(out + 24, &hdr->ts_last, 8);
	memcpy(out + 48, chunk + CHUNK_HDR, len);
	st->packets += hdr->pkt_cnt;
	st->bytes_wire += hdr->bytes_wire;
	st->bytes_cap += hdr->bytes_cap;
	return 48 + (size_t)len;
}

/* The chunk as nanosecond pcap records: each 16-byte FMAD record header
 * becomes a 16-byte pcap one before the same frame.  Never more bytes out
 * than the chunk's records. */
static size_t cat_pcap(const struct chunk_hdr *hdr, const uint8_t *chunk, uint8_t *out, pc_store_stats *st)
{
	const uint8_t *p = chunk + CHUNK_HDR, *end = p + hdr->length;
	uint8_t *o = out;
	uint64_t pkts = 0, wire_sum = 0, cap_sum = 0;
	struct rec rec;
	for (const uint8_t *next; (next = rec_next(p, end, &rec)); p = next) {
		if (rec.wire == 0)
			continue; /* a time tick has no place in a pcap file */
		uint32_t ph[4] = { (uint32_t)(rec.ts / 1000000000u), (uint32_t)(rec.ts % 1000000000u), rec.caplen,
				   rec.wire };
		memcpy(o, ph, REC_HDR);
		memcpy(o + REC_HDR, p + REC_HDR, rec.caplen);
		o += REC_HDR + rec.caplen;
		pkts++;
		wire_sum += rec.wire;
		cap_sum += rec.caplen;
	}
	st->packets += pkts;
	st->bytes_wire += wire_sum;
	st->bytes_cap += cap_sum;
	return (size_t)(o - out);
}

int pc_store_cat(pc_store_reader *r, int fd, int chunked, int max_chunks)
{
	if (r->left || r->skip)
		return -EINVAL; /* mid-chunk: the caller must use pc_store_next */
	if (!r->out) {
		int rc = cat_setup(r);
		if (rc)
			return rc;
	}
	const pc_store *s = r->s;
	const int mapped = r->map != NULL;
	size_t used = 0;
	int done = 0, rc = 0;
	while (done < max_chunks && !r->ended) {
		const uint8_t *c;
		rc = load_chunk(r, mapped, &c);
		if (rc <= 0)
			break;
		rc = 0;
		uint64_t id = r->cur_id;
		if (chunked && (r->hdr.flags & CHUNK_EXT)) {
			/* FMAD records cannot hold these lengths: hand the chunk to
			 * pc_store_next, in the buffer it reads */
			if (mapped) {
				memcpy(r->buf, c, CHUNK_HDR + r->hdr.length);
				cat_release(r, id);
				if (overwritten(s, id)) {
					count_from_idx(r, id, id + 1, &r->st.lost_chunks, &r->st.lost_pkts, &r->st.lost_bytes);
					continue;
				}
			}
			r->pos = CHUNK_HDR;
			r->left = r->hdr.pkt_cnt;
			r->rec = 0;
			r->st.chunks++;
			if (!done)
				rc = -EOVERFLOW;
			break;
		}
		pc_store_stats add = { 0 };
		size_t n = chunked ? cat_fmad(&r->hdr, c, r->out + used, &add) : cat_pcap(&r->hdr, c, r->out + used, &add);
		if (mapped) {
			cat_release(r, id);
			if (overwritten(s, id)) {
				/* what was made of it may be mixed with the next lap's bytes */
				count_from_idx(r, id, id + 1, &r->st.lost_chunks, &r->st.lost_pkts, &r->st.lost_bytes);
				continue;
			}
		}
		used += n;
		r->st.chunks++;
		r->st.packets += add.packets;
		r->st.bytes_wire += add.bytes_wire;
		r->st.bytes_cap += add.bytes_cap;
		done++;
		if (used + s->chunk_size > (size_t)CAT_CHUNKS * s->chunk_size) {
			int wrc = write_all(fd, r->out, used);
			if (wrc)
				return wrc;
			used = 0;
		}
	}
	if (used) {
		int wrc = write_all(fd, r->out, used);
		if (wrc)
			return wrc;
	}
	return rc < 0 ? rc : done;
}
