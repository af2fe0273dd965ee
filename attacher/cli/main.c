/* SPDX-License-Identifier: MIT */
/*
 * memattach: look into, and profile the memory of, a running CPython process
 * without restarting it.  main() only dispatches to the commands (one file
 * each) and is the only place that exits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "errors.h"
#include "report.h"
#include "teststep.h"

static void usage(FILE *f)
{
	char report[512] = "what a capture says: top locations by live, peak, "
			   "total or temporary bytes (--format ";

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
		"                (--children: a worker pool, each process "
		"apart)\n"
		"  heap PID      what holds the memory now: a census of every "
		"Python\n"
		"                object by type, the largest and what keeps "
		"them alive\n"
		"  detach PID    clean up after a memattach that was killed\n"
		"  ps            every Python process: version, RSS, whether "
		"memattach\n"
		"                can attach to it and why not, command line\n");
	ma_report_format_names(report, sizeof(report), NULL, ", ");
	strcat(report, ")");
	ma_cli_wrap(f, "  report FILE", 16, report);
	fprintf(f,
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
		"debug info/offsets, 7 capture file error, 8 partial result, 9 "
		"busy (another\n"
		"memattach tracks the process), 10 not enough memory or file "
		"descriptors\n(heap; attach: the target's limits), 130\n"
		"interrupted (Ctrl-C during a heap census).\n"
		"See docs/memattach.md.\n");
}

static const struct {
	const char *name;
	int (*fn)(int, char **);
} commands[] = {
	{ "info", ma_cmd_info },     { "stacks", ma_cmd_stacks },
	{ "attach", ma_cmd_attach }, { "detach", ma_cmd_detach },
	{ "report", ma_cmd_report }, { "offsets", ma_cmd_offsets },
	{ "heap", ma_cmd_heap },     { "ps", ma_cmd_ps },
};

/*
 * What the command printed on stdout reached it, else exit 7 and why: a
 * closed stdout (`>&-`, EBADF) or a full disk lost the answer while the
 * command said 0.  A reader gone (EPIPE, where SIGPIPE is ignored:
 * attach, whose capture matters more than its summary) is left unsaid,
 * as a SIGPIPE would have.
 */
static int out_done(int ret)
{
	errno = 0;
	if (fflush(stdout) == 0 && !ferror(stdout))
		return ret;
	if (errno == EPIPE)
		return ret;
	fprintf(stderr, "memattach: writing to standard output: %s\n",
		strerror(errno ? errno : EIO));
	return ret == MA_EXIT_OK ? MA_EXIT_CAPTURE : ret;
}

static int run(int argc, char **argv);

int main(int argc, char **argv)
{
	return out_done(run(argc, argv));
}

static int run(int argc, char **argv)
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
	 * thread's stack now, then tracking until Ctrl-C; options may come
	 * after the PID, as with attach (`memattach -d 5 PID -o FILE`) */
	int pid_named = 0;

	for (int k = i; k < argc && !pid_named; k++)
		pid_named = argv[k][0] &&
			    strspn(argv[k], "0123456789") == strlen(argv[k]);
	if ((argv[i][0] >= '0' && argv[i][0] <= '9') ||
	    (argv[i][0] == '-' && pid_named)) {
		argv[i - 1] = "attach";
		return ma_cmd_attach_opts(argc - i + 1, argv + i - 1, 1);
	}
	fprintf(stderr, "memattach: unknown %s '%s' (see 'memattach --help')\n",
		argv[i][0] == '-' ? "option" : "command", argv[i]);
	return MA_EXIT_USAGE;
}
