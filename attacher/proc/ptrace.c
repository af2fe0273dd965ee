/* SPDX-License-Identifier: MIT */
#include "ptrace.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "procfs.h"
#include "teststep.h"

/* TH_SPARED: asleep in a write that a stop would cut short, left running
 * and never seized (ma_freeze_spare) */
enum th_state { TH_SEIZED, TH_STOPPED, TH_GONE, TH_SPARED };

struct ma_thread {
	pid_t tid;
	enum th_state state;
	int pending_sig; /* a signal caught while stopping: give it back */
	/* TH_SPARED: its context switches and a hash of its /proc syscall
	 * line when it was spared */
	uint64_t csw, sysc;
};

struct ma_freeze {
	pid_t pid;
	int spare; /* spare the threads asleep in a write */
	size_t n, cap;
	struct ma_thread *th;
	pid_t *tids; /* stopped ones, for ma_freeze_threads */
	uint64_t t_start;
	sigset_t oldmask;
	/* the calling thread's priority before the freeze, and what was
	 * raised (priority_up) */
	int nice0, policy0, nice_raised, policy_raised;
	struct sched_param param0;
};

/*
 * While it holds the target frozen, memattach's thread runs at the
 * default priority at least.  Run at nice 19 or SCHED_IDLE, so as not to
 * disturb a production host (a sensible thing to do), on a busy CPU, it
 * took 128-1717 ms to stop and resume the target's threads, which waited
 * all that time (priority inversion; unstarved: 2-4 ms).  Raised only as
 * far as the default (nice 0, SCHED_OTHER), which an unprivileged process
 * may do within its RLIMIT_NICE, and put back at the thaw.  Linux keeps
 * both per thread: the calling thread's are changed.
 */
static void priority_up(struct ma_freeze *f)
{
	int nice;

	errno = 0;
	nice = getpriority(PRIO_PROCESS, 0);
	if (errno)
		return;
	f->nice0 = nice;
	f->policy0 = sched_getscheduler(0);
	if (sched_getparam(0, &f->param0))
		f->policy0 = -1;
	if (f->policy0 == SCHED_IDLE || f->policy0 == SCHED_BATCH) {
		struct sched_param p = { .sched_priority = 0 };

		f->policy_raised = !sched_setscheduler(0, SCHED_OTHER, &p);
	}
	if (nice > 0)
		f->nice_raised = !setpriority(PRIO_PROCESS, 0, 0);
}

static void priority_back(struct ma_freeze *f)
{
	if (f->nice_raised)
		setpriority(PRIO_PROCESS, 0, f->nice0);
	if (f->policy_raised)
		sched_setscheduler(0, f->policy0, &f->param0);
	f->nice_raised = f->policy_raised = 0;
}

static int read_int_file(const char *path, int *out)
{
	char *text;
	int err = ma_proc_slurp(path, &text, NULL);

	if (err)
		return err;
	*out = atoi(text);
	free(text);
	return 0;
}

