/* SPDX-License-Identifier: MIT */
/*
 * Error reporting below the CLI: functions return a negative errno and record
 * a one-line message naming the operation, the PID and the cause with
 * ma_err().  Only main() prints it (and exits).
 */
#ifndef MA_ERRORS_H
#define MA_ERRORS_H

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
};

/*
 * Record the error message (printf-style) and return err unchanged, so that
 * callers can write `return ma_err(-ESRCH, "...")`.  A message already set
 * by a deeper layer is kept as the cause when the new one ends in ": %m"-free
 * text; see ma_err_prefix() to add context instead.
 */
int ma_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the current message with more context: "attach 1234: <old>" */
int ma_err_prefix(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The last message recorded, or "" */
const char *ma_errmsg(void);

/* The exit code a class of failure maps to (set alongside the message) */
void ma_err_set_exit(int code);
int ma_err_exit(void);

void ma_err_clear(void);

#endif
