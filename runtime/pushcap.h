/* pushcap.h: the whole C surface that Lua may call through ffi.C.
 *
 * The build turns this file into the string returned by pc_cdef(), and
 * lua/pushcap/ffi.lua feeds that string to ffi.cdef, so this header is the
 * single source of truth for both sides.  Lines starting with '#' are
 * dropped for ffi.cdef; everything else must stay plain C declarations
 * (no macros, no inline code).  Every function returns 0 or a count on
 * success and a negative value on failure; the error text is kept in the
 * object it concerns. */
#ifndef PUSHCAP_H
#define PUSHCAP_H
#include <stdint.h>
#include <stddef.h>

/* ---- one packet as handed to Lua ------------------------------------ */
/* Readers fill arrays of these.  data points into the reader's buffer and
 * stays valid until the next pc_reader_next() call on the same reader.
 * wirelen == 0 marks a NOP: a time tick with no frame. */
typedef struct pc_pkt {
	uint64_t ts;            /* ns since the UTC epoch */
	const uint8_t *data;
	uint32_t caplen;
	uint32_t wirelen;
	uint8_t port;           /* capture port (FMAD) or pcapng interface */
	uint8_t flags;          /* PC_PKT_* bits */
	uint16_t pad;
	uint32_t rec;           /* store reader: the record's index in its chunk */
} pc_pkt;

enum {
	PC_PKT_FCS_ERR = 0x01,  /* the frame had a bad FCS (FMAD flag bit0) */
	/* the 16 bytes before data are this packet's ns pcap record header in
	 * host order, so a writer may copy header and data as one run */
	PC_PKT_RAW = 0x80
};

enum {
	PC_EOF = 0,
	PC_ERR_IO = -1,         /* read/write failed, see errno text */
	PC_ERR_FORMAT = -2,     /* bad magic, bad header, insane length */
	PC_ERR_TRUNC = -3,      /* input ended inside a record */
	PC_ERR_INTR = -4,       /* a signal arrived (SIGINT/SIGTERM) */
	PC_ERR_NOMEM = -5
};

enum {
	PC_FMT_PCAP_US = 1,
	PC_FMT_PCAP_NS = 2,
	PC_FMT_FMAD_CHUNKED = 3,
	PC_FMT_PCAPNG = 4
};

/* ---- reader: pcap (us/ns, either byte order), pcapng, FMAD chunked ---- */
typedef struct pc_reader pc_reader;
typedef struct pc_reader_stats {
	uint64_t bytes_read;    /* input bytes consumed so far */
	uint64_t packets;       /* frames returned (NOPs excluded) */
	uint64_t nops;          /* zero-length time ticks returned */
	uint64_t chunks;        /* FMAD chunks seen */
	uint64_t keepalives;    /* FMAD chunks with no packets */
	uint64_t skipped;       /* pcapng blocks skipped (stats, names...) */
} pc_reader_stats;

/* Reads the file header from fd (the fd stays owned by the caller).
 * Returns NULL and writes a message into err on failure. */
pc_reader *pc_reader_open(int fd, char *err, size_t errlen);
int pc_reader_format(const pc_reader *r);
uint32_t pc_reader_linktype(const pc_reader *r);
/* Fills up to max packets; returns the count, PC_EOF at a clean end, or a
 * PC_ERR_* code (then pc_reader_error() names the byte offset). */
int pc_reader_next(pc_reader *r, pc_pkt *out, int max);
const char *pc_reader_error(const pc_reader *r);
void pc_reader_stats_get(const pc_reader *r, pc_reader_stats *st);
void pc_reader_close(pc_reader *r);

/* ---- writer: nanosecond pcap 2.4 into an fd (file or pipe) ------------ */
typedef struct pc_writer pc_writer;
/* Buffers the 24-byte header; nothing is written before the first flush.
 * tee_fd >= 0 receives an identical copy (the spool used to retry a
 * failed pipe); pass -1 for none.  The fds stay owned by the caller. */
