/* SPDX-License-Identifier: MIT */
/*
 * memattach ps: every Python process memattach can see, with its Python
 * version, RSS, command line, and whether memattach can attach to it (and
 * why not), so that a user finds the worker or notebook kernel to look at
 * without `ps | grep`.  Nothing is stopped and no ptrace is used: each
 * process's /proc files and its interpreter's ELF file (through its root,
 * so containers count) are read, and the ptrace access check is the one
 * the kernel makes to open /proc/PID/mem.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "errors.h"
#include "holder.h"
#include "ma_pyver.h"
#include "procfs.h"
#include "pyversion.h"
#include "textfit.h"
#include "units.h"

struct ps_row {
	pid_t pid;
	char version[32];
	uint64_t rss;
	char cmd[512];
	int attachable;
	char why[192]; /* why not, or "" */
};

/* libpython3.X.so... or an executable named python3.X: the module that
 * holds the interpreter, as the process names it; NULL when none */
static const char *python_module(const struct ma_maps *m, const char *exe)
{
	const char *b = strrchr(exe, '/');

	for (size_t i = 0; i < m->n; i++) {
		const char *p = strrchr(m->v[i].path, '/');

		if (p && !strncmp(p + 1, "libpython3.", 11) && strstr(p, ".so"))
			return m->v[i].path;
		if (p && !strncmp(p + 1, "libpython2.", 11))
			return m->v[i].path;
	}
	b = b ? b + 1 : exe;
	if (!strncmp(b, "python", 6) &&
	    (b[6] == '\0' || isdigit((unsigned char)b[6])))
		return exe;
	return NULL;
}

/* 0 when we may read pid's memory, else the errno of the refusal */
static int mem_access(pid_t pid, const struct ma_maps *maps)
{
	for (size_t i = 0; i < maps->n; i++) {
		const struct ma_map *m = &maps->v[i];
		char b;
		struct iovec local = { .iov_base = &b, .iov_len = 1 };
		struct iovec remote = { .iov_base = (void *)(uintptr_t)m->start,
					.iov_len = 1 };

		if (m->perms[0] != 'r')
			continue;
		if (process_vm_readv(pid, &local, 1, &remote, 1, 0) == 1)
			return 0;
		if (errno != EFAULT)
			return errno;
	}
	return 0; /* nothing readable to try: let the attach say */
}

/* A Python 2 by its file's name (python2.7, libpython2.7.so): its ELF has
 * no version memattach reads (no PY_VERSION of 3.x); "2.7" into ver */
static int python2(const char *mod, char *ver, size_t len)
{
	const char *b = strrchr(mod, '/'), *p;
	size_t n;

	b = b ? b + 1 : mod;
	p = strstr(b, "python2");
	if (!p)
		return 0;
	p += strlen("python");
	n = p[1] == '.' ? strspn(p, "0123456789.") : 1;
	while (n > 1 && p[n - 1] == '.')
		n--;
	snprintf(ver, len, "%.*s", (int)n, p);
	return 1;
}

