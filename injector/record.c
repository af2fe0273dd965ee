/* SPDX-License-Identifier: MIT */
/*
 * Per-thread slots and the records of events.
 *
 * A recording section (everything that touches a session: ring, tables) is
 * bracketed by the slot's `active` flag, Dekker style against the stopper:
 *
 *   thread:  active = 1;  if (!enabled) leave;  s = ma_sess; ...; active = 0
 *   stopper: enabled = 0; full barrier on every thread; wait for each slot
 *            to be seen with active == 0 once; then free the session.
 *
 * A thread either saw enabled == 0 (and never touches the session), or its
 * active = 1 is visible to the stopper, which then waits for it.  The full
 * barrier on the threads' side would cost an mfence (xchg) per event; with
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) the stopper forces it on
 * every running thread instead, and the hot path needs only a compiler
 * barrier.  Without membarrier the hot path uses a seq_cst store.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "internal.h"

__thread struct ma_tls ma_tls __attribute__((tls_model("initial-exec")));

static uint8_t *slots;
static uint32_t slot_hint;
static uint32_t slot_hw; /* slots ever used: [0, slot_hw) */
static pthread_key_t slot_key;
static int slot_key_ok;

static inline struct ma_slot *slot_at(uint32_t i)
{
	return (struct ma_slot *)(slots + (size_t)i * MA_SLOT_SIZE);
}

/* pthread key destructor: the thread is ending.  The search for a free
 * slot starts at the lowest one released: a process that starts a thread
 * per request keeps reusing its first few slots (about 40 KiB each), where
 * a search that went round all MA_MAX_SLOTS touched every one of them (a
 * thread-per-iteration target grew by 36 MB in 3 s, and kept 14.5 MB after
 * the detach) */
