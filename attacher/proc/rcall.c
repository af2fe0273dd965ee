/* SPDX-License-Identifier: MIT */
#include "rcall.h"

#include <cpuid.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errors.h"
#include "procfs.h"
#include "ptrace.h"
#include "symbols.h"
#include "teststep.h"

/* The kernel's x86_64 signal frame (arch/x86/include/uapi/asm/sigcontext.h,
 * include/uapi/asm-generic/ucontext.h), not glibc's larger ucontext_t. */
struct k_sigcontext {
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
	uint16_t cs, gs, fs, ss;
	uint64_t err, trapno, oldmask, cr2;
	uint64_t fpstate;
	uint64_t reserved1[8];
};

struct k_stack {
	uint64_t ss_sp;
	int32_t ss_flags;
	int32_t _pad;
	uint64_t ss_size;
};

struct k_ucontext {
	uint64_t uc_flags;
	uint64_t uc_link;
	struct k_stack uc_stack;
	struct k_sigcontext uc_mcontext;
	uint64_t uc_sigmask;
};

struct k_rt_sigframe {
	uint64_t pretcode; /* our function's return address */
	struct k_ucontext uc;
	uint8_t info[128];
};

_Static_assert(sizeof(struct k_sigcontext) == 256, "sigcontext layout");
_Static_assert(sizeof(struct k_rt_sigframe) == 440, "rt_sigframe layout");

#define UC_FP_XSTATE	     0x1
#define UC_SIGCONTEXT_SS     0x2
#define UC_STRICT_RESTORE_SS 0x4
#ifndef FP_XSTATE_MAGIC1
#define FP_XSTATE_MAGIC1 0x46505853u
#endif
#ifndef FP_XSTATE_MAGIC2
#define FP_XSTATE_MAGIC2 0x46505845u
#endif
#define SW_RESERVED_OFF 464 /* fxsave area: sw_reserved[48] */

/* Restart codes the kernel leaves in rax of a thread stopped inside a
 * system call (include/linux/errno.h, not exported to user space) */
#define ERESTARTSYS	      512
#define ERESTARTNOINTR	      513
#define ERESTARTNOHAND	      514
#define ERESTART_RESTARTBLOCK 516

struct fx_sw_bytes {
	uint32_t magic1;
	uint32_t extended_size;
	uint64_t xfeatures;
	uint32_t xstate_size;
	uint32_t padding[7];
};

int ma_rcall_env_init(pid_t pid, struct ma_rcall_env *env)
{
	static const uint8_t restore_rt[] = { 0x48, 0xc7, 0xc0, 0x0f, 0x00,
					      0x00, 0x00, 0x0f, 0x05 };
	struct ma_maps maps;
	int err = ma_maps_read(pid, &maps);

	if (err)
		return ma_err(err, "process %d: reading maps: %s", (int)pid,
			      strerror(-err));
	memset(env, 0, sizeof(*env));
	/* Search libc's executable mappings for __restore_rt's bytes, in the
	 * file (what is mapped is what the file holds) */
	for (size_t i = 0; i < maps.n && !env->restore_rt; i++) {
		const struct ma_map *mp = &maps.v[i];
		const char *b = strrchr(mp->path, '/');

		if (mp->perms[2] != 'x' || !b || strncmp(b + 1, "libc.so", 7))
			continue;
		char local[4200];
		FILE *f;

		ma_proc_map_path(pid, mp->path, local, sizeof(local));
		f = fopen(local, "rb");
		if (!f)
			f = fopen(mp->path, "rb");
		if (!f)
			continue;
		size_t len = mp->end - mp->start;
		uint8_t *buf = malloc(len);

		if (buf && fseek(f, (long)mp->offset, SEEK_SET) == 0) {
			size_t n = fread(buf, 1, len, f);

			for (size_t k = 0; k + sizeof(restore_rt) <= n; k++)
				if (buf[k] == 0x48 &&
				    !memcmp(buf + k, restore_rt,
					    sizeof(restore_rt))) {
					env->restore_rt = mp->start + k;
					break;
				}
		}
		free(buf);
		fclose(f);
	}
	size_t mapped = maps.n;

	ma_maps_free(&maps);
	if (!env->restore_rt) {
		/* an exiting process has its memory gone before it is a
		 * zombie: no mapping at all (seen once in
		 * bench/regrtest_sweep.py, the target ending) */
		if (!mapped || ma_proc_ended(pid)) {
			ma_err_set_exit(MA_EXIT_NOPROC);
			return ma_err(-ESRCH, "process %d exited", (int)pid);
		}
		char note[PATH_MAX + 256];

		if (ma_proc_deleted_note(pid, "libc.so", note,
					 sizeof(note))[0]) {
			ma_err_set_exit(MA_EXIT_PERM);
			return ma_err(-EACCES,
				      "process %d: cannot read its "
				      "libc%s",
				      (int)pid, note);
		}
		return ma_err(-ENOENT,
			      "process %d: libc's rt_sigreturn trampoline not "
			      "found (not glibc on x86_64?)",
			      (int)pid);
	}
	return 0;
}

