/* store_ahead.c: a store reader that works ahead of its consumer, in threads.
 *
 * Most of an offline push is per chunk and independent of the other
 * chunks: the kernel's copy out of the ring, the checksum, the walk of the
 * records, decap and BPF.  Only splitting and writing need the packets in
 * order.  So worker threads each take the next chunk id, do all of that
 * into a slot of their own, and the consumer takes the slots in id order.
 *
 * Which chunk comes next, whether the reader was lapped, whether nothing
 * is committed yet or the capture ended: those are decided one claim at a
 * time under the lock, in the order load_chunk (store.c) decides them, and
 * a slot carries every count and message its claim made, so the consumer
 * sees what the synchronous reader would have.  After a claim that ends
 * the stream for now (nothing committed, capture ended, read error) no
 * more are made until the consumer has seen it; after "nothing yet" the
 * next claim is made when the consumer asks again, so a live push sees new
 * chunks as soon as it would have without threads.
 *
 * A slot is a copy: once read and checked it no longer depends on the
 * ring, so a consumer stalled on a full disk can be lapped without reading
 * anything torn. */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_priv.h"

#define MAX_THREADS 4
#define ZAP_EVERY 256             /* chunks read from the mapping between unmaps */

enum { SLOT_FREE, SLOT_BUSY, SLOT_READY };
enum { GOT_DATA, GOT_NONE, GOT_END, GOT_BAD, GOT_ERR };

struct slot {
	int state, got;
	uint64_t seq;
	uint64_t id;               /* the chunk (GOT_DATA, GOT_BAD) */
	uint64_t next_after;       /* the reader's next_id once this is consumed */
	struct chunk_hdr hdr;
	uint8_t *buf;              /* the chunk's records */
	pc_pkt *pkts, *inner;
	uint8_t *keep, *work;
	int n;
	int rc;                    /* GOT_ERR: -errno */
	pc_store_stats st;         /* what this slot adds to the reader's counts */
	pc_decap_stats dst;
	char err[256];
};

struct pc_store_ahead {
	pc_store_reader *r;
	const uint8_t *map;        /* the ring, read-only, for filtered reads; or NULL */
	size_t map_len;
	uint64_t mapped_chunks;    /* atomic */
	const pc_filter *filter;
	pc_decap_stats *dstats;
	int can_drop;              /* the filter has a BPF or FilterFrame */
	uint32_t maxrec;           /* records a chunk can hold */
	size_t work_len;
	/* under mu */
	pthread_mutex_t mu;
	pthread_cond_t to_workers, to_consumer;
	struct slot *slots;
	int nslots;
	uint64_t claim_seq, cons_seq;
	uint64_t next_id;          /* the next chunk to claim */
	uint64_t skip_id;          /* the first chunk: its first skip records were delivered */
	uint32_t skip;
	int paused;                /* a claim ended the stream for now */
	int resume_on_next;        /* paused by "nothing yet": claim again when asked */
	int holding;               /* the consumer holds slot cons_seq - 1 */
	int stop;
	int nthreads;
	pthread_t th[MAX_THREADS];
};

/* A page of the mapped ring that cannot be read (a disk error) raises
 * SIGBUS in the thread reading it.  The handler is the process's: it
 * belongs to whichever thread is reading the mapping (bus_env set), and
 * anything else is a real crash. */
static __thread sigjmp_buf *bus_env;
static pthread_once_t bus_once = PTHREAD_ONCE_INIT;

