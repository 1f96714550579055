/*
 * pcapgen: deterministic, seeded synthetic traffic generator.
 *
 * Writes a nanosecond-resolution pcap (magic 0xa1b23c4d, LINKTYPE_ETHERNET)
 * with one of two traffic profiles:
 *   isp      mixed IPv4/IPv6 TCP/UDP behind VLAN, QinQ, MPLS, GRE, ERSPAN II/III,
 *            VXLAN and Geneve encapsulations
 *   finance  OPRA-like UDP multicast market data
 *
 * Output depends only on the options: same seed and options give byte-identical
 * files.  There is no wall-clock time, no rand() and no per-packet syscall or
 * allocation: the benchmark generates gigabytes with it, so records are built
 * in 4 MiB buffers that a writer thread write()s while the next one fills.
 *
 * Built by the Makefile (make build/pcapgen); needs only libc, libm, pthreads.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	OUTBUF_SIZE = 4 << 20,
	MAX_FRAME = 2048, /* upper bound of any frame either profile builds */
	MIN_FRAME = 60,   /* Ethernet minimum without FCS */
	PCAP_HDR_LEN = 24,
	REC_HDR_LEN = 16,
	ETH_LEN = 14,
	IP4_LEN = 20,
	IP6_LEN = 40,
	TCP_LEN = 20,
	UDP_LEN = 8,
};

#define DEFAULT_START_NS 1700000000000000000ULL

/*
 * Mean frame sizes, used only to estimate the packet count when just -b is
 * given, so that the timestamps span roughly -s seconds.  isp was measured over
 * 10^6 packets (it exceeds the raw size distribution's mean because small
 * draws are raised to fit the encapsulation headers); finance is the exact
 * mean of 14+20+8 + 60 + min(U[0,240], U[0,240]).
 */
#define ISP_MEAN_FRAME 445.0
#define FINANCE_MEAN_FRAME 181.8

/* ------------------------------------------------------------------ PRNG */

struct rng {
	uint64_t s[4]; /* xoshiro256** for every decision */
	uint64_t bulk; /* wyrand for payload bytes */
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
	r->bulk = splitmix64(&seed);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl64(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl64(s[3], 45);
	return result;
}

/*
 * Payload bytes need volume more than quality.  wyrand's state update is a
 * single add, so successive outputs compute in parallel, several times
 * faster than xoshiro's serial state chain.
 */
static inline uint64_t wyrand(uint64_t *state)
{
	uint64_t s = *state += 0xa0761d6478bd642fULL;
	unsigned __int128 t = (unsigned __int128)s * (s ^ 0xe7037ed1a0b428dbULL);
	return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

/* Multiply-shift range reduction: the bias (< n / 2^32) is irrelevant for
 * synthetic traffic and it avoids a division per draw. */
static inline uint32_t rng_below(struct rng *r, uint32_t n)
{
	return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

static inline uint32_t rng_range(struct rng *r, uint32_t lo, uint32_t hi)
{
	return lo + rng_below(r, hi - lo + 1);
}

static inline bool rng_percent(struct rng *r, unsigned pct)
{
	return rng_below(r, 100) < pct;
}

/* --------------------------------------------------------- byte helpers */

static inline unsigned char *put8(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)v;
	return p + 1;
}

/* Network byte order, one store per field. */
static inline unsigned char *put16(unsigned char *p, unsigned v)
{
	uint16_t be = htons((uint16_t)v);
	memcpy(p, &be, 2);
	return p + 2;
}

static inline unsigned char *put32(unsigned char *p, uint32_t v)
{
	uint32_t be = htonl(v);
	memcpy(p, &be, 4);
	return p + 4;
}

static inline void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

/* Fixed little-endian byte order keeps the output identical on any host. */
static inline void put_le64(unsigned char *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

static void fill_random(struct rng *r, unsigned char *p, size_t n)
{
	uint64_t state = r->bulk; /* a local, as stores through p may alias r */

	for (; n >= 8; p += 8, n -= 8)
		put_le64(p, wyrand(&state));
	if (n) {
		unsigned char w[8];
		put_le64(w, wyrand(&state));
		memcpy(p, w, n);
	}
	r->bulk = state;
}

/* ------------------------------------------------------------ checksums */

/*
 * Internet checksum as a plain sum of host-order 32-bit words: since
 * 2^32 == 1 (mod 2^16 - 1) folding that sum gives the ones' complement sum of
 * 16-bit words, and stored back in host order it needs no byte swapping
 * (RFC 1071).  Two accumulators and no carry handling keep the loop fast; a
 * 64-bit sum of 32-bit words cannot overflow for any frame.  Every piece but
 * the last must have even length.
 */
static uint64_t csum_add(uint64_t sum, const unsigned char *p, size_t n)
{
	uint64_t a = 0, b = 0, w0, w1;

	for (; n >= 16; p += 16, n -= 16) {
		memcpy(&w0, p, 8);
		memcpy(&w1, p + 8, 8);
		a += (w0 & 0xffffffffu) + (w0 >> 32);
		b += (w1 & 0xffffffffu) + (w1 >> 32);
	}
	/* Fixed-size pieces keep the tail free of memcpy calls; a 16-bit load
	 * is the same ones' complement quantity as half a 32-bit one. */
	if (n >= 8) {
		memcpy(&w0, p, 8);
		a += (w0 & 0xffffffffu) + (w0 >> 32);
		p += 8, n -= 8;
	}
	if (n >= 4) {
		uint32_t v;
		memcpy(&v, p, 4);
		b += v;
		p += 4, n -= 4;
	}
	if (n >= 2) {
		uint16_t v;
		memcpy(&v, p, 2);
		a += v;
		p += 2, n -= 2;
	}
	if (n) {
		uint16_t v = 0; /* odd byte is the first of a zero-padded word */
		memcpy(&v, p, 1);
		b += v;
	}
	return sum + a + b;
}

static void csum_store(unsigned char *field, uint64_t sum, bool is_udp)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	uint16_t c = (uint16_t)~sum;
	if (is_udp && c == 0)
		c = 0xffff; /* 0 would mean "no checksum" in UDP */
	memcpy(field, &c, 2);
}

static uint64_t pseudo_v4(const unsigned char *ip, unsigned proto, size_t l4_len)
{
	unsigned char tail[4] = {0, (unsigned char)proto, (unsigned char)(l4_len >> 8),
				 (unsigned char)l4_len};
	return csum_add(csum_add(0, ip + 12, 8), tail, 4);
}

static uint64_t pseudo_v6(const unsigned char *ip, unsigned proto, size_t l4_len)
{
	unsigned char tail[8] = {0, 0, (unsigned char)(l4_len >> 8), (unsigned char)l4_len,
				 0, 0, 0, (unsigned char)proto};
	return csum_add(csum_add(0, ip + 8, 32), tail, 8);
}

/* ------------------------------------------------------ common headers */

/* Random locally administered unicast MAC. */
static unsigned char *put_mac(struct rng *r, unsigned char *p)
{
	uint64_t v = rng_next(r);
	for (int i = 0; i < 6; i++)
		p[i] = (unsigned char)(v >> (8 * i));
	p[0] = (unsigned char)((p[0] & 0xfc) | 0x02);
	return p + 6;
}

static unsigned char *put_macs(struct rng *r, unsigned char *p)
{
	return put_mac(r, put_mac(r, p));
}

static unsigned char *put_ipv4(unsigned char *p, unsigned id, unsigned ttl, unsigned proto,
			       size_t total_len, uint32_t src, uint32_t dst)
{
	p[0] = 0x45;
	p[1] = 0;
	put16(p + 2, (unsigned)total_len);
	put16(p + 4, id);
	put16(p + 6, 0x4000); /* DF */
	p[8] = (unsigned char)ttl;
	p[9] = (unsigned char)proto;
	p[10] = p[11] = 0;
	put32(p + 12, src);
	put32(p + 16, dst);
	csum_store(p + 10, csum_add(0, p, IP4_LEN), false);
	return p + IP4_LEN;
}

static unsigned char *put_udp(unsigned char *p, unsigned sport, unsigned dport, size_t len)
{
	p = put16(p, sport);
	p = put16(p, dport);
	p = put16(p, (unsigned)len);
	return put16(p, 0); /* checksum, filled in later if wanted */
}

static size_t pad_frame(unsigned char *frame, size_t len)
{
	if (len >= MIN_FRAME)
		return len;
	memset(frame + len, 0, MIN_FRAME - len);
	return MIN_FRAME;
}

/* ------------------------------------------------------------ timestamps */

/*
 * Packet i is placed in slot i of `est` equal slots across the span, at a
 * random offset inside the slot, so times are monotonic by construction and
 * spread evenly.  Bursty mode additionally emits short trains of packets a
 * few hundred ns apart, consuming the slots they skip to keep the mean rate.
 */
struct clock {
	uint64_t slot, frac, est; /* span / est and span % est */
	uint64_t burst_gap;       /* max ns between packets of a burst */
	uint64_t base, carry;     /* current slot start, carried remainder */
	uint64_t prev;
	unsigned burst_left;
	bool started, bursty;
};

static void clock_init(struct clock *c, uint64_t start, uint64_t span, uint64_t est, bool bursty)
{
	*c = (struct clock){.slot = span / est, .frac = span % est, .est = est,
			    .base = start, .prev = start, .bursty = bursty};
	/* under half a slot, so bursts cannot push times past the span */
	c->burst_gap = c->slot / 2 < 400 ? c->slot / 2 : 400;
}

/* Slot i starts at start + floor(span * i / est); stepping it with a carried
 * remainder avoids a 128-bit division per packet. */
static void clock_advance(struct clock *c)
{
	c->base += c->slot;
	c->carry += c->frac;
	if (c->carry >= c->est) {
		c->carry -= c->est;
		c->base++;
	}
}

/* x scaled to [0, n) by a 64x64->128 multiply, no division */
static inline uint64_t scale64(uint64_t x, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)x * n) >> 64);
}

