/* SPDX-License-Identifier: MIT */
/*
 * Taking the census: the copy made (inject.c), its stream of objects read
 * chunk by chunk through its box, and turned into an indexed graph.
 */
#include "heap.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ma_pyver.h"
#include "discover.h"
#include "errors.h"
#include "inject.h"
#include "memread.h"
#include "procfs.h"
#include "ptrace.h"
#include "pyread.h"
#include "symbols.h"
#include "threads.h"
#include "teststep.h"

struct idx_pair {
	uint64_t addr, index;
};

struct room_watch;

struct ma_heap_live {
	pid_t copy;
	struct room_watch *watch; /* the cgroup's room, while the copy lives */
	uint64_t box;
	struct ma_mem *mem;
	const struct ma_py_offsets *off;
	int pyminor;
	int ended;
	/* the items of the last long sequence searched twice, by address
	 * (ma_heap_live_index); the last one searched */
	uint64_t iseq, ilast;
	struct idx_pair *ipairs;
	size_t inpairs;
};

/* ------------------------------------------------------------------ */
/* The stream, as it arrives, straight into the graph's arrays: objects in
 * the order found, an index by address (open addressing over the object
 * numbers: 8 bytes an object), edges as addresses until the end, then
 * resolved in place to object numbers. */

struct parse {
	struct ma_heap_graph *g;
	uint8_t *carry; /* bytes of a record cut by a chunk boundary */
	size_t ncarry, carry_cap;
	size_t cap;    /* of the per-object arrays */
	uint64_t *raw; /* edges, as addresses */
	size_t nraw, raw_cap;
	uint32_t *idx; /* object number + 1, by hash of its address */
	size_t idx_cap;
	uint64_t *taddr; /* type addresses, in g->types order */
	uint32_t *tidx;	 /* type number + 1, by hash */
	size_t tidx_cap, types_cap;
	struct ma_heap_root *roots;
	size_t nroots, roots_cap;
	struct ma_heap_pools pools;
	struct ma_heap_end end;
	int ended, bad;
	uint64_t dups;
	/* the last object record: taken (its ma_heap_edges pieces follow
	 * its edges in raw), or a duplicate (its pieces are dropped too) */
	int last_taken;
};

static volatile sig_atomic_t interrupted;
static const int catch_sigs[] = { SIGINT, SIGTERM, SIGHUP };
static struct sigaction old_sa[3];
static int catching; /* the handlers above are ours now */

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

void ma_heap_catch_signals(int on)
{
	/* SA_RESETHAND: a second Ctrl-C ends memattach at once */
	struct sigaction sa = { .sa_handler = on_signal,
				.sa_flags = SA_RESETHAND };

	if (!on == !catching)
		return;
	for (size_t i = 0; i < 3; i++) {
		if (on)
			sigaction(catch_sigs[i], &sa, &old_sa[i]);
		else
			sigaction(catch_sigs[i], &old_sa[i], NULL);
	}
	catching = on;
	if (on)
		interrupted = 0;
}

int ma_heap_interrupted(void)
{
	return interrupted;
}

/* What the parse allocated that the graph does not keep */
static void parse_free(struct parse *ps)
{
	free(ps->carry);
	free(ps->raw);
	free(ps->idx);
	free(ps->taddr);
	free(ps->tidx);
	free(ps->roots);
}

