/* live.c: packets from a network interface through libpcap.
 *
 * One pcap handle in immediate, non-blocking mode with nanosecond
 * timestamps when the platform has them (microseconds x 1000 otherwise).
 * pc_live_next drains what the kernel has queued, and when nothing is
 * queued waits in poll() on the handle's selectable fd, so an idle
 * interface returns 0 after the caller's timeout and a SIGINT/SIGTERM
 * (caught by pc_signals_install, which does not restart system calls)
 * returns PC_ERR_INTR.
 *
 * libpcap reuses its buffer on the next read, so every packet of a batch is
 * copied into a buffer pc_live owns; the pc_pkt array points there and
 * stays valid until the next pc_live_next call.
 *
 * pcap_stats counters are 32-bit on Linux (u_int) and wrap; pc_live keeps
 * 64-bit totals by adding the 32-bit deltas of every read. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcap/pcap.h>

#include "pushcap.h"

#define LIVE_BUF (8u << 20)          /* copies of one batch */
#define LIVE_TIMEOUT_MS 50           /* libpcap buffer timeout, if not immediate */

struct pc_live {
	pcap_t *p;
	int fd;                          /* selectable fd, -1 if none */
	int linktype;
	int nano;                        /* timestamps are ns (else us) */
	int snaplen;
	uint8_t *buf;
	/* 64-bit totals from the 32-bit pcap_stats counters */
	uint32_t last_drop, last_ifdrop;
	uint64_t drop, ifdrop;
	uint64_t received;
	char err[PCAP_ERRBUF_SIZE + 512];
};

#define set_err(err, errlen, ...) \
	do { \
		if ((err) && (errlen)) \
			snprintf((err), (errlen), __VA_ARGS__); \
	} while (0)

/* Appends text to the warning list in err ("; " between). */
static void add_warning(char *err, size_t errlen, const char *text)
{
	if (!err || !errlen)
		return;
	size_t used = strlen(err);
	if (used + 3 >= errlen)
		return;
	snprintf(err + used, errlen - used, "%s%s", used ? "; " : "", text);
}

/* On success err holds "" or warnings joined by "; ", which pc_live_error
 * also returns until an error replaces them.  The header has no precision
 * query, so the microsecond fallback is told only there: its warning
 * contains "microseconds" (bin/stream_capture looks for that word). */
pc_live *pc_live_open(const char *iface, int snaplen, int promisc, const char *bpf,
		      int buffer_bytes, char *err, size_t errlen)
{
	char ebuf[PCAP_ERRBUF_SIZE];
	char msg[PCAP_ERRBUF_SIZE + 256];
	ebuf[0] = 0;
	if (err && errlen)
		err[0] = 0;
	if (snaplen <= 0)
		snaplen = 65535;
	pc_live *l = calloc(1, sizeof *l);
	uint8_t *buf = malloc(LIVE_BUF);
	if (!l || !buf) {
		free(l);
		free(buf);
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	l->buf = buf;
	l->fd = -1;
	l->snaplen = snaplen;
	pcap_t *p = pcap_create(iface, ebuf);
	if (!p) {
		set_err(err, errlen, "%s", ebuf);
		goto fail;
	}
	l->p = p;
	pcap_set_snaplen(p, snaplen);
	pcap_set_promisc(p, promisc ? 1 : 0);
	pcap_set_timeout(p, LIVE_TIMEOUT_MS);
	/* deliver each packet as it arrives (on Linux this also selects
	 * TPACKET_V2, whose frames are handed over one by one) */
	int immediate = pcap_set_immediate_mode(p, 1) == 0;
	int want_nano = pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO) == 0;
	if (buffer_bytes > 0 && pcap_set_buffer_size(p, buffer_bytes) != 0) {
		set_err(err, errlen, "cannot set the buffer size to %d bytes", buffer_bytes);
		goto fail;
	}
	int rc = pcap_activate(p);
	if (rc < 0) {
		/* the generic text is terse; libpcap's own message names the cause */
		const char *detail = pcap_geterr(p);
		const char *hint = "";
		if (rc == PCAP_ERROR_PERM_DENIED)
			hint = " (capturing needs root or CAP_NET_RAW)";
		const char *status = pcap_statustostr(rc);
		if (detail && *detail && strcmp(detail, status) != 0)
			snprintf(msg, sizeof msg, "%s (%s)", status, detail);
		else
			snprintf(msg, sizeof msg, "%s", status);
		set_err(err, errlen, "%s%s", msg, hint);
		goto fail;
	}
	if (rc > 0) {
		/* warnings: capture goes on, the caller is told */
		const char *detail = rc == PCAP_WARNING ? pcap_geterr(p) : pcap_statustostr(rc);
		add_warning(err, errlen, detail);
	}
	l->nano = want_nano && pcap_get_tstamp_precision(p) == PCAP_TSTAMP_PRECISION_NANO;
	if (!l->nano)
		add_warning(err, errlen,
			    "nanosecond timestamps are not supported here: using microseconds x 1000");
	if (!immediate)
		add_warning(err, errlen, "no immediate mode: packets may wait up to 50 ms in libpcap's buffer");
	l->linktype = pcap_datalink(p);
	if (bpf && *bpf) {
		struct bpf_program prog;
		if (pcap_compile(p, &prog, bpf, 1, PCAP_NETMASK_UNKNOWN) < 0) {
			set_err(err, errlen, "filter \"%s\": %s", bpf, pcap_geterr(p));
			goto fail;
		}
		int sr = pcap_setfilter(p, &prog);
		pcap_freecode(&prog);
		if (sr < 0) {
			set_err(err, errlen, "filter \"%s\": %s", bpf, pcap_geterr(p));
			goto fail;
		}
	}
	if (pcap_setnonblock(p, 1, ebuf) < 0) {
		set_err(err, errlen, "%s", ebuf);
		goto fail;
	}
	l->fd = pcap_get_selectable_fd(p);
	if (err && errlen)
		snprintf(l->err, sizeof l->err, "%s", err);
	/* start the drop counters from what the handle has now */
	struct pcap_stat ps;
	if (pcap_stats(p, &ps) == 0) {
		l->last_drop = ps.ps_drop;
		l->last_ifdrop = ps.ps_ifdrop;
	}
	return l;
fail:
	if (l->p)
		pcap_close(l->p);
	free(l->buf);
	free(l);
	return NULL;
}

