/* SPDX-License-Identifier: MIT */
/*
 * Aggregated tracking (MA_TRACK_AGG, the default; docs/payload.md,
 * "Aggregated tracking"): instead of a ring record per event, the hooks
 * keep the live blocks in a table of their own and sums per key (thread,
 * stack node, kind) in the aggregate area (common/ma_agg.h), which the
 * attacher reads every 100 ms.
 *
 * Two live tables, because two kinds of callers use them:
 *   - the MEM and OBJ domains, called with the GIL held: one table, no
 *     lock while one GIL serialises them (gil_serial, record.c), its spin
 *     lock otherwise; the keys and the live_gil figures of these blocks
 *     are then written with plain stores;
 *   - everything else (malloc & co, the RAW domain), from any thread:
 *     SHARDS tables by address, each with a spin lock held for one
 *     insertion or deletion; their keys' frees and the live_nat figures
 *     are atomic additions (a block may be freed by any thread), their
 *     allocations plain stores (a key is one thread's).
 * Each table: open addressing, linear probing, deletion by backward shift
 * (no tombstones), grown by doubling at 3/4 full.  A table that cannot grow
 * drops the block: counted in `dropped`, nowhere else, so that every figure
 * stays consistent.  No lock is held across a call that can block (a
 * table's growth maps memory under its lock: bounded), the hooks' guard
 * keeps a signal handler from re-entering, and nothing waits on the ring.
 *
 * The peak, with epochs: see the comment of peak_check().
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

#define SHARDS	       64
#define SHARD_SHIFT    6 /* log2(SHARDS) */
#define GIL_BITS0      12
#define NAT_BITS0      8
#define LIVE_BITS_MAX  31
#define KIDX_BITS      17 /* 2 * MA_AGG_KEYS entries: at most half full */
#define KMEMO_IDX(key) ((uint32_t)(mix(key) >> 58))

_Static_assert((1u << KIDX_BITS) >= 2 * MA_AGG_KEYS, "key index room");
_Static_assert(64 == MA_KMEMO, "the key memo has 64 entries");

/*
 * A live block in 16 bytes (at most 3/4 of a table is used: at most
 * 43 bytes per block once a table has doubled): its address (8-aligned,
 * below 2^47: every x86_64 allocator's) over 3 in the low 44 bits of `a`
 * and its key in the next 16; its size (below 2^40) in the low 40 bits of
 * `b` and in the top 24 the low 24 bits of the allocating thread's
 * allocations before it (distances up to 2^20 are all the temporary
 * buckets need).  The top 4 bits of `a` are the bucket's, not the
 * entry's: see struct live_tab.  An entry whose address field is 0 is
 * empty.
 */
struct live_ent {
	uint64_t a, b;
};

struct blk {
	uint64_t ptr, size;
	uint32_t key, seq;
};

#define LE_PTR_BITS  44
#define LE_KEY_BITS  16
#define LE_SIZE_BITS 40
#define LE_SEQ_MASK  0xffffffu
#define LE_OWN	     ((1ull << (LE_PTR_BITS + LE_KEY_BITS)) - 1)
#define LE_PTR_MASK  ((1ull << LE_PTR_BITS) - 1)
#define BCNT_SHIFT   (LE_PTR_BITS + LE_KEY_BITS)
#define BCNT_STICKY  15u /* 4 bits */

static inline int le_fits(uint64_t p, uint64_t size)
{
	return !(p & 7) && p >> 47 == 0 && size >> LE_SIZE_BITS == 0;
}

static inline uint64_t le_ptr(const struct live_ent *e)
{
	return (e->a & LE_PTR_MASK) << 3;
}

static inline void le_pack(struct live_ent *e, const struct blk *b)
{
	e->a = b->ptr >> 3 | (uint64_t)b->key << LE_PTR_BITS;
	e->b = b->size | (uint64_t)(b->seq & LE_SEQ_MASK) << LE_SIZE_BITS;
}

static inline struct blk le_unpack(const struct live_ent *e)
{
	return (struct blk){ .ptr = le_ptr(e),
			     .size = e->b & ((1ull << LE_SIZE_BITS) - 1),
			     .key = (uint32_t)(e->a >> LE_PTR_BITS) &
				    ((1u << LE_KEY_BITS) - 1),
			     .seq = (uint32_t)(e->b >> LE_SIZE_BITS) };
}

/*
 * A live table: 1 << bits entries in buckets of 4, one 64-byte line each
 * (the mapping is page-aligned).  A block lives in one of two buckets
 * chosen by two hashes of its address, its first when that has room (a
 * bucketed cuckoo table); when both are full, a short walk of evictions
 * moves blocks to their other bucket.  Why not linear probing, which the
 * tables used before: a free must find the block and fill the hole, and
 * with probing the hole's filling scans the cluster to its end, 1.6 lines
 * per free at 3/8 full and 3.9 at 3/4 (simulated; the tables live
 * between the two); here a free touches its first bucket's line, and its
 * second only for the blocks living there (6-42 %, by load), and writes
 * only the entry.  The line is the unit: the tables are far larger than
 * the caches on a large heap, and each line a hook touches is one the
 * target's own objects lose (docs/performance.md).
 *
 * The top 4 bits of a bucket's entries are 4 counts of the bucket's (the
 * entries' own bits are the other 60): how many of the blocks whose first
 * bucket it is live in their second, by 2 bits of their address's hash
 * that choose no bucket (15: that many or more, until the table is
 * rebuilt).  A lookup reads the second bucket only when its address's
 * count there is not 0, so that an insertion (which must find an older
 * entry of the same address first) touches one line too in the common
 * case: with a single count per bucket, 55 % of the insertions read the
 * second bucket at 0.7 full (simulated), with four, 21 %.
 */