pc_writer *pc_writer_open(int fd, int tee_fd, uint32_t linktype, size_t bufsize);
/* The same without the 24-byte file header (stream_cat --no-pcap-header). */
pc_writer *pc_writer_open_raw(int fd, size_t bufsize);
/* Appends pkts[0..n) (NOPs skipped, chomp bytes cut from both lengths).
 * Returns how many packets were taken; fewer than n means the buffer could
 * not be flushed: pc_writer_errno() tells why, and the caller may retry the
 * rest later.  Nothing taken is ever dropped. */
int pc_writer_put(pc_writer *w, const pc_pkt *pkts, int n, uint32_t chomp);
int pc_writer_flush(pc_writer *w);          /* 0 or -errno */
int pc_writer_errno(const pc_writer *w);
size_t pc_writer_buffered(const pc_writer *w);  /* accepted but not yet written */
/* Sends what follows (and what is still unwritten) to fd instead. */
void pc_writer_retarget(pc_writer *w, int fd);
void pc_writer_free(pc_writer *w);              /* does not flush */

/* ---- split engine: where does the next split start? ------------------ */
enum { PC_SPLIT_TIME = 1, PC_SPLIT_BYTE = 2 };
typedef struct pc_split {
	int32_t mode;
	uint32_t chomp;          /* bytes cut from every packet (--packet-chomp) */
	int64_t target;          /* ns (time) or bytes (byte) */
	int64_t roundup;         /* time mode slack, default target/4 */
	int64_t roll_period;     /* --roll-period in ns, 0 = off */
	int64_t tz_offset;       /* local minus UTC, ns, for the roll guard */
	int64_t roll_local;      /* local ns after which no split may start */
	int64_t boundary;        /* time mode: the current split's aligned start */
	int32_t open;            /* a split is open */
	int32_t pad;
	/* current split */
	uint64_t bytes;          /* sum of 16 + caplen of written packets */
	uint64_t pkts;
	uint64_t first_ts;       /* 0 until the first frame */
	uint64_t last_ts;
	uint64_t last_any_ts;    /* last record including NOPs */
	/* whole run */
	uint64_t roll_blocked;   /* records that would have split but were held */
} pc_split;

/* Accounts pkts[from..n) into the open split and returns the index of the
 * first record that must start a new split instead (n when none does). */
int pc_split_scan(pc_split *s, const pc_pkt *pkts, int from, int n);
/* Starts a new split at record timestamp ts; returns its boundary (time
 * mode) or ts (byte mode) and zeroes the per-split counters. */
int64_t pc_split_begin(pc_split *s, uint64_t ts);

/* ---- decap: see through VLAN, QinQ, VNTag, MPLS, GRE, ERSPAN, VXLAN, Geneve */
typedef struct pc_decap_stats {
	uint64_t packets;        /* packets looked at */
	uint64_t decapped;       /* packets with at least one layer removed */
	uint64_t vlan, qinq, vntag, mpls, gre, erspan1, erspan2, erspan3, vxlan, geneve;
	uint64_t gre_other;      /* GRE with a protocol left encapsulated */
	uint64_t truncated;      /* headers ran past caplen: left as they were */
} pc_decap_stats;
/* For each in[i] writes out[i]: in[i] itself when there is nothing to
 * remove, otherwise a view of the rewritten frame (outer Ethernet dst/src,
 * the inner EtherType, the inner L3 packet) built in scratch.  The wire
 * length is kept as it was, as on the appliance.  Stops early when scratch is full and returns
 * how many packets it did (always at least one when cap >= 256 KiB + 64). */
int pc_decap(const pc_pkt *in, pc_pkt *out, int n, uint8_t *scratch, size_t cap,
	     pc_decap_stats *st);
