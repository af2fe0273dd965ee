/* SPDX-License-Identifier: MIT */
/*
 * One consistent view of a process's threads: the process is frozen, every
 * Python thread state is read and matched with its kernel thread (by
 * native_thread_id on 3.11+, by pthread_self() == fs_base before), native
 * stacks are unwound if asked, and the process is resumed.
 */
#ifndef MA_THREADS_H
#define MA_THREADS_H

#include <stdint.h>
#include <sys/types.h>

#include "native.h"
#include "pyread.h"

struct ma_target;

struct ma_tview {
	pid_t tid;   /* 0: a thread state without a live kernel thread */
	pid_t nstid; /* the same thread's ID in the target's PID namespace
			(its gettid(), native_thread_id): differs from tid
			in a container */
	char comm[64];
	/* what to call it: its threading.Thread name (py->name) when there
	 * is one, else comm */
	const char *name;
	const struct ma_py_thread *py; /* NULL: no Python thread state */
	/* interpreter + 1 of the state listed first for the same kernel
	 * thread (tid): this one is the thread's state in another
	 * interpreter (a thread that runs a subinterpreter has one in
	 * each); 0: none */
	long other_interp;
	struct ma_native_stack nat;
	int has_nat;
};

struct ma_tsnap {
	struct ma_py_snapshot py;
	struct ma_tview *th;
	size_t n;
	uint64_t frozen_ns; /* first interrupt to last resume */
	int partial;	    /* some stack could not be read to its end */
};

/* Whether self, a pthread_self() value (glibc's struct pthread), is the
 * thread whose ID in the target's PID namespace is nstid: read from glibc's
 * struct, for a thread that is not stopped (hazard 11); see threads.c */
int ma_pthread_is(struct ma_mem *m, uint64_t self, pid_t nstid);
int ma_tsnap_take(struct ma_target *t, struct ma_pyreader *r, int native,
		  struct ma_tsnap *out);
void ma_tsnap_free(struct ma_tsnap *s);

#endif
