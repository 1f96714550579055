/* decap.c: see through tags, labels and tunnels, as pcap_decap does.
 *
 * Each frame is parsed into a small "view": the Ethernet header whose
 * dst/src we keep, the EtherType of what follows, and where that payload
 * starts.  Peeling a layer only moves the view; the frame is rewritten
 * (into scratch) once at the end, and only when something was removed.
 * The input is untrusted capture data: every read is checked against
 * caplen, and a header that does not fit stops the peeling where it is.
 * Frames are taken as Ethernet: pc_decap has no linktype argument, so the
 * caller passes other linktypes through without calling it. */
#include <string.h>

#include "pushcap.h"

enum {
	ETH_HLEN = 14,
	MAX_STEPS = 16,        /* layers peeled per frame; offsets grow every step */
	MAX_MPLS = 16,         /* labels in one stack */
	MAX_IP6_EXT = 8,       /* IPv6 extension headers walked */

	ET_IP4 = 0x0800,
	ET_ARP = 0x0806,
	ET_TEB = 0x6558,       /* transparent Ethernet bridging */
	ET_VLAN = 0x8100,
	ET_ERSPAN12 = 0x88be,
	ET_ERSPAN3 = 0x22eb,
	ET_IP6 = 0x86dd,
	ET_MPLS = 0x8847,
	ET_MPLS_MC = 0x8848,
	ET_QINQ = 0x88a8,
	ET_VNTAG = 0x8926,
	ET_QINQ_9100 = 0x9100,
	ET_QINQ_9200 = 0x9200,

	IPP_GRE = 47,
	IPP_UDP = 17,

	PORT_VXLAN = 4789,
	PORT_VXLAN_LINUX = 8472,   /* Linux's default before IANA's port */
	PORT_GENEVE = 6081,
};

/* Layers seen in one frame; each one counts once per frame in the stats. */
enum {
	L_VLAN = 1 << 0,
	L_QINQ = 1 << 1,
	L_VNTAG = 1 << 2,
	L_MPLS = 1 << 3,
	L_GRE = 1 << 4,
	L_ERSPAN1 = 1 << 5,
	L_ERSPAN2 = 1 << 6,
	L_ERSPAN3 = 1 << 7,
	L_VXLAN = 1 << 8,
	L_GENEVE = 1 << 9,
	L_GRE_OTHER = 1 << 10,
	L_TRUNC = 1 << 11,
};

/* What the frame looks like after the layers peeled so far. */
struct view {
	const uint8_t *d;
	size_t len;        /* caplen */
	size_t eth;        /* offset of the Ethernet header giving dst/src */
	size_t l3;         /* offset of the payload of type */
	uint16_t type;     /* EtherType of the payload at l3 */
	unsigned seen;     /* L_* bits */
};

