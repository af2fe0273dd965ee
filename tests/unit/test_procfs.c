/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procfs.h"

Test(procfs, maps_parse_fields)
{
	const char *text = "00400000-00420000 r--p 00000000 fe:01 1234   "
			   "/usr/bin/python3.11\n"
			   "00420000-006b7000 r-xp 00020000 fe:01 1234   "
			   "/usr/bin/python3.11\n"
			   "7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n"
			   "7ffc1000-7ffc2000 rw-p 00000000 00:00 0            "
			   "      [stack]\n"
			   "7f1000000000-7f1000001000 r-xp 00000000 00:05 77  "
			   "/memfd:memattach (deleted)\n";
	struct ma_maps m;

	cr_assert_eq(ma_maps_parse(text, &m), 0);
	cr_assert_eq(m.n, 5);
	cr_expect_eq(m.v[0].start, 0x400000);
	cr_expect_eq(m.v[0].end, 0x420000);
	cr_expect_str_eq(m.v[0].perms, "r--p");
	cr_expect_eq(m.v[1].offset, 0x20000);
	cr_expect_eq(m.v[1].inode, 1234);
	cr_expect_str_eq(m.v[1].path, "/usr/bin/python3.11");
	cr_expect_str_eq(m.v[2].path, "");
	cr_expect_str_eq(m.v[3].path, "[stack]");
	cr_expect_str_eq(m.v[4].path, "/memfd:memattach (deleted)");
	cr_expect_eq(ma_maps_find_file(&m, "/usr/bin/python3.11"), &m.v[0]);
	cr_expect_null(ma_maps_find_file(&m, "/usr/bin/python3"));
	ma_maps_free(&m);
}

Test(procfs, maps_parse_garbage_is_skipped)
{
	struct ma_maps m;

	cr_assert_eq(ma_maps_parse("not a maps line\n\n1-2 r\n", &m), 0);
	cr_expect_eq(m.n, 0);
	ma_maps_free(&m);
}

/* The parser agrees with the kernel about our own mappings: the page that
 * holds this function is executable and belongs to this test binary. */
Test(procfs, maps_read_self)
{
	struct ma_maps m;
	char exe[4096];
	uint64_t pc = (uint64_t)(uintptr_t)&ma_maps_parse;
	int found = 0;

	cr_assert_eq(ma_maps_read(getpid(), &m), 0);
	cr_assert_eq(ma_proc_exe(getpid(), exe, sizeof(exe)), 0);
	for (size_t i = 0; i < m.n; i++)
		if (pc >= m.v[i].start && pc < m.v[i].end) {
			found = 1;
			cr_expect_eq(m.v[i].perms[2], 'x');
			cr_expect_str_eq(m.v[i].path, exe);
		}
	cr_expect(found);
	ma_maps_free(&m);
}

/* ma_maps_find_start: the line of a memfd mapped after 600 others (maps far
 * longer than one read), its start as mmap gave it; none: -ENOENT */