static int grow(void **p, size_t *cap, size_t want, size_t elem)
{
	size_t n = *cap ? *cap : 1024;
	void *q;

	if (want <= *cap)
		return 0;
	while (n < want)
		n *= 2;
	q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

static inline size_t hash64(uint64_t a)
{
	a ^= a >> 33;
	a *= 0xff51afd7ed558ccdull;
	a ^= a >> 33;
	return (size_t)a;
}

/* The slot of addr in the object index: its number + 1, or an empty one */
static uint32_t *idx_slot(const struct parse *ps, uint64_t addr)
{
	size_t mask = ps->idx_cap - 1, i = hash64(addr) & mask;

	for (;; i = (i + 1) & mask) {
		uint32_t *s = &ps->idx[i];

		if (!*s || ps->g->addr[*s - 1] == addr)
			return s;
	}
}

static int idx_grow(struct parse *ps)
{
	uint32_t *old = ps->idx;
	size_t oldcap = ps->idx_cap;

	ps->idx_cap = oldcap ? oldcap * 2 : 1 << 16;
	ps->idx = calloc(ps->idx_cap, sizeof(*ps->idx));
	if (!ps->idx) {
		ps->idx = old;
		ps->idx_cap = oldcap;
		return -ENOMEM;
	}
	for (size_t i = 0; i < oldcap; i++)
		if (old[i])
			*idx_slot(ps, ps->g->addr[old[i] - 1]) = old[i];
	free(old);
	return 0;
}

static int64_t find_obj(const struct parse *ps, uint64_t addr)
{
	/* no object yet, no index: a stream of roots alone (fuzz/heap,
	 * issue 13) read through a NULL index */
	if (!ps->idx_cap)
		return -1;
	uint32_t s = *idx_slot(ps, addr);

	return s ? (int64_t)s - 1 : -1;
}

/* The number of a type, by its address (a new one gets the next) */
static int type_of(struct parse *ps, uint64_t addr, uint32_t *out)
{
	struct ma_heap_graph *g = ps->g;
	size_t mask, i;

	if ((g->ntypes + 1) * 2 > ps->tidx_cap) {
		uint32_t *old = ps->tidx;
		size_t oldcap = ps->tidx_cap, cap = oldcap ? oldcap * 2 : 1024;

		ps->tidx = calloc(cap, sizeof(*ps->tidx));
		if (!ps->tidx) {
			ps->tidx = old;
			return -ENOMEM;
		}
		ps->tidx_cap = cap;
		for (size_t k = 0; k < oldcap; k++) {
			if (!old[k])
				continue;
			for (i = hash64(ps->taddr[old[k] - 1]) & (cap - 1);
			     ps->tidx[i]; i = (i + 1) & (cap - 1))
				;
			ps->tidx[i] = old[k];
		}
		free(old);
	}
	mask = ps->tidx_cap - 1;
	for (i = hash64(addr) & mask; ps->tidx[i]; i = (i + 1) & mask)
		if (ps->taddr[ps->tidx[i] - 1] == addr) {
			*out = ps->tidx[i] - 1;
			return 0;
		}
	if (grow((void **)&ps->taddr, &ps->types_cap, g->ntypes + 1, 8))
		return -ENOMEM;
	ps->taddr[g->ntypes] = addr;
	ps->tidx[i] = (uint32_t)(g->ntypes + 1);
	*out = (uint32_t)g->ntypes++;
	return 0;
}

static int add_object(struct parse *ps, const struct ma_heap_obj *o,
		      const uint8_t *edges)
{
	struct ma_heap_graph *g = ps->g;
	size_t n = g->n;
	uint32_t *slot, t;

	/* filled up to 0.7: linear probing stays short, and the index costs
	 * 6-11 bytes an object rather than 8-16 */
	if ((n + 1) * 10 > ps->idx_cap * 7 && idx_grow(ps))
		return -ENOMEM;
	slot = idx_slot(ps, o->addr);
	ps->last_taken = 0;
	if (*slot) { /* found twice (a torn list): counted once */
		ps->dups++;
		return 0;
	}
	if (n + 1 >= ps->cap) {
		size_t c = ps->cap ? ps->cap * 2 : 1 << 16;
		void *a = realloc(g->addr, c * 8), *b = realloc(g->size, c * 8),
		     *d = realloc(g->type, c * 4),
		     *e = realloc(g->refcnt, c * 4), *f = realloc(g->flags, c),
		     *h = realloc(g->eoff, (c + 1) * 4);

		if (a)
			g->addr = a;
		if (b)
			g->size = b;
		if (d)
			g->type = d;
		if (e)
			g->refcnt = e;
		if (f)
			g->flags = f;
		if (h)
			g->eoff = h;
		if (!a || !b || !d || !e || !f || !h)
			return -ENOMEM;
		ps->cap = c;
	}
	if (type_of(ps, o->type, &t) ||
	    grow((void **)&ps->raw, &ps->raw_cap, ps->nraw + o->nedges, 8))
		return -ENOMEM;
	if (ps->nraw + o->nedges > UINT32_MAX)
		return -E2BIG;
	g->addr[n] = o->addr;
	g->size[n] = o->size + o->owned;
	g->pymalloc_bytes += o->pymalloc < o->size ? o->pymalloc : o->size;
	g->type[n] = t;
	g->refcnt[n] =
		o->refcnt > 0xffffffffull ? 0xffffffffu : (uint32_t)o->refcnt;
	g->flags[n] = (uint8_t)o->flags;
	g->eoff[n] = (uint32_t)ps->nraw;
	/* no edges yet: raw is still NULL, and NULL + 0 is undefined */
	if (o->nedges)
		memcpy(ps->raw + ps->nraw, edges, (size_t)o->nedges * 8);
	ps->nraw += o->nedges;
	g->n = n + 1;
	*slot = (uint32_t)(n + 1);
	ps->last_taken = 1;
	return 0;
}

/* A piece of the last object's referents (struct ma_heap_edges): its
 * edges follow the ones before in raw, where the object's end is */
static int add_edges(struct parse *ps, const struct ma_heap_edges *e,
		     const uint8_t *edges)
{
	struct ma_heap_graph *g = ps->g;

	if (!ps->last_taken || !g->n)
		return 0;
	if (grow((void **)&ps->raw, &ps->raw_cap, ps->nraw + e->nedges, 8))
		return -ENOMEM;
	if (ps->nraw + e->nedges > UINT32_MAX)
		return -E2BIG;
	if (e->nedges)
		memcpy(ps->raw + ps->nraw, edges, (size_t)e->nedges * 8);
	ps->nraw += e->nedges;
	g->flags[g->n - 1] |= (uint8_t)e->flags;
	return 0;
}

/* Consume whole records from buf; returns bytes used */
static size_t parse_records(struct parse *ps, const uint8_t *buf, size_t len)
{
	size_t pos = 0;

	while (pos + 8 <= len && !ps->bad) {
		uint32_t tag;

		memcpy(&tag, buf + pos, 4);
		if (tag == MA_HEAP_T_OBJ) {
			struct ma_heap_obj o;
			size_t need;

			if (pos + sizeof(o) > len)
				break;
			memcpy(&o, buf + pos, sizeof(o));
			need = sizeof(o) + (size_t)o.nedges * 8;
			if (pos + need > len)
				break;
			ps->bad = add_object(ps, &o, buf + pos + sizeof(o));
			pos += need;
		} else if (tag == MA_HEAP_T_EDGES) {
			struct ma_heap_edges e;
			size_t need;

			if (pos + sizeof(e) > len)
				break;
			memcpy(&e, buf + pos, sizeof(e));
			need = sizeof(e) + (size_t)e.nedges * 8;
			if (pos + need > len)
				break;
			ps->bad = add_edges(ps, &e, buf + pos + sizeof(e));
			pos += need;
		} else if (tag == MA_HEAP_T_ROOT) {
			if (pos + sizeof(struct ma_heap_root) > len)
				break;
			if (grow((void **)&ps->roots, &ps->roots_cap,
				 ps->nroots + 1, sizeof(*ps->roots))) {
				ps->bad = -ENOMEM;
				break;
			}
			memcpy(&ps->roots[ps->nroots++], buf + pos,
			       sizeof(struct ma_heap_root));
			pos += sizeof(struct ma_heap_root);
		} else if (tag == MA_HEAP_T_POOLS) {
			if (pos + sizeof(ps->pools) > len)
				break;
			memcpy(&ps->pools, buf + pos, sizeof(ps->pools));
			pos += sizeof(ps->pools);
		} else if (tag == MA_HEAP_T_END) {
			if (pos + sizeof(ps->end) > len)
				break;
			memcpy(&ps->end, buf + pos, sizeof(ps->end));
			pos += sizeof(ps->end);
			ps->ended = 1;
		} else {
			ps->bad = -EPROTO;
		}
	}
	return pos;
}

static int parse_chunk(struct parse *ps, const uint8_t *buf, size_t len)
{
	size_t used;

	if (ps->ncarry) {
		if (grow((void **)&ps->carry, &ps->carry_cap, ps->ncarry + len,
			 1))
			return -ENOMEM;
		memcpy(ps->carry + ps->ncarry, buf, len);
		ps->ncarry += len;
		used = parse_records(ps, ps->carry, ps->ncarry);
		memmove(ps->carry, ps->carry + used, ps->ncarry - used);
		ps->ncarry -= used;
	} else {
		used = parse_records(ps, buf, len);
		if (used < len) {
			if (grow((void **)&ps->carry, &ps->carry_cap,
				 len - used, 1))
				return -ENOMEM;
			memcpy(ps->carry, buf + used, len - used);
			ps->ncarry = len - used;
		}
	}
	return ps->bad;
}

/* ------------------------------------------------------------------ */
/* Talking to the copy */

static int copy_write(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
	struct iovec l = { (void *)buf, len },
		     r = { (void *)(uintptr_t)addr, len };

	return process_vm_writev(pid, &l, 1, &r, 1, 0) == (ssize_t)len ? 0
								       : -errno;
}

/* Let the copy run on through its own stops: a fault it recovers from (its
 * handler must see the signal), anything else swallowed.  -ESRCH when it
 * is gone. */
static int tend_copy(pid_t copy, char *why, size_t len)
{
	int status;
	pid_t w;

	while ((w = waitpid(copy, &status, __WALL | WNOHANG)) == copy) {
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			snprintf(why, len,
				 WIFSIGNALED(status)
					 ? "the copy was killed by signal %d"
					 : "the copy exited with status %d",
				 WIFSIGNALED(status) ? WTERMSIG(status)
						     : WEXITSTATUS(status));
			return -ESRCH;
		}
		if (!WIFSTOPPED(status))
			continue;
		int sig = WSTOPSIG(status), event = status >> 16;

		/* a fault goes to the copy's handler, an abort (a fatal
		 * error of the interpreter's) ends it; the rest is dropped */
		if (event ||
		    (sig != SIGSEGV && sig != SIGBUS && sig != SIGABRT))
			sig = 0;
		ptrace(PTRACE_CONT, copy, NULL, (void *)(uintptr_t)sig);
	}
	return 0;
}

