/* SPDX-License-Identifier: MIT */
#include "native.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>

#include "errors.h"
#include "memread.h"

static int preload_module(Dwfl_Module *mod, void **userdata, const char *name,
			  Dwarf_Addr start, void *arg)
{
	Dwarf_Addr bias;

	(void)userdata;
	(void)name;
	(void)start;
	(void)arg;
	/* Unwind tables and symbol tables are parsed on first use: doing it
	 * here, before the process is stopped, keeps that work out of the
	 * freeze (20-40 ms for libpython's .eh_frame and .symtab). */
	if (!dwfl_module_eh_cfi(mod, &bias))
		dwfl_module_dwarf_cfi(mod, &bias);
	dwfl_module_getsymtab(mod);
	return DWARF_CB_OK;
}

void ma_native_preload(Dwfl *dwfl)
{
	dwfl_getmodules(dwfl, preload_module, NULL, 0);
}

/*
 * libdwfl's own process attachment (dwfl_linux_proc_attach) reads the
 * stopped threads' memory one word at a time with PTRACE_PEEKDATA: 20-45 ms
 * for a 10-thread Python process, all of it while the target is frozen.
 * These callbacks read whole pages with process_vm_readv (ma_mem_read) and
 * keep them for the rest of one unwind, and take the registers with one
 * PTRACE_GETREGS: the same unwind in well under a millisecond per thread.
 */
#define PAGE_CACHE 32
#define CACHE_PAGE 4096

struct mem_state {
	pid_t pid;
	struct ma_mem *mem;
	DIR *tasks; /* next_thread's walk of /proc/PID/task */
	struct {
		uint64_t base; /* page address, 0: empty */
		unsigned gen;
		uint8_t data[CACHE_PAGE];
	} page[PAGE_CACHE];
};

/* Bumped by every unwind: the target ran in between, cached pages are
 * stale */
static unsigned cache_gen = 1;

static const uint8_t *cached_page(struct mem_state *m, uint64_t base)
{
	unsigned i = (unsigned)(base / CACHE_PAGE) % PAGE_CACHE;

	if (m->page[i].base != base || m->page[i].gen != cache_gen) {
		if (ma_mem_read(m->mem, base, m->page[i].data, CACHE_PAGE)) {
			m->page[i].base = 0;
			return NULL;
		}
		m->page[i].base = base;
		m->page[i].gen = cache_gen;
	}
	return m->page[i].data;
}

static bool mem_read_cb(Dwfl *dwfl, Dwarf_Addr addr, Dwarf_Word *result,
			void *arg)
{
	struct mem_state *m = arg;
	uint8_t buf[8];

	(void)dwfl;
	for (int k = 0; k < 8;) {
		uint64_t a = addr + (uint64_t)k;
		uint64_t base = a & ~(uint64_t)(CACHE_PAGE - 1);
		const uint8_t *pg = cached_page(m, base);
		size_t off = a - base, n = CACHE_PAGE - off;

		if (!pg) {
			/* a page only partly mapped, or a guard page:
			 * just these bytes */
			if (ma_mem_read(m->mem, a, buf + k, (size_t)(8 - k)))
				return false;
			break;
		}
		if (n > (size_t)(8 - k))
			n = (size_t)(8 - k);
		memcpy(buf + k, pg + off, n);
		k += (int)n;
	}
	memcpy(result, buf, sizeof(*result));
	return true;
}

static pid_t next_thread_cb(Dwfl *dwfl, void *arg, void **thread_argp)
{
	struct mem_state *m = arg;
	struct dirent *de;
	char path[64];

	(void)dwfl;
	*thread_argp = NULL;
	if (!m->tasks) {
		snprintf(path, sizeof(path), "/proc/%d/task", (int)m->pid);
		m->tasks = opendir(path);
		if (!m->tasks)
			return -1;
	}
	while ((de = readdir(m->tasks)) != NULL) {
		long tid = strtol(de->d_name, NULL, 10);

		if (tid > 0)
			return (pid_t)tid;
	}
	closedir(m->tasks);
	m->tasks = NULL;
	return 0;
}

static bool get_thread_cb(Dwfl *dwfl, pid_t tid, void *arg, void **thread_argp)
{
	(void)dwfl;
	(void)tid;
	(void)arg;
	*thread_argp = NULL;
	return true;
}

static bool set_regs_cb(Dwfl_Thread *thread, void *thread_arg)
{
	struct user_regs_struct r;
	Dwarf_Word w[17];

	(void)thread_arg;
	/* the thread is in our ptrace stop (the caller froze the process) */
	if (ptrace(PTRACE_GETREGS, dwfl_thread_tid(thread), NULL, &r) < 0)
		return false;
	/* DWARF numbering of x86-64: rax rdx rcx rbx rsi rdi rbp rsp r8-r15,
	 * then the return address column (rip) */
	w[0] = r.rax;
	w[1] = r.rdx;
	w[2] = r.rcx;
	w[3] = r.rbx;
	w[4] = r.rsi;
	w[5] = r.rdi;
	w[6] = r.rbp;
	w[7] = r.rsp;
	w[8] = r.r8;
	w[9] = r.r9;
	w[10] = r.r10;
	w[11] = r.r11;
	w[12] = r.r12;
	w[13] = r.r13;
	w[14] = r.r14;
	w[15] = r.r15;
	w[16] = r.rip;
	return dwfl_thread_state_registers(thread, 0, 17, w);
}

