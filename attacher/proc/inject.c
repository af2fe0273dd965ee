/* SPDX-License-Identifier: MIT */
#include "inject.h"
#include "ma_agg.h"
#include "ma_sample.h"

#include <dirent.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <time.h>
#include <unistd.h>

#include "discover.h"
#include "errors.h"
#include "holder.h"
#include "memread.h"
#include "native.h"
#include "procfs.h"
#include "ptrace.h"
#include "rcall.h"
#include "symbols.h"
#include "teststep.h"

/*
 * The payload image's memfd is named after its build: "memattach-payload-"
 * and the first 16 hex digits of the build ID (img.memfd_name), so that
 * the payloads of several memattach builds can sit side by side in one
 * process, each build finding its own (memattach upgraded while the
 * process runs on: docs/architecture.md, "Payloads of several builds").
 * Builds before December 2026 named it "memattach-payload" alone.  Every
 * name starts so, which is how maps and descriptor links show any build's
 * image: "/memfd:memattach-payload... (deleted)".
 */
#define PAYLOAD_MEMFD_PREFIX "memattach-payload"
#define PAYLOAD_MAPPED_ANY   "/memfd:" PAYLOAD_MEMFD_PREFIX

/* Defined by the assembler file CMake generates around the built payload */
extern const uint8_t ma_payload_image_start[];
extern const uint8_t ma_payload_image_end[];

const uint8_t *ma_payload_image(size_t *len)
{
	*len = (size_t)(ma_payload_image_end - ma_payload_image_start);
	return ma_payload_image_start;
}

/* Link-time addresses of the payload's exports, read once from the image */
static struct {
	int done, err;
	uint64_t ma_start, ma_stop, ma_ctl, ma_heap_fork, ma_heap_box,
		ma_heap_copies, ma_heap_reap;
	char build_id[64];
	/* this build's memfd name, and its line in maps as a needle */
	char memfd_name[48], mapped[80];
} img;

static int image_symbols(void)
{
	size_t len;
	const uint8_t *p = ma_payload_image(&len);
	char path[64];
	struct ma_elf *e;
	int fd, err;

	if (img.done)
		return img.err;
	img.done = 1;
	if (len < 64)
		return img.err = ma_err(-ENOEXEC, "this memattach was built "
						  "without its payload");
	fd = (int)syscall(SYS_memfd_create, "memattach-image", MFD_CLOEXEC);
	if (fd < 0)
		return img.err = ma_err(-errno, "memfd_create: %s",
					strerror(errno));
	if (write(fd, p, len) != (ssize_t)len) {
		close(fd);
		return img.err = ma_err(-EIO, "writing the payload image");
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	err = ma_elf_open(path, &e);
	if (!err) {
		err = ma_elf_symbol(e, "ma_start", &img.ma_start, NULL);
		if (!err)
			err = ma_elf_symbol(e, "ma_stop", &img.ma_stop, NULL);
		if (!err)
			err = ma_elf_symbol(e, "ma_ctl", &img.ma_ctl, NULL);
		if (!err)
			err = ma_elf_symbol(e, "ma_heap_fork",
					    &img.ma_heap_fork, NULL);
		if (!err)
			err = ma_elf_symbol(e, "ma_heap_box", &img.ma_heap_box,
					    NULL);
		if (!err)
			err = ma_elf_symbol(e, "ma_heap_copies",
					    &img.ma_heap_copies, NULL);
		if (!err)
			err = ma_elf_symbol(e, "ma_heap_reap",
					    &img.ma_heap_reap, NULL);
		snprintf(img.build_id, sizeof(img.build_id), "%s",
			 ma_elf_build_id(e));
		snprintf(img.memfd_name, sizeof(img.memfd_name), "%s-%.16s",
			 PAYLOAD_MEMFD_PREFIX, img.build_id);
		snprintf(img.mapped, sizeof(img.mapped), "/memfd:%s (deleted)",
			 img.memfd_name);
		ma_elf_close(e);
		if (err)
			ma_err(err, "payload image lacks one of its exports");
	}
	close(fd);
	return img.err = err;
}

/* Address of a symbol of a mapped library (basename prefix) in pid */
/* The ELF file of the first mapped library whose basename starts with lib
 * (opened as the target sees it), and its load bias; NULL when none */
static struct ma_elf *open_lib(const struct ma_target *t, const char *lib,
			       uint64_t *bias)
{
	for (size_t i = 0; i < t->maps.n; i++) {
		const struct ma_map *mp = &t->maps.v[i];
		const char *b = strrchr(mp->path, '/');
		struct ma_elf *e;
		char local[PATH_MAX + 32];
		uint64_t off, first;

		if (!b || strncmp(b + 1, lib, strlen(lib)) || mp->offset)
			continue;
		ma_proc_map_path(t->pid, mp->path, local, sizeof(local));
		if (ma_elf_open(local, &e) && ma_elf_open(mp->path, &e))
			continue;
		first = ma_elf_first_load(e, &off);
		if (off != mp->offset) {
			ma_elf_close(e);
			continue;
		}
		*bias = mp->start - first;
		return e;
	}
	return NULL;
}

/* Address of a symbol of a mapped library (basename prefix) in pid */
static int lib_symbol(const struct ma_target *t, const char *lib,
		      const char *name, uint64_t *addr)
{
	uint64_t bias, v;
	struct ma_elf *e = open_lib(t, lib, &bias);
	int err;

	if (!e)
		return -ENOENT;
	err = ma_elf_symbol(e, name, &v, NULL);
	ma_elf_close(e);
	if (!err)
		*addr = v + bias;
	return err;
}

/* Whose payload image a mapping's path is: PAYLOAD_NONE, PAYLOAD_OURS
 * (this build's name), PAYLOAD_OTHER (another build's, or an older
 * build's that named them all alike) */
enum { PAYLOAD_NONE, PAYLOAD_OURS, PAYLOAD_OTHER };

static int payload_kind(const char *path)
{
	size_t n;

	if (strncmp(path, PAYLOAD_MAPPED_ANY, strlen(PAYLOAD_MAPPED_ANY)))
		return PAYLOAD_NONE;
	if (!img.memfd_name[0])
		return PAYLOAD_OTHER;
	/* the name, then " (deleted)", or the end where a parser cut it */
	n = strlen("/memfd:") + strlen(img.memfd_name);
	if (!strncmp(path, img.mapped, n) &&
	    (!path[n] || !strcmp(path + n, " (deleted)")))
		return PAYLOAD_OURS;
	return PAYLOAD_OTHER;
}

/* This build's payload mapping in the target, if loaded (the image's
 * first mapping, at offset 0); others: how many other builds' payloads
 * are loaded, and the first one's base */
static uint64_t payload_base(const struct ma_maps *m, int *others,
			     uint64_t *other_base)
{
	uint64_t base = 0;

	*others = 0;
	*other_base = 0;
	for (size_t i = 0; i < m->n; i++) {
		int k = m->v[i].offset ? PAYLOAD_NONE
				       : payload_kind(m->v[i].path);

		if (k == PAYLOAD_OURS && !base)
			base = m->v[i].start;
		else if (k == PAYLOAD_OTHER && !(*others)++)
			*other_base = m->v[i].start;
	}
	return base;
}

/* The same, reading maps only as far as this build's payload's line (it
 * comes early when there; a process with a hundred libraries takes
 * milliseconds to read whole): 0 when not loaded */
static uint64_t payload_base_now(pid_t pid)
{
	uint64_t base;

	return ma_maps_find_start(pid, img.mapped, &base) ? 0 : base;
}

/* Whether the payload's code is mapped executable in m.  A dlopen that
 * failed part-way (its mmap or mprotect of the code refused: a seccomp
 * filter, an LSM) leaves the image's first mapping behind, read-only: its
 * line is in maps, its code is not there to run */
static int payload_code_mapped(const struct ma_maps *m, uint64_t base)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].start >= base && m->v[i].perms[2] == 'x' &&
		    payload_kind(m->v[i].path) == PAYLOAD_OURS)
			return 1;
	return 0;
}

/*
 * Whether a live session's ring is mapped in the target (any build's:
 * their rings are all named MA_RING_MEMFD_NAME).  A ring whose header (of
 * this layout: its magic and version) says its session ended is not one:
 * a payload keeps a ring mapped past its stop when a thread stayed in a
 * recording section (docs/payload.md), and that ring must not refuse
 * every later attach as another build's session for the process's life.
 */
static int ring_mapped(struct ma_mem *mem, const struct ma_maps *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct ma_ring_hdr h;

		if (!strstr(m->v[i].path, "/memfd:" MA_RING_MEMFD_NAME) ||
		    m->v[i].offset)
			continue;
		if (ma_mem_read(mem, m->v[i].start, &h, sizeof(h)) ||
		    h.magic != MA_RING_MAGIC || h.version != MA_RING_VERSION)
			return 1;
		if (h.state != MA_STATE_STOPPED &&
		    h.state != MA_STATE_ORPHANED && h.state != MA_STATE_FAILED)
			return 1;
	}
	return 0;
}

