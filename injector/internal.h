/* SPDX-License-Identifier: MIT */
/*
 * The payload's internals, shared by its files (docs/payload.md tells the
 * whole story).
 *
 * Rules every file follows, because this code runs inside a process we do
 * not own, often inside its malloc: no malloc, no stdio, no abort/exit, no
 * printing; memory comes from mmap; errno is preserved by every hook; every
 * hook has a recursion guard; nothing here ever waits without a bound,
 * except the watchdog thread, which is ours.
 */
#ifndef MA_INTERNAL_H
#define MA_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/ma_agg.h"
#include "../common/ma_config.h"
#include "../common/ma_pyver.h"
#include "../common/ma_record.h"
#include "../common/ma_sample.h"
#include "../common/ma_ring_io.h"

#define ma_likely(x)   __builtin_expect(!!(x), 1)
#define ma_unlikely(x) __builtin_expect(!!(x), 0)

/*
 * errno as the real function left it is what the caller must see: taken
 * after the call, put back only when recording changed it (one store less
 * on the hot path, where stores queue behind the ring's).
 */
#define MA_ERRNO_SAVE(v) int *v##_p = ma_errno_loc(), v = *v##_p
#define MA_ERRNO_RESTORE(v)                                                    \
	do {                                                                   \
		if (*v##_p != v)                                               \
			*v##_p = v;                                            \
	} while (0)

/* ------------------------------------------------------------------ */
/* Per-thread state */

/*
 * Kept tiny (< 64 bytes) and initial-exec: the payload is dlopen'ed into a
 * running process, and global-dynamic TLS would make the first access from
 * each thread call __tls_get_addr, which allocates, from inside our malloc
 * hook.  Initial-exec uses glibc's surplus static TLS instead.
 */
struct ma_tls {
	int guard;   /* > 0: inside a hook or our own code: pass through */
	int in_fork; /* inside our fork hook: it logs the fork itself */
	struct ma_slot *slot; /* NULL: none yet; MA_SLOT_DEAD: thread ends */
	int *errp; /* &errno of this thread: no __errno_location() call per
		      event */
	/* sampled tracking (sample.c): bytes left before the next sample,
	 * valid while sgen is the current ma_samp_hot.gen; the thread's own
	 * xorshift state (0: not seeded yet) */
	int64_t left;
	uint64_t rng;
	uint32_t sgen;
};

extern __thread struct ma_tls ma_tls __attribute__((tls_model("initial-exec")));

static inline int *ma_errno_loc(void)
{
	struct ma_tls *t = &ma_tls;

	if (__builtin_expect(!t->errp, 0))
		t->errp = &errno;
	return t->errp;
}

#define MA_SLOT_DEAD ((struct ma_slot *)1)

struct ma_code_ent {
	uint64_t addr, name_p, file_p;
	int32_t firstlineno;
	uint32_t id; /* 0: empty; release-stored after the CODE record */
};

struct ma_node_ent {
	uint32_t parent, code;
	int32_t addr;
	uint32_t id; /* 0: empty; release-stored after the NODE record */
};

/* The payload's DT_SONAME, every build's (injector/CMakeLists.txt names
 * the library so): how a payload tells another build's copy loaded beside
 * it from the program's own libraries (got.c) */
#define MA_PAYLOAD_SONAME "memattach_payload.so"

#define MA_MEMO	 16 /* per-thread node memo entries, a power of two */
#define MA_KMEMO 64 /* per-thread aggregation key memo (agg.c) */

struct ma_kmemo {
	uint64_t k; /* (thread, kind, node) as one word; 0: empty */
	uint32_t idx;
	uint32_t _pad;
};
#define MA_SITES 16 /* per-thread innermost-frame sites, a power of two */

struct ma_site_ent {
	uint64_t ip;   /* raw instruction word of the innermost frame */
	uint64_t code; /* its code object (up to 3.10, where ip is f_lasti) */
	uint32_t gen;  /* site_gen when made */
	uint32_t node;
};

/*
 * Everything else a thread needs lives in its slot, in a table mapped once
 * and kept for the payload's life (a second session reuses it).  A slot is
 * taken on a thread's first event and given back by a pthread key destructor
 * at thread exit.
 */
struct ma_frame_ent {
	uint64_t frame; /* frame address */
	uint64_t code;	/* code object address */
	uint64_t ip;	/* raw instruction word: pointer (3.11+), f_lasti */
	int32_t addr;	/* instruction byte offset */
	uint32_t code_id;
	uint32_t node; /* trie node of the stack down to this frame */
	uint32_t _pad;
};

struct ma_slot {
	/* 1 while the thread is in a recording section (see ma_section_*) */
	uint32_t active;
	uint32_t used;	 /* taken by a live thread */
	uint32_t gen;	 /* session generation the fields below belong to */
	uint32_t thread; /* thread index in that session, 0: not defined yet */
	uint32_t depth;	 /* valid entries of the stack cache */
	uint32_t _pad;
	/* counters of this slot in session gen (summed by the stopper):
	 * events seen, definition records written, events dropped (ring
	 * full), stacks cut, stacks shortened (table full) */
	uint64_t allocs, frees, defs, dropped, truncated, table_full;
	/* recent (parent, code, addr) -> node lookups of this thread: the
	 * innermost frame of an allocation-heavy loop cycles among a few
	 * allocation sites, and this is cheaper than the shared table */
	struct ma_node_ent memo[MA_MEMO];
	/* the raw frame chain of the last stack walk (pystack.c): raw_n
	 * frames, kept ones and skipped ones, valid while raw_depth equals
	 * depth */
	uint32_t raw_n, raw_depth;
	uint8_t raw_top_kept; /* raw[0] is the innermost kept frame */
	uint8_t raw_trunc;    /* the walk stopped at max_frames */
	uint8_t _pad2[2];
	/* the innermost frame's recent instructions under the chain of
	 * callers checked by the quick check: their nodes, by instruction
	 * word.  An entry holds while site_gen is the one it was made in:
	 * every full walk and every new session starts a generation. */
	uint32_t site_gen;
	struct ma_site_ent site[MA_SITES];
	/* recent aggregation keys of this thread (agg.c), this session's */
	struct ma_kmemo kmemo[MA_KMEMO];
	/* then: struct ma_frame_ent cache[MA_MAX_FRAMES], scratch[...];
	 * struct ma_raw_ent raw[MA_RAW_MAX] */
};

/* One frame of a thread's chain as last seen: its address, the link to its
 * caller and its raw instruction word */
struct ma_raw_ent {
	uint64_t frame, prev, ip;
};

#define MA_MAX_FRAMES	  MA_CONFIG_MAX_FRAMES /* cap of cfg.max_frames */
#define MA_DEFAULT_FRAMES 128
#define MA_MAX_SLOTS	  1024
/* Aggregated tracking keeps a thread's figures apart for the first
 * MA_AGG_OWN_THREADS threads of a session; a later thread has no THREAD
 * record and the index MA_THREAD_FOLDED, and its keys are thread 0's, the
 * report's "(other threads)" (agg.c, key_slow; record.c, thread_define) */
#define MA_AGG_OWN_THREADS 1024
#define MA_THREAD_FOLDED   UINT32_MAX

/* Forget the slot's innermost-frame sites: a new generation.  Generation 0
 * is never current (fresh entries hold it), and when the counter wraps
 * every entry goes back to 0, so that none made 2^32 generations ago
 * holds again */
static inline void ma_slot_sites_reset(struct ma_slot *s)
{
	if (__builtin_expect(++s->site_gen == 0, 0)) {
		s->site_gen = 1;
		for (unsigned i = 0; i < MA_SITES; i++)
			s->site[i].gen = 0;
	}
}

static inline struct ma_frame_ent *ma_slot_cache(struct ma_slot *s)
{
	return (struct ma_frame_ent *)(s + 1);
}

static inline struct ma_frame_ent *ma_slot_scratch(struct ma_slot *s)
{
	return ma_slot_cache(s) + MA_MAX_FRAMES;
}

/* frames walked at most: shims are not counted as frames, allow one per
 * frame */
#define MA_RAW_MAX (2 * MA_MAX_FRAMES + 8)

static inline struct ma_raw_ent *ma_slot_raw(struct ma_slot *s)
{
	return (struct ma_raw_ent *)(ma_slot_scratch(s) + MA_MAX_FRAMES);
}

#define MA_SLOT_SIZE                                                           \
	(sizeof(struct ma_slot) +                                              \
	 2 * MA_MAX_FRAMES * sizeof(struct ma_frame_ent) +                     \
	 MA_RAW_MAX * sizeof(struct ma_raw_ent))

/* ------------------------------------------------------------------ */
/* Sessions */

enum ma_phase {
	MA_PHASE_TRACKING = 1,
	MA_PHASE_STOPPING = 2, /* hooks gone; waiting for threads, then stats */
	MA_PHASE_DONE = 3,
};

/*
 * Short-lived small blocks of Python's MEM and OBJ domains (record.c): a
 * small allocation waits in `gw` (hashed by address) instead of going to
 * the ring; freed while still there, it only adds one to a count in `gp`
 * (by thread, stack, size, kind), published as a TEMP record.  Both tables
 * are touched only by the thread holding the GIL, which serialises these
 * domains, and by the watchdog once every recording section is over.
 */
#define MA_GW_SLOTS 64	/* a power of two */
#define MA_GP_SLOTS 256 /* a power of two */
#define MA_GW_MAX   512 /* pymalloc's small-block limit */

/* (stack, size) and (distance, kind, thread) as two words, compared at once */
union ma_gkey1 {
	struct {
		uint32_t node, size;
	};
	uint64_t w;
};

union ma_gkey2 {
	struct {
		uint8_t dist; /* 0 in a gw entry */
		uint8_t kind;
		uint16_t _zero;
		uint32_t thread;
	};
	uint64_t w;
};

struct ma_gw_ent {
	uint64_t ptr;	       /* 0: empty */
	struct ma_slot *owner; /* the allocating thread's slot */
	union ma_gkey1 k1;
	union ma_gkey2 k2;
	uint32_t seq; /* owner's allocations before this one */
	uint16_t gh;  /* hash of k1 and k2, for gp */
	uint16_t _pad;
};

struct ma_gp_ent {
	union ma_gkey1 k1;
	union ma_gkey2 k2;
	uint64_t count; /* 0: empty */
};

/*
 * Descriptors the payload keeps open in the target (the ring's memfd, the
 * attacher's pidfd).  ma_fd_park moves a new one to MA_FD_FLOOR or above
 * (close-on-exec) and notes what file it is; ma_fd_close_own closes it
 * only if that file is still there.  A program may close one of its own
 * descriptors for a moment and dup2() another over the number later
 * (test_subprocess closes its stdout around a fork, daemons reopen 0-2):
 * had ours taken that number meanwhile, the dup2 would replace ours
 * silently, and our close would then close the program's stdout.
 */
#define MA_FD_FLOOR 100
struct ma_fd_id {
	uint64_t dev, ino;
};

/*
 * Several tables from one mapping.  ma_start runs with the target's threads
 * stopped, and each system call it makes is two ptrace stops of the
 * attacher's remote call (docs/performance.md, "Fewer system calls in
 * ma_start"): the tables a session or the payload's first start needs are
 * mapped at once and handed out here.  Each part starts on a page and
 * fills whole pages, so that its owner unmaps it on its own with
 * ma_unmap(part, len), as if ma_map had made it.
 */
struct ma_parts {
	uint8_t *next; /* the next part */
	size_t left;   /* bytes from next to the mapping's end */
};

struct ma_session {
	uint32_t gen;	/* > 0, one per ma_start */
	uint32_t phase; /* enum ma_phase, atomic */
	struct ma_config cfg;
	int minor;  /* python minor version, 0 when stacks are off */
	int layout; /* enum ma_py_layout_id (ma_pyver.h) of that version */
	uint32_t max_frames;

	int ring_fd;
	struct ma_fd_id ring_id; /* the memfd at ring_fd (ma_fd_park) */
	void *ring_mem;
	size_t ring_len;
	struct ma_ring ring;

	/* frame trie and code ids (pystack.c) */
	void *tabs;
	size_t tabs_len;
	struct ma_code_ent *codes;
	struct ma_node_ent *nodes;
	uint32_t codes_cap, nodes_cap; /* powers of two */
	uint32_t ncodes, nnodes;       /* entries used (under tab_lock) */
	uint32_t next_code, next_node;
	int tab_lock;
	uint32_t next_thread; /* atomic */

	/* short-lived blocks: 0 off, 1 on, 2 on while only one interpreter
	 * exists (3.12+: another one may have a GIL of its own) */
	int gil_serial;
	uintptr_t interp_head; /* &_PyRuntime.interpreters.head */
	int32_t interp_next;   /* offsetof(PyInterpreterState, next) */
	uint32_t gflush;       /* atomic: the watchdog asks for a flush */
	uint64_t gflush_ns;    /* watchdog: last request */
	uint64_t g_elided;     /* events published in TEMP records */
	uint64_t g_temps;      /* TEMP records published */
	struct ma_gw_ent gw[MA_GW_SLOTS];
	struct ma_gp_ent gp[MA_GP_SLOTS];

	/* the tables ma_start maps for the session, until taken */
	struct ma_parts parts;

	/* aggregated tracking (agg.c): NULL when the session records
	 * events */
	struct ma_agg *agg;
	size_t agg_off; /* the aggregate area's offset in the ring's memfd */

	/* stopping */
	uint32_t final_state; /* enum ma_ring_state to end in */
	int32_t error;
	uint32_t wd_word;  /* futex the watchdog sleeps on */
	uint32_t stop_req; /* atomic: ma_stop() could not stop it inline */
	pthread_t watchdog;
	char message[128];
};

/* ------------------------------------------------------------------ */
/* Globals (main.c) */

extern uint32_t ma_enabled;	   /* atomic: sessions record only while 1 */
extern struct ma_session *ma_sess; /* current session, read after enabled */
extern int ma_asym_fence; /* 1: membarrier() makes the hot path cheap */

static inline int ma_on(void)
{
	return __atomic_load_n(&ma_enabled, __ATOMIC_RELAXED) != 0;
}

/* ------------------------------------------------------------------ */
/* Recording (record.c) */

struct ma_slot *ma_slot_get_slow(struct ma_tls *t);

/* A slot counter: written by the slot's thread only, read by the stopper */
#define MA_CTR_INC(x) __atomic_store_n(&(x), (x) + 1, __ATOMIC_RELAXED)

static inline struct ma_slot *ma_slot_get(struct ma_tls *t)
{
	if (ma_likely((uintptr_t)t->slot > (uintptr_t)MA_SLOT_DEAD))
		return t->slot;
	return ma_slot_get_slow(t);
}

size_t ma_slots_bytes(void);
int ma_slots_init(struct ma_parts *parts);
/* Give slots of threads that do not exist any more back (fork child) */
void ma_slots_reset_except(struct ma_slot *keep);
/* Wait until every slot was seen outside a recording section, at most
 * timeout_ns: 0 when all were, -ETIMEDOUT */
int ma_slots_quiesce(uint64_t timeout_ns);
/* Python's MEM and OBJ domains, called with the GIL held */
void ma_rec_alloc_gil(struct ma_tls *t, const void *p, size_t size, int kind);
void ma_rec_free_gil(struct ma_tls *t, const void *p, int kind);
/* Publish what waits in the short-lived block tables: the watchdog, once no
 * thread is in a recording section */
void ma_rec_gil_flush(struct ma_session *s);
/* Sum of the counters of every slot in generation gen */
void ma_slots_sum(uint32_t gen, struct ma_rec_stats *out);
/* Records published by threads in generation gen */
uint64_t ma_slots_records(uint32_t gen);

void ma_rec_alloc(struct ma_tls *t, const void *p, size_t size, int kind);
void ma_rec_free(struct ma_tls *t, const void *p, size_t size, int kind);
/* The fork record, from the parent; child_pid 0 when unknown */
void ma_rec_fork(struct ma_tls *t, pid_t child_pid);
/* In a fork child: tracking off, the parent's ring dropped */
void ma_after_fork_child(void);

/* ------------------------------------------------------------------ */
/* Aggregated tracking (agg.c) */

/* The tables, and the aggregate area's header at area: 0, or -ENOMEM with
 * msg filled (and nothing left mapped) */
size_t ma_agg_bytes(void);
int ma_agg_setup(struct ma_session *s, void *area, char *msg, size_t len);
void ma_agg_release(struct ma_session *s);
/* gil: a block of the MEM or OBJ domain (called with the GIL held);
 * serial: the GIL serialises those (record.c, gil_serial) */
void ma_agg_alloc(struct ma_session *s, struct ma_slot *sl, uint32_t th,
		  uint64_t p, uint64_t size, uint32_t node, int kind, int gil,
		  int serial);
void ma_agg_free(struct ma_session *s, struct ma_slot *sl, uint32_t th,
		 uint64_t p, int gil, int serial);
/* A MEM/OBJ allocation of p is coming: start loading what it will touch */
void ma_agg_prefetch(struct ma_session *s, uint64_t p, uint64_t size);

/* ------------------------------------------------------------------ */
/* Sampled tracking (sample.c, docs/payload.md "Sampled tracking") */

/* What the hooks' fast halves read, in one line: the session's
 * generation while it samples (else 0), and the filter's mask (below).
 * Apart, the mask's line missed at the frees of the spread churn: 0.89
 * of full speed against 0.93 with the mask a constant (measured) */
struct ma_samp_hot {
	uint32_t gen;
	uint32_t fmask;
};
extern struct ma_samp_hot ma_samp_hot;
/* the session's mean */
extern uint64_t ma_samp_mean;
/* Live sampled blocks per hash of their address: a free whose counter is
 * 0 is not of a sampled block.  Static (never unmapped: read outside any
 * recording section), its first ma_samp_hot.fmask + 1 counters in use (sized
 * when a sampled session starts, threads stopped, and cleared then;
 * common/ma_sample.h) */
extern uint8_t ma_samp_filter[1u << MA_SAMPLE_FILTER_BITS_MAX];

static inline uint32_t ma_samp_hash(uint64_t p)
{
	return ma_sample_filter_hash(
		p, __atomic_load_n(&ma_samp_hot.fmask, __ATOMIC_RELAXED));
}

/* The countdown crossed (or belongs to another session): 1 when this
 * allocation of n bytes is sampled; a new countdown is drawn */
int ma_samp_cross(struct ma_tls *t, uint64_t n, uint32_t g);

/*
 * The full path's decision for an allocation (the fast halves take the
 * common case first, ma_samp_pass below; realloc and the aligned
 * allocations come here directly): 1 when the session samples and this
 * one is not sampled (the hook only calls the real function), 0 when it is
 * to be recorded.
 */
static inline int ma_samp_skip_alloc(struct ma_tls *t, uint64_t n)
{
	uint32_t g = __atomic_load_n(&ma_samp_hot.gen, __ATOMIC_RELAXED);

	if (ma_likely(!g))
		return 0;
	if (ma_likely(t->sgen == g) && (t->left -= (int64_t)n) > 0)
		return 1;
	return !ma_samp_cross(t, n, g);
}

/*
 * A sampled session's common case, for the hooks' fast halves (kept apart
 * from their full paths so that they compile to a few instructions without
 * a frame; docs/performance.md, "Sampled tracking"): 1 when the session
 * samples, the thread's countdown stays above 0 after n more bytes, and no
 * hook of this thread is running; the countdown is then taken down and the
 * hook only calls the real function, under the guard (what that allocates
 * inside, e.g. pymalloc's arena mmap, stays unseen, as in the full path).
 * 0: the full path decides, as it would without this.
 */
static inline __attribute__((always_inline)) int ma_samp_pass(struct ma_tls *t,
							      uint64_t n)
{
	uint32_t g = __atomic_load_n(&ma_samp_hot.gen, __ATOMIC_RELAXED);
	int64_t l = t->left - (int64_t)n;

	if (ma_likely(g) && ma_likely(t->sgen == g) && ma_likely(l > 0) &&
	    ma_likely(!t->guard)) {
		t->left = l;
		return 1;
	}
	return 0;
}

/* The hot path of a free: 1 when the session samples and p is surely not
 * a sampled block's */
static inline int ma_samp_skip_free(const void *p)
{
	if (ma_likely(!__atomic_load_n(&ma_samp_hot.gen, __ATOMIC_RELAXED)))
		return 0;
	return __atomic_load_n(&ma_samp_filter[ma_samp_hash((uintptr_t)p)],
			       __ATOMIC_RELAXED) == 0;
}

/* A sampled block's estimates: bytes, and blocks (rounded at random, so
 * that the count stays unbiased, with the thread's generator) */
void ma_samp_weights(uint64_t size, uint64_t *wbytes, uint64_t *wcount);
void ma_samp_filter_add(uint64_t p);
void ma_samp_filter_del(uint64_t p);
/* A sampled session starts (threads stopped): mean, filter cleared */
void ma_samp_start(uint32_t gen, uint64_t mean, uint32_t filter_bits);

/* ------------------------------------------------------------------ */
/* Python stacks (pystack.c) */

/* Check the offsets, resolve what the walk needs, map the tables: 0 (and
 * s->minor set), or -errno with msg filled (stacks are then off, tracking
 * goes on) */
size_t ma_stacks_bytes(void);
int ma_stacks_setup(struct ma_session *s, char *msg, size_t len);
/* Node of the calling thread's Python stack (0: empty or unknown) */
uint32_t ma_stack_node(struct ma_session *s, struct ma_slot *sl);
/* The same for a caller holding the GIL: a cheaper way to its thread state */
uint32_t ma_stack_node_gil(struct ma_session *s, struct ma_slot *sl);

/* ------------------------------------------------------------------ */
/* Real functions and hooks (hooks.c) */

struct ma_real {
	void *(*malloc)(size_t);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void *(*reallocarray)(void *, size_t, size_t);
	void (*free)(void *);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*memalign)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	size_t (*malloc_usable_size)(void *);
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	void *(*mmap64)(void *, size_t, int, int, int, off_t);
	int (*munmap)(void *, size_t);
	void *(*mremap)(void *, size_t, size_t, int, ...);
	void *(*dlopen)(const char *, int);
	void *(*dlmopen)(long, const char *, int);
	pid_t (*fork)(void);
	pid_t (*_Fork)(void);
};

