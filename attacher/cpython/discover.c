/* SPDX-License-Identifier: MIT */
#include "discover.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ma_pyver.h"
#include "errors.h"
#include "memread.h"
#include "procfs.h"
#include "ptrace.h"
#include "pyoffsets.h"
#include "pyversion.h"
#include "symbols.h"

int ma_parse_pid(const char *s, pid_t *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	/* digits only, as every number on the command line ('+5', ' 5'
	 * were taken) */
	if (!*s || *s < '0' || *s > '9' || *end || errno || v <= 0 ||
	    v > 0x3fffffff)
		return ma_err(-EINVAL, "'%s' is not a process ID", s);
	*out = (pid_t)v;
	return 0;
}

static int basename_is_libpython(const char *path)
{
	const char *b = strrchr(path, '/');

	b = b ? b + 1 : path;
	return !strncmp(b, "libpython3.", 11) && strstr(b, ".so");
}

/* Try one mapped file as the home of _PyRuntime */
static int try_module(struct ma_target *t, const char *path, int is_exe)
{
	char local[sizeof(t->pymod_local)];
	struct ma_elf *e;
	uint64_t rt, rtsize, first_off, first;
	const struct ma_map *mp = NULL;

	ma_proc_map_path(t->pid, path, local, sizeof(local));
	if (access(local, R_OK))
		snprintf(local, sizeof(local), "%s", path);
	if (ma_elf_open(local, &e))
		return -ENOENT;
	if (ma_elf_symbol(e, "_PyRuntime", &rt, &rtsize)) {
		ma_elf_close(e);
		return -ENOENT;
	}
	first = ma_elf_first_load(e, &first_off);
	for (size_t i = 0; i < t->maps.n; i++)
		if (t->maps.v[i].offset == first_off &&
		    !strcmp(t->maps.v[i].path, path)) {
			mp = &t->maps.v[i];
			break;
		}
	if (!mp) {
		ma_elf_close(e);
		return -ENOENT;
	}
	t->pymod_bias = mp->start - first;
	t->runtime_addr = rt + t->pymod_bias;
	t->pymod_is_exe = is_exe;
	snprintf(t->build_id, sizeof(t->build_id), "%s", ma_elf_build_id(e));
	snprintf(t->pymod_path, sizeof(t->pymod_path), "%s", path);
	snprintf(t->pymod_local, sizeof(t->pymod_local), "%s", local);
	ma_elf_close(e);
	return 0;
}

static int find_runtime(struct ma_target *t)
{
	/* libpython first: with a shared libpython the executable is a
	 * launcher without _PyRuntime */
	for (size_t i = 0; i < t->maps.n; i++) {
		const char *p = t->maps.v[i].path;

		if (p[0] == '/' && t->maps.v[i].offset == 0 &&
		    basename_is_libpython(p) && try_module(t, p, 0) == 0)
			return 0;
	}
	if (try_module(t, t->exe, 1) == 0)
		return 0;

	const char *b = strrchr(t->exe, '/');

	b = b ? b + 1 : t->exe;
	ma_err_set_exit(MA_EXIT_NOTPY);
	/* a Python too old or too new by its name: its executable's or its
	 * argv[0]'s, not any word of its command line (`sh -c "... python3
	 * ..."` is a shell).  Its own errno: a `python3` just exec'd whose
	 * libpython the dynamic loader has not mapped yet says the same, and
	 * attach --children looks at it again (capture/track.c) */
	size_t a0 = strcspn(t->cmdline, " ");
	char argv0[256];

	snprintf(argv0, sizeof(argv0), "%.*s", (int)a0, t->cmdline);
	if (strstr(b, "python") || strstr(argv0, "python"))
		return ma_err(-EPROTONOSUPPORT,
			      "process %d (%s) is not a supported CPython: "
			      "no _PyRuntime symbol in it or a libpython "
			      "(Python 2 and 3.6 or older are not supported)",
			      (int)t->pid, t->exe);
	char note[PATH_MAX + 256];

	if (ma_proc_deleted_note(t->pid, "libpython3.", note,
				 sizeof(note))[0]) {
		ma_err_set_exit(MA_EXIT_PERM);
		return ma_err(-EACCES,
			      "process %d (%s): cannot read its "
			      "libpython%s",
			      (int)t->pid, t->exe, note);
	}
	return ma_err(-ENOEXEC,
		      "process %d (%s) is not a CPython process: neither its "
		      "executable nor a mapped libpython3.X.so defines "
		      "_PyRuntime",
		      (int)t->pid, t->exe);
}

