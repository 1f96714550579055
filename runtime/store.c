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
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
/* XXH3_state_t on the stack: no allocation per chunk */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#if defined(__x86_64__)
/* the same hash values, computed with the widest vectors the CPU has */
#include <xxh_x86dispatch.h>
#endif

#include "pushcap.h"

#include "store_priv.h"


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

/* h is a copy of a chunk's header and records where its records are (the
 * slot holds them right after the header).  chunk_fits: h says it is
 * chunk `id` and its length fits the slot; chunk_sum_ok: the checksum
 * holds for h and the records; chunk_valid: both. */
int store_chunk_fits(const pc_store *s, const struct chunk_hdr *h, uint64_t id)
{
	return h->magic == CHUNK_MAGIC && h->chunk_id == id && h->length <= s->chunk_size - CHUNK_HDR;
}

int store_chunk_sum_ok(const struct chunk_hdr *h, const uint8_t *records)
{
	return h->hash == chunk_hash(h, records);
}

static int chunk_valid(const pc_store *s, const struct chunk_hdr *h, const uint8_t *records, uint64_t id)
{
	return store_chunk_fits(s, h, id) && store_chunk_sum_ok(h, records);
}

/* Reads the slot of chunk id: its header into *h and the rest of the slot
 * (chunk_size - CHUNK_HDR bytes) to records, which need not follow the
 * header in memory.  0, or -errno. */
int store_read_chunk(const pc_store *s, uint64_t id, struct chunk_hdr *h, uint8_t *records)
{
	struct iovec iov[2] = { { h, CHUNK_HDR }, { records, s->chunk_size - CHUNK_HDR } };
	ssize_t n = preadv(s->fd, iov, 2, slot_offset(s, id));
	if (n < 0)
		return -errno;
	if ((size_t)n < CHUNK_HDR)
		return -EIO;
	return 0;
}