struct live_tab {
	int lock;
	uint32_t bits; /* 1 << bits entries, bits - 2 bucket bits */
	uint64_t n;
	struct live_ent *t;
	struct ma_agg_hdr *h; /* where its memory is counted */
	uint8_t _pad[32];
};
_Static_assert(sizeof(struct live_tab) == 64, "one line per table");
_Static_assert(sizeof(struct live_ent) * 4 == 64, "a bucket is a line");

struct kidx_ent {
	uint64_t k;
	uint32_t idx; /* release-stored after k; 0: empty (key 0 is never
			 indexed) */
	uint32_t _pad;
};

/* the young blocks in front of the MEM/OBJ table (see young_put): 1 <<
 * ybits entries, two ways per address hash */
#define YOUNG_BITS0    6
#define YOUNG_BITS_MAX 20
#define YOUNG_MAX      512 /* bytes: pymalloc's small blocks */

struct ma_agg {
	struct ma_agg_hdr *h;
	struct ma_agg_key *keys;
	struct kidx_ent *kidx;
	int key_lock;
	/* sampled tracking (sample.c): every block here is a sampled one,
	 * its figures its estimates, the seq bits of its entry its
	 * estimated count; no temporary figures */
	int sample;
	/* the young table, in the line every event reads (under the
	 * MEM/OBJ table's rules: the GIL, or its lock) */
	struct live_ent *young;
	uint32_t ybits, ybits_max;
	/* blocks of at most YOUNG_MAX bytes in the large table: moved
	 * there out of the young table */
	uint64_t spilled;
	uint64_t ynext; /* the spilled count of young_grow's next look */
	struct live_tab gil __attribute__((aligned(64)));
	struct live_tab nat[SHARDS];
	/* the young table until it first grows: where it was when it
	 * could not grow (measured: in a mapping of its own, churn.py ran
	 * 0.37 of its untracked speed instead of 0.39-0.40) */
	struct live_ent young0[1 << YOUNG_BITS0] __attribute__((aligned(64)));
};
_Static_assert(__builtin_offsetof(struct ma_agg, gil) == 64,
	       "the young table's fields in the first line");

static inline uint64_t mix(uint64_t x)
{
	return x * 0x9e3779b97f4a7c15ull;
}

/* ------------------------------------------------------------------ */
/* Live tables.  shift: 0 for the GIL table, SHARD_SHIFT for a shard (the
 * hash's top bits chose the shard; the next ones choose the first
 * bucket).  The second bucket comes from another multiplier, and is
 * never the first. */

/* Evictions tried before the table grows.  Simulated under steady churn
 * at random addresses: walks of 16 fail now and then from 0.72 full (the
 * table then doubles before 3/4), walks of 64 never did up to 3/4 in
 * 3 million placements; tests/unit/test_agg.c holds a table at 0.73. */
#define KICKS 64

static inline uint64_t bkt1(const struct live_tab *t, int shift, uint64_t p)
{
	return (mix(p) << shift) >> (64 - (t->bits - 2));
}

static inline uint64_t bkt2(const struct live_tab *t, uint64_t p, uint64_t b1)
{
	uint64_t b = ((p >> 3) * 0xc2b2ae3d27d4eb4full) >> (64 - (t->bits - 2));

	return b == b1 ? b ^ 1 : b;
}

static inline struct live_ent *bucket(const struct live_tab *t, uint64_t b)
{
	return &t->t[b * 4];
}

/* p's count in its first bucket bk: in the top bits of entry
 * (hash bits of p that choose no bucket) */
static inline struct live_ent *bcnt_ent(struct live_ent *bk, uint64_t p)
{
	return &bk[(mix(p) >> 20) & 3];
}

static inline unsigned bcnt(struct live_ent *bk, uint64_t p)
{
	return (unsigned)(bcnt_ent(bk, p)->a >> BCNT_SHIFT);
}

/* d: +1 or -1; a sticky count stays */
static inline void bcnt_add(struct live_ent *bk, uint64_t p, int d)
{
	struct live_ent *e = bcnt_ent(bk, p);
	unsigned c = (unsigned)(e->a >> BCNT_SHIFT);

	if (c == BCNT_STICKY)
		return;
	c = (unsigned)((int)c + d);
	e->a = (e->a & LE_OWN) | (uint64_t)c << BCNT_SHIFT;
}

/* Entry e without the bucket's bits */
static inline struct live_ent le_own(const struct live_ent *e)
{
	return (struct live_ent){ e->a & LE_OWN, e->b };
}

/* Store x (no bucket bits) at e, keeping the bucket's bits */
static inline void le_put(struct live_ent *e, const struct live_ent *x)
{
	e->a = (e->a & ~LE_OWN) | x->a;
	e->b = x->b;
}