/* 1 when the process runs under a seccomp filter (Seccomp: 2) */
static int under_seccomp_filter(pid_t pid)
{
	char path[64], *text = NULL;
	const char *p;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (ma_proc_slurp(path, &text, NULL))
		return 0;
	p = strstr(text, "\nSeccomp:");
	ret = p && atoi(p + 9) == 2;
	free(text);
	return ret;
}

/* what a refusal (EPERM, EACCES) in the target may be due to */
static const char *refused_why(pid_t pid, long ret)
{
	if (ret != -EPERM && ret != -EACCES)
		return "";
	return under_seccomp_filter(pid)
		       ? " (the process runs under a seccomp filter, which "
			 "may refuse it)"
		       : " (a security policy of the process may refuse it)";
}

/* The build ID note of the loaded payload, from the target's memory (it
 * sits in the first page of the first mapping) */
static void loaded_build_id(struct ma_mem *m, uint64_t base, char *out,
			    size_t len)
{
	uint8_t page[4096];

	out[0] = '\0';
	if (ma_mem_read(m, base, page, sizeof(page)))
		return;
	for (size_t i = 0; i + 16 + 20 <= sizeof(page); i += 4) {
		uint32_t namesz, descsz, type;

		memcpy(&namesz, page + i, 4);
		memcpy(&descsz, page + i + 4, 4);
		memcpy(&type, page + i + 8, 4);
		if (namesz != 4 || type != 3 /* NT_GNU_BUILD_ID */ ||
		    descsz < 8 || descsz > 32 ||
		    memcmp(page + i + 12, "GNU", 4) ||
		    i + 16 + descsz > sizeof(page))
			continue;
		for (uint32_t k = 0; k < descsz && 2 * k + 2 < len; k++)
			snprintf(out + 2 * k, 3, "%02x", page[i + 16 + k]);
		return;
	}
}

int ma_payload_in(const struct ma_payload_info *pi, unsigned int states)
{
	return pi->loaded && (states >> pi->ctl.state & 1);
}

void ma_payload_wait(struct ma_target *t, struct ma_payload_info *pi,
		     unsigned int states, int tries)
{
	for (int i = 0; i < tries && ma_payload_in(pi, states); i++) {
		usleep(100000);
		ma_payload_probe(t, pi);
	}
}

/* A payload whose image an earlier load left without its code */
#define NO_CODE_WHY                                                            \
	"process %d holds the remains of a payload that failed to load (its "  \
	"code is not mapped executable: a seccomp filter or a security "       \
	"policy refused it); memattach cannot track this process"

/* A payload loaded that cmd ("attach", "heap") cannot use: another
 * build's, or the remains of a load that failed.  0, or -errno and the
 * message */
static int payload_unusable(const struct ma_target *t,
			    const struct ma_payload_info *pi, const char *cmd)
{
	/* under this build's name, another build ID: an image changed in
	 * the target, or two builds whose IDs share their first 16 digits */
	if (pi->loaded && !pi->same_build)
		return ma_err(-EEXIST,
			      "%s: process %d holds a payload under this "
			      "build's name whose build ID differs (its image "
			      "was changed in the process?); memattach cannot "
			      "use it, and a payload stays loaded for the life "
			      "of the process",
			      cmd, (int)t->pid);
	if (pi->no_code) {
		ma_err_set_exit(MA_EXIT_PERM);
		return ma_err(-ENOEXEC, "%s: " NO_CODE_WHY, cmd, (int)t->pid);
	}
	return 0;
}

/* The refusal of a process another memattach tracks (h: the one that maps
 * its ring), exit 9: who tracks it, and what to do, up to the detach
 * command it names */
static int err_tracked(pid_t pid, const struct ma_holder *h, const char *who,
		       const char *then)
{
	int renamed = strcmp(h->comm, "memattach") != 0;

	ma_err_set_exit(MA_EXIT_BUSY);
	return ma_err(-EALREADY,
		      "PID %d is already tracked by %s (PID %d%s%s)%s%s; "
		      "%sdetach %d'",
		      (int)pid, who, (int)h->pid, renamed ? ", " : "",
		      renamed ? h->comm : "", h->since_text[0] ? " since " : "",
		      h->since_text, then, (int)pid);
}

/*
 * Another build's session in the target (its ring mapped): refused as a
 * second attach of this build is, at once when a live memattach holds its
 * ring, else after a wait: a payload whose memattach died stops by itself
 * within a second or two, unmapping its ring.  0 when none (any more).
 */
static int other_build_busy(struct ma_target *t, struct ma_payload_info *pi)
{
	struct ma_holder h;
	int held = 0;

	for (int i = 0; pi->other_busy; i++) {
		held = !ma_ring_holder_by_maps(t->pid, &t->maps, &h);
		if (held || i == 25)
			break;
		usleep(100000);
		ma_payload_probe(t, pi);
	}
	if (!pi->other_busy)
		return 0;
	if (held)
		return err_tracked(t->pid, &h, "another memattach build",
				   "stop it first, or use that memattach's '");
	ma_err_set_exit(MA_EXIT_BUSY);
	return ma_err(-EALREADY,
		      "process %d is already being tracked by another "
		      "memattach build (or one that was killed moments ago)",
		      (int)t->pid);
}

int ma_err_busy(pid_t pid, const struct ma_payload_info *pi)
{
	struct ma_holder h;

	if (ma_ring_holder(pid, pi->ctl.ring_fd, &h))
		return 0;
	return err_tracked(pid, &h, "memattach",
			   "stop it first or use 'memattach ");
}

int ma_payload_probe(struct ma_target *t, struct ma_payload_info *pi)
{
	int noimg;

	memset(pi, 0, sizeof(*pi));
	ma_maps_free(&t->maps);
	if (ma_maps_read(t->pid, &t->maps))
		return -ESRCH;
	/* without the image's name every payload is another build's */
	noimg = image_symbols();
	pi->base = payload_base(&t->maps, &pi->others, &pi->other_base);
	if (pi->base) {
		char bid[64];

		pi->loaded = 1;
		pi->no_code = !payload_code_mapped(&t->maps, pi->base);
		loaded_build_id(t->mem, pi->base, bid, sizeof(bid));
		pi->same_build = !noimg && bid[0] && !strcmp(bid, img.build_id);
		if (pi->same_build)
			ma_mem_read(t->mem, pi->base + img.ma_ctl, &pi->ctl,
				    sizeof(pi->ctl));
	}
	/* Another build's session: a ring mapped that this build's payload
	 * does not account for (an older memattach attached, upgraded since
	 * or installed beside this one) */
	pi->other_busy =
		pi->others && ring_mapped(t->mem, &t->maps) &&
		!(pi->same_build && ma_payload_in(pi, MA_PAYLOAD_BUSY));
	return 0;
}

/*
 * Where a thread must not be when it is made to run dlopen() and ma_start():
 * inside malloc & co (it may hold an arena lock, or be half-way through
 * changing the heap), inside the dynamic loader (its locks), inside
 * dlopen/dl_iterate_phdr/fork (the same locks, taken from libc), inside
 * CPython's allocator switch, or inside the payload itself.
 *
 * Checking this by unwinding each candidate's stack with libdwfl costs ~5 ms
 * of freeze.  A thread that is inside one of those functions has a return
 * address into it among the live words of its stack, near the stack
 * pointer; so the check reads 16 KiB above the stack pointer in one
 * process_vm_readv and looks every word up in the sorted code ranges.  A
 * stale word that happens to look like such an address only costs a retry.
 */
struct code_range {
	uint64_t lo, hi;
	const char *what;
	/* 1: no thread at all may be in here (it holds the loader's lock,
	 * which the hijacked thread's dlopen() would wait for forever);
	 * 0: only the hijacked thread may not (malloc: a lock another thread
	 * holds is released once the others are let run) */
	int global;
};

struct unsafe_ranges {
	struct code_range *v;
	size_t n, cap;
	/* libc has dlopen (glibc 2.34 and later: libdl is empty), so that
	 * every way into the loader with its lock taken passes through one
	 * of libc's ranges (spared_in) */
	int libc_dl;
};

static const char LOADER_WHAT[] = "the dynamic loader";

static void add_range(struct unsafe_ranges *u, uint64_t lo, uint64_t hi,
		      const char *what, int global)
{
	if (hi <= lo)
		return;
	if (u->n == u->cap) {
		size_t ncap = u->cap ? u->cap * 2 : 64;
		struct code_range *nv = realloc(u->v, ncap * sizeof(*nv));

		if (!nv)
			return;
		u->v = nv;
		u->cap = ncap;
	}
	u->v[u->n++] = (struct code_range){ lo, hi, what, global };
}

