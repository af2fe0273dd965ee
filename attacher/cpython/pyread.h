/* SPDX-License-Identifier: MIT */
/*
 * Read-only walk of a (stopped) CPython process: interpreters, thread states,
 * frames, code objects, with nothing but memory reads and struct
 * ma_py_offsets.  No Python code runs in the target, no GIL is needed.
 */
#ifndef MA_PYREAD_H
#define MA_PYREAD_H

#include <stdint.h>
#include <sys/types.h>

#include "ma_pyver.h"

struct ma_mem;

struct ma_py_frame {
	const char *func; /* co_qualname (3.11+) or co_name; owned by reader */
	const char *file; /* co_filename */
	int line;	  /* -1 when unknown */
	/* 1 when this Python frame is the first one run by its C-level
	 * _PyEval_EvalFrameDefault call (3.11 is_entry, the frame just below a
	 * CSTACK shim on 3.12+, every frame on <= 3.10): used to interleave
	 * native and Python frames. */
	int is_entry;
	uint64_t frame_addr;
	uint64_t code_addr;
};

struct ma_py_thread {
	uint64_t tstate;    /* address of the PyThreadState */
	uint64_t thread_id; /* pthread_t */
	long native_tid;    /* kernel TID, 0 when unknown */
	long interp_id;
	/* threading.Thread.name of this thread, read from the threading
	 * module's _active dict; NULL when threading is not imported, the
	 * thread is not in it (started from C, _thread.start_new_thread) or
	 * it could not be read.  Owned by the reader. */
	const char *name;
	int holds_gil; /* 1: this thread holds the GIL right now */
	int nframes;
	struct ma_py_frame *frames; /* innermost first */
	/* walk stopped early: MA_PY_CUT_BAD (cycle, bad pointer) or
	 * MA_PY_CUT_DEEP (more than MA_PY_MAX_FRAMES frames, the outermost
	 * not read); 0: read to its end */
	int truncated;
};

#define MA_PY_MAX_FRAMES 4096
enum { MA_PY_CUT_BAD = 1, MA_PY_CUT_DEEP = 2 };

struct ma_py_snapshot {
	int nthreads;
	struct ma_py_thread *threads;
	/* 1: the interpreter or thread list could not be read to its end
	 * (bad pointer, cycle, limit), so threads may be missing */
	int truncated;
};

struct ma_pyreader;

/* A reader caches code objects (name, file, line table) across walks, so a
 * second snapshot of the same process reads far less memory. */
int ma_pyreader_new(struct ma_mem *m, const struct ma_py_offsets *o,
		    uint64_t runtime_addr, struct ma_pyreader **out);
void ma_pyreader_free(struct ma_pyreader *r);

/*
 * Check that the offsets describe this process: the interpreter list is
 * readable and interp->threads.head->interp == interp, and a frame's code
 * object has type "code".  0 or -EPROTO with a message saying what failed;
 * -ENODATA when the runtime has no interpreter (not initialized yet, or
 * finalized).
 */
int ma_pyreader_validate(struct ma_pyreader *r);

/* Walk every thread of every interpreter.  The snapshot's strings are owned
 * by the reader and live until ma_pyreader_free(). */
int ma_pyreader_snapshot(struct ma_pyreader *r, struct ma_py_snapshot *out);
void ma_py_snapshot_free(struct ma_py_snapshot *s);

/* One entry of the threading module's _active dict: a Thread's ident
 * (pthread_self(), PyThreadState.thread_id), its native id (gettid() in
 * the target's PID namespace; 0 when unknown) and its name.  Both ids
 * name the thread: a pthread_t is reused as soon as a thread is joined. */
struct ma_py_tname {
	uint64_t ident;
	uint64_t native_id;
	const char *name; /* owned by the reader */
};

#define MA_PY_TNAME_MAX 256 /* bytes of a thread name kept, NUL included */

/*
 * The names of the Python threads of every interpreter (threading._active
 * -> Thread._name), without stopping the process: what is read is checked
 * (types by name, sizes bounded), so a torn read gives fewer names, never
 * a wrong pointer followed far.  *out is malloc'ed (free() it), its strings
 * are the reader's.  0 (maybe with *n = 0), or -ENOMEM.
 */
int ma_pyreader_thread_names(struct ma_pyreader *r, struct ma_py_tname **out,
			     size_t *n);

/* Read a str object into buf (UTF-8), at most len-1 bytes; returns length */
int ma_pyread_unicode(struct ma_mem *m, const struct ma_py_offsets *o,
		      uint64_t addr, char *buf, size_t len);

#endif
