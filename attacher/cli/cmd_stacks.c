/* SPDX-License-Identifier: MIT */
/*
 * memattach stacks PID [--native] [--json]: every thread's Python stack,
 * read while the process is frozen for as short a time as possible (all the
 * slow work — ELF, DWARF, validation — happens before the freeze).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "discover.h"
#include "errors.h"
#include "native.h"
#include "procfs.h"
#include "ptrace.h"
#include "pyread.h"
#include "textfit.h"
#include "threads.h"

struct st_result {
	struct ma_target *t;
	struct ma_tsnap snap;
	uint64_t total_ns;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: memattach stacks [options] PID\n"
		"  Print the Python stack of every thread of a running "
		"CPython\n"
		"  process, innermost frame first.\n"
		"  -n, --native          interleave native frames (libdwfl)\n"
		"  -j, --json            machine-readable output\n"
		"      --offsets=SOURCE  auto (default), dwarf, debug-offsets, "
		"table\n"
		"  -h, --help            this help\n");
}

static void print_pyframe(FILE *f, const struct ma_py_frame *fr)
{
	if (fr->line >= 0)
		fprintf(f, "    %s (%s:%d)\n", fr->func, fr->file, fr->line);
	else
		fprintf(f, "    %s (%s)\n", fr->func, fr->file);
}

/* Where the Python frames a thread's stack was cut at end */
static void cut_mark(FILE *f, const struct ma_py_thread *py)
{
	if (py->truncated == MA_PY_CUT_DEEP)
		fprintf(f,
			"    ... (stack truncated: deeper than %d frames, the "
			"outermost not shown)\n",
			MA_PY_MAX_FRAMES);
	else
		fprintf(f, "    ... (stack truncated: unreadable frame)\n");
}

static void print_thread_text(FILE *f, const struct st_result *r,
			      const struct ma_tview *th, int native)
{
	const struct ma_py_thread *py = th->py;
	char flags[128] = "";

	if (th->tid == r->t->pid)
		strcat(flags, "main thread");
	if (py && py->holds_gil)
		strcat(flags, flags[0] ? ", holds the GIL" : "holds the GIL");
	if (!py)
		strcat(flags, flags[0] ? ", no Python thread state"
				       : "no Python thread state");
	if (py && th->other_interp) {
		char also[96];

		snprintf(also, sizeof(also),
			 "%sinterpreter %ld: its state in interpreter %ld is "
			 "listed above",
			 flags[0] ? ", " : "", py->interp_id,
			 th->other_interp - 1);
		strcat(flags, also);
	}
	if (th->tid && th->nstid != th->tid)
		fprintf(f, "Thread %d (%d in its PID namespace) \"%s\"%s%s%s\n",
			(int)th->tid, (int)th->nstid, th->name,
			flags[0] ? " (" : "", flags, flags[0] ? ")" : "");
	else if (th->tid)
		fprintf(f, "Thread %d \"%s\"%s%s%s\n", (int)th->tid, th->name,
			flags[0] ? " (" : "", flags, flags[0] ? ")" : "");
	else
		fprintf(f, "Thread state %#lx (no live kernel thread)%s%s%s\n",
			(unsigned long)py->tstate, flags[0] ? " (" : "", flags,
			flags[0] ? ")" : "");

	int pi = 0, npy = py ? py->nframes : 0, cut_shown = 0;

	if (native && th->has_nat) {
		for (int i = 0; i < th->nat.n; i++) {
			const struct ma_native_frame *nf = &th->nat.v[i];

			if (nf->is_eval) {
				/* The Python frames this eval call runs: up to
				 * and including its entry frame */
				while (pi < npy) {
					print_pyframe(f, &py->frames[pi]);
					if (py->frames[pi++].is_entry)
						break;
				}
				/* the Python frames ran out inside this eval
				 * call: the missing ones are its outer ones,
				 * here, not after the native stack's end */
				if (pi == npy && py && py->truncated &&
				    !cut_shown) {
					cut_mark(f, py);
					cut_shown = 1;
				}
			}
			char sm[512];

			fprintf(f, "    (C) %s (%s)%s\n",
				nf->symbol ? nf->symbol : "???",
				nf->module ? ma_ctl_safe(nf->module, sm,
							 sizeof(sm))
					   : "?",
				nf->is_eval ? " [python]" : "");
		}
		if (th->nat.error)
			fprintf(f, "    (C) ... unwinding stopped: %s\n",
				strerror(-th->nat.error));
		else if (th->nat.stopped[0])
			fprintf(f,
				"    (C) ... (unwinding stopped after %d "
				"frames: "
				"%s at %#lx, code without unwind information "
				"(JIT code, or a trampoline of python -X "
				"perf); "
				"the outer native frames not shown%s)\n",
				th->nat.n, th->nat.stopped,
				(unsigned long)th->nat.v[th->nat.n - 1].pc,
				pi < npy ? ", nor those of the Python frames "
					   "below"
					 : "");
		else if (th->nat.cut)
			fprintf(f,
				"    (C) ... (native stack cut at %d frames: "
				"the outer ones not shown%s)\n",
				th->nat.n,
				pi < npy ? ", nor the native frames of the "
					   "Python frames below"
					 : "");
	}
	for (; pi < npy; pi++)
		print_pyframe(f, &py->frames[pi]);
	if (py && py->truncated && !cut_shown)
		cut_mark(f, py);
	if (py && npy == 0)
		fprintf(f, "    (no Python frames)\n");
	fputc('\n', f);
}

