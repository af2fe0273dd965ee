/* SPDX-License-Identifier: MIT */
/*
 * memattach detach PID: clean up what a killed memattach left behind.  The
 * payload removes its hooks by itself when it loses its consumer (state
 * ORPHANED: within a tick by the attacher's pidfd, a second by the
 * heartbeat); this command says what it finds, stops the payload with a
 * remote call if hooks are somehow still installed, waits for the stop to
 * finish, and closes payload images an attach killed early left open.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "discover.h"
#include "errors.h"
#include "holder.h"
#include "inject.h"
#include "ptrace.h"
#include "teststep.h"

static const char *state_name(uint32_t s)
{
	switch (s) {
	case MA_STATE_STARTING:
		return "starting";
	case MA_STATE_TRACKING:
		return "tracking";
	case MA_STATE_STOPPING:
		return "stopping";
	case MA_STATE_STOPPED:
		return "stopped (hooks removed)";
	case MA_STATE_ORPHANED:
		return "orphaned: its memattach went away, hooks removed";
	case MA_STATE_FAILED:
		return "failed and disabled itself, hooks removed";
	default:
		return "never started";
	}
}

/* Descriptors a killed attach left in the target; closes t */
static int cleanup(struct ma_target *t)
{
	int closed = 0, reaped = 0, err = ma_inject_cleanup(t, &closed);
	pid_t pid = t->pid;

	/* and the copies of a census that was killed: zombies the target
	 * never sees (no exit signal), which only it can reap */
	if (!err)
		err = ma_inject_reap(t, &reaped);
	ma_target_close(t);
	if (err)
		return ma_cli_fail("detach");
	if (reaped)
		printf("detach: process %d: reaped %d copy(ies) left by a "
		       "'memattach heap' that was killed\n",
		       (int)pid, reaped);
	if (closed)
		printf("detach: process %d: closed %d payload image "
		       "descriptor(s) left by an attach that was killed\n",
		       (int)pid, closed);
	return MA_EXIT_OK;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: memattach detach PID\n"
		   "  Stop a memattach payload left tracking in PID (by a "
		   "killed memattach)\n  and say what was found.\n");
}

int ma_cmd_detach(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ma_target_opts topts = { 0 };
	struct ma_payload_info pi;
	struct ma_target *t;
	pid_t pid;
	int err;
	/* the options every command takes, and its one-line errors */
	struct ma_cli_args args =
		MA_CLI_ARGS("detach", argc, argv, "h", longopts, usage);

	args.pid = &pid;
	while (ma_cli_opt(&args) > 0)
		;
	if (args.exit >= 0)
		return args.exit;
	if (ma_target_open(pid, &topts, &t))
		return ma_cli_fail("detach");
	err = ma_payload_probe(t, &pi);
	if (err) {
		ma_target_close(t);
		return ma_cli_fail("detach");
	}
	/* another build's session: its payload's state and symbols are
	 * that build's to know */
	if (pi.other_busy) {
		ma_err_set_exit(MA_EXIT_BUSY);
		ma_err(-EALREADY,
		       "process %d is tracked by another memattach build: "
		       "stop that memattach, or run its 'detach %d' (its "
		       "payload also stops by itself once that memattach has "
		       "gone)",
		       (int)pid, (int)pid);
		ma_target_close(t);
		return ma_cli_fail("detach");
	}
	if (pi.others)
		printf("detach: process %d: %d payload(s) of another memattach "
		       "build loaded, dormant: nothing to stop there\n",
		       (int)pid, pi.others);
	if (!pi.loaded) {
		if (!pi.others)
			printf("detach: process %d: no memattach payload "
			       "loaded\n",
			       (int)pid);
		return cleanup(t);
	}
	if (!pi.same_build) {
		ma_err(-EPROTO,
		       "process %d holds a payload under this build's name "
		       "whose build ID differs (its image was changed in the "
		       "process?): not stopping it",
		       (int)pid);
		ma_target_close(t);
		return ma_cli_fail("detach");
	}
	if (pi.no_code) {
		printf("detach: process %d: the remains of a payload that "
		       "failed to load (its code is not mapped): nothing to "
		       "stop\n",
		       (int)pid);
		return cleanup(t);
	}
	printf("detach: process %d: payload loaded at %#lx, %u session(s), "
	       "last one %s\n",
	       (int)pid, (unsigned long)pi.base, pi.ctl.generation,
	       state_name(pi.ctl.state));
	if (ma_payload_in(&pi, MA_PAYLOAD_BUSY)) {
		struct ma_holder h;

		/* a memattach still at work on it: named, since its session
		 * ends here (it says "stopped by 'memattach detach'") */
		if (!ma_ring_holder_by_maps(pid, &t->maps, &h))
			printf("detach: process %d: tracked by memattach "
			       "%d%s%s: "
			       "its session ends now\n",
			       (int)pid, (int)h.pid,
			       h.since_text[0] ? " since " : "", h.since_text);
		/* Give a payload whose consumer just died the second the
		 * heartbeat needs (another PID namespace: no pidfd) to
		 * notice, before stopping it by hand */
		ma_payload_wait(t, &pi, MA_PAYLOAD_STATE(MA_STATE_TRACKING),
				15);
		if (ma_payload_in(
			    &pi, MA_PAYLOAD_STATE(MA_STATE_TRACKING) |
					 MA_PAYLOAD_STATE(MA_STATE_STARTING))) {
			err = ma_inject_stop(t, &pi);
			if (err) {
				ma_target_close(t);
				return ma_cli_fail("detach");
			}
			ma_step("detach.stopped");
		}
		/* The payload's watchdog finishes the stop (the last record,
		 * the ring unmapped and its descriptor closed) with the
		 * threads running: wait for it, a little */
		ma_payload_wait(t, &pi, MA_PAYLOAD_STATE(MA_STATE_STOPPING),
				30);
		printf("detach: process %d: payload now %s\n", (int)pid,
		       state_name(pi.ctl.state));
	}
	printf("detach: process %d: the payload stays loaded, dormant (it "
	       "costs nothing; a later attach reuses it)\n",
	       (int)pid);
	return cleanup(t);
}
