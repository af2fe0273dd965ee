/* SPDX-License-Identifier: MIT */
/*
 * The payload against real interpreters, in-process: a Python target
 * (tests/payload/target.py) loads memattach_payload.so with ctypes and calls
 * ma_start with a config built here (offsets from the attacher's discovery
 * of that very process); this test maps the ring through /proc/PID/fd/N and
 * consumes it with common/ma_ring_io.c, like the attacher will.
 *
 * Checked on Debian's /usr/bin/python3 (non-PIE, hazard 7) and each pyenv
 * 3.8-3.13 present: sizes, kinds and Python stacks (function and line) of
 * allocations made at known lines; frees; a block allocated in one thread
 * and freed in another; native allocations from a library loaded before and
 * one loaded after ma_start (dlopen hook); mmap/munmap; fork; GOT slots
 * patched and restored (read back from the target's memory); stop; a
 * second session; a killed consumer (ORPHANED within ~1 s, target alive).
 */
#include <criterion/criterion.h>

#include <elf.h>

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../common/ma_config.h"
#include "../../common/ma_ring_io.h"
#include "discover.h"
#include "errors.h"
#include "linetable.h"
#include "memread.h"
#include "procfs.h"
#include "symbols.h"

#define PAYLOAD	     MA_BINARY_DIR "/injector/memattach_payload.so"
#define ALLOCDIR     MA_BINARY_DIR "/injector"
#define TARGET_PY    MA_SOURCE_DIR "/tests/payload/target.py"
#define BIG	     (7u * 1024 * 1024)
#define THREAD_BYTES (3u * 1024 * 1024 + 17)
#define CHILD_BYTES  (5u * 1024 * 1024 + 3)
#define NATIVE_BYTES 123457u

/* ------------------------------------------------------------------ */
/* The target process */

struct target {
	pid_t pid;
	int in, out; /* its stdin (we write), stdout (we read) */
	char version[32];
};

static int read_line(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = { fd, POLLIN, 0 };
		char c;

		if (poll(&p, 1, timeout_ms) <= 0)
			return -ETIMEDOUT;
		if (read(fd, &c, 1) != 1)
			return -EIO;
		if (c == '\n')
			break;
		buf[n++] = c;
	}
	buf[n] = '\0';
	return (int)n;
}