static void nap_us(long us)
{
	struct timespec ts = { 0, us * 1000 };

	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ */
/* From the stream to the graph */

static char *dupstr(const char *s)
{
	return strdup(s ? s : "");
}

/* A name the target chose (a module's, a variable's, a function's, a
 * thread's), escaped as the census' labels (ma_heap_text) */
static char *dupesc(const char *s)
{
	char esc[512];

	ma_heap_text(s ? s : "", esc, sizeof(esc));
	return strdup(esc);
}

/* Edges to object numbers, in place (a u32 written never passes the u64
 * still to read); edges to what was not found are dropped */
static int finish_graph(struct parse *ps, struct ma_mem *cm,
			const struct ma_py_offsets *off)
{
	struct ma_heap_graph *g = ps->g;
	uint32_t *e32 = (uint32_t *)ps->raw;
	size_t w = 0;

	if (!g->n)
		return 0;
	g->eoff[g->n] = (uint32_t)ps->nraw;
	for (size_t i = 0; i < g->n; i++) {
		uint32_t start = g->eoff[i], end = g->eoff[i + 1];

		g->eoff[i] = (uint32_t)w;
		for (uint32_t e = start; e < end; e++) {
			int64_t j = find_obj(ps, ps->raw[e]);

			if (j < 0)
				g->unresolved_edges++;
			else
				e32[w++] = (uint32_t)j;
		}
	}
	g->eoff[g->n] = (uint32_t)w;
	g->nedges = w;
	g->edges = realloc(ps->raw, (w ? w : 1) * 4);
	if (!g->edges)
		g->edges = e32;
	ps->raw = NULL;
	/* type names */
	g->types = calloc(g->ntypes ? g->ntypes : 1, sizeof(*g->types));
	if (!g->types)
		return -ENOMEM;
	for (size_t i = 0; i < g->ntypes; i++) {
		char name[256] = "?", esc[256];
		uint64_t np = 0;

		g->types[i].addr = ps->taddr[i];
		if (!ps->taddr[i])
			snprintf(name, sizeof(name), "(unreadable)");
		else if (ma_mem_read_u64(
				 cm, ps->taddr[i] + (uint64_t)off->type_name,
				 &np) == 0 &&
			 np)
			ma_mem_read_cstr(cm, np, name, sizeof(name));
		/* the type's to choose: type("\x1b[2J", (), {}) */
		ma_heap_text(name, esc, sizeof(esc));
		g->types[i].name = dupstr(esc);
	}
	/* A developer's view of every object (docs/heap.md, "Debugging") */
	if (getenv("MEMATTACH_HEAP_DUMP")) {
		FILE *df = fopen(getenv("MEMATTACH_HEAP_DUMP"), "w");

		for (size_t i = 0; df && i < g->n; i++) {
			fprintf(df, "%#llx %s %llu %u %u",
				(unsigned long long)g->addr[i],
				g->types[g->type[i]].name,
				(unsigned long long)g->size[i], g->flags[i],
				g->eoff[i + 1] - g->eoff[i]);
			for (uint32_t e = g->eoff[i]; e < g->eoff[i + 1]; e++)
				fprintf(df, " %#llx",
					(unsigned long long)
						g->addr[g->edges[e]]);
			fputc('\n', df);
		}
		if (df)
			fclose(df);
	}
	return 0;
}

/* Roots: names of modules and locals, frames placed in their threads */
/* Thread c of the copy is the one whose pthread_self() is self: by the
 * fs_base read while it was stopped, or for a thread spared the stop
 * (hazard 11) by the thread ID glibc keeps in its struct (the copy holds
 * the target's memory as it was at the clone) */
static int copy_thread_is(struct ma_mem *cm, const struct ma_heap_thread *c,
			  uint64_t self)
{
	if (!self)
		return 0;
	return c->spared ? ma_pthread_is(cm, self, c->nstid)
			 : c->fs_base == self;
}

static void build_roots(struct parse *ps, struct ma_mem *cm,
			const struct ma_target *t,
			const struct ma_heap_copy *hcopy,
			struct ma_heap_graph *g)
{
	struct ma_pyreader *r = NULL;
	struct ma_py_snapshot snap = { 0 };
	int have_snap = 0;

	if (ma_pyreader_new(cm, &t->off, t->runtime_addr, &r) == 0 &&
	    ma_pyreader_snapshot(r, &snap) == 0)
		have_snap = 1;
	g->roots = calloc(ps->nroots ? ps->nroots : 1, sizeof(*g->roots));
	if (!g->roots)
		goto out;
	for (size_t i = 0; i < ps->nroots; i++) {
		const struct ma_heap_root *pr = &ps->roots[i];
		struct ma_hroot *hr = &g->roots[g->nroots];
		int64_t j = find_obj(ps, pr->obj);
		char buf[256] = "";

		if (j < 0)
			continue;
		hr->kind = pr->kind;
		hr->obj = (uint32_t)j;
		if (pr->name)
			ma_pyread_unicode(cm, &t->off, pr->name, buf,
					  sizeof(buf));
		hr->name = dupesc(buf);
		hr->line = -1;
		hr->depth = pr->depth;
		if (pr->kind == MA_HEAP_R_LOCAL && have_snap) {
			/* its threading.Thread name, else its comm */
			const char *pyname = NULL;

			for (int a = 0; a < snap.nthreads; a++) {
				const struct ma_py_thread *th =
					&snap.threads[a];

				for (int b = 0; b < th->nframes; b++) {
					const struct ma_py_frame *fr =
						&th->frames[b];

					if (fr->frame_addr != pr->frame)
						continue;
					hr->func = dupesc(fr->func);
					hr->file = dupesc(fr->file);
					hr->line = fr->line;
					hr->tid = (pid_t)th->native_tid;
					pyname = th->name;
					for (size_t k = 0;
					     !hr->tid && k < hcopy->nthreads;
					     k++)
						if (copy_thread_is(
							    cm,
							    &hcopy->threads[k],
							    th->thread_id))
							hr->tid =
								hcopy->threads[k]
									.tid;
				}
			}
			char comm[64] = "";

			if (hr->tid && !pyname)
				ma_proc_comm(t->pid, hr->tid, comm,
					     sizeof(comm));
			hr->thread = dupesc(pyname ? pyname : comm);
		}
		if (!hr->func)
			hr->func = dupstr("");
		if (!hr->file)
			hr->file = dupstr("");
		if (!hr->thread)
			hr->thread = dupstr("");
		g->nroots++;
	}
out:
	if (have_snap)
		ma_py_snapshot_free(&snap);
	if (r)
		ma_pyreader_free(r);
}

/* ------------------------------------------------------------------ */

/* Addresses in the target of symbols of its Python module (0: absent),
 * from one reading of its ELF file */
static void py_symbols(const struct ma_target *t, const char *const *names,
		       uint64_t *const *addrs, size_t n)
{
	struct ma_elf *e;

	for (size_t i = 0; i < n; i++)
		*addrs[i] = 0;
	if (ma_elf_open(t->pymod_local, &e))
		return;
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0;

		if (!ma_elf_symbol(e, names[i], &v, NULL) && v)
			*addrs[i] = v + t->pymod_bias;
	}
	ma_elf_close(e);
}