static json_t *thread_json(const struct st_result *r, const struct ma_tview *th,
			   int native)
{
	json_t *o = json_object(), *frames = json_array();
	const struct ma_py_thread *py = th->py;

	json_object_set_new(o, "tid",
			    th->tid ? json_integer(th->tid) : json_null());
	json_object_set_new(o, "name", json_string(th->name));
	json_object_set_new(o, "comm", json_string(th->comm));
	json_object_set_new(o, "python_name",
			    py && py->name ? json_string(py->name)
					   : json_null());
	json_object_set_new(o, "ns_tid",
			    th->tid ? json_integer(th->nstid) : json_null());
	json_object_set_new(o, "main", json_boolean(th->tid == r->t->pid));
	json_object_set_new(o, "python", json_boolean(py != NULL));
	json_object_set_new(o, "holds_gil", json_boolean(py && py->holds_gil));
	if (th->other_interp)
		json_object_set_new(o, "also_in_interpreter",
				    json_integer(th->other_interp - 1));
	if (py) {
		json_object_set_new(o, "interpreter",
				    json_integer(py->interp_id));
		json_object_set_new(o, "thread_id",
				    json_integer((json_int_t)py->thread_id));
		json_object_set_new(o, "truncated",
				    json_boolean(py->truncated));
		for (int i = 0; i < py->nframes; i++) {
			const struct ma_py_frame *fr = &py->frames[i];
			json_t *jf = json_object();

			json_object_set_new(jf, "function",
					    json_string(fr->func));
			json_object_set_new(jf, "file", json_string(fr->file));
			json_object_set_new(jf, "line",
					    fr->line >= 0
						    ? json_integer(fr->line)
						    : json_null());
			json_object_set_new(jf, "entry",
					    json_boolean(fr->is_entry));
			json_array_append_new(frames, jf);
		}
	}
	json_object_set_new(o, "frames", frames);
	if (native && th->has_nat) {
		json_t *nat = json_array();

		for (int i = 0; i < th->nat.n; i++) {
			const struct ma_native_frame *nf = &th->nat.v[i];
			json_t *jn = json_object();

			json_object_set_new(jn, "pc",
					    json_integer((json_int_t)nf->pc));
			json_object_set_new(jn, "symbol",
					    nf->symbol ? json_string(nf->symbol)
						       : json_null());
			json_object_set_new(jn, "module",
					    nf->module ? json_string(nf->module)
						       : json_null());
			json_object_set_new(jn, "python",
					    json_boolean(nf->is_eval));
			json_array_append_new(nat, jn);
		}
		json_object_set_new(o, "native", nat);
		json_object_set_new(o, "native_truncated",
				    json_boolean(th->nat.cut));
		json_object_set_new(o, "native_stopped",
				    th->nat.stopped[0]
					    ? json_string(th->nat.stopped)
					    : json_null());
	}
	return o;
}