/* 1 when slot id holds chunk id, whole (read into h and records). */
static int read_valid_chunk(const pc_store *s, uint64_t id, struct chunk_hdr *h, uint8_t *records)
{
	return store_read_chunk(s, id, h, records) == 0 && chunk_valid(s, h, records, id);
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
	while (read_valid_chunk(s, head, &h, s->chunk))
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

static void sync_join(pc_store *s);

void pc_store_close(pc_store *s)
{
	if (!s)
		return;
	sync_join(s);
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
	/* and the next chunk's bytes after it: a reader of the mapped ring
	 * that still sees the old head must not see the next lap's bytes
	 * (x86 keeps stores in order anyway; weaker CPUs need this) */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
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

static void *sync_main(void *arg)
{
	pc_store *s = arg;
	int rc = 0;
	if (msync(s->sb, SB_SIZE, MS_SYNC) || fdatasync(s->sync_fd) ||
	    (s->sync_idx_fd >= 0 && fdatasync(s->sync_idx_fd)))
		rc = -errno;
	s->sync_rc = rc;
	__atomic_store_n(&s->sync_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Waits for a background sync; returns its result (0 when there was none). */
static void sync_join(pc_store *s)
{
	if (!s->sync_busy)
		return;
	pthread_join(s->sync_th, NULL);
	close(s->sync_fd);
	if (s->sync_idx_fd >= 0)
		close(s->sync_idx_fd);
	s->sync_busy = 0;
}

int pc_store_sync_async(pc_store *s)
{
	int prev = 0;
	if (s->sync_busy) {
		if (!__atomic_load_n(&s->sync_done, __ATOMIC_ACQUIRE))
			return 1;
		sync_join(s);
		prev = s->sync_rc;
	}
	/* close-on-exec copies: a child spawned meanwhile must not hold them */
	s->sync_fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
	if (s->sync_fd < 0)
		return -errno;
	s->sync_idx_fd = s->idx_fd >= 0 ? fcntl(s->idx_fd, F_DUPFD_CLOEXEC, 0) : -1;
	s->sync_done = 0;
	s->sync_rc = 0;
	int rc = pthread_create(&s->sync_th, NULL, sync_main, s);
	if (rc) {
		close(s->sync_fd);
		if (s->sync_idx_fd >= 0)
			close(s->sync_idx_fd);
		return -rc;
	}
	s->sync_busy = 1;
	return prev;
}

int pc_store_sync(pc_store *s)
{
	sync_join(s);
	/* a background sync that failed since the last look is reported too */
	int bg = s->sync_rc;
	s->sync_rc = 0;
	/* the index too: after a power cut it must still count what the ring holds */
	if (msync(s->sb, SB_SIZE, MS_SYNC) || fdatasync(s->fd) || (s->idx_fd >= 0 && fdatasync(s->idx_fd)))
		return -errno;
	return bg;
}

void pc_store_writer_stats(const pc_store *s, pc_store_stats *st) { *st = s->st; }

int pc_store_reindex(pc_store *s, uint32_t capture_id, uint64_t from_id, int idx_fd)
{
	uint64_t head = load_acq(&s->sb->head);
	uint64_t oldest = head > s->nslots ? head - s->nslots : 0;
	int added = 0;
	for (uint64_t id = from_id > oldest ? from_id : oldest; id < head; id++) {
		struct chunk_hdr h;
		if (!read_valid_chunk(s, id, &h, s->chunk))
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
void store_count_from_idx(const pc_store_reader *r, uint64_t from, uint64_t to, uint64_t *chunks,
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

void store_chunk_bad(const pc_store_reader *r, uint64_t id, pc_store_stats *st, char *err, size_t errlen)
{
	/* the writer overwrote it while we read it, or it is corrupt */
	if (load_acq(&r->s->sb->head) - id >= r->s->nslots) {
		store_count_from_idx(r, id, id + 1, &st->lost_chunks, &st->lost_pkts, &st->lost_bytes);
		return;
	}
	store_count_from_idx(r, id, id + 1, &st->corrupt_chunks, &st->corrupt_pkts, NULL);
	snprintf(err, errlen, "chunk %llu failed its checksum and was skipped", (unsigned long long)id);
}

static void chunk_bad(pc_store_reader *r, uint64_t id)
{
	store_chunk_bad(r, id, &r->st, r->err, sizeof r->err);
}

/* Reads chunk next_id, its header into r->hdr and its records to records
 * (room for chunk_size - CHUNK_HDR bytes): 1 read, 0 nothing committed yet
 * (or the capture ended: see r->ended), negative on an I/O error.  The
 * checksum is the caller's to check, so that pc_store_cat can check it
 * while the records are in cache; a chunk that fails it goes to
 * chunk_bad. */
static int load_chunk(pc_store_reader *r, uint8_t *records)
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
			store_count_from_idx(r, r->next_id, resume, &r->st.lost_chunks, &r->st.lost_pkts, &r->st.lost_bytes);
			r->next_id = resume;
			continue;
		}
		uint64_t id = r->next_id;
		struct chunk_hdr h;
		int rc = store_read_chunk(s, id, &h, records);
		if (rc) {
			snprintf(r->err, sizeof r->err, "reading chunk %llu: %s", (unsigned long long)id, strerror(-rc));
			return rc;
		}
		if (!store_chunk_fits(s, &h, id)) {
			r->next_id++;
			chunk_bad(r, id);
			continue;
		}
		if (h.capture_id != r->capture_id) {
			/* the next capture starts here, unless a bit flipped */
			if (store_chunk_sum_ok(&h, records)) {
				r->ended = 1;
				return 0;
			}
			r->next_id++;
			chunk_bad(r, id);
			continue;
		}
		r->hdr = h;
		r->cur_id = id;
		r->next_id++;
		return 1;
	}
}

/* load_chunk into r->buf, passing over chunks that fail their checksum. */
static int load_checked(pc_store_reader *r)
{
	for (;;) {
		int rc = load_chunk(r, r->buf);
		if (rc <= 0 || store_chunk_sum_ok(&r->hdr, r->buf))
			return rc;
		chunk_bad(r, r->cur_id);
	}
}

int pc_store_next(pc_store_reader *r, pc_pkt *out, int max)
{
	int n = 0;
	while (n < max) {
		if (r->left == 0) {
			if (n)
				break; /* loading reuses the buffer the packets point into */
			int rc = r->ended ? 0 : load_checked(r);
			if (rc <= 0)
				return rc;
			r->pos = 0;
			r->left = r->hdr.pkt_cnt;
			r->rec = 0;
			r->st.chunks++;
		}
		uint8_t *h = r->buf + r->pos;
		struct rec rec;
		uint8_t *next = rec_next(h, r->buf + r->hdr.length, &rec);
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
		rec_pkt(&out[n++], h, &rec, r->rec++);
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
	free(r->buf);
	free(r);
}

/* ---- stream_cat's fast path -------------------------------------------------- */
/* The one copy is the kernel's, as for `cat`.  In pcap mode a chunk's
 * records become pcap records where they were read, in r->buf: a pcap
 * record header is as long as an FMAD one, so only the headers change and
 * the frames stay put; then one write.  The checksum is taken a stretch at
 * a time just before that stretch's headers change, while it is in cache.
 * (Reading several chunks into a larger buffer before writing was slower:
 * one buffer of one chunk stays in cache.)  The chunked stream is the
 * stored records behind a new chunk header: one writev from r->buf. */
#define CAT_SEG 16384             /* hashed, then rewritten, in L1 */

static int writev_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* The loaded chunk (records in r->buf) as an FMAD chunk: its records are
 * already FMAD records. */
static int cat_fmad(pc_store_reader *r, int fd)
{
	uint8_t h[48];
	memset(h, 0, sizeof h);
	uint16_t cnt = (uint16_t)r->hdr.pkt_cnt;
	uint32_t wire = (uint32_t)r->hdr.bytes_wire, cap = r->hdr.bytes_cap, len = r->hdr.length;
	memcpy(h, &cnt, 2);
	memcpy(h + 4, &wire, 4);
	memcpy(h + 8, &cap, 4);
	memcpy(h + 12, &len, 4);
	memcpy(h + 16, &r->hdr.ts_first, 8);
	memcpy(h + 24, &r->hdr.ts_last, 8);
	struct iovec iov[2] = { { h, 48 }, { r->buf, len } };
	return writev_all(fd, iov, 2);
}

static int cat_chunked(pc_store_reader *r, int fd, int max_chunks)
{
	int done = 0;
	while (done < max_chunks && !r->ended) {
		int rc = load_checked(r);
		if (rc <= 0)
			return rc < 0 ? rc : done;
		r->st.chunks++;
		if (r->hdr.flags & CHUNK_EXT) {
			/* FMAD records cannot hold these lengths: hand the chunk to
			 * pc_store_next */
			r->pos = 0;
			r->left = r->hdr.pkt_cnt;
			r->rec = 0;
			return done ? done : -EOVERFLOW;
		}
		if ((rc = cat_fmad(r, fd)))
			return rc;
		r->st.packets += r->hdr.pkt_cnt;
		r->st.bytes_wire += r->hdr.bytes_wire;
		r->st.bytes_cap += r->hdr.bytes_cap;
		done++;
	}
	return done;
}

/* The common case, kept tight: rewrites in place the headers of the
 * records from p on whose headers end by lim, up to the first tick or a
 * length that runs past end.  Returns where it stopped. */
static inline uint8_t *pcap_headers(uint8_t *p, const uint8_t *lim, const uint8_t *end, int ext)
{
	while (lim - p >= REC_HDR) {
		struct rec r;
		rec_decode(p, &r, ext);
		if (r.wire == 0 || (size_t)(end - p) - REC_HDR < r.caplen)
			break;
		pcap_header(p, &r);
		p += REC_HDR + r.caplen;
	}
	return p;
}

/* Turns the records of chunk h, read to rec, into nanosecond pcap records
 * in place, and checks the chunk's checksum on the way: each stretch is
 * hashed before its record headers change.  Time ticks have no place in a
 * pcap file: from the first one on, the rest of the chunk is hashed at once
 * and the records after it move down.  Returns the pcap bytes at rec (and
 * adds to st), or -1 when the chunk fails its checksum. */
static ssize_t cat_pcap(const struct chunk_hdr *h, uint8_t *rec, pc_store_stats *st)
{
	struct chunk_hdr h0 = *h;
	h0.hash = 0;
	XXH3_state_t xs;
	XXH3_INITSTATE(&xs); /* reset would trust a stale seed and secret */
	XXH3_64bits_reset_withSeed(&xs, XXH3_64bits(&h0, CHUNK_HDR)); /* as chunk_hash */
	const size_t len = h->length;
	size_t pos = 0;           /* the next record */
	size_t hashed = 0;        /* [0, hashed) is in the hash */
	size_t w = 0;             /* where that record goes: below pos once a tick is dropped */
	uint32_t ticks = 0;
	while (pos < len) {
		if (w == pos) {
			uint8_t *p = (h->flags & CHUNK_EXT) ? pcap_headers(rec + pos, rec + hashed, rec + len, 1)
							     : pcap_headers(rec + pos, rec + hashed, rec + len, 0);
			w = pos = (size_t)(p - rec);
			if (pos == len)
				break;
		}
		if (pos + REC_HDR > hashed) {
			size_t n = len - hashed < CAT_SEG ? len - hashed : CAT_SEG;
			if (n == 0)
				return -1; /* a piece of a header at the end */
			XXH3_64bits_update(&xs, rec + hashed, n);
			hashed += n;
			continue;
		}
		struct rec r;
		uint8_t *next = rec_next(rec + pos, rec + len, &r);
		if (!next)
			return -1; /* overruns the chunk: cannot pass the checksum */
		if (r.wire == 0) {
			if (hashed < len) {
				XXH3_64bits_update(&xs, rec + hashed, len - hashed);
				hashed = len;
			}
			ticks++;
		} else {
			memmove(rec + w + REC_HDR, rec + pos + REC_HDR, r.caplen);
			pcap_header(rec + w, &r);
			w += REC_HDR + r.caplen;
		}
		pos = (size_t)(next - rec);
	}
	XXH3_64bits_update(&xs, rec + hashed, len - hashed);
	if (XXH3_64bits_digest(&xs) != h->hash)
		return -1;
	/* the header's sums leave ticks out, as this output does */
	st->packets += h->pkt_cnt - ticks;
	st->bytes_wire += h->bytes_wire;
	st->bytes_cap += h->bytes_cap;
	return (ssize_t)w;
}

int pc_store_cat(pc_store_reader *r, int fd, int chunked, int max_chunks)
{
	if (r->left || r->skip)
		return -EINVAL; /* mid-chunk: the caller must use pc_store_next */
	if (chunked)
		return cat_chunked(r, fd, max_chunks);
	int done = 0;
	while (done < max_chunks && !r->ended) {
		int rc = load_chunk(r, r->buf);
		if (rc <= 0)
			return rc < 0 ? rc : done;
		ssize_t n = cat_pcap(&r->hdr, r->buf, &r->st);
		if (n < 0) {
			chunk_bad(r, r->cur_id);
			continue;
		}
		r->st.chunks++;
		struct iovec iov = { r->buf, (size_t)n };
		if (n && (rc = writev_all(fd, &iov, 1)))
			return rc;
		done++;
	}
	return done;
}
