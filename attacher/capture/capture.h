/* SPDX-License-Identifier: MIT */
/*
 * The capture file: what `memattach attach` writes while it drains the ring,
 * and what `memattach report` reads.  Byte layout in docs/capture-format.md.
 *
 * A header (who was tracked, when, how), then independently decodable
 * blocks of events, each zstd-compressed and checksummed, then a trailer
 * block with the final counters.  A file cut anywhere (memattach killed)
 * still reads up to its last complete block; a damaged block is reported
 * with its offset.  Writer and reader both use memory bounded by the block
 * size, whatever the number of events.
 *
 * Events are the ring's records (common/ma_record.h) plus the attacher's
 * own samples (time, RSS, tracked live bytes).  Every event has an index:
 * its position among all events of the file, from 0, which is what block
 * headers, the accounting's "moment of the peak" and a second pass over the
 * file refer to.  PAD records are not events.
 */
#ifndef MA_CAPTURE_H
#define MA_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "ma_record.h"
#include "event.h"

/* the format version written (PROC and TNAME events are version 3's),
 * and the newest read */
#define MA_CAPTURE_VERSION 3

/* A flag of the header's tracking flags, never a session's: a capture of
 * several processes (attach --children, attach PID PID...) */
#define MA_CAPTURE_PROCS (1u << 31)

/* Limits of the format (the reader rejects anything larger as corrupt) */
#define MA_CAPTURE_MAX_PYVER   63 /* bytes of the python version string */
#define MA_CAPTURE_MAX_EXE     4096
#define MA_CAPTURE_MAX_CMDLINE 65536	   /* longer command lines are cut */
#define MA_CAPTURE_MAX_RAW     (64u << 20) /* decompressed bytes of a block */

/* Who was tracked (header of the file) */
struct ma_capture_meta {
	uint32_t version; /* format version (the reader fills it; the
			     writer writes MA_CAPTURE_VERSION) */
	int32_t pid;
	uint32_t py_version_hex; /* PY_VERSION_HEX, 0 when unknown */
	uint32_t flags;		 /* enum ma_config_flags of the session */
	/* MA_TRACK_SAMPLE: the mean bytes between samples (every figure is
	 * an estimate), else 0 */
	uint32_t sample_mean;
	uint64_t start_wall_ns; /* CLOCK_REALTIME, ns since the epoch */
	const char *py_version; /* "3.11.2"; NULL = "" */
	const char *exe;	/* executable path; NULL = "" */
	const char *cmdline;	/* arguments joined by spaces; NULL = "" */
};

/* Final counters (trailer block) */
struct ma_capture_trailer {
	/* Counted by the writer itself (the caller's values are ignored) */
	uint64_t events;      /* every event of the file */
	uint64_t allocations; /* ALLOC events */
	uint64_t frees;	      /* FREE events */
	uint64_t samples;
	/* From the caller */
	uint64_t lost_records; /* dropped by the payload on a full ring */
	uint64_t lost_bytes;
	uint64_t unknown_frees;	  /* frees of memory allocated before attach */
	uint64_t stack_truncated; /* stacks cut at max_frames */
	uint64_t end_wall_ns;	  /* CLOCK_REALTIME at the end */
	uint64_t duration_ns;	  /* tracked time */
	uint32_t
		complete; /* 1: tracking ended normally, the ring was drained */
};

/* ------------------------------------------------------------------ */
/* Writer: single-threaded, streams in blocks, memory bounded by the block
 * size (about 1 MiB of raw events, plus one CODE record at most). */

struct ma_capture_writer;

/* Create path, mode 0600, owned by the effective user, and write the
 * header: a new file under a temporary name beside it (O_EXCL), renamed
 * over path, so that no symlink is ever followed; a symlink or a
 * non-regular file at path is refused.  0 or -errno with a message (exit
 * class MA_EXIT_CAPTURE). */
int ma_capture_create(const char *path, const struct ma_capture_meta *meta,
		      struct ma_capture_writer **out);

/* The same, but the file stays under its temporary name until
 * ma_capture_publish(): a writer closed or aborted before that removes
 * it, and what was at path stays (an attach refused or failed must not
 * replace the user's last capture with an empty one). */