static int cmp_range(const void *a, const void *b)
{
	const struct code_range *x = a, *y = b;

	return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Exported functions of a mapped library, by name, as ranges */
static void add_lib_functions(struct unsafe_ranges *u,
			      const struct ma_target *t, const char *lib,
			      const char *const *names, size_t nnames,
			      int global)
{
	uint64_t bias, v, sz;
	struct ma_elf *e = open_lib(t, lib, &bias);

	if (!e)
		return;
	for (size_t k = 0; k < nnames; k++)
		if (!ma_elf_symbol(e, names[k], &v, &sz))
			add_range(u, v + bias, v + bias + (sz ? sz : 1),
				  names[k], global);
	ma_elf_close(e);
}

static void build_unsafe_ranges(const struct ma_target *t,
				struct unsafe_ranges *u)
{
	static const char *const libc_fns[] = {
		"malloc",	  "free",	   "calloc",
		"realloc",	  "reallocarray",  "cfree",
		"valloc",	  "pvalloc",	   "memalign",
		"posix_memalign", "aligned_alloc", "malloc_trim",
		"malloc_info",	  "mallinfo",	   "mallinfo2",
		"malloc_stats",
	};
	static const char *const loader_fns[] = {
		"dlopen",
		"dlmopen",
		"dlclose",
		"dlsym",
		"dlvsym",
		"dladdr",
		"dladdr1",
		"dlinfo",
		"dl_iterate_phdr",
		"fork",
		"_Fork",
		"vfork",
		"__libc_dlopen_mode",
		"__libc_dlsym",
		"__libc_dlclose",
	};
	static const char *const py_fns[] = {
		"PyMem_SetAllocator",
		"PyMem_GetAllocator",
		"PyMem_SetupDebugHooks",
	};

	memset(u, 0, sizeof(*u));
	for (size_t i = 0; i < t->maps.n; i++) {
		const struct ma_map *mp = &t->maps.v[i];

		if (mp->perms[2] != 'x')
			continue;
		if (strstr(mp->path, "/ld-linux") ||
		    strstr(mp->path, "/ld-2.") || strstr(mp->path, "/ld.so"))
			add_range(u, mp->start, mp->end, LOADER_WHAT, 1);
		else if (payload_kind(mp->path) != PAYLOAD_NONE)
			add_range(u, mp->start, mp->end,
				  "the memattach payload", 0);
	}
	add_lib_functions(u, t, "libc.so", libc_fns,
			  sizeof(libc_fns) / sizeof(libc_fns[0]), 0);
	add_lib_functions(u, t, "libc.so", loader_fns,
			  sizeof(loader_fns) / sizeof(loader_fns[0]), 1);
	for (size_t i = 0; i < u->n; i++)
		u->libc_dl |= !strcmp(u->v[i].what, "dlopen");
	{
		const char *b = strrchr(t->pymod_path, '/');

		add_lib_functions(u, t, b ? b + 1 : t->pymod_path, py_fns,
				  sizeof(py_fns) / sizeof(py_fns[0]), 0);
	}
	qsort(u->v, u->n, sizeof(*u->v), cmp_range);
}

static const struct code_range *in_ranges(const struct unsafe_ranges *u,
					  uint64_t a)
{
	size_t lo = 0, hi = u->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (a < u->v[mid].lo)
			hi = mid;
		else if (a >= u->v[mid].hi)
			lo = mid + 1;
		else
			return &u->v[mid];
	}
	return NULL;
}

#define STACK_SCAN_BYTES (16 * 1024)

/*
 * A word of the stack that looks like a return address into unsafe code
 * may be stale (an uninitialised local of a live frame): before refusing a
 * thread for it, unwind that thread precisely with libdwfl (~5 ms, only
 * when the scan hit something) and look at its real frames.
 */
static const struct code_range unreadable = { 0, 0, "an unreadable stack", 0 };

static const struct code_range *unwound_in(struct ma_target *t, pid_t tid,
					   const struct unsafe_ranges *u)
{
	struct ma_native_stack st;
	const struct code_range *bad = NULL, *local = NULL;

	/* once per target: a run of several processes (attach --children)
	 * injects into each one */
	if (!t->dwfl_attached) {
		if (ma_native_attach(t->dwfl, t->pid))
			return &unreadable; /* cannot tell: not this one */
		t->dwfl_attached = 1;
	}
	if (ma_native_unwind(t->dwfl, tid, 128, &st))
		return &unreadable;
	for (int i = 0; i < st.n; i++) {
		/* return addresses point after the call */
		bad = in_ranges(u, i ? st.v[i].pc - 1 : st.v[i].pc);
		if (bad && bad->global)
			break;
		if (bad && !local)
			local = bad;
		bad = NULL;
	}
	ma_native_stack_free(&st);
	return bad ? bad : local;
}

/*
 * The words of a thread's stack from sp up to its end, at most
 * STACK_SCAN_BYTES (the read shortened until it fits in the mapping), in
 * a buffer of this file's: their number, 0 when not even 512 bytes read.
 */
static size_t stack_words(struct ma_target *t, uint64_t sp,
			  const uint64_t **words)
{
	static uint64_t stack[STACK_SCAN_BYTES / 8];
	size_t len = sizeof(stack), lo = 0, hi = t->maps.n;

	/* As far as the end of sp's mapping (maps read before the freeze):
	 * an idle thread's sp lies a few KiB below its stack's top, where a
	 * read of STACK_SCAN_BYTES fails and was halved until it fit, five
	 * reads a thread, with every thread stopped (500 threads: 3,900
	 * reads, 64 ms).  A stack mapped since: the halving. */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (sp < t->maps.v[mid].start)
			hi = mid;
		else if (sp >= t->maps.v[mid].end)
			lo = mid + 1;
		else {
			if (t->maps.v[mid].end - sp < len)
				len = (size_t)(t->maps.v[mid].end - sp) & ~7ul;
			break;
		}
	}
	while (len >= 512 && ma_mem_read(t->mem, sp, stack, len))
		len /= 2;
	*words = stack;
	return len >= 512 ? len / 8 : 0;
}

/* The first unsafe code range a stopped thread is in, or NULL */
static const struct code_range *thread_in(struct ma_target *t,
					  struct ma_freeze *fz, pid_t tid,
					  const struct unsafe_ranges *u)
{
	struct user_regs_struct r;
	const uint64_t *stack;
	int hit = 0;

	if (ma_freeze_regs(fz, tid, &r))
		return NULL;
	hit = in_ranges(u, r.rip) != NULL;
	if (!hit) {
		size_t n = stack_words(t, r.rsp, &stack);

		for (size_t i = 0; !hit && i < n; i++)
			hit = in_ranges(u, stack[i]) != NULL;
	}
	if (!hit)
		return NULL;
	return unwound_in(t, tid, u);
}

/* What in a spared thread's stack gets it stopped (spared_in) */
static const struct code_range *stops_spared(const struct unsafe_ranges *u,
					     uint64_t word)
{
	const struct code_range *bad = in_ranges(u, word);

	return bad && bad->global && !(u->libc_dl && bad->what == LOADER_WHAT)
		       ? bad
		       : NULL;
}

/*
 * A thread that freeze_safe() left running, asleep in a write that a stop
 * would cut short (hazard 11): only its stack and instruction pointers are
 * known.  The same scan as thread_in(), but a hit cannot be checked by
 * unwinding (no registers): a word that may be a return address into fork
 * or libc's dl* functions makes it a thread to stop (NULL: leave it
 * running).  Only the global ranges matter: a spared thread is never the
 * one that runs the calls, so its being inside malloc or the payload does
 * not.  Words into the loader's own code do not count either when libc
 * has dlopen: the loader takes its lock only when entered through those
 * libc functions (or fork), which then sit deeper on the same stack, and
 * a stack scanned without unwinding holds stale words that point into the
 * loader (pyenv's 3.8-3.12: one 1.5 KiB above the main thread asleep in
 * os.write, into ld.so's print_statistics, left from the process's
 * start; a stopped thread's is dismissed by unwinding it).  Were the scan
 * wrong, the cost is bounded: the call then waits for the lock, resumes
 * the other threads after its timeout (rcall.c), and returns by itself
 * when the lock is free.
 */
static const struct code_range *spared_in(struct ma_target *t,
					  struct ma_freeze *fz, pid_t tid,
					  const struct unsafe_ranges *u)
{
	const struct code_range *bad;
	const uint64_t *stack;
	uint64_t sp, pc;
	size_t n;

	if (ma_freeze_spared_sp_pc(fz, tid, &sp, &pc))
		return &unreadable;
	if ((bad = stops_spared(u, pc)))
		return bad;
	n = stack_words(t, sp, &stack);
	if (!n)
		return &unreadable;
	for (size_t i = 0; i < n; i++)
		if ((bad = stops_spared(u, stack[i])))
			return bad;
	return NULL;
}

/*
 * A thread stopped in a system call that the kernel resumes through
 * restart_syscall (nanosleep, poll or a futex wait with a timeout: they
 * return -ERESTART_RESTARTBLOCK).  The rt_sigreturn that ends a remote call
 * resets the thread's restart block, as after any signal handler, so such a
 * sleep returns EINTR instead of going on: correct code retries, as it must
 * for any signal, but a thread in read(), select() or in user code is the
 * better pick.
 */
static int in_restart_block(struct ma_freeze *fz, pid_t tid)
{
	struct user_regs_struct r;

	return ma_freeze_regs(fz, tid, &r) == 0 && (long)r.orig_rax >= 0 &&
	       (long)r.rax == -516 /* -ERESTART_RESTARTBLOCK */;
}