/* pc_decap for one frame, without writing anything: when p has layers to
 * remove, the rewritten frame is hdr[0..14) (its Ethernet header) followed
 * by p->data[*l3 .. p->caplen) (the inner packet where it lies); returns 1
 * and counts.  Returns 0 (and counts) when there is nothing to remove. */
int pc_decap_peek(const pc_pkt *p, uint8_t *hdr, uint32_t *l3, pc_decap_stats *st);

/* ---- BPF: libpcap's compiler and interpreter -------------------------- */
typedef struct pc_bpf pc_bpf;
/* Compiles a tcpdump filter expression for a linktype; NULL with libpcap's
 * message in err when it does not compile.  An empty expression matches all. */
pc_bpf *pc_bpf_compile(const char *expr, int linktype, char *err, size_t errlen);
/* match[i] = 1 when pkts[i] passes (NOP ticks always pass); returns the count. */
int pc_bpf_match(const pc_bpf *f, const pc_pkt *pkts, int n, uint8_t *match);
void pc_bpf_free(pc_bpf *f);
/* Moves pkts[i] with keep[i] != 0 to the front, in order; returns their count. */
int pc_pkt_select(pc_pkt *pkts, int n, const uint8_t *keep);

/* What push keeps of a target's input: decap, then BPF and FilterFrame on
 * the inner frame.  Plain data, shared read-only by the threads that run it. */
enum {
	PC_DECAP_NONE = 0,
	PC_DECAP_PEEK = 1,      /* filters see the inner frame; the original is kept */
	PC_DECAP_OUT = 2        /* the inner frame replaces the original */
};
typedef struct pc_filter {
	const pc_bpf *bpf;          /* NULL: no BPF */
	const uint8_t *frame_ok;    /* NULL, or 512 bytes: [port * 2 + (flags & 1)] != 0 passes */
	int decap;                  /* PC_DECAP_* */
} pc_filter;
/* The room pc_filter_run needs in work for n packets of at most bytes
 * frame bytes in all. */
size_t pc_filter_work(const pc_filter *f, int n, size_t bytes);
/* Runs f over pkts[0..n): keep[i] = 1 when pkts[i] passes (time ticks
 * always do).  With PC_DECAP_OUT inner (n entries) gets the decapsulated
 * frames, built in work, and they are what is written; otherwise nothing
 * is written anywhere (PC_DECAP_PEEK filters the inner frames where they
 * lie, pc_decap_peek).  Returns the count kept, or -1 when work is too
 * small. */
int pc_filter_run(const pc_filter *f, pc_pkt *pkts, pc_pkt *inner, int n, uint8_t *work, size_t work_len,
		  uint8_t *keep, pc_decap_stats *st);

/* ---- in-process compression (a recognised --pipe-cmd / PipeCmd) --------- */
enum { PC_COMP_GZIP = 1, PC_COMP_LZ4 = 2, PC_COMP_ZSTD = 3 };
typedef struct pc_comp pc_comp;
/* A compressor producing the standard file format of gzip (zlib, level
 * 1-9), lz4 (frame format, level 1-12) or zstd (level -5..19, threads >= 1
 * through ZSTD_c_nbWorkers).  NULL with a message on failure. */
pc_comp *pc_comp_new(int kind, int level, int threads, char *err, size_t errlen);
void pc_comp_free(pc_comp *c);
/* From now on the writer compresses what it flushes (set before the first
 * flush; the writer does not own c).  pc_writer_finish flushes and ends the
 * compressed stream; without a compressor it is pc_writer_flush. */
void pc_writer_set_comp(pc_writer *w, pc_comp *c);
int pc_writer_finish(pc_writer *w);          /* 0 or -errno */

/* ---- uploads through libcurl, in-process (CURL mode) -------------------- */
typedef struct pc_upload pc_upload;
/* Starts uploading to url whatever is written to *write_fd (a pipe whose
 * other end a thread of this process feeds to libcurl); with write_fd NULL,
 * whatever a pcap writer hands over directly (pc_writer_set_upload).
 * options holds "name=value" lines mapped to libcurl options (see
 * lua/pushcap/curlopts.lua and docs/targets.md).  NULL with a message on
 * failure. */