void ma_ptrace_explain_eperm(pid_t pid, char *buf, size_t len)
{
	struct ma_status st;
	int scope = -1;

	buf[0] = '\0';
	if (ma_status_read(pid, &st) == 0 && st.tracer &&
	    st.tracer != getpid()) {
		char comm[64] = "?";

		ma_proc_comm(st.tracer, st.tracer, comm, sizeof(comm));
		snprintf(buf, len,
			 " (process %d is already traced by %d (%s): a process "
			 "can have one tracer only; stop or detach %s first)",
			 (int)pid, (int)st.tracer, comm, comm);
		return;
	}
	if (read_int_file("/proc/sys/kernel/yama/ptrace_scope", &scope) == 0 &&
	    scope > 0) {
		static const char *const what[] = {
			"",
			"only a parent may trace its children: run memattach "
			"as "
			"root or with CAP_SYS_PTRACE (sudo setcap "
			"cap_sys_ptrace+ep $(which memattach)), or set it to 0 "
			"with 'sysctl kernel.yama.ptrace_scope=0'",
			"only processes with CAP_SYS_PTRACE may trace: run "
			"memattach as root",
			"no process may trace: reboot with a lower value",
		};

		snprintf(buf, len, " (kernel.yama.ptrace_scope is %d: %s)",
			 scope, what[scope > 3 ? 3 : scope]);
		return;
	}
	if (ma_status_read(pid, &st) == 0 && st.uid != geteuid()) {
		/* scope < 0: no Yama, the classic rule (same user, or
		 * CAP_SYS_PTRACE) applies */
		snprintf(buf, len,
			 " (process %d belongs to uid %u and memattach runs as "
			 "uid %u without CAP_SYS_PTRACE: run it as that user, "
			 "as root, or with CAP_SYS_PTRACE, e.g. 'setpriv "
			 "--inh-caps=+sys_ptrace --ambient-caps=+sys_ptrace'; "
			 "%s)",
			 (int)pid, (unsigned)st.uid, (unsigned)geteuid(),
			 scope < 0 ? "this kernel has no Yama "
				     "kernel.yama.ptrace_scope, so the same "
				     "user may trace"
				   : "kernel.yama.ptrace_scope is 0: the same "
				     "user may trace");
		return;
	}
	snprintf(buf, len,
		 " (the process may be setuid or not dumpable, or a "
		 "security module such as SELinux/AppArmor forbids "
		 "ptrace; root with CAP_SYS_PTRACE is needed)");
}

/* /proc/PID/task/TID/what, whole */
static int task_read(pid_t pid, pid_t tid, const char *what, char **text)
{
	char path[96];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/%s", (int)pid, (int)tid,
		 what);
	return ma_proc_slurp(path, text, NULL);
}

/*
 * Hazard 11 (docs/architecture.md): a thread asleep in write() on a full
 * pipe or socket, part of its data already through, returns that part as
 * soon as anything stops it (PTRACE_INTERRUPT wakes it like a signal), and
 * the program sees a short write it never saw untracked.  These system
 * calls are the ones that return their progress when interrupted.
 */
static int writes_partially(long nr)
{
	switch (nr) {
	case SYS_write:
	case SYS_writev:
	case SYS_pwrite64:
	case SYS_pwritev:
	case SYS_pwritev2:
	case SYS_sendto:
	case SYS_sendmsg:
	case SYS_sendmmsg:
	case SYS_sendfile:
	case SYS_splice:
	case SYS_tee:
	case SYS_vmsplice:
	case SYS_copy_file_range:
		return 1;
	default:
		return 0;
	}
}

/* A thread's voluntary + involuntary context switches: it ran since the
 * last reading if they moved, or if it is not asleep (state S) now */
static int task_csw(pid_t pid, pid_t tid, uint64_t *csw)
{
	char *text, *p;
	uint64_t n = 0;
	int found = 0;

	if (task_read(pid, tid, "status", &text))
		return -1;
	for (p = text; (p = strstr(p, "ctxt_switches:")); p++) {
		n += strtoull(p + 14, NULL, 10);
		found++;
	}
	free(text);
	*csw = n;
	return found == 2 ? 0 : -1;
}

static int task_state(pid_t pid, pid_t tid)
{
	char *text;
	int st;

	if (task_read(pid, tid, "stat", &text))
		return -1;
	const char *p = strrchr(text, ')');

	st = p && p[1] == ' ' ? p[2] : -1;
	free(text);
	return st;
}

/* A thread that is gone, or dying (state Z or X), in /proc */
static int thread_exiting(pid_t pid, pid_t tid)
{
	int st = task_state(pid, tid);

	return st < 0 || st == 'Z' || st == 'X';
}

/* The system call a sleeping thread is in, and a hash of the whole line
 * (number, arguments, stack and instruction pointers); -1: running */