static int write_mem(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
	struct iovec local = { .iov_base = (void *)buf, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)addr,
				.iov_len = len };

	if (process_vm_writev(pid, &local, 1, &remote, 1, 0) == (ssize_t)len)
		return 0;
	/* Fall back to /proc/PID/mem (e.g. process_vm_writev blocked) */
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	ssize_t n = pwrite(fd, buf, len, (off_t)addr);
	int err = n == (ssize_t)len ? 0 : (n < 0 ? -errno : -EIO);

	close(fd);
	return err;
}

/* The registers the thread would resume with if it were detached now: an
 * interrupted system call rewound to its `syscall` instruction the way the
 * kernel restarts it, so that the call is re-issued rather than failing
 * with EINTR. */
static void restart_adjust(struct user_regs_struct *r)
{
	long rax = (long)r->rax;

	if ((long)r->orig_rax < 0)
		return;
	switch (-rax) {
	case ERESTARTSYS:
	case ERESTARTNOINTR:
	case ERESTARTNOHAND:
		r->rax = r->orig_rax;
		r->rip -= 2;
		break;
	case ERESTART_RESTARTBLOCK:
		r->rax = SYS_restart_syscall;
		r->rip -= 2;
		break;
	default:
		break;
	}
	r->orig_rax = (unsigned long long)-1;
}

static void fill_sigcontext(struct k_sigcontext *sc,
			    const struct user_regs_struct *r)
{
	sc->r8 = r->r8;
	sc->r9 = r->r9;
	sc->r10 = r->r10;
	sc->r11 = r->r11;
	sc->r12 = r->r12;
	sc->r13 = r->r13;
	sc->r14 = r->r14;
	sc->r15 = r->r15;
	sc->rdi = r->rdi;
	sc->rsi = r->rsi;
	sc->rbp = r->rbp;
	sc->rbx = r->rbx;
	sc->rdx = r->rdx;
	sc->rax = r->rax;
	sc->rcx = r->rcx;
	sc->rsp = r->rsp;
	sc->rip = r->rip;
	sc->eflags = r->eflags;
	sc->cs = (uint16_t)r->cs;
	sc->gs = (uint16_t)r->gs;
	sc->fs = (uint16_t)r->fs;
	sc->ss = (uint16_t)r->ss;
}

struct call_state {
	pid_t tid;
	struct user_regs_struct saved;
	uint8_t *xstate;
	size_t xsize;
	uint64_t sigmask;
};

/* Bytes of a standard-format XSAVE image that holds the state components
 * in mask: the end of the furthest one (CPUID leaf 0xD gives each
 * component's offset and size), at least the legacy area and header */
static uint32_t xsave_extent(uint64_t mask)
{
	uint32_t size = 576;

	for (unsigned int i = 2; i < 63; i++) {
		unsigned int eax, ebx, ecx, edx;

		if (!(mask >> i & 1) ||
		    !__get_cpuid_count(0xd, i, &eax, &ebx, &ecx, &edx))
			continue;
		if (eax && ebx + eax > size)
			size = ebx + eax;
	}
	return size;
}

/* Build the frame: [data][xstate, 64-aligned][rt_sigframe] below the red
 * zone; returns the frame address (16n + 8, as after a call) */
