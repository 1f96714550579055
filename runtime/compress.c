/* compress.c: in-process gzip, lz4 and zstd for a recognised --pipe-cmd.
 *
 * Each kind writes its tool's standard file format, so the real
 * decompressor (`gzip -dc`, `lz4 -dc`, `zstd -dc`) reads what we write:
 *
 *   gzip, 1 thread   zlib deflate with the gzip wrapper (windowBits 15+16).
 *   gzip, N threads  (a `pigz` command line) pigz's scheme: the input is cut
 *                    into 1 MiB parts compressed side by side as raw
 *                    deflate, each primed with the 32 KiB before it and
 *                    ended on a byte boundary (Z_SYNC_FLUSH); one gzip
 *                    header, an empty final block, and the CRC-32 combined
 *                    from the parts: one gzip member, as pigz writes.
 *   lz4              the LZ4 frame format (LZ4F) with the lz4 tool's
 *                    defaults: 4 MiB independent blocks, content checksum.
 *   zstd             a ZSTD_CCtx streaming one frame with a checksum, as the
 *                    zstd tool does; threads go to ZSTD_c_nbWorkers.
 *
 * Compression runs beside the caller, as the external process did:
 * pc_comp_step() copies the input into 1 MiB jobs and returns; background
 * threads compress the jobs (gzip and lz4: one thread, in order; pigz: N
 * threads, any job to any free thread) and later calls hand their output
 * back in order.  zstd does the same with its own workers.
 *
 * A compressor serves one writer at a time and one stream after another:
 * pc_comp_begin() (called by pc_writer_set_comp) starts a new stream and
 * forgets whatever the previous one left unfinished.
 *
 * The writer's side of the interface is not in pushcap.h (Lua has no use
 * for it); pcap_write.c declares the same two prototypes as below. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4frame.h>
#include <zlib.h>
#include <zstd.h>

#include "pushcap.h"

/* used by pcap_write.c */
void pc_comp_begin(pc_comp *c);
int pc_comp_step(pc_comp *c, const uint8_t *in, size_t len, int end, size_t *used,
		 const uint8_t **out, size_t *outlen);

#define ZOUT_CAP (1u << 20)          /* stream output per sync step */
#define LZ4_STEP (1u << 20)          /* lz4 input per sync step */
#define JOB (1u << 20)               /* input per background job */
#define SLOTS_MIN 4                  /* jobs in flight: max(this, 2 x threads) */
#define WINDOW 32768u                /* deflate's window: pigz primes each part with it */
#define GZ_HDR 10                    /* gzip header, and trailer (empty block + CRC + ISIZE) */
#define MAX_THREADS 256

/* One background job: a copy of the input and the output it made. */
struct job {
	uint8_t *in;
	size_t len;
	int end;                     /* the stream ends with this job */
	int state;                   /* J_FREE, J_QUEUED (or running), J_DONE */
	int rc;                      /* the compressor's error, or 0 */
	uint8_t *out;
	size_t outlen, outcap;
	/* pigz */
	uint8_t dict[WINDOW];        /* the input just before this part */
	size_t dict_len;
	uint32_t crc;
};
enum { J_FREE, J_QUEUED, J_DONE };

struct worker {
	pc_comp *c;
	pthread_t tid;
	z_stream z;                  /* pigz: this thread's raw deflate */
	int z_init, started;
};

