/* SPDX-License-Identifier: MIT */
/*
 * The report model: one streaming pass over a capture, then the canonical
 * frame tree and the rows.  See report.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "errors.h"
#include "ma_agg.h"
#include "ma_config.h"
#include "report.h"
#include "report_timeline.h"
#include "units.h"

static uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define MAX_NODE_ID (1u << 26) /* as the accounting */
/*
 * The payload numbers nodes and code objects from 1 up and has room for
 * 2^20 and 2^16 of them (injector/pystack.c).  The accounting accepts ids
 * up to 2^26 and 2^24, and sizes its tables by the highest id seen: one
 * damaged-but-checksummed id would cost gigabytes (found by the fuzzer).
 * A report takes ids beyond twice the payload's room as damage: such an
 * ALLOC counts under "no Python frame", such a definition is dropped, and
 * the report says how many there were.
 */
#define REPORT_MAX_NODE (1u << 21)
#define REPORT_MAX_CODE (1u << 17)

void ma_report_opts_init(struct ma_report_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->view = MA_RV_LIVE;
	o->group = MA_VIEW_LINE;
	o->top = 20;
	o->callers = 3;
	o->stack_depth = 0; /* json: the whole stack */
	o->window = MA_REPORT_DEF_WINDOW;
	o->color = -1;
}

static const char *const view_names[MA_RV_N] = { "live", "peak", "total",
						 "temporary" };

const char *ma_rview_name(enum ma_rview v)
{
	return v < MA_RV_N ? view_names[v] : "?";
}

const char *ma_rview_desc(enum ma_rview v)
{
	switch (v) {
	case MA_RV_LIVE:
		return "allocated while tracked and still live at the end";
	case MA_RV_PEAK:
		return "live at the moment tracked memory was highest";
	case MA_RV_TOTAL:
		return "everything allocated while tracked";
	case MA_RV_TEMP:
		return "freed by the allocating thread almost at once";
	default:
		return "";
	}
}

int ma_rview_parse(const char *s, enum ma_rview *v)
{
	for (int i = 0; i < MA_RV_N; i++)
		if (!strcmp(s, view_names[i])) {
			*v = (enum ma_rview)i;
			return 0;
		}
	if (!strcmp(s, "temp")) {
		*v = MA_RV_TEMP;
		return 0;
	}
	return -EINVAL;
}

const char *ma_rgroup_name(enum ma_account_view g)
{
	switch (g) {
	case MA_VIEW_STACK:
		return "stack";
	case MA_VIEW_LINE:
		return "line";
	case MA_VIEW_FUNCTION:
		return "function";
	case MA_VIEW_FILE:
		return "file";
	}
	return "?";
}

int ma_rgroup_parse(const char *s, enum ma_account_view *g)
{
	static const enum ma_account_view all[] = { MA_VIEW_STACK, MA_VIEW_LINE,
						    MA_VIEW_FUNCTION,
						    MA_VIEW_FILE };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (!strcmp(s, ma_rgroup_name(all[i]))) {
			*g = all[i];
			return 0;
		}
	return -EINVAL;
}

/* ------------------------------------------------------------------ */
/*
 * Streaming, on three threads: a reader decodes blocks into batches of
 * events (and applies the thread filter and the id checks, which depend
 * on the stream alone), the caller feeds each batch to the accounting,
 * and a third thread feeds it to the temporary tracker.  The accounting is
 * the longest of the three; the other two share the second core.  A batch
 * is reused once both consumers are done with it.
 */

#define BATCH_EVENTS 4096
#define BATCH_COPIES 64 /* CODE events per batch (their strings copied) */
#define NBATCH	     8

struct batch {
	struct ma_event ev[BATCH_EVENTS];
	size_t n;
	uint64_t offset; /* bytes of the file read when it was filled */
	char *copies[BATCH_COPIES];
	int ncopies;
};

/*
 * Threads as a dimension.  The accounting keeps figures per node id; the
 * reader gives each ALLOC, in place of its node, the id of its (thread,
 * node) pair, numbered from 1 as pairs appear (a "vid").  The accounting's
 * figures of a vid are then those of one thread in one stack, exactly
 * (live, peak, total; the temporary tracker's too), and its node table
 * serves both: definitions under the capture's node ids, figures under
 * vids, never the same fields (report.h has no other user of either).
 */
#define MAX_VIDS     (1u << 22) /* beyond: counted under vid 1 (damage) */
#define MAX_RTHREADS (1u << 16) /* beyond: thread 0 (damage) */
#define MAX_RPROCS   (1u << 16) /* processes kept; beyond: not listed */

struct vslot {
	uint64_t key; /* thread << 32 | node, + 1; 0 = empty */
	uint32_t vid;
};

/*
 * --from on an aggregated capture.  An AGG event holds a key's sums since
 * its process's previous round (once a second), so a round after the
 * range's start sample may hold allocations from before it.  Per process,
 * AGG and AGGTEMP events count from its first round after the start
 * sample when its previous round came after the sample before that one
 * (the range then starts at that earlier sample: the header says so),
 * else from the round after that (its sums then start up to a second
 * late: the header says from when).  A process added later counts at
 * once.  The accounting is fed every AGG, so that its live figures and
 * peak stay the process's; the model keeps, per key, what the range
 * leaves out: what was allocated before it (total) and what is left of
 * the blocks live at its start (live).  A key's frees do not say which of
 * its blocks they free: they take its latest allocations first (LIFO, a
 * round's allocations before its frees), as the HTML timeline does.
 */
struct afix {
	uint64_t key;	       /* vid << 8 | kind, + 1; 0 = empty */
	uint64_t pre_c, pre_b; /* allocated before the range */
	uint64_t old_c, old_b; /* of those, still live */
	uint64_t rng_c, rng_b; /* allocated in the range, still live */
};

/* The attacher reads the sums every second (track.c, AGG_EVERY_NS) when
 * its loop comes round: the time between two rounds of a process, at
 * most, with room for a loop late by a sample's interval */
#define AGG_ROUND_NS 1200000000ull

struct aslot {
	uint8_t phase;	   /* 0 before, 1 in the round straddling the
			      start, 2 counted */
	uint64_t round_at; /* samples seen at its latest AGG event */
};

/* What the reader thread keeps */
struct prep {
	struct ma_report *r;
	uint8_t *sel; /* thread index -> selected (thread filter) */
	size_t sel_cap;
	uint32_t max_node; /* highest node id (definitions, ALLOCs) */
	uint32_t *cur;	   /* thread index -> ma_report.threads */
	size_t cur_cap, threads_cap;
	struct vslot *vh; /* (thread, node) -> vid */
	size_t vh_cap;
	uint32_t *vid_node, *vid_thread; /* vid -> node, thread */
	uint32_t nvid, vid_cap;
	uint64_t last_key;
	uint32_t last_vid;
	uint64_t last_t_ns;	   /* the last sample's time (stats) */
	bool in_range, past_range; /* --from, --to */
	/* the sample before the last round of sums (AGG) read, for --to */
	uint64_t last_agg_t_ns;
	/* the fast path: per thread, node -> vid in an array, while the
	 * arrays stay within ARRAY_BUDGET entries in all (the hash beyond) */
	struct vmap {
		uint32_t *vid;
		size_t cap;
	} * map;
	size_t map_cap, map_used;
	/* pid -> index + 1 into ma_report.procs (open addressing) */
	uint32_t *ph;
	size_t ph_cap;
	/* --from, aggregated: see struct afix */
	uint64_t nsamples;   /* SAMPLE events */
	uint64_t start_t_ns; /* the start sample's time */
	struct aslot *as;    /* process index + 1 (0: none known) */
	size_t as_cap;
	struct afix *af;
	size_t af_cap, af_n;
};

#define ARRAY_BUDGET (16u << 20) /* entries: 64 MiB */

struct pipe {
	struct ma_capture_reader *rd;
	struct prep *prep;
	struct batch *b[NBATCH];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t cpu_read_ns; /* the reader thread's CPU time */
	size_t head;	      /* batches produced */
	size_t tail[2];	      /* consumed by: 0 accounting, 1 temporary */
	bool done, stop;
	int status;	   /* reader's last result, or a consumer's error */
	char errmsg[1024]; /* its message (ma_errmsg is one buffer) */
};

static void batch_reset(struct batch *b)
{
	for (int i = 0; i < b->ncopies; i++)
		free(b->copies[i]);
	b->ncopies = 0;
	b->n = 0;
}

/* CODE strings point into the reader's block: keep a copy with the batch */
static int batch_keep_code(struct batch *b, struct ma_event *ev)
{
	size_t len = (size_t)ev->code.name_len + ev->code.file_len +
		     ev->code.linetable_len;
	char *c = malloc(len ? len : 1);

	if (!c)
		return -ENOMEM;
	memcpy(c, ev->code.name, ev->code.name_len);
	memcpy(c + ev->code.name_len, ev->code.file, ev->code.file_len);
	memcpy(c + ev->code.name_len + ev->code.file_len, ev->code.linetable,
	       ev->code.linetable_len);
	ev->code.name = c;
	ev->code.file = c + ev->code.name_len;
	ev->code.linetable =
		(const uint8_t *)c + ev->code.name_len + ev->code.file_len;
	b->copies[b->ncopies++] = c;
	return 0;
}

static bool name_selected(const struct ma_report_opts *o, int32_t tid,
			  const char *name)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%d", tid);
	for (int i = 0; i < o->nthreads; i++)
		if (!strcmp(o->threads[i], buf) || !strcmp(o->threads[i], name))
			return true;
	return false;
}

static int grow_u32(uint32_t **p, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 64;
	uint32_t *q;

	if (need < *cap)
		return 0;
	while (n <= need)
		n *= 2;
	q = realloc(*p, n * sizeof(*q));
	if (!q)
		return -ENOMEM;
	memset(q + *cap, 0, (n - *cap) * sizeof(*q));
	*p = q;
	*cap = n;
	return 0;
}