static int target_spawn(struct target *t, const char *exe, const char *preload)
{
	int in[2], out[2];
	char line[256];

	if (pipe(in) || pipe(out))
		return -errno;
	t->pid = fork();
	if (t->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		setenv("MA_PAYLOAD", PAYLOAD, 1);
		setenv("MA_TESTALLOC_DIR", ALLOCDIR, 1);
		if (preload)
			setenv("LD_PRELOAD", preload, 1);
		execl(exe, exe, "-u", TARGET_PY, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	t->in = in[1];
	t->out = out[0];
	if (read_line(t->out, line, sizeof(line), 30000) < 0 ||
	    sscanf(line, "READY %*d %31s", t->version) != 1)
		return -EIO;
	return 0;
}

static void target_kill(struct target *t)
{
	if (t->pid > 0) {
		kill(t->pid, SIGKILL);
		waitpid(t->pid, NULL, 0);
	}
	close(t->in);
	close(t->out);
	t->pid = 0;
}

/* One command, one reply line */
static int cmd(struct target *t, char *reply, size_t len, const char *fmt, ...)
{
	char line[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	if (write(t->in, line, (size_t)n) != n)
		return -EIO;
	return read_line(t->out, reply, len, 30000);
}

/* Line of '# MARK: name' in target.py */
static int mark(const char *name)
{
	FILE *f = fopen(TARGET_PY, "r");
	char line[512], tag[128];
	int n = 0, found = -1;

	snprintf(tag, sizeof(tag), "# MARK: %s", name);
	while (f && fgets(line, sizeof(line), f)) {
		n++;
		if (strstr(line, tag)) {
			found = n;
			break;
		}
	}
	if (f)
		fclose(f);
	return found;
}

/* ------------------------------------------------------------------ */
/* The consumer: a model of everything the ring said */

struct ev {
	uint32_t type, thread;
	uint64_t ptr, size;
	uint32_t node, kind;
	uint64_t seq; /* position in the ring */
};

struct code {
	char *name, *file;
	int first;
	uint8_t *lt;
	size_t ltlen;
	uint32_t version;
};

struct node {
	uint32_t parent, code;
	int32_t addr;
};

struct model {
	pthread_mutex_t mu;
	struct ev *ev;
	size_t nev, capev;
	uint64_t events; /* ALLOC and FREE events, TEMP pairs included */
	uint64_t temp_pairs;
	struct code codes[65536];
	uint32_t ncodes;
	struct node *nodes;
	uint32_t nnodes;
	int tids[4096];
	uint32_t nthreads;
	int forks[64];
	int nforks;
	struct ma_rec_stats stats;
	int have_stats;
	int bad_order; /* a record named an id not defined before */
	int bad_record;
	uint64_t seq;
	int count_only; /* stress: count events, keep none */
};

struct consumer {
	pthread_t th;
	void *map;
	size_t len;
	struct ma_ring_reader r;
	volatile int stop, heartbeat;
	struct model *m;
};

static void push_ev(struct model *m, const struct ev *e)
{
	m->events++;
	if (m->count_only) {
		m->nev++;
		return;
	}
	if (m->nev == m->capev) {
		m->capev = m->capev ? 2 * m->capev : 65536;
		m->ev = realloc(m->ev, m->capev * sizeof(*m->ev));
	}
	m->ev[m->nev++] = *e;
}

static void apply(struct model *m, const struct ma_rec *rec)
{
	uint32_t type = ma_rec_type(rec->type_len);
	uint32_t len = ma_rec_len(rec->type_len);
	struct ev e = { .type = type, .thread = rec->thread, .seq = m->seq++ };

	if (rec->thread > m->nthreads && type != MA_REC_THREAD)
		m->bad_order++;
	switch (type) {
	case MA_REC_ALLOC: {
		const struct ma_rec_alloc *a = (const void *)rec;

		e.ptr = a->ptr;
		e.size = a->size;
		e.node = a->node;
		e.kind = a->kind;
		if (a->node > m->nnodes)
			m->bad_order++;
		push_ev(m, &e);
		break;
	}
	case MA_REC_FREE: {
		const struct ma_rec_free *f = (const void *)rec;

		e.ptr = f->ptr;
		e.size = f->size;
		e.kind = f->kind;
		push_ev(m, &e);
		break;
	}
	case MA_REC_THREAD: {
		const struct ma_rec_thread *t = (const void *)rec;

		if (t->h.thread != m->nthreads + 1 || t->h.thread >= 4096)
			m->bad_order++;
		else
			m->tids[m->nthreads++] = t->tid;
		break;
	}
	case MA_REC_CODE: {
		const struct ma_rec_code *c = (const void *)rec;
		const char *p = (const char *)(c + 1);
		struct code *k;

		if (c->id != m->ncodes + 1 || c->id >= 65536 ||
		    sizeof(*c) + c->name_len + c->file_len + c->linetable_len >
			    len) {
			m->bad_record++;
			break;
		}
		k = &m->codes[m->ncodes++];
		k->name = strndup(p, c->name_len);
		k->file = strndup(p + c->name_len, c->file_len);
		k->first = c->firstlineno;
		k->ltlen = c->linetable_len;
		k->lt = malloc(k->ltlen + 1);
		memcpy(k->lt, p + c->name_len + c->file_len, k->ltlen);
		k->version = c->version_hex;
		break;
	}
	case MA_REC_NODE: {
		const struct ma_rec_node *n = (const void *)rec;

		if (n->id != m->nnodes + 1 || n->parent > m->nnodes ||
		    n->code == 0 || n->code > m->ncodes) {
			m->bad_order++;
			break;
		}
		m->nodes =
			realloc(m->nodes, (m->nnodes + 2) * sizeof(*m->nodes));
		m->nodes[++m->nnodes] =
			(struct node){ n->parent, n->code, n->addr };
		break;
	}
	case MA_REC_TEMP: {
		const struct ma_rec_temp *t = (const void *)rec;

		if (len < sizeof(*t) || t->count == 0 || t->size > 512 ||
		    t->dist > MA_TEMP_DMAX ||
		    (t->kind != MA_KIND_PYMEM && t->kind != MA_KIND_PYOBJ)) {
			m->bad_record++;
			break;
		}
		if (t->node > m->nnodes)
			m->bad_order++;
		e.ptr = MA_TEMP_ADDR(t->dist);
		e.size = t->size;
		e.node = t->node;
		e.kind = t->kind;
		m->events += 2 * t->count - 1; /* push_ev adds one */
		m->temp_pairs += t->count;
		push_ev(m, &e);
		break;
	}
	case MA_REC_STATS:
		memcpy(&m->stats, rec, sizeof(m->stats));
		m->have_stats = 1;
		break;
	case MA_REC_FORK: {
		const struct ma_rec_fork *f = (const void *)rec;

		if (m->nforks < 64)
			m->forks[m->nforks++] = f->child_pid;
		break;
	}
	default:
		m->bad_record++;
	}
}

static void *consumer_main(void *arg)
{
	struct consumer *c = arg;
	uint64_t last_hb = 0;

	while (!c->stop) {
		const struct ma_rec *rec;
		int n = 0, got;
		uint64_t now = ma_ring_now_ns();

		if (c->heartbeat && now - last_hb > 20000000) {
			ma_ring_heartbeat(c->r.hdr, now);
			last_hb = now;
		}
		pthread_mutex_lock(&c->m->mu);
		while ((got = ma_ring_next(&c->r, &rec)) == 1) {
			apply(c->m, rec);
			if (++n % 1024 == 0)
				ma_ring_release(&c->r);
		}
		if (got < 0)
			c->m->bad_record++;
		ma_ring_release(&c->r);
		pthread_mutex_unlock(&c->m->mu);
		if (!n)
			usleep(1000);
	}
	return NULL;
}

static int consumer_start(struct consumer *c, struct model *m, pid_t pid,
			  int fd)
{
	char path[64];
	int rfd, err;

	memset(c, 0, sizeof(*c));
	c->m = m;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	rfd = open(path, O_RDWR);
	if (rfd < 0)
		return -errno;
	err = ma_ring_map_fd(rfd, &c->map, &c->len);
	close(rfd);
	if (err < 0)
		return err;
	err = ma_ring_reader_init(&c->r, c->map, c->len);
	if (err < 0)
		return err;
	c->heartbeat = 1;
	ma_ring_heartbeat(c->r.hdr, ma_ring_now_ns());
	if (pthread_create(&c->th, NULL, consumer_main, c))
		return -EAGAIN;
	/* the watchdog patches the GOT after ma_start, threads running (as
	 * memattach, wait for it: the scenarios expect native hooks) */
	for (int i = 0; i < 5000 &&
			__atomic_load_n(&c->r.hdr->got_state,
					__ATOMIC_ACQUIRE) == MA_GOT_PENDING &&
			ma_ring_state(c->r.hdr) == MA_STATE_TRACKING;
	     i++)
		usleep(1000);
	return 0;
}

static void consumer_stop(struct consumer *c)
{
	c->stop = 1;
	pthread_join(c->th, NULL);
	munmap(c->map, c->len);
}

static void model_init(struct model *m)
{
	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->mu, NULL);
}

static void model_free(struct model *m)
{
	for (uint32_t i = 0; i < m->ncodes; i++) {
		free(m->codes[i].name);
		free(m->codes[i].file);
		free(m->codes[i].lt);
	}
	free(m->ev);
	free(m->nodes);
}

/* Wait until the consumer has read everything published so far */
static void drain(struct consumer *c)
{
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&c->m->mu);
		uint64_t left = ma_ring_backlog(&c->r);

		pthread_mutex_unlock(&c->m->mu);
		if (!left)
			return;
		usleep(1000);
	}
}