/* A thread of the frozen process at a safe point, the main thread first
 * (it lives as long as the process) unless it sleeps in a restart block;
 * 0 when none is, or when any thread holds the loader */
static pid_t pick_thread(struct ma_target *t, struct ma_freeze *fz,
			 const struct unsafe_ranges *u, char *why,
			 size_t whylen, int *unspare)
{
	const pid_t *tids;
	size_t n = ma_freeze_threads(fz, &tids), others = 0;
	pid_t pick = 0, fallback = 0;

	for (size_t k = 0; k < n; k++) {
		const struct code_range *bad;

		if (ma_freeze_is_spared(fz, tids[k])) {
			bad = spared_in(t, fz, tids[k], u);
			if (bad) {
				snprintf(why, whylen,
					 "thread %d, asleep in a write, may be "
					 "in %s",
					 (int)tids[k], bad->what);
				*unspare = 1;
				return 0;
			}
			continue;
		}
		others++;
		bad = thread_in(t, fz, tids[k], u);

		if (bad && bad->global) {
			snprintf(why, whylen, "thread %d is in %s",
				 (int)tids[k], bad->what);
			return 0;
		}
		if (!bad && !pick) {
			if (in_restart_block(fz, tids[k])) {
				if (!fallback)
					fallback = tids[k];
			} else {
				pick = tids[k];
			}
		} else if (bad && !pick && !fallback) {
			snprintf(why, whylen, "thread %d is in %s",
				 (int)tids[k], bad->what);
		}
	}
	if (!others && n) {
		/* every thread is asleep in a write: none to run the calls */
		snprintf(why, whylen, "every thread is asleep in a write");
		*unspare = 2;
	}
	return pick ? pick : fallback;
}

/*
 * Freeze the process with one thread at a safe point (*tid), trying up to
 * max_attempts times (0: 200) and letting it run a little in between:
 * whatever it was doing in malloc or the loader takes microseconds.
 *
 * spare: leave running a thread asleep in a write that has sent part of
 * its data (hazard 11: a stop would make it return short), for a freeze
 * whose calls tolerate other threads running: attach's (loading the
 * payload, ma_start) and the detach's ma_stop.  The payload is built for
 * that: after the thaw every thread runs while its watchdog patches the
 * GOTs, and the allocator domains are swapped and restored by atomic
 * stores that a running thread reads as a valid pair (docs/payload.md);
 * ma_stop is what the watchdog does by itself, threads running, when
 * memattach dies; a spared thread that wakes and wants the loader's lock
 * or malloc's waits for the call, which holds no lock of its.  What is
 * checked: a spared thread is never picked to run the calls, and one whose
 * stack may be inside the loader, fork or dl* (hazard 1) is stopped after
 * all (the next try freezes every thread).  When every thread is spared
 * (a single-threaded program asleep in a write), none can run the calls:
 * the write may end in a moment, so the tries wait for it, up to
 * SPARED_ALONE_NS, then every thread is stopped, as before hazard 11 was
 * known: a short write rather than no attach.  Not for the
 * freezes that need every thread still: the heap census's copy, the
 * detach's close of descriptors.
 */
#define SPARED_ALONE_NS (500 * 1000000ull)

static int freeze_safe(struct ma_target *t, const struct unsafe_ranges *u,
		       int max_attempts, int spare, struct ma_freeze **fz,
		       pid_t *tid, int *attempts)
{
	char why[256] = "";
	uint64_t alone_since = 0;
	int err, n;

	if (max_attempts <= 0)
		max_attempts = 200;
	for (n = 1;; n++) {
		int unspare = 0;

		if (attempts)
			*attempts = n;
		err = spare ? ma_freeze_spare(t->pid, 1000, fz)
			    : ma_freeze(t->pid, 1000, fz);
		if (err)
			return err;
		*tid = pick_thread(t, *fz, u, why, sizeof(why), &unspare);
		/* An exec between the target's reading and this freeze made
		 * every address read (libc's, the loader's, the payload's)
		 * another program's: a remote call there would run what the
		 * new image has at them (a target killed by a malloc
		 * assertion, seen with a program that execs every 10 ms).
		 * Frozen, it cannot exec any more: checked once, here. */
		if (*tid > 0 && ma_target_execed_now(t)) {
			ma_thaw(*fz, NULL);
			*fz = NULL;
			return -ECHILD;
		}
		if (*tid > 0)
			return 0;
		ma_thaw(*fz, NULL);
		*fz = NULL;
		if (unspare == 2 && !alone_since)
			alone_since = ma_now_ns();
		if (unspare == 1 ||
		    (unspare == 2 &&
		     (ma_now_ns() - alone_since >= SPARED_ALONE_NS ||
		      n >= max_attempts))) {
			/* at once, and without counting the try */
			ma_step("freeze.unspared");
			spare = 0;
			n--;
			continue;
		}
		if (n >= max_attempts)
			return ma_err(-EAGAIN,
				      "no thread of process %d reached a safe "
				      "point after %d tries (%s)",
				      (int)t->pid, n, why);
		struct timespec ts = { 0, 1000000L * (n % 5 + 1) };

		nanosleep(&ts, NULL);
	}
}

static int rcall_checked(struct ma_freeze *fz, pid_t tid,
			 const struct ma_rcall_env *env,
			 const struct ma_rcall *c, struct ma_rcall_result *r,
			 const char *what)
{
	int err = ma_rcall(fz, tid, env, c, r);

	if (err)
		return ma_err_prefix(err, "inject: %s", what);
	return 0;
}

static int write_payload(pid_t pid, long fd)
{
	char path[64];
	size_t len;
	const uint8_t *p = ma_payload_image(&len);
	int wfd;

	snprintf(path, sizeof(path), "/proc/%d/fd/%ld", (int)pid, fd);
	wfd = ma_proc_open_fd(pid, (int)fd, O_WRONLY);
	if (wfd < 0)
		return ma_err(wfd, "inject: opening the payload memfd %s: %s",
			      path, strerror(-wfd));
	size_t off = 0;

	/* In pieces of 64 KiB: a memattach killed in the middle leaves a
	 * partial image that nothing loads (test step inject.memfd-write) */
	while (off < len) {
		size_t piece = len - off < 65536 ? len - off : 65536;
		/* pwrite: a copy from pidfd_getfd shares the target's
		 * offset (ma_proc_open_fd) */
		ssize_t w = pwrite(wfd, p + off, piece, (off_t)off);

		if (w <= 0) {
			int e = w < 0 ? errno : EIO;

			close(wfd);
			return ma_err(-e, "inject: writing the payload: %s",
				      strerror(e));
		}
		off += (size_t)w;
		ma_step("inject.memfd-write");
	}
	close(wfd);
	return 0;
}

static int map_ring(struct ma_injection *s, uint64_t ring_size, int agg)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)s->pid,
		 s->target_ring_fd);
	s->ring_fd = ma_proc_open_fd(s->pid, s->target_ring_fd, O_RDWR);
	if (s->ring_fd < 0) {
		int e = s->ring_fd;

		s->ring_fd = -1;
		/* the thaw let it run: it may have ended at once */
		if (ma_proc_ended(s->pid)) {
			ma_err_set_exit(MA_EXIT_NOPROC);
			return ma_err(-ESRCH,
				      "attach: process %d exited as memattach "
				      "attached",
				      (int)s->pid);
		}
		return ma_err(e, "attach: opening the ring %s: %s", path,
			      strerror(-e));
	}
	s->map_len = MA_RING_HDR_SIZE + ring_size;
	/* aggregated tracking: the aggregate area follows the data */
	if (agg)
		s->map_len += MA_AGG_AREA_SIZE;
	/*
	 * The target owns this file: a hostile target (issue 13) that
	 * truncated it under our mapping would kill memattach with SIGBUS at
	 * the next read.  The payload seals it against shrinking, seals are
	 * never removed, and it must hold the whole mapping now; a file that
	 * is not a sealed memfd of that size is refused.
	 */
	struct stat st;
	int seals = fcntl(s->ring_fd, F_GET_SEALS);

	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		(void)fcntl(s->ring_fd, F_ADD_SEALS, F_SEAL_SHRINK);
	seals = fcntl(s->ring_fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK) ||
	    fstat(s->ring_fd, &st) < 0 || (uint64_t)st.st_size < s->map_len)
		return ma_err(-EPROTO,
			      "attach: the ring of process %d is not a memfd "
			      "of %llu bytes sealed against shrinking",
			      (int)s->pid, (unsigned long long)s->map_len);
	void *p = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE, MAP_SHARED,
		       s->ring_fd, 0);

	if (p == MAP_FAILED)
		return ma_err(-errno, "attach: mapping the ring: %s",
			      strerror(errno));
	s->ring = p;
	s->data = (uint8_t *)p + MA_RING_HDR_SIZE;
	if (s->ring->magic != MA_RING_MAGIC || s->ring->data_size != ring_size)
		return ma_err(-EPROTO, "attach: the ring has a bad header");
	if (agg) {
		struct ma_agg_hdr *h;

		if (s->ring->agg_off != MA_RING_HDR_SIZE + ring_size ||
		    s->ring->agg_size != MA_AGG_AREA_SIZE)
			return ma_err(-EPROTO, "attach: the payload made no "
					       "aggregate area");
		h = (struct ma_agg_hdr *)((uint8_t *)p + s->ring->agg_off);
		if (h->magic != MA_AGG_MAGIC || h->key_cap != MA_AGG_KEYS ||
		    h->key_size != sizeof(struct ma_agg_key))
			return ma_err(-EPROTO,
				      "attach: the aggregate area has a bad "
				      "header");
		s->agg = h;
	}
	return 0;
}