struct pc_comp {
	int kind, level, threads;
	int pigz;                    /* gzip with threads > 1 */
	char err[256];
	/* the stream, driven by sync_step: in the caller's thread (zstd), or in
	 * the one worker (gzip, lz4) */
	int ended;
	uint8_t *out;
	size_t out_cap;
	z_stream z;
	int z_init;
	LZ4F_cctx *lz;
	LZ4F_preferences_t prefs;
	int lz_begun;
	ZSTD_CCtx *zs;
	/* background jobs [head, tail) in a ring of nslots; next to start is
	 * `work`, `busy` are running; all under mu */
	int async;
	int nworkers;
	struct worker *workers;
	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_done;
	struct job *jobs;
	unsigned nslots, head, tail, work, busy;
	int returned;                /* jobs[head]'s output was handed out */
	int end_queued;              /* the job ending the stream is queued */
	int a_ended;                 /* ... and all its output handed out */
	int quit;
	/* pigz, caller's side: the window for the next job, header and trailer */
	uint8_t dict[WINDOW];
	size_t dict_len;
	uint32_t crc, isize;
	int header_done;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void stream_begin(pc_comp *c)
{
	c->ended = 0;
	switch (c->kind) {
	case PC_COMP_GZIP:
		if (c->z_init)
			deflateReset(&c->z);
		break;
	case PC_COMP_LZ4:
		c->lz_begun = 0; /* LZ4F_compressBegin restarts the context */
		break;
	case PC_COMP_ZSTD:
		ZSTD_CCtx_reset(c->zs, ZSTD_reset_session_only);
		break;
	}
}

/* ---- the stream kinds, one step at a time ----------------------------- */
/* Each takes some of in[0..len) into *used and puts up to out_cap bytes in
 * c->out (*outlen); returns 1 when there is more to do, 0 when all of in is
 * taken (and with end the stream is complete), -errno on failure. */
static int gzip_step(pc_comp *c, const uint8_t *in, size_t len, int end, size_t *used, size_t *outlen)
{
	size_t take = len > 0x40000000u ? 0x40000000u : len;
	c->z.next_in = (Bytef *)in;
	c->z.avail_in = (uInt)take;
	c->z.next_out = c->out;
	c->z.avail_out = (uInt)c->out_cap;
	int finish = end && take == len;
	int rc = deflate(&c->z, finish ? Z_FINISH : Z_NO_FLUSH);
	if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
		snprintf(c->err, sizeof c->err, "zlib deflate: %d", rc);
		return -EIO;
	}
	*used = take - c->z.avail_in;
	*outlen = c->out_cap - c->z.avail_out;
	if (rc == Z_STREAM_END) {
		c->ended = 1;
		return 0;
	}
	return (*used < len || finish) ? 1 : 0;
}

static int lz4_step(pc_comp *c, const uint8_t *in, size_t len, int end, size_t *used, size_t *outlen)
{
	size_t pos = 0, r;
	if (!c->lz_begun) {
		r = LZ4F_compressBegin(c->lz, c->out, c->out_cap, &c->prefs);
		if (LZ4F_isError(r))
			goto bad;
		pos = r;
		c->lz_begun = 1;
	}
	if (len) {
		/* out_cap holds the bound of LZ4_STEP bytes after a header */
		size_t take = len > LZ4_STEP ? LZ4_STEP : len;
		r = LZ4F_compressUpdate(c->lz, c->out + pos, c->out_cap - pos, in, take, NULL);
		if (LZ4F_isError(r))
			goto bad;
		*used = take;
		*outlen = pos + r;
		return (take < len || end) ? 1 : 0;
	}
	if (end) {
		r = LZ4F_compressEnd(c->lz, c->out + pos, c->out_cap - pos, NULL);
		if (LZ4F_isError(r))
			goto bad;
		pos += r;
		c->ended = 1;
	}
	*outlen = pos;
	return 0;
bad:
	snprintf(c->err, sizeof c->err, "lz4: %s", LZ4F_getErrorName(r));
	return -EIO;
}

static int zstd_step(pc_comp *c, const uint8_t *in, size_t len, int end, size_t *used, size_t *outlen)
{
	ZSTD_inBuffer ib = { in, len, 0 };
	ZSTD_outBuffer ob = { c->out, c->out_cap, 0 };
	size_t r = ZSTD_compressStream2(c->zs, &ob, &ib, end ? ZSTD_e_end : ZSTD_e_continue);
	if (ZSTD_isError(r)) {
		snprintf(c->err, sizeof c->err, "zstd: %s", ZSTD_getErrorName(r));
		return -EIO;
	}
	*used = ib.pos;
	*outlen = ob.pos;
	if (end) {
		if (r == 0) {
			c->ended = 1;
			return 0;
		}
		return 1;
	}
	return ib.pos < len ? 1 : 0;
}

