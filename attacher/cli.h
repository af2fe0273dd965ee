/* SPDX-License-Identifier: MIT */
/* The CLI layer the command files share (attacher/cli.c): the command line
 * and the one way errors reach the user */
#ifndef MA_CLI_H
#define MA_CLI_H

#include <stdio.h>

#include "discover.h"

extern int ma_cli_verbose;

/* Print "memattach: <cmd>: <message>" to stderr (the command named once:
 * not again when the message already starts with it) */
void ma_cli_error(const char *cmd);

/* ma_cli_error(cmd), then return the exit code of the failure */
int ma_cli_fail(const char *cmd);

/* --offsets=auto|dwarf|debug-offsets|table */
int ma_cli_offsets_pref(const char *s, enum ma_offsets_pref *out);

/* The one PID argument left after the options (argv[optind]): 0 with *pid
 * set, else the exit code, after printing usage or the error */
int ma_cli_pid_arg(int argc, char **argv, const char *cmd,
		   void (*usage)(FILE *), pid_t *pid);

#endif