static long task_syscall(pid_t pid, pid_t tid, uint64_t *hash)
{
	char *text;
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	long nr;

	if (task_read(pid, tid, "syscall", &text))
		return -1;
	nr = (text[0] >= '0' && text[0] <= '9') ? strtol(text, NULL, 10) : -1;
	for (const char *c = text; *c; c++)
		h = (h ^ (uint8_t)*c) * 1099511628211ull;
	free(text);
	*hash = h;
	return nr;
}

/*
 * The system call a thread sleeps in (state S), with its fingerprint: its
 * context switches and the hash of its syscall line.  Read switches,
 * syscall, state, switches: a thread that woke at any point in between
 * shows as running, as switched, or in another call.  -1: not asleep, or
 * it moved while we looked.
 */
static long asleep_in(pid_t pid, pid_t tid, uint64_t *csw, uint64_t *hash)
{
	uint64_t again;
	long nr;
	int state;

	if (task_csw(pid, tid, csw))
		return -1;
	nr = task_syscall(pid, tid, hash);
	state = task_state(pid, tid);
	if (nr < 0 || (state != 'S' && state != 'D') ||
	    task_csw(pid, tid, &again) || again != *csw)
		return -1;
	return nr;
}

/*
 * Asleep in a system call in uninterruptible sleep (state D: a disk, NFS
 * or device wait, the parent of a vfork until its child execs): it cannot
 * stop before the call ends, which may be never (a hung NFS server), and a
 * freeze would time out.  For a reader it is spared like a writer: in the
 * kernel it changes none of its user memory, and whether it woke while it
 * was read is told the same way (ma_freeze_spared_ran).
 */
static int in_d_call(pid_t pid, pid_t tid, uint64_t *csw, uint64_t *hash)
{
	return task_state(pid, tid) == 'D' &&
	       asleep_in(pid, tid, csw, hash) >= 0;
}

static struct ma_thread *find_thread(struct ma_freeze *f, pid_t tid)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->th[i].tid == tid)
			return &f->th[i];
	return NULL;
}

static int add_thread(struct ma_freeze *f, pid_t tid)
{
	if (f->n == f->cap) {
		size_t ncap = f->cap ? f->cap * 2 : 16;
		struct ma_thread *nt = realloc(f->th, ncap * sizeof(*nt));

		if (!nt)
			return -ENOMEM;
		f->th = nt;
		f->cap = ncap;
	}
	f->th[f->n++] = (struct ma_thread){ .tid = tid, .state = TH_SEIZED };
	return 0;
}

/* Record one waitpid() result: a stop of ours, a signal for the target, or
 * a thread that exited meanwhile. */
static void handle_status(struct ma_freeze *f, pid_t tid, int status)
{
	struct ma_thread *t = find_thread(f, tid);

	if (!t)
		return;
	if (WIFEXITED(status) || WIFSIGNALED(status)) {
		t->state = TH_GONE;
		return;
	}
	if (!WIFSTOPPED(status))
		return;
	int event = status >> 16;
	int sig = WSTOPSIG(status);

	if (event == PTRACE_EVENT_STOP) {
		/* Our interrupt (sig SIGTRAP) or a group-stop (SIGSTOP..):
		 * either way the thread is stopped and owes nothing. */
		t->state = TH_STOPPED;
	} else if (event == 0) {
		/* Signal-delivery-stop: a signal meant for the target got
		 * here first.  Keep it, and deliver it on detach; the thread
		 * is stopped now, which is all we need. */
		if (sig != SIGTRAP || !t->pending_sig)
			t->pending_sig = sig;
		t->state = TH_STOPPED;
	} else {
		t->state = TH_STOPPED;
	}
}