pc_upload *pc_upload_start(const char *url, const char *options, int *write_fd, char *err, size_t errlen);
/* After the caller closed *write_fd (or finished its writer): waits for
 * the transfer; 0, or -1 with libcurl's message (and the server's last
 * reply) in err. */
int pc_upload_finish(pc_upload *u, char *err, size_t errlen);
/* The writer's bytes go to upload u (started without a pipe) instead of
 * its fd, without a copy of their own; EPIPE when the transfer ended.
 * pc_writer_retarget undoes it. */
void pc_writer_set_upload(pc_writer *w, pc_upload *u);
/* FTP/FTPS: RNFR from + RNTO to in dir_url; SFTP: rename.  0 or -1 + err. */
int pc_curl_rename(const char *dir_url, const char *from, const char *to, const char *options,
		   char *err, size_t errlen);

/* ---- lxc_ring: FMADIO's shared-memory packet ring (fmadio-behaviour.md 4) */
typedef struct pc_ring pc_ring;
/* Producer: creates or resizes the ring file, resets it when its version
 * is wrong (or reset != 0).  flow_control != 0: pc_ring_put waits for the
 * consumer, up to timeout_ns.  NULL with a message on failure. */
pc_ring *pc_ring_open_tx(const char *path, int flow_control, int64_t timeout_ns, int reset,
			 char *err, size_t errlen);
/* Consumer: checks the layout and attaches at the producer's position. */
pc_ring *pc_ring_open_rx(const char *path, char *err, size_t errlen);
/* Puts packets (NOPs are skipped); returns how many were put, fewer than n
 * when the consumer stalled past the timeout (pc_ring_stalled() then 1). */
int pc_ring_put(pc_ring *r, const pc_pkt *pkts, int n);
int pc_ring_put_eof(pc_ring *r, uint64_t ts);
/* Consumer: up to max packets, copied out of the ring into its own buffer
 * (valid until the next call); 0 when empty, PC_EOF... see pc_ring_eof. */
int pc_ring_get(pc_ring *r, pc_pkt *out, int max);
int pc_ring_eof(const pc_ring *r);
int pc_ring_stalled(const pc_ring *r);
void pc_ring_close(pc_ring *r);

/* ---- capture store: a ring of fixed-size chunks on disk (docs/store-format.md) */
typedef struct pc_store pc_store;
typedef struct pc_store_info {
	uint32_t chunk_size;     /* bytes per slot, header included */
	uint32_t active_capture; /* capture being written, 0 = none */
	uint64_t nslots;
	uint64_t head;           /* next chunk id to be written */
	uint64_t oldest;         /* oldest chunk id still in the ring */
	uint64_t tick_ts;        /* the writer vouches no packet will come before this */
	uint64_t next_capture_id;
	uint64_t created_ns;
	int32_t writer_pid;      /* 0 when no writer has the store open */
	int32_t pad;
} pc_store_info;

/* One entry per committed chunk in a capture's index file (40 bytes). */
typedef struct pc_store_idx {
	uint64_t chunk_id;
	uint64_t ts_first;
	uint64_t ts_last;
	uint64_t bytes_wire;
	uint32_t pkts;
	uint32_t bytes_cap;
} pc_store_idx;

typedef struct pc_store_stats {
	uint64_t chunks, packets, bytes_wire, bytes_cap;
	uint64_t lost_chunks, lost_pkts, lost_bytes;  /* overwritten before read */
	uint64_t corrupt_chunks, corrupt_pkts;        /* failed their checksum */
	uint64_t truncated;                           /* packets cut to fit a chunk */
} pc_store_stats;

/* Creates a store of nslots chunks in dir (ring.dat, preallocated). */
int pc_store_create(const char *dir, uint32_t chunk_size, uint64_t nslots, char *err, size_t errlen);
/* Opens a store; writer != 0 takes the writer lock and recovers the head
 * after a crash.  NULL with a message on failure. */
