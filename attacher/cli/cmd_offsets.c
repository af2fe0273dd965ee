/* SPDX-License-Identifier: MIT */
/*
 * memattach offsets [--source dwarf|debug-offsets|table] [--format text|c]
 *                   [--version X.Y.Z] [--time] FILE|PID
 * memattach offsets --check [--version X.Y.Z] FILE
 *
 * A developer command: prints struct ma_py_offsets for a CPython binary
 * (the executable or libpython holding _PyRuntime), and checks the built-in
 * table against a binary's DWARF.  tools/gen-offsets-table builds the table
 * from its `--format c` output.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "textfit.h"
#include "commands.h"
#include "discover.h"
#include "errors.h"
#include "pyoffsets.h"
#include "pyversion.h"
#include "symbols.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: memattach offsets [--source dwarf|debug-offsets|table] "
		"[--format text|c]\n"
		"                         [--version X.Y.Z] [--time] FILE|PID\n"
		"       memattach offsets --check [--version X.Y.Z] FILE\n"
		"FILE is the ELF that holds _PyRuntime: the python executable "
		"when libpython is\n"
		"linked in statically, else libpython3.X.so.  --check compares "
		"its DWARF offsets\n"
		"with the built-in table entry for its minor version (exit 0: "
		"equal, 1: not).\n"
		"With a PID: the offsets discovery picks from that source, "
		"validated.\n");
}

/* Exit code for an error class */
static int exit_for(int err)
{
	switch (err) {
	case -ENOENT:
		return MA_EXIT_NODEBUG;
	case -ENOTSUP:
		return MA_EXIT_NOTPY;
	default:
		return MA_EXIT_ERROR;
	}
}