static int find_version(struct ma_target *t)
{
	struct ma_elf *e;
	uint64_t a;
	int err = ma_pyversion_from_elf(t->pymod_local, &t->version_hex,
					t->version, sizeof(t->version));

	if (err) {
		ma_err_set_exit(MA_EXIT_NOTPY);
		return ma_err_prefix(err, "process %d", (int)t->pid);
	}
	t->version_from = "PY_VERSION string";
	if (ma_elf_open(t->pymod_local, &e) == 0) {
		if (ma_elf_symbol(e, "Py_Version", &a, NULL) == 0)
			t->version_from = "Py_Version";
		ma_elf_close(e);
	}
	if (!ma_pyver_supported(t->version_hex)) {
		ma_err_set_exit(MA_EXIT_NOTPY);
		return ma_err(-ENOTSUP,
			      "process %d runs Python %s (%s), which memattach "
			      "does not support: supported are 3.%d to 3.%d",
			      (int)t->pid, t->version, t->pymod_path,
			      MA_PY_MIN_MINOR, MA_PY_MAX_MINOR);
	}
	return 0;
}

static char *debuginfo_path;
static char debuginfo_path_buf[PATH_MAX];
static pid_t find_elf_pid; /* the process report_modules() reports */

/*
 * The files of the process's modules, opened through its root
 * (/proc/PID/root/<path>): in a container, or any other mount namespace,
 * the path in its maps names another file here, or none.  libdwfl's own
 * dwfl_linux_proc_find_elf opens the path as it is; it is the fallback
 * (a root we may not enter, the vdso).
 */
static int find_elf_in_root(Dwfl_Module *mod, void **userdata, const char *name,
			    Dwarf_Addr base, char **file_name, Elf **elfp)
{
	char local[PATH_MAX + 32];
	int fd;

	if (name && name[0] == '/' && find_elf_pid > 0) {
		ma_proc_map_path(find_elf_pid, name, local, sizeof(local));
		fd = open(local, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			*file_name = strdup(local);
			*elfp = NULL;
			return fd;
		}
	}
	return dwfl_linux_proc_find_elf(mod, userdata, name, base, file_name,
					elfp);
}

static const Dwfl_Callbacks proc_callbacks = {
	.find_elf = find_elf_in_root,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.debuginfo_path = &debuginfo_path,
};

static int match_module(Dwfl_Module *mod, void **userdata, const char *name,
			Dwarf_Addr start, void *arg)
{
	struct ma_target *t = arg;

	(void)userdata;
	(void)start;
	if (name && !strcmp(name, t->pymod_path)) {
		t->pymod = mod;
		return DWARF_CB_ABORT;
	}
	return DWARF_CB_OK;
}

static int report_modules(struct ma_target *t)
{
	/* MEMATTACH_DEBUGINFO_PATH replaces libdwfl's search path for separate
	 * debug files (default ":.debug:/usr/lib/debug"); the tests set it to
	 * a missing directory to hide DWARF and exercise the fallbacks. */
	debuginfo_path = getenv("MEMATTACH_DEBUGINFO_PATH");
	/* Separate debug files: beside the file (in the target's root, where
	 * the file was opened), then by build ID or debuglink under the
	 * target's /usr/lib/debug, then under ours: a container's python
	 * may have its -dbg package inside, or the host may have it */
	if (!debuginfo_path) {
		snprintf(debuginfo_path_buf, sizeof(debuginfo_path_buf),
			 ":.debug:/proc/%d/root/usr/lib/debug:/usr/lib/debug",
			 (int)t->pid);
		debuginfo_path = debuginfo_path_buf;
	}
	find_elf_pid = t->pid;
	t->dwfl = dwfl_begin(&proc_callbacks);
	if (!t->dwfl)
		return ma_err(-ENOMEM, "dwfl_begin: %s", dwfl_errmsg(-1));
	dwfl_report_begin(t->dwfl);
	int r = dwfl_linux_proc_report(t->dwfl, t->pid);

	if (r == EACCES || r == EPERM) {
		/* dwfl_linux_proc_report reads /proc/PID/auxv first (for the
		 * vDSO), a file of mode 0400: another user with
		 * CAP_SYS_PTRACE alone passes the ptrace check but not the
		 * file's permissions (that takes CAP_DAC_READ_SEARCH).  The
		 * maps (mode 0444, the ptrace check only) are enough; the
		 * vDSO is then not a module, which nothing here needs. */
		char path[64];
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/maps", (int)t->pid);
		f = fopen(path, "re");
		if (f) {
			r = dwfl_linux_proc_maps_report(t->dwfl, f);
			fclose(f);
		}
	}
	dwfl_report_end(t->dwfl, NULL, NULL);
	if (r != 0)
		return ma_err(r > 0 ? -r : -EIO,
			      "dwfl_linux_proc_report(%d): %s", (int)t->pid,
			      r > 0 ? strerror(r) : dwfl_errmsg(-1));
	/* By name: _PyRuntime may live in .bss past the file-backed mappings
	 * (3.8, 3.9), where dwfl_addrmodule() finds no module. */
	dwfl_getmodules(t->dwfl, match_module, t, 0);
	if (!t->pymod)
		t->pymod = dwfl_addrmodule(t->dwfl, t->runtime_addr);
	if (!t->pymod)
		return ma_err(-ENOENT,
			      "process %d: no module at _PyRuntime "
			      "%#lx: %s",
			      (int)t->pid, (unsigned long)t->runtime_addr,
			      dwfl_errmsg(-1));
	return 0;
}

