/* SPDX-License-Identifier: MIT */
/*
 * The payload's entry points (ma_start, ma_stop, the ma_ctl block), the
 * session life cycle, the watchdog thread and fork handling.
 *
 * ma_start runs as a remote call on one thread of a target whose other
 * threads are all stopped: it must be quick and must never wait on anything
 * another thread could hold.  Hence: every lock here is taken with trylock
 * (EBUSY tells the attacher to retry), except by the watchdog, which is our
 * own thread; the slow parts of stopping (waiting for threads to leave
 * their recording sections, the final record, unmapping) run on the
 * watchdog, after the attacher has let the threads go.
 *
 * Life of a session:
 *   ma_start: ring + tables, watchdog thread, Python domains,
 *             enabled = 1, state TRACKING; then the watchdog, threads
 *             running: GOT hooks (got_first_install)
 *   stop_begin (ma_stop, the watchdog on MA_CMD_STOP or a stale heartbeat,
 *             a later ma_start, an internal failure): hooks restored,
 *             allocator domains restored, enabled = 0, state STOPPING
 *   stop_finish (watchdog): wait for threads, STATS record, stop_ns, final
 *             state, unmap the ring and close its fd; the thread exits.
 * Session structs themselves are never unmapped (one page each): a stale
 * pointer to one stays safe to read; a finished one is reused by a later
 * session (session_recycled).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../common/ma_sample.h"
#include "internal.h"

#define MA_EXPORT __attribute__((visibility("default")))
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* Linux 5.3; older headers lack it */
#endif

#define TICK_NS (50ull * 1000000)
/* short-lived block tables published at least this often (record.c) */
#define GFLUSH_NS    (100ull * 1000000)
#define HEARTBEAT_NS (1000ull * 1000000)
/* the limit for a memattach that is alive and wants to run: runnable but
 * starved of CPU, or in uninterruptible sleep (paging itself back in
 * during a swap storm, a frozen cgroup): attacher_waits() */
#define WAITING_HEARTBEAT_NS (10000ull * 1000000)
/* grace for the first heartbeat: the attacher still has to resume the
 * threads, read ma_ctl and map the ring */
#define FIRST_HEARTBEAT_NS (5000ull * 1000000)
#define QUIESCE_NS	   (1000ull * 1000000)
#define WATCHDOG_STACK	   (256 * 1024)
#define MAX_SESSIONS	   256

MA_EXPORT struct ma_ctl ma_ctl = { .ring_fd = -1 };

uint32_t ma_enabled;
struct ma_session *ma_sess;
int ma_asym_fence;

static int ctl_lock_word;
static uint32_t gen_counter;
static int once_ok;
/* once_init's mapping, until the first session's struct is taken */
static struct ma_parts once_parts;
/* every session struct (reused once finished: session_recycled), for the
 * fork child to drop their rings */
static struct ma_session *sessions[MAX_SESSIONS];
static uint32_t nsessions;

int ma_ctl_trylock(void)
{
	return ma_spin_trylock(&ctl_lock_word);
}

void ma_ctl_lock(void)
{
	ma_spin_lock(&ctl_lock_word);
}

void ma_ctl_unlock(void)
{
	ma_spin_unlock(&ctl_lock_word);
}

static uint32_t phase_of(const struct ma_session *s)
{
	return __atomic_load_n(&s->phase, __ATOMIC_ACQUIRE);
}

