/* SPDX-License-Identifier: MIT */
/*
 * Remote calls: make a stopped thread of the target call a function, such
 * that the thread restores ITSELF when the function returns.
 *
 * The function's return address is libc's rt_sigreturn trampoline
 * (__restore_rt: `mov $15,%rax; syscall`), and above it on the thread's stack
 * lies a signal frame holding the thread's saved registers, extended FPU
 * state and signal mask, with an interrupted system call already rewound
 * the way the kernel would restart it.  So whatever happens to memattach —
 * SIGKILL at any instant — the thread finishes the call and continues
 * exactly where it was (hazard 5, docs/architecture.md; CRIU's compel returns through a
 * sigreturn frame for the same reason).  While memattach lives, it follows
 * the call with PTRACE_SYSCALL stops until the rt_sigreturn has run.
 */
#ifndef MA_RCALL_H
#define MA_RCALL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ma_freeze;

struct ma_rcall {
	const char *name; /* for messages and test steps: "dlopen" */
	uint64_t fn;	  /* address of the function in the target */
	uint64_t args[6]; /* integer arguments (rdi, rsi, rdx, rcx, r8, r9) */
	/* Bytes copied onto the target's stack for the call; their address
	 * replaces any argument equal to MA_RCALL_DATA (+ offset below 4096) */
	const void *data;
	size_t data_len;
	/* If want is set: report the return value of the last system call
	 * numbered want_syscall made during the call (e.g. memfd_create
	 * through libc's syscall()), since rax itself is restored by the
	 * sigreturn.  A flag, because read is system call 0. */
	int want;
	long want_syscall;
	int timeout_ms; /* with the other threads stopped; then they are
			   resumed (a lock holder among them) and as long again */
	/* ptrace options besides PTRACE_O_TRACESYSGOOD for the call, e.g.
	 * PTRACE_O_TRACECLONE: a process the call clones then starts
	 * stopped and traced by us (ma_rcall_result.child) */
	unsigned int options;
};

#define MA_RCALL_DATA 0xda7a000000000000ull

struct ma_rcall_result {
	long syscall_ret;   /* return of want_syscall, or -ENOENT if not seen */
	int others_resumed; /* the other threads had to be resumed */
	uint64_t ns;	    /* duration */
	pid_t child;	    /* a clone traced through options, else 0 */
	/* the last system call of the call that failed, and its -errno (0:
	 * none failed): why a call that reports no error of its own failed
	 * (dlopen's missing descriptor or address space) */
	long failed_nr, failed_ret;
};

/* Where the payload of a call returns: found once per target */
struct ma_rcall_env {
	uint64_t restore_rt; /* address of `mov $15,%rax; syscall` */
};

/* Find libc's rt_sigreturn trampoline in the target (by its bytes in
 * libc's executable segment). */
int ma_rcall_env_init(pid_t pid, struct ma_rcall_env *env);

/*
 * Run c on thread tid, which f keeps stopped.  Returns 0 when the call ran
 * and the thread is back in its original state (stopped again), or
 * -errno with a message.  On -ETIMEDOUT the call is still running and will
 * restore the thread by itself; the caller should thaw and give up.
 */
int ma_rcall(struct ma_freeze *f, pid_t tid, const struct ma_rcall_env *env,
	     const struct ma_rcall *c, struct ma_rcall_result *res);

#endif
