/* SPDX-License-Identifier: MIT */
/*
 * memattach info PID: what memattach sees in a process (stopped only for the
 * moment it takes to read the thread states):
 * Python version and build, where the offsets came from, threads, RSS, and
 * whether a memattach payload is already loaded.
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
#include "holder.h"
#include "inject.h"
#include "pyread.h"
#include "symbols.h"
#include "textfit.h"
#include "threads.h"
#include "units.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: memattach info [--json] [--offsets=SOURCE] PID\n"
		   "  Show the Python build, the source of the struct "
		   "offsets, threads, RSS\n"
		   "  and whether a memattach payload is loaded.\n");
}

/* What an earlier attach left: nothing, or a payload and its last state */
static const char *payload_state(struct ma_target *t, char *buf, size_t len)
{
	static const char *const states[] = {
		[MA_STATE_STARTING] = "starting",
		[MA_STATE_TRACKING] = "tracking now",
		[MA_STATE_STOPPING] = "stopping",
		[MA_STATE_STOPPED] = "dormant (last session stopped)",
		[MA_STATE_ORPHANED] = "dormant (its memattach went away)",
		[MA_STATE_FAILED] = "dormant (disabled itself after an error)",
	};
	struct ma_payload_info pi;

	struct ma_holder h;
	size_t n;

	if (ma_payload_probe(t, &pi) || (!pi.loaded && !pi.others))
		return "not loaded";
	buf[0] = '\0';
	if (pi.loaded && !pi.same_build)
		snprintf(buf, len,
			 "loaded at %#lx, under this build's name with "
			 "another build ID",
			 (unsigned long)pi.base);
	else if (pi.loaded)
		snprintf(buf, len, "loaded at %#lx, %u session(s), %s",
			 (unsigned long)pi.base, pi.ctl.generation,
			 pi.ctl.state < sizeof(states) / sizeof(states[0]) &&
					 states[pi.ctl.state]
				 ? states[pi.ctl.state]
				 : "never started");
	/* who tracks it: the memattach that maps the session's ring */
	n = strlen(buf);
	if (pi.same_build && ma_payload_in(&pi, MA_PAYLOAD_BUSY) &&
	    !ma_ring_holder(t->pid, pi.ctl.ring_fd, &h))
		snprintf(buf + n, len - n, " by memattach (PID %d)%s%s",
			 (int)h.pid, h.since_text[0] ? " since " : "",
			 h.since_text);
	if (!pi.others)
		return buf;
	/* other builds' payloads: their state is known only as "tracking"
	 * (a ring mapped that this build's does not account for) or not */
	n = strlen(buf);
	if (pi.others > 1)
		snprintf(buf + n, len - n,
			 "%sthe payloads of %d other memattach builds (the "
			 "first at %#lx)",
			 n ? "; " : "", pi.others,
			 (unsigned long)pi.other_base);
	else
		snprintf(buf + n, len - n,
			 "%sthe payload of another memattach build at %#lx",
			 n ? "; " : "", (unsigned long)pi.other_base);
	n = strlen(buf);
	if (!pi.other_busy)
		snprintf(buf + n, len - n, ", dormant");
	else if (!ma_ring_holder_by_maps(t->pid, &t->maps, &h))
		snprintf(buf + n, len - n,
			 ", tracking now by memattach (PID "
			 "%d)%s%s",
			 (int)h.pid, h.since_text[0] ? " since " : "",
			 h.since_text);
	else
		snprintf(buf + n, len - n, ", tracking now");
	return buf;
}

static const char *build_kind(const struct ma_target *t, char *buf, size_t len)
{
	if (t->pymod_is_exe)
		snprintf(buf, len, "%s executable, libpython linked statically",
			 t->pie ? "PIE" : "non-PIE");
	else
		snprintf(buf, len, "%s executable, shared %s",
			 t->pie ? "PIE" : "non-PIE", t->pymod_path);
	return buf;
}