static int find_offsets(struct ma_target *t, const struct ma_target_opts *o)
{
	const struct ma_offsets_query q = {
		.pid = t->pid,
		.version = t->version,
		.version_hex = t->version_hex,
		.mod_path = t->pymod_path,
		.mod_local = t->pymod_local,
		.build_id = t->build_id,
		.mod = t->pymod,
		.mem = t->mem,
		.runtime_addr = t->runtime_addr,
		.pref = o->offsets,
		.no_validate = o->no_validate,
	};

	return ma_offsets_find(&q, &t->off, t->off_origin,
			       sizeof(t->off_origin), t->off_notes,
			       sizeof(t->off_notes));
}

/* ma_proc_exec_sig once an exec under way is done: read in the middle of
 * one, the auxv is the old image's or still empty (an exec takes
 * milliseconds; called on first reading and on a failure's path only) */
static uint64_t exec_sig_later(pid_t pid)
{
	struct timespec ts = { 0, 30 * 1000000L };

	nanosleep(&ts, NULL);
	return ma_proc_exec_sig(pid);
}

/* The error of both checks below: 1 */
static int execed_err(const struct ma_target *t)
{
	ma_err(-ECHILD,
	       "process %d exec'd a new program while memattach was at work "
	       "on it (the program it was looking at is gone): try again",
	       (int)t->pid);
	ma_err_set_exit(MA_EXIT_NOPROC);
	return 1;
}

int ma_target_execed_now(const struct ma_target *t)
{
	uint64_t now;

	if (!t->exec_sig)
		return 0;
	now = ma_proc_exec_sig(t->pid);
	if (now == t->exec_sig)
		return 0;
	/* killed while frozen: its auxv went with its memory, no exec */
	if (!now && ma_target_ended(t))
		return 1;
	return execed_err(t);
}

int ma_target_ended(const struct ma_target *t)
{
	if (!ma_proc_ended(t->pid))
		return 0;
	ma_err(-ESRCH, "process %d exited while memattach was at work on it",
	       (int)t->pid);
	ma_err_set_exit(MA_EXIT_NOPROC);
	return 1;
}

int ma_target_execed(const struct ma_target *t)
{
	uint64_t now = ma_proc_exec_sig(t->pid);

	if (!t->exec_sig)
		return 0;
	if (!now || now == t->exec_sig)
		now = exec_sig_later(t->pid);
	if (!now || now == t->exec_sig)
		return 0;
	return execed_err(t);
}

int ma_target_open(pid_t pid, const struct ma_target_opts *opts,
		   struct ma_target **out)
{
	static const struct ma_target_opts defaults = { 0 };
	struct ma_target *t;
	uint64_t t0 = ma_now_ns();
	int err;

	if (!opts)
		opts = &defaults;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->pid = pid;
	t->own_pidns = ma_proc_same_pidns(pid);
	t->exec_sig = ma_proc_exec_sig(pid);
	if (!t->exec_sig)
		t->exec_sig = exec_sig_later(pid);