static void copy_msg(char *dst, size_t len, const char *src)
{
	size_t n = strnlen(src, len - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void ctl_publish(int32_t status, uint32_t state, int32_t fd,
			const char *msg)
{
	ma_ctl.abi = MA_CONFIG_ABI;
	ma_ctl.status = status;
	ma_ctl.ring_fd = fd;
	ma_ctl.state = state;
	copy_msg(ma_ctl.message, sizeof(ma_ctl.message), msg);
	__atomic_store_n(&ma_ctl.magic, MA_CONFIG_MAGIC, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------ */
/* Fences (see record.c) */

/*
 * MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED waits for a grace period: 16 ms
 * measured on the project's machine, the largest part of the first
 * attach's freeze when it ran in ma_start.  So ma_start only reuses an
 * earlier registration of this process; otherwise the hot path starts with
 * the seq_cst store, and the watchdog registers with the threads running,
 * then switches the hot path to the cheap fence.  ma_asym_fence is only
 * ever 1 while this process is registered, so a stopper that reads 1 can
 * rely on membarrier(); one that reads 0 knows every section was entered
 * with a full barrier, except across a switch it cannot see, for which
 * the 2 ms sleep of fence_all() is the (ample) fallback.
 */
static pid_t membarrier_pid; /* the process registered, 0: none */

/* In ma_start, threads stopped: never slow */
static void fence_setup(pid_t pid)
{
	__atomic_store_n(&ma_asym_fence, membarrier_pid == pid,
			 __ATOMIC_RELEASE);
}

/* On the watchdog, threads running */
static void fence_register(void)
{
	long q;

	if (__atomic_load_n(&ma_asym_fence, __ATOMIC_ACQUIRE))
		return;
	q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	if (q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
	    syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
		    0, 0) == 0) {
		membarrier_pid = getpid();
		__atomic_store_n(&ma_asym_fence, 1, __ATOMIC_RELEASE);
	}
}

/* A full barrier on every thread of the process */
static void fence_all(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&ma_asym_fence, __ATOMIC_ACQUIRE) &&
	    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) ==
		    0)
		return;
	/* no membarrier (seccomp, not registered yet, fork child): store
	 * buffers drain in far less than this */
	ma_sleep_ns(2000000);
}

/* ------------------------------------------------------------------ */
/* Sessions */

static void session_release(struct ma_session *s, int unmap)
{
	ma_fd_close_own(s->ring_fd, &s->ring_id);
	s->ring_fd = -1;
	if (!unmap)
		return;
	ma_parts_drop(&s->parts);
	if (s->ring_mem)
		munmap(s->ring_mem, s->ring_len);
	s->ring_mem = NULL;
	ma_agg_release(s);
	ma_unmap(s->tabs, s->tabs_len);
	s->tabs = NULL;
	s->codes = NULL;
	s->nodes = NULL;
}

/*
 * A finished session's struct, cleared for a new one, or NULL.  A process
 * takes any number of sessions over its life (a worker attached every few
 * minutes by a scheduled job); only a session whose ring and tables are
 * unmapped is recycled: one that stayed mapped because a thread was still
 * in a recording section (stop_finish) may still be written to.  Under the
 * control lock: a watchdog marks its session DONE under it, as its last
 * access.
 */
static struct ma_session *session_recycled(void)
{
	for (uint32_t i = 0; i < nsessions; i++) {
		struct ma_session *s = sessions[i];

		if (phase_of(s) == MA_PHASE_DONE && !s->ring_mem && !s->tabs &&
		    !s->agg) {
			memset(s, 0, sizeof(*s));
			return s;
		}
	}
	return NULL;
}

/* The sessions that walk stacks (their code and node tables) */
static int wants_stacks(const struct ma_config *c)
{
	return !!(c->flags &
		  (MA_TRACK_NATIVE | MA_TRACK_MMAP | MA_TRACK_PYTHON));
}

static struct ma_session *session_new(const struct ma_config *c, pid_t pid,
				      char *msg, size_t len, int *err)
{
	struct ma_session *s;
	void *mem;
	int fd;

	s = session_recycled();
	if (!s && nsessions >= MAX_SESSIONS) {
		*err = -EMFILE;
		ma_fmt(msg, len,
		       "too many sessions in this process whose rings "
		       "could not be unmapped");
		return NULL;
	}
	if (!s) {
		/* the first one from once_init's mapping */
		s = ma_parts_take(&once_parts, sizeof(*s));
		if (!s) {
			*err = -ENOMEM;
			ma_fmt(msg, len, "no memory for a session");
			return NULL;
		}
		sessions[nsessions++] = s;
	}
	/* DONE until start_locked() sets it tracking: a failed start leaves
	 * it recyclable */
	s->phase = MA_PHASE_DONE;
	s->gen = ++gen_counter;
	s->cfg = *c;
	s->ring_fd = -1;
	s->ring_len = MA_RING_HDR_SIZE + (size_t)c->ring_size;
	/* the aggregate area follows the ring's data in the same memfd:
	 * the attacher maps both at once */
	if (c->flags & MA_TRACK_AGG) {
		s->agg_off = s->ring_len;
		s->ring_len += MA_AGG_AREA_SIZE;
	}
	/* sealable: the attacher maps it and seals it against shrinking
	 * (inject.c, map_ring) */
	fd = memfd_create(MA_RING_MEMFD_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		*err = -errno;
		ma_fmt(msg, len, "memfd_create for the ring: errno %d", errno);
		return NULL;
	}
	fd = ma_fd_park(fd, &s->ring_id);
	s->ring_fd = fd;
	if (ftruncate(fd, (off_t)s->ring_len) < 0) {
		*err = -errno;
		ma_fmt(msg, len, "ftruncate of the ring to %zu bytes: errno %d",
		       s->ring_len, errno);
		session_release(s, 1);
		return NULL;
	}
	/* its size is final: the attacher refuses a ring that could shrink
	 * under its mapping (a read past the end is a SIGBUS) */
	(void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK);
	mem = mmap(NULL, s->ring_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		   0);
	if (mem == MAP_FAILED) {
		*err = -errno;
		ma_fmt(msg, len, "mmap of the ring: errno %d", errno);
		session_release(s, 1);
		return NULL;
	}
	s->ring_mem = mem;
	/* the session's tables, at once (ma_parts); what is not taken is
	 * unmapped at the end of start_locked */
	ma_parts_map(&s->parts,
		     ((c->flags & MA_TRACK_AGG) ? ma_agg_bytes() : 0) +
			     (wants_stacks(c) ? ma_stacks_bytes() : 0));
	ma_ring_init(mem, c->ring_size, (uint32_t)pid, ma_ring_now_ns());
	ma_ring_producer(&s->ring, mem, c->full_wait_us);
	if (s->agg_off) {
		*err = ma_agg_setup(s, (uint8_t *)mem + s->agg_off, msg, len);
		if (*err < 0) {
			session_release(s, 1);
			return NULL;
		}
		s->ring.hdr->agg_off = s->agg_off;
		s->ring.hdr->agg_size = MA_AGG_AREA_SIZE;
	}
	return s;
}