static void slot_release(void *arg)
{
	struct ma_slot *sl = arg;
	uint32_t i = (uint32_t)(((uint8_t *)sl - slots) / MA_SLOT_SIZE);
	uint32_t h = __atomic_load_n(&slot_hint, __ATOMIC_RELAXED);

	ma_tls.slot = MA_SLOT_DEAD;
	sl->thread = 0;
	sl->depth = 0;
	__atomic_store_n(&sl->active, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&sl->used, 0, __ATOMIC_RELEASE);
	while (i < h &&
	       !__atomic_compare_exchange_n(&slot_hint, &h, i, 0,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

size_t ma_slots_bytes(void)
{
	return (size_t)MA_MAX_SLOTS * MA_SLOT_SIZE;
}

int ma_slots_init(struct ma_parts *parts)
{
	if (slots)
		return 0;
	slots = ma_parts_take(parts, ma_slots_bytes());
	if (!slots)
		return -ENOMEM;
	slot_key_ok = pthread_key_create(&slot_key, slot_release) == 0;
	return 0;
}

struct ma_slot *ma_slot_get_slow(struct ma_tls *t)
{
	if (t->slot == MA_SLOT_DEAD || !slots)
		return NULL;
	uint32_t start = __atomic_load_n(&slot_hint, __ATOMIC_RELAXED);

	for (uint32_t n = 0; n < MA_MAX_SLOTS; n++) {
		uint32_t i = (start + n) % MA_MAX_SLOTS;
		struct ma_slot *sl = slot_at(i);
		uint32_t zero = 0;

		if (__atomic_load_n(&sl->used, __ATOMIC_RELAXED) ||
		    !__atomic_compare_exchange_n(&sl->used, &zero, 1, 0,
						 __ATOMIC_ACQUIRE,
						 __ATOMIC_RELAXED))
			continue;
		/* a new thread: same session counters, new identity */
		sl->thread = 0;
		sl->depth = 0;
		__atomic_store_n(&sl->active, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&slot_hint, i + 1, __ATOMIC_RELAXED);
		uint32_t hw = __atomic_load_n(&slot_hw, __ATOMIC_RELAXED);

		while (i + 1 > hw &&
		       !__atomic_compare_exchange_n(&slot_hw, &hw, i + 1, 0,
						    __ATOMIC_RELEASE,
						    __ATOMIC_RELAXED))
			;
		t->slot = sl;
		if (slot_key_ok)
			pthread_setspecific(slot_key, sl);
		return sl;
	}
	return NULL;
}

void ma_slots_reset_except(struct ma_slot *keep)
{
	for (uint32_t i = 0; slots && i < slot_hw; i++) {
		struct ma_slot *sl = slot_at(i);

		sl->active = 0;
		if (sl != keep) {
			sl->used = 0;
			sl->thread = 0;
			sl->depth = 0;
		}
	}
}

int ma_slots_quiesce(uint64_t timeout_ns)
{
	uint64_t deadline = ma_ring_now_ns() + timeout_ns;
	uint32_t hw = __atomic_load_n(&slot_hw, __ATOMIC_ACQUIRE);

	for (uint32_t i = 0; slots && i < hw; i++) {
		struct ma_slot *sl = slot_at(i);

		while (__atomic_load_n(&sl->active, __ATOMIC_ACQUIRE)) {
			if (ma_ring_now_ns() > deadline)
				return -ETIMEDOUT;
			ma_sleep_ns(100000);
		}
	}
	return 0;
}

void ma_slots_sum(uint32_t gen, struct ma_rec_stats *st)
{
	uint32_t hw = __atomic_load_n(&slot_hw, __ATOMIC_ACQUIRE);

	for (uint32_t i = 0; slots && i < hw; i++) {
		struct ma_slot *sl = slot_at(i);

		if (__atomic_load_n(&sl->gen, __ATOMIC_ACQUIRE) != gen)
			continue;
		st->allocs += __atomic_load_n(&sl->allocs, __ATOMIC_RELAXED);
		st->frees += __atomic_load_n(&sl->frees, __ATOMIC_RELAXED);
		st->stack_truncated +=
			__atomic_load_n(&sl->truncated, __ATOMIC_RELAXED);
		st->node_table_full +=
			__atomic_load_n(&sl->table_full, __ATOMIC_RELAXED);
	}
}

uint64_t ma_slots_records(uint32_t gen)
{
	uint32_t hw = __atomic_load_n(&slot_hw, __ATOMIC_ACQUIRE);
	uint64_t n = 0;

	for (uint32_t i = 0; slots && i < hw; i++) {
		struct ma_slot *sl = slot_at(i);

		if (__atomic_load_n(&sl->gen, __ATOMIC_ACQUIRE) != gen)
			continue;
		n += __atomic_load_n(&sl->allocs, __ATOMIC_RELAXED) +
		     __atomic_load_n(&sl->frees, __ATOMIC_RELAXED) +
		     __atomic_load_n(&sl->defs, __ATOMIC_RELAXED) -
		     __atomic_load_n(&sl->dropped, __ATOMIC_RELAXED);
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* Sections */

static inline void section_enter(struct ma_slot *sl)
{
	if (ma_likely(__atomic_load_n(&ma_asym_fence, __ATOMIC_RELAXED))) {
		__atomic_store_n(&sl->active, 1, __ATOMIC_RELAXED);
		/* the compiler must not hoist the enabled load above the
		 * store; the CPU side is the stopper's membarrier() */
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
	} else {
		__atomic_store_n(&sl->active, 1, __ATOMIC_SEQ_CST);
	}
}

static inline struct ma_session *section_session(void)
{
	if (!__atomic_load_n(&ma_enabled, __ATOMIC_SEQ_CST))
		return NULL;
	return __atomic_load_n(&ma_sess, __ATOMIC_ACQUIRE);
}

static inline void section_leave(struct ma_slot *sl)
{
	__atomic_store_n(&sl->active, 0, __ATOMIC_RELEASE);
}

/* Enter this thread's recording section: the session to record in, or NULL.
 * *slp is the slot, or NULL when the thread has none (then there is no
 * section to leave). */
static inline struct ma_session *rec_begin(struct ma_tls *t,
					   struct ma_slot **slp)
{
	struct ma_slot *sl = ma_slot_get(t);

	*slp = sl;
	if (ma_unlikely(!sl))
		return NULL;
	section_enter(sl);
	return section_session();
}

static inline void rec_end(struct ma_slot *sl)
{
	if (ma_likely(sl != NULL))
		section_leave(sl);
}

/* First event of this slot in session s: its counters start over */
static void slot_adopt(struct ma_slot *sl, struct ma_session *s)
{
	sl->thread = 0;
	sl->depth = 0;
	__atomic_store_n(&sl->allocs, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->frees, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->defs, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->dropped, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->truncated, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->table_full, 0, __ATOMIC_RELAXED);
	/* node ids of another session */
	memset(sl->memo, 0, sizeof(sl->memo));
	memset(sl->kmemo, 0, sizeof(sl->kmemo));
	ma_slot_sites_reset(sl);
	__atomic_store_n(&sl->gen, s->gen, __ATOMIC_RELEASE);
}

/* The THREAD record defining this thread's index; 0 when it was dropped
 * (the next event tries again; events meanwhile carry thread 0).  In an
 * aggregated session, past MA_AGG_OWN_THREADS threads: no record, and
 * MA_THREAD_FOLDED (a thread per request would otherwise make a record per
 * thread, filling the ring's pages, and a row per thread in every report) */
static uint32_t thread_define(struct ma_session *s, struct ma_slot *sl)
{
	struct ma_rec_thread *r;
	uint32_t idx;

	if (s->agg && __atomic_load_n(&s->next_thread, __ATOMIC_RELAXED) >=
			      MA_AGG_OWN_THREADS) {
		sl->thread = MA_THREAD_FOLDED;
		return sl->thread;
	}
	r = ma_ring_reserve(&s->ring, sizeof(*r));
	if (!r)
		return 0;
	idx = __atomic_add_fetch(&s->next_thread, 1, __ATOMIC_RELAXED);
	r->h.thread = idx;
	r->tid = ma_gettid();
	r->_pad = 0;
	r->pthread = (uint64_t)pthread_self();
	memset(r->name, 0, sizeof(r->name));
	prctl(PR_GET_NAME, r->name, 0, 0, 0);
	r->name[sizeof(r->name) - 1] = '\0';
	ma_ring_commit(r, MA_REC_THREAD, sizeof(*r));
	MA_CTR_INC(sl->defs);
	sl->thread = idx;
	return idx;
}

static inline uint32_t thread_of(struct ma_session *s, struct ma_slot *sl)
{
	if (ma_unlikely(sl->gen != s->gen))
		slot_adopt(sl, s);
	if (ma_likely(sl->thread != 0))
		return sl->thread;
	return thread_define(s, sl);
}

static void put_alloc(struct ma_session *s, struct ma_slot *sl, uint32_t th,
		      uint64_t p, uint64_t size, uint32_t node, int kind)
{
	struct ma_rec_alloc *r = ma_ring_reserve(&s->ring, sizeof(*r));

	if (ma_likely(r != NULL)) {
		r->h.thread = th;
		r->ptr = p;
		r->size = size;
		r->node = node;
		r->kind = (uint8_t)kind;
		r->_pad[0] = r->_pad[1] = r->_pad[2] = 0;
		ma_ring_commit(r, MA_REC_ALLOC, sizeof(*r));
	} else if (sl) {
		MA_CTR_INC(sl->dropped);
	}
}

static void put_free(struct ma_session *s, struct ma_slot *sl, uint32_t th,
		     uint64_t p, uint64_t size, int kind)
{
	struct ma_rec_free *r = ma_ring_reserve(&s->ring, sizeof(*r));

	if (ma_likely(r != NULL)) {
		r->h.thread = th;
		r->ptr = p;
		r->size = size;
		r->kind = (uint8_t)kind;
		memset(r->_pad, 0, sizeof(r->_pad));
		ma_ring_commit(r, MA_REC_FREE, sizeof(*r));
	} else if (sl) {
		MA_CTR_INC(sl->dropped);
	}
}

void ma_rec_alloc(struct ma_tls *t, const void *p, size_t size, int kind)
{
	struct ma_slot *sl;
	struct ma_session *s = rec_begin(t, &sl);

	if (ma_likely(s != NULL)) {
		uint32_t th = thread_of(s, sl);
		uint32_t node = s->minor ? ma_stack_node(s, sl) : 0;

		if (s->agg && kind != MA_KIND_MMAP)
			ma_agg_alloc(s, sl, th, (uintptr_t)p, size, node, kind,
				     0, 0);
		else
			put_alloc(s, sl, th, (uintptr_t)p, size, node, kind);
		MA_CTR_INC(sl->allocs);
	}
	rec_end(sl);
}

void ma_rec_free(struct ma_tls *t, const void *p, size_t size, int kind)
{
	struct ma_slot *sl;
	struct ma_session *s = rec_begin(t, &sl);

	if (ma_likely(s != NULL)) {
		if (s->agg && kind != MA_KIND_MMAP)
			ma_agg_free(s, sl, thread_of(s, sl), (uintptr_t)p, 0,
				    0);
		else
			put_free(s, sl, thread_of(s, sl), (uintptr_t)p, size,
				 kind);
		MA_CTR_INC(sl->frees);
	}
	rec_end(sl);
}

/* ------------------------------------------------------------------ */
/* Short-lived blocks of the Python domains
 *
 * Most objects a Python program creates die within a few allocations of
 * their birth (temporaries, loop variables, intermediate results).  Their
 * ALLOC and FREE records were three quarters of the tracking cost on an
 * allocation-heavy loop (docs/performance.md).  So a small block (at most
 * MA_GW_MAX bytes) of the MEM or OBJ domain waits in s->gw, hashed by its
 * address, with its stack already resolved.  Freed by its own thread after
 * at most MA_TEMP_DMAX further allocations of that thread, it only adds
 * one to a count in s->gp for (thread, stack, size, kind, that distance),
 * published as one TEMP record and replayed by the consumer as ALLOC +
 * FREE pairs whose address tells the distance.
 *
 * Every other block is published as a normal ALLOC, and never out of
 * place for the temporary view: either right away (when both its table
 * entries hold blocks younger than MA_TEMP_DMAX allocations of their
 * threads), or once it is older than that (flagged MA_KIND_LATE: it cannot
 * be temporary any more), when its entry is needed, at the watchdog's
 * flush request (every 100 ms), when it is freed too late or by another
 * thread, or at the stop.
 *
 * What this keeps exact: every allocation's count, size, thread and stack;
 * which blocks are temporary for any window up to MA_TEMP_DMAX (reports
 * default to 1); what is live, except blocks younger than MA_TEMP_DMAX
 * allocations of their thread (at most MA_GW_SLOTS blocks, 32 KiB).  What
 * it moves: a waiting ALLOC reaches the ring after events that followed
 * it, and a TEMP pair after its real moment; so the peak may miss up to
 * 32 KiB.
 *
 * Why no lock: CPython calls the MEM and OBJ domains only with the GIL
 * held, and one GIL serialises all of them up to 3.11; from 3.12 an
 * interpreter may have a GIL of its own, so this is used only while one
 * interpreter exists (gil_serial 2, checked at every event).  Order: a
 * block waiting here can only be freed through these domains (freeing a
 * PyObject_Malloc block with free() is undefined behaviour in CPython
 * already), so its FREE always finds it, and a block never appears in the
 * ring before its ALLOC.  A block published as a TEMP pair never appears
 * in the ring at its real address at all.
 */

static inline int gil_serial(const struct ma_session *s)
{
	if (ma_likely(s->gil_serial == 1))
		return 1;
	if (s->gil_serial != 2)
		return 0;
	uintptr_t head = *(const uintptr_t *)s->interp_head;

	return head && !*(const uintptr_t *)(head + (intptr_t)s->interp_next);
}

/* Both tables are two-way: an entry may sit at the even index its key hashes
 * to or at the odd one after it */
static inline uint32_t gw_slot(uint64_t p)
{
	return (uint32_t)((p * 0x9e3779b97f4a7c15ull) >> 48) &
	       (MA_GW_SLOTS - 2);
}

/* Allocations of its thread since the block's */
static inline uint32_t gw_age(const struct ma_gw_ent *e)
{
	return (uint32_t)__atomic_load_n(&e->owner->allocs, __ATOMIC_RELAXED) -
	       e->seq;
}

static void put_temp(struct ma_session *s, struct ma_slot *sl,
		     const struct ma_gp_ent *g)
{
	struct ma_rec_temp *r = ma_ring_reserve(&s->ring, sizeof(*r));

	/* counted here, not at each free: the count is only read by the
	 * watchdog, and is exact once everything waiting was published */
	__atomic_store_n(&s->g_elided, s->g_elided + 2 * g->count,
			 __ATOMIC_RELAXED);
	if (ma_likely(r != NULL)) {
		r->h.thread = g->k2.thread;
		r->node = g->k1.node;
		r->kind = g->k2.kind;
		r->dist = g->k2.dist;
		r->_pad[0] = r->_pad[1] = 0;
		r->size = g->k1.size;
		r->count = g->count;
		ma_ring_commit(r, MA_REC_TEMP, sizeof(*r));
		__atomic_store_n(&s->g_temps, s->g_temps + 1, __ATOMIC_RELAXED);
	} else if (sl) {
		MA_CTR_INC(sl->dropped);
	}
}

/* A waiting block's ALLOC, now: flagged late when it is */
static void gw_publish(struct ma_session *s, struct ma_slot *sl,
		       struct ma_gw_ent *e)
{
	unsigned kind = e->k2.kind;

	if (gw_age(e) > MA_TEMP_DMAX)
		kind |= MA_KIND_LATE;
	put_alloc(s, sl, e->k2.thread, e->ptr, e->k1.size, e->k1.node,
		  (int)kind);
	e->ptr = 0;
}

static void gil_flush(struct ma_session *s, struct ma_slot *sl, int all)
{
	for (uint32_t i = 0; i < MA_GW_SLOTS; i++) {
		struct ma_gw_ent *e = &s->gw[i];

		/* a young block stays: it may still turn out temporary */
		if (e->ptr && (all || gw_age(e) > MA_TEMP_DMAX))
			gw_publish(s, sl, e);
	}
	for (uint32_t i = 0; i < MA_GP_SLOTS; i++) {
		struct ma_gp_ent *g = &s->gp[i];

		if (g->count) {
			put_temp(s, sl, g);
			g->count = 0;
		}
	}
}

void ma_rec_gil_flush(struct ma_session *s)
{
	gil_flush(s, NULL, 1);
}

static inline void gil_flush_if_asked(struct ma_session *s, struct ma_slot *sl)
{
	if (ma_unlikely(__atomic_load_n(&s->gflush, __ATOMIC_RELAXED))) {
		__atomic_store_n(&s->gflush, 0, __ATOMIC_RELAXED);
		gil_flush(s, sl, 0);
	}
}

/* A 16-bit hash of a block's key (stack, size, thread, kind) */
static inline uint16_t gh_of(uint64_t k1, uint64_t k2)
{
	uint64_t x = k1 * 0x9e3779b97f4a7c15ull;

	x = (x ^ k2) * 0xc2b2ae3d27d4eb4full;
	return (uint16_t)(x >> 48);
}

void ma_rec_alloc_gil(struct ma_tls *t, const void *p, size_t size, int kind)
{
	struct ma_slot *sl;
	struct ma_session *s = rec_begin(t, &sl);

	if (ma_likely(s != NULL)) {
		uint32_t th, node;
		struct ma_gw_ent *e = NULL;
		int serial = 0;

		if (s->agg) {
			serial = gil_serial(s);
			/* it reads the young table, which only the GIL guards
			 * when serial (else a lock, and a grow may unmap it) */
			if (serial)
				ma_agg_prefetch(s, (uintptr_t)p, size);
		}
		th = thread_of(s, sl);
		node = s->minor ? ma_stack_node_gil(s, sl) : 0;
		if (s->agg) {
			ma_agg_alloc(s, sl, th, (uintptr_t)p, size, node, kind,
				     1, serial);
		} else if (size <= MA_GW_MAX && gil_serial(s)) {
			e = &s->gw[gw_slot((uintptr_t)p)];
			gil_flush_if_asked(s, sl);
			/* one branch for both ways, the way itself taken as
			 * data: which way a block lands in is random (measured
			 * on churn: neither faster nor slower than a branch
			 * per way) */
			if (ma_unlikely((e->ptr != 0) & (e[1].ptr != 0))) {
				/* both taken: the older goes if it cannot be
				 * temporary any more, else this one is not
				 * kept */
				struct ma_gw_ent *o =
					gw_age(e) >= gw_age(&e[1]) ? e : &e[1];

				if (gw_age(o) > MA_TEMP_DMAX)
					gw_publish(s, sl, o);
				e = o->ptr ? NULL : o;
			} else {
				e += e->ptr != 0;
			}
		}
		if (e) {
			/* the keys are built in registers and stored whole:
			 * reading back a word just stored as two halves
			 * stalls the load until both stores leave the store
			 * buffer (a free a few events later reads it) */
			union ma_gkey1 k1 = { .node = node,
					      .size = (uint32_t)size };
			union ma_gkey2 k2 = { .kind = (uint8_t)kind,
					      .thread = th };

			e->ptr = (uintptr_t)p;
			e->owner = sl;
			e->k1.w = k1.w;
			e->k2.w = k2.w;
			e->gh = gh_of(k1.w, k2.w);
			e->seq = (uint32_t)sl->allocs;
		} else if (!s->agg) {
			put_alloc(s, sl, th, (uintptr_t)p, size, node, kind);
		}
		MA_CTR_INC(sl->allocs);
	}
	rec_end(sl);
}

static inline uint32_t gp_slot(const struct ma_gw_ent *e, uint32_t dist)
{
	return (uint32_t)(e->gh ^ (dist * 0x9e37u)) & (MA_GP_SLOTS - 2);
}

/* A key not in its two ways: into an empty one, or in place of the older */
static __attribute__((noinline)) void gp_insert(struct ma_session *s,
						struct ma_slot *sl,
						struct ma_gp_ent *g,
						uint64_t k1, uint64_t k2)
{
	if (g->count) {
		if (g[1].count) {
			put_temp(s, sl, g);
			g[0] = g[1];
		}
		g++;
	}
	g->k1.w = k1;
	g->k2.w = k2;
	g->count = 1;
}

/*
 * One more short-lived block like e, freed `dist` allocations later.  An
 * entry whose key matches is counted in whatever its count (an emptied
 * entry keeps its key: counting from 0 makes it that key's again), and
 * the two ways are compared without a branch each (see ma_rec_alloc_gil).
 */
static inline void gp_count(struct ma_session *s, struct ma_slot *sl,
			    const struct ma_gw_ent *e, uint32_t dist)
{
	struct ma_gp_ent *g = &s->gp[gp_slot(e, dist)];
	uint64_t k1 = e->k1.w, k2 = e->k2.w | dist;
	uint64_t d0 = (g[0].k1.w ^ k1) | (g[0].k2.w ^ k2);
	uint64_t d1 = (g[1].k1.w ^ k1) | (g[1].k2.w ^ k2);

	if (ma_likely((d0 == 0) | (d1 == 0)))
		g[d0 != 0].count++;
	else
		gp_insert(s, sl, g, k1, k2);
}

void ma_rec_free_gil(struct ma_tls *t, const void *p, int kind)
{
	struct ma_slot *sl;
	struct ma_session *s = rec_begin(t, &sl);

	if (ma_likely(s != NULL) && s->agg) {
		ma_agg_free(s, sl, thread_of(s, sl), (uintptr_t)p, 1,
			    gil_serial(s));
		MA_CTR_INC(sl->frees);
	} else if (ma_likely(s != NULL)) {
		struct ma_gw_ent *e = &s->gw[gw_slot((uintptr_t)p)];

		if (ma_unlikely(sl->gen != s->gen))
			slot_adopt(sl, s);
		e += e->ptr != (uintptr_t)p;
		if (e->ptr == (uintptr_t)p && gil_serial(s)) {
			/* further allocations of its thread since */
			uint32_t dist = (uint32_t)sl->allocs - e->seq - 1;

			if (e->owner == sl && dist <= MA_TEMP_DMAX) {
				gp_count(s, sl, e, dist);
				e->ptr = 0;
			} else {
				gw_publish(s, sl, e);
				put_free(s, sl, thread_of(s, sl), (uintptr_t)p,
					 0, kind);
			}
		} else {
			uint64_t want = (uintptr_t)p;

			/* a block left waiting when a second interpreter
			 * turned the tables off: its ALLOC goes first */
			if (ma_unlikely(e->ptr == want) &&
			    __atomic_compare_exchange_n(&e->ptr, &want, 0, 0,
							__ATOMIC_RELAXED,
							__ATOMIC_RELAXED))
				put_alloc(s, sl, e->k2.thread, want, e->k1.size,
					  e->k1.node,
					  e->k2.kind | MA_KIND_LATE);
			put_free(s, sl, thread_of(s, sl), (uintptr_t)p, 0,
				 kind);
		}
		MA_CTR_INC(sl->frees);
	}
	rec_end(sl);
}

void ma_rec_fork(struct ma_tls *t, pid_t child_pid)
{
	struct ma_slot *sl;
	struct ma_session *s;

	t->guard++;
	sl = ma_slot_get(t);
	if (sl) {
		section_enter(sl);
		s = section_session();
		if (s) {
			uint32_t th = thread_of(s, sl);
			struct ma_rec_fork *r =
				ma_ring_reserve(&s->ring, sizeof(*r));

			if (r) {
				r->h.thread = th;
				r->child_pid = child_pid;
				r->_pad = 0;
				ma_ring_commit(r, MA_REC_FORK, sizeof(*r));
				MA_CTR_INC(sl->defs);
			}
		}
		section_leave(sl);
	}
	t->guard--;
}