/* The slot of p in bucket bk, or -1 */
static inline int bfind(const struct live_ent *bk, uint64_t p)
{
	uint64_t q = p >> 3;

	for (int i = 0; i < 4; i++)
		if ((bk[i].a & LE_PTR_MASK) == q)
			return i;
	return -1;
}

static inline int bfree(const struct live_ent *bk)
{
	for (int i = 0; i < 4; i++)
		if (!(bk[i].a & LE_PTR_MASK))
			return i;
	return -1;
}

/* Entry i of bucket number b: take it out, or store x there (an empty
 * slot), keeping the count of x's first bucket */
static struct live_ent slot_take(struct live_tab *t, int shift, uint64_t b,
				 int i)
{
	struct live_ent *e = &bucket(t, b)[i], x = le_own(e);
	uint64_t b1 = bkt1(t, shift, le_ptr(&x));

	e->a &= ~LE_OWN;
	if (b1 != b)
		bcnt_add(bucket(t, b1), le_ptr(&x), -1);
	return x;
}

static void slot_store(struct live_tab *t, int shift, uint64_t b, int i,
		       const struct live_ent *x)
{
	uint64_t b1 = bkt1(t, shift, le_ptr(x));

	le_put(&bucket(t, b)[i], x);
	if (b1 != b)
		bcnt_add(bucket(t, b1), le_ptr(x), 1);
}

/* The bucket other than b of the entry x (which is in bucket b) */
static inline uint64_t balt(const struct live_tab *t, int shift,
			    const struct live_ent *x, uint64_t b)
{
	uint64_t b1 = bkt1(t, shift, le_ptr(x));

	return b == b1 ? bkt2(t, le_ptr(x), b1) : b1;
}

/*
 * Put x (not in the table) into one of its buckets: 0, or -ENOSPC when a
 * walk of KICKS evictions found no room (undone: the table is as it was).
 * The walk's choices come from the addresses it moves, so that it does
 * not go round in a cycle of two buckets.  The walk keeps only the slot
 * of each step: on the way back, the bucket of a step is the other
 * bucket of the entry it evicted (balt is its own inverse).
 */
static int live_place(struct live_tab *t, int shift, struct live_ent x)
{
	uint64_t p = le_ptr(&x), b1 = bkt1(t, shift, p), b = bkt2(t, p, b1);
	uint8_t path[KICKS];
	int i = bfree(bucket(t, b1)), k;

	if (ma_likely(i >= 0)) {
		slot_store(t, shift, b1, i, &x);
		return 0;
	}
	for (k = 0;; k++) {
		i = bfree(bucket(t, b));
		if (i >= 0) {
			slot_store(t, shift, b, i, &x);
			return 0;
		}
		if (k == KICKS)
			break;
		i = (int)((le_ptr(&x) >> 4) + (uint64_t)k) & 3;
		path[k] = (uint8_t)i;

		struct live_ent v = slot_take(t, shift, b, i);

		slot_store(t, shift, b, i, &x);
		x = v;
		b = balt(t, shift, &v, b);
	}
	/* undo, last eviction first: x goes back where it was taken from,
	 * the other bucket of x than the one the walk would have tried */
	while (k-- > 0) {
		b = balt(t, shift, &x, b);

		struct live_ent v = slot_take(t, shift, b, path[k]);

		slot_store(t, shift, b, path[k], &x);
		x = v;
	}
	return -ENOSPC;
}

/* An empty table of 1 << bits entries at mem (zeroed, page-aligned),
 * counted in the budget's tab_bytes by the caller */
static void live_init(struct live_tab *t, struct live_ent *mem, uint32_t bits)
{
	t->t = mem;
	t->bits = bits;
	t->n = 0;
}

/*
 * Memory for len bytes more of the live tables, within the budget the
 * attacher sets from the room below the target's memory cgroup's limit
 * (docs/payload.md, "The tables' budget"): a table doubles in one step
 * (a 32 MiB one maps 64 MiB while it moves), faster than the attacher's
 * look every 100 ms at that room, and a target near its limit would be
 * the OOM killer's choice for pages that are ours.  NULL when the budget
 * or the system says no; the table then stays as it is.
 */