/* Events of a type at a pointer whose kind is in kinds (a bit mask), from
 * index from on, up to the first event of the other type of those kinds
 * after a hit (the address may be handed out again after that) */
static const struct ev *find(struct model *m, size_t from, uint32_t type,
			     uint64_t ptr, uint32_t kinds, int *count)
{
	const struct ev *hit = NULL;

	*count = 0;
	for (size_t i = from; i < m->nev; i++) {
		if (m->ev[i].ptr != ptr || !(kinds & 1u << m->ev[i].kind))
			continue;
		if (m->ev[i].type == type) {
			if (!hit)
				hit = &m->ev[i];
			(*count)++;
		} else if (hit) {
			break;
		}
	}
	return hit;
}

#define K(k)   (1u << (k))
#define K_PY   (K(MA_KIND_PYOBJ) | K(MA_KIND_PYMEM))
#define K_HEAP (K(MA_KIND_MALLOC) | K(MA_KIND_CALLOC) | K(MA_KIND_ALIGNED))

/* Frame depth of node (0 innermost): function and line */
static int frame_at(struct model *m, uint32_t node, int depth,
		    const char **func, int *line)
{
	while (node && depth--)
		node = m->nodes[node].parent;
	if (!node || node > m->nnodes)
		return -1;
	const struct node *n = &m->nodes[node];
	const struct code *c = &m->codes[n->code - 1];

	*func = c->name;
	*line = ma_linetable_addr2line(c->version, c->lt, c->ltlen, c->first,
				       n->addr);
	return 0;
}

static void expect_frame(struct model *m, uint32_t node, int depth,
			 const char *func, int line, const char *what)
{
	const char *f = NULL;
	int l = -1;

	cr_expect(frame_at(m, node, depth, &f, &l) == 0,
		  "%s: no frame %d in the stack", what, depth);
	if (!f)
		return;
	/* 3.11+ report co_qualname: the plain functions here have none */
	cr_expect(strcmp(f, func) == 0, "%s: frame %d is %s, expected %s", what,
		  depth, f, func);
	if (line != -2) /* -2: any line */
		cr_expect(l == line,
			  "%s: frame %d (%s) at line %d, expected %d", what,
			  depth, f, l, line);
}

/* ------------------------------------------------------------------ */
/* GOT slots, read back from the target */

/* Target address of the GOT slot (JUMP_SLOT or GLOB_DAT) of sym in the
 * module mapped from path (as the target sees it; elf: the same file from
 * here), -1 when none */