/* A THREAD event: a new thread, unless its slot holds the same one */
static int thread_define(struct prep *pp, const struct ma_event *ev, bool on)
{
	struct ma_report *r = pp->r;
	struct ma_rthread *t;
	uint32_t k;

	if (grow_u32(&pp->cur, &pp->cur_cap, ev->thread) < 0)
		return -ENOMEM;
	k = pp->cur[ev->thread];
	if (k && r->threads[k].tid == ev->thr.tid &&
	    !strcmp(r->threads[k].comm, ev->thr.name)) {
		r->threads[k].selected = on;
		return 0;
	}
	if (r->nthreads >= MAX_RTHREADS) {
		pp->cur[ev->thread] = 0;
		return 0;
	}
	if (r->nthreads == pp->threads_cap) {
		size_t cap = pp->threads_cap * 2;
		struct ma_rthread *p = realloc(r->threads, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->threads = p;
		pp->threads_cap = cap;
	}
	t = &r->threads[r->nthreads];
	memset(t, 0, sizeof(*t));
	t->index = ev->thread;
	t->tid = ev->thr.tid;
	t->name = strdup(ev->thr.name);
	snprintf(t->comm, sizeof(t->comm), "%s", ev->thr.name);
	t->selected = on;
	if (!t->name)
		return -ENOMEM;
	pp->cur[ev->thread] = (uint32_t)r->nthreads++;
	return 0;
}

/* A thread's selection by the thread or process filter */
/* A THREAD event that defines its index again for the same thread (same
 * tid and comm) whose Python name --thread selected */
static bool same_thread_named(const struct prep *pp, const struct ma_event *ev)
{
	const struct ma_report *r = pp->r;
	uint32_t k = ev->thread < pp->cur_cap ? pp->cur[ev->thread] : 0;

	return k && r->threads[k].tid == ev->thr.tid &&
	       !strcmp(r->threads[k].comm, ev->thr.name) &&
	       name_selected(&r->opts, r->threads[k].tid, r->threads[k].name);
}

static int thread_select(struct prep *pp, uint32_t thread, bool on, int32_t tid,
			 const char *name)
{
	struct ma_report *r = pp->r;

	if (thread >= pp->sel_cap) {
		size_t n = pp->sel_cap ? pp->sel_cap : 64;
		uint8_t *p;

		while (n <= thread)
			n *= 2;
		p = realloc(pp->sel, n);
		if (!p)
			return -ENOMEM;
		memset(p + pp->sel_cap, 0, n - pp->sel_cap);
		pp->sel = p;
		pp->sel_cap = n;
	}
	if (on && !pp->sel[thread]) {
		size_t l = strlen(r->thread_desc);

		r->threads_selected++;
		snprintf(r->thread_desc + l, sizeof(r->thread_desc) - l,
			 "%s%d \"%s\"", l ? ", " : "", tid, name);
	}
	pp->sel[thread] = on;
	return 0;
}

/*
 * A PROC event (a capture of several processes): the process, and when it
 * names a thread (defined just before), that thread's process, which the
 * --pid filter selects by.
 */
/* The slot of pid in pp->ph: its entry, or the empty one it would take */
static size_t proc_slot(const struct prep *pp, int32_t pid)
{
	size_t j = ((uint32_t)pid * 0x9e3779b9u) & (pp->ph_cap - 1);

	while (pp->ph[j] && pp->r->procs[pp->ph[j] - 1].pid != pid)
		j = (j + 1) & (pp->ph_cap - 1);
	return j;
}

/* The index of process pid in r->procs, or -1 */
static long proc_find(const struct prep *pp, int32_t pid)
{
	size_t j;

	if (!pp->ph_cap)
		return -1;
	j = proc_slot(pp, pid);
	return pp->ph[j] ? (long)pp->ph[j] - 1 : -1;
}

/* Room in pp->ph for one more process; -ENOMEM */
static int proc_hash_grow(struct prep *pp)
{
	struct ma_report *r = pp->r;
	size_t cap = pp->ph_cap ? pp->ph_cap : 64;

	if ((r->nprocs + 1) * 2 <= pp->ph_cap)
		return 0;
	while ((r->nprocs + 1) * 2 > cap)
		cap *= 2;
	free(pp->ph);
	pp->ph = calloc(cap, sizeof(*pp->ph));
	if (!pp->ph) {
		pp->ph_cap = 0;
		return -ENOMEM;
	}
	pp->ph_cap = cap;
	for (size_t i = 0; i < r->nprocs; i++)
		pp->ph[proc_slot(pp, r->procs[i].pid)] = (uint32_t)i + 1;
	return 0;
}

static int proc_event(struct prep *pp, const struct ma_event *ev)
{
	struct ma_report *r = pp->r;
	struct ma_rproc *p = NULL;
	long k = proc_find(pp, ev->proc.pid);
	bool on;

	if (k >= 0)
		p = &r->procs[k];
	on = !r->pid_filtered;
	for (int i = 0; i < r->opts.npids; i++)
		if (r->opts.pids[i] == ev->proc.pid)
			on = true;
	if (!p) {
		if (r->nprocs >= MAX_RPROCS)
			return 0;
		if (proc_hash_grow(pp) < 0)
			return -ENOMEM;
		p = realloc(r->procs, (r->nprocs + 1) * sizeof(*p));
		if (!p)
			return -ENOMEM;
		r->procs = p;
		p = &r->procs[r->nprocs++];
		pp->ph[proc_slot(pp, ev->proc.pid)] = (uint32_t)r->nprocs;
		memset(p, 0, sizeof(*p));
		p->pid = ev->proc.pid;
		p->selected = on;
		if (on && r->pid_filtered) {
			size_t l = strlen(r->pid_desc);

			snprintf(r->pid_desc + l, sizeof(r->pid_desc) - l,
				 "%s%d", l ? ", " : "", (int)p->pid);
		}
	}
	if (ev->proc.ppid)
		p->ppid = ev->proc.ppid;
	/* exited and stopped are the last word on a process */
	if (p->state != MA_PROC_EXITED && p->state != MA_PROC_STOPPED)
		p->state = ev->proc.state;
	if (!ev->thread || ev->thread >= (1u << 20) ||
	    ev->thread >= pp->cur_cap || !pp->cur[ev->thread])
		return 0;

	struct ma_rthread *t = &r->threads[pp->cur[ev->thread]];

	t->pid = ev->proc.pid;
	p->nthreads++;
	if (r->pid_filtered) {
		on = on && (!r->opts.nthreads ||
			    name_selected(&r->opts, t->tid, t->name));
		if (thread_select(pp, ev->thread, on, t->tid, t->name) < 0)
			return -ENOMEM;
		t->selected = on;
	}
	return 0;
}

/* A TNAME event: the Python name of the thread the index stands for now;
 * --thread takes it as it takes the comm, from this event on (with --pid,
 * in a process selected) */
static int thread_rename(struct prep *pp, const struct ma_event *ev)
{
	struct ma_report *r = pp->r;
	uint32_t k = ev->thread < pp->cur_cap ? pp->cur[ev->thread] : 0;
	struct ma_rthread *t;
	char *name;

	if (!k || !ev->tname.name)
		return 0;
	name = strndup(ev->tname.name, ev->tname.len);
	if (!name)
		return -ENOMEM;
	t = &r->threads[k];
	free(t->name);
	t->name = name;
	if (r->thread_filtered && r->opts.nthreads &&
	    ev->thread < pp->sel_cap && !pp->sel[ev->thread] &&
	    name_selected(&r->opts, t->tid, name)) {
		long p = r->pid_filtered ? proc_find(pp, t->pid) : -1;

		if (r->pid_filtered && (p < 0 || !r->procs[p].selected))
			return 0;
		if (thread_select(pp, ev->thread, true, t->tid, name) < 0)
			return -ENOMEM;
		t->selected = true;
	}
	return 0;
}

/* The array of thread's vids, grown to hold node; NULL: over budget or
 * ENOMEM (the hash then serves) */
static struct vmap *vmap_for(struct prep *pp, uint32_t thread, uint32_t node)
{
	struct vmap *m;
	size_t cap;
	uint32_t *p;

	if (thread >= pp->map_cap) {
		size_t n = pp->map_cap ? pp->map_cap : 16;
		struct vmap *q;

		while (n <= thread)
			n *= 2;
		q = realloc(pp->map, n * sizeof(*q));
		if (!q)
			return NULL;
		memset(q + pp->map_cap, 0, (n - pp->map_cap) * sizeof(*q));
		pp->map = q;
		pp->map_cap = n;
	}
	m = &pp->map[thread];
	if (node < m->cap)
		return m;
	cap = m->cap ? m->cap : 1024;
	while (cap <= node)
		cap *= 2;
	if (pp->map_used + cap - m->cap > ARRAY_BUDGET)
		return NULL;
	p = realloc(m->vid, cap * sizeof(*p));
	if (!p)
		return NULL;
	memset(p + m->cap, 0, (cap - m->cap) * sizeof(*p));
	pp->map_used += cap - m->cap;
	m->vid = p;
	m->cap = cap;
	return m;
}

static uint32_t vid_hashed(struct prep *pp, uint32_t thread, uint32_t node);

/* The vid of (thread, node); 0 on ENOMEM */
static uint32_t vid_get(struct prep *pp, uint32_t thread, uint32_t node)
{
	struct vmap *m = thread < pp->map_cap ? &pp->map[thread] : NULL;
	uint32_t v;

	if (m && node < m->cap && m->vid[node])
		return m->vid[node];
	m = vmap_for(pp, thread, node);
	v = vid_hashed(pp, thread, node);
	if (m && v)
		m->vid[node] = v;
	return v;
}

static uint32_t vid_hashed(struct prep *pp, uint32_t thread, uint32_t node)
{
	uint64_t key = ((uint64_t)thread << 32 | node) + 1;
	size_t j;

	if (key == pp->last_key)
		return pp->last_vid;
	if ((size_t)(pp->nvid + 1) * 2 > pp->vh_cap) {
		size_t cap = pp->vh_cap ? pp->vh_cap * 2 : 1024;
		struct vslot *h = calloc(cap, sizeof(*h));

		if (!h)
			return 0;
		for (size_t i = 0; i < pp->vh_cap; i++) {
			if (!pp->vh[i].key)
				continue;
			for (j = (pp->vh[i].key * 0x9e3779b97f4a7c15ull) >> 20 &
				 (cap - 1);
			     h[j].key; j = (j + 1) & (cap - 1))
				;
			h[j] = pp->vh[i];
		}
		free(pp->vh);
		pp->vh = h;
		pp->vh_cap = cap;
	}
	for (j = (key * 0x9e3779b97f4a7c15ull) >> 20 & (pp->vh_cap - 1);
	     pp->vh[j].key; j = (j + 1) & (pp->vh_cap - 1))
		if (pp->vh[j].key == key)
			goto found;
	if (pp->nvid + 1 >= MAX_VIDS) {
		pp->r->bad_ids++;
		return 1; /* the first pair: counted, not lost */
	}
	if (pp->nvid + 1 >= pp->vid_cap) {
		uint32_t cap = pp->vid_cap ? pp->vid_cap * 2 : 1024;
		uint32_t *a = realloc(pp->vid_node, cap * sizeof(*a));
		uint32_t *b;

		if (!a)
			return 0;
		pp->vid_node = a;
		b = realloc(pp->vid_thread, cap * sizeof(*b));
		if (!b)
			return 0;
		pp->vid_thread = b;
		pp->vid_cap = cap;
	}
	pp->nvid++;
	pp->vid_node[pp->nvid] = node;
	pp->vid_thread[pp->nvid] = thread;
	pp->vh[j] = (struct vslot){ .key = key, .vid = pp->nvid };
found:
	pp->last_key = key;
	pp->last_vid = pp->vh[j].vid;
	return pp->last_vid;
}

const char *ma_ralloc_name(enum ma_ralloc a)
{
	static const char *const names[MA_RA_N] = { "pymalloc",	 "PyMem",
						    "PyMem_Raw", "malloc",
						    "mmap",	 "unknown" };

	return a < MA_RA_N ? names[a] : "?";
}

unsigned ma_rstats_bucket(uint64_t size)
{
	unsigned b;

	if (size <= 1)
		return 0;
	b = 64 - (unsigned)__builtin_clzll(size - 1);
	return b < MA_RSTATS_BUCKETS ? b : MA_RSTATS_BUCKETS - 1;
}

static enum ma_ralloc ralloc_of(uint8_t kind)
{
	switch (kind & MA_KIND_MASK) {
	case MA_KIND_PYOBJ:
		return MA_RA_PYMALLOC;
	case MA_KIND_PYMEM:
		return MA_RA_PYMEM;
	case MA_KIND_PYMEM_RAW:
		return MA_RA_RAW;
	case MA_KIND_MMAP:
		return MA_RA_MMAP;
	case 0: /* key 0 of an aggregated capture: no key, no kind */
		return MA_RA_UNKNOWN;
	default:
		return MA_RA_MALLOC;
	}
}

/* One allocation into the statistics (the reader's thread) */
static void stats_add(struct prep *pp, const struct ma_event *ev,
		      uint32_t thread)
{
	struct ma_rstats *st = &pp->r->stats;
	enum ma_ralloc a = ralloc_of(ev->alloc.kind);
	struct ma_account_fig *h =
		&st->hist[a][ma_rstats_bucket(ev->alloc.size)];
	size_t k;

	h->bytes += ev->alloc.size;
	h->count++;
	st->by_alloc[a].bytes += ev->alloc.size;
	st->by_alloc[a].count++;
	/* the largest, first come first kept among equals */
	if (st->nbig == MA_RSTATS_BIG &&
	    ev->alloc.size <= st->big[MA_RSTATS_BIG - 1].size)
		return;
	k = st->nbig < MA_RSTATS_BIG ? st->nbig++ : MA_RSTATS_BIG - 1;
	while (k && st->big[k - 1].size < ev->alloc.size) {
		st->big[k] = st->big[k - 1];
		k--;
	}
	st->big[k] = (struct ma_rbig){ .size = ev->alloc.size,
				       .index = ev->index,
				       .t_ns = pp->last_t_ns,
				       .capnode = ev->alloc.node,
				       .thread = thread,
				       .alloc = a };
}

/* The range state of process slot i (process index + 1, 0: none known);
 * NULL on ENOMEM */
static struct aslot *aslot_at(struct prep *pp, size_t i)
{
	if (i >= pp->as_cap) {
		size_t n = pp->as_cap ? pp->as_cap : 8;
		struct aslot *q;

		while (n <= i)
			n *= 2;
		q = realloc(pp->as, n * sizeof(*q));
		if (!q)
			return NULL;
		memset(q + pp->as_cap, 0, (n - pp->as_cap) * sizeof(*q));
		pp->as = q;
		pp->as_cap = n;
	}
	return &pp->as[i];
}

/* The range state of the process of the capture's thread index */
static struct aslot *aslot_of(struct prep *pp, uint32_t thread)
{
	const struct ma_report *r = pp->r;
	uint32_t k = thread < pp->cur_cap ? pp->cur[thread] : 0;
	long p = k && r->threads[k].pid ? proc_find(pp, r->threads[k].pid) : -1;

	return aslot_at(pp, (size_t)(p + 1));
}

static size_t afix_slot(uint64_t key, size_t cap)
{
	key ^= key >> 29;
	key *= 0x9e3779b97f4a7c15ull;
	return (size_t)(key >> 20) & (cap - 1);
}

/* The range state of key (vid, kind), created empty; NULL on ENOMEM */
static struct afix *afix_get(struct prep *pp, uint32_t vid, uint8_t kind)
{
	uint64_t key = ((uint64_t)vid << 8 | kind) + 1;
	size_t j;

	if ((pp->af_n + 1) * 2 > pp->af_cap) {
		size_t cap = pp->af_cap ? pp->af_cap * 2 : 1024;
		struct afix *h = calloc(cap, sizeof(*h));

		if (!h)
			return NULL;
		for (size_t i = 0; i < pp->af_cap; i++) {
			if (!pp->af[i].key)
				continue;
			for (j = afix_slot(pp->af[i].key, cap); h[j].key;
			     j = (j + 1) & (cap - 1))
				;
			h[j] = pp->af[i];
		}
		free(pp->af);
		pp->af = h;
		pp->af_cap = cap;
	}
	for (j = afix_slot(key, pp->af_cap); pp->af[j].key;
	     j = (j + 1) & (pp->af_cap - 1))
		if (pp->af[j].key == key)
			return &pp->af[j];
	pp->af[j].key = key;
	pp->af_n++;
	return &pp->af[j];
}

/* Up to *want from *from; both lose what was taken */
static void take(uint64_t *from, uint64_t *want)
{
	uint64_t t = *want < *from ? *want : *from;

	*from -= t;
	*want -= t;
}

/* The start sample of --from: which processes count their next round */
static void agg_range_start(struct prep *pp)
{
	struct ma_report *r = pp->r;

	for (size_t i = 0; i < pp->as_cap; i++) {
		struct aslot *a = &pp->as[i];

		/* its latest round came after the sample before this one:
		 * its next round holds nothing from before that sample */
		if (a->round_at && a->round_at == pp->nsamples + 1) {
			a->phase = 2;
			if (pp->last_t_ns < r->range_start_ns)
				r->range_start_ns = pp->last_t_ns;
		}
	}
}

/*
 * An AGG or AGGTEMP event (its node already the vid) with --from: whether
 * it counts (1), or not (0: an AGGTEMP is then dropped), -ENOMEM.  See
 * struct afix.
 */
static int agg_range(struct prep *pp, struct ma_event *ev)
{
	struct aslot *a = aslot_of(pp, ev->thread);
	uint64_t fc, fb;
	struct afix *f;
	bool counted;

	if (!a)
		return -ENOMEM;
	a->round_at = pp->nsamples + 1;
	/* Its first round since the start: it holds what was allocated
	 * since the process's previous round, which may have been a round
	 * where no key moved (no event) up to AGG_ROUND_NS before it.  So
	 * it counts when it came that much after the start sample, else it
	 * straddles the start and the process counts from the next one */
	if (pp->in_range && a->phase == 0)
		a->phase =
			pp->last_t_ns >= pp->start_t_ns + AGG_ROUND_NS ? 2 : 1;
	counted = pp->in_range && a->phase == 2;
	if (ev->type == MA_EV_AGGTEMP) {
		if (!counted)
			ev->type = 0;
		return counted;
	}
	f = afix_get(pp, ev->agg.node, ev->agg.kind);
	if (!f)
		return -ENOMEM;
	fc = ev->agg.frees;
	fb = ev->agg.free_bytes;
	if (!counted) {
		f->pre_c += ev->agg.allocs;
		f->pre_b += ev->agg.alloc_bytes;
		f->old_c += ev->agg.allocs;
		f->old_b += ev->agg.alloc_bytes;
	} else {
		f->rng_c += ev->agg.allocs;
		f->rng_b += ev->agg.alloc_bytes;
		take(&f->rng_c, &fc);
		take(&f->rng_b, &fb);
	}
	take(&f->old_c, &fc);
	take(&f->old_b, &fb);
	return counted;
}

/*
 * What depends on the stream alone, done by the reader: the thread filter
 * (an ALLOC of another thread becomes an event that counts, to keep the
 * capture's numbering, but changes nothing), ids beyond what a payload
 * writes, the highest node id.
 */
/* The thread record that stands for allocations before --from: its
 * vids are left out of every figure */
#define BEFORE_RANGE (MAX_RTHREADS + 1)

static int prep_one(struct prep *pp, struct ma_event *ev)
{
	struct ma_report *r = pp->r;

	if (pp->past_range) {
		/* after --to: counted as events (the capture's numbering),
		 * nothing else */
		ev->type = 0;
		return 0;
	}
	if (ev->type == MA_EV_SAMPLE && r->opts.to_ns &&
	    ev->sample.t_ns >= r->opts.to_ns) {
		/* the first sample at or past --to: what came before it is
		 * counted, and happened before its time */
		pp->past_range = true;
		r->range_end_ns = ev->sample.t_ns;
		/* the stacks' sums of an aggregated capture: as of their
		 * last round before it */
		if (ma_capture_meta(r->rd)->flags & MA_TRACK_AGG) {
			r->range_agg_cut = true;
			r->range_agg_end_ns = pp->last_agg_t_ns;
		}
		ev->type = 0;
		return 0;
	}
	if (ev->type == MA_EV_SAMPLE && !pp->in_range &&
	    ev->sample.t_ns >= r->opts.from_ns) {
		pp->in_range = true;
		r->range_start_ns = ev->sample.t_ns;
		pp->start_t_ns = ev->sample.t_ns;
		agg_range_start(pp);
	} else if (ev->type == MA_EV_SAMPLE && pp->in_range) {
		/* the rounds straddling the start are over: the processes'
		 * next ones count */
		for (size_t i = 0; i < pp->as_cap; i++)
			if (pp->as[i].phase == 1) {
				pp->as[i].phase = 2;
				r->range_agg_late_ns = ev->sample.t_ns;
			}
	}
	switch (ev->type) {
	case MA_EV_THREAD:
		if (r->thread_filtered && ev->thread < (1u << 20)) {
			/* --pid: selected once its PROC event names it */
			bool on = (!r->opts.nthreads ||
				   name_selected(&r->opts, ev->thr.tid,
						 ev->thr.name) ||
				   same_thread_named(pp, ev)) &&
				  !r->pid_filtered;

			if (thread_select(pp, ev->thread, on, ev->thr.tid,
					  ev->thr.name) < 0)
				return -ENOMEM;
		}
		if (ev->thread < (1u << 20) &&
		    thread_define(pp, ev,
				  !r->thread_filtered || pp->sel[ev->thread]) <
			    0)
			return -ENOMEM;
		break;
	case MA_EV_PROC: {
		/* a process added after the start of --from: its rounds hold
		 * nothing from before it */
		bool added = !ev->thread && pp->in_range && r->opts.from_ns &&
			     proc_find(pp, ev->proc.pid) < 0;
		long k;

		if (proc_event(pp, ev) < 0)
			return -ENOMEM;
		k = added ? proc_find(pp, ev->proc.pid) : -1;
		if (k >= 0) {
			struct aslot *a = aslot_at(pp, (size_t)k + 1);

			if (!a)
				return -ENOMEM;
			a->phase = 2;
		}
		break;
	}
	case MA_EV_TNAME:
		if (thread_rename(pp, ev) < 0)
			return -ENOMEM;
		break;
	case MA_EV_CODE:
		if (ev->code.id >= REPORT_MAX_CODE) {
			r->bad_ids++;
			ev->type = 0;
		}
		break;
	case MA_EV_ALLOC:
		if (ev->alloc.node >= REPORT_MAX_NODE) {
			r->bad_ids++;
			ev->alloc.node = 0;
		}
		if (r->thread_filtered &&
		    (ev->thread >= pp->sel_cap || !pp->sel[ev->thread])) {
			ev->type = 0;
			break;
		}
		if (ev->alloc.node > pp->max_node)
			pp->max_node = ev->alloc.node;
		if (!pp->in_range) {
			/* before --from: accounted (so that its free finds
			 * it) under a vid no figure includes */
			ev->alloc.node = vid_get(pp, BEFORE_RANGE, 0);
			if (!ev->alloc.node)
				return -ENOMEM;
			break;
		}
		stats_add(pp, ev,
			  ev->thread < pp->cur_cap ? pp->cur[ev->thread] : 0);
		if (!r->opts.by_thread)
			break;
		ev->alloc.node = vid_get(
			pp, ev->thread < pp->cur_cap ? pp->cur[ev->thread] : 0,
			ev->alloc.node);
		if (!ev->alloc.node)
			return -ENOMEM;
		break;
	case MA_EV_SAMPLE:
		pp->last_t_ns = ev->sample.t_ns;
		pp->nsamples++;
		break;
	case MA_EV_AGG:
	case MA_EV_AGGTEMP:
	case MA_EV_PEAK: {
		int counted;
		/* the node of the key the event is about */
		uint32_t *node = ev->type == MA_EV_AGG	  ? &ev->agg.node
				 : ev->type == MA_EV_PEAK ? &ev->peak.node
							  : &ev->aggtemp.node;

		if (*node >= REPORT_MAX_NODE) {
			r->bad_ids++;
			*node = 0;
		}
		if (r->thread_filtered &&
		    (ev->thread >= pp->sel_cap || !pp->sel[ev->thread])) {
			ev->type = 0;
			break;
		}
		if (*node > pp->max_node)
			pp->max_node = *node;
		if (ev->type != MA_EV_PEAK)
			pp->last_agg_t_ns = pp->last_t_ns;
		/* split by thread as allocations are (vid_get): the figures
		 * of a thread's stack are this key's */
		if (r->opts.by_thread) {
			*node = vid_get(pp,
					ev->thread < pp->cur_cap
						? pp->cur[ev->thread]
						: 0,
					*node);
			if (!*node)
				return -ENOMEM;
		}
		counted = 1;
		if (r->opts.from_ns && ev->type != MA_EV_PEAK)
			counted = agg_range(pp, ev);
		if (counted < 0)
			return -ENOMEM;
		/* an aggregated capture's allocations by allocator: the
		 * key's kind (no sizes one by one: no histogram) */
		if (ev->type == MA_EV_AGG && counted) {
			struct ma_account_fig *x =
				&r->stats.by_alloc[ralloc_of(ev->agg.kind)];

			x->count += ev->agg.allocs;
			x->bytes += ev->agg.alloc_bytes;
		}
		break;
	}
	case MA_EV_NODE:
		if (ev->node.id >= REPORT_MAX_NODE ||
		    ev->node.code >= REPORT_MAX_CODE) {
			r->bad_ids++;
			ev->type = 0;
			break;
		}
		if (ev->node.parent >= REPORT_MAX_NODE) {
			r->bad_ids++;
			ev->node.parent = 0;
		}
		if (ev->node.id > pp->max_node)
			pp->max_node = ev->node.id;
		break;
	default:
		break;
	}
	return 0;
}

/* Fill one batch; returns the reader's status (1 more, 0 end, <0) */
static int batch_fill(struct ma_capture_reader *rd, struct prep *pp,
		      struct batch *b)
{
	int ret = 1;

	batch_reset(b);
	while (b->n < BATCH_EVENTS && b->ncopies < BATCH_COPIES) {
		struct ma_event *ev = &b->ev[b->n];

		ret = ma_capture_next(rd, ev);
		if (ret <= 0)
			break;
		if ((ev->type == MA_EV_CODE && batch_keep_code(b, ev) < 0) ||
		    prep_one(pp, ev) < 0)
			return ma_err(-ENOMEM, "out of memory");
		b->n++;
	}
	b->offset = ma_capture_offset(rd);
	return ret;
}

static void pipe_fail(struct pipe *p, int err)
{
	/* under p->mu */
	if (!p->stop) {
		p->stop = true;
		p->status = err;
		snprintf(p->errmsg, sizeof(p->errmsg), "%s", ma_errmsg());
	}
}

static void *producer(void *arg)
{
	struct pipe *p = arg;
	int ret = 1;

	while (ret > 0) {
		struct batch *b;
		size_t low;

		pthread_mutex_lock(&p->mu);
		for (;;) {
			low = p->tail[0] < p->tail[1] ? p->tail[0] : p->tail[1];
			if (p->stop || p->head - low < NBATCH)
				break;
			pthread_cond_wait(&p->cv, &p->mu);
		}
		if (p->stop) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		b = p->b[p->head % NBATCH];
		pthread_mutex_unlock(&p->mu);

		ret = batch_fill(p->rd, p->prep, b);

		pthread_mutex_lock(&p->mu);
		p->head++;
		if (ret < 0)
			pipe_fail(p, ret);
		else if (ret == 0)
			p->done = true;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	p->cpu_read_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	return NULL;
}

/* What the accounting consumer keeps */
struct feeder {
	struct ma_report *r;
	uint64_t file_size, batches; /* for the progress callback */
	uint64_t live_max; /* highest live bytes since the last point */
	uint64_t last_t, last_rss;
	uint64_t countdown; /* events to the next index point */
	bool have_sample;
	struct ma_timeline *tl; /* opts.timeline */
};

static int series_push(struct ma_rseries *s, const struct ma_rpoint *pt)
{
	if (s->n == s->cap) {
		if (s->cap >= 4096) {
			/* Bounded: merge pairs, keeping the later point and
			 * the higher of the two maxima, and take points half
			 * as often from now on */
			size_t j = 0;

			for (size_t i = 0; i + 1 < s->n; i += 2) {
				struct ma_rpoint m = s->p[i + 1];

				if (s->p[i].live_max > m.live_max)
					m.live_max = s->p[i].live_max;
				s->p[j++] = m;
			}
			if (s->n % 2)
				s->p[j++] = s->p[s->n - 1];
			s->n = j;
			s->every *= 2;
		} else {
			size_t cap = s->cap ? s->cap * 2 : 256;
			struct ma_rpoint *p = realloc(s->p, cap * sizeof(*p));

			if (!p)
				return -ENOMEM;
			s->p = p;
			s->cap = cap;
		}
	}
	s->p[s->n++] = *pt;
	return 0;
}

static int feed_one(struct feeder *fd, const struct ma_event *ev)
{
	struct ma_report *r = fd->r;
	const struct ma_account_totals *t;
	int ret;

	if (fd->tl && ma_timeline_before(fd->tl, r->acc, ev) < 0)
		return ma_err(-ENOMEM, "out of memory");
	ret = ma_account_feed(r->acc, ev);
	if (ret < 0)
		return ret;
	if (fd->tl && ma_timeline_after(fd->tl, r->acc, ev) < 0)
		return ma_err(-ENOMEM, "out of memory");
	t = ma_account_totals(r->acc);
	if (t->live_bytes > fd->live_max)
		fd->live_max = t->live_bytes;
	if (ev->type == MA_EV_SAMPLE) {
		struct ma_rpoint pt = { .index = ev->index,
					.t_ns = ev->sample.t_ns,
					.rss = ev->sample.rss,
					.live = t->live_bytes,
					.live_max = fd->live_max };

		fd->last_t = ev->sample.t_ns;
		fd->last_rss = ev->sample.rss;
		fd->have_sample = true;
		fd->live_max = t->live_bytes;
		if (series_push(&r->by_time, &pt) < 0)
			return ma_err(-ENOMEM, "out of memory");
	}
	if (--fd->countdown == 0) {
		struct ma_rpoint pt = { .index = t->events,
					.t_ns = fd->last_t,
					.rss = fd->last_rss,
					.live = t->live_bytes,
					.live_max = fd->live_max };

		if (!fd->have_sample)
			fd->live_max = t->live_bytes;
		if (series_push(&r->by_index, &pt) < 0)
			return ma_err(-ENOMEM, "out of memory");
		fd->countdown = r->by_index.every;
	}
	return 0;
}

/*
 * Account a batch.  The live map's slot of each pointer (and an ALLOC's
 * node) is prefetched a few events ahead: with millions of live blocks
 * nearly every ALLOC and FREE would otherwise stall on a cache miss.
 */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 12
#endif

static int account_batch(struct feeder *fd, const struct batch *b)
{
	struct ma_account *acc = fd->r->acc;
	size_t n = b->n;
	int ret = 0;

	for (size_t i = 0; i < n && ret == 0; i++) {
		if (i + PREFETCH_AHEAD < n)
			ma_account_prefetch(acc, &b->ev[i + PREFETCH_AHEAD]);
		ret = feed_one(fd, &b->ev[i]);
	}
	if (fd->r->opts.progress && ++fd->batches % 16 == 0)
		fd->r->opts.progress(fd->r->opts.progress_arg, b->offset,
				     fd->file_size,
				     ma_account_totals(acc)->events);
	return ret;
}

static int temporary_batch(struct ma_temporary *t, const struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		const struct ma_event *ev = &b->ev[i];

		if ((ev->type == MA_EV_ALLOC || ev->type == MA_EV_FREE ||
		     ev->type == MA_EV_AGGTEMP) &&
		    ma_temporary_feed(t, ev) < 0)
			return ma_err(-ENOMEM, "out of memory");
	}
	return 0;
}

struct consumer {
	struct pipe *p;
	int role; /* 0 accounting, 1 temporary */
	struct feeder *fd;
	struct ma_temporary *temp;
	uint64_t cpu_ns; /* CPU time of this consumer */
};

static void *consume(void *arg)
{
	struct consumer *c = arg;
	struct pipe *p = c->p;
	uint64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);

	for (;;) {
		struct batch *b;
		int ret;

		pthread_mutex_lock(&p->mu);
		while (!p->stop && p->tail[c->role] == p->head && !p->done)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop || p->tail[c->role] == p->head) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		b = p->b[p->tail[c->role] % NBATCH];
		pthread_mutex_unlock(&p->mu);

		ret = c->role ? temporary_batch(c->temp, b)
			      : account_batch(c->fd, b);

		pthread_mutex_lock(&p->mu);
		p->tail[c->role]++;
		if (ret < 0)
			pipe_fail(p, ret);
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		if (ret < 0)
			break;
	}
	c->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	return NULL;
}