static int wait_readable(pc_live *l, int timeout_ms)
{
	if (l->fd < 0) {
		/* no selectable fd: sleep a little and let the caller retry */
		struct pollfd none;
		int r = poll(&none, 0, timeout_ms < 10 ? timeout_ms : 10);
		if (r < 0 && errno == EINTR && pc_signal_pending())
			return PC_ERR_INTR;
		return 0;
	}
	struct pollfd pfd = { .fd = l->fd, .events = POLLIN };
	for (;;) {
		if (pc_signal_pending())
			return PC_ERR_INTR;
		int r = poll(&pfd, 1, timeout_ms);
		if (r >= 0)
			return r;
		if (errno != EINTR) {
			snprintf(l->err, sizeof l->err, "poll: %s", strerror(errno));
			return PC_ERR_IO;
		}
		if (pc_signal_pending())
			return PC_ERR_INTR;
	}
}

int pc_live_next(pc_live *l, pc_pkt *out, int max, int timeout_ms)
{
	int n = 0;
	size_t used = 0;
	int waited = 0;
	while (n < max) {
		/* only read when the largest packet still fits the buffer */
		if (LIVE_BUF - used < (size_t)l->snaplen + 8)
			break;
		struct pcap_pkthdr *h;
		const u_char *d;
		int rc = pcap_next_ex(l->p, &h, &d);
		if (rc == 1) {
			uint32_t cap = h->caplen;
			uint8_t *dst = l->buf + used;
			memcpy(dst, d, cap);
			used += (cap + 7u) & ~7u;
			pc_pkt *p = &out[n++];
			p->ts = (uint64_t)h->ts.tv_sec * 1000000000ull +
				(uint64_t)h->ts.tv_usec * (l->nano ? 1u : 1000u);
			p->data = dst;
			p->caplen = cap;
			p->wirelen = h->len;
			p->port = 0;
			p->flags = 0;
			p->pad = 0;
			p->rec = 0;
			l->received++;
			continue;
		}
		if (rc == 0) {
			/* nothing queued */
			if (n || waited)
				break;
			int w = wait_readable(l, timeout_ms);
			if (w <= 0)
				return w; /* 0 idle, or INTR / IO */
			waited = 1;
			continue;
		}
		if (rc == PCAP_ERROR_BREAK)
			break;
		if (n)
			break; /* hand over what we have; the error comes again next time */
		snprintf(l->err, sizeof l->err, "%s", pcap_geterr(l->p));
		return PC_ERR_IO;
	}
	return n;
}

int pc_live_linktype(const pc_live *l) { return l->linktype; }

void pc_live_stats_get(pc_live *l, pc_live_stats *st)
{
	struct pcap_stat ps;
	if (pcap_stats(l->p, &ps) == 0) {
		/* unsigned 32-bit differences survive one wrap between reads */
		l->drop += (uint32_t)(ps.ps_drop - l->last_drop);
		l->ifdrop += (uint32_t)(ps.ps_ifdrop - l->last_ifdrop);
		l->last_drop = ps.ps_drop;
		l->last_ifdrop = ps.ps_ifdrop;
	}
	st->received = l->received;
	st->kernel_drops = l->drop;
	st->if_drops = l->ifdrop;
}

const char *pc_live_error(const pc_live *l) { return l->err; }

void pc_live_close(pc_live *l)
{
	if (!l)
		return;
	if (l->p)
		pcap_close(l->p);
	free(l->buf);
	free(l);
}
