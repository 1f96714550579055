/* bpf.c: tcpdump filter expressions, compiled by libpcap, run here.
 *
 * libpcap is the reference for what an expression means: we compile once
 * against a dead handle for the capture's linktype.  The bytecode runs in
 * our own interpreter (bpf_run), which does what libpcap's bpf_filter does
 * instruction for instruction, with one difference that matters to push:
 * the packet may come in two pieces, a header and a body, so a frame seen
 * through its tunnels (a rewritten Ethernet header, then the inner IP
 * packet where it lies) is filtered without being copied or rewritten. */
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

/* ---- the interpreter ---------------------------------------------------------- */
/* A packet as the filter sees it: hl bytes of hdr, then body; len in all. */
struct vpkt {
	const uint8_t *hdr, *body;
	uint32_t hl, len;
};

/* The size bytes at k, big-endian, as A; 0 when they are not all there
 * (libpcap's filter then rejects the packet). */
static inline int fetch(const struct vpkt *v, uint32_t k, uint32_t size, uint32_t *a)
{
	if (k > v->len || size > v->len - k)
		return 0;
	const uint8_t *p;
	uint8_t tmp[4];
	if (k >= v->hl) {
		p = v->body + (k - v->hl);
	} else if (k + size <= v->hl) {
		p = v->hdr + k;
	} else {
		for (uint32_t i = 0; i < size; i++)
			tmp[i] = k + i < v->hl ? v->hdr[k + i] : v->body[k + i - v->hl];
		p = tmp;
	}
	*a = size == 4 ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
	   : size == 2 ? (uint32_t)p[0] << 8 | p[1] : p[0];
	return 1;
}

/* Runs a program pcap_compile made (so its jumps and memory slots are
 * valid) over v, whose length on the wire is wirelen; returns what the
 * program returns, 0 for "no". */
static uint32_t bpf_run(const struct bpf_insn *pc, const struct vpkt *v, uint32_t wirelen)
{
	/* mem is not cleared, as in libpcap: a compiled program stores before
	 * it loads */
	uint32_t A = 0, X = 0, k, mem[BPF_MEMWORDS];
	for (;; pc++) {
		switch (pc->code) {
		case BPF_RET | BPF_K: return pc->k;
		case BPF_RET | BPF_A: return A;
		case BPF_LD | BPF_W | BPF_ABS: if (!fetch(v, pc->k, 4, &A)) return 0; break;
		case BPF_LD | BPF_H | BPF_ABS: if (!fetch(v, pc->k, 2, &A)) return 0; break;
		case BPF_LD | BPF_B | BPF_ABS: if (!fetch(v, pc->k, 1, &A)) return 0; break;
		case BPF_LD | BPF_W | BPF_LEN: A = wirelen; break;
		case BPF_LDX | BPF_W | BPF_LEN: X = wirelen; break;
		case BPF_LD | BPF_W | BPF_IND:
			k = X + pc->k;
			if (pc->k > v->len || X > v->len - pc->k || !fetch(v, k, 4, &A)) return 0;
			break;
		case BPF_LD | BPF_H | BPF_IND:
			k = X + pc->k;
			if (pc->k > v->len || X > v->len - pc->k || !fetch(v, k, 2, &A)) return 0;
			break;
		case BPF_LD | BPF_B | BPF_IND:
			k = X + pc->k;
			if (pc->k > v->len || X > v->len - pc->k || !fetch(v, k, 1, &A)) return 0;
			break;
		case BPF_LDX | BPF_MSH | BPF_B:
			if (!fetch(v, pc->k, 1, &X)) return 0;
			X = (X & 0xf) << 2;
			break;
		case BPF_LD | BPF_IMM: A = pc->k; break;
		case BPF_LDX | BPF_IMM: X = pc->k; break;
		case BPF_LD | BPF_MEM: A = mem[pc->k]; break;
		case BPF_LDX | BPF_MEM: X = mem[pc->k]; break;
		case BPF_ST: mem[pc->k] = A; break;
		case BPF_STX: mem[pc->k] = X; break;
		/* signed: libpcap's "protochain" loops with a backward jump */
		case BPF_JMP | BPF_JA: pc += (int32_t)pc->k; break;
		case BPF_JMP | BPF_JGT | BPF_K: pc += A > pc->k ? pc->jt : pc->jf; break;
		case BPF_JMP | BPF_JGE | BPF_K: pc += A >= pc->k ? pc->jt : pc->jf; break;
		case BPF_JMP | BPF_JEQ | BPF_K: pc += A == pc->k ? pc->jt : pc->jf; break;
		case BPF_JMP | BPF_JSET | BPF_K: pc += A & pc->k ? pc->jt : pc->jf; break;
		case BPF_JMP | BPF_JGT | BPF_X: pc += A > X ? pc->jt : pc->jf; break;
		case BPF_JMP | BPF_JGE | BPF_X: pc += A >= X ? pc->jt : pc->jf; break;
		case BPF_JMP | BPF_JEQ | BPF_X: pc += A == X ? pc->jt : pc->jf; break;
		case BPF_JMP | BPF_JSET | BPF_X: pc += A & X ? pc->jt : pc->jf; break;
		case BPF_ALU | BPF_ADD | BPF_X: A += X; break;
		case BPF_ALU | BPF_SUB | BPF_X: A -= X; break;
		case BPF_ALU | BPF_MUL | BPF_X: A *= X; break;
		case BPF_ALU | BPF_DIV | BPF_X: if (X == 0) return 0; A /= X; break;
		case BPF_ALU | BPF_MOD | BPF_X: if (X == 0) return 0; A %= X; break;
		case BPF_ALU | BPF_AND | BPF_X: A &= X; break;
		case BPF_ALU | BPF_OR | BPF_X: A |= X; break;
		case BPF_ALU | BPF_XOR | BPF_X: A ^= X; break;
		case BPF_ALU | BPF_LSH | BPF_X: A = X < 32 ? A << X : 0; break;
		case BPF_ALU | BPF_RSH | BPF_X: A = X < 32 ? A >> X : 0; break;
		case BPF_ALU | BPF_ADD | BPF_K: A += pc->k; break;
		case BPF_ALU | BPF_SUB | BPF_K: A -= pc->k; break;
		case BPF_ALU | BPF_MUL | BPF_K: A *= pc->k; break;
		case BPF_ALU | BPF_DIV | BPF_K: if (pc->k == 0) return 0; A /= pc->k; break;
		case BPF_ALU | BPF_MOD | BPF_K: if (pc->k == 0) return 0; A %= pc->k; break;
		case BPF_ALU | BPF_AND | BPF_K: A &= pc->k; break;
		case BPF_ALU | BPF_OR | BPF_K: A |= pc->k; break;
		case BPF_ALU | BPF_XOR | BPF_K: A ^= pc->k; break;
		case BPF_ALU | BPF_LSH | BPF_K: A = pc->k < 32 ? A << pc->k : 0; break;
		case BPF_ALU | BPF_RSH | BPF_K: A = pc->k < 32 ? A >> pc->k : 0; break;
		case BPF_ALU | BPF_NEG: A = (uint32_t)-(int64_t)A; break;
		case BPF_MISC | BPF_TAX: X = A; break;
		case BPF_MISC | BPF_TXA: A = X; break;
		default: return 0; /* pcap_compile makes no other */
		}
	}
}

