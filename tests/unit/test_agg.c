/* SPDX-License-Identifier: MIT */
/*
 * The payload's aggregated tracking (injector/agg.c) against a model:
 * millions of allocations and frees, with lifetimes spread over five
 * decades, addresses reused the way an allocator reuses them, small blocks
 * of the GIL domains (which wait in the young table first), large ones
 * and native ones (the sharded tables), a few allocations at an address
 * whose free no hook saw and frees of blocks never seen.  Every figure
 * the attacher reads (live, count, peak, per key: allocated, freed, peak,
 * temporary buckets) must be the model's, exactly, and no block dropped;
 * the live tables must not grow beyond what their load asks for (a
 * placement that fails makes a table grow).
 *
 * The payload's sources are compiled in: these are its hash tables as the
 * target runs them, not a copy.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../../injector/util.c"
#include "../../injector/sample.c"
#include "../../injector/agg.c"

/* record.c's, which the sampled mode's weights read (unused here) */
__thread struct ma_tls ma_tls;

#define NODES  48
#define NADDR  (1u << 20) /* distinct addresses of the model's heap */
#define EVENTS 3000000
#define STALE  64

struct mblk {
	uint64_t size;
	uint64_t seq; /* the thread's allocations before it */
	uint32_t node;
	uint8_t live, gil;
};

struct mkey {
	uint64_t allocs, alloc_bytes, frees, free_bytes;
	uint64_t peak_bytes, peak_count;
	uint64_t tcount[MA_AGG_TEMPW], tbytes[MA_AGG_TEMPW];
};

struct model {
	struct mblk *b;		 /* by address index */
	struct mkey k[2][NODES]; /* [gil][node] */
	uint64_t live, count, peak, peak_count, allocs;
	uint64_t unknown;
	uint32_t *freelist, nfree, bump;
};

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* address index i: 16-aligned, in one 16 MiB range as a heap would be */
static uint64_t addr_of(uint32_t i)
{
	return 0x7f3a00000000ull + (uint64_t)i * 16;
}

static void model_peak(struct model *m)
{
	if (m->live <= m->peak)
		return;
	m->peak = m->live;
	m->peak_count = m->count;
	for (int g = 0; g < 2; g++)
		for (int n = 0; n < NODES; n++) {
			struct mkey *k = &m->k[g][n];

			k->peak_bytes = k->alloc_bytes - k->free_bytes;
			k->peak_count = k->allocs - k->frees;
		}
}

static void model_free(struct model *m, uint32_t i, int temp)
{
	struct mblk *b = &m->b[i];
	struct mkey *k = &m->k[b->gil][b->node];

	k->frees++;
	k->free_bytes += b->size;
	if (temp) {
		/* kept modulo 2^24 by the payload: here, far fewer */
		uint64_t d = m->allocs - b->seq - 1;
		unsigned t = ma_agg_temp_bucket((uint32_t)d);

		cr_assert(d < (1u << 24));
		if (t < MA_AGG_TEMPW) {
			k->tcount[t]++;
			k->tbytes[t] += b->size;
		}
	}
	m->live -= b->size;
	m->count--;
	b->live = 0;
}

struct fixture {
	struct ma_session s;
	struct ma_slot sl;
	void *area;
	struct model m;
	uint32_t *wheel_head, *wheel_next; /* frees due, by event */
	struct stale {
		uint32_t i;
		int gil;
	} stale[STALE]; /* addresses freed where no hook saw */
	int nstale;
	uint64_t n[2], max[2]; /* blocks in the tables: native, GIL */
};