static int fail(int code)
{
	ma_err_set_exit(code);
	return ma_cli_fail("offsets");
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* _Py_DebugOffsets as initialised in the file: _PyRuntime's bytes. */
static int debug_offsets_from_file(const char *path, uint32_t version_hex,
				   struct ma_py_offsets *out)
{
	size_t len = ma_pyoffsets_debug_offsets_size();
	struct ma_elf *e;
	uint64_t addr, size;
	void *buf;
	int r;

	r = ma_elf_open(path, &e);
	if (r)
		return r;
	r = ma_elf_symbol(e, "_PyRuntime", &addr, &size);
	if (r) {
		ma_elf_close(e);
		return ma_err(-ENOENT, "%s: no symbol _PyRuntime", path);
	}
	buf = calloc(1, len);
	if (!buf) {
		ma_elf_close(e);
		return -ENOMEM;
	}
	/* A 3.14+ struct may be shorter than 3.13's; the parser only needs
	 * the 16-byte header to refuse it, so read what exists. */
	if (size && size < len)
		len = size;
	r = ma_elf_read_vaddr(e, addr, buf, len);
	if (r)
		r = ma_err(r, "%s: reading _PyRuntime at 0x%llx failed", path,
			   (unsigned long long)addr);
	else
		r = ma_pyoffsets_from_debug_offsets_buf(buf, len, version_hex,
							out);
	free(buf);
	ma_elf_close(e);
	return r;
}

/* What discovery settles on for a live process: the same sources, in the
 * order asked for, validated against the process's memory. */
static int offsets_of_pid(const char *arg, enum ma_offsets_source src,
			  int c_format, int do_time)
{
	struct ma_target_opts opts = { 0 };
	struct ma_target *t;
	double t0 = now_ms();
	pid_t pid;
	int r;

	opts.offsets = src == MA_OFFSETS_SRC_DEBUG_OFFSETS
			       ? MA_PREF_DEBUG_OFFSETS
		       : src == MA_OFFSETS_SRC_TABLE ? MA_PREF_TABLE
						     : MA_PREF_DWARF;
	r = ma_parse_pid(arg, &pid);
	if (r)
		return ma_cli_fail("offsets");
	r = ma_target_open(pid, &opts, &t);
	if (r)
		return ma_cli_fail("offsets");
	if (do_time)
		fprintf(stderr, "memattach: offsets: %d: %s in %.1f ms\n",
			(int)pid, t->off_origin, now_ms() - t0);
	if (c_format) {
		ma_pyoffsets_print_c(stdout, &t->off);
	} else {
		printf("%-28s %d\n", "pid", (int)pid);
		char sf[4200];

		printf("%-28s %s\n", "file",
		       ma_ctl_safe(t->pymod_path, sf, sizeof(sf)));
		printf("%-28s %s\n", "origin", t->off_origin);
		ma_pyoffsets_print(stdout, &t->off);
	}
	ma_target_close(t);
	return MA_EXIT_OK;
}

static int check(const char *path, uint32_t hex, const char *vstr)
{
	struct ma_py_offsets dw;
	const struct ma_py_offsets *tab;
	int r, n;

	r = ma_pyoffsets_from_file(path, hex, &dw);
	if (r)
		return fail(exit_for(r));
	tab = ma_pyoffsets_table_entry(hex);
	if (!tab) {
		printf("%s: Python %s: FAIL: no table entry for %d.%d\n", path,
		       vstr, ma_py_major(hex), ma_py_minor(hex));
		return 1;
	}
	n = ma_pyoffsets_diff(NULL, &dw, tab);
	if (n == 0) {
		printf("%s: Python %s: ok: DWARF offsets equal the table entry "
		       "(generated from %d.%d.%d)\n",
		       path, vstr, ma_py_major(tab->version_hex),
		       ma_py_minor(tab->version_hex),
		       (int)((tab->version_hex >> 8) & 0xff));
		return 0;
	}
	printf("%s: Python %s: FAIL: %d field(s) differ, DWARF != table "
	       "(generated from %d.%d.%d):\n",
	       path, vstr, n, ma_py_major(tab->version_hex),
	       ma_py_minor(tab->version_hex),
	       (int)((tab->version_hex >> 8) & 0xff));
	ma_pyoffsets_diff(stdout, &dw, tab);
	return 1;
}

int ma_cmd_offsets(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "source", required_argument, NULL, 's' },
		{ "format", required_argument, NULL, 'f' },
		{ "version", required_argument, NULL, 'V' },
		{ "check", no_argument, NULL, 'c' },
		{ "time", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	enum ma_offsets_source src = MA_OFFSETS_SRC_DWARF;
	const char *vopt = NULL, *path;
	int c_format = 0, do_check = 0, do_time = 0;
	struct ma_py_offsets o;
	uint32_t hex;
	char vstr[32];
	double t0;
	int c, r;
	struct ma_cli_args args =
		MA_CLI_ARGS("offsets", argc, argv, "s:f:V:cth", opts, usage);

	args.argname = "FILE or PID";
	while ((c = ma_cli_opt(&args)) > 0) {
		switch (c) {
		case 's':
			if (!strcmp(optarg, "dwarf"))
				src = MA_OFFSETS_SRC_DWARF;
			else if (!strcmp(optarg, "debug-offsets"))
				src = MA_OFFSETS_SRC_DEBUG_OFFSETS;
			else if (!strcmp(optarg, "table"))
				src = MA_OFFSETS_SRC_TABLE;
			else {
				fprintf(stderr,
					"memattach: offsets: unknown source "
					"'%s' (dwarf, debug-offsets or "
					"table)\n",
					optarg);
				return MA_EXIT_USAGE;
			}
			break;
		case 'f':
			if (!strcmp(optarg, "c"))
				c_format = 1;
			else if (!strcmp(optarg, "text"))
				c_format = 0;
			else {
				fprintf(stderr,
					"memattach: offsets: unknown format "
					"'%s' (text or c)\n",
					optarg);
				return MA_EXIT_USAGE;
			}
			break;
		case 'V':
			vopt = optarg;
			break;
		case 'c':
			do_check = 1;
			break;
		case 't':
			do_time = 1;
			break;
		}
	}
	if (args.exit >= 0)
		return args.exit;
	path = argv[optind];
	if (path[0] && strspn(path, "0123456789") == strlen(path)) {
		if (do_check || vopt) {
			fprintf(stderr, "memattach: offsets: --check and "
					"--version take a FILE, not a PID\n");
			return MA_EXIT_USAGE;
		}
		return offsets_of_pid(path, src, c_format, do_time);
	}

	/* A file that is not ELF at all is not CPython (exit 5, as an ELF
	 * without Python's version), whichever way it would be read next:
	 * libdwfl (--version) called it missing debug info (exit 6) */
	struct ma_elf *e;

	r = ma_elf_open(path, &e);
	if (r == -ENOEXEC)
		return fail(MA_EXIT_NOTPY);
	if (!r)
		ma_elf_close(e);

	if (vopt) {
		if (ma_pyversion_parse(vopt, &hex)) {
			fprintf(stderr,
				"memattach: offsets: bad --version '%s' "
				"(X.Y.Z)\n",
				vopt);
			return MA_EXIT_USAGE;
		}
		snprintf(vstr, sizeof(vstr), "%s", vopt);
	} else {
		r = ma_pyversion_from_elf(path, &hex, vstr, sizeof(vstr));
		if (r)
			return fail(r == -ENOENT ? MA_EXIT_NOTPY
						 : MA_EXIT_ERROR);
	}

	if (do_check)
		return check(path, hex, vstr);

	t0 = now_ms();
	switch (src) {
	case MA_OFFSETS_SRC_DEBUG_OFFSETS:
		r = debug_offsets_from_file(path, hex, &o);
		break;
	case MA_OFFSETS_SRC_TABLE:
		r = ma_pyoffsets_from_table(hex, &o);
		break;
	default:
		r = ma_pyoffsets_from_file(path, hex, &o);
		break;
	}
	if (do_time)
		fprintf(stderr, "memattach: offsets: %s: %s in %.1f ms\n", path,
			ma_offsets_source_name(src), now_ms() - t0);
	if (r)
		return fail(exit_for(r));
	if (c_format) {
		ma_pyoffsets_print_c(stdout, &o);
	} else {
		char sf[4200];

		printf("%-28s %s\n", "file", ma_ctl_safe(path, sf, sizeof(sf)));
		ma_pyoffsets_print(stdout, &o);
	}
	return MA_EXIT_OK;
}
