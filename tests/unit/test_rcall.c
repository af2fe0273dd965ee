/* SPDX-License-Identifier: MIT */
/*
 * Remote calls on a real child process: the thread returns through the
 * sigreturn frame to exactly where it was — a blocked read() completes with
 * its data, vector registers keep their values, signals that arrive during
 * the call are delivered, and a tracer killed in the middle of a call does
 * not take the target with it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errors.h"
#include "ptrace.h"
#include "rcall.h"

static volatile sig_atomic_t usr1;
static volatile long avx_mismatch = -1;
static volatile int avx_tid;

static void on_usr1(int s)
{
	(void)s;
	usr1++;
}

/* Keeps a known pattern in ymm8 and counts the times it changed */
static void *avx_thread(void *arg)
{
	static const uint64_t pat[4] __attribute__((aligned(
		32))) = { 0x0123456789abcdefull, 0xfedcba9876543210ull,
			  0x1111222233334444ull, 0x5555666677778888ull };
	long bad = 0;

	avx_tid = (int)syscall(SYS_gettid);
	asm volatile("vmovdqa %0, %%ymm8" ::"m"(pat) : "xmm8");
	avx_mismatch = 0;
	for (;;) {
		int eq;

		asm volatile("vpcmpeqq %1, %%ymm8, %%ymm9\n\t"
			     "vpmovmskb %%ymm9, %0"
			     : "=r"(eq)
			     : "m"(pat)
			     : "xmm9");
		if (eq != -1) {
			bad++;
			avx_mismatch = bad;
			asm volatile("vmovdqa %0, %%ymm8" ::"m"(pat) : "xmm8");
		}
	}
	return arg;
}

struct child {
	pid_t pid;
	int to, from;
	int child_in; /* the child's read end of `to` (same number there) */
};

/* The child echoes each line it reads back with its SIGUSR1 count, and
 * reports its AVX thread's TID and mismatch count on request. */
static struct child spawn(int with_avx)
{
	int a[2], b[2];
	struct child c;

	cr_assert_eq(pipe(a), 0);
	cr_assert_eq(pipe(b), 0);
	c.pid = fork();
	cr_assert_geq(c.pid, 0);
	if (c.pid == 0) {
		char buf[256];
		pthread_t t;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGUSR1, on_usr1);
		if (with_avx) {
			pthread_create(&t, NULL, avx_thread, NULL);
			while (avx_mismatch < 0)
				usleep(1000);
		}
		dprintf(b[1], "ready %d\n", avx_tid);
		for (;;) {
			ssize_t n = read(a[0], buf, sizeof(buf) - 1);

			if (n <= 0) {
				dprintf(b[1], "read returned %zd errno %d\n", n,
					errno);
				_exit(1);
			}
			buf[n] = '\0';
			dprintf(b[1], "got %s usr1=%d avx=%ld\n", buf,
				(int)usr1, avx_mismatch);
		}
	}
	c.child_in = a[0];
	close(a[0]);
	close(b[1]);
	c.to = a[1];
	c.from = b[0];
	return c;
}

static void readline_from(struct child *c, char *buf, size_t len)
{
	size_t n = 0;

	while (n + 1 < len && read(c->from, buf + n, 1) == 1 && buf[n] != '\n')
		n++;
	buf[n] = '\0';
}

static void finish(struct child *c)
{
	kill(c->pid, SIGKILL);
	waitpid(c->pid, NULL, 0);
}

/* Wait until the child's main thread sits in read() */
static void wait_blocked(pid_t pid)
{
	char path[64], buf[64];

	snprintf(path, sizeof(path), "/proc/%d/syscall", pid);
	for (int i = 0; i < 500; i++) {
		FILE *f = fopen(path, "r");

		if (f && fgets(buf, sizeof(buf), f) && !strncmp(buf, "0 ", 2)) {
			fclose(f);
			return;
		}
		if (f)
			fclose(f);
		usleep(2000);
	}
	cr_assert_fail("child never blocked in read()");
}