Test(procfs, maps_find_start)
{
	enum { N = 600 };
	static void *v[N];
	uint64_t start = 0;
	int fd = memfd_create("ma-find-start-test", MFD_CLOEXEC);
	void *p;

	/* alternate protections: the kernel cannot merge them */
	for (int i = 0; i < N; i++) {
		v[i] = mmap(NULL, 4096, i % 2 ? PROT_READ : PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		cr_assert(v[i] != MAP_FAILED);
	}
	cr_assert(fd >= 0 && ftruncate(fd, 4096) == 0);
	/* in the place of the first (top-down: the highest), so that its
	 * line comes after the others' */
	cr_assert(munmap(v[0], 4096) == 0);
	p = mmap(v[0], 4096, PROT_READ, MAP_SHARED | MAP_FIXED_NOREPLACE, fd,
		 0);
	cr_assert(p == v[0]);
	cr_expect(ma_maps_find_start(getpid(), "/memfd:ma-find-start-test",
				     &start) == 0);
	cr_expect(start == (uintptr_t)p, "found %#lx, mapped at %p",
		  (unsigned long)start, p);
	cr_expect(ma_maps_find_start(getpid(), "/memfd:no-such-thing",
				     &start) == -ENOENT);
	cr_expect(ma_maps_find_start(999999999, "x", &start) == -ESRCH);
	close(fd);
	for (int i = 0; i < N; i++)
		munmap(v[i], 4096);
}

/* running: not exiting; reaped: ended, so exiting too */
Test(procfs, exiting)
{
	pid_t c = fork();

	if (c == 0)
		_exit(0);
	cr_assert(c > 0 && waitpid(c, NULL, 0) == c);
	cr_expect(ma_proc_exiting(getpid()) == 0);
	cr_expect(ma_proc_exiting(c) == 1);
}

/* The exec signature is the kernel's AT_RANDOM: ours as getauxval sees
 * it, another after an exec, none for a process gone */
Test(procfs, exec_sig)
{
	int fds[2];
	pid_t c;
	char b;

	cr_assert(ma_proc_exec_sig(getpid()) == getauxval(AT_RANDOM));
	cr_assert(ma_proc_exec_sig(getpid()) != 0);
	cr_assert(pipe(fds) == 0);
	c = fork();
	if (c == 0) {
		/* the pipe's write end closes at the exec (close-on-exec)
		 * and is left open by sleep: the parent reads EOF once
		 * the new image runs */
		fcntl(fds[1], F_SETFD, FD_CLOEXEC);
		close(fds[0]);
		execlp("sleep", "sleep", "5", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	cr_assert(read(fds[0], &b, 1) == 0);
	close(fds[0]);
	cr_expect(ma_proc_exec_sig(c) != 0);
	cr_expect(ma_proc_exec_sig(c) != ma_proc_exec_sig(getpid()));
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	cr_expect(ma_proc_exec_sig(c) == 0);
}

Test(procfs, status_parse)
{
	const char *text =
		"Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\n"
		"Tgid:\t4242\nPid:\t4242\nTracerPid:\t77\n"
		"Uid:\t1000\t1001\t1000\t1000\nVmHWM:\t  20000 kB\n"
		"VmRSS:\t   12345 kB\nThreads:\t3\n";
	struct ma_status st;

	cr_assert_eq(ma_status_parse(text, &st), 0);
	cr_expect_str_eq(st.name, "python3");
	cr_expect_eq(st.state, 'S');
	cr_expect_eq(st.tgid, 4242);
	cr_expect_eq(st.tracer, 77);
	cr_expect_eq(st.uid, 1000);
	cr_expect_eq(st.euid, 1001);
	cr_expect_eq(st.vm_rss_kb, 12345);
	cr_expect_eq(st.vm_hwm_kb, 20000);
	cr_expect_eq(st.threads, 3);
	cr_expect_eq(ma_status_parse("Name:\tx\n", &st), -EINVAL);
}

static void *idle_thread(void *arg)
{
	pause();
	return arg;
}

Test(procfs, tasks_lists_every_thread)
{
	pthread_t th[3];
	pid_t *tids;
	size_t n;

	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, idle_thread, NULL);
	cr_assert_eq(ma_tasks_read(getpid(), &tids, &n), 0);
	cr_expect_geq(n, 4);
	cr_expect_eq(tids[0], getpid()); /* sorted: the leader first */
	for (size_t i = 1; i < n; i++)
		cr_expect_gt(tids[i], tids[i - 1]);
	free(tids);
}

Test(procfs, missing_process_is_esrch)
{
	struct ma_status st;
	struct ma_maps m;
	pid_t *tids;
	size_t n;
	char buf[64];

	/* PID_MAX_LIMIT is 4194304: this PID cannot exist */
	cr_expect_eq(ma_status_read(4194305, &st), -ESRCH);
	cr_expect_eq(ma_maps_read(4194305, &m), -ESRCH);
	cr_expect_eq(ma_tasks_read(4194305, &tids, &n), -ESRCH);
	cr_expect_eq(ma_proc_exe(4194305, buf, sizeof(buf)), -ESRCH);
}

Test(procfs, comm_and_cmdline_of_child)
{
	char comm[64], cmd[4096], c;
	int gate[2];
	pid_t pid;

	/* the write end closes on exec: EOF on the read end says the child
	 * is sleep now (a fixed delay lost the race on a loaded machine) */
	cr_assert_eq(pipe2(gate, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(gate[0]);
		execlp("sleep", "sleep", "30", (char *)NULL);
		_exit(127);
	}
	close(gate[1]);
	while (read(gate[0], &c, 1) < 0 && errno == EINTR)
		;
	close(gate[0]);
	cr_assert_eq(ma_proc_comm(pid, pid, comm, sizeof(comm)), 0);
	cr_expect_str_eq(comm, "sleep");
	cr_assert_eq(ma_proc_cmdline(pid, cmd, sizeof(cmd)), 0);
	cr_expect_str_eq(cmd, "sleep 30");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* NSpid: the thread's ID in each PID namespace, outermost first; the last
 * one is what the process calls it */
Test(procfs, nspid_is_the_innermost_id)
{
	cr_assert_eq(ma_status_nspid("Name:\tpython3\nNSpid:\t31848\t1\n"
				     "NSpgid:\t31848\t1\n"),
		     1);
	cr_assert_eq(ma_status_nspid("Name:\tx\nNSpid:\t700\t52\t3\n"), 3);
	cr_assert_eq(ma_status_nspid("Name:\tx\nNSpid:\t4242\n"), 4242);
	cr_assert_eq(ma_status_nspid("Name:\tx\nPid:\t4242\n"), 0);
	pid_t self;

	cr_assert_eq(ma_proc_nstid(getpid(), getpid(), &self), 0);
	cr_assert_eq(self, getpid());
}

/* A child's state in /proc, polled until it is want (10 s at most) */
static int wait_state(pid_t pid, char want)
{
	struct ma_status st;

	for (int i = 0; i < 10000; i++) {
		if (ma_status_read(pid, &st) == 0 && st.state == want)
			return 1;
		usleep(1000);
	}
	return 0;
}

/* SIGSTOP: stopped (every thread, the only one); SIGCONT: not; a process
 * that does not exist: not */
Test(procfs, job_stopped)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	cr_assert(wait_state(pid, 'S'));
	cr_expect_eq(ma_proc_job_stopped(pid, 1), 0);
	kill(pid, SIGSTOP);
	cr_assert(wait_state(pid, 'T'));
	cr_expect_eq(ma_proc_job_stopped(pid, 0), 1);
	cr_expect_eq(ma_proc_job_stopped(pid, 1), 1);
	kill(pid, SIGCONT);
	cr_assert(wait_state(pid, 'S'));
	cr_expect_eq(ma_proc_job_stopped(pid, 0), 0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_expect_eq(ma_proc_job_stopped(4194305, 0), 0);
}

/* A zombie's exit status as waitpid() will give it; none once reaped, or
 * while it runs */
Test(procfs, exit_status_of_zombie)
{
	static const int how[] = { 0, 3, -SIGKILL };

	for (size_t i = 0; i < sizeof(how) / sizeof(how[0]); i++) {
		int got = -1, want;
		pid_t pid = fork();

		cr_assert_geq(pid, 0);
		if (pid == 0) {
			if (how[i] < 0)
				raise(-how[i]);
			_exit(how[i]);
		}
		cr_assert(wait_state(pid, 'Z'));
		cr_expect_eq(ma_proc_exit_status(pid, &got), 0, "case %zu", i);
		cr_assert_eq(waitpid(pid, &want, 0), pid);
		cr_expect_eq(got, want, "case %zu: %#x, waitpid says %#x", i,
			     got, want);
		cr_expect_eq(ma_proc_exit_status(pid, &got), -ESRCH);
	}
	cr_expect_eq(ma_proc_exit_status(getpid(), &(int){ 0 }), -ESRCH);
}

/* Every child of every thread: one forked by the main thread and one by
 * another thread (each thread's children file lists its own) */
static void *fork_one(void *arg)
{
	pid_t c = fork();

	if (c == 0) {
		pause();
		_exit(0);
	}
	*(pid_t *)arg = c;
	return NULL;
}

Test(procfs, children_of_every_thread)
{
	pid_t a = 0, b = 0, *kids;
	pthread_t th;
	size_t n;
	int found = 0;

	fork_one(&a);
	cr_assert_eq(pthread_create(&th, NULL, fork_one, &b), 0);
	pthread_join(th, NULL);
	cr_assert(a > 0 && b > 0);
	cr_assert_eq(ma_proc_children(getpid(), &kids, &n), 0);
	for (size_t i = 0; i < n; i++)
		found += (kids[i] == a) + (kids[i] == b);
	free(kids);
	kill(a, SIGKILL);
	kill(b, SIGKILL);
	waitpid(a, NULL, 0);
	waitpid(b, NULL, 0);
	cr_expect_eq(found, 2, "%zu children listed", n);
}
