/* SPDX-License-Identifier: MIT */
/* The CLI layer the command files share (attacher/cli/cli.c): the command line
 * and the one way errors reach the user */
#ifndef MA_CLI_H
#define MA_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "discover.h"

extern int ma_cli_verbose;

/* Print "memattach: <cmd>: <message>" to stderr (the command named once:
 * not again when the message already starts with it) */
void ma_cli_error(const char *cmd);

/* ma_cli_error(cmd), then return the exit code of the failure */
int ma_cli_fail(const char *cmd);

/*
 * A usage entry: head (say "  -f, --format FMT"), padded to column indent,
 * then text broken between words so that no line is longer than 75
 * columns, the next lines indented to the same column.
 */
void ma_cli_wrap(FILE *f, const char *head, int indent, const char *text);

/* --offsets=auto|dwarf|debug-offsets|table */
int ma_cli_offsets_pref(const char *s, enum ma_offsets_pref *out);

/* --top's bound (attach, heap, report) */
#define MA_CLI_TOP_MAX (1u << 30)

/*
 * A whole number from min to max as the user typed it: decimal digits and
 * nothing else, the whole string.  atoi and strtoul take "2x" for 2, " 5"
 * and "+5" for 5, and a cast wraps "-1" and 4294967297 into range; here
 * each of them is -EINVAL, as is a number outside [min, max].  The one rule
 * for every count option (attach, heap, report).
 */
int ma_cli_uint(const char *s, unsigned long long min, unsigned long long max,
		unsigned long long *out);

/*
 * Seconds, a decimal number from 0 to 1e9 ("2", "1.5", ".5", "1e3"), to
 * nanoseconds.  strtod alone also takes "nan", "inf", hex ("0x10" = 16 s)
 * and leading blanks and signs: -EINVAL here, as is more than 1e9 s.
 */
int ma_cli_secs(const char *s, uint64_t *ns);

/*
 * A command's options, read with getopt_long, and the ending every command
 * shares.  Loop while ma_cli_opt() returns an option for the command:
 *
 *	struct ma_cli_args args =
 *		MA_CLI_ARGS("info", argc, argv, "jh", longopts, usage);
 *
 *	args.offsets = &topts.offsets;	(optional)
 *	args.pid = &pid;		(optional)
 *	while ((c = ma_cli_opt(&args)) > 0)
 *		switch (c) { ... }
 *	if (args.exit >= 0)
 *		return args.exit;
 *	... argv[optind] is the one argument
 *
 * -h/--help prints the usage on stdout (exit 0).  An unknown, ambiguous
 * or misused option, or anything but exactly one argument after the options
 * (one or more with several, none with noargs), prints one line
 * "memattach: <cmd>: <what is wrong> (see 'memattach <cmd> --help')" on
 * stderr (exit 2).  With offsets set, --offsets ('O') is read here; with pid
 * set, the argument is a PID.  A bad value of either prints
 * "memattach: <cmd>: <why>" (exit 2).
 */
struct ma_cli_args {
	const char *cmd;
	int argc;
	char **argv;
	const char *shortopts; /* with 'h' */
	const struct option *longopts;
	void (*usage)(FILE *);
	enum ma_offsets_pref *offsets; /* NULL: 'O' goes to the command */
	pid_t *pid;		       /* NULL: the argument is not a PID */
	int several; /* one argument or more (argv[optind] to argc - 1) */
	int noargs;  /* no argument at all */
	const char *argname; /* the argument, in messages (NULL: "PID") */
	/* after the loop: -1 = go on with argv[optind], else the exit code */
	int exit;
	int started;
	char opts[64]; /* shortopts after a ':' */
};

#define MA_CLI_ARGS(cmd_, argc_, argv_, shortopts_, longopts_, usage_)         \
	{                                                                      \
		.cmd = (cmd_), .argc = (argc_), .argv = (argv_),               \
		.shortopts = (shortopts_), .longopts = (longopts_),            \
		.usage = (usage_),                                             \
	}

int ma_cli_opt(struct ma_cli_args *a);

#endif