static int64_t got_slot(pid_t pid, const char *path, const char *elf,
			const char *sym)
{
	static const char *const secs[] = { ".rela.plt", ".rela.dyn" };
	struct ma_maps maps = { 0 };
	struct ma_elf *e = NULL;
	const struct ma_map *mp;
	size_t ssz, strsz;
	const Elf64_Sym *syms;
	const char *strs;
	uint64_t off, first;
	int64_t out = -1;

	if (ma_maps_read(pid, &maps) < 0)
		return -1;
	mp = ma_maps_find_file(&maps, path);
	if (!mp || ma_elf_open(elf, &e) < 0)
		goto done;
	first = ma_elf_first_load(e, &off);
	syms = ma_elf_section(e, ".dynsym", &ssz, NULL);
	strs = ma_elf_section(e, ".dynstr", &strsz, NULL);
	for (int k = 0; k < 2 && syms && strs && out < 0; k++) {
		size_t rsz;
		const Elf64_Rela *rel = ma_elf_section(e, secs[k], &rsz, NULL);

		for (size_t i = 0; rel && i < rsz / sizeof(*rel); i++) {
			uint32_t si = ELF64_R_SYM(rel[i].r_info);
			uint32_t ty = ELF64_R_TYPE(rel[i].r_info);

			if ((ty != R_X86_64_JUMP_SLOT &&
			     ty != R_X86_64_GLOB_DAT) ||
			    si * sizeof(*syms) >= ssz ||
			    syms[si].st_name >= strsz)
				continue;
			if (strcmp(strs + syms[si].st_name, sym) == 0) {
				uint64_t bias = ma_elf_is_dyn(e)
							? mp->start - first
							: 0;

				out = (int64_t)(bias + rel[i].r_offset);
				break;
			}
		}
	}
done:
	if (e)
		ma_elf_close(e);
	ma_maps_free(&maps);
	return out;
}

static uint64_t read_u64(pid_t pid, int64_t addr)
{
	struct ma_mem *m;
	uint64_t v = 0;

	if (addr < 0 || ma_mem_open(pid, &m) < 0)
		return 0;
	ma_mem_read_u64(m, (uint64_t)addr, &v);
	ma_mem_close(m);
	return v;
}

/* Range of the payload's mappings in the target */
static void payload_range(pid_t pid, uint64_t *lo, uint64_t *hi)
{
	struct ma_maps maps = { 0 };

	*lo = UINT64_MAX;
	*hi = 0;
	if (ma_maps_read(pid, &maps) < 0)
		return;
	for (size_t i = 0; i < maps.n; i++) {
		if (!strstr(maps.v[i].path, "memattach_payload.so"))
			continue;
		if (maps.v[i].start < *lo)
			*lo = maps.v[i].start;
		if (maps.v[i].end > *hi)
			*hi = maps.v[i].end;
	}
	ma_maps_free(&maps);
}

/* ------------------------------------------------------------------ */