/*
 * First half of a stop; the control lock is held.  Quick and non-blocking
 * (it may run while the attacher holds the other threads stopped): hooks
 * and allocator domains back, enabled = 0.  The watchdog does the rest.
 * others_run: called on the watchdog, the other threads running (an
 * allocator domain is then swapped back only where whole pointers can be
 * written: pyalloc.c).
 */
static void stop_begin(struct ma_session *s, uint32_t state, int err,
		       const char *msg, int others_run)
{
	if (phase_of(s) != MA_PHASE_TRACKING)
		return;
	if (s->ring.hdr)
		__atomic_store_n(&s->ring.hdr->state, MA_STATE_STOPPING,
				 __ATOMIC_RELEASE);
	if (ma_sess == s) {
		ma_got_restore();
		ma_pyalloc_restore(others_run);
		__atomic_store_n(&ma_enabled, 0, __ATOMIC_SEQ_CST);
		ma_ctl.state = MA_STATE_STOPPING;
	}
	s->final_state = state;
	s->error = err;
	copy_msg(s->message, sizeof(s->message), msg);
	__atomic_store_n(&s->phase, MA_PHASE_STOPPING, __ATOMIC_RELEASE);
	ma_futex_wake(&s->wd_word);
}

/* Records published so far: short-lived blocks make fewer records than
 * events (while tracking, those still counted in the short-lived table are
 * taken as records; exact once the table is flushed at the stop) */
static uint64_t session_records(struct ma_session *s)
{
	return ma_slots_records(s->gen) -
	       __atomic_load_n(&s->g_elided, __ATOMIC_RELAXED) +
	       __atomic_load_n(&s->g_temps, __ATOMIC_RELAXED);
}