int ma_capture_begin(const char *path, const struct ma_capture_meta *meta,
		     struct ma_capture_writer **out);
/* Rename the file over its path (no-op once done).  0 or -errno. */
int ma_capture_publish(struct ma_capture_writer *w);

/* Append one ring record as it came from the ring (PAD is skipped, STATS
 * kept as an event).  Errors are sticky: once a write failed, every later
 * call returns the same error. */
int ma_capture_write(struct ma_capture_writer *w, const struct ma_rec *rec);

/* Append an already decoded event (ev->index is ignored) */
int ma_capture_write_event(struct ma_capture_writer *w,
			   const struct ma_event *ev);

/*
 * Append a sample.  Also ends the current block when it has been open for
 * MA_CAPTURE_FLUSH_NS of sample time, which bounds what a SIGKILL of
 * memattach loses.
 */
#define MA_CAPTURE_FLUSH_NS 1000000000ull
int ma_capture_sample(struct ma_capture_writer *w, uint64_t t_ns, uint64_t rss,
		      uint64_t live);

/* End the current block now (write it to the file) */
int ma_capture_flush(struct ma_capture_writer *w);

/* Bytes written to the file so far (header and complete blocks) */
uint64_t ma_capture_bytes(const struct ma_capture_writer *w);

/* Events appended so far */
uint64_t ma_capture_events(const struct ma_capture_writer *w);

/*
 * Flush, write the trailer (tr may be NULL: all zero, not complete), close
 * and free the writer, also on error.  Returns 0 or the first error.
 */
int ma_capture_close(struct ma_capture_writer *w,
		     const struct ma_capture_trailer *tr);

/* Free without a trailer (the file then reads as truncated) */
void ma_capture_abort(struct ma_capture_writer *w);

/* ------------------------------------------------------------------ */
/* Reader: streams block by block, memory bounded by one block. */

struct ma_capture_reader;

/* Open and check the header.  Errors (-errno, message set, exit class
 * MA_EXIT_CAPTURE): -ENOENT/-EACCES..., -ENODATA empty file, -EPROTO not a
 * capture, -EPROTONOSUPPORT newer format, -EBADMSG damaged header. */
int ma_capture_open(const char *path, struct ma_capture_reader **out);
void ma_capture_reader_close(struct ma_capture_reader *r);
/* 1 when path starts like a capture file (its magic), else 0 */
int ma_capture_is(const char *path);
/* What an empty file is called, by the capture reader and the heap
 * snapshot's alike: nothing in it says which it was meant to be (an attach
 * stopped before writing its header leaves an empty capture) */
#define MA_EMPTY_FILE_MSG                                                      \
	"empty file (neither a capture nor a heap snapshot; an attach that "   \
	"stopped before writing its header leaves one)"

/* The header; strings owned by the reader */
const struct ma_capture_meta *
ma_capture_meta(const struct ma_capture_reader *r);

/*
 * Next event: 1 and *ev filled, 0 at the end of the data, or -EBADMSG
 * (message names the file and the block's offset) for a damaged block, -EIO
 * for a read error.  The end of a file cut short (no trailer) is not an
 * error: 0 is returned after the last complete block, ma_capture_trailer()
 * is NULL and ma_capture_warning() says what was lost.  After an error,
 * every call returns the same error.
 */
int ma_capture_next(struct ma_capture_reader *r, struct ma_event *ev);

/* The trailer, once ma_capture_next() returned 0; NULL when the file has
 * none (truncated) */
const struct ma_capture_trailer *
ma_capture_trailer(const struct ma_capture_reader *r);

/* After the end: NULL for a complete file, else a one-line message such as
 * "capture x.cap is truncated at byte 1234: read 5000 events from 3 complete
 * blocks, the rest is lost" */
const char *ma_capture_warning(const struct ma_capture_reader *r);

/* Events returned so far */
uint64_t ma_capture_events_read(const struct ma_capture_reader *r);

/* Byte offset just past the last block read */
uint64_t ma_capture_offset(const struct ma_capture_reader *r);

#endif