Test(rcall, blocked_read_survives_calls_and_gets_its_data)
{
	struct child c = spawn(0);
	struct ma_rcall_env env;
	struct ma_freeze *fz;
	struct ma_rcall_result res;
	char line[256];
	static const char name[] = "ma-test-memfd";

	readline_from(&c, line, sizeof(line));
	wait_blocked(c.pid);
	cr_assert_eq(ma_rcall_env_init(c.pid, &env), 0, "%s", ma_errmsg());
	cr_assert_eq(ma_freeze(c.pid, 1000, &fz), 0, "%s", ma_errmsg());

	/* A plain call, then a system call through libc's syscall() whose
	 * result we need: memfd_create in the target */
	struct ma_rcall call = { .fn = (uint64_t)(uintptr_t)&getpid,
				 .timeout_ms = 1000 };

	cr_assert_eq(ma_rcall(fz, c.pid, &env, &call, &res), 0, "%s",
		     ma_errmsg());
	struct ma_rcall mfd = {
		.fn = (uint64_t)(uintptr_t)&syscall,
		.args = { SYS_memfd_create, MA_RCALL_DATA, 0 },
		.data = name,
		.data_len = sizeof(name),
		.want = 1,
		.want_syscall = SYS_memfd_create,
		.timeout_ms = 1000,
	};

	cr_assert_eq(ma_rcall(fz, c.pid, &env, &mfd, &res), 0, "%s",
		     ma_errmsg());
	cr_assert_geq(res.syscall_ret, 3, "memfd fd %ld", res.syscall_ret);
	ma_thaw(fz, NULL);

	char fdpath[64], target[256] = "";

	snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%ld", c.pid,
		 res.syscall_ret);
	cr_assert_gt(readlink(fdpath, target, sizeof(target) - 1), 0);
	cr_expect_neq(strstr(target, "memfd:ma-test-memfd"), NULL, "%s",
		      target);

	/* The read() the thread was blocked in was restarted, not failed */
	cr_assert_eq(write(c.to, "hello", 5), 5);
	readline_from(&c, line, sizeof(line));
	cr_expect_str_eq(line, "got hello usr1=0 avx=-1");
	finish(&c);
}

Test(rcall, vector_registers_are_restored)
{
	struct child c;
	struct ma_rcall_env env;
	struct ma_freeze *fz;
	struct ma_rcall_result res;
	char line[256];
	static char big[1 << 16];

	if (!__builtin_cpu_supports("avx2"))
		cr_skip_test("no AVX2 on this CPU");
	c = spawn(1);
	readline_from(&c, line, sizeof(line));
	int tid = atoi(line + 6);

	cr_assert_gt(tid, 0);
	cr_assert_eq(ma_rcall_env_init(c.pid, &env), 0, "%s", ma_errmsg());
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(ma_freeze(c.pid, 1000, &fz), 0, "%s", ma_errmsg());
		/* memset of 64 KiB uses the vector registers; the thread we
		 * hijack is the one checking ymm8 */
		struct ma_rcall call = { .fn = (uint64_t)(uintptr_t)&memset,
					 .args = { (uint64_t)(uintptr_t)big,
						   0xab, sizeof(big) },
					 .timeout_ms = 1000 };

		cr_assert_eq(ma_rcall(fz, tid, &env, &call, &res), 0, "%s",
			     ma_errmsg());
		ma_thaw(fz, NULL);
		usleep(2000);
	}
	cr_assert_eq(write(c.to, "x", 1), 1);
	readline_from(&c, line, sizeof(line));
	cr_expect_str_eq(line, "got x usr1=0 avx=0",
			 "ymm8 changed under the thread: %s", line);
	finish(&c);
}