static int build_frame(struct call_state *cs, const struct ma_rcall_env *env,
		       const struct ma_rcall *c, uint64_t *frame_out,
		       uint64_t *data_out)
{
	struct user_regs_struct r = cs->saved;
	struct fx_sw_bytes sw;
	uint64_t sp, data_addr, fp_addr, frame;
	size_t fp_len;
	int err;

	restart_adjust(&r);
	/* ptrace gives the XSAVE image in the standard format, with XCR0 in
	 * sw_reserved; a signal frame needs the software bytes there instead,
	 * and MAGIC2 right after the image, or the kernel restores only the
	 * legacy x87/SSE part on sigreturn and the upper halves of the vector
	 * registers are lost.  The image's size must not exceed what the
	 * kernel takes from this thread's signal frames: ptrace's buffer
	 * holds every feature of XCR0, AMX tile data included (8 KiB more
	 * than a thread without AMX permission may give back), so the size
	 * is that of the features the image holds. */
	uint64_t bv;
	uint32_t xs;

	memcpy(&bv, cs->xstate + 512, sizeof(bv));
	xs = xsave_extent(bv | 3);
	if (xs > cs->xsize)
		xs = (uint32_t)cs->xsize;
	sw = (struct fx_sw_bytes){
		.magic1 = FP_XSTATE_MAGIC1,
		.extended_size = xs + 4,
		.xfeatures = bv | 3,
		.xstate_size = xs,
	};
	memcpy(cs->xstate + SW_RESERVED_OFF, &sw, sizeof(sw));
	fp_len = sw.xstate_size + 4;

	sp = cs->saved.rsp - 128 - 256; /* red zone, and some slack */
	data_addr = (sp - c->data_len) & ~15ull;
	fp_addr = (data_addr - fp_len) & ~63ull;
	frame = ((fp_addr - sizeof(struct k_rt_sigframe)) & ~15ull) - 8;

	size_t total = sp - frame;
	uint8_t *img = calloc(1, total);

	if (!img)
		return -ENOMEM;
	struct k_rt_sigframe *f = (struct k_rt_sigframe *)img;

	f->pretcode = env->restore_rt;
	f->uc.uc_flags = UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
	/* An invalid mode makes the kernel's restore_altstack() a no-op
	 * (EINVAL, ignored): the thread keeps its sigaltstack as it is,
	 * whatever it is — faulthandler installs one. */
	f->uc.uc_stack.ss_flags = 3;
	fill_sigcontext(&f->uc.uc_mcontext, &r);
	f->uc.uc_mcontext.fpstate = fp_addr;
	f->uc.uc_sigmask = cs->sigmask;
	memcpy(img + (fp_addr - frame), cs->xstate, sw.xstate_size);
	uint32_t m2 = FP_XSTATE_MAGIC2;

	memcpy(img + (fp_addr - frame) + sw.xstate_size, &m2, 4);
	if (c->data_len)
		memcpy(img + (data_addr - frame), c->data, c->data_len);
	err = write_mem(cs->tid, frame, img, total);
	free(img);
	if (err)
		return ma_err(
			err, "thread %d: writing the call frame at %#lx: %s",
			(int)cs->tid, (unsigned long)frame, strerror(-err));
	*frame_out = frame;
	*data_out = data_addr;
	return 0;
}

/* Put the thread back exactly as it was (used only when the call cannot
 * even start, or faulted in our own trampoline) */
static void restore_now(struct call_state *cs)
{
	struct iovec iov = { .iov_base = cs->xstate, .iov_len = cs->xsize };

	ptrace(PTRACE_SETREGS, cs->tid, NULL, &cs->saved);
	ptrace(PTRACE_SETREGSET, cs->tid, (void *)NT_X86_XSTATE, &iov);
	ptrace(PTRACE_SETSIGMASK, cs->tid, (void *)sizeof(cs->sigmask),
	       &cs->sigmask);
}

