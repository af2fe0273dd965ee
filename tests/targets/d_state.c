/* SPDX-License-Identifier: MIT */
/*
 * A thread in uninterruptible sleep (state D) for as long as asked:
 * ma_d_state_start(s) starts a thread that vforks; the parent of a vfork
 * sleeps in state D until its child execs or exits, and the child sleeps
 * s seconds and exits.  No signal, ptrace's included, stops the thread
 * meanwhile, as a thread stuck on a hung NFS server or a device
 * (tests/e2e/test_d_state.py).  Returns the thread's ID once it runs.
 */
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double secs;
static volatile int tid;

static void *run(void *arg)
{
	(void)arg;
	tid = (int)syscall(SYS_gettid);
	/* the child only sleeps and _exits: all it may do on the borrowed
	 * stack */
	if (vfork() == 0) {
		struct timespec ts = { .tv_sec = (time_t)secs };

		nanosleep(&ts, NULL);
		_exit(0);
	}
	return NULL;
}

int ma_d_state_start(double s)
{
	pthread_t t;

	secs = s;
	if (pthread_create(&t, NULL, run, NULL))
		return -1;
	pthread_detach(t);
	while (!tid)
		usleep(1000);
	return tid;
}