extern struct ma_real ma_real;

/* Resolve the real functions once (hazard 7); 0 or -ENOENT, msg filled */
int ma_real_resolve(char *msg, size_t len);

/* Hookable names: index, name, hook, category */
enum ma_hook_cat {
	MA_HC_NATIVE = 1, /* MA_TRACK_NATIVE */
	MA_HC_MMAP = 2,	  /* MA_TRACK_MMAP */
	MA_HC_LOADER = 3, /* dlopen: when any GOT hook is on */
	MA_HC_FORK = 4,	  /* fork: always */
};

struct ma_hook_def {
	const char *name;
	void *hook;
	int cat;
};

extern const struct ma_hook_def ma_hook_defs[];
extern const int ma_nhooks;
/* Index in ma_hook_defs of a symbol name, or -1 */
int ma_hook_index(const char *name);

/* ------------------------------------------------------------------ */
/* GOT patching (got.c) */

/* Which categories to patch (bit 1 << cat) */
void ma_got_set_mask(unsigned int mask);
/* Patch every loaded module not patched yet.  pin: hold each new module
 * with dlopen(RTLD_NOLOAD) while patching it (never with threads stopped).
 * Returns the number of slots patched or -errno. */
int ma_got_install(int pin);
/* Patch modules loaded since the last scan (dlopen hook, watchdog) */
void ma_got_rescan(void);
/* Modules were loaded since the last scan (a hint, read without lock) */
int ma_got_changed(void);
/* Put every patched slot back; returns the number restored */
int ma_got_restore(void);
int ma_got_installed(void);
/* Modules patched (or found with nothing to patch) so far */
uint32_t ma_got_modules(void);
/* Where the main executable's own GOT slot for name points (its resolved
 * target), NULL when it has none or it is not bound yet */
