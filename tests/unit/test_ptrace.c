/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errors.h"
#include "procfs.h"
#include "ptrace.h"

static volatile sig_atomic_t usr1_count;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_count++;
}

static void *spin_thread(void *arg)
{
	volatile unsigned long x = 0;

	for (;;)
		x++;
	return arg;
}

static void *sleep_thread(void *arg)
{
	for (;;)
		pause();
	return arg;
}

/* A child with 3 spinning and 3 sleeping threads; on each byte it reads it
 * writes back its SIGUSR1 count. */
static pid_t spawn_child(int *to, int *from)
{
	int a[2], b[2];
	pid_t pid;

	cr_assert_eq(pipe(a), 0);
	cr_assert_eq(pipe(b), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		pthread_t t;
		char c;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGUSR1, on_usr1);
		for (int i = 0; i < 3; i++) {
			pthread_create(&t, NULL, spin_thread, NULL);
			pthread_create(&t, NULL, sleep_thread, NULL);
		}
		write(b[1], "r", 1);
		while (read(a[0], &c, 1) == 1) {
			int n = usr1_count;

			write(b[1], &n, sizeof(n));
		}
		_exit(0);
	}
	close(a[0]);
	close(b[1]);
	*to = a[1];
	*from = b[0];
	char c;

	cr_assert_eq(read(*from, &c, 1), 1);
	return pid;
}

static int count_state(pid_t pid, char state)
{
	pid_t *tids;
	size_t n;
	int k = 0;

	cr_assert_eq(ma_tasks_read(pid, &tids, &n), 0);
	for (size_t i = 0; i < n; i++) {
		char path[96], *text;

		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid,
			 tids[i]);
		if (ma_proc_slurp(path, &text, NULL))
			continue;
		char *p = strrchr(text, ')');

		if (p && p[2] == state)
			k++;
		free(text);
	}
	free(tids);
	return k;
}