/* What loading the payload takes in the target: dlopen, and syscall() */
struct loader {
	uint64_t dlopen_fn, syscall_fn;
	int dlopen_mode;
};

static int find_loader(const struct ma_target *t, struct loader *ld,
		       const char *op)
{
	ld->dlopen_mode = RTLD_NOW | RTLD_LOCAL;
	/* glibc 2.34+ has dlopen in libc; older ones in libdl, or the private
	 * __libc_dlopen_mode (which wants __RTLD_DLOPEN) */
	if (lib_symbol(t, "libc.so", "dlopen", &ld->dlopen_fn) &&
	    lib_symbol(t, "libdl.so", "dlopen", &ld->dlopen_fn)) {
		if (lib_symbol(t, "libc.so", "__libc_dlopen_mode",
			       &ld->dlopen_fn))
			return ma_err(
				-ENOENT,
				"%s: no dlopen in process %d (not glibc?)", op,
				(int)t->pid);
		ld->dlopen_mode |= (int)0x80000000; /* __RTLD_DLOPEN */
	}
	if (lib_symbol(t, "libc.so", "syscall", &ld->syscall_fn))
		return ma_err(-ENOENT, "%s: no syscall() in process %d's libc",
			      op, (int)t->pid);
	return 0;
}

/* A failure in the target for want of memory or descriptors (its limits,
 * or the machine's): exit code MA_EXIT_NOMEM, not an internal error */
static void exit_if_short(int err)
{
	if (err == -ENOMEM || err == -EMFILE || err == -ENFILE ||
	    err == -EAGAIN)
		ma_err_set_exit(MA_EXIT_NOMEM);
}

/* Why a thread or process could not be made in the target (EAGAIN): its
 * user's limit of them, most often; "" for another error */
static const char *eagain_hint(pid_t pid, int err, char *buf, size_t len)
{
	uint64_t lim;

	buf[0] = '\0';
	if (err != -EAGAIN)
		return buf;
	if (!ma_proc_soft_limit(pid, "Max processes", &lim) &&
	    lim != UINT64_MAX)
		snprintf(buf, len,
			 " (its user may be at its limit of processes and "
			 "threads, which a thread counts against: "
			 "RLIMIT_NPROC %llu, 'Max processes' in "
			 "/proc/%d/limits, ulimit -u; raise it: prlimit --pid "
			 "%d --nproc=N; or the system's kernel.threads-max or "
			 "kernel.pid_max is reached)",
			 (unsigned long long)lim, (int)pid, (int)pid);
	else
		snprintf(buf, len,
			 " (the system's kernel.threads-max or kernel.pid_max "
			 "may be reached)");
	return buf;
}

/*
 * Load the payload into the frozen target: a memfd created there, the image
 * written into it, dlopen of /proc/self/fd/N.  *pfd: the memfd in the
 * target (closed by ma_start, or by the caller).
 */
static int load_payload(struct ma_target *t, struct ma_freeze *fz, pid_t tid,
			const struct ma_rcall_env *env, const struct loader *ld,
			struct ma_payload_info *pi, long *pfd,
			uint64_t *dlopen_ns)
{
	struct ma_rcall_result r;
	struct ma_rcall mfd = {
		.name = "memfd_create",
		.fn = ld->syscall_fn,
		.args = { SYS_memfd_create, MA_RCALL_DATA, MFD_CLOEXEC },
		.data = img.memfd_name,
		.data_len = strlen(img.memfd_name) + 1,
		.want = 1,
		.want_syscall = SYS_memfd_create,
		.timeout_ms = 500,
	};
	/* "/proc/self/fd/", a "./" for each other build's payload, N */
	char path[1024];
	int err;

	if (pi->others > (int)(sizeof(path) - 48) / 2)
		return ma_err(-E2BIG,
			      "process %d holds the payloads of %d other "
			      "memattach builds: no room for one more",
			      (int)t->pid, pi->others);
	err = rcall_checked(fz, tid, env, &mfd, &r, "memfd_create");
	if (!err && r.syscall_ret < 0) {
		err = ma_err((int)r.syscall_ret,
			     "inject: memfd_create in process %d: %s%s",
			     (int)t->pid, strerror((int)-r.syscall_ret),
			     refused_why(t->pid, r.syscall_ret));
		/* the process's own policy refuses: a permission (exit 4) */
		if (r.syscall_ret == -EPERM || r.syscall_ret == -EACCES)
			ma_err_set_exit(MA_EXIT_PERM);
		exit_if_short(err);
	}
	if (err)
		return err;
	*pfd = r.syscall_ret;
	err = write_payload(t->pid, *pfd);
	if (err)
		return err;
	/* The loader knows an object by the path it was opened by, and
	 * another build's payload was opened by "/proc/self/fd/N" too, N as
	 * likely as not the same number: that dlopen would return the other
	 * build's.  One more "./" for each payload already loaded makes the
	 * path one no earlier load used, naming the same file */
	{
		int k = snprintf(path, sizeof(path), "/proc/self/fd/");

		for (int i = 0; i < pi->others; i++)
			k += snprintf(path + k, sizeof(path) - (size_t)k, "./");
		snprintf(path + k, sizeof(path) - (size_t)k, "%ld", *pfd);
	}
	struct ma_rcall dl = {
		.name = "dlopen",
		.fn = ld->dlopen_fn,
		.args = { MA_RCALL_DATA, (uint64_t)ld->dlopen_mode },
		.data = path,
		.data_len = strlen(path) + 1,
		.timeout_ms = 1000,
	};

	err = rcall_checked(fz, tid, env, &dl, &r, "dlopen");
	if (err)
		return err;
	*dlopen_ns = r.ns;
	/* Only as far as the payload's line: the whole maps of a process
	 * with a hundred libraries take milliseconds to read and parse, the
	 * target stopped (t->maps is read again after the thaw) */
	pi->base = payload_base_now(t->pid);
	if (!pi->base && (r.failed_ret == -EMFILE || r.failed_ret == -ENFILE ||
			  r.failed_ret == -ENOMEM || r.failed_ret == -EAGAIN)) {
		/* the loader's own open or mmap: the target's descriptors
		 * or address space (RLIMIT_NOFILE, RLIMIT_AS) used up.  Only
		 * these: a loader's search fails harmlessly (ENOENT) on its
		 * way, which is no cause of a failure */
		err = ma_err((int)r.failed_ret,
			     "inject: dlopen of the payload failed in process "
			     "%d: its %s failed: %s",
			     (int)t->pid,
			     r.failed_nr == SYS_openat	   ? "open"
			     : r.failed_nr == SYS_mmap	   ? "mmap"
			     : r.failed_nr == SYS_mprotect ? "mprotect"
							   : "system call",
			     strerror((int)-r.failed_ret));
		exit_if_short(err);
		return err;
	}
	/* beside other builds' payloads, the likely cause is the static
	 * TLS glibc keeps for dlopen (a few dozen payloads use it up) */
	if (!pi->base && pi->others)
		return ma_err(-ENOEXEC,
			      "inject: dlopen of the payload failed in process "
			      "%d, which holds the payloads of %d other "
			      "memattach builds: each holds a block of the "
			      "static TLS the loader keeps for dlopen, used up "
			      "by now? (use one of those builds, or restart "
			      "the process)",
			      (int)t->pid, pi->others);
	if (!pi->base)
		return ma_err(-ENOEXEC,
			      "inject: dlopen of the payload failed in process "
			      "%d (its libc refused the image?)",
			      (int)t->pid);
	/* dlopen's return value is lost with the call's registers: its
	 * image's line in maps says it loaded, unless the code is missing
	 * (the first load only: a full read of maps, a millisecond) */
	struct ma_maps m = { 0 };
	int code =
		ma_maps_read(t->pid, &m) || payload_code_mapped(&m, pi->base);

	ma_maps_free(&m);
	if (!code) {
		pi->base = 0;
		ma_err_set_exit(MA_EXIT_PERM);
		return ma_err(-ENOEXEC,
			      "inject: dlopen of the payload failed in process "
			      "%d: its code could not be mapped executable: "
			      "its %s failed: %s%s",
			      (int)t->pid,
			      r.failed_nr == SYS_mprotect ? "mprotect"
			      : r.failed_nr == SYS_mmap	  ? "mmap"
							  : "system call",
			      r.failed_ret ? strerror((int)-r.failed_ret)
					   : "no error seen",
			      refused_why(t->pid, r.failed_ret));
	}
	ma_step("inject.dlopened");
	return 0;
}