static void detach_all(struct ma_freeze *f)
{
	for (size_t i = 0; i < f->n; i++) {
		struct ma_thread *t = &f->th[i];

		if (t->state == TH_GONE || t->state == TH_SPARED)
			continue;
		if (t->state == TH_SEIZED) {
			/* Not stopped yet: PTRACE_DETACH needs a stopped
			 * tracee, so interrupt and wait for it first. */
			int st;

			/* Bounded: a thread in D state may never stop; the
			 * kernel detaches it when memattach exits. */
			for (int k = 0; k < 100 && t->state == TH_SEIZED; k++) {
				if (waitpid(t->tid, &st, __WALL | WNOHANG) ==
				    t->tid)
					handle_status(f, t->tid, st);
				else
					usleep(1000);
			}
			if (t->state != TH_STOPPED)
				continue;
		}
		ptrace(PTRACE_DETACH, t->tid, NULL,
		       (void *)(uintptr_t)t->pending_sig);
		ma_step("thaw.detached");
	}
}

/* Wait until every seized thread is stopped or gone, at most timeout_ms */
/*
 * Whether a thread not stopped yet is in uninterruptible sleep (state D):
 * it stops only when that ends, which may be never.  A thread runnable or
 * in an ordinary sleep stops as soon as the kernel runs it; on a loaded
 * host (hundreds of threads, the cores busy) that can take more than the
 * timeout.  -1 when none is in D, else the first such thread's ID.
 */
static pid_t thread_in_d(const struct ma_freeze *f)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->th[i].state == TH_SEIZED &&
		    task_state(f->pid, f->th[i].tid) == 'D')
			return f->th[i].tid;
	return -1;
}

/*
 * Wait until every seized thread has stopped: for timeout_ms, and past it,
 * up to four times more, while no thread left is in uninterruptible sleep
 * (a slow host, not a stuck thread).
 */
static int wait_stopped(struct ma_freeze *f, int timeout_ms)
{
	uint64_t now0 = ma_now_ns();
	uint64_t deadline = now0 + (uint64_t)timeout_ms * 1000000ull;
	uint64_t hard = now0 + 5ull * (uint64_t)timeout_ms * 1000000ull;
	sigset_t chld;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	for (;;) {
		int status, left = 0;
		pid_t tid;

		while ((tid = waitpid(-1, &status, __WALL | WNOHANG)) > 0)
			handle_status(f, tid, status);
		for (size_t i = 0; i < f->n; i++)
			left += f->th[i].state == TH_SEIZED;
		if (!left)
			return 0;
		uint64_t now = ma_now_ns();

		if (now >= deadline && now < hard && thread_in_d(f) < 0)
			deadline = now + 10000000ull; /* a look every 10 ms */
		if (now >= deadline)
			return -ETIMEDOUT;
		/* SIGCHLD is blocked: sleep until the next tracee event (or
		 * 1 ms, in case the notification was coalesced). */
		uint64_t wait_ns = deadline - now;
		struct timespec ts = { .tv_sec = 0,
				       .tv_nsec = wait_ns > 1000000
							  ? 1000000
							  : (long)wait_ns };

		sigtimedwait(&chld, NULL, &ts);
	}
}

/* Another memattach has thread tid of process pid under ptrace: which
 * one, or 0.  The thread's own status: a freeze of another memattach
 * lets the threads go one by one, the main thread maybe first */
static pid_t memattach_tracer(pid_t pid, pid_t tid)
{
	struct ma_status st;
	char path[64], comm[64] = "", *text;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid,
		 (int)tid);
	if (ma_proc_slurp(path, &text, NULL))
		return 0;
	err = ma_status_parse(text, &st);
	free(text);
	if (err || st.tracer <= 0 || st.tracer == getpid() ||
	    ma_proc_comm(st.tracer, st.tracer, comm, sizeof(comm)))
		return 0;
	return strcmp(comm, "memattach") ? 0 : st.tracer;
}

/*
 * Whether the process has threads we do not hold: more than we hold
 * stopped, spared or about to stop.  A listing of /proc/PID/task stops at
 * a thread released while it is listed, before it is shown; the threads
 * after it are missing and nothing in the listing says so.  A scan that
 * found nothing new while a thread ended was taken as the whole, and the
 * thread left out ran on through the freeze (1 in 300 stack reads of a
 * server starting a thread per request listed a thread state without its
 * thread; 1-3 % of freezes of a chain of threads each starting the next).
 * The kernel's count of the process's threads has each of them until it
 * is released, as the listing does.
 */