static int stream(struct ma_report *r, struct prep *pp, struct feeder *fd)
{
	struct pipe p = { .rd = r->rd, .prep = pp };
	struct consumer acc = { .p = &p, .role = 0, .fd = fd };
	struct consumer tmp = { .p = &p, .role = 1, .temp = r->temp };
	pthread_t th_read, th_temp;
	int ret = 0;

	for (int i = 0; i < NBATCH; i++) {
		p.b[i] = calloc(1, sizeof(struct batch));
		if (!p.b[i]) {
			ret = ma_err(-ENOMEM, "out of memory");
			goto out;
		}
	}
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	if (pthread_create(&th_read, NULL, producer, &p)) {
		/* No threads: decode, account and track in turn */
		int s;

		do {
			s = batch_fill(r->rd, pp, p.b[0]);
			ret = account_batch(fd, p.b[0]);
			if (ret == 0)
				ret = temporary_batch(r->temp, p.b[0]);
		} while (s > 0 && ret == 0);
		if (ret == 0 && s < 0)
			ret = s;
		goto destroy;
	}
	if (pthread_create(&th_temp, NULL, consume, &tmp)) {
		/* the temporary tracker in turn with the accounting */
		pthread_mutex_lock(&p.mu);
		pipe_fail(&p, ma_err(-EAGAIN, "cannot start a "
					      "thread"));
		pthread_cond_broadcast(&p.cv);
		pthread_mutex_unlock(&p.mu);
		pthread_join(th_read, NULL);
		ret = p.status;
		goto destroy;
	}
	consume(&acc);
	pthread_join(th_temp, NULL);
	pthread_join(th_read, NULL);
	r->cpu_read_ns = p.cpu_read_ns;
	r->cpu_account_ns = acc.cpu_ns;
	r->cpu_temp_ns = tmp.cpu_ns;
	if (p.status < 0) {
		ma_err(p.status, "%s", p.errmsg);
		ret = p.status;
	}
destroy:
	pthread_mutex_destroy(&p.mu);
	pthread_cond_destroy(&p.cv);
out:
	for (int i = 0; i < NBATCH; i++) {
		if (p.b[i])
			batch_reset(p.b[i]);
		free(p.b[i]);
	}
	return ret;
}