static void hexcfg(const struct ma_config *c, char *out)
{
	const uint8_t *b = (const void *)c;

	for (size_t i = 0; i < sizeof(*c); i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static int start(struct target *tg, struct ma_target *t, int *ring_fd, int *gen)
{
	struct ma_config c;
	char hex[2 * sizeof(c) + 1], reply[512];
	int status, state;

	memset(&c, 0, sizeof(c));
	c.magic = MA_CONFIG_MAGIC;
	c.abi = MA_CONFIG_ABI;
	c.size = sizeof(c);
	c.flags = MA_TRACK_NATIVE | MA_TRACK_MMAP | MA_TRACK_PYTHON;
	c.ring_size = 8u << 20;
	c.full_wait_us = 200000;
	c.max_frames = 128;
	c.attacher_pid = getpid();
	c.payload_fd = -1;
	c.runtime_addr = t->runtime_addr;
	c.off = t->off;
	hexcfg(&c, hex);
	cr_assert(cmd(tg, reply, sizeof(reply), "start %s", hex) > 0);
	cr_assert(sscanf(reply, "started %d %d %d %d", &status, ring_fd, &state,
			 gen) == 4,
		  "start: %s", reply);
	cr_assert(status == 0 && *ring_fd >= 0 && state == MA_STATE_TRACKING,
		  "start: %s", reply);
	if (getenv("MA_TEST_VERBOSE"))
		fprintf(stderr, "%s\n", reply);
	return 0;
}

static uint32_t wait_state(struct ma_ring_hdr *h, uint32_t want, int ms)
{
	uint32_t s = 0;

	for (int i = 0; i < ms; i++) {
		s = ma_ring_state(h);
		if (s == want)
			break;
		usleep(1000);
	}
	return s;
}

static void run(const char *exe, const char *preload)
{
	struct target tg = { 0 };
	struct ma_target *t = NULL;
	struct model *m = calloc(1, sizeof(*m));
	struct consumer c;
	char reply[512];
	int ring_fd, gen, cnt;
	unsigned long long addr, p, q, r;
	uint64_t plo, phi;

	if (access(exe, X_OK) != 0 || (preload && access(preload, R_OK))) {
		free(m);
		cr_skip_test("%s is not installed", preload ? preload : exe);
	}
	model_init(m);
	cr_assert(target_spawn(&tg, exe, preload) == 0,
		  "%s: target did not start", exe);
	cr_assert(ma_target_open(tg.pid, NULL, &t) == 0, "discover %s: %s", exe,
		  ma_errmsg());

	/* a library loaded before tracking, and its GOT before patching */
	cr_assert(cmd(&tg, reply, sizeof(reply), "load a") > 0);
	char liba[4096];

	snprintf(liba, sizeof(liba), "%s/libma_testalloc_a.so", ALLOCDIR);
	int64_t slot_a = got_slot(tg.pid, liba, liba, "malloc");
	int64_t slot_py =
		got_slot(tg.pid, t->pymod_path, t->pymod_local, "malloc");

	cr_expect(slot_a > 0, "no malloc GOT slot in %s", liba);
	cr_expect(slot_py > 0, "no malloc GOT slot in %s", t->pymod_path);
	uint64_t before_a = read_u64(tg.pid, slot_a);
	uint64_t before_py = read_u64(tg.pid, slot_py);

	cr_assert(cmd(&tg, reply, sizeof(reply), "got a") > 0);
	unsigned long long glob_before = 0, glob_during = 0, glob_after = 0;

	sscanf(reply, "got %llu", &glob_before);

	start(&tg, t, &ring_fd, &gen);
	cr_assert(consumer_start(&c, m, tg.pid, ring_fd) == 0,
		  "map the ring of %d", tg.pid);
	cr_expect(c.r.hdr->target_pid == (uint32_t)tg.pid);

	/* GOT patched: JUMP_SLOTs and the GLOB_DAT slot point into us */
	payload_range(tg.pid, &plo, &phi);
	uint64_t during_a = read_u64(tg.pid, slot_a);
	uint64_t during_py = read_u64(tg.pid, slot_py);

	cr_expect(during_a >= plo && during_a < phi,
		  "libma_testalloc_a malloc slot %#lx not in the payload",
		  (unsigned long)during_a);
	cr_expect(during_py >= plo && during_py < phi,
		  "python's malloc slot %#lx not in the payload",
		  (unsigned long)during_py);
	cr_assert(cmd(&tg, reply, sizeof(reply), "got a") > 0);
	sscanf(reply, "got %llu", &glob_during);
	cr_expect(glob_during >= plo && glob_during < phi,
		  "GLOB_DAT malloc %#llx not in the payload", glob_during);

	/* a big Python allocation at a known line, then its free.  Only
	 * events after the command count: glibc may hand the big block the
	 * address of a block allocated and freed before it (the stdin
	 * buffer's, once its mmap threshold has risen) */
	size_t from;

	drain(&c);
	pthread_mutex_lock(&m->mu);
	from = m->nev;
	pthread_mutex_unlock(&m->mu);
	cr_assert(cmd(&tg, reply, sizeof(reply), "big") > 0);
	cr_assert(sscanf(reply, "big %llu", &addr) == 1, "%s", reply);
	drain(&c);
	pthread_mutex_lock(&m->mu);
	const struct ev *a = find(m, from, MA_REC_ALLOC, addr, K_PY, &cnt);
	uint32_t big_kind = a ? a->kind : 0;

	cr_expect(cnt == 1, "%s: %d ALLOCs at the bytearray's address", exe,
		  cnt);
	if (a) {
		cr_expect(a->size >= BIG && a->size <= BIG + 64,
			  "big: size %lu", (unsigned long)a->size);
		cr_expect(a->kind == MA_KIND_PYOBJ || a->kind == MA_KIND_PYMEM,
			  "big: kind %u", a->kind);
		cr_expect(a->thread && m->tids[a->thread - 1] == tg.pid,
			  "big: thread");
		expect_frame(m, a->node, 0, "alloc_big", mark("big"), "big");
		expect_frame(m, a->node, 1, "call_big", mark("call_big"),
			     "big");
	}
	from = m->nev;
	pthread_mutex_unlock(&m->mu);
	cr_assert(cmd(&tg, reply, sizeof(reply), "free_big") > 0);
	drain(&c);
	pthread_mutex_lock(&m->mu);
	a = find(m, from, MA_REC_FREE, addr, K_PY, &cnt);
	cr_expect(cnt == 1 && a && a->kind == big_kind,
		  "%s: FREE of the bytearray: %d (kind %u)", exe, cnt,
		  a ? a->kind : 0);
	from = m->nev;
	pthread_mutex_unlock(&m->mu);

	/* allocated in one thread, freed in another */
	int tid_a, tid_b;

	cr_assert(cmd(&tg, reply, sizeof(reply), "thread") > 0);
	cr_assert(sscanf(reply, "thread %llu %d %d", &addr, &tid_a, &tid_b) ==
			  3,
		  "%s", reply);
	drain(&c);
	pthread_mutex_lock(&m->mu);
	a = find(m, from, MA_REC_ALLOC, addr, K_PY, &cnt);
	cr_expect(cnt == 1, "thread alloc: %d", cnt);
	const struct ev *f = find(m, from, MA_REC_FREE, addr, K_PY, &cnt);

	cr_expect(cnt == 1, "thread free: %d", cnt);
	if (a && f) {
		cr_expect(a->size >= THREAD_BYTES &&
			  a->size < THREAD_BYTES + 64);
		cr_expect(a->thread != f->thread && a->thread && f->thread,
			  "alloc thread %u, free thread %u", a->thread,
			  f->thread);
		if (tid_a && a->thread && f->thread) {
			cr_expect(m->tids[a->thread - 1] == tid_a);
			cr_expect(m->tids[f->thread - 1] == tid_b);
		}
		cr_expect(a->seq < f->seq);
		expect_frame(m, a->node, 0, "alloc_in_thread",
			     mark("thread_alloc"), "thread");
	}
	from = m->nev;
	pthread_mutex_unlock(&m->mu);

	/* native: a library loaded before start, one loaded after */
	for (int lib = 0; lib < 2; lib++) {
		const char *name = lib ? "b" : "a";

		if (lib)
			cr_assert(cmd(&tg, reply, sizeof(reply), "load b") > 0);
		cr_assert(cmd(&tg, reply, sizeof(reply), "native %s %u", name,
			      NATIVE_BYTES) > 0);
		cr_assert(sscanf(reply, "native %llu %llu %llu", &p, &q, &r) ==
				  3,
			  "%s", reply);
		cr_assert(cmd(&tg, reply, sizeof(reply), "native_free") > 0);
		drain(&c);
		pthread_mutex_lock(&m->mu);
		a = find(m, from, MA_REC_ALLOC, p, K_HEAP, &cnt);
		cr_expect(cnt == 1 && a && a->kind == MA_KIND_MALLOC &&
				  a->size == NATIVE_BYTES,
			  "lib %s malloc: %d (kind %u size %lu)", name, cnt,
			  a ? a->kind : 0, a ? (unsigned long)a->size : 0);
		if (a)
			expect_frame(m, a->node, 0, "cmd", -2, "native");
		a = find(m, from, MA_REC_ALLOC, q, K_HEAP, &cnt);
		cr_expect(cnt == 1 && a && a->kind == MA_KIND_CALLOC &&
				  a->size == 3 * NATIVE_BYTES,
			  "lib %s calloc: %d", name, cnt);
		a = find(m, from, MA_REC_ALLOC, r, K_HEAP, &cnt);
		cr_expect(cnt == 1 && a && a->kind == MA_KIND_ALIGNED,
			  "lib %s posix_memalign: %d", name, cnt);
		find(m, from, MA_REC_FREE, p, K_HEAP, &cnt);
		cr_expect(cnt == 1, "lib %s free", name);
		find(m, from, MA_REC_FREE, r, K_HEAP, &cnt);
		cr_expect(cnt == 1, "lib %s free (aligned)", name);
		from = m->nev;
		pthread_mutex_unlock(&m->mu);
	}

	/* mmap / munmap */
	cr_assert(cmd(&tg, reply, sizeof(reply), "mmap a 1048576") > 0);
	cr_assert(sscanf(reply, "mmap %llu", &p) == 1);
	drain(&c);
	pthread_mutex_lock(&m->mu);
	a = find(m, from, MA_REC_ALLOC, p, K(MA_KIND_MMAP), &cnt);
	cr_expect(cnt == 1 && a && a->kind == MA_KIND_MMAP &&
			  a->size == 1048576,
		  "mmap: %d", cnt);
	f = find(m, from, MA_REC_FREE, p, K(MA_KIND_MMAP), &cnt);
	cr_expect(cnt == 1 && f && f->kind == MA_KIND_MMAP &&
			  f->size == 1048576,
		  "munmap: %d", cnt);
	from = m->nev;
	pthread_mutex_unlock(&m->mu);

	/* fork: the parent logs it, the child records nothing */
	int child, status;

	cr_assert(cmd(&tg, reply, sizeof(reply), "fork") > 0);
	cr_assert(sscanf(reply, "fork %d %d", &child, &status) == 2, "%s",
		  reply);
	cr_expect(status == 0, "fork child exit status %d", status);
	usleep(100000);
	drain(&c);
	pthread_mutex_lock(&m->mu);
	int seen_fork = 0;

	for (int i = 0; i < m->nforks; i++)
		seen_fork |= m->forks[i] == child;
	cr_expect(seen_fork, "no FORK record for child %d", child);
	for (size_t i = from; i < m->nev; i++)
		cr_expect(!(m->ev[i].type == MA_REC_ALLOC &&
			    m->ev[i].size >= CHILD_BYTES &&
			    m->ev[i].size < CHILD_BYTES + 64),
			  "the fork child wrote into the parent's ring");
	from = m->nev;
	pthread_mutex_unlock(&m->mu);

	/* stop: hooks restored, final record, target keeps running */
	cr_assert(cmd(&tg, reply, sizeof(reply), "stop") > 0);
	cr_expect(wait_state(c.r.hdr, MA_STATE_STOPPED, 3000) ==
			  MA_STATE_STOPPED,
		  "state after ma_stop");
	cr_expect(c.r.hdr->stop_ns != 0);
	drain(&c);
	usleep(20000);
	pthread_mutex_lock(&m->mu);
	cr_expect(m->have_stats, "no STATS record");
	cr_expect(m->stats.allocs > 0 && m->stats.frees > 0);
	cr_expect(m->bad_order == 0, "%d records named undefined ids",
		  m->bad_order);
	cr_expect(m->bad_record == 0, "%d malformed records", m->bad_record);
	cr_expect(c.r.hdr->lost_records == 0, "%lu records lost",
		  (unsigned long)c.r.hdr->lost_records);
	size_t nev_stopped = m->nev;
	pthread_mutex_unlock(&m->mu);
	cr_expect(read_u64(tg.pid, slot_a) == before_a,
		  "lib a malloc slot not restored: %#lx != %#lx",
		  (unsigned long)read_u64(tg.pid, slot_a),
		  (unsigned long)before_a);
	cr_expect(read_u64(tg.pid, slot_py) == before_py,
		  "python malloc slot not restored");
	cr_assert(cmd(&tg, reply, sizeof(reply), "got a") > 0);
	sscanf(reply, "got %llu", &glob_after);
	cr_expect(glob_after == glob_before, "GLOB_DAT slot not restored");
	cr_assert(cmd(&tg, reply, sizeof(reply), "big") > 0);
	usleep(20000);
	pthread_mutex_lock(&m->mu);
	cr_expect(m->nev == nev_stopped, "events after stop");
	pthread_mutex_unlock(&m->mu);
	consumer_stop(&c);
	model_free(m);

	/* a second session in the same process, then a killed consumer */
	int gen2;

	model_init(m);
	start(&tg, t, &ring_fd, &gen2);
	cr_expect(gen2 == gen + 1, "generation %d after %d", gen2, gen);
	cr_assert(consumer_start(&c, m, tg.pid, ring_fd) == 0);
	drain(&c);
	pthread_mutex_lock(&m->mu);
	from = m->nev;
	pthread_mutex_unlock(&m->mu);
	cr_assert(cmd(&tg, reply, sizeof(reply), "big") > 0);
	cr_assert(sscanf(reply, "big %llu", &addr) == 1);
	drain(&c);
	pthread_mutex_lock(&m->mu);
	a = find(m, from, MA_REC_ALLOC, addr, K_PY, &cnt);
	cr_expect(cnt == 1, "second session: big recorded %d times", cnt);
	if (a)
		expect_frame(m, a->node, 0, "alloc_big", mark("big"),
			     "second session");
	pthread_mutex_unlock(&m->mu);

	pid_t hb = fork();

	if (hb == 0) {
		for (;;) {
			ma_ring_heartbeat(c.r.hdr, ma_ring_now_ns());
			usleep(20000);
		}
	}
	c.heartbeat = 0;
	usleep(300000);
	kill(hb, SIGKILL);
	waitpid(hb, NULL, 0);
	uint64_t t0 = ma_ring_now_ns();
	uint32_t st = wait_state(c.r.hdr, MA_STATE_ORPHANED, 4000);
	double secs = (double)(ma_ring_now_ns() - t0) / 1e9;

	cr_expect(st == MA_STATE_ORPHANED, "state %u after the consumer died",
		  st);
	cr_expect(secs > 0.6 && secs < 2.0, "orphaned after %.2f s", secs);
	if (getenv("MA_TEST_VERBOSE"))
		fprintf(stderr, "orphaned %.3f s after the consumer died\n",
			secs);
	cr_expect(strstr(c.r.hdr->message, "heartbeat") != NULL, "message: %s",
		  c.r.hdr->message);
	cr_assert(cmd(&tg, reply, sizeof(reply), "ctl") > 0);
	cr_expect(strncmp(reply, "ctl 0 -1 5 ", 11) == 0,
		  "ctl after orphan: %s", reply);
	cr_assert(cmd(&tg, reply, sizeof(reply), "big") > 0,
		  "target dead after orphaning");
	cr_expect(read_u64(tg.pid, slot_a) == before_a,
		  "slot not restored after orphaning");
	consumer_stop(&c);
	model_free(m);
	free(m);
	cmd(&tg, reply, sizeof(reply), "exit");
	target_kill(&tg);
	ma_target_close(t);
}

/*
 * Stop and start while threads allocate: native threads (no GIL) and
 * Python threads churn for the whole test while sessions are started and
 * ended by ma_stop, by MA_CMD_STOP and by a silent consumer.  Each session
 * must end in its state with a STATS record and a well-formed ring; the
 * target must survive all of it.  Then 1500 short-lived threads (more than
 * the payload's 1024 slots) in one session.
 */
static void stress(const char *exe)
{
	struct target tg = { 0 };
	struct ma_target *t = NULL;
	struct model *m = calloc(1, sizeof(*m));
	struct consumer c;
	char reply[512];
	int ring_fd, gen;

	if (access(exe, X_OK) != 0) {
		free(m);
		cr_skip_test("%s is not installed", exe);
	}
	cr_assert(target_spawn(&tg, exe, NULL) == 0);
	cr_assert(ma_target_open(tg.pid, NULL, &t) == 0, "%s", ma_errmsg());
	cr_assert(cmd(&tg, reply, sizeof(reply), "load a") > 0);
	cr_assert(cmd(&tg, reply, sizeof(reply), "churn a 2 2 60000") > 0);
	for (int cycle = 0; cycle < 6; cycle++) {
		uint32_t want = MA_STATE_STOPPED, st;

		model_init(m);
		m->count_only = 1;
		start(&tg, t, &ring_fd, &gen);
		cr_assert(consumer_start(&c, m, tg.pid, ring_fd) == 0);
		usleep(300000);
		if (cycle % 3 == 2) {
			c.heartbeat = 0;
			want = MA_STATE_ORPHANED;
		} else if (cycle % 3 == 1) {
			ma_ring_request_stop(c.r.hdr);
		} else {
			cr_assert(cmd(&tg, reply, sizeof(reply), "stop") > 0);
		}
		st = wait_state(c.r.hdr, want, 3000);
		cr_expect(st == want, "cycle %d: state %u, expected %u", cycle,
			  st, want);
		drain(&c);
		usleep(50000);
		drain(&c);
		pthread_mutex_lock(&m->mu);
		cr_expect(m->have_stats, "cycle %d: no STATS", cycle);
		cr_expect(m->events > 1000, "cycle %d: %lu events", cycle,
			  (unsigned long)m->events);
		cr_expect(m->bad_order == 0 && m->bad_record == 0,
			  "cycle %d: %d undefined ids, %d bad records", cycle,
			  m->bad_order, m->bad_record);
		/* events seen by the hooks: received, or lost */
		cr_expect(m->stats.allocs + m->stats.frees >= m->events,
			  "cycle %d: stats %lu+%lu for %lu events", cycle,
			  (unsigned long)m->stats.allocs,
			  (unsigned long)m->stats.frees,
			  (unsigned long)m->events);
		pthread_mutex_unlock(&m->mu);
		consumer_stop(&c);
		model_free(m);
	}
	cr_assert(cmd(&tg, reply, sizeof(reply), "join") > 0, "target died");
	cr_expect(strncmp(reply, "joined", 6) == 0, "%s", reply);

	model_init(m);
	start(&tg, t, &ring_fd, &gen);
	cr_assert(consumer_start(&c, m, tg.pid, ring_fd) == 0);
	cr_assert(cmd(&tg, reply, sizeof(reply), "short_threads 1500") > 0);
	cr_assert(cmd(&tg, reply, sizeof(reply), "stop") > 0);
	wait_state(c.r.hdr, MA_STATE_STOPPED, 3000);
	drain(&c);
	pthread_mutex_lock(&m->mu);
	cr_expect(m->nthreads > 1500, "%u threads defined", m->nthreads);
	cr_expect(m->bad_order == 0 && m->bad_record == 0);
	pthread_mutex_unlock(&m->mu);
	consumer_stop(&c);
	model_free(m);
	free(m);
	cmd(&tg, reply, sizeof(reply), "exit");
	target_kill(&tg);
	ma_target_close(t);
}

/* pyenv's interpreter for a minor version, or a path that does not exist */
static const char *pyenv(int minor, char *buf, size_t len)
{
	const char *root = getenv("PYENV_ROOT");
	char pat[4096];
	glob_t g;

	snprintf(pat, sizeof(pat), "%s/versions/3.%d.*/bin/python3",
		 root ? root : "/root/.pyenv", minor);
	snprintf(buf, len, "/nonexistent/pyenv-3.%d", minor);
	if (glob(pat, 0, NULL, &g) == 0 && g.gl_pathc)
		snprintf(buf, len, "%s", g.gl_pathv[g.gl_pathc - 1]);
	globfree(&g);
	return buf;
}

TestSuite(payload, .timeout = 120);

Test(payload, debian_python3)
{
	run("/usr/bin/python3", NULL);
}

/* Hazard 7 with a twist: the non-PIE executable's malloc stub resolves to
 * an LD_PRELOADed allocator, which the hooks must keep calling (libc's
 * malloc on jemalloc's blocks would crash the target) */
Test(payload, debian_python3_jemalloc)
{
	run("/usr/bin/python3", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
}

Test(payload, pyenv_3_12_jemalloc)
{
	char exe[4096];

	run(pyenv(12, exe, sizeof(exe)),
	    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
}

Test(payload, stress_debian_python3)
{
	stress("/usr/bin/python3");
}

Test(payload, stress_pyenv_3_12)
{
	char exe[4096];

	stress(pyenv(12, exe, sizeof(exe)));
}

#define PYENV_TEST(minor)                                                      \
	Test(payload, pyenv_3_##minor)                                         \
	{                                                                      \
		char exe[4096];                                                \
		run(pyenv(minor, exe, sizeof(exe)), NULL);                     \
	}

PYENV_TEST(8)
PYENV_TEST(9)
PYENV_TEST(10)
PYENV_TEST(11)
PYENV_TEST(12)
PYENV_TEST(13)