static int fits(const struct view *v, size_t off, size_t n)
{
	return off <= v->len && n <= v->len - off;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* The next layer is an Ethernet frame at off: the view restarts there. */
static int enter_eth(struct view *v, size_t off)
{
	if (!fits(v, off, ETH_HLEN)) {
		v->seen |= L_TRUNC;
		return 0;
	}
	v->eth = off;
	v->type = rd16(v->d + off + 12);
	v->l3 = off + ETH_HLEN;
	return 1;
}

/* The next layer is an IP packet of EtherType type at off. */
static int enter_ip(struct view *v, size_t off, uint16_t type)
{
	v->type = type;
	v->l3 = off;
	return 1;
}

/* A run of VLAN tags: one 802.1Q-family tag counts as vlan; 802.1ad or a
 * stack of two or more counts as qinq. */
static int peel_tags(struct view *v)
{
	size_t off = v->l3;
	uint16_t type = v->type;
	unsigned tags = 0, ad = 0;
	for (;;) {
		if (type != ET_VLAN && type != ET_QINQ && type != ET_QINQ_9100 &&
		    type != ET_QINQ_9200)
			break;
		if (!fits(v, off, 4)) {
			v->seen |= L_TRUNC;
			break;
		}
		ad |= type == ET_QINQ;
		tags++;
		type = rd16(v->d + off + 2);
		off += 4;
	}
	if (!tags)
		return 0;
	v->seen |= (tags > 1 || ad) ? L_QINQ : L_VLAN;
	v->type = type;
	v->l3 = off;
	return 1;
}

/* Cisco VNTag: 4 bytes of tag, then the next EtherType. */
static int peel_vntag(struct view *v)
{
	if (!fits(v, v->l3, 6)) {
		v->seen |= L_TRUNC;
		return 0;
	}
	v->seen |= L_VNTAG;
	v->type = rd16(v->d + v->l3 + 4);
	v->l3 += 6;
	return 1;
}

static int looks_like_ethertype(uint16_t t)
{
	return t == ET_IP4 || t == ET_IP6 || t == ET_ARP || t == ET_VLAN || t == ET_QINQ ||
	       t == ET_MPLS || t == ET_MPLS_MC;
}

/* MPLS carries no payload type: after the bottom of the stack the first
 * nibble says IPv4 or IPv6, and a zero nibble followed by something shaped
 * like an Ethernet header is a pseudowire with a control word.  Anything
 * else stays labelled. */
static int peel_mpls(struct view *v)
{
	size_t off = v->l3;
	int bottom = 0;
	for (int i = 0; i < MAX_MPLS && !bottom; i++) {
		if (!fits(v, off, 4)) {
			v->seen |= L_TRUNC;
			return 0;
		}
		bottom = v->d[off + 2] & 1;
		off += 4;
	}
	if (!bottom)
		return 0;
	if (!fits(v, off, 1)) {
		v->seen |= L_TRUNC;
		return 0;
	}
	unsigned nibble = v->d[off] >> 4;
	if (nibble == 4 || nibble == 6) {
		v->seen |= L_MPLS;
		return enter_ip(v, off, nibble == 4 ? ET_IP4 : ET_IP6);
	}
	if (nibble == 0 && fits(v, off, 4 + ETH_HLEN) &&
	    looks_like_ethertype(rd16(v->d + off + 4 + 12))) {
		v->seen |= L_MPLS;
		return enter_eth(v, off + 4);
	}
	return 0;
}

/* ERSPAN II and III headers after a GRE header ending at off. */
static int peel_erspan3(struct view *v, size_t off)
{
	if (!fits(v, off, 12)) {
		v->seen |= L_TRUNC;
		return 0;
	}
	const uint8_t *h = v->d + off;
	unsigned frame_type = (h[10] >> 2) & 0x1f;
	size_t hlen = 12 + ((h[11] & 1) ? 8 : 0);   /* O bit: platform subheader */
	if (frame_type != 0) {
		/* not Ethernet: its payload must not be parsed as a frame */
		v->seen |= L_GRE_OTHER;
		return 0;
	}
	if (!fits(v, off, hlen)) {
		v->seen |= L_TRUNC;
		return 0;
	}
	if (!enter_eth(v, off + hlen))
		return 0;
	v->seen |= L_ERSPAN3;
	return 1;
}

/* GRE version 0; the C, K and S bits each add a 4-byte field.  Routing
 * (R) and version 1 (PPTP) are left as they are. */
static int peel_gre(struct view *v, size_t off)
{
	if (!fits(v, off, 4)) {
		v->seen |= L_TRUNC;
		return 0;
	}
	uint16_t flags = rd16(v->d + off);
	uint16_t proto = rd16(v->d + off + 2);
	if ((flags & 0x7) != 0 || (flags & 0x4000)) {
		v->seen |= L_GRE_OTHER;
		return 0;
	}
	int seq = (flags & 0x1000) != 0;
	size_t hlen = 4 + ((flags & 0x8000) ? 4 : 0) + ((flags & 0x2000) ? 4 : 0) + (seq ? 4 : 0);
	if (!fits(v, off, hlen)) {
		v->seen |= L_TRUNC;
		return 0;
	}
	off += hlen;
	switch (proto) {
	case ET_IP4:
	case ET_IP6:
		v->seen |= L_GRE;
		return enter_ip(v, off, proto);
	case ET_TEB:
		if (!enter_eth(v, off))
			return 0;
		v->seen |= L_GRE;
		return 1;
	case ET_ERSPAN12:
		/* type I has no sequence number and no header of its own */
		if (seq) {
			if (!fits(v, off, 8)) {
				v->seen |= L_TRUNC;
				return 0;
			}
			off += 8;
		}
		if (!enter_eth(v, off))
			return 0;
		v->seen |= seq ? L_ERSPAN2 : L_ERSPAN1;
		return 1;
	case ET_ERSPAN3:
		return peel_erspan3(v, off);
	default:
		v->seen |= L_GRE_OTHER;
		return 0;
	}
}

/* VXLAN and Geneve by UDP destination port; other UDP is payload. */
static int peel_udp(struct view *v, size_t off)
{
	if (!fits(v, off, 8)) {
		v->seen |= L_TRUNC;
		return 0;
	}
	uint16_t dport = rd16(v->d + off + 2);
	off += 8;
	if (dport == PORT_VXLAN || dport == PORT_VXLAN_LINUX) {
		if (!fits(v, off, 8)) {
			v->seen |= L_TRUNC;
			return 0;
		}
		if (!(v->d[off] & 0x08))   /* I flag: not a VXLAN header */
			return 0;
		if (!enter_eth(v, off + 8))
			return 0;
		v->seen |= L_VXLAN;
		return 1;
	}
	if (dport == PORT_GENEVE) {
		if (!fits(v, off, 8)) {
			v->seen |= L_TRUNC;
			return 0;
		}
		const uint8_t *g = v->d + off;
		if (g[0] >> 6)             /* only version 0 is defined */
			return 0;
		size_t hlen = 8 + (size_t)(g[0] & 0x3f) * 4;
		uint16_t proto = rd16(g + 2);
		if (!fits(v, off, hlen)) {
			v->seen |= L_TRUNC;
			return 0;
		}
		off += hlen;
		if (proto == ET_TEB) {
			if (!enter_eth(v, off))
				return 0;
		} else if (proto == ET_IP4 || proto == ET_IP6) {
			enter_ip(v, off, proto);
		} else {
			return 0;
		}
		v->seen |= L_GENEVE;
		return 1;
	}
	return 0;
}

static int peel_l4(struct view *v, unsigned proto, size_t off)
{
	if (proto == IPP_GRE)
		return peel_gre(v, off);
	if (proto == IPP_UDP)
		return peel_udp(v, off);
	return 0;
}

/* Outer IPv4: only a first (or whole) fragment has the tunnel header. */
static int peel_ip4(struct view *v)
{
	size_t off = v->l3;
	if (!fits(v, off, 20)) {
		v->seen |= L_TRUNC;
		return 0;
	}
	const uint8_t *ip = v->d + off;
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	if ((ip[0] >> 4) != 4 || ihl < 20)
		return 0;
	if (rd16(ip + 6) & 0x1fff)
		return 0;
	if (!fits(v, off, ihl)) {
		v->seen |= L_TRUNC;
		return 0;
	}
	return peel_l4(v, ip[9], off + ihl);
}

/* Outer IPv6: walk hop-by-hop, routing and destination options to the
 * upper-layer header; a fragment header ends the walk. */
static int peel_ip6(struct view *v)
{
	size_t off = v->l3;
	if (!fits(v, off, 40)) {
		v->seen |= L_TRUNC;
		return 0;
	}
	if ((v->d[off] >> 4) != 6)
		return 0;
	unsigned nh = v->d[off + 6];
	off += 40;
	for (int i = 0; i < MAX_IP6_EXT && (nh == 0 || nh == 43 || nh == 60); i++) {
		if (!fits(v, off, 2)) {
			v->seen |= L_TRUNC;
			return 0;
		}
		size_t elen = ((size_t)v->d[off + 1] + 1) * 8;
		nh = v->d[off];
		if (!fits(v, off, elen)) {
			v->seen |= L_TRUNC;
			return 0;
		}
		off += elen;
	}
	return peel_l4(v, nh, off);
}

/* One layer off the top; 0 when nothing more applies. */
static int peel(struct view *v)
{
	switch (v->type) {
	case ET_VLAN:
	case ET_QINQ:
	case ET_QINQ_9100:
	case ET_QINQ_9200:
		return peel_tags(v);
	case ET_VNTAG: return peel_vntag(v);
	case ET_MPLS:
	case ET_MPLS_MC: return peel_mpls(v);
	case ET_IP4: return peel_ip4(v);
	case ET_IP6: return peel_ip6(v);
	default: return 0;
	}
}

static void count(pc_decap_stats *st, unsigned seen, int removed)
{
	st->packets++;
	if (!seen && !removed)
		return; /* plain frames, most of them: nothing else to count */
	st->decapped += removed;
	st->vlan += !!(seen & L_VLAN);
	st->qinq += !!(seen & L_QINQ);
	st->vntag += !!(seen & L_VNTAG);
	st->mpls += !!(seen & L_MPLS);
	st->gre += !!(seen & L_GRE);
	st->erspan1 += !!(seen & L_ERSPAN1);
	st->erspan2 += !!(seen & L_ERSPAN2);
	st->erspan3 += !!(seen & L_ERSPAN3);
	st->vxlan += !!(seen & L_VXLAN);
	st->geneve += !!(seen & L_GENEVE);
	st->gre_other += !!(seen & L_GRE_OTHER);
	st->truncated += !!(seen & L_TRUNC);
}

/* Parses p; returns 1 with v filled when a layer was removed, else writes
 * out = *p (and counts) and returns 0. */
static int peel_all(const pc_pkt *p, pc_pkt *out, struct view *v, pc_decap_stats *st)
{
	if (p->wirelen == 0) {   /* a NOP tick has no frame */
		*out = *p;
		return 0;
	}
	*v = (struct view){ .d = p->data, .len = p->caplen };
	if (!enter_eth(v, 0)) {
		*out = *p;
		count(st, v->seen, 0);
		return 0;
	}
	for (int s = 0; s < MAX_STEPS && peel(v); s++)
		;
	if (v->l3 == ETH_HLEN) {
		/* nothing removed (a failed layer never moves the view) */
		*out = *p;
		count(st, v->seen, 0);
		return 0;
	}
	return 1;
}

int pc_decap_peek(const pc_pkt *p, uint8_t *hdr, uint32_t *l3, pc_decap_stats *st)
{
	struct view v;
	pc_pkt out;
	if (!peel_all(p, &out, &v, st))
		return 0;
	memcpy(hdr, v.d + v.eth, 12);
	hdr[12] = (uint8_t)(v.type >> 8);
	hdr[13] = (uint8_t)v.type;
	*l3 = (uint32_t)v.l3;
	count(st, v.seen, 1);
	return 1;
}

int pc_decap(const pc_pkt *in, pc_pkt *out, int n, uint8_t *scratch, size_t cap,
	     pc_decap_stats *st)
{
	size_t used = 0;
	for (int i = 0; i < n; i++) {
		const pc_pkt *p = &in[i];
		struct view v;
		if (!peel_all(p, &out[i], &v, st))
			continue;
		size_t body = v.len - v.l3;
		size_t need = ETH_HLEN + body;
		if (need > cap - used)
			return i;
		uint8_t *o = scratch + used;
		memcpy(o, v.d + v.eth, 12);
		o[12] = (uint8_t)(v.type >> 8);
		o[13] = (uint8_t)v.type;
		memcpy(o + ETH_HLEN, v.d + v.l3, body);
		used += need;
		out[i] = *p;
		out[i].data = o;
		out[i].caplen = (uint32_t)need;
		out[i].flags = (uint8_t)(p->flags & ~PC_PKT_RAW);
		count(st, v.seen, 1);
	}
	return n;
}
