/* SPDX-License-Identifier: MIT */
/*
 * The block the attacher passes to the payload's ma_start(), and the control
 * block the payload exports (ma_ctl) for the attacher to read back with
 * process_vm_readv: the payload's return value cannot be taken from a
 * register, because every remote call returns through rt_sigreturn.
 */
#ifndef MA_CONFIG_H
#define MA_CONFIG_H

#include <stdint.h>

#include "ma_offsets.h"

#define MA_CONFIG_MAGIC 0x4746434d /* "MCFG" */
#define MA_CONFIG_ABI	2

enum ma_config_flags {
	MA_TRACK_NATIVE = 1 << 0, /* GOT hooks: malloc & co */
	MA_TRACK_MMAP = 1 << 1,	  /* GOT hooks: mmap, munmap, mremap */
	MA_TRACK_PYTHON = 1 << 2, /* CPython allocator domains */
	MA_TRACK_EVERY = 1 << 3,  /* an ALLOC and a FREE record for every
				     block, short-lived ones too (no TEMP) */
	MA_TRACK_AGG = 1 << 4,	  /* sums per key in the aggregate area
				     instead of ALLOC/FREE records, but for
				     mmap (common/ma_agg.h) */
	MA_TRACK_SAMPLE = 1 << 5, /* with MA_TRACK_AGG: only blocks sampled
				     every sample_mean bytes on average, with
				     their estimates (common/ma_sample.h) */
};

/* The most Python frames a stack keeps (max_frames below): the payload's
 * per-thread frame cache is sized by it, the attacher refuses more */
#define MA_CONFIG_MAX_FRAMES 256

struct ma_config {
	uint32_t magic;	       /* MA_CONFIG_MAGIC */
	uint32_t abi;	       /* MA_CONFIG_ABI */
	uint32_t size;	       /* sizeof(struct ma_config) */
	uint32_t flags;	       /* enum ma_config_flags */
	uint64_t ring_size;    /* data bytes, a power of two */
	uint32_t full_wait_us; /* bounded wait on a full ring, then drop */
	uint32_t max_frames;   /* Python frames kept per stack */
	int32_t attacher_pid;
	int32_t payload_fd;    /* memfd holding the payload image: closed by
			       ma_start, -1 if none */
	uint64_t runtime_addr; /* _PyRuntime */
	struct ma_py_offsets off;
	uint64_t sample_mean; /* MA_TRACK_SAMPLE: mean bytes between samples */
	uint32_t sample_filter_bits; /* MA_TRACK_SAMPLE: the free's filter,
					common/ma_sample.h */
	uint32_t _pad0;
};

/* Exported by the payload as the symbol `ma_ctl` */
struct ma_ctl {
	uint32_t magic; /* MA_CONFIG_MAGIC once the payload is initialised */
	uint32_t abi;
	uint32_t generation; /* number of ma_start calls so far */
	int32_t status;	     /* result of the last ma_start: 0 or -errno */
	int32_t ring_fd;     /* memfd of the ring in the target, -1 when none */
	uint32_t state;	     /* enum ma_ring_state of the current session */
	char message[128];   /* why ma_start failed */
};

#endif
