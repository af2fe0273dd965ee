/* SPDX-License-Identifier: MIT */
/*
 * Discovery: from a PID to everything the read-only views and the injector
 * need — the module holding CPython's runtime (the executable or
 * libpython3.X.so), its load bias, the Python version, the address of
 * _PyRuntime, and validated struct offsets.  Nothing is stopped here.
 */
#ifndef MA_DISCOVER_H
#define MA_DISCOVER_H

#include <elfutils/libdwfl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "ma_offsets.h"
#include "procfs.h"
#include "pyoffsets.h"

struct ma_mem;

struct ma_target_opts {
	enum ma_offsets_pref offsets;
	int no_validate; /* developer: skip validation */
};

struct ma_target {
	pid_t pid;
	struct ma_status status;
	char exe[PATH_MAX]; /* /proc/PID/exe as the target sees it */
	char cmdline[1024];
	char pymod_path[PATH_MAX]; /* module with _PyRuntime, target's view */
	char pymod_local[PATH_MAX + 32]; /* the same, reachable from here */
	int pymod_is_exe;      /* libpython linked into the executable */
	char build_id[64];     /* of pymod, hex */
	int pie;	       /* executable is position independent */
	uint64_t pymod_bias;   /* load bias of pymod */
	uint64_t runtime_addr; /* _PyRuntime in the target */
	uint32_t version_hex;
	char version[32];
	const char *version_from; /* "Py_Version" or "PY_VERSION string" */
	struct ma_py_offsets off;
	char off_origin[PATH_MAX + 64]; /* DWARF file, or what else */
	char off_notes[1024]; /* why earlier sources were passed over */
	struct ma_maps maps;
	struct ma_mem *mem;
	Dwfl *dwfl;
	int dwfl_attached; /* dwfl_linux_proc_attach done (inject.c) */
	Dwfl_Module *pymod;
	uint64_t t_discover_ns; /* time spent in ma_target_open */
	int own_pidns;	   /* the target lives in our PID namespace: its thread
			  IDs are ours */
	uint64_t exec_sig; /* its auxv's AT_RANDOM: new at every exec; 0 */
};

/*
 * Everything above for pid.  Errors carry a message and an exit code
 * (ma_err_exit): no such process / zombie (MA_EXIT_NOPROC), not CPython or
 * an unsupported version (MA_EXIT_NOTPY), no usable offsets
 * (MA_EXIT_NODEBUG, naming the Debian package with the DWARF), permission
 * (MA_EXIT_PERM).  Two say the process may be a Python that is starting:
 * -EPROTONOSUPPORT (named python, no _PyRuntime found: too old, or its
 * libpython not mapped yet) and -ENODATA (no interpreter yet, or none left).
 */
int ma_target_open(pid_t pid, const struct ma_target_opts *opts,
		   struct ma_target **out);
void ma_target_close(struct ma_target *t);

/*
 * Whether the process exec'd a program since ma_target_open (its auxv's
 * AT_RANDOM moved: every exec gets new random bytes): an attach or census
 * that failed part way then failed because of it.  0 and no message
 * otherwise; 1 with a message (exit class MA_EXIT_NOPROC: the program
 * asked for is gone).
 */
int ma_target_execed(const struct ma_target *t);

/* The same at once, for a process frozen (no exec can start): 1 when its
 * AT_RANDOM is not the one ma_target_open read (or cannot be read any
 * more), with the same message; ma_target_ended's when it was killed */
int ma_target_execed_now(const struct ma_target *t);

/* Whether the process has ended (a zombie, or gone): 1 with a message
 * saying so (exit class MA_EXIT_NOPROC), else 0 and no message.  A
 * command that failed part way calls it after ma_target_execed: the
 * target killed while frozen, or during a remote call, made it fail with
 * ptrace's ESRCH as the cause */
int ma_target_ended(const struct ma_target *t);

/* Parse a PID argument: -EINVAL with a message when not a positive number */
int ma_parse_pid(const char *s, pid_t *out);

#endif