static uint64_t next_time(struct clock *c, struct rng *r)
{
	uint64_t t;

	if (!c->started) {
		c->started = true;
		return c->prev; /* the first packet is exactly at -t */
	}
	clock_advance(c);
	if (c->burst_left) {
		c->burst_left--;
		t = c->prev + scale64(rng_next(r), c->burst_gap + 1);
	} else {
		t = c->base + scale64(rng_next(r), c->slot);
		if (c->bursty && rng_percent(r, 40))
			c->burst_left = rng_range(r, 1, 7);
	}
	if (t < c->prev)
		t = c->prev;
	return c->prev = t;
}

/* ----------------------------------------------------------- isp profile */

enum {
	N_TEXT = 8,
	TEXT_LEN = 1600,    /* > largest possible payload */
	TEXT_FILLER_MIN = 16, /* "GET / HTTP/1.1\r\n" */
};

enum encap {
	ENC_PLAIN,
	ENC_VLAN,
	ENC_QINQ,
	ENC_MPLS,
	ENC_GRE,
	ENC_ERSPAN2,
	ENC_ERSPAN3,
	ENC_VXLAN,
	ENC_GENEVE,
};

enum payload_kind { PL_RANDOM, PL_TEXT, PL_DNS };

struct inner {
	bool v6, tcp;
	enum payload_kind kind;
	unsigned sport, dport;
	size_t payload_len;
};

struct isp_pkt {
	enum encap enc;
	unsigned mpls_labels;
	struct inner in;
};

struct isp_state {
	unsigned char text[N_TEXT][TEXT_LEN];
	/* cut[t][i]: end of the last complete line of text[t] within its first
	 * i bytes, so text payloads never end mid-line (tcpdump flags that
	 * as truncation). */
	uint16_t cut[N_TEXT][TEXT_LEN];
	uint32_t gre_seq;
};

/* Fixed DNS response prefix: header fields after the id, question
 * www.example.com TXT IN, and the answer's name pointer/type/class/TTL. */
static const unsigned char dns_prefix[] = {
	0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
	3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
	0, 16, 0, 1,
	0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0x01, 0x2c,
};
/* id + prefix + rdlength + at least one TXT length byte */
#define DNS_MIN_LEN (2 + sizeof(dns_prefix) + 2 + 1)