/* What a process has of its own, not shared (copy-on-write pages either
 * side wrote since the clone, and what it mapped): smaps_rollup's
 * Private_Clean + Private_Dirty, in KiB */
static uint64_t private_kb(pid_t pid)
{
	char path[64], line[256];
	unsigned long long kb, sum = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Private_Clean: %llu kB", &kb) == 1 ||
		    sscanf(line, "Private_Dirty: %llu kB", &kb) == 1)
			sum += kb;
	fclose(f);
	return sum;
}

/* The kernel's count of OOM kills, global and memory cgroups' alike
 * (/proc/vmstat oom_kill; 0: unknown) */
static uint64_t oom_kills(void)
{
	char line[256];
	unsigned long long n = 0;
	FILE *f = fopen("/proc/vmstat", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "oom_kill %llu", &n) == 1)
			break;
	fclose(f);
	return n;
}

/* What a census says of a copy the OOM killer took */
#define COPY_OOM_WHY                                                           \
	"the copy was killed by the OOM killer: the target's memory cgroup "   \
	"or the machine ran out of memory"

/*
 * The copy's memory could not be read: it is being killed, its address
 * space already gone before its death can be waited for.  Wait for that
 * (200 ms at most) and say what killed it, rather than "unreadable".  A
 * SIGKILL that came with an OOM kill since the census began is the OOM
 * killer's (the copy is its first choice, injector/heap.c): *oom.
 */
static void copy_death(pid_t copy, uint64_t oom0, char *why, size_t len,
		       int *oom)
{
	int status;

	for (int i = 0; i < 200; i++) {
		pid_t w = waitpid(copy, &status, __WALL | WNOHANG);

		if (w == copy && WIFSIGNALED(status)) {
			if (WTERMSIG(status) == SIGKILL && oom_kills() > oom0) {
				*oom = 1;
				snprintf(why, len, COPY_OOM_WHY);
			} else {
				snprintf(why, len,
					 "the copy was killed by signal %d",
					 WTERMSIG(status));
			}
			return;
		}
		if (w == copy && WIFEXITED(status)) {
			snprintf(why, len, "the copy exited with status %d",
				 WEXITSTATUS(status));
			return;
		}
		if (w == copy && WIFSTOPPED(status))
			ptrace(PTRACE_CONT, copy, NULL, NULL);
		if (w < 0)
			return;
		nap_us(1000);
	}
}

/* The census needs memory of its own (about 64 bytes an object here, a
 * few MiB in the copy): it does not start, and stops, below this */
#define HEAP_MIN_AVAILABLE (256ull << 20)

/*
 * The copy lives in the target's memory cgroup: its own few MiB (and its
 * bitmap, a 64th of what it walks), and every page the target writes while
 * the copy lives, are charged there.  A census does not start with less
 * room than this (and the bitmap) below the cgroup's limit (its own or an
 * ancestor's), and stops when the room falls under
 * HEAP_STOP_CGROUP_ROOM, checked every HEAP_CGROUP_EVERY_NS: the OOM
 * killer would take the copy (its oom_score_adj is 1000), and then, the
 * cgroup still full while the copy's memory is freed, the target.
 */
#define HEAP_MIN_CGROUP_ROOM  (64ull << 20)
#define HEAP_STOP_CGROUP_ROOM (16ull << 20)
#define HEAP_CGROUP_EVERY_NS  50000000ull

/* The room below the target's memory cgroup's limits (UINT64_MAX: none
 * binds, or it cannot be told); MEMATTACH_TEST_MEMAVAIL_MIB, which stands
 * in for the memory available, lifts it */