void *ma_exe_got_target(const char *name);
/* Address range of the payload itself */
int ma_in_payload(const void *p);
size_t ma_self_bytes(void);
int ma_self_init(struct ma_parts *parts);

/* ------------------------------------------------------------------ */
/* CPython allocator domains (pyalloc.c) */

/* Wrap RAW, MEM and OBJ; 0, or -ENOENT (no CPython API here) */
int ma_pyalloc_install(char *msg, size_t len);
/* Put the originals back where ours are still current; others_run: the
 * other threads may be running (then a domain not located yet stays ours,
 * idle) */
void ma_pyalloc_restore(int others_run);
/* Find the domains' structs, so that swaps with the threads running write
 * whole pointers (pyalloc.c); the watchdog, once ours are installed */
void ma_pyalloc_locate(void);
/* Bit d set: domain d's struct is found */
uint32_t ma_pyalloc_located(void);
int ma_pyalloc_installed(void);

/* ------------------------------------------------------------------ */
/* Session control (main.c) */

/* Lock for sessions, GOT patches and allocator swaps.  Taken with trylock
 * everywhere but in the watchdog, so that a call made while the attacher
 * holds all threads stopped can never wait on a stopped thread. */
int ma_ctl_trylock(void);
void ma_ctl_lock(void);
void ma_ctl_unlock(void);

