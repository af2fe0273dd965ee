/* SPDX-License-Identifier: MIT */
#include "threads.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "discover.h"
#include "errors.h"
#include "memread.h"
#include "ptrace.h"

/* A spared thread left without its Python thread state while one is left
 * without its thread: before 3.11 a thread state names its thread by
 * pthread_self(), which only a stopped thread's registers give */
static int spared_unmatched(const struct ma_tsnap *s,
			    const struct ma_freeze *fz)
{
	int lone_state = 0, lone_spared = 0;

	for (size_t i = 0; i < s->n; i++) {
		lone_state |= !s->th[i].tid;
		lone_spared |= s->th[i].tid && !s->th[i].py &&
			       ma_freeze_is_spared(fz, s->th[i].tid);
	}
	return lone_state && lone_spared;
}

/*
 * Before 3.11 a thread state names its thread by pthread_self(): glibc's
 * struct pthread, whose address a stopped thread's fs_base gives.  A
 * spared thread (hazard 11) is not stopped, so read the kernel TID glibc
 * keeps in that struct instead: at this offset on x86_64 since glibc 2.3
 * (after the 704-byte tcbhead_t and a two-pointer list; glibc's
 * nptl/descr.h).  Only an exact match with the spared thread's own TID is
 * taken: a glibc laid out otherwise matches nothing, and the thread is
 * then read stopped after all (spared_unmatched).
 */
#define GLIBC_PTHREAD_TID_OFF 0x2d0

int ma_pthread_is(struct ma_mem *m, uint64_t self, pid_t nstid)
{
	uint32_t tid;

	return self &&
	       ma_mem_read_u32(m, self + GLIBC_PTHREAD_TID_OFF, &tid) == 0 &&
	       (pid_t)tid == nstid;
}

/* Thread state py is that of thread th: by its native ID (3.11+), else
 * by pthread_self(), from fs_base (stopped) or glibc's struct (spared) */
static int names(const struct ma_py_thread *py, const struct ma_tview *th,
		 uint64_t fsb, int spared, struct ma_mem *m)
{
	if (py->native_tid)
		return th->nstid == py->native_tid;
	if (fsb)
		return fsb == py->thread_id;
	return spared && ma_pthread_is(m, py->thread_id, th->nstid);
}

/* Match kernel threads with Python thread states */
static int build(struct ma_tsnap *s, struct ma_freeze *fz, struct ma_target *t,
		 const pid_t *tids, size_t ntids)
{
	pid_t pid = t->pid;
	int own_pidns = t->own_pidns;
	size_t cap = ntids + (size_t)s->py.nthreads;
	uint64_t *fsb;
	char *spared;

	s->th = calloc(cap ? cap : 1, sizeof(*s->th));
	fsb = calloc(ntids ? ntids : 1, sizeof(*fsb));
	spared = calloc(ntids ? ntids : 1, 1);
	if (!s->th || !fsb || !spared) {
		free(fsb);
		free(spared);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ntids; i++) {
		s->th[s->n].tid = tids[i];
		/* a thread state names its thread as the process sees it:
		 * in another PID namespace, by another number than ours */
		if (own_pidns ||
		    ma_proc_nstid(pid, tids[i], &s->th[s->n].nstid))
			s->th[s->n].nstid = tids[i];
		s->n++;
		if (ma_freeze_fs_base(fz, tids[i], &fsb[i]))
			fsb[i] = 0;
		spared[i] = (char)ma_freeze_is_spared(fz, tids[i]);
	}
	/*
	 * Thread states with frames first.  _thread.start_new_thread makes
	 * the new thread's state in the creating thread, and until the new
	 * thread runs and binds it that state names its creator (3.8-3.11:
	 * the creator's thread IDs) or nothing (3.12+: IDs 0).  Matched in
	 * list order (newest first), it took the creator's kernel thread from
	 * the state that holds its frames: a server starting a thread per
	 * request showed its main thread without frames in 9 of 40 reads, and
	 * its real state as one with no live kernel thread.  Such a state
	 * (no frames, and no thread of its own to name) is a thread being
	 * started: its kernel thread, if it exists yet, is listed without a
	 * Python state, and the state itself is not listed.
	 */
	for (int pass = 0; pass < 2; pass++) {
		for (int k = 0; k < s->py.nthreads; k++) {
			const struct ma_py_thread *py = &s->py.threads[k];
			/* other: the first kernel thread it names that
			 * another interpreter's state took */
			size_t i, other = ntids;
			int named = 0;

			if ((py->nframes > 0) != (pass == 0))
				continue;
			for (i = 0; i < ntids; i++) {
				if (!names(py, &s->th[i], fsb[i], spared[i],
					   t->mem))
					continue;
				named = 1;
				if (!s->th[i].py)
					break;
				if (other == ntids &&
				    s->th[i].py->interp_id != py->interp_id)
					other = i;
			}
			if (i < ntids) {
				s->th[i].py = py;
				continue;
			}
			if (py->nframes > 0 && other < ntids) {
				/* the thread's state in another interpreter
				 * (a thread running a subinterpreter has one
				 * in each): listed with its kernel thread's
				 * ID too */
				s->th[s->n++] = (struct ma_tview){
					.tid = s->th[other].tid,
					.nstid = s->th[other].nstid,
					.py = py,
					.other_interp =
						s->th[other].py->interp_id + 1,
				};
			} else if (py->nframes > 0 ||
				   (!named &&
				    (py->thread_id || py->native_tid))) {
				s->th[s->n].py = py;
				s->th[s->n++].tid = 0;
			}
		}
	}
	free(fsb);
	free(spared);
	return 0;
}