/* ------------------------------------------------------------------ */
/* The canonical frame tree */

struct tkey {
	uint32_t parent;
	int line;
	const char *function, *file;
	uint32_t node; /* index + 1, 0 = empty */
};

struct tree_build {
	struct ma_report *r;
	size_t cap;
	struct tkey *h;
	size_t h_cap, h_n;
	uint32_t *canon; /* accounting node id -> tree node, 0 = not yet */
	uint8_t *state;	 /* 0 new, 1 on the walk, 2 done */
	uint32_t max_node;
};

static uint64_t tkey_hash(uint32_t parent, const char *fn, const char *file,
			  int line)
{
	uint64_t h = (uint64_t)parent * 0x9e3779b97f4a7c15ull;

	h ^= (uint64_t)(uintptr_t)fn * 0xff51afd7ed558ccdull;
	h ^= (uint64_t)(uintptr_t)file * 0xc4ceb9fe1a85ec53ull;
	h ^= (uint64_t)(uint32_t)line * 0x2545f4914f6cdd1dull;
	return h ^ (h >> 29);
}

static int tree_rehash(struct tree_build *b, size_t cap)
{
	struct tkey *h = calloc(cap, sizeof(*h));

	if (!h)
		return -ENOMEM;
	for (size_t i = 0; i < b->h_cap; i++) {
		const struct tkey *k = &b->h[i];
		size_t j;

		if (!k->node)
			continue;
		for (j = tkey_hash(k->parent, k->function, k->file, k->line) &
			 (cap - 1);
		     h[j].node; j = (j + 1) & (cap - 1))
			;
		h[j] = *k;
	}
	free(b->h);
	b->h = h;
	b->h_cap = cap;
	return 0;
}