/* Second half, on the watchdog thread, without the lock while waiting */
static void stop_finish(struct ma_session *s)
{
	struct ma_ring_hdr *h = s->ring.hdr;
	struct ma_rec_stats st;
	struct ma_rec_stats *r;
	int q;

	fence_all();
	q = ma_slots_quiesce(QUIESCE_NS);
	/* no thread records any more: what waits in the short-lived block
	 * tables goes out now, before the STATS record that ends the
	 * session */
	if (q == 0 && s->gil_serial)
		ma_rec_gil_flush(s);
	memset(&st, 0, sizeof(st));
	ma_slots_sum(s->gen, &st);
	st.lost_records = __atomic_load_n(&h->lost_records, __ATOMIC_RELAXED);
	st.lost_bytes = __atomic_load_n(&h->lost_bytes, __ATOMIC_RELAXED);
	/* the last record matters more than any other: give the consumer a
	 * full second to make room, whatever the stalls before */
	struct ma_ring last = s->ring;

	last.full_wait_us = 1000000;
	last.stalled_tail = 0;
	r = ma_ring_reserve(&last, sizeof(*r));
	if (r) {
		r->h.thread = 0;
		r->allocs = st.allocs;
		r->frees = st.frees;
		r->lost_records = st.lost_records;
		r->lost_bytes = st.lost_bytes;
		r->stack_truncated = st.stack_truncated;
		r->node_table_full = st.node_table_full;
		ma_ring_commit(r, MA_REC_STATS, sizeof(*r));
	}
	if (q < 0 && s->final_state == MA_STATE_STOPPED)
		ma_fmt(s->message, sizeof(s->message),
		       "stopped; a thread stayed in a recording section for "
		       "1 s: ring left mapped");
	__atomic_store_n(&h->records, session_records(s) + (r ? 1 : 0),
			 __ATOMIC_RELAXED);
	copy_msg(h->message, sizeof(h->message), s->message);
	h->error = s->error;
	__atomic_store_n(&h->stop_ns, ma_ring_now_ns(), __ATOMIC_RELAXED);
	__atomic_store_n(&h->state, s->final_state, __ATOMIC_RELEASE);

	ma_ctl_lock();
	if (ma_sess == s) {
		__atomic_store_n(&ma_sess, NULL, __ATOMIC_RELEASE);
		ma_ctl.state = s->final_state;
		ma_ctl.ring_fd = -1;
		if (s->final_state != MA_STATE_STOPPED)
			copy_msg(ma_ctl.message, sizeof(ma_ctl.message),
				 s->message);
	}
	/* a thread still inside a section may write to the ring: then it
	 * stays mapped (leaked) rather than crash the target */
	session_release(s, q == 0);
	__atomic_store_n(&s->phase, MA_PHASE_DONE, __ATOMIC_RELEASE);
	ma_ctl_unlock();
}

/*
 * A descriptor that becomes readable when the attacher exits, or -1.  The
 * heartbeat alone lets a killed memattach's hooks run on for a second (each
 * event a full ring's bounded wait); with a pidfd the watchdog sees the
 * death within a tick.  The attacher passes its PID only when both share a
 * PID namespace (else the number would name another process here); without
 * pidfd_open (Linux < 5.3, a seccomp filter) the heartbeat is all there is.
 */
static int attacher_pidfd(const struct ma_session *s, struct ma_fd_id *id,
			  int *gone)
{
	int fd;

	*gone = 0;
	if (s->cfg.attacher_pid <= 0)
		return -1;
	fd = (int)syscall(SYS_pidfd_open, s->cfg.attacher_pid, 0);
	/* No such process: the attacher died (and was reaped) before this
	 * thread ran, say killed in the middle of the remote call that
	 * started the session, which the thread then finished alone.  With
	 * no heartbeat yet, the first one's grace would leave the hooks on
	 * for seconds with nobody reading */
	if (fd < 0 && errno == ESRCH)
		*gone = 1;
	return ma_fd_park(fd, id);
}

/* The start of a /proc file, NUL-terminated, in buf: its length, or 0 or
 * less when it could not be read (one read: these files are generated
 * whole at the first) */
static ssize_t proc_text(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int f = open(path, O_RDONLY | O_CLOEXEC);

	if (f < 0)
		return -1;
	n = read(f, buf, len - 1);
	close(f);
	if (n > 0)
		buf[n] = '\0';
	return n;
}

/*
 * fd is still our pidfd of the attacher: the file ma_fd_park noted, and a
 * pidfd of that process (its fdinfo's Pid line; -1 once the exited
 * attacher was reaped).  The inode alone cannot tell: before Linux 6.9
 * every pidfd, eventfd and epoll descriptor shares one anonymous inode.
 */
