/* bpf.c: tcpdump filter expressions, compiled and run by libpcap.
 *
 * libpcap is the reference for what an expression means, so nothing here
 * interprets filters: we compile once against a dead handle for the
 * capture's linktype and run the bytecode over each batch of pc_pkt. */
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushcap.h"

struct pc_bpf {
	int match_all;              /* empty expression: no program to run */
	struct bpf_program prog;
};

/* A pcap file header carries a LINKTYPE_ value; the compiler wants the
 * platform's DLT_ value.  They are equal except for a few old types whose
 * DLT_ numbers differed between BSDs (libpcap maps the same ones when it
 * opens a savefile). */
static int linktype_to_dlt(int linktype)
{
	switch (linktype) {
	case 100: return DLT_ATM_RFC1483;
	case 101: return DLT_RAW;
	case 102: return DLT_SLIP_BSDOS;
	case 103: return DLT_PPP_BSDOS;
	case 106: return DLT_ATM_CLIP;
	default: return linktype;
	}
}

static void set_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

pc_bpf *pc_bpf_compile(const char *expr, int linktype, char *err, size_t errlen)
{
	pc_bpf *f = calloc(1, sizeof *f);
	if (!f) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	if (!expr || !expr[0]) {
		f->match_all = 1;
		return f;
	}
	pcap_t *p = pcap_open_dead_with_tstamp_precision(linktype_to_dlt(linktype), 262144,
							 PCAP_TSTAMP_PRECISION_NANO);
	if (!p) {
		set_err(err, errlen, "pcap_open_dead failed");
		free(f);
		return NULL;
	}
	/* Netmask 0, as tcpdump -r compiles: "ip broadcast" then means
	 * 0.0.0.0 or 255.255.255.255 instead of failing to compile. */
	if (pcap_compile(p, &f->prog, expr, 1, 0) < 0) {
		set_err(err, errlen, pcap_geterr(p));
		pcap_close(p);
		free(f);
		return NULL;
	}
	pcap_close(p);   /* the program does not refer to the handle */
	return f;
}

int pc_bpf_match(const pc_bpf *f, const pc_pkt *pkts, int n, uint8_t *match)
{
	int hits = 0;
	for (int i = 0; i < n; i++) {
		const pc_pkt *p = &pkts[i];
		int ok = f->match_all || p->wirelen == 0 ||
			 bpf_filter(f->prog.bf_insns, p->data, p->wirelen, p->caplen) != 0;
		match[i] = (uint8_t)ok;
		hits += ok;
	}
	return hits;
}

void pc_bpf_free(pc_bpf *f)
{
	if (!f)
		return;
	if (!f->match_all)
		pcap_freecode(&f->prog);
	free(f);
}

int pc_pkt_select(pc_pkt *pkts, int n, const uint8_t *keep)
{
	int j = 0;
	for (int i = 0; i < n; i++) {
		if (!keep[i])
			continue;
		if (i != j)
			pkts[j] = pkts[i];
		j++;
	}
	return j;
}

/* ---- a push target's filter ------------------------------------------------- */
size_t pc_filter_work(const pc_filter *f, int n, size_t bytes)
{
	switch (f->decap) {
	case PC_DECAP_PEEK: return (size_t)n * 14;
	/* a decapsulated frame is never longer than its original */
	case PC_DECAP_OUT: return bytes + 64;
	default: return 0;
	}
}

int pc_filter_run(const pc_filter *f, pc_pkt *pkts, pc_pkt *inner, int n, uint8_t *work, size_t work_len,
		  uint8_t *keep, pc_decap_stats *st)
{
	const pc_pkt *seen = pkts;
	if (f->decap == PC_DECAP_PEEK) {
		if (work_len < (size_t)n * 14)
			return -1;
		pc_decap_inplace(pkts, inner, n, work, st);
		seen = inner;
	} else if (f->decap == PC_DECAP_OUT) {
		if (pc_decap(pkts, inner, n, work, work_len, st) < n)
			return -1;
		seen = inner;
	}
	int kept = n;
	if (f->bpf)
		kept = pc_bpf_match(f->bpf, seen, n, keep);
	else
		memset(keep, 1, (size_t)n);
	if (f->frame_ok) {
		for (int i = 0; i < n; i++) {
			const pc_pkt *p = &seen[i];
			if (keep[i] && p->wirelen && !f->frame_ok[p->port * 2 + (p->flags & 1)]) {
				keep[i] = 0;
				kept--;
			}
		}
	}
	if (f->decap == PC_DECAP_PEEK) {
		/* only the frames that are kept are ever read again */
		for (int i = 0; i < n; i++)
			if (keep[i] && inner[i].data != pkts[i].data)
				memcpy((uint8_t *)inner[i].data, work + (size_t)i * 14, 14);
	}
	return kept;
}