pc_store *pc_store_open(const char *dir, int writer, char *err, size_t errlen);
void pc_store_info_get(const pc_store *s, pc_store_info *info);
void pc_store_close(pc_store *s);

/* writer: chunks of one capture go with its index file (idx_fd, opened for
 * append).  Records are FMAD records; full chunks are committed as they
 * fill, a partial one by pc_store_flush. */
int pc_store_begin_capture(pc_store *s, uint32_t capture_id, int idx_fd);
int pc_store_put(pc_store *s, const pc_pkt *pkts, int n);   /* n or -errno */
int pc_store_flush(pc_store *s);                            /* 0 or -errno */
void pc_store_tick(pc_store *s, uint64_t ts);
int pc_store_end_capture(pc_store *s);                      /* flush, active = 0 */
int pc_store_sync(pc_store *s);                             /* fdatasync */
/* The same in a background thread, so a capture loop never waits on the
 * disk: starts one and returns the previous one's result (0 or -errno),
 * or 1 when the previous one is still running (none started). */
int pc_store_sync_async(pc_store *s);
void pc_store_writer_stats(const pc_store *s, pc_store_stats *st);
/* After a crash: index entries for committed chunks of capture_id at or
 * after from_id that its index file is missing; returns how many added. */
int pc_store_reindex(pc_store *s, uint32_t capture_id, uint64_t from_id, int idx_fd);

/* reader of one capture.  first_id is the capture's first chunk id (its
 * index entry 0), start_id where to begin. */
typedef struct pc_store_reader pc_store_reader;
pc_store_reader *pc_store_reader_open(pc_store *s, uint32_t capture_id, uint64_t first_id,
				      uint64_t start_id, int idx_fd);
/* Packets of the capture in order; 0 when nothing new is committed yet
 * (follow: wait and call again), PC_EOF... see pc_store_reader_ended. */
int pc_store_next(pc_store_reader *r, pc_pkt *out, int max);
int pc_store_reader_ended(const pc_store_reader *r);   /* capture complete and read */
/* Skips the first n records of the first chunk read (resuming mid-chunk). */
void pc_store_reader_skip(pc_store_reader *r, uint32_t n);
/* The chunk id the last batch came from (every batch is one chunk's). */
uint64_t pc_store_reader_chunk(const pc_store_reader *r);
uint64_t pc_store_reader_position(const pc_store_reader *r);  /* next chunk id */
void pc_store_reader_stats(const pc_store_reader *r, pc_store_stats *st);
const char *pc_store_reader_error(const pc_store_reader *r);
void pc_store_reader_close(pc_store_reader *r);
/* The fast path of stream_cat with no filter and no time window: writes
 * whole chunks to fd as nanosecond pcap records (chunked = 0) or as FMAD
 * chunks (chunked = 1), with writev straight from the chunk buffer, for up
 * to max_chunks chunks.  Returns the chunks written, 0 when nothing new is
 * committed (see pc_store_reader_ended), or -errno on a write error.  The
 * file header is the caller's. */
int pc_store_cat(pc_store_reader *r, int fd, int chunked, int max_chunks);

/* A store reader that reads ahead in threads: each takes the next chunk,
 * reads it, checks it, makes its records pc_pkt and runs filter (NULL:
 * none) on them, so the consumer only splits and writes.  What
 * pc_store_ahead_next returns, in order, is what pc_store_next would have
 * (lapped and corrupt chunks counted the same way), a whole chunk at a
 * time.  threads = 0: one per CPU this process may run on, at most 4.  r
 * is the ahead's until pc_store_ahead_free, and stays usable for the
 * position and stats calls; filter must outlive the ahead. */
typedef struct pc_store_ahead pc_store_ahead;
pc_store_ahead *pc_store_ahead_new(pc_store_reader *r, int threads, const pc_filter *filter,
				   pc_decap_stats *dstats);