/*
 * Whether another memattach loaded the payload, or started a session in it,
 * since the probe that pi holds: two commands started at the same moment
 * both pass their probes, but only one can hold the threads at a time, so
 * the one that freezes second looks again, frozen: the whole of maps (a
 * millisecond with a hundred libraries), as another build's payload may
 * have come anywhere in it.
 * 1: loaded since the probe (this build's payload, or another build's: a
 * dlopen by the path chosen at the probe could return that one), or
 * another build's session started since (probing again names its
 * memattach); 2: busy now (pi loaded); 0: as probed.
 */
static int changed_since_probe(struct ma_target *t,
			       const struct ma_payload_info *pi)
{
	/* Another build's payload loaded, or its session started, since the
	 * probe: the whole of maps, as a payload loaded by another build
	 * comes anywhere in it.  Its session shows as a ring only where
	 * another build's payload is loaded (a ring this build's payload
	 * left mapped is not another's session) */
	if (!pi->other_busy) {
		struct ma_maps m = { 0 };
		uint64_t other_base;
		int others = 0, again = 0, read;

		read = !ma_maps_read(t->pid, &m);
		if (read) {
			uint64_t base = payload_base(&m, &others, &other_base);

			again = others != pi->others || (!pi->loaded && base) ||
				(others && ring_mapped(t->mem, &m) &&
				 !(pi->same_build &&
				   ma_payload_in(pi, MA_PAYLOAD_BUSY)));
		}
		ma_maps_free(&m);
		if (again)
			return 1;
		/* this build's payload not loaded since: that read said so
		 * (a second one would cost the stopped target as much) */
		if (read && !pi->loaded)
			return 0;
	}
	if (!pi->loaded)
		return payload_base_now(t->pid) != 0;
	if (pi->same_build) {
		struct ma_ctl ctl;

		if (ma_mem_read(t->mem, pi->base + img.ma_ctl, &ctl,
				sizeof(ctl)) == 0 &&
		    (MA_PAYLOAD_BUSY >> ctl.state & 1))
			return 2;
	}
	return 0;
}

/*
 * Room the session needs in the target's own limits, checked before
 * anything is done in it: a session that took the last descriptors or the
 * last of the address space would make the target's next open() or
 * allocation fail (a process under `ulimit -n` or `ulimit -v`, as batch
 * schedulers set).  It holds two descriptors (the ring, the attacher's
 * pidfd) and one more while the payload loads; its address space is the
 * ring, the tables and a thread: about ring + SESSION_VM_BYTES.  Some of
 * each is left for the target (SPARE_FDS, SPARE_VM_BYTES).  And the room
 * below its memory cgroup's limit (SESSION_CGROUP_ROOM).  0, or -EMFILE
 * / -ENOMEM with exit MA_EXIT_NOMEM and the message.
 */
#define SESSION_FDS	 3
#define SPARE_FDS	 8
#define SESSION_VM_BYTES (192ull << 20)
#define SPARE_VM_BYTES	 (256ull << 20)
/* the least room below the target's memory cgroup's limit a session
 * starts with: its tables' first pages (a few MiB; they grow with the
 * blocks it tracks, 19 bytes each) and the ring's pages in use */
#define SESSION_CGROUP_ROOM (32ull << 20)

static int room_for_session(struct ma_target *t, const struct ma_inject_opts *o)
{
	uint64_t lim, vm, need;
	int fds[4096], n;

	if (!ma_proc_soft_limit(t->pid, "Max open files", &lim) &&
	    lim < 1u << 20 && (n = ma_proc_fds(t->pid, fds, 4096)) >= 0 &&
	    n < 4096 && (uint64_t)n + SESSION_FDS + SPARE_FDS > lim) {
		ma_err_set_exit(MA_EXIT_NOMEM);
		return ma_err(-EMFILE,
			      "attach: process %d: %s: %d of its %llu "
			      "descriptors are open (RLIMIT_NOFILE, ulimit "
			      "-n), and a session takes %d, which would leave "
			      "it fewer than %d; refused before touching it "
			      "(raise its limit: prlimit --pid %d --nofile=N)",
			      (int)t->pid, strerror(EMFILE), n,
			      (unsigned long long)lim, SESSION_FDS, SPARE_FDS,
			      (int)t->pid);
	}
	vm = (uint64_t)t->status.vm_size_kb << 10;
	need = o->ring_size + SESSION_VM_BYTES;
	if (!ma_proc_soft_limit(t->pid, "Max address space", &lim) &&
	    lim != UINT64_MAX && vm && vm + need + SPARE_VM_BYTES > lim) {
		ma_err_set_exit(MA_EXIT_NOMEM);
		return ma_err(
			-ENOMEM,
			"attach: process %d: %s: it uses %llu MiB of its "
			"%llu MiB address space (RLIMIT_AS, ulimit -v), "
			"and a session takes about %llu MiB more (the ring "
			"%llu MiB: --ring-size; the tables, a thread), "
			"which would leave it under %llu MiB to grow; "
			"refused before touching it (a smaller "
			"--ring-size, or raise its limit: prlimit --pid "
			"%d --as=BYTES)",
			(int)t->pid, strerror(ENOMEM),
			(unsigned long long)(vm >> 20),
			(unsigned long long)(lim >> 20),
			(unsigned long long)(need >> 20),
			(unsigned long long)(o->ring_size >> 20),
			(unsigned long long)(SPARE_VM_BYTES >> 20),
			(int)t->pid);
	}
	/* its memory cgroup: the session's tables and the ring's pages the
	 * payload writes are charged there */
	char cg[256];
	uint64_t room;

	if (!ma_proc_memcg_room(t->pid, &room, cg, sizeof(cg)) &&
	    room < SESSION_CGROUP_ROOM) {
		ma_err_set_exit(MA_EXIT_NOMEM);
		return ma_err(-ENOMEM,
			      "attach: process %d's memory cgroup %s has %llu "
			      "MiB left below its limit, and a session needs "
			      "%llu MiB there at least (its tables and the "
			      "ring's pages are charged to that cgroup); "
			      "refused before touching the process, lest the "
			      "OOM killer take it",
			      (int)t->pid, cg, (unsigned long long)(room >> 20),
			      (unsigned long long)(SESSION_CGROUP_ROOM >> 20));
	}
	/* and the machine's, where no cgroup limit binds sooner */
	room = ma_proc_mem_available();
	if (room && room < SESSION_CGROUP_ROOM) {
		ma_err_set_exit(MA_EXIT_NOMEM);
		return ma_err(-ENOMEM,
			      "attach: process %d: the machine has %llu MiB "
			      "available (MemAvailable), and a session needs "
			      "%llu MiB at least (its tables and the ring's "
			      "pages); refused before touching the process, "
			      "lest the OOM killer take it",
			      (int)t->pid, (unsigned long long)(room >> 20),
			      (unsigned long long)(SESSION_CGROUP_ROOM >> 20));
	}
	return 0;
}

static int inject_once(struct ma_target *t, const struct ma_inject_opts *o,
		       struct ma_injection *s)
{
	struct ma_rcall_env env;
	struct ma_payload_info pi;
	struct ma_freeze *fz = NULL;
	struct ma_rcall_result r;
	struct loader ld = { 0 };
	uint64_t t0 = ma_now_ns();
	int err;
	pid_t tid = 0;

	memset(s, 0, sizeof(*s));
	s->pid = t->pid;
	s->ring_fd = -1;
	s->target_ring_fd = -1;
	err = image_symbols();
	if (err)
		return err;
	err = ma_payload_probe(t, &pi);
	if (err)
		return ma_err(err, "attach: process %d is gone", (int)t->pid);
	err = payload_unusable(t, &pi, "attach");
	if (err)
		return err;
	/* A session still running: refused at once when a live memattach
	 * drains it (waiting would last as long as that one runs) */
	if (ma_payload_in(&pi, MA_PAYLOAD_BUSY)) {
		err = ma_err_busy(t->pid, &pi);
		if (err)
			return err;
	}
	/* ... else one being stopped, or whose memattach was killed: its
	 * payload notices within a second and stops by itself */
	ma_payload_wait(t, &pi, MA_PAYLOAD_BUSY, 25);
	if (ma_payload_in(&pi, MA_PAYLOAD_BUSY)) {
		/* not -EBUSY: ma_inject_start would try again */
		ma_err_set_exit(MA_EXIT_BUSY);
		return ma_err(-EALREADY,
			      "attach: process %d is already being tracked by "
			      "another memattach (or one that was killed less "
			      "than a second ago)",
			      (int)t->pid);
	}
	err = other_build_busy(t, &pi);
	if (err)
		return err;
	err = room_for_session(t, o);
	if (err)
		return err;
	ma_step("inject.probed");
	s->reused = pi.loaded;
	/* the free's filter sized for the heap as it is: the RSS read when
	 * the target was found, moments ago */
	if (o->flags & MA_TRACK_SAMPLE)
		s->sample_filter_bits = ma_sample_filter_bits(
			(uint64_t)t->status.vm_rss_kb << 10, o->sample_mean);
	err = ma_rcall_env_init(t->pid, &env);
	if (err)
		return err;
	if (!pi.loaded) {
		err = find_loader(t, &ld, "attach");
		if (err)
			return err;
	}