/* The child of parent for this frame, created on demand; 0 on ENOMEM */
static uint32_t tree_child(struct tree_build *b, uint32_t parent,
			   const struct ma_frame *f)
{
	struct ma_report *r = b->r;
	struct ma_rnode *n;
	size_t j;

	if ((b->h_n + 1) * 2 > b->h_cap &&
	    tree_rehash(b, b->h_cap ? b->h_cap * 2 : 1024) < 0)
		return 0;
	for (j = tkey_hash(parent, f->function, f->file, f->line) &
		 (b->h_cap - 1);
	     b->h[j].node; j = (j + 1) & (b->h_cap - 1)) {
		const struct tkey *k = &b->h[j];

		if (k->parent == parent && k->function == f->function &&
		    k->file == f->file && k->line == f->line)
			return k->node - 1;
	}
	if (r->nnodes == b->cap) {
		size_t cap = b->cap * 2;
		struct ma_rnode *p = realloc(r->nodes, cap * sizeof(*p));

		if (!p)
			return 0;
		r->nodes = p;
		b->cap = cap;
	}
	n = &r->nodes[r->nnodes];
	memset(n, 0, sizeof(*n));
	n->parent = parent;
	n->depth = r->nodes[parent].depth + 1;
	n->function = f->function;
	n->file = f->file;
	n->line = f->line;
	n->firstlineno = f->firstlineno;
	n->match = r->nodes[parent].match ||
		   (r->opts.filter && (strstr(f->function, r->opts.filter) ||
				       strstr(f->file, r->opts.filter)));
	b->h[j] = (struct tkey){ .parent = parent,
				 .line = f->line,
				 .function = f->function,
				 .file = f->file,
				 .node = (uint32_t)r->nnodes + 1 };
	b->h_n++;
	return (uint32_t)r->nnodes++;
}

/* Tree node of accounting node id: walk up to a resolved ancestor (or the
 * root), then create the chain top-down.  A cycle (corrupt capture) or an
 * absurd depth ends the walk at the root. */
static int tree_resolve(struct tree_build *b, uint32_t id, uint32_t **walk,
			size_t *walk_cap)
{
	struct ma_frame fr[2];
	size_t n = 0;
	uint32_t cur = id, parent_tree = 0;

	while (cur && !b->state[cur]) {
		int d;

		if (n == *walk_cap) {
			size_t cap = *walk_cap ? *walk_cap * 2 : 256;
			uint32_t *p = realloc(*walk, cap * sizeof(*p));

			if (!p)
				return -ENOMEM;
			*walk = p;
			*walk_cap = cap;
		}
		(*walk)[n++] = cur;
		b->state[cur] = 1;
		d = ma_account_node_frames(b->r->acc, cur, fr, 2);
		cur = d >= 2 ? fr[1].node : 0;
		if (cur > b->max_node) /* cannot happen: defensive */
			cur = 0;
		if (n >= MA_REPORT_MAX_DEPTH)
			cur = 0;
	}
	if (cur && b->state[cur] == 2)
		parent_tree = b->canon[cur];
	/* cur on the walk (state 1) is a cycle: start from the root */
	while (n) {
		uint32_t c = (*walk)[--n];
		struct ma_frame f;

		ma_account_node_frames(b->r->acc, c, &f, 1);
		if (b->r->nodes[parent_tree].depth >= MA_REPORT_MAX_DEPTH)
			parent_tree = 0;
		parent_tree = tree_child(b, parent_tree, &f);
		if (!parent_tree)
			return -ENOMEM;
		b->canon[c] = parent_tree;
		b->state[c] = 2;
	}
	return 0;
}

static int fig_nonzero(const struct ma_account_fig *f)
{
	for (int v = 0; v < MA_RV_N; v++)
		if (f[v].bytes || f[v].count)
			return 1;
	return 0;
}

/* a -= b, not below 0 */
static void fig_sub(struct ma_account_fig *a, const struct ma_account_fig *b)
{
	a->bytes = a->bytes > b->bytes ? a->bytes - b->bytes : 0;
	a->count = a->count > b->count ? a->count - b->count : 0;
}

static int sample_cmp(const void *pa, const void *pb)
{
	const struct ma_rsample *a = pa, *b = pb;

	if (a->node != b->node)
		return a->node < b->node ? -1 : 1;
	return a->thread < b->thread ? -1 : a->thread > b->thread;
}

/* Samples of one (tree node, thread) merged: vids whose nodes differ only
 * in their bytecode offset are one tree node */
static void merge_samples(struct ma_report *r)
{
	size_t j = 0;

	if (!r->nsamples)
		return;
	qsort(r->samples, r->nsamples, sizeof(*r->samples), sample_cmp);
	for (size_t i = 1; i < r->nsamples; i++) {
		struct ma_rsample *a = &r->samples[j], *b = &r->samples[i];

		if (a->node == b->node && a->thread == b->thread) {
			for (int v = 0; v < MA_RV_N; v++) {
				a->fig[v].bytes += b->fig[v].bytes;
				a->fig[v].count += b->fig[v].count;
			}
		} else {
			r->samples[++j] = *b;
		}
	}
	r->nsamples = j + 1;
}

static int span_cmp(const void *pa, const void *pb)
{
	const struct ma_rspan *a = pa, *b = pb;

	if (a->node != b->node)
		return a->node < b->node ? -1 : 1;
	if (a->thread != b->thread)
		return a->thread < b->thread ? -1 : 1;
	if (a->ab != b->ab)
		return a->ab < b->ab ? -1 : 1;
	return a->fb < b->fb ? -1 : a->fb > b->fb;
}

/* Spans sorted, equal keys merged, those within one bucket dropped */
static void spans_merge(struct ma_report *r)
{
	size_t j = 0;

	qsort(r->spans, r->nspans, sizeof(*r->spans), span_cmp);
	for (size_t i = 0; i < r->nspans; i++) {
		if (r->spans[i].ab == r->spans[i].fb)
			continue;
		if (j && !span_cmp(&r->spans[j - 1], &r->spans[i])) {
			r->spans[j - 1].bytes += r->spans[i].bytes;
			r->spans[j - 1].count += r->spans[i].count;
		} else {
			r->spans[j++] = r->spans[i];
		}
	}
	r->nspans = j;
}

/* The timeline's figures by vid become figures by (tree node, thread),
 * for matching stacks only (--filter) */
/* spans in the page at most, beyond: coarser buckets (about 20 bytes
 * each in the HTML file) */
#define SPAN_BUDGET 1000000

