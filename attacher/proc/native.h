/* SPDX-License-Identifier: MIT */
/*
 * Native stacks of stopped threads, unwound by libdwfl (CFI from .eh_frame
 * or .debug_frame), with symbol names.  The threads must already be stopped
 * by ma_freeze(): libdwfl is told so and does not attach itself.
 */
#ifndef MA_NATIVE_H
#define MA_NATIVE_H

#include <elfutils/libdwfl.h>
#include <stdint.h>
#include <sys/types.h>

struct ma_native_frame {
	uint64_t pc;
	char *symbol;	    /* "read+0x12" or NULL when unknown */
	const char *module; /* basename of the module, or NULL */
	int is_eval;	    /* this frame runs CPython's eval loop */
	int activation;	    /* pc is where it stopped, not a return address */
};

struct ma_native_stack {
	int n;
	struct ma_native_frame *v; /* innermost first */
	int error; /* negative errno when unwinding stopped early */
	int cut;   /* stopped at max_frames, the outer frames not read */
	/* libdwfl found no way past the outermost frame read, before the
	 * stack's end (code without unwind information: JIT code, the
	 * trampolines of -X perf): why, in libdwfl's words, else "" */
	char stopped[96];
};

/* Load every module's unwind and symbol tables now, while the process still
 * runs, so that unwinding it while frozen only reads its stacks */
void ma_native_preload(Dwfl *dwfl);

/* Prepare dwfl (from ma_target) for unwinding the stopped process pid */
int ma_native_attach(Dwfl *dwfl, pid_t pid);
int ma_native_unwind(Dwfl *dwfl, pid_t tid, int max_frames,
		     struct ma_native_stack *out);
/* Name the frames of an unwound stack (module, symbol+offset, is_eval):
 * slow, do it once the process runs again */
void ma_native_symbolize(Dwfl *dwfl, struct ma_native_stack *st);
void ma_native_stack_free(struct ma_native_stack *s);

#endif