static void setup_agg(struct fixture *f)
{
	char msg[128];

	memset(f, 0, sizeof(*f));
	f->area = mmap(NULL, MA_AGG_AREA_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(f->area != MAP_FAILED);
	cr_assert_eq(ma_agg_setup(&f->s, f->area, msg, sizeof(msg)), 0, "%s",
		     msg);
	f->m.b = calloc(NADDR, sizeof(*f->m.b));
	f->m.freelist = calloc(NADDR, sizeof(uint32_t));
	cr_assert(f->m.b && f->m.freelist);
}

static void teardown_agg(struct fixture *f)
{
	ma_agg_release(&f->s);
	munmap(f->area, MA_AGG_AREA_SIZE);
	free(f->m.b);
	free(f->m.freelist);
}

/* an address for a new block: most often the last one freed (an
 * allocator's LIFO reuse), else a fresh one */
static uint32_t new_addr(struct model *m)
{
	if (m->nfree && (rnd() & 7) != 0)
		return m->freelist[--m->nfree];
	if (m->bump < NADDR)
		return m->bump++;
	cr_assert(m->nfree, "the model's heap is full");
	return m->freelist[--m->nfree];
}

static int stale_has(const struct fixture *f, uint32_t i)
{
	for (int x = 0; x < f->nstale; x++)
		if (f->stale[x].i == i)
			return 1;
	return 0;
}

static void do_alloc(struct fixture *f, uint32_t i, uint64_t size,
		     uint32_t node, int gil)
{
	struct model *m = &f->m;
	struct mblk *b = &m->b[i];
	struct mkey *k = &m->k[gil][node];

	/* a block at the same address that no hook saw freed: gone (only
	 * the large tables see it: the young one takes every small block) */
	if (b->live) {
		model_free(m, i, 0);
		f->n[b->gil]--;
	} else
		cr_assert(!stale_has(f, i));
	ma_agg_alloc(&f->s, &f->sl, 1, addr_of(i), size, node + 1,
		     gil ? MA_KIND_PYMEM : MA_KIND_MALLOC, gil, 1);
	*b = (struct mblk){ .size = size,
			    .seq = m->allocs,
			    .node = node,
			    .live = 1,
			    .gil = (uint8_t)gil };
	k->allocs++;
	k->alloc_bytes += size;
	m->live += size;
	m->count++;
	m->allocs++;
	f->sl.allocs++;
	model_peak(m);
	if (++f->n[gil] > f->max[gil])
		f->max[gil] = f->n[gil];
}

static void check(struct fixture *f)
{
	struct ma_agg_hdr *h = f->s.agg->h;
	struct ma_agg_key *keys = ma_agg_keys(h);
	struct model *m = &f->m;
	int seen = 0;

	cr_assert_eq(h->dropped, 0);
	cr_assert_eq(h->keys_full, 0);
	cr_assert_eq(h->unknown_frees, m->unknown);
	cr_assert_eq(h->live_gil + h->live_nat, m->live);
	cr_assert_eq(h->count_gil + h->count_nat, m->count);
	cr_assert_eq(h->peak_bytes, m->peak);
	cr_assert_eq(h->peak_count, m->peak_count);
	for (uint32_t x = 1; x < h->nkeys; x++) {
		struct ma_agg_key *k = &keys[x];
		int gil = k->kind == MA_KIND_PYMEM;
		struct mkey *e = &m->k[gil][k->node - 1];
		int at_peak = k->epoch == h->epoch;

		cr_assert_eq(k->thread, 1);
		cr_assert(k->node >= 1 && k->node <= NODES);
		cr_assert_eq(k->allocs, e->allocs, "key %u", x);
		cr_assert_eq(k->alloc_bytes, e->alloc_bytes, "key %u", x);
		cr_assert_eq(k->frees, e->frees, "key %u", x);
		cr_assert_eq(k->free_bytes, e->free_bytes, "key %u", x);
		cr_assert_eq(at_peak ? k->peak_bytes
				     : k->alloc_bytes - k->free_bytes,
			     e->peak_bytes, "key %u: peak bytes", x);
		cr_assert_eq(at_peak ? k->peak_count : k->allocs - k->frees,
			     e->peak_count, "key %u: peak count", x);
		for (int t = 0; t < MA_AGG_TEMPW; t++) {
			cr_assert_eq(k->temp[t].count, e->tcount[t],
				     "key %u bucket %d", x, t);
			cr_assert_eq(k->temp[t].bytes, e->tbytes[t],
				     "key %u bucket %d", x, t);
		}
		seen++;
	}
	cr_assert_eq(seen, (int)h->nkeys - 1);

	/* the young table's growth counts the small blocks in the large
	 * table: as many as are there */
	struct ma_agg *a = f->s.agg;
	uint64_t small = 0;

	for (uint64_t i = 0; i < 1ull << a->gil.bits; i++) {
		struct live_ent e = le_own(&a->gil.t[i]);

		small += e.a && le_unpack(&e).size <= YOUNG_MAX;
	}
	cr_assert_eq(a->spilled, small);
}

/* No table larger than its load asks for: 3/4 full at most before it
 * doubles, so at least 3/8 of the largest number of entries it held */
static void check_sizes(struct fixture *f, uint64_t max_gil, uint64_t max_nat)
{
	struct ma_agg *a = f->s.agg;
	uint64_t cap = 1ull << a->gil.bits, ncap = 0;

	cr_assert(a->gil.bits == GIL_BITS0 || cap * 3 / 8 <= max_gil,
		  "the MEM/OBJ table has 2^%u entries for %lu blocks at most",
		  a->gil.bits, (unsigned long)max_gil);
	/* the young table: fewer than 2 entries per MEM/OBJ block (it
	 * doubles when half full with half as many blocks behind it) */
	cr_assert(a->ybits == YOUNG_BITS0 || (1ull << a->ybits) < max_gil * 2,
		  "the young table has 2^%u entries for %lu blocks at most",
		  a->ybits, (unsigned long)max_gil);
	for (int i = 0; i < SHARDS; i++)
		ncap += 1ull << a->nat[i].bits;
	cr_assert(ncap <= (uint64_t)SHARDS << NAT_BITS0 || ncap / 4 <= max_nat,
		  "the shards have %lu entries for %lu blocks at most",
		  (unsigned long)ncap, (unsigned long)max_nat);
}

static void run(struct fixture *f, int events, double maxlife)
{
	struct model *m = &f->m;
	uint32_t wheel = 1u << 21, mask = wheel - 1;

	f->wheel_head = malloc(wheel * sizeof(uint32_t));
	f->wheel_next = malloc(NADDR * sizeof(uint32_t));
	cr_assert(f->wheel_head && f->wheel_next);
	memset(f->wheel_head, 0xff, wheel * sizeof(uint32_t));
	for (int ev = 0; ev < events; ev++) {
		uint32_t due = f->wheel_head[ev & mask];

		f->wheel_head[ev & mask] = UINT32_MAX;
		/* the frees due now (the wheel's slot) */
		while (due != UINT32_MAX) {
			uint32_t i = due, nx = f->wheel_next[i];
			struct mblk *b = &m->b[i];

			due = nx;
			if (!b->live)
				continue; /* re-allocated under it: gone */
			f->n[b->gil]--;
			ma_agg_free(&f->s, &f->sl, 1, addr_of(i), b->gil, 1);
			model_free(m, i, 1);
			m->freelist[m->nfree++] = i;
		}
		uint64_t r = rnd();
		int gil = (r & 3) != 0;
		uint64_t size = gil ? ((r >> 8) & 15) == 0
						? 513 + ((r >> 12) & 4095)
						: 1 + ((r >> 12) & 511)
				    : 1 + ((r >> 12) & 65535);
		uint32_t node = (uint32_t)((r >> 32) % NODES);
		uint32_t i = new_addr(m);
		double u = (double)(rnd() >> 11) / (double)(1ull << 53);
		uint32_t life =
			(uint32_t)__builtin_exp(u * __builtin_log(maxlife));

		/* now and then, a block whose free no hook saw: its address
		 * comes back a little later, to the same table (the young one
		 * takes every small block of the GIL domains without a look
		 * at the large one) */
		if ((r >> 59) == 0 && (gil == 0 || size > YOUNG_MAX) &&
		    f->nstale < STALE) {
			do_alloc(f, i, size, node, gil);
			f->stale[f->nstale++] = (struct stale){ i, gil };
			continue;
		}
		if (f->nstale && (r >> 59) == 1) {
			struct stale st = f->stale[--f->nstale];

			gil = st.gil;
			if (gil && size <= YOUNG_MAX)
				size += YOUNG_MAX;
			m->freelist[m->nfree++] = i; /* not used after all */
			i = st.i;
		}
		/* and a free of a block never seen */
		if ((r >> 58) == 1) {
			ma_agg_free(&f->s, &f->sl, 1,
				    0x100000000ull + (r & 0xfff0), gil, 1);
			m->unknown++;
		}
		do_alloc(f, i, size, node, gil);
		if (life < 1)
			life = 1;
		if (life >= wheel)
			life = wheel - 1;
		uint32_t w = (uint32_t)(ev + life) & mask;

		f->wheel_next[i] = f->wheel_head[w];
		f->wheel_head[w] = i;
		if (ev % 500000 == 0)
			check(f);
	}
	check(f);
	check_sizes(f, f->max[1], f->max[0]);
	free(f->wheel_head);
	free(f->wheel_next);
}

Test(agg, spread_lifetimes_exact)
{
	struct fixture *f = malloc(sizeof(*f));

	cr_assert(f);
	setup_agg(f);
	run(f, EVENTS, 1e6);
	/* the young table grew, its blocks moved with their figures */
	cr_assert(f->s.agg->ybits > YOUNG_BITS0 + 8, "young: 2^%u entries",
		  f->s.agg->ybits);
	teardown_agg(f);
	free(f);
}

Test(agg, short_lifetimes_exact)
{
	struct fixture *f = malloc(sizeof(*f));

	cr_assert(f);
	setup_agg(f);
	run(f, EVENTS / 2, 64);
	teardown_agg(f);
	free(f);
}

/*
 * A table held just under the load at which it doubles, under steady
 * churn at random addresses: every placement into two full buckets is an
 * eviction walk, and one that fails makes the table double before its
 * time (memory per block beyond what docs/payload.md promises).  Blocks
 * above YOUNG_MAX go to the MEM/OBJ table directly.
 */
Test(agg, steady_churn_near_full_does_not_grow)
{
	struct fixture *f = malloc(sizeof(*f));
	uint32_t hold = (1u << GIL_BITS0) * 73 / 100, *held;

	cr_assert(f);
	setup_agg(f);
	held = malloc(hold * sizeof(*held));
	cr_assert(held);
	for (uint32_t x = 0; x < hold;) {
		uint32_t i = (uint32_t)(rnd() % NADDR);

		if (f->m.b[i].live)
			continue;
		do_alloc(f, i, YOUNG_MAX + 1 + (rnd() & 1023),
			 (uint32_t)(rnd() % NODES), 1);
		held[x++] = i;
	}
	for (int ev = 0; ev < 2000000; ev++) {
		uint32_t x = (uint32_t)(rnd() % hold), i = held[x];

		ma_agg_free(&f->s, &f->sl, 1, addr_of(i), 1, 1);
		model_free(&f->m, i, 1);
		f->n[1]--;
		do {
			i = (uint32_t)(rnd() % NADDR);
		} while (f->m.b[i].live);
		do_alloc(f, i, YOUNG_MAX + 1 + (rnd() & 1023),
			 (uint32_t)(rnd() % NODES), 1);
		held[x] = i;
		cr_assert_eq(f->s.agg->gil.bits, GIL_BITS0,
			     "the table doubled at %u of %u entries, event %d",
			     hold, 1u << GIL_BITS0, ev);
	}
	check(f);
	free(held);
	teardown_agg(f);
	free(f);
}

/*
 * Tables filled until a placement fails: a failed eviction walk must leave
 * the table exactly as it was (entries, slots and counts), and every block
 * placed so far must still be found where a lookup looks (its first
 * bucket, or its second when the first's count says so).  Small tables
 * make walks fail after a few dozen placements.
 */
/*
 * A thread per request: 3,000 threads, each allocating at 4 stacks, half of
 * it natively (any thread, no GIL) and half through MEM/OBJ.  The threads
 * after the first MA_AGG_OWN_THREADS make their keys under thread 0: the key
 * table stays small, no event loses its stack, and every stack's figures
 * are exact.
 */
Test(agg, keys_fold_when_threads_churn)
{
	struct fixture *f = malloc(sizeof(*f));
	const uint32_t nth = 3000, nodes = 4;
	uint64_t allocs[2][4] = { { 0 } }, frees[2][4] = { { 0 } };
	uint64_t by_node[2][4] = { { 0 } }, fby_node[2][4] = { { 0 } };
	uint64_t addr = 0x10000;

	cr_assert(f);
	setup_agg(f);
	for (uint32_t th = 1; th <= nth; th++) {
		for (uint32_t n = 1; n <= nodes; n++) {
			int gil = (n & 1) == 0;
			int kind = gil ? MA_KIND_PYOBJ : MA_KIND_MALLOC;
			uint64_t p = addr += 64;

			ma_agg_alloc(&f->s, &f->sl, th, p, 48, n, kind, gil, 1);
			allocs[gil][n - 1]++;
			if (th & 1) {
				ma_agg_free(&f->s, &f->sl, th, p, gil, 1);
				frees[gil][n - 1]++;
			}
		}
	}
	struct ma_agg_hdr *h = f->s.agg->h;
	struct ma_agg_key *keys = ma_agg_keys(h);

	cr_assert_eq(h->keys_full, 0, "%lu events lost their stack",
		     (unsigned long)h->keys_full);
	cr_assert_eq(h->dropped, 0);
	cr_assert(h->nkeys <= 1 + (MA_AGG_OWN_THREADS + 1) * nodes,
		  "%u keys for %u threads", h->nkeys, nth);
	for (uint32_t x = 1; x < h->nkeys; x++) {
		struct ma_agg_key *k = &keys[x];
		int gil = k->kind == MA_KIND_PYOBJ;

		cr_assert(k->thread <= MA_AGG_OWN_THREADS,
			  "key %u of thread %u", x, k->thread);
		cr_assert(k->node >= 1 && k->node <= nodes);
		by_node[gil][k->node - 1] += k->allocs;
		fby_node[gil][k->node - 1] += k->frees;
	}
	for (int g = 0; g < 2; g++)
		for (uint32_t n = 0; n < nodes; n++) {
			cr_assert_eq(by_node[g][n], allocs[g][n],
				     "stack %u: allocations", n + 1);
			cr_assert_eq(fby_node[g][n], frees[g][n],
				     "stack %u: frees", n + 1);
		}
	teardown_agg(f);
	free(f);
}

/*
 * A full key table: every allocation that gets no key of its own is
 * counted in keys_full, those whose key the thread's memo remembers as
 * missing too (only the first of each was: a report said "147,869 events
 * were counted without their stack" where 1.58 million were, after twenty
 * subinterpreters' imports had filled the table).
 */
Test(agg, full_key_table_counts_every_event)
{
	struct fixture *f = malloc(sizeof(*f));
	const uint32_t nodes = MA_AGG_KEYS + 99, again = 1000;
	uint64_t addr = 0x10000;

	cr_assert(f);
	setup_agg(f);
	for (uint32_t n = 1; n <= nodes; n++) {
		addr += 64;
		ma_agg_alloc(&f->s, &f->sl, 1, addr, 48, n, MA_KIND_MALLOC, 0,
			     1);
		ma_agg_free(&f->s, &f->sl, 1, addr, 0, 1);
	}
	struct ma_agg_hdr *h = f->s.agg->h;
	uint64_t missed = h->keys_full;

	/* key 0 is no stack's: MA_AGG_KEYS - 1 stacks have keys */
	cr_assert_eq(missed, nodes - (MA_AGG_KEYS - 1), "%lu",
		     (unsigned long)missed);
	for (uint32_t i = 0; i < again; i++) {
		addr += 64;
		ma_agg_alloc(&f->s, &f->sl, 1, addr, 48, nodes, MA_KIND_MALLOC,
			     0, 1);
	}
	cr_assert_eq(h->keys_full, missed + again,
		     "%lu allocations without a key counted, not %lu",
		     (unsigned long)(h->keys_full - missed),
		     (unsigned long)again);
	teardown_agg(f);
	free(f);
}

Test(agg, failed_walk_is_undone)
{
	int fails = 0;

	for (int round = 0; round < 400; round++) {
		struct ma_agg_hdr hdr = { 0 }; /* the budget's counts */
		struct live_tab t = { .h = &hdr };
		uint32_t bits = 4 + (uint32_t)round % 5, n = 0;
		size_t sz = sizeof(struct live_ent) << bits;
		struct live_ent *snap = malloc(sz);
		uint64_t *placed = malloc(sizeof(uint64_t) << bits);
		int shift = round & 1 ? SHARD_SHIFT : 0;

		cr_assert(snap && placed);
		cr_assert_eq(live_map(&t, bits), 0);
		for (;;) {
			uint64_t p = addr_of((uint32_t)(rnd() % NADDR));
			struct blk b = { .ptr = p, .key = 1, .size = 8 };
			struct live_ent x;
			int dup = 0;

			for (uint32_t j = 0; j < n; j++)
				dup |= placed[j] == p;
			if (dup)
				continue;
			le_pack(&x, &b);
			memcpy(snap, t.t, sz);
			if (live_place(&t, shift, x) < 0) {
				cr_assert(memcmp(snap, t.t, sz) == 0,
					  "round %d: a failed walk changed "
					  "the table",
					  round);
				fails++;
				break;
			}
			placed[n++] = p;
			cr_assert(n <= (1u << bits));
		}
		for (uint32_t j = 0; j < n; j++) {
			uint64_t p = placed[j], b1 = bkt1(&t, shift, p);
			int in1 = bfind(bucket(&t, b1), p) >= 0;
			int in2 = bcnt(bucket(&t, b1), p) &&
				  bfind(bucket(&t, bkt2(&t, p, b1)), p) >= 0;

			cr_assert(in1 || in2, "round %d: block %u lost", round,
				  j);
		}
		live_unmap(&t);
		free(snap);
		free(placed);
	}
	cr_assert_eq(fails, 400);
}

/*
 * The tables' budget (docs/payload.md): with the budget at what the tables
 * hold, no table grows: the blocks that do not fit are dropped (counted),
 * budget_hit is set and the tables' bytes stay as they were; with no
 * budget the same blocks make the tables grow, and the bytes counted are
 * those of the tables mapped (the old ones given back).
 */
Test(agg, tables_grow_within_the_budget)
{
	struct fixture *f = malloc(sizeof(*f));
	const uint64_t n = 200000;

	cr_assert(f);
	setup_agg(f);
	struct ma_agg_hdr *h = f->s.agg->h;
	uint64_t first = h->tab_bytes;

	cr_assert_gt(first, 0);
	h->tab_budget = first;
	for (uint64_t i = 0; i < n; i++)
		ma_agg_alloc(&f->s, &f->sl, 1, 0x100000 + i * 64, 48, 1,
			     MA_KIND_MALLOC, 0, 1);
	cr_expect_eq(h->tab_bytes, first, "%lu bytes, %lu before",
		     (unsigned long)h->tab_bytes, (unsigned long)first);
	cr_expect_eq(h->budget_hit, 1);
	cr_expect_gt(h->dropped, n / 2, "%lu of %lu dropped",
		     (unsigned long)h->dropped, (unsigned long)n);
	teardown_agg(f);

	setup_agg(f);
	h = f->s.agg->h;
	for (uint64_t i = 0; i < n; i++)
		ma_agg_alloc(&f->s, &f->sl, 1, 0x100000 + i * 64, 48, 1,
			     MA_KIND_MALLOC, 0, 1);
	uint64_t mapped = 0;

	for (int i = 0; i < SHARDS; i++)
		mapped += sizeof(struct live_ent) << f->s.agg->nat[i].bits;
	mapped += sizeof(struct live_ent) << f->s.agg->gil.bits;
	cr_expect_eq(h->dropped, 0);
	cr_expect_eq(h->budget_hit, 0);
	cr_expect_eq(h->tab_bytes, mapped, "%lu bytes counted, %lu mapped",
		     (unsigned long)h->tab_bytes, (unsigned long)mapped);
	cr_expect_gt(h->tab_bytes, first);
	teardown_agg(f);
	free(f);
}