static int unheld_threads(const struct ma_freeze *f)
{
	struct ma_status st;
	int held = 0;

	if (ma_status_read(f->pid, &st))
		return 0;
	for (size_t i = 0; i < f->n; i++)
		held += f->th[i].state != TH_GONE;
	return st.threads > held;
}

/* *busy: the seize failed while another memattach traced the process */
static int freeze_once(pid_t pid, int timeout_ms, int spare,
		       struct ma_freeze **out, pid_t *busy)
{
	struct ma_freeze *f = calloc(1, sizeof(*f));
	sigset_t chld;
	int err = 0;

	if (!f)
		return -ENOMEM;
	f->pid = pid;
	f->spare = spare;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	/* A Ctrl-Z (or a background read or write of the terminal) waits
	 * for the thaw: memattach stopped while the target is frozen keeps
	 * it frozen until resumed, and a slow attach on a starved host is
	 * just when the user presses Ctrl-Z.  SIGSTOP cannot wait. */
	sigaddset(&chld, SIGTSTP);
	sigaddset(&chld, SIGTTIN);
	sigaddset(&chld, SIGTTOU);
	sigprocmask(SIG_BLOCK, &chld, &f->oldmask);
	priority_up(f);
	f->t_start = ma_now_ns();

	/* Rescan the task list until a scan finds nothing new: a thread
	 * created while we were stopping the others shows up in the next
	 * scan, and once all are stopped none can be created. */
	for (int round = 0, recount = 0; round < 100; round++) {
		pid_t *tids;
		size_t n, added = 0;

		err = ma_tasks_read(pid, &tids, &n);
		if (err) {
			ma_err(err, "freeze %d: reading /proc/%d/task: %s",
			       (int)pid, (int)pid, strerror(-err));
			goto fail;
		}
		for (size_t i = 0; i < n; i++) {
			uint64_t csw, sysc;

			if (find_thread(f, tids[i]))
				continue;
			/* asleep in a call that returns its progress: spared.
			 * Its call first, one read: the fingerprint's four
			 * only for a writer, so that the others' stops are not
			 * delayed (attach's freeze with 15 threads: measured) */
			if (f->spare &&
			    ((writes_partially(
				      task_syscall(pid, tids[i], &sysc)) &&
			      writes_partially(
				      asleep_in(pid, tids[i], &csw, &sysc))) ||
			     in_d_call(pid, tids[i], &csw, &sysc))) {
				err = add_thread(f, tids[i]);
				if (err) {
					free(tids);
					goto fail;
				}
				f->th[f->n - 1].state = TH_SPARED;
				f->th[f->n - 1].csw = csw;
				f->th[f->n - 1].sysc = sysc;
				ma_step("freeze.spared");
				continue;
			}
			if (ptrace(PTRACE_SEIZE, tids[i], NULL, NULL) < 0) {
				int e = errno;
				char hint[512];
				pid_t bad = tids[i];

				/* A thread that just exited (ESRCH), or is
				 * exiting right now (the kernel refuses to
				 * attach to it with EPERM) */
				if (bad != pid &&
				    (e == ESRCH ||
				     (e == EPERM && thread_exiting(pid, bad))))
					continue;
				free(tids);
				/* looked at now: that one may be gone by the
				 * time freeze() decides to wait for it */
				if (e == EPERM)
					*busy = memattach_tracer(pid, bad);
				if (e == EPERM)
					ma_ptrace_explain_eperm(pid, hint,
								sizeof(hint));
				else
					hint[0] = '\0';
				err = ma_err(
					-e,
					"attach: ptrace(PTRACE_SEIZE, %d): "
					"%s%s",
					(int)bad, strerror(e), hint);
				ma_err_set_exit(e == EPERM   ? MA_EXIT_PERM
						: e == ESRCH ? MA_EXIT_NOPROC
							     : MA_EXIT_ERROR);
				goto fail;
			}
			err = add_thread(f, tids[i]);
			if (err) {
				free(tids);
				goto fail;
			}
			if (ptrace(PTRACE_INTERRUPT, tids[i], NULL, NULL) < 0 &&
			    errno == ESRCH)
				f->th[f->n - 1].state = TH_GONE;
			added++;
			ma_step("freeze.seized");
		}
		free(tids);
		if (!added && recount < 400 && unheld_threads(f)) {
			/* a thread missed (see unheld_threads()), or one
			 * ending: look again, a moment later after the first
			 * few, for 40 ms at most */
			if (++recount > 10)
				usleep(100);
			round--;
			continue;
		}
		if (!added)
			break;
		err = wait_stopped(f, timeout_ms);
		if (err) {
			pid_t d = thread_in_d(f);
			char cg[256];

			/* the cgroup freezer holds it: no disk is to blame,
			 * and the wait ends only with a thaw */
			if (ma_proc_cgroup_frozen(pid, cg, sizeof(cg)))
				ma_err(err,
				       "freeze %d: its threads did not stop "
				       "within %d ms: its cgroup %s is frozen "
				       "(the cgroup freezer: docker pause, "
				       "systemctl freeze, a job scheduler); "
				       "thaw it first",
				       (int)pid, timeout_ms, cg);
			else if (d > 0)
				ma_err(err,
				       "freeze %d: thread %d did not stop "
				       "within "
				       "%d ms: it is in uninterruptible sleep "
				       "(state D: a disk, NFS or device wait), "
				       "and "
				       "stops only when that ends",
				       (int)pid, (int)d, timeout_ms);
			else
				ma_err(err,
				       "freeze %d: some threads did not stop "
				       "within %d ms",
				       (int)pid, 5 * timeout_ms);
			goto fail;
		}
		ma_step("freeze.stopped");
	}
	if (!find_thread(f, pid) || find_thread(f, pid)->state == TH_GONE) {
		err = ma_err(-ESRCH, "freeze %d: the process exited", (int)pid);
		ma_err_set_exit(MA_EXIT_NOPROC);
		goto fail;
	}
	f->tids = malloc((f->n ? f->n : 1) * sizeof(pid_t));
	if (!f->tids) {
		err = -ENOMEM;
		goto fail;
	}
	*out = f;
	return 0;
fail:
	detach_all(f);
	priority_back(f);
	sigprocmask(SIG_SETMASK, &f->oldmask, NULL);
	free(f->th);
	free(f->tids);
	free(f);
	return err;
}