static int sync_step(pc_comp *c, const uint8_t *in, size_t len, int end, size_t *used,
		     size_t *outlen)
{
	*used = 0;
	*outlen = 0;
	if (c->ended) {
		if (!len)
			return 0;
		stream_begin(c);
	}
	if (!len && !end)
		return 0;
	switch (c->kind) {
	case PC_COMP_GZIP:
		return gzip_step(c, in, len, end, used, outlen);
	case PC_COMP_LZ4:
		return lz4_step(c, in, len, end, used, outlen);
	default:
		return zstd_step(c, in, len, end, used, outlen);
	}
}

/* ---- background jobs ---------------------------------------------------- */
static int append(struct job *j, const uint8_t *p, size_t n)
{
	if (j->outlen + n > j->outcap) {
		size_t cap = j->outcap ? j->outcap : (1u << 20);
		while (cap < j->outlen + n)
			cap *= 2;
		uint8_t *q = realloc(j->out, cap);
		if (!q)
			return -ENOMEM;
		j->out = q;
		j->outcap = cap;
	}
	memcpy(j->out + j->outlen, p, n);
	j->outlen += n;
	return 0;
}

/* gzip/lz4: the job goes through the one stream (one worker, in order). */
static void stream_job(pc_comp *c, struct job *j)
{
	size_t pos = 0;
	j->outlen = 0;
	for (;;) {
		size_t used, outlen;
		int r = sync_step(c, j->in + pos, j->len - pos, j->end, &used, &outlen);
		if (r < 0) {
			j->rc = r;
			return;
		}
		if (outlen && append(j, c->out, outlen) < 0) {
			snprintf(c->err, sizeof c->err, "out of memory for compressed output");
			j->rc = -ENOMEM;
			return;
		}
		pos += used;
		if (r == 0)
			return;
	}
}

/* pigz: one part, alone, as raw deflate primed with the window before it,
 * ended on a byte boundary (an empty stored block).  The output goes at
 * out + GZ_HDR so the caller can put the header before the first part and
 * the trailer after the last without copying. */
static void pigz_job(pc_comp *c, struct worker *wk, struct job *j)
{
	z_stream *z = &wk->z;
	j->outlen = 0;
	j->crc = crc32(0L, j->in, (uInt)j->len);
	if (!j->len)
		return;
	if (deflateReset(z) != Z_OK ||
	    (j->dict_len && deflateSetDictionary(z, j->dict, (uInt)j->dict_len) != Z_OK))
		goto bad;
	z->next_in = j->in;
	z->avail_in = (uInt)j->len;
	z->next_out = j->out + GZ_HDR;
	z->avail_out = (uInt)(j->outcap - 2 * GZ_HDR);
	int rc = deflate(z, Z_SYNC_FLUSH);
	if ((rc != Z_OK && rc != Z_BUF_ERROR) || z->avail_in != 0 || z->avail_out == 0)
		goto bad; /* outcap is the bound: cannot happen */
	j->outlen = j->outcap - 2 * GZ_HDR - z->avail_out;
	return;
bad:
	snprintf(c->err, sizeof c->err, "zlib deflate failed (pigz part)");
	j->rc = -EIO;
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	pc_comp *c = wk->c;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->quit && c->work == c->tail)
			pthread_cond_wait(&c->cv_work, &c->mu);
		if (c->quit)
			break;
		struct job *j = &c->jobs[c->work % c->nslots];
		c->work++;
		c->busy++;
		pthread_mutex_unlock(&c->mu);
		j->rc = 0;
		if (c->pigz)
			pigz_job(c, wk, j);
		else
			stream_job(c, j);
		pthread_mutex_lock(&c->mu);
		j->state = J_DONE;
		c->busy--;
		pthread_cond_broadcast(&c->cv_done);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static void jobs_stop(pc_comp *c)
{
	if (c->async) {
		pthread_mutex_lock(&c->mu);
		c->quit = 1;
		pthread_cond_broadcast(&c->cv_work);
		pthread_mutex_unlock(&c->mu);
	}
	for (int i = 0; i < c->nworkers; i++) {
		struct worker *wk = &c->workers[i];
		if (wk->started)
			pthread_join(wk->tid, NULL);
		if (wk->z_init)
			deflateEnd(&wk->z);
	}
	if (c->async) {
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->cv_work);
		pthread_cond_destroy(&c->cv_done);
		c->async = 0;
	}
	free(c->workers);
	c->workers = NULL;
	c->nworkers = 0;
	for (unsigned i = 0; c->jobs && i < c->nslots; i++) {
		free(c->jobs[i].in);
		free(c->jobs[i].out);
	}
	free(c->jobs);
	c->jobs = NULL;
}