/* Fill r for pid; 1 when it is a Python process, 0 when not, <0 gone */
static int look(pid_t pid, struct ps_row *r)
{
	struct ma_status st;
	struct ma_maps maps = { 0 };
	struct ma_holder h;
	char exe[PATH_MAX], local[PATH_MAX + 32], path[64];
	const char *mod;
	uint32_t hex = 0;
	int fd, e;

	memset(r, 0, sizeof(*r));
	r->pid = pid;
	if (ma_status_read(pid, &st) || st.tgid != pid)
		return -ESRCH;
	if (ma_proc_exe(pid, exe, sizeof(exe)) || ma_maps_read(pid, &maps)) {
		/* a kernel thread (no cmdline), or a process of another user:
		 * its command line is all there is to go by */
		char argv0[PATH_MAX];

		if (ma_proc_cmdline(pid, r->cmd, sizeof(r->cmd)) || !r->cmd[0])
			return 0;
		snprintf(argv0, sizeof(argv0), "%.*s",
			 (int)strcspn(r->cmd, " "), r->cmd);
		if (!python_module(&maps, argv0))
			return 0;
		r->rss = (uint64_t)st.vm_rss_kb * 1024;
		snprintf(r->version, sizeof(r->version), "?");
		snprintf(r->why, sizeof(r->why),
			 "no access to its memory map (owner uid %u): needs "
			 "root, CAP_SYS_PTRACE, or its user",
			 (unsigned)st.uid);
		return 1;
	}
	mod = python_module(&maps, exe);
	if (!mod) {
		ma_maps_free(&maps);
		return 0;
	}
	r->rss = (uint64_t)st.vm_rss_kb * 1024;
	ma_proc_cmdline(pid, r->cmd, sizeof(r->cmd));
	ma_proc_map_path(pid, mod, local, sizeof(local));
	if (ma_pyversion_from_elf(local, &hex, r->version,
				  sizeof(r->version)) &&
	    ma_pyversion_from_elf(mod, &hex, r->version, sizeof(r->version)))
		snprintf(r->version, sizeof(r->version), "?");

	/* Why an attach would fail, in the order the attach finds out.
	 * Memory access first, as the attach reads it: process_vm_readv of
	 * one byte of a readable mapping (ptrace access; /proc/PID/mem, mode
	 * 0600, would also refuse a user with CAP_SYS_PTRACE alone), then
	 * /proc/PID/mem where the call itself is refused (old kernel,
	 * seccomp), as memread.c falls back */
	e = mem_access(pid, &maps);
	if (e == ENOSYS || e == EPERM) {
		snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		e = fd < 0 ? errno : 0;
		if (fd >= 0)
			close(fd);
	}
	if (st.state == 'Z')
		snprintf(r->why, sizeof(r->why), "a zombie");
	else if (e)
		snprintf(r->why, sizeof(r->why),
			 "no access to its memory (%s; owner uid %u): needs "
			 "root, "
			 "CAP_SYS_PTRACE, or its user with "
			 "kernel.yama.ptrace_scope=0",
			 strerror(e), (unsigned)st.uid);
	else if (st.tracer) {
		char comm[64] = "?";

		ma_proc_comm(st.tracer, st.tracer, comm, sizeof(comm));
		snprintf(r->why, sizeof(r->why), "traced by %d (%s)",
			 (int)st.tracer, comm);
	} else if (st.state == 'T')
		/* as attach refuses it (ma_track_check_running) */
		snprintf(r->why, sizeof(r->why),
			 "stopped by a signal (state T): 'kill -CONT %d' "
			 "resumes it",
			 (int)pid);
	else if (!hex && python2(mod, r->version, sizeof(r->version)))
		snprintf(r->why, sizeof(r->why),
			 "Python 2 is not supported (3.%d to 3.%d are)",
			 MA_PY_MIN_MINOR, MA_PY_MAX_MINOR);
	else if (!hex)
		snprintf(r->why, sizeof(r->why), "Python version unknown");
	else if (!ma_pyver_supported(hex))
		snprintf(r->why, sizeof(r->why),
			 "Python %s is not supported (3.%d to 3.%d are)",
			 r->version, MA_PY_MIN_MINOR, MA_PY_MAX_MINOR);
	else if (!ma_ring_holder_by_maps(pid, &maps, &h))
		snprintf(r->why, sizeof(r->why),
			 "tracked by memattach (PID %d)%s%s", (int)h.pid,
			 h.since_text[0] ? " since " : "", h.since_text);
	else
		r->attachable = 1;
	ma_maps_free(&maps);
	return 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: memattach ps [--json]\n"
		   "  Every Python process memattach can see: PID, Python "
		   "version, RSS,\n"
		   "  whether memattach can attach to it (and why not), "
		   "command line.\n");
}

static int cmp_row(const void *a, const void *b)
{
	const struct ps_row *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

int ma_cmd_ps(int argc, char **argv)
{
	struct ps_row *rows = NULL;
	size_t n = 0, cap = 0;
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int json = 0, c;
	struct ma_cli_args args =
		MA_CLI_ARGS("ps", argc, argv, "jh", longopts, usage);
	DIR *d;
	struct dirent *de;

	/* the options every command takes, and its one-line errors (a bad
	 * one printed the usage alone) */
	args.noargs = 1;
	while ((c = ma_cli_opt(&args)) > 0)
		if (c == 'j')
			json = 1;
	if (args.exit >= 0)
		return args.exit;
	d = opendir("/proc");
	if (!d) {
		ma_err(-errno, "ps: /proc: %s", strerror(errno));
		return ma_cli_fail("ps");
	}
	while ((de = readdir(d))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		if (n == cap) {
			struct ps_row *nr;

			cap = cap ? cap * 2 : 64;
			nr = realloc(rows, cap * sizeof(*rows));
			if (!nr) {
				closedir(d);
				free(rows);
				ma_err(-ENOMEM, "ps: out of memory");
				return ma_cli_fail("ps");
			}
			rows = nr;
		}
		pid_t pid = (pid_t)atoi(de->d_name);

		if (pid != getpid() && look(pid, &rows[n]) == 1)
			n++;
	}
	closedir(d);
	qsort(rows, n, sizeof(*rows), cmp_row);
	if (json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n; i++) {
			const struct ps_row *r = &rows[i];

			json_array_append_new(
				a,
				json_pack("{s:i, s:s, s:I, s:s, s:b, s:s?}",
					  "pid", (int)r->pid, "python",
					  r->version, "rss", (json_int_t)r->rss,
					  "command", r->cmd, "attachable",
					  r->attachable, "why_not",
					  r->attachable ? NULL : r->why));
		}
		json_dumpf(a, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		putchar('\n');
		json_decref(a);
	} else {
		printf("%7s  %-9s  %9s  %-10s %s\n", "PID", "PYTHON", "RSS",
		       "ATTACH", "COMMAND");
		for (size_t i = 0; i < n; i++) {
			const struct ps_row *r = &rows[i];
			char rss[32], *cmd = ma_escape_ctl(r->cmd);

			ma_fmt_bytes(r->rss, rss, sizeof(rss));
			printf("%7d  %-9s  %9s  %-10s %s\n", (int)r->pid,
			       r->version, rss, r->attachable ? "yes" : "no",
			       cmd ? cmd : r->cmd);
			free(cmd);
			if (!r->attachable)
				printf("%7s  %s\n", "", r->why);
		}
		if (!n)
			printf("(no Python process visible to memattach)\n");
	}
	free(rows);
	return MA_EXIT_OK;
}