static int wait_tid(pid_t tid, int *status, uint64_t deadline)
{
	sigset_t chld;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	for (;;) {
		pid_t r = waitpid(tid, status, __WALL | WNOHANG);

		if (r == tid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		uint64_t now = ma_now_ns();

		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t left = deadline - now;
		struct timespec ts = { 0,
				       left > 1000000 ? 1000000 : (long)left };

		sigtimedwait(&chld, NULL, &ts);
	}
}

/* Test step "rcall.NAME.WHAT" (teststep.h) */
static void step(const struct ma_rcall *c, const char *what)
{
	char name[96];

	if (!ma_step_on)
		return;
	snprintf(name, sizeof(name), "rcall.%s.%s", c->name ? c->name : "call",
		 what);
	ma_step_slow(name);
}

int ma_rcall(struct ma_freeze *fz, pid_t tid, const struct ma_rcall_env *env,
	     const struct ma_rcall *c, struct ma_rcall_result *res)
{
	struct call_state cs = { .tid = tid };
	struct user_regs_struct r;
	struct iovec iov;
	uint64_t frame = 0, data_addr = 0, t0 = ma_now_ns(), deadline;
	int err, status, phase_done = 0;
	long last_entry_nr = -1;

	memset(res, 0, sizeof(*res));
	res->syscall_ret = -ENOENT;
	res->failed_nr = res->failed_ret = 0;
	if (ptrace(PTRACE_SETOPTIONS, tid, NULL,
		   (void *)(uintptr_t)(PTRACE_O_TRACESYSGOOD | c->options)) < 0)
		return ma_err(-errno, "thread %d: PTRACE_SETOPTIONS: %s",
			      (int)tid, strerror(errno));
	if (ptrace(PTRACE_GETREGS, tid, NULL, &cs.saved) < 0)
		return ma_err(-errno, "thread %d: PTRACE_GETREGS: %s", (int)tid,
			      strerror(errno));
	cs.xsize = 64 * 1024;
	cs.xstate = calloc(1, cs.xsize);
	if (!cs.xstate)
		return -ENOMEM;
	iov = (struct iovec){ .iov_base = cs.xstate, .iov_len = cs.xsize };
	if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &iov) < 0) {
		err = ma_err(-errno, "thread %d: PTRACE_GETREGSET(xstate): %s",
			     (int)tid, strerror(errno));
		goto out;
	}
	cs.xsize = iov.iov_len;
	if (ptrace(PTRACE_GETSIGMASK, tid, (void *)sizeof(cs.sigmask),
		   &cs.sigmask) < 0) {
		err = ma_err(-errno, "thread %d: PTRACE_GETSIGMASK: %s",
			     (int)tid, strerror(errno));
		goto out;
	}
	step(c, "regs-saved");
	err = build_frame(&cs, env, c, &frame, &data_addr);
	if (err)
		goto out;
	step(c, "frame-written");

	r = cs.saved;
	r.rip = c->fn;
	r.rsp = frame;
	r.rax = 0;
	r.orig_rax = (unsigned long long)-1; /* no syscall restart on resume */
	r.eflags &= ~0x400ull; /* DF clear, as the ABI requires at a call */
	uint64_t *argp[6] = { (uint64_t *)&r.rdi, (uint64_t *)&r.rsi,
			      (uint64_t *)&r.rdx, (uint64_t *)&r.rcx,
			      (uint64_t *)&r.r8,  (uint64_t *)&r.r9 };

	for (int i = 0; i < 6; i++) {
		uint64_t a = c->args[i];

		if ((a & ~0xfffull) == MA_RCALL_DATA)
			a = data_addr + (a & 0xfff);
		*argp[i] = a;
	}
	/* From this store on, the thread is committed to the call and will
	 * return through the frame by itself, with or without us. */
	if (ptrace(PTRACE_SETREGS, tid, NULL, &r) < 0) {
		err = ma_err(-errno, "thread %d: PTRACE_SETREGS: %s", (int)tid,
			     strerror(errno));
		goto out;
	}
	step(c, "committed");

	deadline = ma_now_ns() + (uint64_t)c->timeout_ms * 1000000ull;
	/* A signal the thread was about to take when the freeze stopped it
	 * goes in with the first resume: its handler runs first, on the stack
	 * below our frame, and returns into the call.  Held until the thaw
	 * instead, it would be lost if memattach died after the call (the
	 * thread then stops at a system call, where nothing is pending). */
	int sig = ma_freeze_take_signal(fz, tid);

	for (;;) {
		if (ptrace(PTRACE_SYSCALL, tid, NULL, (void *)(uintptr_t)sig) <
		    0) {
			err = ma_err(-errno, "thread %d: PTRACE_SYSCALL: %s",
				     (int)tid, strerror(errno));
			goto out;
		}
		sig = 0;
		err = wait_tid(tid, &status, deadline);
		if (err == -ETIMEDOUT && !res->others_resumed) {
			/* A thread we keep stopped may hold a lock the call
			 * needs (a malloc arena, the loader lock): let the
			 * others run and wait as long again. */
			ma_freeze_resume_others(fz, tid);
			res->others_resumed = 1;
			deadline = ma_now_ns() +
				   (uint64_t)c->timeout_ms * 1000000ull;
			err = wait_tid(tid, &status, deadline);
		}
		if (err) {
			err = ma_err(
				err,
				"thread %d: the remote call did not finish "
				"in time (%s); it will restore the thread "
				"by itself when it does",
				(int)tid, strerror(-err));
			goto out;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			err = ma_err(-ESRCH,
				     "thread %d exited during the remote call",
				     (int)tid);
			ma_freeze_forget(fz, tid);
			goto out;
		}
		if (!WIFSTOPPED(status))
			continue;
		int stopsig = WSTOPSIG(status), event = status >> 16;

		if (stopsig == (SIGTRAP | 0x80)) {
			struct __ptrace_syscall_info si;

			if (ptrace(PTRACE_GET_SYSCALL_INFO, tid,
				   (void *)sizeof(si), &si) <= 0)
				continue;
			if (si.op == PTRACE_SYSCALL_INFO_ENTRY) {
				last_entry_nr = (long)si.entry.nr;
				/* Ours, not the return of a signal handler that
				 * ran during the call (same trampoline): the
				 * stack pointer is just above our frame */
				if (si.entry.nr == SYS_rt_sigreturn &&
				    si.instruction_pointer ==
					    env->restore_rt + 9 &&
				    si.stack_pointer == frame + 8)
					phase_done = 1;
				step(c, phase_done ? "sigreturn"
						   : "syscall-entry");
			} else if (si.op == PTRACE_SYSCALL_INFO_EXIT) {
				if (phase_done)
					break; /* rt_sigreturn has run */
				if (c->want && last_entry_nr == c->want_syscall)
					res->syscall_ret = si.exit.rval;
				if (si.exit.is_error) {
					res->failed_nr = last_entry_nr;
					res->failed_ret = si.exit.rval;
				}
				step(c, "syscall-exit");
			}
			continue;
		}
		if (event == PTRACE_EVENT_STOP) {
			/* group-stop or a stray interrupt: keep going */
			continue;
		}
		if (event == PTRACE_EVENT_CLONE || event == PTRACE_EVENT_FORK ||
		    event == PTRACE_EVENT_VFORK) {
			unsigned long msg = 0;

			if (ptrace(PTRACE_GETEVENTMSG, tid, NULL, &msg) == 0)
				res->child = (pid_t)msg;
			step(c, "cloned");
			continue;
		}
		/* A signal for the thread.  A fault inside our own trampoline
		 * means the frame is wrong: put the thread back by hand and
		 * swallow the signal rather than crash the target. */
		if ((stopsig == SIGSEGV || stopsig == SIGBUS ||
		     stopsig == SIGILL) &&
		    ptrace(PTRACE_GETREGS, tid, NULL, &r) == 0 &&
		    (r.rip == env->restore_rt || r.rip == env->restore_rt + 9 ||
		     r.rip == c->fn)) {
			restore_now(&cs);
			err = ma_err(
				-EFAULT,
				"thread %d: the remote call faulted (signal "
				"%d at %#llx); thread restored",
				(int)tid, stopsig, r.rip);
			goto out;
		}
		/* Any other signal is delivered now, as it would be during any
		 * call the thread makes itself: its handler runs on the stack
		 * below our frame and returns into the call. */
		sig = stopsig;
		step(c, "signal");
	}
	step(c, "returned");
	err = 0;
out:
	/* The options were for this call only */
	if (c->options)
		ptrace(PTRACE_SETOPTIONS, tid, NULL,
		       (void *)(uintptr_t)PTRACE_O_TRACESYSGOOD);
	res->ns = ma_now_ns() - t0;
	free(cs.xstate);
	return err;
}