	err = ma_status_read(pid, &t->status);
	if (err) {
		ma_err_set_exit(err == -ESRCH ? MA_EXIT_NOPROC : MA_EXIT_ERROR);
		ma_err(err, "process %d: %s", (int)pid,
		       err == -ESRCH ? "no such process" : strerror(-err));
		goto fail;
	}
	if (t->status.tgid != pid) {
		err = ma_err(-EINVAL,
			     "process %d is a thread of process %d: give the "
			     "process ID",
			     (int)pid, (int)t->status.tgid);
		ma_err_set_exit(MA_EXIT_USAGE);
		goto fail;
	}
	if (t->status.state == 'Z' || t->status.state == 'X') {
		pid_t *tids = NULL;
		size_t n = 0;

		/* its main thread alone may have ended (pthread_exit), the
		 * others running on: the process's memory and maps are then
		 * read through the main thread no longer, and memattach does
		 * not go through another (docs/limits.md) */
		if (ma_tasks_read(pid, &tids, &n) == 0 && n > 1)
			err = ma_err(-ESRCH,
				     "process %d: its main thread has exited "
				     "(pthread_exit) while %zu other threads "
				     "run on; memattach reads a process "
				     "through its main thread and cannot "
				     "profile this one",
				     (int)pid, n - 1);
		else
			err = ma_err(-ESRCH,
				     "process %d is a zombie: it has exited "
				     "and waits for its parent to reap it",
				     (int)pid);
		free(tids);
		ma_err_set_exit(MA_EXIT_NOPROC);
		goto fail;
	}
	err = ma_proc_exe(pid, t->exe, sizeof(t->exe));
	if (err) {
		if (err == -EACCES || err == -EPERM) {
			char hint[512];

			ma_ptrace_explain_eperm(pid, hint, sizeof(hint));
			ma_err(err, "process %d: reading /proc/%d/exe: %s%s",
			       (int)pid, (int)pid, strerror(-err), hint);
			ma_err_set_exit(MA_EXIT_PERM);
		} else {
			ma_err(err,
			       "process %d: reading /proc/%d/exe: %s (a kernel "
			       "thread?)",
			       (int)pid, (int)pid, strerror(-err));
			ma_err_set_exit(err == -ESRCH ? MA_EXIT_NOPROC
						      : MA_EXIT_NOTPY);
		}
		goto fail;
	}
	ma_proc_cmdline(pid, t->cmdline, sizeof(t->cmdline));
	err = ma_maps_read(pid, &t->maps);
	if (err) {
		ma_err(err, "process %d: reading /proc/%d/maps: %s", (int)pid,
		       (int)pid, strerror(-err));
		ma_err_set_exit(err == -ESRCH ? MA_EXIT_NOPROC : MA_EXIT_PERM);
		goto fail;
	}
	err = find_runtime(t);
	if (err)
		goto fail;
	{
		struct ma_elf *e;

		char exe[64];

		/* the executable itself, in whatever mount namespace */
		snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)t->pid);
		if (ma_elf_open(exe, &e) == 0 ||
		    ma_elf_open(t->pymod_local, &e) == 0) {
			t->pie = ma_elf_is_pie(e);
			ma_elf_close(e);
		}
	}
	err = find_version(t);
	if (err)
		goto fail;
	err = ma_mem_open(pid, &t->mem);
	if (err)
		goto fail;
	/* A first read tells whether we may read at all */
	{
		uint64_t probe;

		err = ma_mem_read_u64(t->mem, t->runtime_addr, &probe);
		if (err == -EPERM || err == -EACCES) {
			char hint[512];

			ma_ptrace_explain_eperm(pid, hint, sizeof(hint));
			ma_err(err, "process %d: reading its memory: %s%s",
			       (int)pid, strerror(-err), hint);
			ma_err_set_exit(MA_EXIT_PERM);
			goto fail;
		} else if (err) {
			ma_err(err,
			       "process %d: reading _PyRuntime at %#lx: %s",
			       (int)pid, (unsigned long)t->runtime_addr,
			       strerror(-err));
			ma_err_set_exit(err == -ESRCH ? MA_EXIT_NOPROC
						      : MA_EXIT_ERROR);
			goto fail;
		}
	}
	err = report_modules(t);
	if (err)
		goto fail;
	err = find_offsets(t, opts);
	if (err)
		goto fail;
	t->t_discover_ns = ma_now_ns() - t0;
	*out = t;
	return 0;
fail:
	/* read across an exec, the process looks like anything ("not a
	 * supported CPython"): say what happened */
	if (err != -ESRCH && ma_target_execed(t))
		err = -ECHILD;
	ma_target_close(t);
	return err;
}

void ma_target_close(struct ma_target *t)
{
	if (!t)
		return;
	if (t->dwfl)
		dwfl_end(t->dwfl);
	ma_mem_close(t->mem);
	ma_maps_free(&t->maps);
	free(t);
}