static uint64_t cgroup_room(pid_t pid, char *where, size_t len)
{
	uint64_t room;

	if (getenv("MEMATTACH_TEST_MEMAVAIL_MIB") ||
	    ma_proc_memcg_room(pid, &room, where, len))
		return UINT64_MAX;
	return room;
}

/*
 * A thread that watches that room for as long as the copy lives (the
 * walk, and the census and its report after it, which read the copy: many
 * seconds on a large heap, the target's writes charged to its cgroup all
 * along), and ends the copy when the room falls under
 * HEAP_STOP_CGROUP_ROOM: its death gives the cgroup back every page it
 * held alone.
 */
struct room_watch {
	pthread_t th;
	pid_t pid, copy;
	int stop, fired; /* atomic */
	uint64_t room;	 /* when it fired */
	char where[256];
};

static void *room_watch_main(void *arg)
{
	struct room_watch *w = arg;
	struct timespec ts = { 0, (long)HEAP_CGROUP_EVERY_NS };

	while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
		uint64_t room = cgroup_room(w->pid, w->where, sizeof(w->where));

		if (room < HEAP_STOP_CGROUP_ROOM) {
			/* said before the kill: whoever sees the copy die
			 * sees why */
			w->room = room;
			__atomic_store_n(&w->fired, 1, __ATOMIC_RELEASE);
			kill(w->copy, SIGKILL);
			break;
		}
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* A watch of the copy's cgroup, or NULL when no limit binds (nothing to
 * watch) or it could not start */
static struct room_watch *room_watch_start(pid_t pid, pid_t copy)
{
	struct room_watch *w = calloc(1, sizeof(*w));
	sigset_t all, old;
	int err;

	if (!w)
		return NULL;
	w->pid = pid;
	w->copy = copy;
	/* the signals memattach handles go to its main thread */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&w->th, NULL, room_watch_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		free(w);
		return NULL;
	}
	return w;
}

static void room_watch_end(struct room_watch *w)
{
	if (!w)
		return;
	__atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
	pthread_join(w->th, NULL);
	free(w);
}

/* Whether the watch ended the copy; its message in why */
static int room_watch_fired(const struct room_watch *w, char *why, size_t len)
{
	if (!w || !__atomic_load_n(&w->fired, __ATOMIC_ACQUIRE))
		return 0;
	snprintf(why, len,
		 "process %d's memory cgroup %s had %llu MiB left below its "
		 "limit (the census's copy is charged there): the copy was "
		 "ended, the process runs on",
		 (int)w->pid, w->where, (unsigned long long)(w->room >> 20));
	return 1;
}

static void progress(const struct ma_heap_opts *o, uint64_t objs,
		     uint64_t bytes, int done)
{
	if (o->quiet || !isatty(2))
		return;
	fprintf(stderr, "\rheap: %llu objects, %llu MiB read%s",
		(unsigned long long)objs, (unsigned long long)(bytes >> 20),
		done ? "\n" : "");
}

int ma_heap_take(struct ma_target *t, const struct ma_heap_opts *o,
		 struct ma_heap_graph *g, struct ma_heap_live **livep)
{
	const struct ma_pyver *v = ma_pyver_of(t->version_hex);
	struct ma_heap_cfg cfg = { 0 };
	struct ma_heap_copy hc;
	struct ma_heap_box box;
	struct parse ps = { .g = g };
	struct ma_mem *cm = NULL;
	struct ma_heap_live *live = NULL;
	uint8_t *buf = NULL;
	uint64_t t0 = ma_now_ns(), last_prog = 0;
	uint64_t oom0 = oom_kills();
	struct room_watch *watch = NULL;
	const char *missing;
	char why[128] = "";
	int err;

	memset(g, 0, sizeof(*g));
	*livep = NULL;
	g->pid = t->pid;
	g->time = (uint64_t)time(NULL);
	g->pyminor = ma_py_minor(t->version_hex);
	snprintf(g->version, sizeof(g->version), "%s", t->version);
	snprintf(g->cmdline, sizeof(g->cmdline), "%s", t->cmdline);
	if (!v)
		return ma_err(-ENOTSUP, "heap: Python %s is not supported",
			      t->version);
	missing = ma_pyver_missing(&t->off, ma_pyver_heap_fields(v));
	if (missing) {
		ma_err_set_exit(MA_EXIT_NODEBUG);
		return ma_err(-ENOENT,
			      "heap: process %d: no offset for %s in %s (the "
			      "census needs the collector's and the "
			      "containers' layouts)",
			      (int)t->pid, missing, t->off_origin);
	}
	cfg = (struct ma_heap_cfg){
		.magic = MA_HEAP_MAGIC,
		.abi = MA_HEAP_ABI,
		.attacher_pid =
			ma_proc_same_pidns(t->pid) ? (int32_t)getpid() : 0,
		.chunk_size = o->chunk_size ? o->chunk_size : 4u << 20,
		.runtime_addr = t->runtime_addr,
		.pool_size = v->pool_kib * 1024,
		.flags = v->heap_flags,
		.max_frames = o->max_frames > 0 ? (uint32_t)o->max_frames : 256,
		.off = t->off,
	};
	{
		static const char *const names[] = { "_PyDict_SizeOf",
						     "PyDict_Next" };
		uint64_t *const addrs[] = { &cfg.dict_sizeof, &cfg.dict_next };

		py_symbols(t, names, addrs, 2);
	}

	uint64_t avail = ma_proc_mem_available();

	if (avail && avail < HEAP_MIN_AVAILABLE) {
		ma_err_set_exit(MA_EXIT_NOMEM);
		return ma_err(-ENOMEM,
			      "heap: not enough free memory for a census: the "
			      "machine has %llu MiB available, a census needs "
			      "%llu MiB and about 64 bytes per object",
			      (unsigned long long)(avail >> 20),
			      (unsigned long long)(HEAP_MIN_AVAILABLE >> 20));
	}
	char cgw[256];
	uint64_t room = cgroup_room(t->pid, cgw, sizeof(cgw));
	/* and the copy's bitmap of the objects seen: a bit per 8 bytes of
	 * what is mapped, the resident part at least */
	uint64_t need = HEAP_MIN_CGROUP_ROOM +
			((uint64_t)t->status.vm_rss_kb << 10) / 64;

