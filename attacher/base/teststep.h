/* SPDX-License-Identifier: MIT */
/*
 * Named steps, for the tests that kill memattach at every one of them
 * (tests/e2e/test_kill_steps.py, bench/chaos.py; docs/architecture.md,
 * "Killed at any moment").
 *
 * Every place where memattach changes the target's state, or is about to,
 * calls ma_step("layer.what").  Two environment variables, read once, make
 * the calls do something; without them a step costs one predictable
 * branch:
 *   MEMATTACH_TEST_STEP_LOG=1       print "memattach: step NAME #K" to
 *                                   stderr at each step (K: its count);
 *   MEMATTACH_TEST_STOP_AT=NAME[#K] at the K-th (default first) passage of
 *                                   step NAME, memattach stops itself with
 *                                   SIGSTOP, so that the test SIGKILLs it
 *                                   exactly there;
 *   MEMATTACH_TEST_STOP_SIGNAL=TSTP with it: a Ctrl-Z instead (SIGTSTP to
 *                                   the process, which may defer it).
 * Not for users: nothing else reads these variables.
 */
#ifndef MA_TESTSTEP_H
#define MA_TESTSTEP_H

extern int ma_step_on; /* either variable is set */

void ma_step_slow(const char *name);

static inline void ma_step(const char *name)
{
	if (__builtin_expect(ma_step_on, 0))
		ma_step_slow(name);
}

/* Read the environment; main() calls it once */
void ma_step_init(void);

#endif