/* ------------------------------------------------------------------ */
/* Small utilities (util.c) */

void ma_spin_lock(int *l);
static inline int ma_spin_trylock(int *l)
{
	return !__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE);
}
static inline void ma_spin_unlock(int *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/* snprintf for %s %d %u %ld %lu %lld %llu %x %lx %llx %zu %p %%, without
 * stdio (which may allocate) */
int ma_fmt(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int ma_vfmt(char *buf, size_t len, const char *fmt, va_list ap);

/* Anonymous memory, not counted against overcommit until touched */
void *ma_map(size_t len);
void ma_unmap(void *p, size_t len);

/* Several tables from one mapping (struct ma_parts, above) */
size_t ma_page_round(size_t len);
/* Map len bytes for parts (m is left empty when that fails: every take
 * then maps on its own) */
void ma_parts_map(struct ma_parts *m, size_t len);
/* A zeroed part of len bytes; from its own mapping when m (may be NULL)
 * has no room left */
void *ma_parts_take(struct ma_parts *m, size_t len);
/* Unmap what was not taken */
void ma_parts_drop(struct ma_parts *m);

/* Our descriptors in the target (struct ma_fd_id above) */
int ma_fd_park(int fd, struct ma_fd_id *id);
void ma_fd_close_own(int fd, const struct ma_fd_id *id);

void ma_sleep_ns(uint64_t ns);
/* futex wait (bounded) and wake on a private word */
void ma_futex_wait(uint32_t *word, uint32_t val, uint64_t timeout_ns);
void ma_futex_wake(uint32_t *word);
pid_t ma_gettid(void);

#endif