	if (room < need) {
		ma_err_set_exit(MA_EXIT_NOMEM);
		return ma_err(-ENOMEM,
			      "heap: process %d's memory cgroup %s has %llu "
			      "MiB left below its limit, and a census needs "
			      "%llu MiB there (its copy of the process is "
			      "charged to that cgroup: a few MiB and a 64th "
			      "of the process's RSS of its own, and every "
			      "page the process writes while it runs); "
			      "refused before touching the process, lest the "
			      "OOM killer take it",
			      (int)t->pid, cgw,
			      (unsigned long long)(room >> 20),
			      (unsigned long long)(need >> 20));
	}
	/* Reap what an earlier memattach killed mid-census left */
	{
		int reaped = 0;

		ma_inject_reap(t, &reaped);
	}
	err = ma_inject_heap_fork(t, &cfg, &hc);
	if (err)
		return err;
	if (room != UINT64_MAX)
		watch = room_watch_start(t->pid, hc.copy);
	{
		uint64_t sps[4096];
		size_t nsp = 0;

		for (size_t i = 0; i < hc.nthreads && nsp < 4096; i++)
			sps[nsp++] = hc.threads[i].sp;
		ma_heap_rss(t->pid, &g->rss, sps, nsp);
	}
	g->frozen_ns = hc.frozen_ns;
	g->all_stopped_ns = hc.all_stopped_ns;
	g->clone_ns = hc.clone_ns;
	err = ma_mem_open(hc.copy, &cm);
	if (err) {
		err = ma_err(err, "heap: opening the copy's memory (%d)",
			     (int)hc.copy);
		goto end;
	}
	buf = malloc(cfg.chunk_size);
	if (!buf) {
		err = -ENOMEM;
		goto end;
	}
	uint64_t walk0 = ma_now_ns();

	for (uint32_t idle = 0;;) {
		if (interrupted) {
			err = ma_err(-EINTR,
				     "heap: interrupted after %llu objects; "
				     "the census's copy ended, process %d "
				     "runs on as it was",
				     (unsigned long long)g->n, (int)t->pid);
			goto end;
		}
		err = tend_copy(hc.copy, why, sizeof(why));
		if (err) {
			if (strstr(why, "signal 9") && oom_kills() > oom0) {
				g->partial_oom = 1;
				snprintf(why, sizeof(why), COPY_OOM_WHY);
			}
			break;
		}
		err = ma_mem_read(cm, hc.box_addr, &box, sizeof(box));
		if (err) {
			snprintf(why, sizeof(why),
				 "the copy's box is unreadable");
			copy_death(hc.copy, oom0, why, sizeof(why),
				   &g->partial_oom);
			break;
		}
		if (box.state == MA_HEAP_ST_FAILED) {
			box.message[sizeof(box.message) - 1] = '\0';
			err = ma_err(box.error ? box.error : -EIO,
				     "heap: the walk failed in the copy of "
				     "process %d: %s",
				     (int)t->pid, box.message);
			goto end;
		}
		if (box.produced != box.consumed) {
			uint32_t c = box.consumed, b = c % MA_HEAP_NBUFS;
			uint64_t len = box.len[b];

			if (len > cfg.chunk_size ||
			    ma_mem_read(cm, box.buf[b], buf, len)) {
				err = -EIO;
				snprintf(why, sizeof(why),
					 "a chunk of the copy is unreadable");
				copy_death(hc.copy, oom0, why, sizeof(why),
					   &g->partial_oom);
				break;
			}
			c++;
			/* the buffer is the copy's again */
			copy_write(hc.copy,
				   hc.box_addr + offsetof(struct ma_heap_box,
							  consumed),
				   &c, sizeof(c));
			g->stream_bytes += len;
			err = parse_chunk(&ps, buf, len);
			if (err) {
				snprintf(why, sizeof(why),
					 err == -ENOMEM ? "out of memory"
							: "the copy's stream "
							  "is corrupt");
				break;
			}
			ma_step("heap.chunk");
			idle = 0;
			continue;
		}
		if (box.state == MA_HEAP_ST_DONE && ps.ended)
			break;
		if (ma_now_ns() - last_prog > 250000000ull) {
			last_prog = ma_now_ns();
			progress(o, box.progress, g->stream_bytes, 0);
			avail = ma_proc_mem_available();
			if (avail && avail < HEAP_MIN_AVAILABLE / 2) {
				ma_err_set_exit(MA_EXIT_NOMEM);
				err = ma_err(
					-ENOMEM,
					"heap: stopped after %llu objects: "
					"the machine is short of memory "
					"(%llu MiB available)",
					(unsigned long long)g->n,
					(unsigned long long)(avail >> 20));
				goto end;
			}
		}
		nap_us(idle++ < 100 ? 50 : 500);
	}
	g->walk_ns = ma_now_ns() - walk0;
	progress(o, ps.end.objects, g->stream_bytes, 1);
	if (err && room_watch_fired(watch, why, sizeof(why))) {
		/* the copy died of the watch's kill, which the walk sees as
		 * any death of the copy (tend_copy, an unreadable box or
		 * chunk): said once here, why */
		ma_err_set_exit(MA_EXIT_NOMEM);
		err = ma_err(-ENOMEM, "heap: stopped after %llu objects: %s",
			     (unsigned long long)g->n, why);
		goto end;
	}
	if (err) {
		/* What arrived is kept: a partial census */
		g->partial = 1;
		snprintf(g->partial_why, sizeof(g->partial_why), "%s", why);
		err = 0;
	}
	g->copy_peak_kb = private_kb(hc.copy);
	uint64_t r0 = ma_now_ns();

	g->pools = ps.pools;
	g->end = ps.end;
	err = finish_graph(&ps, cm, &t->off);
	if (!err)
		build_roots(&ps, cm, t, &hc, g);
	free(ps.idx);
	ps.idx = NULL;
	g->read_ns = ma_now_ns() - r0;
	if (err)
		goto end;
	live = calloc(1, sizeof(*live));
	if (live && !g->partial) {
		live->copy = hc.copy;
		live->box = hc.box_addr;
		live->mem = cm;
		live->off = &t->off;
		live->pyminor = g->pyminor;
		live->watch = watch;
		watch = NULL;
		cm = NULL;
		*livep = live;
		live = NULL;
	}
end:
	room_watch_end(watch);
	free(live);
	free(buf);
	parse_free(&ps);
	free(hc.threads);
	if (cm)
		ma_mem_close(cm);
	if (!*livep && hc.copy > 0) {
		struct ma_heap_live *l = calloc(1, sizeof(*l));

		if (l) {
			l->copy = hc.copy;
			ma_heap_live_end(l, t);
		} else {
			ma_kill_tracee(hc.copy);
		}
	}
	g->total_ns = ma_now_ns() - t0;
	return err;
}