static void isp_init(struct isp_state *s, struct rng *r)
{
	static const char *const paths[] = {
		"index.html", "images/logo.png", "api/v1/items?page=2", "static/app.js",
		"favicon.ico", "search?q=pcap", "css/site.css", "login",
	};
	static const char *const hosts[] = {
		"www.example.com", "cdn.example.net", "api.example.org", "shop.example.com",
	};

	for (int t = 0; t < N_TEXT; t++) {
		char *buf = (char *)s->text[t];
		size_t len = 0;
		while (len < TEXT_LEN) {
			char req[256];
			int n = snprintf(req, sizeof req,
					 "GET /%s HTTP/1.1\r\nHost: %s\r\n"
					 "User-Agent: pcapgen/1.0\r\nAccept: */*\r\n"
					 "Connection: keep-alive\r\n\r\n",
					 paths[rng_below(r, 8)], hosts[rng_below(r, 4)]);
			size_t take = (size_t)n < TEXT_LEN - len ? (size_t)n : TEXT_LEN - len;
			memcpy(buf + len, req, take);
			len += take;
		}
		uint16_t last = 0;
		for (int i = 0; i < TEXT_LEN; i++) {
			if (i > 0 && buf[i - 1] == '\n')
				last = (uint16_t)i;
			s->cut[t][i] = last;
		}
	}
	s->gre_seq = 0;
}

static size_t isp_frame_size(struct rng *r)
{
	if (rng_percent(r, 80)) {
		unsigned w = rng_below(r, 12); /* 64:576:1500 weighted 7:4:1 */
		return w < 7 ? 64 : w < 11 ? 576 : 1500;
	}
	return rng_range(r, 60, 1514);
}

static enum encap pick_encap(struct rng *r)
{
	unsigned x = rng_below(r, 100);
	return x < 60 ? ENC_PLAIN
	       : x < 72 ? ENC_VLAN
	       : x < 76 ? ENC_QINQ
	       : x < 81 ? ENC_MPLS
	       : x < 86 ? ENC_GRE
	       : x < 91 ? ENC_ERSPAN2
	       : x < 94 ? ENC_ERSPAN3
	       : x < 97 ? ENC_VXLAN
	       : ENC_GENEVE;
}

/* Bytes in front of the inner IP header. */
static size_t encap_overhead(const struct isp_pkt *k)
{
	switch (k->enc) {
	case ENC_PLAIN: return ETH_LEN;
	case ENC_VLAN: return ETH_LEN + 4;
	case ENC_QINQ: return ETH_LEN + 8;
	case ENC_MPLS: return ETH_LEN + 4 * k->mpls_labels;
	case ENC_GRE: return ETH_LEN + IP4_LEN + 4;
	case ENC_ERSPAN2: return ETH_LEN + IP4_LEN + 8 + 8 + ETH_LEN;
	case ENC_ERSPAN3: return ETH_LEN + IP4_LEN + 8 + 12 + ETH_LEN;
	case ENC_VXLAN:
	case ENC_GENEVE: return ETH_LEN + IP4_LEN + UDP_LEN + 8 + ETH_LEN;
	}
	return ETH_LEN;
}

/* Wireshark/tcpdump port dissectors would turn random payload into
 * "malformed" noise, so ephemeral ports come from 60002-65535, a range
 * neither tool registers a dissector for. */
static unsigned ephemeral_port(struct rng *r)
{
	return rng_range(r, 60002, 65535);
}

static void pick_payload_and_ports(struct rng *r, struct inner *in)
{
	unsigned server, client = ephemeral_port(r);

	if (in->tcp) {
		/* HTTP text rides only on TCP (Wireshark takes UDP payloads
		 * starting with 'G' for MPEG-TS), so 47% of TCP payloads are text
		 * to make text ~35% of all packets.  Random bytes go to 443: the
		 * TLS dissector accepts anything there, while TCP heuristic
		 * dissectors on other ports sometimes claim random data and call
		 * it malformed. */
		in->kind = rng_percent(r, 47) ? PL_TEXT : PL_RANDOM;
		server = in->kind == PL_TEXT ? 80 : 443;
	} else if (in->payload_len >= DNS_MIN_LEN && rng_percent(r, 30)) {
		in->kind = PL_DNS;
		server = 53;
	} else {
		in->kind = PL_RANDOM;
		server = ephemeral_port(r);
	}
	if (rng_percent(r, 50)) {
		in->sport = client;
		in->dport = server;
	} else {
		in->sport = server;
		in->dport = client;
	}
}

static uint32_t host_byte(struct rng *r, uint32_t net)
{
	return (net & ~0xffu) | rng_range(r, 1, 254);
}

/* Any inner IPv4 address except 192.168.1.0/24, which the caller controls. */
static uint32_t isp_pool_v4(struct rng *r)
{
	static const uint8_t public_octets[] = {23, 31, 45, 62, 81, 93, 104, 151, 185, 212};
	uint32_t v = (uint32_t)rng_next(r);

	switch (rng_below(r, 5)) {
	case 0: return host_byte(r, 0x0a000000u | (v & 0x00ffffffu));  /* 10/8 */
	case 1: return host_byte(r, 0xac100000u | (v & 0x000fffffu));  /* 172.16/12 */
	case 2: return host_byte(r, 0xcb007100u);                      /* 203.0.113/24 */
	case 3: return host_byte(r, 0xc6336400u);                      /* 198.51.100/24 */
	default:
		return host_byte(r, ((uint32_t)public_octets[rng_below(r, sizeof public_octets)] << 24) |
					    (v & 0x00ffffffu));
	}
}

static void isp_pair_v4(struct rng *r, uint32_t *src, uint32_t *dst)
{
	*src = isp_pool_v4(r);
	*dst = isp_pool_v4(r);
	if (rng_percent(r, 25)) {
		uint32_t home = host_byte(r, 0xc0a80100u); /* 192.168.1/24 */
		if (rng_percent(r, 50))
			*src = home;
		else
			*dst = home;
	}
}

static unsigned char *put_ipv6(struct rng *r, unsigned char *p, unsigned proto, size_t payload_len)
{
	static const unsigned char doc_prefix[4] = {0x20, 0x01, 0x0d, 0xb8};

	p = put32(p, 0x60000000u | ((uint32_t)rng_next(r) & 0xfffff)); /* flow label */
	p = put16(p, (unsigned)payload_len);
	p = put8(p, proto);
	p = put8(p, 64);
	for (int a = 0; a < 2; a++) {
		memcpy(p, doc_prefix, 4);
		fill_random(r, p + 4, 12);
		p += 16;
	}
	return p;
}