/* A --with-pydebug build (Py_DEBUG, Debian's python3.X-dbg): other struct
 * layouts, and CPython's debug allocator hooks on by default.  Its
 * reference debugging defines _Py_NegativeRefcount, no release build does */
static int debug_build(const struct ma_target *t)
{
	struct ma_elf *e;
	uint64_t a;
	int yes;

	if (ma_elf_open(t->pymod_local, &e))
		return 0;
	yes = ma_elf_symbol(e, "_Py_NegativeRefcount", &a, NULL) == 0;
	ma_elf_close(e);
	return yes;
}

int ma_cmd_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "offsets", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ma_target_opts topts = { 0 };
	struct ma_target *t;
	struct ma_pyreader *r = NULL;
	struct ma_tsnap snap = { 0 };
	int json = 0, c, npy = 0;
	size_t nthreads = 0;
	pid_t pid;
	char kind[PATH_MAX + 64], rss[32], hwm[32], pstate[512];
	struct ma_cli_args args =
		MA_CLI_ARGS("info", argc, argv, "jh", longopts, usage);

	args.offsets = &topts.offsets;
	args.pid = &pid;
	while ((c = ma_cli_opt(&args)) > 0)
		if (c == 'j')
			json = 1;
	if (args.exit >= 0)
		return args.exit;
	if (ma_target_open(pid, &topts, &t))
		return ma_cli_fail("info");

	/* The process is stopped for about a millisecond, so that the list of
	 * thread states is consistent and can be matched with kernel threads
	 * (by their registers on Python <= 3.10).  A failure here still leaves
	 * everything else worth showing. */
	int snap_err = ma_pyreader_new(t->mem, &t->off, t->runtime_addr, &r);

	if (!snap_err)
		snap_err = ma_tsnap_take(t, r, 0, &snap);
	/* the threads are not shown as none: the message says why they
	 * could not be read (another tracer, say), the exit code that the
	 * rest was shown without them */
	if (snap_err)
		ma_cli_error("info");
	/* a thread that runs a subinterpreter has a state in each: one
	 * kernel thread, listed once more (marked, as in stacks) */
	for (size_t i = 0; i < snap.n; i++) {
		nthreads += !snap.th[i].other_interp;
		npy += snap.th[i].py != NULL && !snap.th[i].other_interp;
	}
	ma_fmt_bytes((uint64_t)t->status.vm_rss_kb * 1024, rss, sizeof(rss));
	ma_fmt_bytes((uint64_t)t->status.vm_hwm_kb * 1024, hwm, sizeof(hwm));
	build_kind(t, kind, sizeof(kind));

	if (json) {
		json_t *o = json_object(), *th = json_array();

		json_object_set_new(o, "pid", json_integer(pid));
		json_object_set_new(o, "command", json_string(t->cmdline));
		json_object_set_new(o, "executable", json_string(t->exe));
		json_object_set_new(o, "pie", json_boolean(t->pie));
		json_object_set_new(o, "debug_build",
				    json_boolean(debug_build(t)));
		json_object_set_new(o, "libpython",
				    t->pymod_is_exe
					    ? json_null()
					    : json_string(t->pymod_path));
		json_object_set_new(o, "python", json_string(t->version));
		json_object_set_new(o, "version_hex",
				    json_integer(t->version_hex));
		json_object_set_new(o, "version_from",
				    json_string(t->version_from));
		json_object_set_new(o, "runtime",
				    json_integer((json_int_t)t->runtime_addr));
		json_object_set_new(o, "offsets", json_string(t->off_origin));
		json_object_set_new(o, "offsets_source",
				    json_integer(t->off.source));
		json_object_set_new(o, "offsets_notes",
				    json_string(t->off_notes));
		json_object_set_new(
			o, "rss_kb",
			json_integer((json_int_t)t->status.vm_rss_kb));
		json_object_set_new(
			o, "rss_peak_kb",
			json_integer((json_int_t)t->status.vm_hwm_kb));
		json_object_set_new(
			o, "payload",
			json_string(payload_state(t, pstate, sizeof(pstate))));
		for (size_t i = 0; i < snap.n; i++) {
			const struct ma_tview *v = &snap.th[i];
			json_t *jt = json_object();

			json_object_set_new(jt, "tid",
					    v->tid ? json_integer(v->tid)
						   : json_null());
			json_object_set_new(jt, "ns_tid",
					    v->tid ? json_integer(v->nstid)
						   : json_null());
			json_object_set_new(jt, "name", json_string(v->name));
			json_object_set_new(jt, "comm", json_string(v->comm));
			json_object_set_new(jt, "python_name",
					    v->py && v->py->name
						    ? json_string(v->py->name)
						    : json_null());
			json_object_set_new(jt, "python", json_boolean(v->py));
			json_object_set_new(
				jt, "holds_gil",
				json_boolean(v->py && v->py->holds_gil));
			if (v->py)
				json_object_set_new(
					jt, "interpreter",
					json_integer(v->py->interp_id));
			if (v->other_interp)
				json_object_set_new(
					jt, "also_in_interpreter",
					json_integer(v->other_interp - 1));
			json_array_append_new(th, jt);
		}
		if (snap_err) {
			json_decref(th);
			th = json_null();
		}
		json_object_set_new(o, "threads", th);
		json_dumpf(o, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		putchar('\n');
		json_decref(o);
	} else {
		printf("process:     %d\n", (int)pid);
		char *cmd = ma_escape_ctl(t->cmdline);

		printf("command:     %s\n", cmd ? cmd : "?");
		free(cmd);
		char sa[4200], sb[4200];

		printf("executable:  %s (%s)\n",
		       ma_ctl_safe(t->exe, sa, sizeof(sa)), kind);
		printf("python:      %s (from %s)%s\n", t->version,
		       ma_ctl_safe(t->version_from, sb, sizeof(sb)),
		       debug_build(t) ? ", a debug build (Py_DEBUG: its "
					"allocators' debug hooks on by "
					"default)"
				      : "");
		printf("runtime:     _PyRuntime at %#lx in %s\n",
		       (unsigned long)t->runtime_addr,
		       ma_ctl_safe(t->pymod_path, sa, sizeof(sa)));
		printf("offsets:     %s, validated against the process\n",
		       ma_ctl_safe(t->off_origin, sb, sizeof(sb)));
		if (t->off_notes[0])
			printf("             (%s)\n", t->off_notes);
		printf("memory:      RSS %s, peak RSS %s\n", rss, hwm);
		printf("payload:     %s\n",
		       payload_state(t, pstate, sizeof(pstate)));
		if (snap_err)
			printf("threads:     not read (see the error message)"
			       "\n");
		else
			printf("threads:     %zu (%d with a Python thread "
			       "state)\n",
			       nthreads, npy);
		for (size_t i = 0; i < snap.n; i++) {
			const struct ma_tview *v = &snap.th[i];
			char what[160];

			snprintf(what, sizeof(what), "%s",
				 !v->py		    ? "no Python thread state"
				 : v->py->holds_gil ? "Python, holds the GIL"
						    : "Python");
			if (v->py && v->other_interp)
				snprintf(what + strlen(what),
					 sizeof(what) - strlen(what),
					 " (interpreter %ld: its state in "
					 "interpreter %ld is listed above)",
					 (long)v->py->interp_id,
					 v->other_interp - 1);

			if (v->tid && v->nstid != v->tid)
				printf("  %-8d %-16s %s (%d in its PID "
				       "namespace)\n",
				       (int)v->tid, v->name, what,
				       (int)v->nstid);
			else if (v->tid)
				printf("  %-8d %-16s %s\n", (int)v->tid,
				       v->name, what);
			else
				printf("  %-8s %-16s %s\n", "-", "(no thread)",
				       what);
		}
	}
	ma_tsnap_free(&snap);
	ma_pyreader_free(r);
	ma_target_close(t);
	return snap_err ? MA_EXIT_PARTIAL : MA_EXIT_OK;
}