	/* What a thread at a safe point must not be in, found while the
	 * target still runs */
	struct unsafe_ranges unsafe;

	build_unsafe_ranges(t, &unsafe);

	/* Stop everything and find a thread at a safe point */
	err = freeze_safe(t, &unsafe, o->max_attempts, 1, &fz, &tid,
			  &s->attempts);
	free(unsafe.v);
	if (err)
		return ma_err_prefix(err, "attach");
	s->hijacked = tid;
	uint64_t tf = ma_now_ns();

	s->t_pick_ns = tf - t0;
	switch (changed_since_probe(t, &pi)) {
	case 1:
		/* probe again, from the top (ma_inject_start's loop) */
		err = -EBUSY;
		goto fail;
	case 2:
		ma_err_set_exit(MA_EXIT_BUSY);
		err = ma_err(-EALREADY,
			     "attach: process %d was attached by another "
			     "memattach a moment ago; stop that one first or "
			     "use 'memattach detach %d'",
			     (int)t->pid, (int)t->pid);
		goto fail;
	}

	if (!pi.loaded) {
		long pfd = -1;

		err = load_payload(t, fz, tid, &env, &ld, &pi, &pfd,
				   &s->t_dlopen_ns);
		if (pfd >= 0)
			s->payload_fd_in_target = (int)pfd;
		if (err && pfd >= 0) {
			/* ma_start would have closed it: the target keeps
			 * no descriptor of a payload that did not load */
			struct ma_rcall c = {
				.name = "close",
				.fn = ld.syscall_fn,
				.args = { SYS_close, (uint64_t)pfd },
				.timeout_ms = 500,
			};

			rcall_checked(fz, tid, &env, &c, &r, "close");
		}
		if (err)
			goto fail;
	}
	s->payload_base = pi.base;
	s->ma_start_addr = pi.base + img.ma_start;
	s->ma_stop_addr = pi.base + img.ma_stop;
	s->ma_ctl_addr = pi.base + img.ma_ctl;

	struct ma_config cfg = {
		.magic = MA_CONFIG_MAGIC,
		.abi = MA_CONFIG_ABI,
		.size = sizeof(cfg),
		.flags = o->flags,
		.ring_size = o->ring_size,
		.full_wait_us = o->full_wait_us,
		.max_frames = o->max_frames,
		/* the payload watches for our death with a pidfd */
		.attacher_pid =
			ma_proc_same_pidns(t->pid) ? (int32_t)getpid() : 0,
		.payload_fd = pi.loaded ? -1 : s->payload_fd_in_target,
		.runtime_addr = t->runtime_addr,
		.off = t->off,
		.sample_mean = o->sample_mean,
		.sample_filter_bits = s->sample_filter_bits,
	};
	struct ma_rcall start = {
		.name = "ma_start",
		.fn = s->ma_start_addr,
		.args = { MA_RCALL_DATA },
		.data = &cfg,
		.data_len = sizeof(cfg),
		.timeout_ms = 1000,
	};

	err = rcall_checked(fz, tid, &env, &start, &r, "ma_start");
	if (err)
		goto fail;
	s->t_start_ns = r.ns;
	struct ma_ctl ctl;

	err = ma_mem_read(t->mem, s->ma_ctl_addr, &ctl, sizeof(ctl));
	if (err) {
		ma_err(err, "attach: reading the payload's status");
		goto fail;
	}
	ma_step("inject.started");
	ma_thaw(fz, &tf);
	fz = NULL;
	s->frozen_ns = tf;
	ma_step("inject.thawed");
	if (!s->reused) {
		/* with the payload, which load_payload did not read */
		ma_maps_free(&t->maps);
		ma_maps_read(t->pid, &t->maps);
	}
	if (ctl.magic != MA_CONFIG_MAGIC || ctl.status) {
		char hint[512];

		ctl.message[sizeof(ctl.message) - 1] = '\0';
		err = ma_err(
			ctl.status ? ctl.status : -EPROTO,
			"attach: the payload did not start in process %d: "
			"%s%s",
			(int)t->pid, ctl.message[0] ? ctl.message : "no status",
			eagain_hint(t->pid, ctl.status, hint, sizeof(hint)));
		exit_if_short(err);
		return err;
	}
	s->target_ring_fd = ctl.ring_fd;
	err = map_ring(s, o->ring_size, !!(o->flags & MA_TRACK_AGG));
	if (err)
		return err;
	ma_step("inject.ring-mapped");
	s->attach_ns = ma_now_ns() - t0;
	return 0;
fail:
	if (fz)
		ma_thaw(fz, NULL);
	return err;
}

int ma_inject_start(struct ma_target *t, const struct ma_inject_opts *o,
		    struct ma_injection *s)
{
	int err;

	/* The payload's watchdog may have been frozen in the middle of
	 * finishing the previous session (it holds the session lock for a
	 * moment): ma_start then says -EBUSY.  Let it run and try again. */
	for (int i = 0;; i++) {
		err = inject_once(t, o, s);
		if (err != -EBUSY || i == 50)
			return err;
		usleep(20000);
	}
}

void ma_injection_close(struct ma_injection *s)
{
	if (s->ring)
		munmap(s->ring, s->map_len);
	if (s->ring_fd >= 0)
		close(s->ring_fd);
	s->ring = NULL;
	s->agg = NULL;
	s->ring_fd = -1;
}

/* For detach: the remote call environment, and the process frozen with a
 * thread at a safe point */
static int freeze_for_detach(struct ma_target *t, struct ma_rcall_env *env,
			     int spare, struct ma_freeze **fz, pid_t *tid)
{
	struct unsafe_ranges unsafe;
	int err = ma_rcall_env_init(t->pid, env);

	if (err)
		return err;
	build_unsafe_ranges(t, &unsafe);
	err = freeze_safe(t, &unsafe, 0, spare, fz, tid, NULL);
	free(unsafe.v);
	return err ? ma_err_prefix(err, "detach") : 0;
}

int ma_inject_stop(struct ma_target *t, struct ma_payload_info *pi)
{
	struct ma_rcall_env env;
	struct ma_freeze *fz = NULL;
	struct ma_rcall_result r;
	pid_t tid = 0;
	int err;

	if (!pi->loaded || !pi->same_build || pi->no_code)
		return -ENOENT;
	err = freeze_for_detach(t, &env, 1, &fz, &tid);
	if (err)
		return err;
	struct ma_rcall stop = { .name = "ma_stop",
				 .fn = pi->base + img.ma_stop,
				 .timeout_ms = 2000 };

	err = rcall_checked(fz, tid, &env, &stop, &r, "ma_stop");
	ma_thaw(fz, NULL);
	if (!err)
		ma_mem_read(t->mem, pi->base + img.ma_ctl, &pi->ctl,
			    sizeof(pi->ctl));
	return err;
}

/* The target's descriptors of payload images (memfds named
 * PAYLOAD_MEMFD_PREFIX..., any build's), at most max; their number */
static int leftover_fds(pid_t pid, int *fds, int max)
{
	int all[1024], n, k = 0;
	char link[256];

	n = ma_proc_fds(pid, all, 1024);
	if (n < 0)
		return n;
	for (int i = 0; i < n && k < max; i++)
		if (ma_proc_fd_link(pid, all[i], link, sizeof(link)) > 0 &&
		    strstr(link, PAYLOAD_MAPPED_ANY))
			fds[k++] = all[i];
	return k;
}

int ma_inject_cleanup(struct ma_target *t, int *closed)
{
	struct ma_rcall_env env;
	struct ma_freeze *fz = NULL;
	struct ma_rcall_result r;
	uint64_t syscall_fn;
	int fds[64], n, err;
	pid_t tid = 0;

	*closed = 0;
	n = leftover_fds(t->pid, fds, 64);
	if (n <= 0)
		return n < 0 ? ma_err(n, "detach: reading /proc/%d/fd: %s",
				      (int)t->pid, strerror(-n))
			     : 0;
	if (lib_symbol(t, "libc.so", "syscall", &syscall_fn))
		return ma_err(-ENOENT,
			      "detach: no syscall() in process %d's libc",
			      (int)t->pid);
	err = freeze_for_detach(t, &env, 0, &fz, &tid);
	if (err)
		return err;
	/* Read again with every thread stopped: no descriptor can change
	 * under the close now */
	n = leftover_fds(t->pid, fds, 64);
	for (int i = 0; i < n && !err; i++) {
		struct ma_rcall c = {
			.name = "close",
			.fn = syscall_fn,
			.args = { SYS_close, (uint64_t)fds[i] },
			.want = 1,
			.want_syscall = SYS_close,
			.timeout_ms = 500,
		};

		err = rcall_checked(fz, tid, &env, &c, &r, "close");
		if (!err && r.syscall_ret == 0)
			(*closed)++;
	}
	ma_thaw(fz, NULL);
	return err;
}

/* ---------------------------------------------------------------------- */
/* The heap census' copy (docs/heap.md)                                     */