static void put_dns(struct rng *r, const unsigned char *text, unsigned char *p, size_t len)
{
	size_t rdlen = len - (2 + sizeof dns_prefix + 2);
	size_t t = 0;

	p = put16(p, rng_below(r, 65536));
	memcpy(p, dns_prefix, sizeof dns_prefix);
	p = put16(p + sizeof dns_prefix, (unsigned)rdlen);
	/* TXT rdata is a run of <length><bytes> strings of at most 255 bytes. */
	while (rdlen) {
		size_t n = rdlen - 1 < 255 ? rdlen - 1 : 255;
		*p++ = (unsigned char)n;
		memcpy(p, text + t, n);
		p += n;
		t += n;
		rdlen -= n + 1;
	}
}

/*
 * HTTP request text of exactly n bytes made of whole CRLF-terminated lines:
 * a prefix of a template cut at a line end, then one filler line sized to fit
 * (a request line if the cut fell between requests, else a header line).
 */
static void put_text(const struct isp_state *s, struct rng *r, unsigned char *p, size_t n)
{
	static const char short_line[] = "Accept-Encoding: gzip, deflate";
	unsigned t = rng_below(r, N_TEXT);

	if (n < TEXT_FILLER_MIN) {
		/* too short for a request: a header continuation line */
		if (n == 0)
			return;
		memcpy(p, short_line, n - 1);
		if (n >= 2)
			p[n - 2] = '\r';
		p[n - 1] = '\n';
		return;
	}

	const unsigned char *text = s->text[t];
	size_t keep = s->cut[t][n - TEXT_FILLER_MIN];
	size_t fill = n - keep;
	unsigned char *f = p + keep;

	memcpy(p, text, keep);
	if (keep == 0 || (keep >= 4 && text[keep - 3] == '\n')) {
		memcpy(f, "GET /", 5);
		memset(f + 5, 'x', fill - 16);
		memcpy(p + n - 11, " HTTP/1.1\r\n", 11);
	} else {
		memcpy(f, "X-Pad: ", 7);
		memset(f + 7, 'x', fill - 9);
		memcpy(p + n - 2, "\r\n", 2);
	}
}

/* Random TCP payload (to port 443) is framed as one TLS application data
 * record: bare random bytes sometimes parse as a broken SSLv2 header.  A
 * payload too short for a non-empty record announces one that continues in
 * a later segment, as an empty record would be reported malformed. */
static void put_tls_header(unsigned char *p, size_t n)
{
	unsigned char hdr[5] = {0x17, 0x03, 0x03};

	put16(hdr + 3, n > sizeof hdr ? (unsigned)(n - sizeof hdr) : 256);
	memcpy(p, hdr, n < sizeof hdr ? n : sizeof hdr);
}

static void put_payload(struct isp_state *s, struct rng *r, unsigned char *p,
			const struct inner *in)
{
	switch (in->kind) {
	case PL_RANDOM:
		fill_random(r, p, in->payload_len);
		if (in->tcp) {
			put_tls_header(p, in->payload_len);
		} else {
			/* UDP between ephemeral ports goes through Wireshark's
			 * heuristic dissectors (RTCP, DNS, WireGuard, STUN,
			 * QUIC, ...); all reject a payload starting with
			 * ff ff ff ff, while bare random bytes are occasionally
			 * claimed and then reported malformed. */
			memset(p, 0xff, in->payload_len < 4 ? in->payload_len : 4);
		}
		break;
	case PL_TEXT: put_text(s, r, p, in->payload_len); break;
	case PL_DNS: put_dns(r, s->text[rng_below(r, N_TEXT)], p, in->payload_len); break;
	}
}

/* Writes the inner IP packet with L4 header, payload and checksums;
 * returns its length. */
static size_t put_inner(struct isp_state *s, struct rng *r, unsigned char *ip,
			const struct inner *in)
{
	unsigned proto = in->tcp ? 6 : 17;
	size_t l4_len = (in->tcp ? TCP_LEN : UDP_LEN) + in->payload_len;
	unsigned char *l4, *p;
	uint64_t sum;

	if (in->v6) {
		l4 = put_ipv6(r, ip, proto, l4_len);
		sum = pseudo_v6(ip, proto, l4_len);
	} else {
		uint32_t src, dst;
		isp_pair_v4(r, &src, &dst);
		l4 = put_ipv4(ip, rng_below(r, 65536), 64, proto, IP4_LEN + l4_len, src, dst);
		sum = pseudo_v4(ip, proto, l4_len);
	}

	if (in->tcp) {
		p = put16(l4, in->sport);
		p = put16(p, in->dport);
		p = put32(p, (uint32_t)rng_next(r)); /* seq */
		p = put32(p, (uint32_t)rng_next(r)); /* ack */
		p = put8(p, 5 << 4);
		p = put8(p, in->payload_len ? 0x18 : 0x10); /* PSH|ACK or ACK */
		p = put16(p, rng_range(r, 1024, 65535));
		p = put16(p, 0);
		p = put16(p, 0);
	} else {
		p = put_udp(l4, in->sport, in->dport, l4_len);
	}
	put_payload(s, r, p, in);
	csum_store(l4 + (in->tcp ? 16 : 6), csum_add(sum, l4, l4_len), !in->tcp);
	return (size_t)(l4 - ip) + l4_len;
}

static unsigned vlan_tci(struct rng *r)
{
	return (rng_below(r, 8) << 13) | rng_range(r, 1, 4094);
}

static uint32_t tunnel_endpoint(struct rng *r)
{
	return host_byte(r, 0x64400000u | ((uint32_t)rng_next(r) & 0x003fffffu)); /* 100.64/10 */
}

static unsigned char *put_outer_ipv4(struct rng *r, unsigned char *p, unsigned proto, size_t len)
{
	uint32_t src = tunnel_endpoint(r), dst = tunnel_endpoint(r);
	return put_ipv4(p, rng_below(r, 65536), 64, proto, len, src, dst);
}