/* The next chunk's packets, at *pkts (valid until the next call), and
 * with a filter that can drop packets keep[i] (else *keep = NULL); its
 * decap counts are added to dstats.  Returns the count, 0 when nothing is
 * committed yet or the capture ended (see pc_store_reader_ended), or
 * negative on a read error (pc_store_reader_error). */
int pc_store_ahead_next(pc_store_ahead *a, pc_pkt **pkts, uint8_t **keep);
int pc_store_ahead_threads(const pc_store_ahead *a);
void pc_store_ahead_free(pc_store_ahead *a);
/* The first chunk id of the capture whose packets end at or after ts,
 * found by binary search of the index; first_id + entries when none. */
uint64_t pc_store_seek_time(int idx_fd, uint64_t first_id, uint64_t ts);
/* Index entries of a capture: count, and entry i. */
int64_t pc_store_idx_count(int idx_fd);
int pc_store_idx_get(int idx_fd, int64_t i, pc_store_idx *e);

/* ---- live capture from an interface (libpcap, nanosecond timestamps) --- */
typedef struct pc_live pc_live;
typedef struct pc_live_stats {
	uint64_t received;       /* packets libpcap delivered to us */
	uint64_t kernel_drops;   /* dropped by the kernel: buffer full (ps_drop) */
	uint64_t if_drops;       /* dropped by the interface/driver (ps_ifdrop) */
} pc_live_stats;
/* Opens iface for capture: snaplen, promiscuous, an optional capture BPF
 * ("" = none), buffer_bytes for the kernel ring (0 = default).  NULL with
 * libpcap's message in err on failure. */
pc_live *pc_live_open(const char *iface, int snaplen, int promisc, const char *bpf,
		      int buffer_bytes, char *err, size_t errlen);
/* Up to max packets, waiting at most timeout_ms for the first; 0 when none
 * came (idle), PC_ERR_INTR on a signal, PC_ERR_IO with pc_live_error(). */
int pc_live_next(pc_live *l, pc_pkt *out, int max, int timeout_ms);
int pc_live_linktype(const pc_live *l);
void pc_live_stats_get(pc_live *l, pc_live_stats *st);
const char *pc_live_error(const pc_live *l);
void pc_live_close(pc_live *l);

/* ---- FMAD chunked stream out (stream_cat --chunked) ------------------ */
/* The writer in FMAD mode packs records into chunks of up to chunk_bytes
 * of records; pc_writer_flush ends the current chunk. */
pc_writer *pc_writer_open_fmad(int fd, size_t bufsize, uint32_t chunk_bytes, int header);
/* A keep-alive chunk (no packets), for an idle follower. */
int pc_writer_keepalive(pc_writer *w);

/* ---- processes ------------------------------------------------------- */
/* posix_spawn of argv (NULL-terminated) with fds 0/1/2 taken from in/out/
 * err (-1 = inherit).  Returns the pid or -errno. */
int pc_spawn(const char *const *argv, int in, int out, int err);
/* pc_spawn, with the child leading a new process group, so that a signal
 * to -pid reaches everything it starts (a loader, its workers, their
 * compressors). */
int pc_spawn_group(const char *const *argv, int in, int out, int err);
/* Waits for pid.  Returns 1 and stores the wait status when it exited,
 * 0 when nohang and still running, -errno on error. */
int pc_wait(int pid, int *status, int nohang);
int pc_exit_code(int status);               /* exit code, or 128+signal */
int pc_pipe(int *fds);                      /* cloexec pipe; 0 or -errno */