static int timeline_spans(struct ma_report *r, struct ma_timeline *tl,
			  const uint32_t *vtn, const uint32_t *vth,
			  uint32_t nvid)
{
	const struct ma_account_totals *t = &r->t;
	uint64_t end = r->trailer && r->trailer->duration_ns
			       ? r->trailer->duration_ns
			       : t->last_t_ns;
	struct ma_tspan *sp;
	size_t n, j = 0;

	if (ma_timeline_finish(tl, end, &r->tl_bounds, &r->tl_nbound, &sp, &n) <
	    0)
		return -ENOMEM;
	r->tl_approx = ma_timeline_approx(tl);
	r->tl_bythread = true;
	r->spans = malloc((n ? n : 1) * sizeof(*r->spans));
	if (!r->spans) {
		free(sp);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t v = sp[i].vid;

		if (v > nvid || !vtn[v] || !r->nodes[vtn[v]].match)
			continue;
		r->spans[j++] = (struct ma_rspan){ .node = vtn[v],
						   .thread = vth[v],
						   .ab = sp[i].ab,
						   .fb = sp[i].fb,
						   .bytes = sp[i].bytes,
						   .count = sp[i].count };
	}
	free(sp);
	r->nspans = j;
	spans_merge(r);
	/* a bounded page: beyond the budget, spans of all threads together
	 * (a range then applies to all threads), then buckets two by two
	 * (each merge drops the spans that fall within one bucket) */
	if (r->nspans > SPAN_BUDGET) {
		for (size_t i = 0; i < r->nspans; i++)
			r->spans[i].thread = UINT32_MAX;
		r->tl_bythread = false;
		spans_merge(r);
	}
	while (r->nspans > SPAN_BUDGET && r->tl_nbound > 4) {
		size_t nb = r->tl_nbound, nb2 = (nb + 1) / 2;

		for (size_t i = 0; i < r->nspans; i++) {
			struct ma_rspan *x = &r->spans[i];

			x->ab >>= 1;
			x->fb = x->fb == nb ? (uint32_t)nb2 : x->fb >> 1;
		}
		for (size_t c = 1; c < nb2; c++)
			r->tl_bounds[c] = r->tl_bounds[2 * c];
		r->tl_bounds[nb2] = r->tl_bounds[nb];
		r->tl_nbound = nb2;
		spans_merge(r);
	}
	return 0;
}

static int build_tree(struct ma_report *r, const struct prep *pp,
		      struct ma_timeline *tl)
{
	uint32_t *vtn = NULL; /* vid -> tree node (timeline) */
	/* --from on an aggregated capture: per vid, what its keys allocated
	 * before the range (total) and what is left of it (live) */
	struct ma_account_fig *pre = NULL, *old = NULL;
	bool agg_from = r->opts.from_ns && r->t.agg_events;
	struct tree_build b = { .r = r, .cap = 1024, .max_node = pp->max_node };
	uint32_t *walk = NULL, nopy = 0, nvid;
	size_t walk_cap = 0;
	int ret = 0;

	r->nodes = calloc(b.cap, sizeof(*r->nodes));
	b.canon = calloc((size_t)pp->max_node + 1, sizeof(*b.canon));
	b.state = calloc((size_t)pp->max_node + 1, 1);
	/* without by_thread, ALLOCs kept their node ids: vid = node, and
	 * every figure is thread 0's */
	nvid = r->opts.by_thread ? pp->nvid : pp->max_node;
	r->samples = calloc((size_t)nvid + 1, sizeof(*r->samples));
	if (tl)
		vtn = calloc((size_t)nvid + 1, sizeof(*vtn));
	if (agg_from) {
		pre = calloc((size_t)nvid + 1, sizeof(*pre));
		old = calloc((size_t)nvid + 1, sizeof(*old));
	}
	if (!r->nodes || !b.canon || !b.state || !r->samples || (tl && !vtn) ||
	    (agg_from && (!pre || !old))) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; agg_from && i < pp->af_cap; i++) {
		const struct afix *x = &pp->af[i];
		uint64_t vid = (x->key - 1) >> 8;

		if (!x->key || vid > nvid)
			continue;
		pre[vid].count += x->pre_c;
		pre[vid].bytes += x->pre_b;
		old[vid].count += x->old_c;
		old[vid].bytes += x->old_b;
	}
	r->nnodes = 1; /* the root */
	r->nodes[0].function = "";
	r->nodes[0].file = "";
	r->nodes[0].match = !r->opts.filter;

	/* By thread, vid 0 is none (vid_get numbers from 1); without, vids
	 * are the capture's node ids and node 0 holds the allocations with
	 * no Python frame (a new thread's stack, mapped before it runs any
	 * Python), which every view must count */
	for (uint32_t vid = r->opts.by_thread ? 1 : 0; vid <= nvid; vid++) {
		struct ma_account_fig f[MA_RV_N];
		uint32_t id = r->opts.by_thread ? pp->vid_node[vid] : vid;
		uint32_t th = r->opts.by_thread ? pp->vid_thread[vid] : 0;
		struct ma_rthread *t;
		struct ma_rnode *n;
		uint32_t tn;

		if (th == BEFORE_RANGE)
			continue; /* before --from */
		t = &r->threads[th];

		ma_account_node_figs(r->acc, vid, &f[MA_RV_LIVE],
				     &f[MA_RV_TOTAL], &f[MA_RV_PEAK]);
		ma_temporary_node(r->temp, vid, &f[MA_RV_TEMP]);
		if (agg_from) {
			fig_sub(&f[MA_RV_TOTAL], &pre[vid]);
			fig_sub(&f[MA_RV_LIVE], &old[vid]);
			/* the keys' figures at the peak mix the range's
			 * blocks with older ones: see peak_of_range() */
			f[MA_RV_PEAK] = (struct ma_account_fig){ 0 };
		}
		if (!fig_nonzero(f))
			continue;
		if (id == 0) {
			/* Allocations with no Python frame at all */
			struct ma_frame np = { .function = "<no Python frame>",
					       .file = "",
					       .line = -1 };

			if (!nopy)
				nopy = tree_child(&b, 0, &np);
			if (!nopy) {
				ret = -ENOMEM;
				goto out;
			}
			tn = nopy;
		} else {
			if (!b.state[id]) {
				ret = tree_resolve(&b, id, &walk, &walk_cap);
				if (ret < 0)
					goto out;
			}
			tn = b.canon[id];
		}
		n = &r->nodes[tn];
		if (vtn)
			vtn[vid] = tn;
		r->samples[r->nsamples].node = tn;
		r->samples[r->nsamples].thread = th;
		for (int v = 0; v < MA_RV_N; v++) {
			r->samples[r->nsamples].fig[v] = f[v];
			n->self[v].bytes += f[v].bytes;
			n->self[v].count += f[v].count;
			r->all[v].bytes += f[v].bytes;
			r->all[v].count += f[v].count;
			if (n->match) {
				r->sum[v].bytes += f[v].bytes;
				r->sum[v].count += f[v].count;
				t->fig[v].bytes += f[v].bytes;
				t->fig[v].count += f[v].count;
			}
		}
		r->nsamples++;
	}
	/* the tree nodes of the largest allocations */
	for (size_t i = 0; i < r->stats.nbig; i++) {
		struct ma_rbig *g = &r->stats.big[i];
		uint32_t id = g->capnode;

		if (!id || id > pp->max_node) {
			g->node = nopy;
			continue;
		}
		if (!b.state[id]) {
			ret = tree_resolve(&b, id, &walk, &walk_cap);
			if (ret < 0)
				goto out;
		}
		g->node = b.canon[id];
	}
	merge_samples(r);
	if (tl)
		ret = timeline_spans(r, tl, vtn, pp->vid_thread, nvid);
out:
	free(pre);
	free(old);
	free(vtn);
	free(walk);
	free(b.canon);
	free(b.state);
	free(b.h);
	if (ret < 0)
		return ma_err(ret, "out of memory");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Rows */

struct rkey {
	const char *function, *file;
	int line;
	uint32_t row; /* index + 1 */
};

static uint64_t rkey_hash(const char *fn, const char *file, int line)
{
	return tkey_hash(0, fn, file, line);
}

static enum ma_rview sort_view;

static int row_cmp(const void *pa, const void *pb)
{
	const struct ma_rrow *a = pa, *b = pb;
	enum ma_rview v = sort_view;
	int c;

	if (a->fig[v].bytes != b->fig[v].bytes)
		return a->fig[v].bytes > b->fig[v].bytes ? -1 : 1;
	if (a->fig[v].count != b->fig[v].count)
		return a->fig[v].count > b->fig[v].count ? -1 : 1;
	if (a->fig[MA_RV_TOTAL].bytes != b->fig[MA_RV_TOTAL].bytes)
		return a->fig[MA_RV_TOTAL].bytes > b->fig[MA_RV_TOTAL].bytes
			       ? -1
			       : 1;
	c = ma_location_cmp(a->file, a->function, a->line, b->file, b->function,
			    b->line);
	if (c)
		return c;
	return a->rep < b->rep ? -1 : a->rep > b->rep;
}

static int build_rows(struct ma_report *r)
{
	enum ma_account_view g = r->opts.group;
	enum ma_rview v = r->opts.view;
	struct rkey *h = NULL;
	size_t hcap = 64, cap = 0;
	uint32_t *order;

	if (g != MA_VIEW_STACK) {
		while (hcap < r->nnodes * 2)
			hcap *= 2;
		h = calloc(hcap, sizeof(*h));
		if (!h)
			return ma_err(-ENOMEM, "out of memory");
	}
	for (size_t i = 1; i < r->nnodes; i++) {
		struct ma_rnode *n = &r->nodes[i];
		struct ma_rrow *row = NULL;
		const char *fn = g == MA_VIEW_FILE ? NULL : n->function;
		int line = g == MA_VIEW_LINE || g == MA_VIEW_STACK ? n->line
			   : g == MA_VIEW_FUNCTION ? n->firstlineno
						   : 0;
		size_t j = 0;

		if (!n->match || !fig_nonzero(n->self))
			continue;
		if (h) {
			for (j = rkey_hash(fn, n->file, line) & (hcap - 1);
			     h[j].row; j = (j + 1) & (hcap - 1))
				if (h[j].function == fn &&
				    h[j].file == n->file && h[j].line == line) {
					row = &r->rows[h[j].row - 1];
					break;
				}
		}
		if (!row) {
			if (r->nrows == cap) {
				size_t c = cap ? cap * 2 : 64;
				struct ma_rrow *p =
					realloc(r->rows, c * sizeof(*p));

				if (!p) {
					free(h);
					return ma_err(-ENOMEM, "out of memory");
				}
				r->rows = p;
				cap = c;
			}
			row = &r->rows[r->nrows++];
			memset(row, 0, sizeof(*row));
			row->function = fn;
			row->file = n->file;
			row->line = line;
			row->rep = (uint32_t)i;
			if (h)
				h[j] = (struct rkey){
					.function = fn,
					.file = n->file,
					.line = line,
					.row = (uint32_t)r->nrows
				};
		} else {
			const struct ma_rnode *rep = &r->nodes[row->rep];

			if (n->self[v].bytes > rep->self[v].bytes ||
			    (n->self[v].bytes == rep->self[v].bytes &&
			     n->self[v].count > rep->self[v].count))
				row->rep = (uint32_t)i;
		}
		for (int k = 0; k < MA_RV_N; k++) {
			row->fig[k].bytes += n->self[k].bytes;
			row->fig[k].count += n->self[k].count;
		}
	}
	free(h);
	sort_view = v;
	if (r->nrows)
		qsort(r->rows, r->nrows, sizeof(*r->rows), row_cmp);
	/* node -> row, after sorting (the text caller trees use it) */
	order = calloc(r->nrows + 1, sizeof(*order));
	if (!order)
		return ma_err(-ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nrows; i++)
		order[i] = r->rows[i].rep;
	for (size_t i = 0; i < r->nrows; i++)
		r->nodes[order[i]].row = (uint32_t)i + 1;
	free(order);
	return 0;
}