static void on_bus(int sig)
{
	if (bus_env)
		siglongjmp(*bus_env, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void bus_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_bus;
	sa.sa_flags = SA_NODEFER; /* a second error in this thread must reach us too */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

/* Decides slot sl's chunk, as load_chunk does before it reads.  Under mu.
 * GOT_DATA: sl->id is to be read; otherwise the stream ends here for now. */
static int claim(pc_store_ahead *a, struct slot *sl)
{
	pc_store_reader *r = a->r;
	pc_store *s = r->s;
	for (;;) {
		uint32_t active = load32_acq(&s->sb->active_capture);
		uint64_t head = load_acq(&s->sb->head);
		if (a->next_id >= head) {
			sl->next_after = a->next_id;
			return active != r->capture_id ? GOT_END : GOT_NONE;
		}
		if (head - a->next_id >= s->nslots) {
			uint64_t resume = head - s->nslots + 1;
			store_count_from_idx(r, a->next_id, resume, &sl->st.lost_chunks, &sl->st.lost_pkts,
					     &sl->st.lost_bytes);
			a->next_id = resume;
			continue;
		}
		sl->id = a->next_id++;
		sl->next_after = a->next_id;
		return GOT_DATA;
	}
}

/* ---- one chunk ------------------------------------------------------------------ */
/* Checks chunk sl->id, its header in sl->hdr and its records at rec. */
static int check(pc_store_ahead *a, struct slot *sl, const uint8_t *rec)
{
	pc_store_reader *r = a->r;
	if (!store_chunk_fits(r->s, &sl->hdr, sl->id)) {
		store_chunk_bad(r, sl->id, &sl->st, sl->err, sizeof sl->err);
		return GOT_BAD;
	}
	int sum_ok = store_chunk_sum_ok(&sl->hdr, rec);
	if (sl->hdr.capture_id != r->capture_id && sum_ok) {
		/* the next capture starts here */
		sl->next_after = sl->id;
		return GOT_END;
	}
	if (!sum_ok || sl->hdr.capture_id != r->capture_id) {
		store_chunk_bad(r, sl->id, &sl->st, sl->err, sizeof sl->err);
		return GOT_BAD;
	}
	return GOT_DATA;
}

/* The checked records at rec become sl->pkts (from record skip on) and go
 * through the filter.  in_place: rec is the slot's own copy, and each
 * record becomes a pcap record where it lies (the pc_pkt keeps its port
 * and flags), so the writer sends runs of them from there. */
static int walk(pc_store_ahead *a, struct slot *sl, uint8_t *rec, uint32_t skip, int in_place)
{
	uint8_t *p = rec, *end = rec + sl->hdr.length;
	uint32_t cnt = sl->hdr.pkt_cnt < a->maxrec ? sl->hdr.pkt_cnt : a->maxrec;
	int n = 0;
	for (uint32_t i = 0; i < cnt; i++) {
		struct rec rc;
		uint8_t *next = rec_next(p, end, &rc);
		if (!next) {
			/* cannot happen in a chunk that passed its checksum */
			snprintf(sl->err, sizeof sl->err, "chunk %llu: record overruns the chunk",
				 (unsigned long long)sl->id);
			break;
		}
		if (i >= skip) {
			pc_pkt *pk = &sl->pkts[n++];
			rec_pkt(pk, p, &rc, i);
			pk->flags &= (uint8_t)~PC_PKT_RAW;
			if (rc.wire) {
				if (in_place) {
					pcap_header(p, &rc);
					pk->flags |= PC_PKT_RAW;
				}
				sl->st.packets++;
				sl->st.bytes_wire += rc.wire;
				sl->st.bytes_cap += rc.caplen;
			}
		}
		p = next;
	}
	sl->n = n;
	if (a->filter && n > 0 && pc_filter_run(a->filter, sl->pkts, sl->inner, n, sl->work, a->work_len,
						sl->keep, &sl->dst) < 0) {
		sl->rc = -ENOBUFS;
		snprintf(sl->err, sizeof sl->err, "chunk %llu: no room to decapsulate its packets",
			 (unsigned long long)sl->id);
		return GOT_ERR;
	}
	return GOT_DATA;
}

/* The packets the filter kept, copied out of the mapping into the slot as
 * pcap records end to end: the writer sends them as one run. */
static void copy_kept(struct slot *sl)
{
	uint8_t *o = sl->buf;
	for (int i = 0; i < sl->n; i++) {
		pc_pkt *p = &sl->pkts[i];
		if (!sl->keep[i] || !p->wirelen)
			continue;
		struct rec rc = { p->ts, p->caplen, p->wirelen };
		pcap_header(o, &rc);
		memcpy(o + REC_HDR, p->data, p->caplen);
		p->data = o + REC_HDR;
		p->flags |= PC_PKT_RAW;
		o += REC_HDR + p->caplen;
	}
}

/* A filtered chunk read where it lies in the mapped ring: checked, walked
 * and filtered there, and only what is kept is copied.  Whether the writer
 * came back to this slot meanwhile is known only at the end: if it did,
 * what was read may be torn and the chunk counts as lapped.  Returns -1
 * when a page could not be read (SIGBUS): nothing of the slot is used. */
static int fill_mapped(pc_store_ahead *a, struct slot *sl, uint32_t skip)
{
	const pc_store *s = a->r->s;
	const uint8_t *src = a->map + SB_SIZE + (size_t)(sl->id % s->nslots) * s->chunk_size;
	sigjmp_buf env;
	if (sigsetjmp(env, 0)) {
		bus_env = NULL;
		return -1;
	}
	bus_env = &env;
	memcpy(&sl->hdr, src, CHUNK_HDR);
	uint8_t *rec = (uint8_t *)src + CHUNK_HDR; /* never written: walk's in_place is 0 */
	int got = check(a, sl, rec);
	if (got == GOT_DATA) {
		got = walk(a, sl, rec, skip, 0);
		if (got == GOT_DATA)
			copy_kept(sl);
	}
	bus_env = NULL;
	/* every read of the slot is done before head is looked at */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (load_acq(&s->sb->head) - sl->id >= s->nslots) {
		memset(&sl->st, 0, sizeof sl->st);
		memset(&sl->dst, 0, sizeof sl->dst);
		sl->n = 0;
		sl->err[0] = 0;
		sl->next_after = sl->id + 1; /* not an end of capture after all */
		store_chunk_bad(a->r, sl->id, &sl->st, sl->err, sizeof sl->err);
		return GOT_BAD;
	}
	return got;
}

/* Reads, checks, walks and filters chunk sl->id.  Outside mu. */
static int fill(pc_store_ahead *a, struct slot *sl, uint32_t skip)
{
	if (a->map) {
		int got = fill_mapped(a, sl, skip);
		/* this process's page table entries for the ring go every so
		 * often: reading terabytes must not leave them all mapped (a
		 * reader that needs a page again faults it back in) */
		if (__atomic_add_fetch(&a->mapped_chunks, 1, __ATOMIC_RELAXED) % ZAP_EVERY == 0)
			madvise((void *)a->map, a->map_len, MADV_DONTNEED);
		if (got >= 0)
			return got;
		/* a page could not be read: pread says why */
		memset(&sl->st, 0, sizeof sl->st);
		memset(&sl->dst, 0, sizeof sl->dst);
		sl->err[0] = 0;
	}
	pc_store_reader *r = a->r;
	int rc = store_read_chunk(r->s, sl->id, &sl->hdr, sl->buf);
	if (rc) {
		sl->rc = rc;
		sl->next_after = sl->id; /* as load_chunk: this chunk is still the next */
		snprintf(sl->err, sizeof sl->err, "reading chunk %llu: %s", (unsigned long long)sl->id, strerror(-rc));
		return GOT_ERR;
	}
	int got = check(a, sl, sl->buf);
	return got == GOT_DATA ? walk(a, sl, sl->buf, skip, 1) : got;
}

static void *worker(void *arg)
{
	pc_store_ahead *a = arg;
	pthread_mutex_lock(&a->mu);
	for (;;) {
		struct slot *sl = &a->slots[a->claim_seq % (uint64_t)a->nslots];
		if (a->stop)
			break;
		if (a->paused || sl->state != SLOT_FREE) {
			pthread_cond_wait(&a->to_workers, &a->mu);
			continue;
		}
		memset(&sl->st, 0, sizeof sl->st);
		memset(&sl->dst, 0, sizeof sl->dst);
		sl->err[0] = 0;
		sl->n = 0;
		sl->rc = 0;
		sl->seq = a->claim_seq++;
		int got = claim(a, sl);
		if (got == GOT_DATA) {
			uint32_t skip = 0;
			if (sl->id == a->skip_id) {
				skip = a->skip;
				a->skip = 0;
			}
			sl->state = SLOT_BUSY;
			pthread_mutex_unlock(&a->mu);
			got = fill(a, sl, skip);
			pthread_mutex_lock(&a->mu);
		}
		sl->got = got;
		if (got == GOT_NONE || got == GOT_END || got == GOT_ERR)
			a->paused = 1;
		sl->state = SLOT_READY;
		pthread_cond_broadcast(&a->to_consumer);
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

static int cpu_count(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	return 1;
}

static void free_slots(pc_store_ahead *a)
{
	for (int i = 0; a->slots && i < a->nslots; i++) {
		struct slot *sl = &a->slots[i];
		free(sl->buf);
		free(sl->pkts);
		free(sl->inner);
		free(sl->keep);
		free(sl->work);
	}
	free(a->slots);
}

pc_store_ahead *pc_store_ahead_new(pc_store_reader *r, int threads, const pc_filter *filter,
				   pc_decap_stats *dstats)
{
	pc_store_ahead *a = calloc(1, sizeof *a);
	if (!a)
		return NULL;
	a->r = r;
	a->filter = filter;
	a->dstats = dstats;
	a->can_drop = filter && (filter->bpf || filter->frame_ok);
	uint32_t room = r->s->chunk_size - CHUNK_HDR;
	a->maxrec = room / REC_HDR;
	if (threads <= 0)
		threads = cpu_count();
	a->nthreads = threads > MAX_THREADS ? MAX_THREADS : threads;
	/* each thread one slot, one the consumer holds, and a few finished
	 * ones, so that neither side waits for the other's uneven chunks */
	a->nslots = 2 * a->nthreads + 4;
	a->next_id = r->next_id;
	/* Filtered reads look at every packet and keep a few: they read the
	 * ring where it lies instead of copying all of it (decap to the
	 * output still builds from a copy) */
	if (a->can_drop && filter->decap != PC_DECAP_OUT) {
		/* one chunk more than the file: a read past the ring's end (a
		 * length changing under a walk) raises SIGBUS, which is handled,
		 * rather than SIGSEGV */
		a->map_len = SB_SIZE + (size_t)(r->s->nslots + 1) * r->s->chunk_size;
		void *m = mmap(NULL, a->map_len, PROT_READ, MAP_SHARED, r->s->fd, 0);
		if (m != MAP_FAILED) {
			a->map = m;
			pthread_once(&bus_once, bus_install);
		}
	}
	a->skip_id = r->next_id;
	a->skip = r->skip;
	a->slots = calloc((size_t)a->nslots, sizeof *a->slots);
	int ok = a->slots != NULL;
	for (int i = 0; ok && i < a->nslots; i++) {
		struct slot *sl = &a->slots[i];
		sl->buf = aligned_alloc(4096, r->s->chunk_size);
		sl->pkts = malloc((a->maxrec + 1) * sizeof(pc_pkt)); /* + 1: room for a time tick */
		ok = sl->buf && sl->pkts;
		if (ok && filter) {
			a->work_len = pc_filter_work(filter, (int)a->maxrec, room);
			int out = filter->decap == PC_DECAP_OUT;
			sl->inner = out ? malloc((a->maxrec + 1) * sizeof(pc_pkt)) : NULL;
			sl->keep = malloc(a->maxrec + 1);
			sl->work = a->work_len ? malloc(a->work_len) : NULL;
			ok = (sl->inner || !out) && sl->keep && (sl->work || !a->work_len);
		}
	}
	if (!ok || pthread_mutex_init(&a->mu, NULL)) {
		free_slots(a);
		if (a->map)
			munmap((void *)a->map, a->map_len);
		free(a);
		return NULL;
	}
	pthread_cond_init(&a->to_workers, NULL);
	pthread_cond_init(&a->to_consumer, NULL);
	/* the threads take no asynchronous signals: a SIGTERM must reach the
	 * thread that may be blocked writing or sleeping, and act there */
	sigset_t all, old;
	sigfillset(&all);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int started = 0;
	for (int i = 0; i < a->nthreads; i++)
		if (pthread_create(&a->th[started], NULL, worker, a) == 0)
			started++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	a->nthreads = started;
	if (!started) {
		pc_store_ahead_free(a);
		return NULL;
	}
	r->skip = 0; /* the ahead's now (a failure above leaves the reader as it was) */
	return a;
}

int pc_store_ahead_threads(const pc_store_ahead *a) { return a->nthreads; }

/* Adds what slot sl counted to the reader's counts.  Under mu. */
static void take_counts(pc_store_ahead *a, const struct slot *sl)
{
	pc_store_stats *st = &a->r->st;
	st->packets += sl->st.packets;
	st->bytes_wire += sl->st.bytes_wire;
	st->bytes_cap += sl->st.bytes_cap;
	st->lost_chunks += sl->st.lost_chunks;
	st->lost_pkts += sl->st.lost_pkts;
	st->lost_bytes += sl->st.lost_bytes;
	st->corrupt_chunks += sl->st.corrupt_chunks;
	st->corrupt_pkts += sl->st.corrupt_pkts;
	if (a->dstats) {
		const uint64_t *from = (const uint64_t *)&sl->dst;
		uint64_t *to = (uint64_t *)a->dstats;
		for (size_t i = 0; i < sizeof sl->dst / sizeof(uint64_t); i++)
			to[i] += from[i];
	}
	a->r->next_id = sl->next_after;
	if (sl->err[0])
		snprintf(a->r->err, sizeof a->r->err, "%s", sl->err);
}

int pc_store_ahead_next(pc_store_ahead *a, pc_pkt **pkts, uint8_t **keep)
{
	pc_store_reader *r = a->r;
	pthread_mutex_lock(&a->mu);
	if (a->holding) {
		a->slots[(a->cons_seq - 1) % (uint64_t)a->nslots].state = SLOT_FREE;
		a->holding = 0;
		pthread_cond_broadcast(&a->to_workers);
	}
	if (a->resume_on_next) {
		a->resume_on_next = 0;
		a->paused = 0;
		pthread_cond_broadcast(&a->to_workers);
	}
	int ret = 0;
	while (!r->ended) {
		struct slot *sl = &a->slots[a->cons_seq % (uint64_t)a->nslots];
		if (sl->state != SLOT_READY || sl->seq != a->cons_seq) {
			pthread_cond_wait(&a->to_consumer, &a->mu);
			continue;
		}
		take_counts(a, sl);
		if (sl->got == GOT_ERR) {
			/* stays paused: every later call reports it again (counted once) */
			memset(&sl->st, 0, sizeof sl->st);
			memset(&sl->dst, 0, sizeof sl->dst);
			ret = sl->rc;
			break;
		}
		a->cons_seq++;
		if (sl->got == GOT_DATA && sl->n > 0) {
			r->cur_id = sl->id;
			r->hdr = sl->hdr;
			r->st.chunks++;
			a->holding = 1;
			*pkts = a->filter && a->filter->decap == PC_DECAP_OUT ? sl->inner : sl->pkts;
			*keep = a->can_drop ? sl->keep : NULL;
			ret = sl->n;
			break;
		}
		if (sl->got == GOT_DATA)
			r->st.chunks++; /* all its records were delivered before */
		sl->state = SLOT_FREE;
		pthread_cond_broadcast(&a->to_workers);
		if (sl->got == GOT_END)
			r->ended = 1;
		if (sl->got == GOT_NONE) {
			/* decided when the workers caught up, maybe long ago: if
			 * chunks were committed since, claim them now rather than
			 * say "nothing" (the caller's idle tick would then run
			 * ahead of them) */
			if (load_acq(&r->s->sb->head) > sl->next_after) {
				a->paused = 0;
				pthread_cond_broadcast(&a->to_workers);
				continue;
			}
			a->resume_on_next = 1;
			break;
		}
	}
	pthread_mutex_unlock(&a->mu);
	return ret;
}

void pc_store_ahead_free(pc_store_ahead *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->mu);
	a->stop = 1;
	pthread_cond_broadcast(&a->to_workers);
	pthread_mutex_unlock(&a->mu);
	for (int i = 0; i < a->nthreads; i++)
		pthread_join(a->th[i], NULL);
	pthread_cond_destroy(&a->to_workers);
	pthread_cond_destroy(&a->to_consumer);
	pthread_mutex_destroy(&a->mu);
	free_slots(a);
	if (a->map)
		munmap((void *)a->map, a->map_len);
	free(a);
}
