/* SPDX-License-Identifier: MIT */
/* The CLI layer the command files share (attacher/cli/cli.c): the command line
 * and the one way errors reach the user */
#ifndef MA_CLI_H
#define MA_CLI_H

#include <getopt.h>
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
 * -h/--help prints the usage on stdout (exit 0); an unknown option or a
 * missing argument (getopt names it), or anything but exactly one argument
 * after the options, prints it on stderr (exit 2).  With offsets set,
 * --offsets ('O') is read here; with pid set, the argument is a PID.  A bad
 * value of either prints "memattach: <cmd>: <why>" (exit 2).
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
	/* after the loop: -1 = go on with argv[optind], else the exit code */
	int exit;
	int started;
};

#define MA_CLI_ARGS(cmd_, argc_, argv_, shortopts_, longopts_, usage_)         \
	{                                                                      \
		.cmd = (cmd_), .argc = (argc_), .argv = (argv_),               \
		.shortopts = (shortopts_), .longopts = (longopts_),            \
		.usage = (usage_),                                             \
	}

int ma_cli_opt(struct ma_cli_args *a);

#endif