/* Row of each member node: matched by key against the row table with a
 * hash of the rows (the representatives already know theirs) */
static int link_rows(struct ma_report *r)
{
	enum ma_account_view g = r->opts.group;
	struct rkey *h;
	size_t hcap = 64;

	if (g == MA_VIEW_STACK)
		return 0;
	while (hcap < r->nrows * 2)
		hcap *= 2;
	h = calloc(hcap, sizeof(*h));
	if (!h)
		return ma_err(-ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nrows; i++) {
		const struct ma_rrow *row = &r->rows[i];
		size_t j;

		for (j = rkey_hash(row->function, row->file, row->line) &
			 (hcap - 1);
		     h[j].row; j = (j + 1) & (hcap - 1))
			;
		h[j] = (struct rkey){ .function = row->function,
				      .file = row->file,
				      .line = row->line,
				      .row = (uint32_t)i + 1 };
	}
	for (size_t i = 1; i < r->nnodes; i++) {
		struct ma_rnode *n = &r->nodes[i];
		const char *fn = g == MA_VIEW_FILE ? NULL : n->function;
		int line = g == MA_VIEW_LINE	   ? n->line
			   : g == MA_VIEW_FUNCTION ? n->firstlineno
						   : 0;

		if (n->row || !n->match || !fig_nonzero(n->self))
			continue;
		for (size_t j = rkey_hash(fn, n->file, line) & (hcap - 1);
		     h[j].row; j = (j + 1) & (hcap - 1))
			if (h[j].function == fn && h[j].file == n->file &&
			    h[j].line == line) {
				n->row = h[j].row;
				break;
			}
	}
	free(h);
	return 0;
}

/* ------------------------------------------------------------------ */

/*
 * --from/--to: the header's figures are the range's.  The accounting's
 * totals include the blocks from before --from (so that their frees find
 * them): its allocations, frees, live and peak figures are replaced by
 * those of the blocks allocated in the range (frees: of those blocks, by
 * --to); the peak is the range's blocks at the moment tracked memory was
 * highest up to --to, a moment that may lie before --from.
 */
static void range_totals(struct ma_report *r, const struct prep *pp)
{
	struct ma_account_totals *t = &r->t;

	if (!pp->in_range) { /* --from beyond the last sample */
		r->range_start_ns = r->opts.from_ns;
		r->range_end_ns = r->opts.from_ns;
	}
	if (!pp->past_range)
		r->range_end_ns = 0;
	if (!r->opts.from_ns)
		return;
	t->allocs = r->all[MA_RV_TOTAL].count;
	t->alloc_bytes = r->all[MA_RV_TOTAL].bytes;
	t->frees = r->all[MA_RV_TOTAL].count - r->all[MA_RV_LIVE].count;
	t->live_bytes = r->all[MA_RV_LIVE].bytes;
	t->live_count = r->all[MA_RV_LIVE].count;
	t->peak_bytes = r->all[MA_RV_PEAK].bytes;
	t->peak_count = r->all[MA_RV_PEAK].count;
}

/*
 * --from on an aggregated capture: the payload saved each key's figures
 * at the peak, which mix the range's blocks with older ones of the same
 * key, and no figure says how many of them were the range's.  Only a peak
 * that came before the range is known: the range's blocks did not exist
 * yet, so 0.
 */
static void agg_range_peak(struct ma_report *r)
{
	const struct ma_account_totals *t = &r->t;

	if (t->agg_peak && t->peak_before_ns &&
	    t->peak_before_ns <= r->range_start_ns)
		return;
	r->peak_unknown = true;
	r->peak_note = "not known for a --from range of an aggregated "
		       "capture: its stacks' figures at the peak do not say "
		       "which blocks were allocated in the range (attach with "
		       "--every-event for it)";
}

/*
 * --thread, --pid on an aggregated capture.  The accounting's peak is the
 * AGGEND's, the whole capture's; the payload saved each key's figures at
 * its own process's peak (PEAK events), which the peak view sums for the
 * selected threads: the header's peak is that sum.  For threads, the
 * figures at their process's peak, not at a peak of their own (which the
 * capture does not hold); for processes, each one's own peak, whose
 * moment the capture holds for the largest only.
 */
static void filtered_agg_peak(struct ma_report *r)
{
	r->t.peak_bytes = r->all[MA_RV_PEAK].bytes;
	r->t.peak_count = r->all[MA_RV_PEAK].count;
	if (r->nprocs) {
		r->peak_moment_unknown = true;
		r->peak_note =
			r->opts.nthreads
				? "what the selected threads held at their "
				  "process's own peak (an aggregated capture "
				  "keeps each stack's figures at that moment "
				  "only)"
				: "each selected process's blocks at its own "
				  "peak (the capture holds the moment of the "
				  "largest process's only)";
	} else {
		r->peak_note = "what the selected threads held at the "
			       "process's peak (an aggregated capture keeps "
			       "each stack's figures at that moment only; "
			       "attach with --every-event for their own "
			       "peak)";
	}
}

/* --thread named no thread of the capture: say which there are */
static int no_thread_matched(const struct ma_report *r)
{
	char asked[256] = "", have[768] = "";
	size_t n = 0;

	for (int i = 0; i < r->opts.nthreads; i++) {
		n = strlen(asked);
		snprintf(asked + n, sizeof(asked) - n, "%s'%s'",
			 !i			     ? ""
			 : i + 1 == r->opts.nthreads ? " or "
						     : ", ",
			 r->opts.threads[i]);
	}
	/* with --pid: the threads of those processes, whose are asked for
	 * (a thread of another process is not one of theirs) */
	for (size_t i = 1, k = 0; i < r->nthreads; i++) {
		bool of_sel = false;

		for (int j = 0; j < r->opts.npids; j++)
			of_sel |= r->threads[i].pid == r->opts.pids[j];
		if (r->pid_filtered && !of_sel)
			continue;
		n = strlen(have);
		snprintf(have + n, sizeof(have) - n, "%s%d \"%s\"",
			 k++ ? ", " : "", r->threads[i].tid,
			 r->threads[i].name);
	}
	if (r->pid_filtered)
		ma_err(-ESRCH,
		       "no thread of process %s in %s is %s (a kernel thread "
		       "id or name); its threads: %s (--thread and --pid "
		       "select together)",
		       r->pid_desc, r->path, asked, have[0] ? have : "none");
	else
		ma_err(-ESRCH,
		       "no thread of %s is %s (a kernel thread id or name); "
		       "its threads: %s (memattach report --threads lists "
		       "them with their figures)",
		       r->path, asked, have[0] ? have : "none");
	ma_err_set_exit(MA_EXIT_USAGE);
	return -ESRCH;
}

static int no_proc_matched(const struct ma_report *r)
{
	char have[512] = "";
	size_t n;

	for (size_t i = 0; i < r->nprocs; i++) {
		n = strlen(have);
		snprintf(have + n, sizeof(have) - n, "%s%d", i ? ", " : "",
			 (int)r->procs[i].pid);
	}
	ma_err(-ESRCH, "no process of %s has the PID asked for (--pid); %s%s%s",
	       r->path, r->nprocs ? "its processes: " : "",
	       r->nprocs ? have : "it holds one process (",
	       r->nprocs ? " (memattach report --pids lists them with their "
			   "figures)"
			 : "a capture of attach without --children)");
	ma_err_set_exit(MA_EXIT_USAGE);
	return -ESRCH;
}

static void prep_free(struct prep *pp)
{
	free(pp->as);
	free(pp->af);
	free(pp->ph);
	free(pp->sel);
	free(pp->cur);
	free(pp->vh);
	free(pp->vid_node);
	free(pp->vid_thread);
	for (size_t i = 0; i < pp->map_cap; i++)
		free(pp->map[i].vid);
	free(pp->map);
	memset(pp, 0, sizeof(*pp));
}

int ma_report_load(const char *path, const struct ma_report_opts *o,
		   struct ma_report **out)
{
	struct ma_report *r = calloc(1, sizeof(*r));
	struct feeder fd = { 0 };
	struct prep pp = { 0 };
	uint64_t t0;
	int ret;