/* Type flags (CPython's object.h, stable in 3.8-3.13) */
#define TPF_MANAGED_DICT (1ull << 4)
#define TPF_LONG	 (1ull << 24)
#define TPF_UNICODE	 (1ull << 28)

/* The flags of o's type, its address in *tp */
static int live_type_flags(struct ma_heap_live *l, uint64_t o, uint64_t *tp,
			   uint64_t *fl)
{
	if (ma_mem_read_u64(l->mem, o + (uint64_t)l->off->object_type, tp) ||
	    !*tp ||
	    ma_mem_read_u64(l->mem, *tp + (uint64_t)l->off->type_flags, fl))
		return -EIO;
	return 0;
}

/* An int of at most two 30-bit digits (|n| < 2^60), as decimal.  Its size
 * word: the signed count of digits up to 3.11, from 3.12 lv_tag (the count
 * shifted by 3, the sign in the low bits: 0 positive, 1 zero, 2 negative).
 * The digits follow it. */
static int live_int(struct ma_heap_live *l, uint64_t o, char *buf, size_t len)
{
	uint64_t word, at = o + (uint64_t)l->off->varobject_size;
	uint32_t d[2] = { 0, 0 };
	int64_t n;
	int neg;

	if (ma_mem_read_u64(l->mem, at, &word))
		return -EIO;
	if (l->pyminor >= 12) {
		n = (int64_t)(word >> 3);
		neg = (word & 3) == 2;
		if ((word & 3) == 1)
			n = 0;
	} else {
		n = (int64_t)word < 0 ? -(int64_t)word : (int64_t)word;
		neg = (int64_t)word < 0;
	}
	if (n < 0 || n > 2 || (n && ma_mem_read(l->mem, at + 8, d, 4 * n)))
		return -ERANGE;
	uint64_t v = (uint64_t)(d[0] & 0x3fffffffu) |
		     (uint64_t)(d[1] & 0x3fffffffu) << 30;

	snprintf(buf, len, "%s%llu", neg && v ? "-" : "",
		 (unsigned long long)v);
	return 0;
}

int ma_heap_live_key(struct ma_heap_live *l, uint64_t d, uint64_t v, char *buf,
		     size_t len)
{
	struct ma_heap_box box;
	uint32_t req = MA_HEAP_REQ_LABEL, done0;
	uint64_t key, tp, fl;
	char why[128], tname[8] = "";

	if (!l || l->ended)
		return -ENOENT;
	if (ma_mem_read(l->mem, l->box, &box, sizeof(box)))
		return -EIO;
	done0 = box.req_done;
	if (copy_write(l->copy, l->box + offsetof(struct ma_heap_box, req_a),
		       &d, 8) ||
	    copy_write(l->copy, l->box + offsetof(struct ma_heap_box, req_b),
		       &v, 8) ||
	    copy_write(l->copy, l->box + offsetof(struct ma_heap_box, req),
		       &req, 4))
		return -EIO;
	for (int i = 0; i < 20000; i++) {
		if (tend_copy(l->copy, why, sizeof(why)))
			return -ESRCH;
		if (ma_mem_read(l->mem, l->box, &box, sizeof(box)))
			return -EIO;
		if (box.req_done != done0)
			break;
		nap_us(i < 100 ? 20 : 200);
	}
	if (box.req_done == done0 || !box.req_result)
		return -ENOENT;
	key = box.req_result;
	/* Whatever the key is: a bytes, a tuple or a float read as a str gave
	 * garbage ("dict['???????']").  A str (or a subclass: its flag) is
	 * read as text (a subclass' instance is not compact: not read), an
	 * int (exactly int: an IntEnum member would print as its value) of
	 * up to 60 bits as a number, a bool as True or False; anything else
	 * is shown as unknown. */
	if (live_type_flags(l, key, &tp, &fl))
		return -EIO;
	if (fl & TPF_UNICODE)
		return ma_pyread_unicode(l->mem, l->off, key, buf, len) < 0
			       ? -ENOENT
			       : MA_HEAP_KEY_STR;
	if (!(fl & TPF_LONG))
		return -EMEDIUMTYPE;
	uint64_t np = 0;

	if (ma_mem_read_u64(l->mem, tp + (uint64_t)l->off->type_name, &np) ||
	    !np || ma_mem_read_cstr(l->mem, np, tname, sizeof(tname)) < 0)
		return -EMEDIUMTYPE;
	if (!strcmp(tname, "bool")) {
		if (live_int(l, key, buf, len))
			return -EMEDIUMTYPE;
		snprintf(buf, len, "%s", strcmp(buf, "0") ? "True" : "False");
		return MA_HEAP_KEY_INT;
	}
	if (strcmp(tname, "int"))
		return -EMEDIUMTYPE;
	return live_int(l, key, buf, len) ? -EMEDIUMTYPE : MA_HEAP_KEY_INT;
}