int ma_inject_heap_fork(struct ma_target *t, const struct ma_heap_cfg *cfg,
			struct ma_heap_copy *out)
{
	struct ma_rcall_env env;
	struct ma_payload_info pi;
	struct ma_freeze *fz = NULL;
	struct ma_rcall_result r;
	struct loader ld = { 0 };
	uint64_t t0 = ma_now_ns(), tf = 0;
	long pfd = -1;
	int err, status;
	pid_t tid = 0;

	memset(out, 0, sizeof(*out));
	err = image_symbols();
	if (err)
		return err;
	err = ma_payload_probe(t, &pi);
	if (err)
		return ma_err(err, "heap: process %d is gone", (int)t->pid);
	err = payload_unusable(t, &pi, "heap");
	if (err)
		return err;
	err = ma_rcall_env_init(t->pid, &env);
	if (err)
		return err;
	if (!pi.loaded) {
		err = find_loader(t, &ld, "heap");
		if (err)
			return err;
	}
	ma_step("heap.probed");
	struct unsafe_ranges unsafe;

	build_unsafe_ranges(t, &unsafe);
	/* A thread asleep in a write that has sent part of its data is left
	 * running (hazard 11), as by attach's freeze: nothing here needs it
	 * still.  The payload's loading tolerates running threads (attach
	 * does it so), and the clone below is made with every other thread
	 * running anyway. */
	err = freeze_safe(t, &unsafe, 0, 1, &fz, &tid, NULL);
	free(unsafe.v);
	if (err)
		return ma_err_prefix(err, "heap");
	out->hijacked = tid;
	/* Which pthread each thread is, while they are all stopped: the
	 * roots of 3.8-3.10 name threads by pthread_self() */
	{
		const pid_t *tids;
		size_t n = ma_freeze_threads(fz, &tids);

		out->threads = calloc(n ? n : 1, sizeof(*out->threads));
		for (size_t i = 0; out->threads && i < n; i++) {
			struct user_regs_struct regs;
			uint64_t pc;

			out->threads[i].tid = tids[i];
			if (ma_freeze_is_spared(fz, tids[i])) {
				out->threads[i].spared = 1;
				if (ma_proc_nstid(t->pid, tids[i],
						  &out->threads[i].nstid))
					out->threads[i].nstid = tids[i];
				ma_freeze_spared_sp_pc(
					fz, tids[i], &out->threads[i].sp, &pc);
				continue;
			}
			ma_freeze_fs_base(fz, tids[i],
					  &out->threads[i].fs_base);
			if (ma_freeze_regs(fz, tids[i], &regs) == 0)
				out->threads[i].sp = regs.rsp;
		}
		out->nthreads = out->threads ? n : 0;
	}
	/* loaded by another memattach since the probe: use that one; another
	 * build's payload loaded since: load this build's beside it, as the
	 * probe now counts it (the path its dlopen opens) */
	if (changed_since_probe(t, &pi) == 1 &&
	    (ma_payload_probe(t, &pi) || (pi.loaded && !pi.same_build))) {
		err = ma_err(-EBUSY,
			     "heap: another memattach loaded its payload into "
			     "process %d a moment ago; run heap again",
			     (int)t->pid);
		goto fail;
	}
	if (!pi.loaded) {
		uint64_t dl_ns = 0;

		err = load_payload(t, fz, tid, &env, &ld, &pi, &pfd, &dl_ns);
		if (pfd >= 0) {
			/* ma_start closes it for attach; here nothing would */
			struct ma_rcall c = {
				.name = "close",
				.fn = ld.syscall_fn,
				.args = { SYS_close, (uint64_t)pfd },
				.timeout_ms = 500,
			};

			if (rcall_checked(fz, tid, &env, &c, &r, "close") &&
			    !err)
				err = -EIO;
		}
		if (err)
			goto fail;
		out->loaded_now = 1;
	}
	out->box_addr = pi.base + img.ma_heap_box;
	struct ma_rcall fork = {
		.name = "ma_heap_fork",
		.fn = pi.base + img.ma_heap_fork,
		.args = { MA_RCALL_DATA },
		.data = cfg,
		.data_len = sizeof(*cfg),
		.want = 1,
		.want_syscall = SYS_clone,
		.timeout_ms = 2000,
		.options = PTRACE_O_TRACECLONE,
	};

	/* The clone needs its own thread only: the others run on during it
	 * (the walk copes with an object a running thread was changing, as
	 * with one a stopped thread was in the middle of: hazard 9), so the
	 * whole process stops only for the safe point and the loading */
	out->all_stopped_ns = ma_freeze_elapsed_ns(fz);
	ma_freeze_resume_others(fz, tid);
	err = rcall_checked(fz, tid, &env, &fork, &r, "ma_heap_fork");
	if (err)
		goto fail;
	out->clone_ns = r.ns;
	if (r.syscall_ret < 0 || !r.child) {
		char hint[512];

		err = ma_err(r.syscall_ret < 0 ? (int)r.syscall_ret : -ECHILD,
			     "heap: clone in process %d: %s%s", (int)t->pid,
			     r.syscall_ret < 0 ? strerror((int)-r.syscall_ret)
					       : "no copy seen",
			     eagain_hint(t->pid, (int)r.syscall_ret, hint,
					 sizeof(hint)));
		exit_if_short(err);
		goto fail;
	}
	out->copy = r.child;
	ma_step("heap.cloned");
	/* The copy starts stopped, traced by us: make it die with us, then
	 * let the target go */
	for (int i = 0; i < 2000; i++) {
		pid_t w = waitpid(out->copy, &status, __WALL | WNOHANG);

		if (w == out->copy)
			break;
		usleep(500);
	}
	if (ptrace(PTRACE_SETOPTIONS, out->copy, NULL,
		   (void *)(uintptr_t)PTRACE_O_EXITKILL) < 0) {
		err = ma_err(-errno,
			     "heap: PTRACE_SETOPTIONS on the copy %d: %s",
			     (int)out->copy, strerror(errno));
		goto fail;
	}
	ma_thaw(fz, &tf);
	fz = NULL;
	out->frozen_ns = tf;
	ma_step("heap.thawed");
	if (!pi.loaded) {
		/* with the payload, which load_payload did not read */
		ma_maps_free(&t->maps);
		ma_maps_read(t->pid, &t->maps);
	}
	if (ptrace(PTRACE_CONT, out->copy, NULL, NULL) < 0)
		return ma_err(-errno, "heap: PTRACE_CONT on the copy %d: %s",
			      (int)out->copy, strerror(errno));
	out->total_ns = ma_now_ns() - t0;
	return 0;
fail:
	if (fz)
		ma_thaw(fz, NULL);
	if (out->copy > 0) {
		ma_kill_tracee(out->copy);
		waitpid(out->copy, &status, __WALL);
	}
	return err;
}

/* Whether the target's child that it calls nspid (a PID of its own PID
 * namespace: clone's result there) has ended, or is no child of it */
static int child_ended(pid_t pid, pid_t nspid)
{
	pid_t *kids, ns;
	size_t n;
	int ended = 1;

	if (ma_proc_same_pidns(pid))
		return ma_proc_ended(nspid);
	if (ma_proc_children(pid, &kids, &n))
		return 1;
	for (size_t i = 0; i < n; i++)
		if (ma_proc_nstid(kids[i], kids[i], &ns) == 0 && ns == nspid) {
			ended = ma_proc_ended(kids[i]);
			break;
		}
	free(kids);
	return ended;
}

/* The copies the target's payload recorded (ma_heap_copies) that have
 * ended: zombies only the target can reap.  Their PIDs are the target's
 * own: another number here when it lives in another PID namespace */
static int dead_copies(struct ma_target *t, const struct ma_payload_info *pi)
{
	int32_t pids[MA_HEAP_MAX_COPIES];
	int n = 0;

	if (ma_mem_read(t->mem, pi->base + img.ma_heap_copies, pids,
			sizeof(pids)))
		return 0;
	for (int i = 0; i < MA_HEAP_MAX_COPIES; i++)
		if (pids[i] > 0 && child_ended(t->pid, pids[i]))
			n++;
	return n;
}

int ma_inject_reap(struct ma_target *t, int *reaped)
{
	struct ma_rcall_env env;
	struct ma_payload_info pi;
	struct ma_freeze *fz = NULL;
	struct ma_rcall_result r;
	pid_t tid = 0;
	int before, err;

	*reaped = 0;
	if (image_symbols() || ma_payload_probe(t, &pi) || !pi.loaded ||
	    pi.no_code || !pi.same_build)
		return 0;
	before = dead_copies(t, &pi);
	if (!before)
		return 0;
	/* a thread asleep in a partly done write is left running (hazard
	 * 11): the call only waits for the copies' PIDs */
	err = freeze_for_detach(t, &env, 1, &fz, &tid);
	if (err)
		return ma_err_prefix(err, "heap: reaping its copy");
	struct ma_rcall c = {
		.name = "ma_heap_reap",
		.fn = pi.base + img.ma_heap_reap,
		.timeout_ms = 500,
	};

	err = rcall_checked(fz, tid, &env, &c, &r, "ma_heap_reap");
	ma_thaw(fz, NULL);
	*reaped = before - dead_copies(t, &pi);
	return err;
}