static void print_json(FILE *f, const struct st_result *r, int native)
{
	json_t *root = json_object(), *threads = json_array();

	json_object_set_new(root, "pid", json_integer(r->t->pid));
	json_object_set_new(root, "python", json_string(r->t->version));
	json_object_set_new(root, "executable", json_string(r->t->exe));
	json_object_set_new(root, "offsets", json_string(r->t->off_origin));
	json_object_set_new(root, "frozen_ns",
			    json_integer((json_int_t)r->snap.frozen_ns));
	json_object_set_new(root, "total_ns",
			    json_integer((json_int_t)r->total_ns));
	for (size_t i = 0; i < r->snap.n; i++)
		json_array_append_new(threads,
				      thread_json(r, &r->snap.th[i], native));
	json_object_set_new(root, "threads", threads);
	json_dumpf(root, f, JSON_INDENT(2) | JSON_ENSURE_ASCII);
	fputc('\n', f);
	json_decref(root);
}

int ma_cmd_stacks(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "native", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "offsets", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ma_target_opts topts = { 0 };
	struct st_result r = { 0 };
	struct ma_pyreader *reader = NULL;
	int native = 0, json = 0, c, err, ret = MA_EXIT_OK;
	pid_t pid;
	uint64_t t0 = ma_now_ns();
	struct ma_cli_args args =
		MA_CLI_ARGS("stacks", argc, argv, "njh", longopts, usage);

	args.offsets = &topts.offsets;
	args.pid = &pid;
	while ((c = ma_cli_opt(&args)) > 0) {
		if (c == 'n')
			native = 1;
		else if (c == 'j')
			json = 1;
	}
	if (args.exit >= 0)
		return args.exit;
	err = ma_target_open(pid, &topts, &r.t);
	if (err)
		return ma_cli_fail("stacks");
	err = ma_pyreader_new(r.t->mem, &r.t->off, r.t->runtime_addr, &reader);
	if (err) {
		ret = ma_cli_fail("stacks");
		goto out;
	}

	/* looked at before the read: just after our detach, a thread of a
	 * stopped process may not show 'T' yet (seen once in CI) */
	int job_stopped = ma_proc_job_stopped(pid, 0);

	err = ma_tsnap_take(r.t, reader, native, &r.snap);
	if (err) {
		ret = ma_cli_fail("stacks");
		goto out;
	}
	r.total_ns = ma_now_ns() - t0;
	if (json) {
		print_json(stdout, &r, native);
	} else {
		char *cmd = ma_escape_ctl(r.t->cmdline[0] ? r.t->cmdline
							  : r.t->exe);

		printf("Process %d: %s (Python %s)\n", (int)pid,
		       cmd ? cmd : r.t->exe, r.t->version);
		free(cmd);
		/* read as it is: why every thread sits where it does */
		if (job_stopped || ma_proc_job_stopped(pid, 0))
			printf("Stopped by a signal (state T): each thread is "
			       "where the stop found it; 'kill -CONT %d' "
			       "resumes the process\n",
			       (int)pid);
		putchar('\n');
		for (size_t i = 0; i < r.snap.n; i++)
			print_thread_text(stdout, &r, &r.snap.th[i], native);
	}
	if (ma_cli_verbose)
		fprintf(stderr,
			"memattach: %zu threads, frozen for %.3f ms, total "
			"%.3f ms (discovery %.3f ms), offsets: %s\n",
			r.snap.n, r.snap.frozen_ns / 1e6, r.total_ns / 1e6,
			r.t->t_discover_ns / 1e6, r.t->off_origin);
	if (r.snap.partial) {
		fprintf(stderr,
			"memattach: stacks: some stacks could not be read "
			"to their end (marked above)\n");
		ret = MA_EXIT_PARTIAL;
	}
out:
	ma_tsnap_free(&r.snap);
	ma_pyreader_free(reader);
	ma_target_close(r.t);
	return ret;
}
