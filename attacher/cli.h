/* SPDX-License-Identifier: MIT */
/* Helpers shared by the command files */
#ifndef MA_CLI_H
#define MA_CLI_H

#include <stdio.h>

#include "discover.h"

extern int ma_cli_verbose;

/* Print "memattach: <cmd>: <message>" to stderr, return the exit code */
int ma_cli_fail(const char *cmd);

/* --offsets=auto|dwarf|debug-offsets|table */
int ma_cli_offsets_pref(const char *s, enum ma_offsets_pref *out);

/* The one PID argument left after the options (argv[optind]): 0 with *pid
 * set, else the exit code, after printing usage or the error */
int ma_cli_pid_arg(int argc, char **argv, const char *cmd,
		   void (*usage)(FILE *), pid_t *pid);

#endif