static int freeze(pid_t pid, int timeout_ms, int spare, struct ma_freeze **out)
{
	/* Another memattach's freeze (a `heap` or `stacks` beside an
	 * attach, one process can have one tracer) lasts milliseconds:
	 * wait for it, 2 s at most, rather than fail.  The exit code a
	 * refused try set is not the caller's once a later try freezes */
	int code = ma_err_exit();

	for (int i = 0;; i++) {
		pid_t busy = 0;
		int err;

		ma_err_set_exit(code);
		err = freeze_once(pid, timeout_ms, spare, out, &busy);

		/* no memattach seen on the refused thread: it may have let
		 * that thread go between the refusal and the look, so a few
		 * quick tries before a refusal is taken as one */
		if (err != -EPERM || i >= (busy ? 400 : 10))
			return err;
		usleep(5000);
	}
}

int ma_freeze(pid_t pid, int timeout_ms, struct ma_freeze **out)
{
	return freeze(pid, timeout_ms, 0, out);
}

int ma_freeze_spare(pid_t pid, int timeout_ms, struct ma_freeze **out)
{
	return freeze(pid, timeout_ms, 1, out);
}

int ma_freeze_is_spared(const struct ma_freeze *f, pid_t tid)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->th[i].tid == tid)
			return f->th[i].state == TH_SPARED;
	return 0;
}

