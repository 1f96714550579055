/* split.c: the per-record decision of the split engine.
 *
 * Lua owns everything that happens once per split (names, pipes, scripts,
 * renames); this file answers the per-packet question "does this record
 * still belong to the open split?" and keeps the split's counters. */
#include "pushcap.h"

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The roll guard holds every split after the capture's roll time so that
 * packets a little past the roll bleed into the last file. */
static int roll_held(pc_split *s, uint64_t ts)
{
	if (!s->roll_period || !s->roll_local)
		return 0;
	if ((int64_t)ts + s->tz_offset < s->roll_local)
		return 0;
	s->roll_blocked++;
	return 1;
}

int pc_split_scan(pc_split *s, const pc_pkt *pkts, int from, int n)
{
	const uint32_t chomp = s->chomp;
	for (int i = from; i < n; i++) {
		const pc_pkt *p = &pkts[i];
		if (s->mode == PC_SPLIT_TIME) {
			if (!s->open)
				return i;
			int64_t d = (int64_t)p->ts - s->boundary;
			if ((d > s->target || d < -s->target) && !roll_held(s, p->ts))
				return i;
		} else if (p->wirelen) {
			if (!s->open)
				return i;
			if (s->bytes > (uint64_t)s->target && !roll_held(s, p->ts))
				return i;
		}
		s->last_any_ts = p->ts;
		if (!p->wirelen)
			continue;
		uint32_t caplen = p->caplen > chomp ? p->caplen - chomp : 0;
		s->bytes += 16 + caplen;
		s->pkts++;
		if (!s->first_ts)
			s->first_ts = p->ts;
		s->last_ts = p->ts;
	}
	return n;
}

int64_t pc_split_begin(pc_split *s, uint64_t ts)
{
	if (s->roll_period && !s->roll_local) {
		/* fixed on the first record: the end of the capture period it is in,
		 * in local time, with 10% slack for a capture that started early */
		int64_t local = (int64_t)ts + s->roll_period / 10 + s->tz_offset;
		s->roll_local = (floor_div(local, s->roll_period) + 1) * s->roll_period;
	}
	s->open = 1;
	s->bytes = s->pkts = s->first_ts = s->last_ts = 0;
	s->last_any_ts = ts;
	if (s->mode == PC_SPLIT_TIME)
		s->boundary = floor_div((int64_t)ts + s->roundup, s->target) * s->target;
	else
		s->boundary = (int64_t)ts;
	return s->boundary;
}
