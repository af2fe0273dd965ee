/* SPDX-License-Identifier: MIT */
#include "native.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

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

int ma_native_attach(Dwfl *dwfl, pid_t pid)
{
	/* assume_ptrace_stopped: our own PTRACE_SEIZE+INTERRUPT stopped every
	 * thread already; libdwfl then only reads registers and memory. */
	int r = dwfl_linux_proc_attach(dwfl, pid, true);

	if (r)
		return ma_err(r > 0 ? -r : -EIO,
			      "dwfl_linux_proc_attach(%d): %s", (int)pid,
			      r > 0 ? strerror(r) : dwfl_errmsg(-1));
	return 0;
}

struct unwind_ctx {
	Dwfl *dwfl;
	struct ma_native_stack *out;
	int cap, max;
};

static int is_eval_symbol(const char *name)
{
	/* The function that runs Python frames in every supported version */
	return name && !strcmp(name, "_PyEval_EvalFrameDefault");
}

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
	/* A return address points after the call: look up pc - 1 so that a
	 * call at the very end of a function is named right. */
	Dwarf_Addr lookup = activation ? pc : pc - 1;
	Dwfl_Module *mod = dwfl_addrmodule(c->dwfl, lookup);
	GElf_Off off = 0;
	GElf_Sym sym;
	const char *name = NULL;

	memset(f, 0, sizeof(*f));
	f->pc = pc;
	if (mod) {
		const char *mname = dwfl_module_info(mod, NULL, NULL, NULL,
						     NULL, NULL, NULL, NULL);

		if (mname) {
			const char *b = strrchr(mname, '/');

			f->module = b ? b + 1 : mname;
		}
		name = dwfl_module_addrinfo(mod, lookup, &off, &sym, NULL, NULL,
					    NULL);
	}
	if (name) {
		size_t l = strlen(name) + 24;

		f->symbol = malloc(l);
		if (f->symbol)
			snprintf(f->symbol, l, "%s+%#lx", name,
				 (unsigned long)(off + (activation ? 0 : 1)));
		f->is_eval = is_eval_symbol(name);
	}
	return c->out->n >= c->max ? DWARF_CB_ABORT : DWARF_CB_OK;
}

int ma_native_unwind(Dwfl *dwfl, pid_t tid, int max_frames,
		     struct ma_native_stack *out)
{
	struct unwind_ctx c = { .dwfl = dwfl, .out = out, .max = max_frames };

	memset(out, 0, sizeof(*out));
	if (dwfl_getthread_frames(dwfl, tid, frame_cb, &c) != 0 &&
	    out->n == 0) {
		out->error = -EIO;
		return ma_err(-EIO, "unwinding thread %d: %s", (int)tid,
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