/* Sets up the jobs and starts the workers.  0, or -1 with c->err. */
static int jobs_start(pc_comp *c)
{
	c->nworkers = c->pigz ? c->threads : 1;
	c->nslots = c->pigz && 2u * (unsigned)c->threads > SLOTS_MIN ? 2u * (unsigned)c->threads : SLOTS_MIN;
	c->workers = calloc((size_t)c->nworkers, sizeof *c->workers);
	c->jobs = calloc(c->nslots, sizeof *c->jobs);
	if (!c->workers || !c->jobs)
		goto nomem;
	for (int i = 0; i < c->nworkers; i++) {
		struct worker *wk = &c->workers[i];
		wk->c = c;
		if (c->pigz) {
			if (deflateInit2(&wk->z, c->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
				snprintf(c->err, sizeof c->err, "zlib deflateInit2 failed");
				return -1;
			}
			wk->z_init = 1;
		}
	}
	size_t pigz_cap = c->pigz ? 2 * GZ_HDR + deflateBound(&c->workers[0].z, JOB) + 64 : 0;
	for (unsigned i = 0; i < c->nslots; i++) {
		c->jobs[i].in = malloc(JOB);
		if (!c->jobs[i].in)
			goto nomem;
		if (c->pigz) {
			c->jobs[i].out = malloc(pigz_cap);
			if (!c->jobs[i].out)
				goto nomem;
			c->jobs[i].outcap = pigz_cap;
		}
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv_work, NULL);
	pthread_cond_init(&c->cv_done, NULL);
	c->async = 1;
	/* the workers must not take the SIGINT/SIGTERM meant for the caller */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int started = 0;
	for (int i = 0; i < c->nworkers; i++) {
		if (pthread_create(&c->workers[i].tid, NULL, worker_main, &c->workers[i]) == 0) {
			c->workers[i].started = 1;
			started++;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!started) {
		/* no thread at all: gzip and lz4 run in the caller; pigz cannot */
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->cv_work);
		pthread_cond_destroy(&c->cv_done);
		c->async = 0;
		if (c->pigz) {
			snprintf(c->err, sizeof c->err, "cannot start compression threads");
			return -1;
		}
	}
	return 0;
nomem:
	snprintf(c->err, sizeof c->err, "out of memory for a compressor");
	return -1;
}

/* Hands out the output of the job at the head (done), pigz's header and
 * trailer added around it. */
static void hand_out(pc_comp *c, struct job *j, const uint8_t **out, size_t *outlen)
{
	if (!c->pigz) {
		*out = j->out;
		*outlen = j->outlen;
		return;
	}
	uint8_t *o = j->out + GZ_HDR;
	size_t n = j->outlen;
	if (!c->header_done) {
		/* deflate, no name, no time, XFL by level, OS unix */
		static const uint8_t hdr[GZ_HDR] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3 };
		memcpy(j->out, hdr, GZ_HDR);
		j->out[8] = c->level == 9 ? 2 : c->level == 1 ? 4 : 0;
		o = j->out;
		n += GZ_HDR;
		c->header_done = 1;
	}
	c->crc = crc32_combine(c->crc, j->crc, (z_off_t)j->len);
	c->isize += (uint32_t)j->len;
	if (j->end) {
		/* an empty final block with fixed codes, CRC-32, ISIZE */
		uint8_t *t = o + n;
		uint32_t v[2] = { c->crc, c->isize };
		t[0] = 0x03;
		t[1] = 0x00;
		for (int k = 0; k < 8; k++)
			t[2 + k] = (uint8_t)(v[k / 4] >> (8 * (k % 4)));
		n += GZ_HDR;
	}
	*out = o;
	*outlen = n;
}