int ma_freeze_spared_ran(const struct ma_freeze *f)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct ma_thread *t = &f->th[i];
		uint64_t csw, h;

		if (t->state != TH_SPARED)
			continue;
		if (asleep_in(f->pid, t->tid, &csw, &h) < 0 || csw != t->csw ||
		    h != t->sysc)
			return 1;
	}
	return 0;
}

int ma_freeze_spared_sp_pc(const struct ma_freeze *f, pid_t tid, uint64_t *sp,
			   uint64_t *pc)
{
	unsigned long long v[9];
	char *text;
	int n;

	if (!ma_freeze_is_spared(f, tid))
		return -ESRCH;
	if (task_read(f->pid, tid, "syscall", &text))
		return -ESRCH;
	/* "NR ARG1 ... ARG6 SP PC" while it sleeps in a call */
	n = sscanf(text, "%llu %llx %llx %llx %llx %llx %llx %llx %llx", &v[0],
		   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]);
	free(text);
	if (n != 9)
		return -ESRCH;
	*sp = v[7];
	*pc = v[8];
	return 0;
}

int ma_freeze_regs(struct ma_freeze *f, pid_t tid,
		   struct user_regs_struct *regs)
{
	struct ma_thread *t = find_thread(f, tid);

	if (!t || t->state != TH_STOPPED)
		return -ESRCH;
	if (ptrace(PTRACE_GETREGS, tid, NULL, regs) < 0)
		return -errno;
	return 0;
}

int ma_freeze_fs_base(struct ma_freeze *f, pid_t tid, uint64_t *fs_base)
{
	struct user_regs_struct regs;
	int err = ma_freeze_regs(f, tid, &regs);

	if (!err)
		*fs_base = regs.fs_base;
	return err;
}

uint64_t ma_freeze_elapsed_ns(const struct ma_freeze *f)
{
	return ma_now_ns() - f->t_start;
}

void ma_freeze_resume_others(struct ma_freeze *f, pid_t keep)
{
	for (size_t i = 0; i < f->n; i++) {
		struct ma_thread *t = &f->th[i];

		if (t->tid == keep || t->state != TH_STOPPED)
			continue;
		ptrace(PTRACE_DETACH, t->tid, NULL,
		       (void *)(uintptr_t)t->pending_sig);
		t->state = TH_GONE;
		ma_step("freeze.resumed-other");
	}
}

int ma_freeze_take_signal(struct ma_freeze *f, pid_t tid)
{
	struct ma_thread *t = find_thread(f, tid);
	int sig = t ? t->pending_sig : 0;

	if (t)
		t->pending_sig = 0;
	return sig;
}

void ma_freeze_forget(struct ma_freeze *f, pid_t tid)
{
	struct ma_thread *t = find_thread(f, tid);

	if (t)
		t->state = TH_GONE;
}

size_t ma_freeze_threads(const struct ma_freeze *f, const pid_t **tids)
{
	size_t k = 0;

	for (size_t i = 0; i < f->n; i++)
		if (f->th[i].state == TH_STOPPED || f->th[i].state == TH_SPARED)
			f->tids[k++] = f->th[i].tid;
	*tids = f->tids;
	return k;
}

int ma_thaw(struct ma_freeze *f, uint64_t *frozen_ns)
{
	detach_all(f);
	if (frozen_ns)
		*frozen_ns = ma_now_ns() - f->t_start;
	/* Drain stale SIGCHLDs caused by the stops before unblocking */
	{
		sigset_t chld;
		struct timespec zero = { 0, 0 };

		sigemptyset(&chld);
		sigaddset(&chld, SIGCHLD);
		while (sigtimedwait(&chld, NULL, &zero) > 0)
			;
	}
	priority_back(f);
	sigprocmask(SIG_SETMASK, &f->oldmask, NULL);
	free(f->th);
	free(f->tids);
	free(f);
	return 0;
}

void ma_kill_tracee(pid_t pid)
{
	if (kill(pid, SIGKILL) < 0 && errno == EPERM)
		ptrace(PTRACE_KILL, pid, NULL, NULL);
}