	*out = NULL;
	if (!r)
		return ma_err(-ENOMEM, "out of memory");
	r->path = path;
	r->opts = *o;
	r->thread_filtered = o->nthreads > 0 || o->npids > 0;
	r->pid_filtered = o->npids > 0;
	/* --from needs the (thread, stack) split: allocations before it go
	 * to a thread of their own, left out of every figure */
	r->ranged = o->from_ns || o->to_ns;
	if (o->from_ns || o->timeline)
		r->opts.by_thread = true;
	pp.in_range = !o->from_ns;
	r->by_index.every = 1 << 12;
	fd.countdown = r->by_index.every;
	fd.r = r;
	pp.r = r;
	/* thread 0: allocations of threads the capture never defined, and
	 * in an aggregated capture those of the threads whose keys the
	 * payload folded (started after the first 1,024 of a session, or
	 * once its key table was 3/4 full: injector/agg.c, key_slow) */
	pp.threads_cap = 16;
	r->threads = calloc(pp.threads_cap, sizeof(*r->threads));
	if (!r->threads || !(r->threads[0].name = strdup("(other threads)"))) {
		ma_report_free(r);
		return ma_err(-ENOMEM, "out of memory");
	}
	strcpy(r->threads[0].comm, "?");
	r->threads[0].index = UINT32_MAX;
	r->threads[0].selected = !r->thread_filtered;
	r->nthreads = 1;
	ret = ma_capture_open(path, &r->rd);
	if (ret < 0)
		goto fail;
	/* several processes: a process's figures are its threads', so the
	 * model splits by thread */
	if (ma_capture_meta(r->rd)->flags & MA_CAPTURE_PROCS)
		r->opts.by_thread = true;
	ret = ma_account_new(&r->acc);
	if (ret == 0)
		ret = ma_temporary_new(o->window, &r->temp);
	if (ret == 0 && o->timeline)
		ret = ma_timeline_new(&fd.tl);
	if (ret < 0) {
		ma_err(ret, "out of memory");
		goto fail;
	}
	if (o->progress) {
		struct stat st;

		fd.file_size = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
		o->progress(o->progress_arg, 0, fd.file_size, 0);
	}
	t0 = clock_ns(CLOCK_MONOTONIC);
	ret = stream(r, &pp, &fd);
	r->wall_stream_ns = clock_ns(CLOCK_MONOTONIC) - t0;
	if (ret < 0)
		goto fail;
	r->meta = ma_capture_meta(r->rd);
	r->trailer = ma_capture_trailer(r->rd);
	r->warning = ma_capture_warning(r->rd);
	r->t = *ma_account_totals(r->acc);
	if (!r->trailer && !r->t.events) {
		/* Cut before its first block: there is nothing to report, and
		 * an empty report would read as "nothing was allocated" */
		ret = ma_err(-ENODATA,
			     "%s has no events: it was cut before its first "
			     "block (memattach killed right after the start?); "
			     "nothing to report",
			     path);
		goto fail;
	}
	if (r->pid_filtered && !r->pid_desc[0]) {
		ret = no_proc_matched(r);
		goto fail;
	}
	/* --pid alone: a process named (pid_desc) that had no thread yet
	 * (it allocated nothing up to --to) is a report of nothing, not a
	 * --thread that named none */
	if (r->thread_filtered && !r->threads_selected && r->opts.nthreads) {
		ret = no_thread_matched(r);
		goto fail;
	}
	/* The header's frees are those of tracked blocks (with a thread
	 * filter, of the selected threads' blocks, by any thread), as an
	 * aggregated capture's are: the FREE events of unknown memory (from
	 * before the attach; with a filter, the others' blocks too) are the
	 * unknown frees' footnote, not frees, in every mode.  An aggregated
	 * capture's unknown ones come from its AGGEND, never in frees */
	r->t.frees -= r->t.unknown_free_events;
	r->unknown_frees = r->t.unknown_frees;
	if (r->thread_filtered && r->trailer) {
		/* Frees of other threads' blocks look unknown to a filtered
		 * accounting: the whole capture's figure is the honest one */
		r->unknown_frees = r->trailer->unknown_frees;
		r->unknown_from_trailer = true;
	}
	t0 = clock_ns(CLOCK_MONOTONIC);
	ret = build_tree(r, &pp, fd.tl);
	if (ret == 0)
		ret = build_rows(r);
	/* a process's figures: its threads' */
	for (size_t i = 1; i < r->nthreads && r->nprocs; i++) {
		long k = r->threads[i].pid ? proc_find(&pp, r->threads[i].pid)
					   : -1;

		for (int v = 0; k >= 0 && v < MA_RV_N; v++) {
			r->procs[k].fig[v].bytes += r->threads[i].fig[v].bytes;
			r->procs[k].fig[v].count += r->threads[i].fig[v].count;
		}
	}
	if (ret == 0)
		ret = link_rows(r);
	r->wall_model_ns = clock_ns(CLOCK_MONOTONIC) - t0;
	if (ret < 0)
		goto fail;
	if (o->from_ns && !pp.in_range) {
		/* no sample at or after --from: the range is empty, and a
		 * report of it would read as "nothing was allocated" */
		/* digits enough that the two never read alike ("--from
		 * 1.9 s is after the last sample (1.9 s)" for 1.95 and 1.92) */
		ret = ma_err(-EINVAL,
			     "--from %g s is after the last sample of %s "
			     "(%.3f s)",
			     (double)o->from_ns / 1e9, path,
			     (double)pp.last_t_ns / 1e9);
		ma_err_set_exit(MA_EXIT_USAGE);
		goto fail;
	}
	if (r->thread_filtered && r->t.agg_peak)
		filtered_agg_peak(r);
	else if (r->nprocs > 1 && r->t.agg_peak) {
		/* the AGGEND sums each process's own peak (capture-format.md):
		 * workers that never lived at once add up all the same */
		r->peak_moment_unknown = true;
		r->peak_note = "the sum of each process's own peak, which need "
			       "not have come at one moment (an aggregated "
			       "capture keeps each process's peak; attach with "
			       "--every-event for the moment all of them held "
			       "most)";
	}
	if (r->ranged)
		range_totals(r, &pp);
	if (o->from_ns && r->t.agg_events)
		agg_range_peak(r);
	else if (r->range_agg_cut && !r->peak_note)
		r->peak_note = "the highest of the rounds of the stacks' sums "
			       "up to the cut (an aggregated capture keeps "
			       "each stack's exact peak for the whole "
			       "capture only; attach with --every-event for "
			       "it)";
	prep_free(&pp);
	ma_timeline_free(fd.tl);
	*out = r;
	return 0;
fail:
	prep_free(&pp);
	ma_timeline_free(fd.tl);
	if (!ma_err_exit() || ma_err_exit() == MA_EXIT_ERROR)
		if (ret != -ENOMEM)
			ma_err_set_exit(MA_EXIT_CAPTURE);
	ma_report_free(r);
	return ret;
}

void ma_report_free(struct ma_report *r)
{
	if (!r)
		return;
	ma_account_free(r->acc);
	ma_temporary_free(r->temp);
	if (r->rd)
		ma_capture_reader_close(r->rd);
	for (size_t i = 0; i < r->nthreads; i++)
		free(r->threads[i].name);
	free(r->procs);
	free(r->threads);
	free(r->samples);
	free(r->spans);
	free(r->tl_bounds);
	free(r->nodes);
	free(r->rows);
	free(r->by_time.p);
	free(r->by_index.p);
	free(r);
}

int ma_report_stack(const struct ma_report *r, uint32_t n, uint32_t *out,
		    int max)
{
	int d = 0;

	while (n && n < r->nnodes) {
		if (d < max)
			out[d] = n;
		d++;
		n = r->nodes[n].parent;
	}
	return d;
}

void ma_report_frame_name(const struct ma_rnode *n, char *buf, size_t len)
{
	if (n->file[0] && n->line >= 0)
		snprintf(buf, len, "%s (%s:%d)", n->function, n->file, n->line);
	else if (n->file[0])
		snprintf(buf, len, "%s (%s)", n->function, n->file);
	else
		snprintf(buf, len, "%s", n->function);
	for (char *p = buf; *p; p++)
		if (*p == ';' || (unsigned char)*p < 0x20)
			*p = *p == ';' ? ':' : ' ';
}

static const struct ma_report *thread_sort_r;

/* Threads and processes alike: more bytes in view v first, then more
 * bytes in all (the total view); 0 when both are equal */
static int fig_cmp(const struct ma_account_fig *a,
		   const struct ma_account_fig *b, enum ma_rview v)
{
	if (a[v].bytes != b[v].bytes)
		return a[v].bytes > b[v].bytes ? -1 : 1;
	if (a[MA_RV_TOTAL].bytes != b[MA_RV_TOTAL].bytes)
		return a[MA_RV_TOTAL].bytes > b[MA_RV_TOTAL].bytes ? -1 : 1;
	return 0;
}

static int thread_cmp(const void *pa, const void *pb)
{
	const struct ma_report *r = thread_sort_r;
	const struct ma_rthread *a = &r->threads[*(const uint32_t *)pa];
	const struct ma_rthread *b = &r->threads[*(const uint32_t *)pb];
	int c = fig_cmp(a->fig, b->fig, r->opts.view);

	if (c)
		return c;
	if (a->tid != b->tid)
		return a->tid < b->tid ? -1 : 1;
	return *(const uint32_t *)pa < *(const uint32_t *)pb ? -1 : 1;
}

size_t ma_report_thread_order(const struct ma_report *r, uint32_t *out)
{
	size_t n = 0;

	for (size_t i = 0; i < r->nthreads; i++)
		if (i || fig_nonzero(r->threads[i].fig))
			out[n++] = (uint32_t)i;
	thread_sort_r = r; /* reports are rendered one at a time */
	if (n)
		qsort(out, n, sizeof(*out), thread_cmp);
	return n;
}

static int proc_cmp(const void *pa, const void *pb)
{
	const struct ma_report *r = thread_sort_r;
	const struct ma_rproc *a = &r->procs[*(const uint32_t *)pa];
	const struct ma_rproc *b = &r->procs[*(const uint32_t *)pb];
	int c = fig_cmp(a->fig, b->fig, r->opts.view);

	if (c)
		return c;
	return a->pid < b->pid ? -1 : a->pid > b->pid;
}

size_t ma_report_proc_order(const struct ma_report *r, uint32_t *out)
{
	size_t n = 0;

	for (size_t i = 0; i < r->nprocs; i++)
		if (r->procs[i].selected)
			out[n++] = (uint32_t)i;
	thread_sort_r = r;
	if (n)
		qsort(out, n, sizeof(*out), proc_cmp);
	return n;
}

size_t ma_report_shown(const struct ma_report *r)
{
	size_t n = 0;

	while (n < r->nrows && (r->opts.top <= 0 || n < (size_t)r->opts.top) &&
	       (r->rows[n].fig[r->opts.view].bytes ||
		r->rows[n].fig[r->opts.view].count))
		n++;
	return n;
}

uint32_t ma_report_window_counted(const struct ma_report *r)
{
	uint32_t w = r->opts.window;

	if (!(r->meta && (r->meta->flags & MA_TRACK_AGG)) || w < MA_AGG_EXACT)
		return w;
	if (w >= (1u << 20) - 1)
		return (1u << 20) - 1;
	/* 2^k - 1 <= w: the buckets [2^(k-1), 2^k - 1] and below */
	return (1u << (31 - __builtin_clz(w + 1))) - 1;
}

bool ma_report_view_known(const struct ma_report *r, enum ma_rview v)
{
	if (v == MA_RV_PEAK)
		return !r->peak_unknown;
	if (v == MA_RV_TEMP)
		return !(r->meta && r->meta->sample_mean);
	return true;
}

uint64_t ma_report_estimates(const struct ma_report *r, char *buf, size_t len)
{
	uint64_t mean = r->meta ? r->meta->sample_mean : 0;
	char m[32];

	buf[0] = '\0';
	if (!mean)
		return 0;
	ma_fmt_bytes(mean, m, sizeof(m));
	snprintf(buf, len,
		 "ESTIMATES: blocks sampled every %s on average (--sample); "
		 "every figure is an estimate",
		 m);
	return mean;
}

void ma_report_peak_when(const struct ma_report *r, char *buf, size_t len)
{
	const struct ma_account_totals *t = &r->t;

	buf[0] = '\0';
	if (!t->peak_bytes || !t->samples || r->peak_unknown ||
	    r->peak_moment_unknown)
		return;
	if (!t->peak_before_ns)
		snprintf(buf, len, "after %.1f s",
			 (double)t->peak_after_ns / 1e9);
	else if ((t->peak_before_ns - t->peak_after_ns) < 50000000ull)
		snprintf(buf, len, "at %.1f s",
			 (double)(t->peak_after_ns + t->peak_before_ns) / 2e9);
	else
		snprintf(buf, len, "between %.1f s and %.1f s",
			 (double)t->peak_after_ns / 1e9,
			 (double)t->peak_before_ns / 1e9);
}