static void *tab_map(struct ma_agg_hdr *h, size_t len)
{
	uint64_t budget = __atomic_load_n(&h->tab_budget, __ATOMIC_RELAXED);
	void *p;

	if (budget &&
	    __atomic_load_n(&h->tab_bytes, __ATOMIC_RELAXED) + len > budget) {
		__atomic_store_n(&h->budget_hit, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	p = ma_map(len);
	if (p)
		__atomic_add_fetch(&h->tab_bytes, len, __ATOMIC_RELAXED);
	return p;
}

static void tab_unmap(struct ma_agg_hdr *h, void *p, size_t len)
{
	ma_unmap(p, len);
	__atomic_sub_fetch(&h->tab_bytes, len, __ATOMIC_RELAXED);
}

static int live_map(struct live_tab *t, uint32_t bits)
{
	struct live_ent *mem = tab_map(t->h, sizeof(struct live_ent) << bits);

	if (!mem)
		return -ENOMEM;
	live_init(t, mem, bits);
	return 0;
}

/* At the session's end: its ring, where the counts are, may be gone */
static void live_unmap(struct live_tab *t)
{
	if (t->t)
		ma_unmap(t->t, sizeof(struct live_ent) << t->bits);
	t->t = NULL;
}

/* A table given up while the session runs */
static void live_drop(struct live_tab *t)
{
	tab_unmap(t->h, t->t, sizeof(struct live_ent) << t->bits);
	t->t = NULL;
}

/* Double the table: 0, or -ENOMEM (the table is left as it was) */
static int live_grow(struct live_tab *t, int shift)
{
	struct live_tab nt = { .h = t->h };
	uint64_t cap = 1ull << t->bits;

	if (t->bits >= LIVE_BITS_MAX || live_map(&nt, t->bits + 1) < 0)
		return -ENOMEM;
	for (uint64_t i = 0; i < cap; i++) {
		struct live_ent x = le_own(&t->t[i]);

		if (x.a && live_place(&nt, shift, x) < 0) {
			live_drop(&nt);
			return -ENOMEM;
		}
	}
	nt.n = t->n;
	live_drop(t);
	t->t = nt.t;
	t->bits = nt.bits;
	return 0;
}

/*
 * Enter block n: 0, 1 when an entry of the same address was there (it is
 * replaced, and returned in *old), or -ENOMEM when the table is full and
 * cannot grow
 */
static int live_insert(struct live_tab *t, int shift, const struct live_ent *n,
		       struct live_ent *old)
{
	uint64_t p = le_ptr(n), b1, b2;
	struct live_ent *bk;
	int i;

	if (ma_unlikely((t->n + 1) * 4 > (1ull << t->bits) * 3))
		(void)live_grow(t, shift); /* else: as long as there is room */
	b1 = bkt1(t, shift, p);
	bk = bucket(t, b1);
	i = bfind(bk, p);
	if (ma_unlikely(i >= 0))
		goto replace;
	if (bcnt(bk, p)) {
		b2 = bkt2(t, p, b1);
		bk = bucket(t, b2);
		i = bfind(bk, p);
		if (ma_unlikely(i >= 0))
			goto replace;
	}
	if (ma_unlikely(live_place(t, shift, *n) < 0) &&
	    (live_grow(t, shift) < 0 || live_place(t, shift, *n) < 0))
		return -ENOMEM;
	t->n++;
	return 0;
replace:
	*old = le_own(&bk[i]);
	le_put(&bk[i], n);
	return 1;
}

/* Take p's entry out into *got: 1, or 0 when p is not there */
static int live_remove(struct live_tab *t, int shift, uint64_t p,
		       struct live_ent *got)
{
	uint64_t b1 = bkt1(t, shift, p), b = b1;
	int i = bfind(bucket(t, b1), p);

	if (i < 0) {
		if (!bcnt(bucket(t, b1), p))
			return 0;
		b = bkt2(t, p, b1);
		i = bfind(bucket(t, b), p);
		if (i < 0)
			return 0;
	}
	*got = slot_take(t, shift, b, i);
	t->n--;
	return 1;
}

/* ------------------------------------------------------------------ */
/* Keys */

/*
 * A key is (thread, node, kind), so a process that starts a thread per
 * request makes keys as fast as it starts threads: 21,000 threads in 12 s
 * filled the table (65,536 keys, 38 MB of the target's memory), and every
 * later event lost its stack to key 0.  So the threads after the first
 * MA_AGG_OWN_THREADS of a session (MA_THREAD_FOLDED, record.c), and every
 * thread once the table is 3/4 full, make their new keys under thread 0,
 * the report's "(other threads)": the figures per stack stay exact, only
 * which thread is folded.  A folded key is many threads', so its native
 * allocations add atomically (ma_agg_alloc), and its blocks have no
 * temporary figures (a distance is counted in its own thread's
 * allocations).
 */
#define KEY_FOLD_AT (MA_AGG_KEYS / 4 * 3)

static uint32_t key_slow(struct ma_agg *a, uint64_t k, uint32_t th,
			 uint32_t node, int kind)
{
	uint64_t mask = (1ull << KIDX_BITS) - 1;
	uint64_t i0 = mix(k) >> (64 - KIDX_BITS), i;
	uint32_t idx;

	for (i = i0;; i = (i + 1) & mask) {
		idx = __atomic_load_n(&a->kidx[i].idx, __ATOMIC_ACQUIRE);
		if (!idx)
			break;
		if (a->kidx[i].k == k)
			return idx;
	}
	if (th &&
	    (th > MA_AGG_OWN_THREADS ||
	     __atomic_load_n(&a->h->nkeys, __ATOMIC_RELAXED) >= KEY_FOLD_AT))
		return key_slow(a, k & ((1ull << 40) - 1), 0, node, kind);
	/* new keys are rare: one lock for all of them */
	ma_spin_lock(&a->key_lock);
	for (i = i0;; i = (i + 1) & mask) {
		idx = __atomic_load_n(&a->kidx[i].idx, __ATOMIC_RELAXED);
		if (!idx)
			break;
		if (a->kidx[i].k == k) {
			ma_spin_unlock(&a->key_lock);
			return idx;
		}
	}
	idx = a->h->nkeys;
	if (idx >= MA_AGG_KEYS) {
		ma_spin_unlock(&a->key_lock);
		__atomic_add_fetch(&a->h->keys_full, 1, __ATOMIC_RELAXED);
		return 0;
	}
	struct ma_agg_key *key = &a->keys[idx];

	key->thread = th;
	key->node = node;
	key->kind = (uint8_t)kind;
	__atomic_store_n(&key->ready, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&a->h->nkeys, idx + 1, __ATOMIC_RELEASE);
	a->kidx[i].k = k;
	__atomic_store_n(&a->kidx[i].idx, idx, __ATOMIC_RELEASE);
	ma_spin_unlock(&a->key_lock);
	return idx;
}

/* The key of (thread, node, kind): the thread's memo, else the index */
static inline uint32_t key_of(struct ma_agg *a, struct ma_slot *sl, uint32_t th,
			      uint32_t node, int kind)
{
	uint64_t k = (uint64_t)node | (uint64_t)kind << 32 | (uint64_t)th << 40;
	struct ma_kmemo *m = &sl->kmemo[KMEMO_IDX(k)];

	if (ma_likely(m->k == k)) {
		/* a key the full table had no room for: this event is
		 * counted without its stack too (key_slow counted the first) */
		if (ma_unlikely(!m->idx))
			__atomic_add_fetch(&a->h->keys_full, 1,
					   __ATOMIC_RELAXED);
		return m->idx;
	}
	m->idx = key_slow(a, k, th, node, kind);
	m->k = k;
	return m->idx;
}

/* ------------------------------------------------------------------ */
/* Figures
 *
 * The peak, exact, with epochs (what attacher/capture/account.c does over
 * a stream of events, done where the events happen): the header's epoch
 * counts new peaks of live_gil + live_nat.  Before a key's figures change,
 * if its epoch is not the current one, its live figures are saved as its
 * peak figures and its epoch set: they have not changed since that epoch
 * began, i.e. since the peak.  At the end, a key whose epoch is the last
 * one has its peak in the saved figures, any other its live figures.  The
 * epoch is read before the event changes anything, and a new peak is
 * looked for after, so the event that makes a peak is part of it.
 */

static inline void key_touch(struct ma_agg_key *k, uint64_t epoch)
{
	if (ma_unlikely(k->epoch != epoch)) {
		uint64_t ab =
			__atomic_load_n(&k->alloc_bytes, __ATOMIC_RELAXED);
		uint64_t fb = __atomic_load_n(&k->free_bytes, __ATOMIC_RELAXED);
		uint64_t ac = __atomic_load_n(&k->allocs, __ATOMIC_RELAXED);
		uint64_t fc = __atomic_load_n(&k->frees, __ATOMIC_RELAXED);

		__atomic_store_n(&k->peak_bytes, ab - fb, __ATOMIC_RELAXED);
		__atomic_store_n(&k->peak_count, ac - fc, __ATOMIC_RELAXED);
		__atomic_store_n(&k->epoch, epoch, __ATOMIC_RELAXED);
	}
}

/* A plain counter update, for words only one writer at a time changes;
 * the relaxed store keeps the attacher's reads whole */
#define PLAIN_ADD(x, v) __atomic_store_n(&(x), (x) + (v), __ATOMIC_RELAXED)

static void peak_new(struct ma_agg_hdr *h, uint64_t live)
{
	uint64_t count = __atomic_load_n(&h->count_gil, __ATOMIC_RELAXED) +
			 __atomic_load_n(&h->count_nat, __ATOMIC_RELAXED);

	__atomic_store_n(&h->peak_bytes, live, __ATOMIC_RELAXED);
	__atomic_store_n(&h->peak_count, count, __ATOMIC_RELAXED);
	__atomic_add_fetch(&h->epoch, 1, __ATOMIC_RELEASE);
}

static inline void peak_check(struct ma_agg_hdr *h, uint64_t live)
{
	if (ma_unlikely(live >
			__atomic_load_n(&h->peak_bytes, __ATOMIC_RELAXED)))
		peak_new(h, live);
}

/* A block freed: its key's figures and the live ones (cnt blocks: 1, or
 * a sampled block's estimate).  temp and d: freed by its allocating
 * thread after d further allocations of it */
static void key_free(struct ma_agg *a, uint32_t ki, uint64_t size, uint64_t cnt,
		     int gil, int temp, uint32_t d)
{
	struct ma_agg_hdr *h = a->h;
	struct ma_agg_key *k = &a->keys[ki];

	key_touch(k, __atomic_load_n(&h->epoch, __ATOMIC_RELAXED));
	if (temp) {
		unsigned b = ma_agg_temp_bucket(d);

		/* only the allocating thread gets here for its key */
		if (b < MA_AGG_TEMPW) {
			PLAIN_ADD(k->temp[b].count, 1);
			PLAIN_ADD(k->temp[b].bytes, size);
		}
	}
	/* key 0 is every thread's, of either kind of caller */
	if (gil && ki != 0) {
		PLAIN_ADD(k->frees, cnt);
		PLAIN_ADD(k->free_bytes, size);
	} else {
		__atomic_add_fetch(&k->frees, cnt, __ATOMIC_RELAXED);
		__atomic_add_fetch(&k->free_bytes, size, __ATOMIC_RELAXED);
	}
	if (gil) {
		PLAIN_ADD(h->live_gil, -size);
		PLAIN_ADD(h->count_gil, -cnt);
	} else {
		__atomic_sub_fetch(&h->live_nat, size, __ATOMIC_RELAXED);
		__atomic_sub_fetch(&h->count_nat, cnt, __ATOMIC_RELAXED);
	}
}

static inline struct live_tab *tab_of(struct ma_agg *a, uint64_t p, int gil,
				      int *shift)
{
	if (gil) {
		*shift = 0;
		return &a->gil;
	}
	*shift = SHARD_SHIFT;
	return &a->nat[mix(p) >> (64 - SHARD_SHIFT)];
}

/*
 * Young small blocks of the MEM and OBJ domains wait in a table in front
 * of the MEM/OBJ live table (two ways per address hash, the older first,
 * 64 entries that grow with the blocks, see young_grow): most of them die
 * there and are then never inserted into, searched in and deleted from
 * the large table, a cuckoo table whose every operation costs more (the
 * count bits, a second bucket, the walks).  Their figures count from
 * their allocation, wherever they wait.  A block is moved into the large
 * table when a younger one needs its entry.  0, or -ENOMEM when the large
 * table could not take the block moved out (it is then not tracked: its
 * size in *lost).
 */
static inline struct live_ent *young_of(struct ma_agg *a, uint64_t p)
{
	/* the hash's top bits: a set splits in two when the table
	 * doubles (young_grow); measured faster on the spread churn than
	 * the same bits taken low ones first under a mask (0.497 against
	 * 0.482), and no slower on churn */
	return &a->young[(mix(p) >> (64 - a->ybits)) & ~1ull];
}

/*
 * Double the young table (1, or 0 when it stays as it is) when a block
 * must leave a full set, the blocks that left it outnumber half its
 * entries, and at least half of its entries are taken: there are then
 * more blocks than entries, so that it has fewer than 2 entries per block
 * once doubled (16 bytes each; the blocks it holds are not in the large
 * table), and more blocks die in it, never entering the
 * large table (docs/performance.md: 1 MiB and 16 MiB were slower than
 * 4 MiB on 316,000 blocks).  Fewer taken (the blocks that left it did so
 * in an earlier phase): no new look until their number doubles.  A way's
 * two entries go to the sets their hash's next bit chooses, the older
 * first: a new set gets the entries of one old set only.  No memory: the
 * table stays as it is, for good.
 */
static int young_grow(struct ma_agg *a)
{
	uint32_t ob = a->ybits;
	uint64_t taken = 0, cap = 1ull << ob;
	struct live_ent *oy = a->young, *ny;

	for (uint64_t i = 0; i < cap; i++)
		taken += oy[i].a != 0;
	if (taken * 2 < cap) {
		a->ynext = a->spilled * 2;
		return 0;
	}
	ny = tab_map(a->h, sizeof(struct live_ent) << (ob + 1));
	if (!ny) {
		a->ybits_max = ob;
		return 0;
	}
	a->young = ny;
	a->ybits = ob + 1;
	for (uint64_t i = 0; i < cap; i++)
		if (oy[i].a) {
			struct live_ent *y = young_of(a, le_ptr(&oy[i]));

			y[y[0].a != 0] = oy[i];
		}
	if (oy != a->young0)
		tab_unmap(a->h, oy, sizeof(struct live_ent) << ob);
	return 1;
}

/*
 * Before the stack walk of a MEM/OBJ allocation of p: start loading what
 * ma_agg_alloc will touch in the large table, so that the load overlaps
 * the walk.  With many live blocks the table is far larger than the
 * caches, and the block moved out of the young table lands at a random
 * place in it (on the lifetime-spread churn, a cache miss at nearly every
 * allocation).
 */
void ma_agg_prefetch(struct ma_session *s, uint64_t p, uint64_t size)
{
	struct ma_agg *a = s->agg;
	const struct live_ent *y = young_of(a, p);

	if (size <= YOUNG_MAX) {
		if (y[0].a && y[1].a)
			__builtin_prefetch(bucket(&a->gil, bkt1(&a->gil, 0,
								le_ptr(&y[0]))),
					   1);
	} else {
		__builtin_prefetch(bucket(&a->gil, bkt1(&a->gil, 0, p)), 1);
	}
}

/* A block of size bytes left a large table (gil: the MEM/OBJ one) */
static inline void large_left(struct ma_agg *a, uint64_t size, int gil)
{
	if (gil && size <= YOUNG_MAX)
		a->spilled--;
}

/* An entry that a new block at its address replaced: that block was
 * never freed through our hooks (freed before its module was patched, or
 * through another domain's free): it is gone now */
static void stale_free(struct ma_agg *a, const struct live_ent *old, int gil)
{
	struct blk o = le_unpack(old);

	large_left(a, o.size, gil);
	key_free(a, o.key, o.size, a->sample ? o.seq : 1, gil, 0, 0);
	if (a->sample)
		ma_samp_filter_del(o.ptr);
}

static int young_put(struct ma_agg *a, const struct live_ent *n, uint64_t p,
		     uint64_t *lost)
{
	struct live_ent *y = young_of(a, p);
	int ret = 0;

	if (ma_likely(!y[0].a)) {
		/* the older first: a set's second entry is never alone */
		y[0] = *n;
		return 0;
	}
	if (!y[1].a) {
		y[1] = *n;
		return 0;
	}
	/* a full set: the only place where the young table grows, so
	 * that the path of a block that dies in it stays short */
	if (ma_unlikely(a->spilled * 2 > 1ull << a->ybits) &&
	    a->spilled >= a->ynext && a->ybits < a->ybits_max && young_grow(a))
		return young_put(a, n, p, lost);
	struct live_ent old;
	int r = live_insert(&a->gil, 0, &y[0], &old);

	if (ma_unlikely(r < 0)) {
		*lost = le_unpack(&y[0]).size;
		ret = -ENOMEM;
	} else {
		a->spilled++;
		if (ma_unlikely(r > 0))
			stale_free(a, &old, 1);
	}
	y[0] = y[1];
	y[1] = *n;
	return ret;
}

/* Take p out of the young table into *b: 1, or 0 when it is not there */
static inline int young_take(struct ma_agg *a, uint64_t p, struct live_ent *b)
{
	struct live_ent *y = young_of(a, p);

	if (y[1].a && le_ptr(&y[1]) == p) {
		*b = y[1];
		y[1].a = 0;
		return 1;
	}
	if (y[0].a && le_ptr(&y[0]) == p) {
		*b = y[0];
		y[0] = y[1];
		y[1].a = 0;
		return 1;
	}
	return 0;
}

static void dropped(struct ma_agg_hdr *h, uint64_t size)
{
	__atomic_add_fetch(&h->dropped, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&h->dropped_bytes, size, __ATOMIC_RELAXED);
}

void ma_agg_alloc(struct ma_session *s, struct ma_slot *sl, uint32_t th,
		  uint64_t p, uint64_t size, uint32_t node, int kind, int gil,
		  int serial)
{
	struct ma_agg *a = s->agg;
	struct ma_agg_hdr *h = a->h;
	uint32_t ki = key_of(a, sl, th, node, kind);
	struct ma_agg_key *k = &a->keys[ki];
	int shift, r, lock = !gil || !serial;
	struct live_tab *t = tab_of(a, p, gil, &shift);
	struct live_ent n, old = { 0 };
	struct blk b = {
		.ptr = p, .size = size, .key = ki, .seq = (uint32_t)sl->allocs
	};
	uint64_t epoch, live, cnt = 1;

	if (!p)
		return;
	if (a->sample) {
		ma_samp_weights(size, &b.size, &cnt);
		if (cnt > LE_SEQ_MASK)
			cnt = LE_SEQ_MASK;
		b.seq = (uint32_t)cnt;
		size = b.size;
	}
	if (ma_unlikely(!le_fits(p, size))) {
		dropped(h, size);
		return;
	}
	le_pack(&n, &b);
	if (lock)
		ma_spin_lock(&t->lock);
	if (gil && size <= YOUNG_MAX) {
		uint64_t lost = 0;

		/* the block moved out, not this one, is what is lost */
		if (ma_unlikely(young_put(a, &n, p, &lost) < 0))
			dropped(h, lost);
		goto counted;
	}
	r = live_insert(t, shift, &n, &old);
	if (lock && !gil)
		ma_spin_unlock(&t->lock);
	if (ma_unlikely(r < 0)) {
		if (lock && gil)
			ma_spin_unlock(&t->lock);
		dropped(h, size);
		return;
	}
	if (ma_unlikely(r > 0))
		stale_free(a, &old, gil);
counted:
	/* before the block can reach another thread's free */
	if (a->sample)
		ma_samp_filter_add(p);
	epoch = __atomic_load_n(&h->epoch, __ATOMIC_RELAXED);
	key_touch(k, epoch);
	if (ma_likely(ki != 0 && (gil || k->thread != 0))) {
		/* a key is one thread's, and only that thread allocates; a
		 * folded one (thread 0, key_slow) is many threads', but its
		 * MEM/OBJ events are serialised as every MEM/OBJ event is */
		PLAIN_ADD(k->allocs, cnt);
		PLAIN_ADD(k->alloc_bytes, size);
	} else {
		__atomic_add_fetch(&k->allocs, cnt, __ATOMIC_RELAXED);
		__atomic_add_fetch(&k->alloc_bytes, size, __ATOMIC_RELAXED);
	}
	if (gil) {
		PLAIN_ADD(h->live_gil, size);
		PLAIN_ADD(h->count_gil, cnt);
		live = h->live_gil +
		       __atomic_load_n(&h->live_nat, __ATOMIC_RELAXED);
		peak_check(h, live);
		if (lock)
			ma_spin_unlock(&t->lock);
	} else {
		live = __atomic_add_fetch(&h->live_nat, size, __ATOMIC_RELAXED);
		__atomic_add_fetch(&h->count_nat, cnt, __ATOMIC_RELAXED);
		live += __atomic_load_n(&h->live_gil, __ATOMIC_RELAXED);
		peak_check(h, live);
	}
}

void ma_agg_free(struct ma_session *s, struct ma_slot *sl, uint32_t th,
		 uint64_t p, int gil, int serial)
{
	struct ma_agg *a = s->agg;
	int shift, lock = !gil || !serial, hit = 0;
	struct live_tab *t = tab_of(a, p, gil, &shift);
	struct live_ent got = { 0 };

	if (!p)
		return;
	if (lock)
		ma_spin_lock(&t->lock);
	if (gil && young_take(a, p, &got))
		hit = 1;
	else if ((hit = live_remove(t, shift, p, &got)))
		large_left(a, le_unpack(&got).size, gil);
	if (lock && !gil)
		ma_spin_unlock(&t->lock);
	if (!hit) {
		if (lock && gil)
			ma_spin_unlock(&t->lock);
		/* sampled: a block the filter took for a sampled one */
		if (!a->sample)
			__atomic_add_fetch(&a->h->unknown_frees, 1,
					   __ATOMIC_RELAXED);
		return;
	}
	struct blk b = le_unpack(&got);

	if (a->sample) {
		ma_samp_filter_del(p);
		key_free(a, b.key, b.size, b.seq, gil, 0, 0);
		if (lock && gil)
			ma_spin_unlock(&t->lock);
		return;
	}
	/* allocations of this thread since the block's, minus one (the
	 * counts are kept modulo 2^24) */
	uint32_t d = ((uint32_t)sl->allocs - b.seq - 1) & LE_SEQ_MASK;

	key_free(a, b.key, b.size, 1, gil, a->keys[b.key].thread == th && th,
		 d);
	if (lock && gil)
		ma_spin_unlock(&t->lock);
}

/* ------------------------------------------------------------------ */
/* Setup */

/* The setup's tables, taken from the session's parts (ma_parts) */
size_t ma_agg_bytes(void)
{
	return ma_page_round(sizeof(struct ma_agg)) +
	       ma_page_round(sizeof(struct kidx_ent) << KIDX_BITS) +
	       ma_page_round(sizeof(struct live_ent) << GIL_BITS0) +
	       ma_page_round((sizeof(struct live_ent) << NAT_BITS0) * SHARDS);
}

int ma_agg_setup(struct ma_session *s, void *area, char *msg, size_t len)
{
	struct ma_agg *a = ma_parts_take(&s->parts, sizeof(*a));
	struct ma_agg_hdr *h = area;
	struct live_ent *gil0, *nat0;

	if (!a)
		goto nomem;
	s->agg = a;
	a->h = h;
	a->sample = !!(s->cfg.flags & MA_TRACK_SAMPLE);
	a->keys = ma_agg_keys(h);
	a->kidx =
		ma_parts_take(&s->parts, sizeof(struct kidx_ent) << KIDX_BITS);
	a->ybits = YOUNG_BITS0;
	a->ybits_max = YOUNG_BITS_MAX;
	a->young = a->young0;
	if (!a->kidx)
		goto nomem;
	gil0 = ma_parts_take(&s->parts, sizeof(struct live_ent) << GIL_BITS0);
	if (!gil0)
		goto nomem;
	a->gil.h = h;
	live_init(&a->gil, gil0, GIL_BITS0);
	/* the shards' first tables together, a page each (each is unmapped
	 * on its own when it grows) */
	_Static_assert((sizeof(struct live_ent) << NAT_BITS0) % 4096 == 0,
		       "a shard's first table is whole pages");
	nat0 = ma_parts_take(&s->parts,
			     (sizeof(struct live_ent) << NAT_BITS0) * SHARDS);
	if (!nat0)
		goto nomem;
	for (int i = 0; i < SHARDS; i++) {
		a->nat[i].h = h;
		live_init(&a->nat[i], nat0 + ((size_t)i << NAT_BITS0),
			  NAT_BITS0);
	}
	/* the first tables, unmapped one by one when they grow */
	h->tab_bytes = (sizeof(struct live_ent) << GIL_BITS0) +
		       (sizeof(struct live_ent) << NAT_BITS0) * SHARDS;
	h->magic = MA_AGG_MAGIC;
	h->version = MA_AGG_VERSION;
	h->hdr_size = MA_AGG_HDR_SIZE;
	h->key_cap = MA_AGG_KEYS;
	h->key_size = sizeof(struct ma_agg_key);
	/* key 0: events no new key could be made for */
	a->keys[0].ready = 1;
	h->nkeys = 1;
	return 0;
nomem:
	ma_agg_release(s);
	ma_fmt(msg, len, "no memory for the aggregation tables");
	return -ENOMEM;
}

void ma_agg_release(struct ma_session *s)
{
	struct ma_agg *a = s->agg;

	if (!a)
		return;
	s->agg = NULL;
	if (a->kidx)
		ma_unmap(a->kidx, sizeof(struct kidx_ent) << KIDX_BITS);
	if (a->young && a->young != a->young0)
		ma_unmap(a->young, sizeof(struct live_ent) << a->ybits);
	live_unmap(&a->gil);
	for (int i = 0; i < SHARDS; i++)
		live_unmap(&a->nat[i]);
	ma_unmap(a, sizeof(*a));
}