static void detach_cb(Dwfl *dwfl, void *arg)
{
	struct mem_state *m = arg;

	(void)dwfl;
	if (m->tasks)
		closedir(m->tasks);
	ma_mem_close(m->mem);
	free(m);
}

static const Dwfl_Thread_Callbacks callbacks = {
	.next_thread = next_thread_cb,
	.get_thread = get_thread_cb,
	.memory_read = mem_read_cb,
	.set_initial_registers = set_regs_cb,
	.detach = detach_cb,
};

int ma_native_attach(Dwfl *dwfl, pid_t pid)
{
	struct mem_state *m = calloc(1, sizeof(*m));
	int err;

	if (!m)
		return ma_err(-ENOMEM, "native unwind of process %d", (int)pid);
	m->pid = pid;
	err = ma_mem_open(pid, &m->mem);
	if (err) {
		free(m);
		return ma_err_prefix(err, "native unwind of process %d",
				     (int)pid);
	}
	/* Only the callbacks' reads happen while the process is stopped,
	 * which the caller already did with PTRACE_SEIZE+INTERRUPT */
	if (!dwfl_attach_state(dwfl, NULL, pid, &callbacks, m)) {
		ma_mem_close(m->mem);
		free(m);
		return ma_err(-EIO, "dwfl_attach_state(%d): %s", (int)pid,
			      dwfl_errmsg(-1));
	}
	return 0;
}

struct unwind_ctx {
	struct ma_native_stack *out;
	int cap, max;
};

static int is_eval_symbol(const char *name)
{
	/* The function that runs Python frames in every supported version */
	return name && !strcmp(name, "_PyEval_EvalFrameDefault");
}

/* Only the program counters while the process is stopped: naming them
 * (dwfl_module_addrinfo scans the symbol table) takes ~4 ms per thread on
 * Debian's python3.11 and is done after the thaw, by ma_native_symbolize */
static int frame_cb(Dwfl_Frame *frame, void *arg)
{
	struct unwind_ctx *c = arg;
	Dwarf_Addr pc;
	bool activation;

	if (!dwfl_frame_pc(frame, &pc, &activation))
		return DWARF_CB_ABORT;
	if (c->out->n == c->cap) {
		int ncap = c->cap ? c->cap * 2 : 32;
		struct ma_native_frame *nv =
			realloc(c->out->v, (size_t)ncap * sizeof(*nv));

		if (!nv)
			return DWARF_CB_ABORT;
		c->out->v = nv;
		c->cap = ncap;
	}
	struct ma_native_frame *f = &c->out->v[c->out->n++];

	memset(f, 0, sizeof(*f));
	f->pc = pc;
	f->activation = activation;
	if (c->out->n < c->max)
		return DWARF_CB_OK;
	c->out->cut = 1;
	return DWARF_CB_ABORT;
}

void ma_native_symbolize(Dwfl *dwfl, struct ma_native_stack *st)
{
	for (int i = 0; i < st->n; i++) {
		struct ma_native_frame *f = &st->v[i];
		/* A return address points after the call: look up pc - 1
		 * so that a call at the very end of a function is named
		 * right. */
		Dwarf_Addr lookup = f->activation ? f->pc : f->pc - 1;
		Dwfl_Module *mod = dwfl_addrmodule(dwfl, lookup);
		GElf_Off off = 0;
		GElf_Sym sym;
		const char *name = NULL;

		if (f->symbol || f->module)
			continue;
		if (mod) {
			const char *mname = dwfl_module_info(
				mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

			if (mname) {
				const char *b = strrchr(mname, '/');

				f->module = b ? b + 1 : mname;
			}
			name = dwfl_module_addrinfo(mod, lookup, &off, &sym,
						    NULL, NULL, NULL);
		}
		if (name) {
			size_t l = strlen(name) + 24;

			f->symbol = malloc(l);
			if (f->symbol)
				snprintf(f->symbol, l, "%s+%#lx", name,
					 (unsigned long)(off + (f->activation
									? 0
									: 1)));
			f->is_eval = is_eval_symbol(name);
		}
	}
}

int ma_native_unwind(Dwfl *dwfl, pid_t tid, int max_frames,
		     struct ma_native_stack *out)
{
	struct unwind_ctx c = { .out = out, .max = max_frames };

	memset(out, 0, sizeof(*out));
	cache_gen++;
	if (dwfl_getthread_frames(dwfl, tid, frame_cb, &c) != 0) {
		if (out->n == 0) {
			out->error = -EIO;
			return ma_err(-EIO, "unwinding thread %d: %s", (int)tid,
				      dwfl_errmsg(-1));
		}
		/* frame_cb's own stop at max_frames is the cut, not this */
		if (!out->cut)
			snprintf(out->stopped, sizeof(out->stopped), "%s",
				 dwfl_errmsg(-1));
	}
	return 0;
}

void ma_native_stack_free(struct ma_native_stack *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->v[i].symbol);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}