/* ---- small system helpers (kept here so Lua never cdefs libc) -------- */
int pc_open_write(const char *path);        /* create/truncate 0644, fd or -errno */
int pc_open_read(const char *path);         /* fd or -errno */
int pc_open_append(const char *path);       /* create 0644, append; fd or -errno */
int pc_close(int fd);
int pc_dup2(int oldfd, int newfd);          /* 0 or -errno */
int pc_rename(const char *from, const char *to);  /* 0 or -errno */
int pc_unlink(const char *path);
int pc_mkdirs(const char *path, int mode);  /* mkdir -p; 0 or -errno */
int pc_exists(const char *path);            /* 1 regular/dir exists, 0 not */
/* The names in directory path (without . and ..), each ending in a NUL
 * (a name may hold a newline, never a NUL),
 * into buf.  Returns the bytes the whole list needs (call again with a
 * larger buf when it is more than len), or -errno. */
long pc_listdir(const char *path, char *buf, size_t len);
/* An exclusive flock on path (created 0644), held while the returned fd
 * stays open in this process or its children: -EWOULDBLOCK when another
 * holds it, and then *holder is the pid written in the file (0 unknown).
 * The fd is close-on-exec unless inherit. */
int pc_lock(const char *path, int inherit, int *holder);
/* Creates path (it must not exist) with exactly mode: fd or -errno. */
int pc_open_new(const char *path, int mode);
/* Writes all len bytes: 0 or -errno. */
int pc_write_all(int fd, const void *buf, size_t len);
/* stat(2) (following links): the permission bits, owner and group. */
int pc_file_owner(const char *path, int *mode, int *uid, int *gid);
/* realpath(3) into out: 0 or -errno. */
int pc_realpath(const char *path, char *out, size_t len);
/* 1 when path is a regular file this process may execute, else 0. */
int pc_is_executable(const char *path);
/* fsync(2) of a file or a directory (to make a rename in it durable). */
int pc_fsync_path(const char *path);        /* 0 or -errno */
int pc_chown(const char *path, int uid, int gid);
/* Points linkpath at target, replacing an existing link atomically. */
int pc_symlink(const char *target, const char *linkpath);
/* "user", "user.group", "user:group", "uid:gid"; -1 in gid = user's group.
 * Returns 0 or -ENOENT with the unknown name in err. */
int pc_lookup_owner(const char *spec, int *uid, int *gid, char *err, size_t errlen);
int pc_set_cpus(const int *cpus, int n);    /* sched_setaffinity, inherited */
const char *pc_strerror(int errnum);
int64_t pc_now_ns(void);                    /* CLOCK_REALTIME */
int64_t pc_mono_ns(void);                   /* CLOCK_MONOTONIC */
int64_t pc_tz_offset(int64_t epoch_sec);    /* local minus UTC at that time, s */
const char *pc_tz_name(int64_t epoch_sec);
int pc_sleep_ns(int64_t ns);                /* 0, or -EINTR when a signal came */
void pc_nap_ns(int64_t ns);                 /* sleeps even after a signal */
int pc_kill(int pid, int sig);              /* 0 or -errno */
int pc_getpid(void);
int pc_getuid(void);
int pc_getgid(void);
int pc_unsetenv(const char *name);          /* for this process and its children */
int pc_setenv(const char *name, const char *value);  /* 0 or -errno */
/* Modification time of path in ns since the epoch, or -errno. */
int64_t pc_mtime_ns(const char *path);

/* SIGINT/SIGTERM set a flag (and interrupt blocking reads) instead of
 * killing the process; SIGPIPE is ignored so a dead pipe is an error code. */
void pc_signals_install(void);
int pc_signal_pending(void);                /* the signal number, or 0 */
/* A child's exit (SIGCHLD) interrupts sleeps (pc_nap_ns, pc_sleep_ns)
 * instead of being ignored: a supervisor reaps its workers at once. */
void pc_sigchld_wakes(void);
/* SIGHUP sets its own flag (a daemon's "reload"), never a stop. */
void pc_hup_install(void);
int pc_hup_take(void);                      /* 1 once per SIGHUP received, else 0 */

/* The text of this header, for ffi.cdef. */
const char *pc_cdef(void);

#endif