int ma_tsnap_take(struct ma_target *t, struct ma_pyreader *r, int native,
		  struct ma_tsnap *out)
{
	struct ma_freeze *fz;
	const pid_t *tids;
	size_t ntids;
	int err;

	memset(out, 0, sizeof(*out));
	if (native)
		ma_native_preload(t->dwfl);
	/* Thread names: the walk of sys.modules to threading._active is most
	 * of their reads; done now, the reader keeps where _active is, and
	 * the stop only reads _active and its Threads */
	struct ma_py_tname *names;
	size_t nnames;

	if (ma_pyreader_thread_names(r, &names, &nnames) == 0)
		free(names);
	/* A thread asleep in a write is read without being stopped, which
	 * would cut its write short (hazard 11), unless the native stacks
	 * need its registers; if it woke while we read, read again, the
	 * last time stopping it too. */
	for (int attempt = 0;; attempt++) {
		int spare = !native && attempt < 3;

		err = spare ? ma_freeze_spare(t->pid, 1000, &fz)
			    : ma_freeze(t->pid, 1000, &fz);
		if (err)
			return err;
		/* --- the process is stopped from here ... --- */
		err = ma_pyreader_snapshot(r, &out->py);
		ntids = ma_freeze_threads(fz, &tids);
		if (!err)
			err = build(out, fz, t, tids, ntids);
		if (err || !spare)
			break;
		if (spared_unmatched(out, fz))
			attempt = 2; /* the next one stops every thread */
		else if (!ma_freeze_spared_ran(fz))
			break;
		ma_thaw(fz, NULL);
		ma_tsnap_free(out);
	}
	if (!err && native && !t->dwfl_attached &&
	    ma_native_attach(t->dwfl, t->pid) == 0)
		t->dwfl_attached = 1;
	if (!err && native && t->dwfl_attached) {
		for (size_t i = 0; i < out->n; i++) {
			/* one unwind per kernel thread, with its first state */
			if (!out->th[i].tid || out->th[i].other_interp)
				continue;
			ma_native_unwind(t->dwfl, out->th[i].tid, 256,
					 &out->th[i].nat);
			out->th[i].has_nat = 1;
		}
	}
	ma_thaw(fz, &out->frozen_ns);
	/* --- ... to here --- */
	for (size_t i = 0; i < out->n; i++)
		if (out->th[i].has_nat)
			ma_native_symbolize(t->dwfl, &out->th[i].nat);
	if (err) {
		ma_tsnap_free(out);
		return ma_err_prefix(err, "process %d: reading thread states",
				     (int)t->pid);
	}
	for (size_t i = 0; i < out->n; i++) {
		/* read after the thaw: a short-lived thread may have ended
		 * since, its comm gone with it (before, it was named "") */
		if (out->th[i].tid &&
		    ma_proc_comm(t->pid, out->th[i].tid, out->th[i].comm,
				 sizeof(out->th[i].comm)))
			snprintf(out->th[i].comm, sizeof(out->th[i].comm),
				 "(ended)");
		out->th[i].name = out->th[i].py && out->th[i].py->name
					  ? out->th[i].py->name
					  : out->th[i].comm;
		if (out->th[i].py && out->th[i].py->truncated)
			out->partial = 1;
	}
	/* a thread unnamed in the interpreter it runs now is called by its
	 * name in the other one (threading knows it where it was started) */
	for (size_t i = 0; i < out->n; i++) {
		const struct ma_py_thread *o = out->th[i].py;

		if (!out->th[i].other_interp || !o->name)
			continue;
		for (size_t j = 0; j < out->n; j++)
			if (out->th[j].tid == out->th[i].tid &&
			    !out->th[j].other_interp &&
			    (!out->th[j].py || !out->th[j].py->name))
				out->th[j].name = o->name;
	}
	if (out->py.truncated)
		out->partial = 1;
	return 0;
}

void ma_tsnap_free(struct ma_tsnap *s)
{
	if (s->th) {
		for (size_t i = 0; i < s->n; i++)
			ma_native_stack_free(&s->th[i].nat);
		free(s->th);
	}
	ma_py_snapshot_free(&s->py);
	memset(s, 0, sizeof(*s));
}