/* Writes everything in front of the inner IP header (ip_len bytes long). */
static void put_encap(struct isp_state *s, struct rng *r, unsigned char *p,
		      const struct isp_pkt *k, size_t ip_len, uint64_t ts)
{
	unsigned inner_type = k->in.v6 ? 0x86dd : 0x0800;
	size_t outer_len = encap_overhead(k) - ETH_LEN + ip_len; /* outer IPv4 total length */

	p = put_macs(r, p);
	switch (k->enc) {
	case ENC_PLAIN:
		put16(p, inner_type);
		break;
	case ENC_VLAN:
		p = put16(p, 0x8100);
		p = put16(p, vlan_tci(r));
		put16(p, inner_type);
		break;
	case ENC_QINQ:
		p = put16(p, 0x88a8);
		p = put16(p, vlan_tci(r));
		p = put16(p, 0x8100);
		p = put16(p, vlan_tci(r));
		put16(p, inner_type);
		break;
	case ENC_MPLS:
		/* Same EtherType for IPv6: decoders look at the first payload nibble. */
		p = put16(p, 0x8847);
		for (unsigned i = 1; i <= k->mpls_labels; i++) {
			uint32_t label = rng_range(r, 16, 0xfffff); /* 0-15 are reserved */
			p = put32(p, (label << 12) | (i == k->mpls_labels ? 0x100u : 0) | 64);
		}
		break;
	case ENC_GRE:
		p = put16(p, 0x0800);
		p = put_outer_ipv4(r, p, 47, outer_len);
		p = put16(p, 0);
		put16(p, inner_type);
		break;
	case ENC_ERSPAN2:
		p = put16(p, 0x0800);
		p = put_outer_ipv4(r, p, 47, outer_len);
		p = put16(p, 0x1000); /* GRE S bit */
		p = put16(p, 0x88be);
		p = put32(p, ++s->gre_seq);
		p = put16(p, 0x1000);                 /* ver 1, VLAN 0 */
		p = put16(p, rng_range(r, 1, 1023));  /* COS/En/T 0, session */
		p = put32(p, 0);                      /* reserved, index */
		p = put_macs(r, p);
		put16(p, inner_type);
		break;
	case ENC_ERSPAN3:
		p = put16(p, 0x0800);
		p = put_outer_ipv4(r, p, 47, outer_len);
		p = put16(p, 0x1000);
		p = put16(p, 0x22eb);
		p = put32(p, ++s->gre_seq);
		p = put16(p, 0x2000);                 /* ver 2, VLAN 0 */
		p = put16(p, rng_range(r, 1, 1023));  /* COS/BSO/T 0, session */
		p = put32(p, (uint32_t)ts);
		p = put16(p, 0);                      /* SGT */
		p = put16(p, 3 << 1);                 /* P/FT/HwID/D 0, Gra 3, O 0 */
		p = put_macs(r, p);
		put16(p, inner_type);
		break;
	case ENC_VXLAN:
	case ENC_GENEVE:
		p = put16(p, 0x0800);
		p = put_outer_ipv4(r, p, 17, outer_len);
		p = put_udp(p, ephemeral_port(r), k->enc == ENC_VXLAN ? 4789 : 6081,
			    outer_len - IP4_LEN);
		if (k->enc == ENC_VXLAN) {
			p = put32(p, 0x08000000u); /* flags: VNI valid */
		} else {
			p = put16(p, 0);      /* version 0, no options, no flags */
			p = put16(p, 0x6558); /* transparent Ethernet bridging */
		}
		p = put32(p, rng_range(r, 1, 0xffffff) << 8);
		p = put_macs(r, p);
		put16(p, inner_type);
		break;
	}
}

static size_t build_isp(struct isp_state *s, struct rng *r, unsigned char *frame, uint64_t ts)
{
	struct isp_pkt k;
	size_t target = isp_frame_size(r);

	k.enc = pick_encap(r);
	k.mpls_labels = k.enc == ENC_MPLS ? rng_range(r, 1, 3) : 0;
	k.in.v6 = rng_percent(r, 20);
	k.in.tcp = rng_percent(r, 75);

	size_t front = encap_overhead(&k);
	size_t headers = front + (k.in.v6 ? IP6_LEN : IP4_LEN) + (k.in.tcp ? TCP_LEN : UDP_LEN);
	k.in.payload_len = target > headers ? target - headers : 0;
	pick_payload_and_ports(r, &k.in);

	size_t ip_len = put_inner(s, r, frame + front, &k.in);
	put_encap(s, r, frame, &k, ip_len, ts);
	return pad_frame(frame, front + ip_len);
}

/* ------------------------------------------------------- finance profile */

enum {
	N_SYMBOLS = 2000,
	N_FEEDS = 4,
	N_GROUPS = 40,
	GROUPS_PER_RANGE = 20,
	QUOTE_LEN = 35,
	BLOCK_HDR_LEN = 8,
	TICK = 100, /* prices are in 1/10000 dollar */
};

struct symbol {
	char name[5];
	unsigned char expiry[3]; /* year-2000, month, day */
	char put_call;
	uint32_t strike, bid;
};

struct finance_state {
	struct symbol sym[N_SYMBOLS];
	unsigned char feed_mac[N_FEEDS][6];
	uint32_t group_seq[N_GROUPS];
	uint16_t ip_id[N_FEEDS];
};

static bool symbol_taken(const struct symbol *sym, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (memcmp(sym[i].name, name, sizeof sym[i].name) == 0)
			return true;
	return false;
}

static void finance_init(struct finance_state *f, struct rng *r)
{
	for (int i = 0; i < N_SYMBOLS; i++) {
		struct symbol *s = &f->sym[i];
		char name[5];
		do {
			int len = (int)rng_range(r, 4, 5);
			memset(name, ' ', sizeof name);
			for (int c = 0; c < len; c++)
				name[c] = (char)('A' + rng_below(r, 26));
		} while (symbol_taken(f->sym, i, name));
		memcpy(s->name, name, sizeof name);
		s->expiry[0] = (unsigned char)rng_range(r, 24, 26);
		s->expiry[1] = (unsigned char)rng_range(r, 1, 12);
		s->expiry[2] = (unsigned char)rng_range(r, 1, 28);
		s->put_call = rng_percent(r, 50) ? 'C' : 'P';
		s->strike = rng_range(r, 10, 500) * 10000;
		s->bid = rng_range(r, 5, 5000) * TICK;
	}
	for (int i = 0; i < N_FEEDS; i++) {
		put_mac(r, f->feed_mac[i]);
		f->ip_id[i] = (uint16_t)rng_next(r);
	}
	memset(f->group_seq, 0, sizeof f->group_seq);
}