static int pidfd_ours(int fd, const struct ma_fd_id *id, pid_t pid)
{
	char path[48], buf[512];
	const char *p;
	struct stat st;
	long v;

	if (fstat(fd, &st) || st.st_dev != id->dev || st.st_ino != id->ino)
		return 0;
	ma_fmt(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (proc_text(path, buf, sizeof(buf)) <= 0)
		return 0;
	p = strstr(buf, "\nPid:");
	if (!p)
		return 0;
	for (p += 5; *p == ' ' || *p == '\t'; p++)
		;
	if (*p == '-') /* "-1": the process is gone */
		return p[1] == '1';
	for (v = 0; *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (*p - '0');
	return v == pid;
}

/*
 * 1 when the attacher exited.  The program may close every descriptor
 * above 2 (a daemon, os.closerange) or dup2 another over ours (then
 * /dev/null, say, is always readable): the descriptor is then not ours to
 * watch, nor to close, and *pidfd becomes -1, leaving the heartbeat to
 * notice a dead attacher (within a second instead of a tick).
 */
static int attacher_gone(int *pidfd, const struct ma_fd_id *id, pid_t pid)
{
	struct pollfd p = { .fd = *pidfd, .events = POLLIN };

	if (*pidfd < 0 || poll(&p, 1, 0) <= 0)
		return 0;
	if (!(p.revents & POLLNVAL) && pidfd_ours(*pidfd, id, pid))
		return 1;
	*pidfd = -1;
	return 0;
}

/*
 * A memattach alive (its pidfd still ours and not readable) whose main
 * thread is runnable (R) or in uninterruptible sleep (D): it has not
 * stopped beating by choice or by a stop (Ctrl-Z, SIGSTOP, a debugger: T
 * or t), it is waiting for the CPU or for its memory, as on a host that
 * thrashes, exactly when a memory problem is being chased.  Such a
 * memattach gets WAITING_HEARTBEAT_NS instead of HEARTBEAT_NS.  Its
 * /proc/PID/stat is read through the pidfd's PID, which names it while the
 * pidfd says it has not exited; the state is the first field after the
 * command's closing parenthesis (the command may hold any character).
 */
static int attacher_waits(int pidfd, pid_t pid)
{
	char path[48], buf[512];
	const char *p;

	if (pidfd < 0 || pid <= 0)
		return 0;
	ma_fmt(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (proc_text(path, buf, sizeof(buf)) <= 0)
		return 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && (p[2] == 'R' || p[2] == 'D');
}

/* The attacher's last heartbeat, hb, is too old: over HEARTBEAT_NS, or
 * WAITING_HEARTBEAT_NS for a memattach that waits to run */
static int heartbeat_stale(uint64_t now, uint64_t hb, int pidfd, pid_t pid)
{
	if (now <= hb || now - hb <= HEARTBEAT_NS)
		return 0;
	return now - hb > WAITING_HEARTBEAT_NS || !attacher_waits(pidfd, pid);
}

/*
 * The session's GOT hooks, on the watchdog with the threads running.
 * Scanning every module's relocations took 7-50 ms with a hundred
 * libraries loaded (docs/performance.md), all of it inside the attach's
 * freeze when ma_start did it; here the freeze does not depend on what
 * the process has loaded.  Patching with the threads running is what the
 * rescan of modules loaded later always did: each slot is one aligned
 * store, and every module but the executable is pinned with
 * dlopen(RTLD_NOLOAD), which also waits for a load in progress.  A block
 * malloc'ed before its module's slot was patched and freed after it is a
 * free of memory from before the attach (counted, ignored), and the
 * attacher waits for got_state before it reports the process attached.
 */
static void got_first_install(struct ma_session *s)
{
	struct ma_ring_hdr *h = s->ring.hdr;
	uint64_t t0 = ma_ring_now_ns();
	int32_t state = MA_GOT_NONE;
	int n = 0;

	ma_ctl_lock();
	if (ma_sess == s && phase_of(s) == MA_PHASE_TRACKING) {
		/* ma_start has installed ours (this thread may have started
		 * before it did: the lock orders them), and nothing can make
		 * this thread stop the session before this */
		ma_pyalloc_locate();
		n = ma_got_install(1);
		state = MA_GOT_DONE;
		if (n < 0) {
			char msg[128];

			ma_fmt(msg, sizeof(msg),
			       "GOT patching failed: error %d", -n);
			stop_begin(s, MA_STATE_FAILED, n, msg, 1);
			state = n;
			n = 0;
		}
	}
	ma_ctl_unlock();
	h->got_slots = (uint32_t)n;
	h->got_modules = ma_got_modules();
	h->py_domains = ma_pyalloc_located();
	h->got_ns = ma_ring_now_ns() - t0;
	__atomic_store_n(&h->got_state, state, __ATOMIC_RELEASE);
}

static void *watchdog_main(void *arg)
{
	struct ma_session *s = arg;
	struct ma_ring_hdr *h = s->ring.hdr;
	struct ma_fd_id pid_id;
	char msg[128];
	int pidfd, gone;

	ma_tls.guard = 1; /* this thread never records */
	prctl(PR_SET_NAME, "memattach", 0, 0, 0);
	pidfd = attacher_pidfd(s, &pid_id, &gone);
	got_first_install(s);
	fence_register();
	while (phase_of(s) == MA_PHASE_TRACKING) {
		uint32_t w = __atomic_load_n(&s->wd_word, __ATOMIC_ACQUIRE);
		uint64_t now = ma_ring_now_ns();
		uint64_t hb =
			__atomic_load_n(&h->heartbeat_ns, __ATOMIC_ACQUIRE);
		uint32_t state = 0;

		if (__atomic_load_n(&s->stop_req, __ATOMIC_ACQUIRE) ||
		    __atomic_load_n(&h->command, __ATOMIC_ACQUIRE) ==
			    MA_CMD_STOP) {
			state = MA_STATE_STOPPED;
			ma_fmt(msg, sizeof(msg), "stopped on request");
		} else if (gone || attacher_gone(&pidfd, &pid_id,
						 s->cfg.attacher_pid)) {
			state = MA_STATE_ORPHANED;
			ma_fmt(msg, sizeof(msg),
			       "consumer gone (memattach %d exited): tracking "
			       "stopped, hooks removed",
			       (int)s->cfg.attacher_pid);
		} else if (hb ? heartbeat_stale(now, hb, pidfd,
						s->cfg.attacher_pid)
			      : now - h->start_ns > FIRST_HEARTBEAT_NS) {
			state = MA_STATE_ORPHANED;
			ma_fmt(msg, sizeof(msg),
			       "consumer gone (no heartbeat for %llu ms): "
			       "tracking stopped, hooks removed",
			       (unsigned long long)(now -
						    (hb ? hb : h->start_ns)) /
				       1000000);
		}
		if (state) {
			ma_ctl_lock();
			stop_begin(s, state, 0, msg, 1);
			ma_ctl_unlock();
			break;
		}
		/* modules loaded behind our back (bare-name dlopen from a
		 * caller with its own search path, libc's internal dlopen) */
		if (ma_sess == s && ma_got_changed()) {
			ma_ctl_lock();
			if (ma_sess == s)
				ma_got_rescan();
			ma_ctl_unlock();
		}
		__atomic_store_n(&h->records, session_records(s),
				 __ATOMIC_RELAXED);
		/* the thread holding the GIL publishes what waits in the
		 * short-lived block tables at its next event */
		if (s->gil_serial && now - s->gflush_ns >= GFLUSH_NS) {
			__atomic_store_n(&s->gflush, 1, __ATOMIC_RELAXED);
			s->gflush_ns = now;
		}
		ma_futex_wait(&s->wd_word, w, TICK_NS);
	}
	ma_fd_close_own(pidfd, &pid_id);
	stop_finish(s);
	return NULL;
}

/*
 * The watchdog's thread attributes, made once (once_init) and kept: the
 * target's signals are not for our thread, so it starts with all of them
 * blocked.  glibc 2.32+ sets that mask itself (pthread_attr_setsigmask_np,
 * which allocates the attribute's extension: once, not at every start);
 * before it, our own pthread_sigmask around the create would be two system
 * calls more in ma_start, that is four ptrace stops while the target is
 * frozen.
 */
static pthread_attr_t wd_attr;
static int wd_attr_masked; /* wd_attr made, with the mask in it */

static void watchdog_attr_init(void)
{
	int (*setmask)(pthread_attr_t *, const sigset_t *);
	sigset_t all;

	/* NULL where this glibc (before 2.32) has none */
	setmask = (int (*)(pthread_attr_t *, const sigset_t *))dlsym(
		RTLD_DEFAULT, "pthread_attr_setsigmask_np");
	if (!setmask || pthread_attr_init(&wd_attr))
		return;
	sigfillset(&all);
	if (pthread_attr_setdetachstate(&wd_attr, PTHREAD_CREATE_DETACHED) ||
	    pthread_attr_setstacksize(&wd_attr, WATCHDOG_STACK) ||
	    setmask(&wd_attr, &all)) {
		pthread_attr_destroy(&wd_attr);
		return;
	}
	wd_attr_masked = 1;
}

static int watchdog_start(struct ma_session *s)
{
	pthread_attr_t a;
	sigset_t all, old;
	int err;

	if (wd_attr_masked)
		return -pthread_create(&s->watchdog, &wd_attr, watchdog_main,
				       s);
	if (pthread_attr_init(&a))
		return -ENOMEM;
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, WATCHDOG_STACK);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&s->watchdog, &a, watchdog_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&a);
	return -err;
}

/* ------------------------------------------------------------------ */
/* Fork */

static void atfork_parent(void)
{
	/* a fork that did not go through our fork hook: PID unknown */
	if (!ma_tls.in_fork && ma_on())
		ma_rec_fork(&ma_tls, 0);
}

void ma_after_fork_child(void)
{
	struct ma_slot *me = ma_tls.slot;

	/* the child must never write into the parent's ring */
	__atomic_store_n(&ma_enabled, 0, __ATOMIC_SEQ_CST);
	ma_sess = NULL;
	ctl_lock_word = 0;
	ma_slots_reset_except((uintptr_t)me > (uintptr_t)MA_SLOT_DEAD ? me
								      : NULL);
	for (uint32_t i = 0; i < nsessions; i++) {
		struct ma_session *s = sessions[i];

		if (phase_of(s) == MA_PHASE_DONE)
			continue;
		session_release(s, 1);
		s->phase = MA_PHASE_DONE;
	}
	if (ma_ctl.state == MA_STATE_TRACKING ||
	    ma_ctl.state == MA_STATE_STOPPING) {
		ma_ctl.state = MA_STATE_STOPPED;
		copy_msg(ma_ctl.message, sizeof(ma_ctl.message),
			 "forked child: not tracked");
	}
	ma_ctl.ring_fd = -1;
}

static void atfork_child(void)
{
	ma_after_fork_child();
}

/* ------------------------------------------------------------------ */
/* Entry points */

static int once_init(char *msg, size_t len)
{
	int err;

	if (once_ok)
		return 0;
	/* the payload's tables and the first session's struct, mapped at
	 * once (ma_parts) */
	ma_parts_map(&once_parts,
		     ma_self_bytes() + ma_slots_bytes() +
			     ma_page_round(sizeof(struct ma_session)));
	err = ma_self_init(&once_parts);
	if (err < 0) {
		ma_fmt(msg, len, "payload setup: out of memory");
		goto fail;
	}
	err = ma_real_resolve(msg, len);
	if (err < 0)
		goto fail;
	err = ma_slots_init(&once_parts);
	if (err < 0) {
		ma_fmt(msg, len, "payload setup: out of memory");
		goto fail;
	}
	err = pthread_atfork(NULL, atfork_parent, atfork_child);
	if (err) {
		ma_fmt(msg, len, "pthread_atfork: error %d", err);
		err = -err;
		goto fail;
	}
	watchdog_attr_init();
	once_ok = 1;
	return 0;
fail:
	ma_parts_drop(&once_parts);
	return err;
}

/* Hooks left by an earlier life (a fork child of a tracked parent) */
static void restore_leftovers(void)
{
	if (ma_got_installed())
		ma_got_restore();
	if (ma_pyalloc_installed())
		ma_pyalloc_restore(0);
}

static void start_locked(const struct ma_config *cfg)
{
	char msg[128] = "", warn[128] = "";
	struct ma_session *s, *old;
	struct ma_config c;
	unsigned int mask;
	pid_t pid;
	int err;

	if (!cfg || cfg->magic != MA_CONFIG_MAGIC ||
	    cfg->size < sizeof(struct ma_config)) {
		ctl_publish(-EINVAL, ma_ctl.state, ma_ctl.ring_fd,
			    "ma_start: no config, or bad magic or size");
		return;
	}
	memcpy(&c, cfg, sizeof(c));
	if (c.payload_fd >= 0)
		close(c.payload_fd);
	if (c.abi != MA_CONFIG_ABI) {
		ma_fmt(msg, sizeof(msg), "ma_start: config ABI %u, payload %u",
		       c.abi, MA_CONFIG_ABI);
		ctl_publish(-EPROTO, ma_ctl.state, ma_ctl.ring_fd, msg);
		return;
	}
	if (!c.ring_size || (c.ring_size & (c.ring_size - 1)) ||
	    c.ring_size < MA_RING_MIN_DATA || c.ring_size > MA_RING_MAX_DATA) {
		ma_fmt(msg, sizeof(msg),
		       "ma_start: ring size %llu is not a power of two in "
		       "[64 KiB, 64 GiB]",
		       (unsigned long long)c.ring_size);
		ctl_publish(-EINVAL, ma_ctl.state, ma_ctl.ring_fd, msg);
		return;
	}
	if ((c.flags & MA_TRACK_SAMPLE) &&
	    (!(c.flags & MA_TRACK_AGG) || !c.sample_mean ||
	     c.sample_mean > MA_SAMPLE_MAX)) {
		ma_fmt(msg, sizeof(msg),
		       "ma_start: sampling needs aggregated tracking and a "
		       "mean "
		       "in [1, 2^30] bytes");
		ctl_publish(-EINVAL, ma_ctl.state, ma_ctl.ring_fd, msg);
		return;
	}
	err = once_init(msg, sizeof(msg));
	if (err < 0) {
		ctl_publish(err, ma_ctl.state, ma_ctl.ring_fd, msg);
		return;
	}
	/* once: every system call here is two ptrace stops */
	pid = getpid();
	fence_setup(pid);

	/* an earlier session ends here; its watchdog finishes it */
	old = ma_sess;
	if (old && phase_of(old) == MA_PHASE_TRACKING)
		stop_begin(old, MA_STATE_STOPPED, 0,
			   "replaced by a new session", 0);
	restore_leftovers();

	s = session_new(&c, pid, msg, sizeof(msg), &err);
	if (!s) {
		ctl_publish(err, ma_ctl.state, -1, msg);
		return;
	}
	if (wants_stacks(&c))
		ma_stacks_setup(s, warn, sizeof(warn));
	ma_parts_drop(&s->parts); /* stacks off: their tables */
	s->phase = MA_PHASE_TRACKING;
	err = watchdog_start(s);
	if (err < 0) {
		ma_fmt(msg, sizeof(msg),
		       "cannot start the watchdog thread: "
		       "error %d",
		       -err);
		s->phase = MA_PHASE_DONE;
		session_release(s, 1);
		ctl_publish(err, ma_ctl.state, -1, msg);
		return;
	}
	/* hooks see enabled == 0 until the end: they pass through */
	__atomic_store_n(&ma_sess, s, __ATOMIC_RELEASE);
	mask = 1u << MA_HC_FORK;
	if (c.flags & MA_TRACK_NATIVE)
		mask |= 1u << MA_HC_NATIVE | 1u << MA_HC_LOADER;
	if (c.flags & MA_TRACK_MMAP)
		mask |= 1u << MA_HC_MMAP | 1u << MA_HC_LOADER;
	/* the GOT slots are found and patched by the watchdog, threads
	 * running (got_first_install) */
	ma_got_set_mask(mask);
	if (c.flags & MA_TRACK_PYTHON) {
		char pw[128] = "";

		if (ma_pyalloc_install(pw, sizeof(pw)) < 0 && !warn[0])
			copy_msg(warn, sizeof(warn), pw);
	}
	/* before enabled: the hooks read it only while enabled */
	if (c.flags & MA_TRACK_SAMPLE)
		ma_samp_start(s->gen, c.sample_mean, c.sample_filter_bits);
	else
		__atomic_store_n(&ma_samp_hot.gen, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->ring.hdr->state, MA_STATE_TRACKING,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&ma_enabled, 1, __ATOMIC_SEQ_CST);
	ctl_publish(0, MA_STATE_TRACKING, s->ring_fd, warn);
}

MA_EXPORT void ma_start(const struct ma_config *cfg)
{
	struct ma_tls *t = &ma_tls;
	int e = errno;

	t->guard++; /* our own allocations are not the target's */
	__atomic_add_fetch(&ma_ctl.generation, 1, __ATOMIC_RELAXED);
	if (ma_ctl_trylock()) {
		start_locked(cfg);
		ma_ctl_unlock();
	} else {
		ctl_publish(-EBUSY, ma_ctl.state, ma_ctl.ring_fd,
			    "busy: a session is being started or stopped; "
			    "retry");
	}
	t->guard--;
	errno = e;
}

MA_EXPORT void ma_stop(void)
{
	struct ma_tls *t = &ma_tls;
	int e = errno;

	t->guard++;
	if (ma_ctl_trylock()) {
		struct ma_session *s = ma_sess;

		if (s && phase_of(s) == MA_PHASE_TRACKING)
			stop_begin(s, MA_STATE_STOPPED, 0,
				   "stopped by 'memattach detach' (ma_stop)",
				   0);
		else if (!s)
			restore_leftovers();
		ma_ctl_unlock();
	} else {
		/* the watchdog holds the lock: it acts on the request */
		struct ma_session *s =
			__atomic_load_n(&ma_sess, __ATOMIC_ACQUIRE);

		if (s) {
			__atomic_store_n(&s->stop_req, 1, __ATOMIC_RELEASE);
			ma_futex_wake(&s->wd_word);
		}
	}
	t->guard--;
	errno = e;
}
