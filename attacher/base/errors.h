/* SPDX-License-Identifier: MIT */
/*
 * Error reporting below the CLI: functions return a negative errno and record
 * a one-line message naming the operation, the PID and the cause with
 * ma_err(); a caller adds its context with ma_err_prefix().  Only the CLI
 * prints it (ma_cli_fail: "memattach: <command>: <message>"), and only
 * main() exits.
 */
#ifndef MA_ERRORS_H
#define MA_ERRORS_H

#include <stdbool.h>

/* Documented exit codes (docs/memattach.md) */
enum ma_exit {
	MA_EXIT_OK = 0,
	MA_EXIT_ERROR = 1,  /* internal or unexpected error */
	MA_EXIT_USAGE = 2,  /* bad command line */
	MA_EXIT_NOPROC = 3, /* no such process, or it exited / is a zombie */
	MA_EXIT_PERM = 4,  /* permission denied (ptrace_scope, owner, tracer) */
	MA_EXIT_NOTPY = 5, /* not a CPython process, or unsupported version */
	MA_EXIT_NODEBUG = 6, /* no DWARF and no fallback for this build */
	MA_EXIT_CAPTURE = 7, /* capture file missing, truncated or corrupt */
	MA_EXIT_PARTIAL = 8, /* worked, but some data could not be read */
	MA_EXIT_BUSY = 9,    /* another memattach tracks the process now */
	MA_EXIT_NOMEM = 10,  /* not enough memory (a census) or descriptors */
	MA_EXIT_INTERRUPTED = 130, /* heap: Ctrl-C during the census */
};

/*
 * Record the error message (printf-style) and return err unchanged, so that
 * callers can write `return ma_err(-ESRCH, "...")`.  A new failure: the
 * message replaces any earlier one, so it says everything itself (the
 * operation, the PID, the cause).
 */
int ma_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Add context to the message a deeper layer recorded, which is kept as the
 * cause: "<context>: <cause>" ("inject: dlopen: <cause>", then
 * "attach: inject: dlopen: <cause>" a layer higher).  A context the message
 * already starts with is not written twice; with no message recorded, the
 * context alone.  Returns err unchanged.
 */
int ma_err_prefix(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Whether the message starts with this context: "<context>" or
 * "<context>: ..." (the CLI names the command only where it does not) */
bool ma_err_has_context(const char *context);

/* The last message recorded, or "" */
const char *ma_errmsg(void);

/* The exit code a class of failure maps to (set alongside the message) */
void ma_err_set_exit(int code);
int ma_err_exit(void);

void ma_err_clear(void);

#endif
