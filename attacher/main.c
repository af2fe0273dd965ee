/* SPDX-License-Identifier: MIT */
/*
 * memattach: look into, and profile the memory of, a running CPython process
 * without restarting it.  main() only dispatches to the commands (one file
 * each) and is the only place that exits.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "errors.h"
#include "teststep.h"

int ma_cli_verbose;

int ma_cli_fail(const char *cmd)
{
	fprintf(stderr, "memattach: %s%s%s\n", cmd ? cmd : "", cmd ? ": " : "",
		ma_errmsg()[0] ? ma_errmsg() : "failed");
	return ma_err_exit();
}

int ma_cli_offsets_pref(const char *s, enum ma_offsets_pref *out)
{
	static const struct {
		const char *name;
		enum ma_offsets_pref pref;
	} names[] = {
		{ "auto", MA_PREF_AUTO },
		{ "dwarf", MA_PREF_DWARF },
		{ "debug-offsets", MA_PREF_DEBUG_OFFSETS },
		{ "table", MA_PREF_TABLE },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i].name)) {
			*out = names[i].pref;
			return 0;
		}
	ma_err_set_exit(MA_EXIT_USAGE);
	return ma_err(
		-EINVAL,
		"unknown offsets source '%s' (auto, dwarf, debug-offsets, "
		"table)",
		s);
}

int ma_cli_pid_arg(int argc, char **argv, const char *cmd,
		   void (*usage)(FILE *), pid_t *pid)
{
	if (optind != argc - 1) {
		usage(stderr);
		return MA_EXIT_USAGE;
	}
	if (ma_parse_pid(argv[optind], pid)) {
		ma_err_set_exit(MA_EXIT_USAGE);
		return ma_cli_fail(cmd);
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: memattach [-v] COMMAND [options] PID\n"
		"\n"
		"Commands:\n"
		"  info PID      what memattach sees in a process: Python "
		"version and\n"
		"                build, where the struct offsets come from, "
		"threads, RSS\n"
		"  stacks PID    every thread's Python stack (--native, "
		"--json)\n"
		"  attach PID    track every allocation with its Python stack "
		"until Ctrl-C\n"
		"                or --duration; write a capture file and a "
		"summary\n"
		"  detach PID    clean up after a memattach that was killed\n"
		"  report FILE   what a capture says: top locations by live, "
		"total or peak\n"
		"                bytes (--format text|json)\n"
		"  [OPTIONS] PID the stacks of every thread, then 'attach "
		"[OPTIONS] PID'\n"
		"\n"
		"Developer commands:\n"
		"  offsets       struct offsets of a binary or process\n"
		"\n"
		"Options:\n"
		"  -v, --verbose  timings and details on stderr\n"
		"  -h, --help     this help;  --version  the version\n"
		"\n"
		"Exit codes: 0 ok, 1 internal error, 2 usage, 3 no such "
		"process "
		"or zombie,\n"
		"4 permission denied, 5 not CPython or unsupported version, 6 "
		"no usable\n"
		"debug info/offsets, 7 capture file error, 8 partial result.\n"
		"See docs/memattach.md.\n");
}

static const struct {
	const char *name;
	int (*fn)(int, char **);
} commands[] = {
	{ "info", ma_cmd_info },     { "stacks", ma_cmd_stacks },
	{ "attach", ma_cmd_attach }, { "detach", ma_cmd_detach },
	{ "report", ma_cmd_report }, { "offsets", ma_cmd_offsets },
};

int main(int argc, char **argv)
{
	int i = 1;

	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	ma_step_init();
	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
			ma_cli_verbose = 1;
		} else if (!strcmp(argv[i], "-h") ||
			   !strcmp(argv[i], "--help")) {
			usage(stdout);
			return MA_EXIT_OK;
		} else if (!strcmp(argv[i], "--version")) {
			printf("memattach %s\n", MA_VERSION);
			return MA_EXIT_OK;
		} else {
			break; /* attach options of `memattach [opts] PID` */
		}
		i++;
	}
	if (i >= argc) {
		usage(stderr);
		return MA_EXIT_USAGE;
	}
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (!strcmp(argv[i], commands[k].name))
			return commands[k].fn(argc - i, argv + i);

	/* `memattach [attach options] PID`: the user's story — every
	 * thread's stack now, then tracking until Ctrl-C */
	if ((argv[i][0] >= '0' && argv[i][0] <= '9') ||
	    (argv[i][0] == '-' && argv[argc - 1][0] >= '0' &&
	     argv[argc - 1][0] <= '9')) {
		argv[i - 1] = "attach";
		return ma_cmd_attach_opts(argc - i + 1, argv + i - 1, 1);
	}
	fprintf(stderr, "memattach: unknown %s '%s' (see 'memattach --help')\n",
		argv[i][0] == '-' ? "option" : "command", argv[i]);
	return MA_EXIT_USAGE;
}