/* A new stream: lets the workers finish what is queued, drops its output. */
void pc_comp_begin(pc_comp *c)
{
	if (c->async) {
		pthread_mutex_lock(&c->mu);
		while (c->work != c->tail || c->busy)
			pthread_cond_wait(&c->cv_done, &c->mu);
		for (unsigned i = 0; i < c->nslots; i++)
			c->jobs[i].state = J_FREE;
		c->head = c->tail = c->work = 0;
		c->returned = c->end_queued = c->a_ended = 0;
		pthread_mutex_unlock(&c->mu);
	}
	c->dict_len = 0;
	c->crc = crc32(0L, Z_NULL, 0);
	c->isize = 0;
	c->header_done = 0;
	if (!c->pigz)
		stream_begin(c);
}

static int async_step(pc_comp *c, const uint8_t *in, size_t len, int end, size_t *used,
		      const uint8_t **out, size_t *outlen)
{
	if (c->a_ended) {
		if (!len)
			return 0;
		pc_comp_begin(c);
	}
	if (!len && !end)
		return 0;
	pthread_mutex_lock(&c->mu);
	if (c->returned) {
		/* the caller has written what the last call handed out */
		c->jobs[c->head % c->nslots].state = J_FREE;
		c->head++;
		c->returned = 0;
	}
	int rc;
	for (;;) {
		struct job *h = &c->jobs[c->head % c->nslots];
		if (c->head != c->tail && h->state == J_DONE) {
			if (h->rc < 0) {
				rc = h->rc; /* stays at the head: later calls fail too */
				break;
			}
			hand_out(c, h, out, outlen);
			c->returned = 1;
			rc = 1;
			break;
		}
		if (c->tail - c->head < c->nslots && (len || (end && !c->end_queued))) {
			struct job *j = &c->jobs[c->tail % c->nslots];
			size_t take = len > JOB ? JOB : len;
			memcpy(j->in, in, take);
			j->len = take;
			j->end = end && take == len;
			if (c->pigz) {
				memcpy(j->dict, c->dict + WINDOW - c->dict_len, c->dict_len);
				j->dict_len = c->dict_len;
				if (take >= WINDOW) {
					memcpy(c->dict, in + take - WINDOW, WINDOW);
					c->dict_len = WINDOW;
				} else {
					memmove(c->dict, c->dict + take, WINDOW - take);
					memcpy(c->dict + WINDOW - take, in, take);
					c->dict_len = c->dict_len + take > WINDOW ? WINDOW : c->dict_len + take;
				}
			}
			j->state = J_QUEUED;
			c->end_queued |= j->end;
			c->tail++;
			pthread_cond_signal(&c->cv_work);
			*used = take;
			rc = (take < len || end) ? 1 : 0;
			break;
		}
		if (c->head == c->tail) {
			/* nothing queued and nothing to queue: the stream has ended */
			c->a_ended = 1;
			rc = 0;
			break;
		}
		pthread_cond_wait(&c->cv_done, &c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* Compresses from in[0..len): *used bytes are taken and *out (*outlen
 * bytes) is the output made, valid until the next call; the caller must
 * have written it all before calling again.  end != 0 also ends the stream
 * once all of in is taken.  Returns 1 when there is more to do (call again
 * with what is left of in), 0 when all of in is taken (and, with end, the
 * stream is complete and all its output handed out), -errno on failure.
 * Calling again after the end is harmless; more input after the end starts
 * a new stream (concatenated streams are valid in all three formats). */
int pc_comp_step(pc_comp *c, const uint8_t *in, size_t len, int end, size_t *used,
		 const uint8_t **out, size_t *outlen)
{
	*used = 0;
	*outlen = 0;
	*out = c->out;
	if (c->async)
		return async_step(c, in, len, end, used, out, outlen);
	/* zstd's workers (created on first use) must not take the SIGINT/
	 * SIGTERM meant to interrupt the caller's reads */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = sync_step(c, in, len, end, used, outlen);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/* ---- construction ------------------------------------------------------- */
void pc_comp_free(pc_comp *c)
{
	if (!c)
		return;
	jobs_stop(c);
	if (c->z_init)
		deflateEnd(&c->z);
	if (c->lz)
		LZ4F_freeCompressionContext(c->lz);
	if (c->zs)
		ZSTD_freeCCtx(c->zs); /* joins zstd's worker threads */
	free(c->out);
	free(c);
}

pc_comp *pc_comp_new(int kind, int level, int threads, char *err, size_t errlen)
{
	if (threads < 1)
		threads = 1;
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	pc_comp *c = calloc(1, sizeof *c);
	if (!c) {
		set_err(err, errlen, "out of memory for a compressor");
		return NULL;
	}
	c->kind = kind;
	c->level = level;
	c->threads = threads;
	c->out_cap = ZOUT_CAP;
	switch (kind) {
	case PC_COMP_GZIP:
		if (level < 1 || level > 9) {
			set_err(err, errlen, "gzip level %d is not 1-9", level);
			goto fail;
		}
		if (threads > 1) {
			c->pigz = 1; /* the workers' own deflate streams */
			break;
		}
		if (deflateInit2(&c->z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
			set_err(err, errlen, "zlib deflateInit2 failed");
			goto fail;
		}
		c->z_init = 1;
		break;
	case PC_COMP_LZ4: {
		if (level < 0 || level > LZ4F_compressionLevel_max()) {
			set_err(err, errlen, "lz4 level %d is not 1-%d", level, LZ4F_compressionLevel_max());
			goto fail;
		}
		LZ4F_errorCode_t e = LZ4F_createCompressionContext(&c->lz, LZ4F_VERSION);
		if (LZ4F_isError(e)) {
			set_err(err, errlen, "LZ4F_createCompressionContext: %s", LZ4F_getErrorName(e));
			goto fail;
		}
		memset(&c->prefs, 0, sizeof c->prefs);
		/* the lz4 tool's defaults (-B7, independent blocks, frame checksum) */
		c->prefs.frameInfo.blockSizeID = LZ4F_max4MB;
		c->prefs.frameInfo.blockMode = LZ4F_blockIndependent;
		c->prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
		c->prefs.compressionLevel = level;
		c->out_cap = LZ4F_HEADER_SIZE_MAX + LZ4F_compressBound(LZ4_STEP, &c->prefs);
		break;
	}
	case PC_COMP_ZSTD: {
		if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
			set_err(err, errlen, "zstd level %d is not %d..%d", level, ZSTD_minCLevel(), ZSTD_maxCLevel());
			goto fail;
		}
		c->zs = ZSTD_createCCtx();
		if (!c->zs) {
			set_err(err, errlen, "out of memory for a compressor");
			goto fail;
		}
		size_t r = ZSTD_CCtx_setParameter(c->zs, ZSTD_c_compressionLevel, level);
		if (!ZSTD_isError(r))
			r = ZSTD_CCtx_setParameter(c->zs, ZSTD_c_checksumFlag, 1);
		/* as the zstd tool's -T1 (its default): even one thread is one
		 * worker beside the caller, not compression inside its flush */
		if (!ZSTD_isError(r))
			r = ZSTD_CCtx_setParameter(c->zs, ZSTD_c_nbWorkers, threads);
		/* a job is 4x the window by default: 2 MiB at level 1, too
		 * little to keep several workers busy (measured: 8 MiB, level
		 * 3's default, is ~20% faster at -1 -T2); levels >= 3 keep theirs */
		if (!ZSTD_isError(r) && threads > 1 && level < 3)
			r = ZSTD_CCtx_setParameter(c->zs, ZSTD_c_jobSize, 8 << 20);
		if (ZSTD_isError(r)) {
			set_err(err, errlen, "zstd level %d threads %d: %s", level, threads, ZSTD_getErrorName(r));
			goto fail;
		}
		break;
	}
	default:
		set_err(err, errlen, "unknown compressor kind %d", kind);
		goto fail;
	}
	c->out = malloc(c->out_cap);
	if (!c->out) {
		set_err(err, errlen, "out of memory for a compressor");
		goto fail;
	}
	if (kind != PC_COMP_ZSTD && jobs_start(c) < 0) {
		set_err(err, errlen, "%s", c->err);
		goto fail;
	}
	pc_comp_begin(c);
	return c;
fail:
	pc_comp_free(c);
	return NULL;
}