Test(ptrace, freeze_stops_every_thread_and_thaw_resumes)
{
	int to, from;
	pid_t pid = spawn_child(&to, &from);
	struct ma_freeze *f;
	const pid_t *tids;
	uint64_t ns;

	cr_assert_eq(ma_freeze(pid, 2000, &f), 0, "%s", ma_errmsg());
	cr_expect_eq(ma_freeze_threads(f, &tids), 7);
	cr_expect_eq(count_state(pid, 't'), 7, "all 7 threads traced-stopped");
	cr_assert_eq(ma_thaw(f, &ns), 0);
	cr_expect_gt(ns, 0);
	usleep(100000);
	cr_expect_eq(count_state(pid, 't'), 0, "none stopped after thaw");
	cr_expect_geq(count_state(pid, 'R'), 1, "spinners run again");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

#define NFREEZE 1000
#define NCHAIN	2

/* One link of a chain of threads: each starts the next one and ends */
static void *chain_link(void *arg)
{
	pthread_attr_t a;
	pthread_t t;

	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	while (pthread_create(&t, &a, chain_link, NULL))
		usleep(100);
	pthread_attr_destroy(&a);
	return arg;
}

/*
 * The listing of a process's threads stops at one released as it is
 * listed, the threads after it missing: a freeze that took such a listing
 * for the whole left those threads running.  In a chain of threads each
 * starting the next and ending, the thread after one ending is one just
 * started.  Every freeze must hold every thread still there: the kernel's
 * count of them is the count of those we hold.
 */
Test(ptrace, freeze_holds_every_thread_while_threads_end)
{
	pid_t pid = fork();
	int short_by = 0, worst = 0;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		pthread_t t;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (int i = 0; i < NCHAIN; i++)
			pthread_create(&t, NULL, chain_link, NULL);
		for (;;)
			pause();
	}
	usleep(20000);
	for (int i = 0; i < NFREEZE; i++) {
		struct ma_freeze *f;
		struct ma_status st;
		const pid_t *tids;

		cr_assert_eq(ma_freeze(pid, 2000, &f), 0, "%s", ma_errmsg());
		int held = (int)ma_freeze_threads(f, &tids);

		cr_assert_eq(ma_status_read(pid, &st), 0);
		ma_thaw(f, NULL);
		if (st.threads != held) {
			short_by++;
			if (st.threads - held > worst)
				worst = st.threads - held;
		}
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_expect_eq(short_by, 0,
		     "%d of %d freezes held fewer threads than the process "
		     "had (by %d at worst)",
		     short_by, NFREEZE, worst);
}

/* A signal sent while the target is frozen is delivered after the thaw,
 * exactly once (hazard 3, docs/architecture.md). */
Test(ptrace, signals_during_freeze_are_delivered)
{
	int to, from, n = -1;
	pid_t pid = spawn_child(&to, &from);
	struct ma_freeze *f;

	for (int round = 0; round < 20; round++) {
		cr_assert_eq(ma_freeze(pid, 2000, &f), 0, "%s", ma_errmsg());
		kill(pid, SIGUSR1);
		usleep(2000);
		cr_assert_eq(ma_thaw(f, NULL), 0);
		/* Let the handler run before the next one: standard signals
		 * pending twice coalesce, by design, and would not count */
		usleep(20000);
	}
	usleep(100000);
	cr_assert_eq(write(to, "?", 1), 1);
	cr_assert_eq(read(from, &n, sizeof(n)), sizeof(n));
	cr_expect_eq(n, 20, "20 SIGUSR1 sent while frozen, %d handled", n);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

Test(ptrace, freeze_of_missing_process_fails_cleanly)
{
	struct ma_freeze *f;

	ma_err_clear();
	cr_expect_eq(ma_freeze(4194305, 100, &f), -ESRCH);
	cr_expect_eq(ma_err_exit(), MA_EXIT_ERROR);
	cr_expect_neq(strstr(ma_errmsg(), "4194305"), NULL);
}

/* Two tracers cannot coexist: the second is told who holds the process */
Test(ptrace, second_tracer_is_explained)
{
	int to, from;
	pid_t pid = spawn_child(&to, &from);
	struct ma_freeze *f, *g;
	pid_t helper;
	int pfd[2];

	cr_assert_eq(ma_freeze(pid, 2000, &f), 0, "%s", ma_errmsg());
	/* A second process (we cannot be a second tracer of our own tracee
	 * from the same process: the kernel says EPERM either way) */
	cr_assert_eq(pipe(pfd), 0);
	helper = fork();
	if (helper == 0) {
		int err = ma_freeze(pid, 500, &g);
		char msg[1024];

		snprintf(msg, sizeof(msg), "%d %d %s", err, ma_err_exit(),
			 ma_errmsg());
		write(pfd[1], msg, strlen(msg) + 1);
		_exit(0);
	}
	close(pfd[1]);
	char msg[1024] = "";

	read(pfd[0], msg, sizeof(msg) - 1);
	waitpid(helper, NULL, 0);
	ma_thaw(f, NULL);
	cr_expect_neq(strstr(msg, "already traced by"), NULL, "%s", msg);
	cr_expect_eq(atoi(strchr(msg, ' ') + 1), MA_EXIT_PERM, "%s", msg);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* A child that writes 1 MiB at once into a pipe nobody reads yet (asleep
 * after 64 KiB), then reports what write() returned on another pipe. */
static pid_t spawn_writer(int *data, int *result)
{
	int d[2], r[2];
	pid_t pid;

	cr_assert_eq(pipe(d), 0);
	cr_assert_eq(pipe(r), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		static char buf[1 << 20];
		ssize_t n;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		n = write(d[1], buf, sizeof(buf));
		write(r[1], &n, sizeof(n));
		_exit(0);
	}
	close(d[1]);
	close(r[1]);
	*data = d[0];
	*result = r[0];
	return pid;
}

static int in_syscall(pid_t pid, long nr)
{
	char path[96], *text;
	int yes = 0;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	if (ma_proc_slurp(path, &text, NULL) == 0) {
		yes = text[0] != 'r' && strtol(text, NULL, 10) == nr;
		free(text);
	}
	return yes;
}

/* Hazard 11: a thread asleep in a partly done write is spared, not
 * stopped; a wake-up is seen; the write returns all it was given */
Test(ptrace, spare_leaves_a_sleeping_writer_alone)
{
	int data, result;
	pid_t pid = spawn_writer(&data, &result);
	struct ma_freeze *fz;
	const pid_t *tids;
	static char buf[65536];
	ssize_t n, total;

	for (int i = 0; i < 500 && !in_syscall(pid, SYS_write); i++)
		usleep(10000);
	cr_assert(in_syscall(pid, SYS_write));
	usleep(50000); /* asleep, not on its way in */

	cr_assert_eq(ma_freeze_spare(pid, 1000, &fz), 0);
	cr_assert(ma_freeze_is_spared(fz, pid));
	cr_assert_eq(ma_freeze_threads(fz, &tids), 1, "the writer listed");
	cr_assert_eq(tids[0], pid);
	cr_assert_eq(ma_freeze_spared_ran(fz), 0);
	{
		/* what attach scans of it: its stack, and a pc in libc (its
		 * write); no registers */
		struct user_regs_struct r;
		struct ma_maps maps;
		uint64_t sp = 0, pc = 0;
		const char *in = "nothing";

		cr_assert_eq(ma_freeze_regs(fz, pid, &r), -ESRCH);
		cr_assert_eq(ma_freeze_spared_sp_pc(fz, pid, &sp, &pc), 0);
		cr_assert_eq(ma_maps_read(pid, &maps), 0);
		for (size_t i = 0; i < maps.n; i++)
			if (pc >= maps.v[i].start && pc < maps.v[i].end)
				in = maps.v[i].path;
		cr_assert(strstr(in, "libc.so") != NULL, "pc %#lx in %s",
			  (unsigned long)pc, in);
		in = "nothing";
		for (size_t i = 0; i < maps.n; i++)
			if (sp >= maps.v[i].start && sp < maps.v[i].end)
				in = maps.v[i].path;
		cr_assert_str_eq(in, "[stack]", "sp %#lx in %s",
				 (unsigned long)sp, in);
		ma_maps_free(&maps);
		cr_assert_eq(ma_freeze_spared_sp_pc(fz, getpid(), &sp, &pc),
			     -ESRCH, "not a spared thread");
	}
	/* the reader takes some: the writer wakes, writes more, sleeps */
	cr_assert_eq(read(data, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	usleep(50000);
	cr_assert_eq(ma_freeze_spared_ran(fz), 1, "the wake-up is seen");
	cr_assert_eq(ma_thaw(fz, NULL), 0);

	/* the rest drained: the write returned all it was given */
	total = (ssize_t)sizeof(buf);
	while ((n = read(data, buf, sizeof(buf))) > 0)
		total += n;
	cr_assert_eq(read(result, &n, sizeof(n)), (ssize_t)sizeof(n));
	cr_assert_eq(n, 1 << 20, "write returned %zd", n);
	cr_assert_eq(total, 1 << 20);
	waitpid(pid, NULL, 0);
}