static int idx_pair_cmp(const void *a, const void *b)
{
	const struct idx_pair *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/*
 * The items of a long sequence searched a second time, sorted by address,
 * kept for the next searches: a census's rows are often items of one big list, and each of
 * them read the whole list from the copy again (--top 1000 over a list of
 * a million items: 4 GB read, 5 s; --top 5000, 100 s).  0 when kept in
 * l->ipairs, else a negative errno (the search then reads as before).
 */
enum { IDX_CACHE_MIN = 4096, IDX_CACHE_MAX = 1 << 25 };
static int idx_cache(struct ma_heap_live *l, uint64_t seq, uint64_t items,
		     uint64_t n)
{
	struct idx_pair *p;
	uint64_t chunk[512];

	if (l->iseq == seq && l->ipairs && l->inpairs == n)
		return 0;
	if (n < IDX_CACHE_MIN || n > IDX_CACHE_MAX)
		return -E2BIG;
	/* searched once: a linear search costs less than the sort */
	if (l->ilast != seq) {
		l->ilast = seq;
		return -EAGAIN;
	}
	p = malloc((size_t)n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	for (uint64_t i = 0; i < n;) {
		size_t k = n - i < 512 ? (size_t)(n - i) : 512;

		if (ma_mem_read(l->mem, items + 8 * i, chunk, 8 * k)) {
			free(p);
			return -EIO;
		}
		for (size_t j = 0; j < k; j++)
			p[i + j] = (struct idx_pair){ chunk[j], i + j };
		i += k;
	}
	qsort(p, (size_t)n, sizeof(*p), idx_pair_cmp);
	free(l->ipairs);
	l->ipairs = p;
	l->inpairs = (size_t)n;
	l->iseq = seq;
	return 0;
}

int ma_heap_live_index(struct ma_heap_live *l, uint64_t seq, int tuple,
		       uint64_t v, uint64_t *index)
{
	uint64_t n, items, chunk[512];

	if (!l || l->ended)
		return -ENOENT;
	if (ma_mem_read_u64(l->mem, seq + (uint64_t)l->off->varobject_size,
			    &n) ||
	    (int64_t)n < 0)
		return -EIO;
	/* A tuple's items follow its size word (PyTupleObject.ob_item, 3.8 to
	 * 3.13); a list points at its table */
	if (tuple)
		items = seq + (uint64_t)l->off->varobject_size + 8;
	else if (ma_mem_read_u64(l->mem, seq + (uint64_t)l->off->list_items,
				 &items) ||
		 !items)
		return -EIO;
	if (!idx_cache(l, seq, items, n)) {
		/* the first item at v: the linear search's answer */
		size_t lo = 0, hi = l->inpairs;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (l->ipairs[mid].addr < v)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == l->inpairs || l->ipairs[lo].addr != v)
			return -ENOENT;
		*index = l->ipairs[lo].index;
		return 0;
	}
	for (uint64_t i = 0; i < n;) {
		size_t k = n - i < 512 ? (size_t)(n - i) : 512;

		if (ma_mem_read(l->mem, items + 8 * i, chunk, 8 * k))
			return -EIO;
		for (size_t j = 0; j < k; j++)
			if (chunk[j] == v) {
				*index = i + j;
				return 0;
			}
		i += k;
	}
	return -ENOENT;
}

int ma_heap_live_own_dict(struct ma_heap_live *l, uint64_t o, uint64_t d)
{
	const struct ma_py_offsets *f;
	uint64_t tp, fl, slot, dict = 0;
	int64_t off;

	if (!l || l->ended)
		return -ENOENT;
	f = l->off;
	if (live_type_flags(l, o, &tp, &fl))
		return -EIO;
	if (l->pyminor >= 11 && (fl & TPF_MANAGED_DICT)) {
		/* 3.11-3.13: the dict pointer three words before the object
		 * (MANAGED_DICT_OFFSET), NULL while the attributes are kept
		 * as values without a dict; 3.12 tags it with bit 0 when it
		 * points at those values instead (PyDictOrValues) */
		if (ma_mem_read_u64(l->mem, o - 24, &dict))
			return -EIO;
		if (l->pyminor == 12 && (dict & 1))
			dict = 0;
		return dict && dict == d;
	}
	/* tp_dictoffset, four words after tp_base (tp_dict, tp_descr_get,
	 * tp_descr_set between) in every PyTypeObject of 3.8-3.13; negative:
	 * from the end of a variable-size object, as
	 * _PyObject_ComputedDictPointer */
	if (ma_mem_read(l->mem, tp + (uint64_t)f->type_base + 32, &off, 8))
		return -EIO;
	if (off == 0)
		return 0;
	if (off < 0) {
		uint64_t basic, item, size;

		if (ma_mem_read_u64(l->mem, tp + (uint64_t)f->type_basicsize,
				    &basic) ||
		    ma_mem_read_u64(l->mem, tp + (uint64_t)f->type_itemsize,
				    &item) ||
		    ma_mem_read_u64(l->mem, o + (uint64_t)f->varobject_size,
				    &size))
			return -EIO;
		if ((int64_t)size < 0)
			size = 0 - size; /* ob_size's absolute value */
		if (size > (1ull << 40) || item > (1ull << 20))
			return -ERANGE;
		off += (int64_t)((basic + size * item + 7) & ~7ull);
	}
	slot = o + (uint64_t)off;
	if (ma_mem_read_u64(l->mem, slot, &dict))
		return -EIO;
	return dict && dict == d;
}

int ma_heap_live_cut(const struct ma_heap_live *l, char *why, size_t len)
{
	return l && room_watch_fired(l->watch, why, len);
}

int ma_heap_live_end(struct ma_heap_live *l, struct ma_target *t)
{
	int status, reaped = 0, err;

	if (!l)
		return 0;
	room_watch_end(l->watch);
	ma_kill_tracee(l->copy);
	while (waitpid(l->copy, &status, __WALL) == l->copy &&
	       !WIFEXITED(status) && !WIFSIGNALED(status))
		;
	if (l->mem)
		ma_mem_close(l->mem);
	l->mem = NULL;
	free(l->ipairs);
	l->ipairs = NULL;
	ma_step("heap.copy-killed");
	/* The zombie is the target's child: only the target can reap it */
	err = ma_inject_reap(t, &reaped);
	ma_step("heap.reaped");
	free(l);
	return err;
}

void ma_heap_graph_free(struct ma_heap_graph *g)
{
	/* types are counted as the stream arrives, their names made only by
	 * finish_graph: a walk that ends before it (the copy says FAILED
	 * after some chunks) has ntypes and no array (fuzz/heap, issue 13) */
	for (size_t i = 0; g->types && i < g->ntypes; i++)
		free(g->types[i].name);
	for (size_t i = 0; i < g->nlabels; i++)
		free(g->labels[i].text);
	free(g->labels);
	for (size_t i = 0; i < g->nroots; i++) {
		free(g->roots[i].name);
		free(g->roots[i].func);
		free(g->roots[i].file);
		free(g->roots[i].thread);
	}
	free(g->types);
	free(g->roots);
	free(g->addr);
	free(g->size);
	free(g->type);
	free(g->refcnt);
	free(g->flags);
	free(g->eoff);
	free(g->edges);
	memset(g, 0, sizeof(*g));
}