/* Does f pass the packet made of hl bytes of hdr and bl bytes of body? */
static int bpf_pass(const pc_bpf *f, const uint8_t *hdr, uint32_t hl, const uint8_t *body, uint32_t bl,
		    uint32_t wirelen)
{
	if (f->match_all)
		return 1;
	struct vpkt v = { hdr, body, hl, hl + bl };
	return bpf_run(f->prog.bf_insns, &v, wirelen) != 0;
}

int pc_bpf_match(const pc_bpf *f, const pc_pkt *pkts, int n, uint8_t *match)
{
	int hits = 0;
	for (int i = 0; i < n; i++) {
		const pc_pkt *p = &pkts[i];
		int ok = p->wirelen == 0 || bpf_pass(f, NULL, 0, p->data, p->caplen, p->wirelen);
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
	(void)n;
	/* a decapsulated frame is never longer than its original */
	return f->decap == PC_DECAP_OUT ? bytes + 64 : 0;
}

static int frame_pass(const pc_filter *f, const pc_pkt *p)
{
	return !f->frame_ok || f->frame_ok[p->port * 2 + (p->flags & 1)];
}

int pc_filter_run(const pc_filter *f, pc_pkt *pkts, pc_pkt *inner, int n, uint8_t *work, size_t work_len,
		  uint8_t *keep, pc_decap_stats *st)
{
	static const pc_bpf all = { .match_all = 1 };
	const pc_bpf *bpf = f->bpf ? f->bpf : &all;
	const pc_pkt *seen = pkts;
	if (f->decap == PC_DECAP_OUT) {
		if (pc_decap(pkts, inner, n, work, work_len, st) < n)
			return -1;
		seen = inner;
	}
	int kept = 0;
	for (int i = 0; i < n; i++) {
		const pc_pkt *p = &seen[i];
		int ok = 1;  /* time ticks always pass */
		if (p->wirelen) {
			uint8_t hdr[14];
			uint32_t l3;
			if (f->decap == PC_DECAP_PEEK && pc_decap_peek(p, hdr, &l3, st))
				ok = bpf_pass(bpf, hdr, 14, p->data + l3, p->caplen - l3, p->wirelen);
			else
				ok = bpf_pass(bpf, NULL, 0, p->data, p->caplen, p->wirelen);
			ok = ok && frame_pass(f, p);
		}
		keep[i] = (uint8_t)ok;
		kept += ok;
	}
	return kept;
}