Test(rcall, signals_during_the_call_are_delivered)
{
	struct child c = spawn(0);
	struct ma_rcall_env env;
	struct ma_freeze *fz;
	struct ma_rcall_result res;
	char line[256];
	pid_t sender;

	readline_from(&c, line, sizeof(line));
	wait_blocked(c.pid);
	cr_assert_eq(ma_rcall_env_init(c.pid, &env), 0, "%s", ma_errmsg());
	cr_assert_eq(ma_freeze(c.pid, 1000, &fz), 0, "%s", ma_errmsg());
	sender = fork();
	if (sender == 0) {
		for (int i = 0; i < 5; i++) {
			usleep(40000);
			kill(c.pid, SIGUSR1);
		}
		usleep(200000);
		write(c.to, "Q", 1);
		_exit(0);
	}
	/* The hijacked thread itself read()s one byte from its pipe: the
	 * five handlers run inside that read (SA_RESTART restarts it), and
	 * return through the same trampoline as our call does: only the
	 * read's own result, 1, may end the call. */
	struct ma_rcall call = { .fn = (uint64_t)(uintptr_t)&read,
				 .args = { (uint64_t)c.child_in, MA_RCALL_DATA,
					   1 },
				 .data = "........",
				 .data_len = 8,
				 .want = 1,
				 .want_syscall = SYS_read,
				 .timeout_ms = 3000 };

	cr_assert_eq(ma_rcall(fz, c.pid, &env, &call, &res), 0, "%s",
		     ma_errmsg());
	cr_expect_eq(res.syscall_ret, 1, "read returned %ld", res.syscall_ret);
	cr_expect_geq(res.ns, 400000000ull, "call ended after %llu ns",
		      (unsigned long long)res.ns);
	ma_thaw(fz, NULL);
	waitpid(sender, NULL, 0);
	usleep(50000);
	cr_assert_eq(write(c.to, "y", 1), 1);
	readline_from(&c, line, sizeof(line));
	cr_expect_str_eq(line, "got y usr1=5 avx=-1");
	finish(&c);
}

/* A tracer SIGKILLed while the call runs: the kernel detaches the target
 * thread, which finishes the call and returns through the frame. */
Test(rcall, tracer_killed_mid_call_leaves_target_alive)
{
	struct child c = spawn(0);
	char line[256];

	readline_from(&c, line, sizeof(line));
	for (int round = 0; round < 10; round++) {
		wait_blocked(c.pid);
		pid_t tracer = fork();

		if (tracer == 0) {
			struct ma_rcall_env env;
			struct ma_freeze *fz;
			struct ma_rcall_result res;
			struct ma_rcall call = {
				.fn = (uint64_t)(uintptr_t)&usleep,
				.args = { 20000 },
				.timeout_ms = 5000
			};

			if (ma_rcall_env_init(c.pid, &env) ||
			    ma_freeze(c.pid, 1000, &fz))
				_exit(2);
			ma_rcall(fz, c.pid, &env, &call, &res);
			_exit(0);
		}
		/* kill it at a different moment each round: before, during
		 * and after the call */
		usleep((useconds_t)(round * 3000));
		kill(tracer, SIGKILL);
		waitpid(tracer, NULL, 0);
		usleep(50000);
		cr_assert_eq(kill(c.pid, 0), 0, "target died in round %d",
			     round);
	}
	wait_blocked(c.pid);
	cr_assert_eq(write(c.to, "z", 1), 1);
	readline_from(&c, line, sizeof(line));
	cr_expect_str_eq(line, "got z usr1=0 avx=-1");
	finish(&c);
}

/* A process that is gone from under us (a zombie: no memory left) is said
 * to have exited, exit code 3, not to lack glibc */
Test(rcall, env_of_an_exited_process)
{
	struct ma_rcall_env env;
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0)
		_exit(0);
	/* a zombie until reaped */
	for (int i = 0; i < 200; i++) {
		char path[64], st[256] = "";
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		f = fopen(path, "r");
		if (f) {
			if (!fgets(st, sizeof(st), f))
				st[0] = '\0';
			fclose(f);
		}
		if (strstr(st, ") Z "))
			break;
		usleep(5000);
	}
	ma_err_set_exit(0);
	cr_assert_eq(ma_rcall_env_init(pid, &env), -ESRCH, "%s", ma_errmsg());
	cr_assert_eq(ma_err_exit(), MA_EXIT_NOPROC);
	cr_assert(strstr(ma_errmsg(), "exited") != NULL, "%s", ma_errmsg());
	waitpid(pid, NULL, 0);
}
