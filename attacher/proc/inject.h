/* SPDX-License-Identifier: MIT */
/*
 * Injecting the payload and starting a tracking session
 * (docs/architecture.md, "Injection"):
 *   1. freeze every thread; pick one at a safe point (not inside malloc or
 *      the dynamic loader, by its native backtrace), else let the process
 *      run briefly and try again;
 *   2. remote calls on that thread: memfd_create in the target, the payload
 *      image written into it through /proc/PID/fd/N,
 *      dlopen("/proc/self/fd/N"), then ma_start(config) — or only ma_start
 *      when a payload from this memattach is already loaded;
 *   3. read the payload's ma_ctl back, resume every thread;
 *   4. map the ring the payload created, through /proc/PID/fd/RING.
 * Every remote call returns through a sigreturn frame (rcall.h), so a
 * memattach killed at any moment leaves the target running.
 */
#ifndef MA_INJECT_H
#define MA_INJECT_H

#include <stdint.h>
#include <sys/types.h>

#include "ma_agg.h"
#include "ma_config.h"
#include "ma_heap.h"
#include "ma_ring.h"

struct ma_target;

struct ma_inject_opts {
	uint64_t ring_size; /* data bytes, power of two */
	uint32_t flags;	    /* enum ma_config_flags */
	uint32_t max_frames;
	uint32_t full_wait_us;
	uint64_t sample_mean; /* MA_TRACK_SAMPLE: mean bytes between samples */
	int max_attempts;     /* tries to find a thread at a safe point */
};

/* What an injection gives the attacher: the payload in the target and the
 * ring it created, mapped here (not the payload's own session struct,
 * injector/internal.h) */
struct ma_injection {
	pid_t pid;
	struct ma_ring_hdr *ring; /* mapped header + data */
	struct ma_agg_hdr *agg;	  /* MA_TRACK_AGG: the aggregate area */
	uint8_t *data;
	uint64_t map_len;
	int ring_fd;	    /* our descriptor of the ring memfd */
	int target_ring_fd; /* the payload's */
	int reused;	    /* the payload was already loaded */
	uint64_t payload_base;
	uint64_t ma_ctl_addr, ma_start_addr, ma_stop_addr;
	/* timings */
	uint64_t attach_ns; /* first freeze to ring mapped */
	uint64_t frozen_ns; /* longest single freeze */
	int attempts;	    /* freezes needed to find a safe thread */
	uint64_t t_pick_ns, t_dlopen_ns, t_start_ns; /* phases, for -v */
	/* the GOT hooks, patched by the payload's watchdog after the thaw
	 * (ring header, got_*); filled by the tracking session, which waits
	 * for them (track.c) */
	int32_t got_state;
	uint32_t got_slots, got_modules;
	uint32_t py_domains; /* the ring header's: domains located */
	uint64_t got_ns;
	pid_t hijacked;		  /* the thread that ran the calls */
	int payload_fd_in_target; /* memfd of the image, closed by ma_start */
	uint32_t sample_filter_bits; /* sampled: the free's filter, 2^bits */
};

/* What `memattach detach` and `info` see of a loaded payload */
struct ma_payload_info {
	int loaded;
	int same_build; /* built by this memattach: its symbols are known */
	int no_code; /* its image is mapped without its code (a failed load) */
	uint64_t base;
	struct ma_ctl ctl; /* valid when same_build */
	/* the payloads of other memattach builds loaded beside (or instead
	 * of) this one's: how many, the first one's base, and whether one of
	 * them tracks now (a ring is mapped that this build's does not
	 * account for) */
	int others, other_busy;
	uint64_t other_base;
};

int ma_inject_start(struct ma_target *t, const struct ma_inject_opts *o,
		    struct ma_injection *s);
/* Unmap the ring (the payload stops by itself once told, or orphaned) */
void ma_injection_close(struct ma_injection *s);

int ma_payload_probe(struct ma_target *t, struct ma_payload_info *pi);

/* Sets of payload states (enum ma_state), for the two calls below */
#define MA_PAYLOAD_STATE(s) (1u << (s))
#define MA_PAYLOAD_BUSY                                                        \
	(MA_PAYLOAD_STATE(MA_STATE_STARTING) |                                 \
	 MA_PAYLOAD_STATE(MA_STATE_TRACKING) |                                 \
	 MA_PAYLOAD_STATE(MA_STATE_STOPPING))

/* A payload is loaded and in one of the states */
int ma_payload_in(const struct ma_payload_info *pi, unsigned int states);
/* Probe again every 100 ms, at most tries times, while it is */
void ma_payload_wait(struct ma_target *t, struct ma_payload_info *pi,
		     unsigned int states, int tries);
/* When a live memattach tracks pid now (the payload is busy and another
 * process maps its ring): -EALREADY with the message naming that memattach
 * and since when, exit code MA_EXIT_BUSY; else 0 */
int ma_err_busy(pid_t pid, const struct ma_payload_info *pi);
/* Remote call of ma_stop() in a loaded payload (memattach detach) */
int ma_inject_stop(struct ma_target *t, struct ma_payload_info *pi);

/* Close what a memattach killed during an attach left in the target: the
 * descriptors of payload images it created (a remote close() each, every
 * thread stopped).  *closed: how many. */
int ma_inject_cleanup(struct ma_target *t, int *closed);

/* The heap census' copy of a process (docs/heap.md) */
/* A thread of the target at the census's freeze: its pthread_self()
 * (fs_base) and stack pointer, taken while stopped; for a thread spared
 * the stop (asleep in a write, hazard 11): fs_base 0, sp from /proc, and
 * its ID in the target's PID namespace, to find its pthread_self() by
 * ma_pthread_is() */
struct ma_heap_thread {
	pid_t tid, nstid;
	int spared;
	uint64_t fs_base, sp;
};

struct ma_heap_copy {
	pid_t copy;	   /* stopped under our ptrace, dies with us */
	pid_t hijacked;	   /* the thread that made it */
	uint64_t box_addr; /* struct ma_heap_box, in the copy */
	int loaded_now;	   /* the payload was loaded for this */
	uint64_t frozen_ns, clone_ns, total_ns;
	uint64_t all_stopped_ns; /* every thread stopped (before the clone) */
	struct ma_heap_thread *threads;
	size_t nthreads;
};
/* Freeze the target, load the payload if needed, make the copy with
 * ma_heap_fork(cfg), resume the target; the copy is running the walk when
 * this returns.  out->threads is malloc'ed. */
int ma_inject_heap_fork(struct ma_target *t, const struct ma_heap_cfg *cfg,
			struct ma_heap_copy *out);
/* Reap the census copies of t that have ended (zombies only the target can
 * reap): a short freeze and a remote ma_heap_reap(), which waits for the
 * PIDs its ma_heap_fork() recorded and nothing else; nothing when none has
 * ended.  *reaped: how many. */
int ma_inject_reap(struct ma_target *t, int *reaped);
/* The payload image embedded in this binary */
const uint8_t *ma_payload_image(size_t *len);

#endif