/* Next value below n from 16 bits of *bits.  Quotes are the hottest path of
 * the finance profile, so each PRNG draw feeds several small fields. */
static inline uint32_t take16(uint64_t *bits, uint32_t n)
{
	uint32_t v = (uint32_t)(((*bits & 0xffff) * n) >> 16);
	*bits >>= 16;
	return v;
}

/*
 * One 35-byte quote: 'Q', participant, symbol (5, space padded), expiry
 * (yy mm dd), 'C'/'P', then big-endian u32 strike, bid, bid size, ask,
 * ask size and ns within the second.  Prices are in 1/10000 dollar; the
 * symbol's bid walks by up to 5 ticks per quote and the ask sits 1-5 ticks
 * above it.
 */
static unsigned char *put_quote(struct finance_state *f, struct rng *r, unsigned char *p,
				uint32_t ns_of_second)
{
	uint64_t x = rng_next(r), y = rng_next(r);
	struct symbol *s = &f->sym[take16(&x, N_SYMBOLS)];
	int64_t bid = (int64_t)s->bid + ((int64_t)take16(&x, 11) - 5) * TICK;

	s->bid = (uint32_t)(bid < TICK ? TICK : bid);
	p = put8(p, 'Q');
	p = put8(p, 'A' + take16(&x, 16)); /* participant */
	memcpy(p, s->name, 5);
	memcpy(p + 5, s->expiry, 3);
	p += 8;
	p = put8(p, (unsigned char)s->put_call);
	p = put32(p, s->strike);
	p = put32(p, s->bid);
	p = put32(p, 1 + take16(&y, 500));
	p = put32(p, s->bid + (1 + take16(&x, 5)) * TICK);
	p = put32(p, 1 + take16(&y, 500));
	return put32(p, ns_of_second);
}

static size_t build_finance(struct finance_state *f, struct rng *r, unsigned char *frame,
			    uint64_t ts)
{
	unsigned group = rng_below(r, N_GROUPS);
	unsigned feed = group % N_FEEDS;
	unsigned port = 10001 + group % GROUPS_PER_RANGE;
	uint32_t gaddr = 0xef0a0000u | ((group / GROUPS_PER_RANGE) << 8) |
			 (group % GROUPS_PER_RANGE + 1); /* 239.10.{0,1}.{1..20} */
	/* min of two draws skews towards small packets, like real quote feeds */
	unsigned a = rng_below(r, 241), b = rng_below(r, 241);
	size_t payload_len = 60 + (a < b ? a : b);
	unsigned count = (unsigned)((payload_len - BLOCK_HDR_LEN) / QUOTE_LEN);
	size_t udp_len = UDP_LEN + payload_len;
	unsigned char *p = frame, *ip, *udp, *end;

	p = put16(p, 0x0100);
	p = put32(p, 0x5e000000u | (gaddr & 0x7fffff));
	memcpy(p, f->feed_mac[feed], 6);
	p = put16(p + 6, 0x0800);
	ip = p;
	udp = put_ipv4(ip, f->ip_id[feed]++, 32, 17, IP4_LEN + udp_len,
		       0x0a010001u + feed, gaddr);
	p = put_udp(udp, 20001 + feed, port, udp_len);

	/* Not 1-4: with those the WireGuard heuristic claims 148-byte payloads. */
	p = put8(p, 6); /* block version */
	p = put16(p, BLOCK_HDR_LEN + count * QUOTE_LEN);
	p = put32(p, ++f->group_seq[group]);
	p = put8(p, count);
	for (unsigned i = 0; i < count; i++)
		p = put_quote(f, r, p, (uint32_t)(ts % 1000000000u));
	end = udp + udp_len;
	memset(p, 0, (size_t)(end - p));

	csum_store(udp + 6, csum_add(pseudo_v4(ip, 17, udp_len), udp, udp_len), true);
	return pad_frame(frame, (size_t)(end - frame));
}

/* ---------------------------------------------------------------- output */

/*
 * Double-buffered output: main fills one buffer while a writer thread
 * write()s the other.  Writing to tmpfs costs about as much CPU as generating
 * the data, so overlapping the two nearly halves the wall time.
 */
struct out {
	int fd;
	const char *name;
	unsigned char *buf[2];
	unsigned cur;   /* buffer being filled by main */
	size_t len;     /* bytes in buf[cur] */
	uint64_t total; /* bytes committed, flushed or not */

