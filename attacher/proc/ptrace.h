/* SPDX-License-Identifier: MIT */
/*
 * Freezing a process: PTRACE_SEIZE + PTRACE_INTERRUPT on every thread of
 * /proc/PID/task (rescanned until no new thread appears), a waitpid(__WALL)
 * loop that keeps signals meant for the target and gives them back on
 * resume, and a resume that detaches every thread on every path.
 */
#ifndef MA_PTRACE_H
#define MA_PTRACE_H

#include <stdint.h>
#include <sys/types.h>

#include "clock.h" /* ma_now_ns, for ptrace.h's users */

struct ma_freeze;

/*
 * Stop every thread of pid.  On failure nothing stays attached, and the
 * message explains the cause (ptrace_scope, owner, another tracer).
 * timeout_ms bounds the wait for each round of stops: a thread in
 * uninterruptible sleep (D state) cannot stop until it wakes.
 */
int ma_freeze(pid_t pid, int timeout_ms, struct ma_freeze **out);

/*
 * The same, but a thread asleep in a write that has sent part of its data
 * (write, send, splice...) is neither seized nor stopped: a stop would make
 * that call return what it has written so far (hazard 11).  Its memory is
 * read while it sleeps; ma_freeze_spared_ran() then tells whether it woke
 * meanwhile (what was read of it may be torn: freeze again).  Its
 * registers are not available (ma_freeze_regs: -ESRCH).  A spared thread
 * runs on through whatever the freeze is for: for readers, and for the
 * remote calls of attach and of the detach's stop (inject.c says why they
 * allow it), never for a freeze that needs every thread still.
 */
int ma_freeze_spare(pid_t pid, int timeout_ms, struct ma_freeze **out);
/* 1 when a spared thread has run since it was spared */
int ma_freeze_spared_ran(const struct ma_freeze *f);
/* 1 when tid is one of the spared threads */
int ma_freeze_is_spared(const struct ma_freeze *f, pid_t tid);
/* A spared thread's stack and instruction pointers as it sleeps (from
 * /proc/PID/task/TID/syscall): what is known of it without registers.
 * 0, or -ESRCH (not spared, or no longer asleep in a call) */
int ma_freeze_spared_sp_pc(const struct ma_freeze *f, pid_t tid, uint64_t *sp,
			   uint64_t *pc);

/* Resume every thread (detach), delivering signals that arrived meanwhile.
 * Returns the freeze duration in ns (first interrupt to last detach) via
 * frozen_ns when not NULL.  Frees f. */
int ma_thaw(struct ma_freeze *f, uint64_t *frozen_ns);

/* fs_base of a stopped thread: glibc's pthread_self() there, which is what
 * CPython stores in PyThreadState.thread_id.  0 or -errno. */
int ma_freeze_fs_base(struct ma_freeze *f, pid_t tid, uint64_t *fs_base);

struct user_regs_struct;
/* The general registers of a stopped thread.  0 or -errno. */
int ma_freeze_regs(struct ma_freeze *f, pid_t tid,
		   struct user_regs_struct *regs);

/* Since the first interrupt of this freeze */
uint64_t ma_freeze_elapsed_ns(const struct ma_freeze *f);
/* Resume (detach) every thread but keep: a remote call on keep waits for
 * a lock one of them holds.  ma_thaw() then detaches keep alone. */
void ma_freeze_resume_others(struct ma_freeze *f, pid_t keep);

/* The signal a stopped thread was about to take when it stopped (0: none),
 * handed over to the caller, who must deliver it: a remote call passes it
 * on its first resume, so that no signal of that thread waits in memattach
 * while the call runs (killed then, memattach would lose it) */
int ma_freeze_take_signal(struct ma_freeze *f, pid_t tid);

/* Forget a thread that exited while we held it */
void ma_freeze_forget(struct ma_freeze *f, pid_t tid);

/* The stopped threads and the spared ones (sorted) */
size_t ma_freeze_threads(const struct ma_freeze *f, const pid_t **tids);

/*
 * Explain an EPERM from ptrace/process_vm_readv on pid: another tracer,
 * Yama's ptrace_scope, a different owner without CAP_SYS_PTRACE.  Writes a
 * parenthesised hint into buf ("" when nothing specific is known).
 */
void ma_ptrace_explain_eperm(pid_t pid, char *buf, size_t len);

/*
 * SIGKILL a process we trace (the heap census's copy).  kill(2) needs the
 * same user or CAP_KILL: memattach running as another user with
 * CAP_SYS_PTRACE alone is refused, and waiting for the copy would then hang;
 * PTRACE_KILL is the tracer's own, with no permission check.
 */
void ma_kill_tracee(pid_t pid);

#endif