	pthread_t writer;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const unsigned char *pending; /* handed to the writer, NULL when it is idle */
	size_t pending_len;
	bool closing;
	int err; /* errno of the first failed write */
};

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *writer_main(void *arg)
{
	struct out *o = arg;

	pthread_mutex_lock(&o->lock);
	for (;;) {
		while (!o->pending && !o->closing)
			pthread_cond_wait(&o->cond, &o->lock);
		if (!o->pending)
			break;
		const unsigned char *p = o->pending;
		size_t len = o->pending_len;
		bool failed = o->err != 0;
		pthread_mutex_unlock(&o->lock);

		int err = failed ? 0 : write_all(o->fd, p, len); /* after an error, drain only */

		pthread_mutex_lock(&o->lock);
		if (err)
			o->err = err;
		o->pending = NULL;
		pthread_cond_broadcast(&o->cond);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

static void out_open(struct out *o, int fd, const char *name)
{
	*o = (struct out){.fd = fd, .name = name,
			  .buf = {malloc(OUTBUF_SIZE), malloc(OUTBUF_SIZE)}};
	if (!o->buf[0] || !o->buf[1]) {
		fputs("pcapgen: out of memory\n", stderr);
		exit(1);
	}
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->cond, NULL);
	int err = pthread_create(&o->writer, NULL, writer_main, o);
	if (err) {
		fprintf(stderr, "pcapgen: cannot start writer thread: %s\n", strerror(err));
		exit(1);
	}
}

/* Waits until the writer is idle; a write error it hit ends the program. */
static void out_wait_idle(struct out *o)
{
	pthread_mutex_lock(&o->lock);
	while (o->pending)
		pthread_cond_wait(&o->cond, &o->lock);
	int err = o->err;
	pthread_mutex_unlock(&o->lock);
	if (err) {
		fprintf(stderr, "pcapgen: write to %s: %s\n", o->name, strerror(err));
		exit(1);
	}
}

/* Hands the filled buffer to the writer and switches to the other one. */
static void out_flush(struct out *o)
{
	out_wait_idle(o);
	pthread_mutex_lock(&o->lock);
	o->pending = o->buf[o->cur];
	o->pending_len = o->len;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
	o->cur ^= 1;
	o->len = 0;
}

static void out_close(struct out *o)
{
	if (o->len)
		out_flush(o);
	out_wait_idle(o);
	pthread_mutex_lock(&o->lock);
	o->closing = true;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
	pthread_join(o->writer, NULL);
	if (o->fd != STDOUT_FILENO && close(o->fd) != 0) {
		fprintf(stderr, "pcapgen: write to %s: %s\n", o->name, strerror(errno));
		exit(1);
	}
	free(o->buf[0]);
	free(o->buf[1]);
}

/* Room for `need` bytes at the end of the buffer; commit them with out_commit. */
static unsigned char *out_reserve(struct out *o, size_t need)
{
	if (OUTBUF_SIZE - o->len < need)
		out_flush(o);
	return o->buf[o->cur] + o->len;
}

static void out_commit(struct out *o, size_t n)
{
	o->len += n;
	o->total += n;
}

static void put_pcap_header(struct out *o)
{
	unsigned char *h = out_reserve(o, PCAP_HDR_LEN);

	put_le32(h, 0xa1b23c4du); /* nanosecond magic */
	h[4] = 2, h[5] = 0;       /* version 2.4 */
	h[6] = 4, h[7] = 0;
	put_le32(h + 8, 0);       /* thiszone */
	put_le32(h + 12, 0);      /* sigfigs */
	put_le32(h + 16, 65535);  /* snaplen */
	put_le32(h + 20, 1);      /* LINKTYPE_ETHERNET */
	out_commit(o, PCAP_HDR_LEN);
}

static void put_record_header(unsigned char *h, uint64_t ts, size_t len)
{
	put_le32(h, (uint32_t)(ts / 1000000000u));
	put_le32(h + 4, (uint32_t)(ts % 1000000000u));
	put_le32(h + 8, (uint32_t)len);
	put_le32(h + 12, (uint32_t)len);
}

/* ------------------------------------------------------- option parsing */

enum profile { PROFILE_ISP, PROFILE_FINANCE };

struct options {
	enum profile profile;
	uint64_t max_bytes, max_packets; /* UINT64_MAX when not limited */
	bool have_bytes, have_packets;
	double seconds;
	uint64_t start_ns, seed;
	const char *output;
};

static const char *const profile_names[] = {"isp", "finance"};

static void usage(FILE *f)
{
	fputs("usage: pcapgen [options]\n"
	      "Write a deterministic synthetic nanosecond pcap (Ethernet).\n"
	      "\n"
	      "  -p, --profile isp|finance  traffic profile (default isp)\n"
	      "  -b, --bytes N              stop before the file would exceed N bytes;\n"
	      "                             suffixes K/M/G/T (x1024), floats like 2e9\n"
	      "  -n, --packets N            stop after N packets\n"
	      "                             (at least one of -b/-n is required)\n"
	      "  -s, --seconds S            span of packet timestamps (default 60)\n"
	      "  -t, --start NS             epoch ns of the first packet\n"
	      "                             (default 1700000000000000000)\n"
	      "  -S, --seed N               PRNG seed (default 1)\n"
	      "  -o, --output FILE          output file, - for stdout (default -)\n"
	      "  -h, --help                 show this help\n"
	      "\n"
	      "A summary line goes to stderr:\n"
	      "  pcapgen: <profile> seed <S>: <packets> packets <bytes> bytes span <first_ns>..<last_ns>\n",
	      f);
}

static _Noreturn void bad_value(const char *opt, const char *value, const char *why)
{
	fprintf(stderr, "pcapgen: invalid value '%s' for %s: %s\n", value, opt, why);
	exit(2);
}

static bool all_digits(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Plain decimal float text only: strtod alone would also take hex, inf, nan,
 * leading blanks and signs. */
static bool float_text(const char *s, size_t n)
{
	if (n == 0 || !((s[0] >= '0' && s[0] <= '9') || s[0] == '.'))
		return false;
	return strspn(s, "0123456789.eE+-") >= n;
}

static uint64_t suffix_multiplier(char c)
{
	switch (c) {
	case 'k': case 'K': return 1ULL << 10;
	case 'm': case 'M': return 1ULL << 20;
	case 'g': case 'G': return 1ULL << 30;
	case 't': case 'T': return 1ULL << 40;
	default: return 0;
	}
}

/*
 * Non-negative number with an optional binary suffix.  All-digit strings go
 * through strtoull so that large integers (epoch ns) stay exact; anything
 * else is parsed as a double and rounded.
 */
static bool parse_count(const char *s, bool allow_suffix, uint64_t *out)
{
	size_t n = strlen(s);
	uint64_t mult = 1;

	if (allow_suffix && n > 1 && suffix_multiplier(s[n - 1])) {
		mult = suffix_multiplier(s[n - 1]);
		n--;
	}
	if (all_digits(s, n)) {
		char *end;
		errno = 0;
		uint64_t v = strtoull(s, &end, 10);
		if (errno || (size_t)(end - s) != n || v > UINT64_MAX / mult)
			return false;
		*out = v * mult;
		return true;
	}
	if (!float_text(s, n))
		return false;
	char *end;
	double v = strtod(s, &end);
	if ((size_t)(end - s) != n || !isfinite(v) || v < 0)
		return false;
	v = round(v * (double)mult);
	if (v >= 18446744073709551616.0)
		return false;
	*out = (uint64_t)v;
	return true;
}

static double parse_seconds(const char *s, const char *opt)
{
	char *end;
	size_t n = strlen(s);

	if (!float_text(s, n))
		bad_value(opt, s, "expected a non-negative number of seconds");
	double v = strtod(s, &end);
	if ((size_t)(end - s) != n || !isfinite(v) || v < 0)
		bad_value(opt, s, "expected a non-negative number of seconds");
	return v;
}

static void parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"profile", required_argument, NULL, 'p'},
		{"bytes", required_argument, NULL, 'b'},
		{"packets", required_argument, NULL, 'n'},
		{"seconds", required_argument, NULL, 's'},
		{"start", required_argument, NULL, 't'},
		{"seed", required_argument, NULL, 'S'},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct options){
		.profile = PROFILE_ISP,
		.max_bytes = UINT64_MAX,
		.max_packets = UINT64_MAX,
		.seconds = 60.0,
		.start_ns = DEFAULT_START_NS,
		.seed = 1,
		.output = "-",
	};
	opterr = 0; /* our own messages, exit status 2 */
	while ((c = getopt_long(argc, argv, ":p:b:n:s:t:S:o:h", longopts, NULL)) != -1) {
		const char *opt = argv[optind - 1];
		switch (c) {
		case 'p':
			if (strcmp(optarg, "isp") == 0)
				o->profile = PROFILE_ISP;
			else if (strcmp(optarg, "finance") == 0)
				o->profile = PROFILE_FINANCE;
			else
				bad_value("-p/--profile", optarg, "expected isp or finance");
			break;
		case 'b':
			if (!parse_count(optarg, true, &o->max_bytes))
				bad_value("-b/--bytes", optarg, "expected a size like 1000, 10M or 2e9");
			if (o->max_bytes < PCAP_HDR_LEN)
				bad_value("-b/--bytes", optarg, "must be at least 24 (the pcap header)");
			o->have_bytes = true;
			break;
		case 'n':
			if (!parse_count(optarg, false, &o->max_packets))
				bad_value("-n/--packets", optarg, "expected a packet count");
			o->have_packets = true;
			break;
		case 's':
			o->seconds = parse_seconds(optarg, "-s/--seconds");
			break;
		case 't':
			if (!parse_count(optarg, false, &o->start_ns))
				bad_value("-t/--start", optarg, "expected epoch nanoseconds");
			break;
		case 'S':
			if (!all_digits(optarg, strlen(optarg)) ||
			    !parse_count(optarg, false, &o->seed))
				bad_value("-S/--seed", optarg, "expected an unsigned integer");
			break;
		case 'o':
			o->output = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			fprintf(stderr, "pcapgen: option '%s' requires a value\n", opt);
			exit(2);
		default:
			if (optopt)
				fprintf(stderr, "pcapgen: unknown option '-%c'\n", optopt);
			else
				fprintf(stderr, "pcapgen: unknown option '%s'\n", opt);
			fputs("Try 'pcapgen --help'.\n", stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pcapgen: unexpected argument '%s'\n", argv[optind]);
		exit(2);
	}
	if (!o->have_bytes && !o->have_packets) {
		fputs("pcapgen: one of -b/--bytes or -n/--packets is required\n", stderr);
		exit(2);
	}
	/* pcap stores 32-bit seconds; leave 2x the span as headroom because the
	 * -b packet count is only an estimate. */
	if ((double)o->start_ns / 1e9 + 2 * o->seconds >= 4294967296.0) {
		fprintf(stderr, "pcapgen: -t %llu with -s %g runs past the pcap time limit (2106)\n",
			(unsigned long long)o->start_ns, o->seconds);
		exit(2);
	}
}

/* Expected packet count, so timestamps fill the requested span. */
static uint64_t estimate_packets(const struct options *o)
{
	double mean = o->profile == PROFILE_ISP ? ISP_MEAN_FRAME : FINANCE_MEAN_FRAME;
	uint64_t est = o->max_packets;

	if (o->have_bytes) {
		double by_size = (double)(o->max_bytes - PCAP_HDR_LEN) / (mean + REC_HDR_LEN);
		if (by_size < (double)est)
			est = (uint64_t)by_size;
	}
	return est ? est : 1;
}

static int open_output(const char *path)
{
	if (strcmp(path, "-") == 0) {
		if (isatty(STDOUT_FILENO)) {
			fputs("pcapgen: refusing to write a pcap to a terminal; use -o FILE or a pipe\n",
			      stderr);
			exit(2);
		}
		return STDOUT_FILENO;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		fprintf(stderr, "pcapgen: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return fd;
}

struct generator {
	struct rng rng;
	struct isp_state isp;
	struct finance_state finance;
};

int main(int argc, char **argv)
{
	struct options opt;
	uint64_t packets = 0, last_ns;

	parse_args(argc, argv, &opt);
	signal(SIGPIPE, SIG_IGN); /* report EPIPE as a write error instead */

	struct generator *g = calloc(1, sizeof *g);
	if (!g) {
		fputs("pcapgen: out of memory\n", stderr);
		return 1;
	}
	struct out out;
	out_open(&out, open_output(opt.output), strcmp(opt.output, "-") ? opt.output : "stdout");
	rng_seed(&g->rng, opt.seed);
	if (opt.profile == PROFILE_ISP)
		isp_init(&g->isp, &g->rng);
	else
		finance_init(&g->finance, &g->rng);

	struct clock clk;
	clock_init(&clk, opt.start_ns, (uint64_t)llround(opt.seconds * 1e9),
		   estimate_packets(&opt), opt.profile == PROFILE_FINANCE);
	last_ns = opt.start_ns;

	put_pcap_header(&out);
	while (packets < opt.max_packets) {
		unsigned char *rec = out_reserve(&out, REC_HDR_LEN + MAX_FRAME);
		uint64_t ts = next_time(&clk, &g->rng);
		size_t len = opt.profile == PROFILE_ISP
				     ? build_isp(&g->isp, &g->rng, rec + REC_HDR_LEN, ts)
				     : build_finance(&g->finance, &g->rng, rec + REC_HDR_LEN, ts);
		if (opt.max_bytes - out.total < REC_HDR_LEN + len)
			break;
		put_record_header(rec, ts, len);
		out_commit(&out, REC_HDR_LEN + len);
		packets++;
		last_ns = ts;
	}
	out_close(&out);

	fprintf(stderr, "pcapgen: %s seed %llu: %llu packets %llu bytes span %llu..%llu\n",
		profile_names[opt.profile], (unsigned long long)opt.seed,
		(unsigned long long)packets, (unsigned long long)out.total,
		(unsigned long long)opt.start_ns, (unsigned long long)last_ns);
	free(g);
	return 0;
}
