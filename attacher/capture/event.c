/* SPDX-License-Identifier: MIT */
/* Ring records -> events (event.h) */
#include "event.h"

#include <errno.h>
#include <string.h>

#include "errors.h"

static int rec_too_short(const char *what, uint32_t len)
{
	return ma_err(-EINVAL, "ring record %s of %u bytes is too short", what,
		      len);
}

int ma_event_from_rec(const struct ma_rec *rec, struct ma_event *ev)
{
	uint32_t type = ma_rec_type(rec->type_len);
	uint32_t len = ma_rec_len(rec->type_len);

	memset(ev, 0, sizeof(*ev));
	ev->thread = rec->thread;
	switch (type) {
	case MA_REC_PAD:
		return 0;
	case MA_REC_ALLOC: {
		const struct ma_rec_alloc *a = (const void *)rec;

		if (len < sizeof(*a))
			return rec_too_short("ALLOC", len);
		ev->type = MA_EV_ALLOC;
		ev->alloc.ptr = a->ptr;
		ev->alloc.size = a->size;
		ev->alloc.node = a->node;
		ev->alloc.kind = a->kind;
		return 1;
	}
	case MA_REC_FREE: {
		const struct ma_rec_free *f = (const void *)rec;

		if (len < sizeof(*f))
			return rec_too_short("FREE", len);
		ev->type = MA_EV_FREE;
		ev->free.ptr = f->ptr;
		ev->free.size = f->size;
		ev->free.kind = f->kind;
		return 1;
	}
	case MA_REC_THREAD: {
		const struct ma_rec_thread *t = (const void *)rec;

		if (len < sizeof(*t))
			return rec_too_short("THREAD", len);
		ev->type = MA_EV_THREAD;
		ev->thr.tid = t->tid;
		ev->thr.pthread = t->pthread;
		memcpy(ev->thr.name, t->name, sizeof(t->name));
		ev->thr.name[16] = '\0';
		return 1;
	}
	case MA_REC_CODE: {
		const struct ma_rec_code *c = (const void *)rec;
		const char *s = (const char *)(c + 1);
		uint64_t need;

		if (len < sizeof(*c))
			return rec_too_short("CODE", len);
		need = (uint64_t)sizeof(*c) + c->name_len + c->file_len +
		       c->linetable_len;
		if (need > len)
			return ma_err(-EINVAL,
				      "ring record CODE %u: strings of %llu "
				      "bytes overrun its %u bytes",
				      c->id, (unsigned long long)need, len);
		ev->type = MA_EV_CODE;
		ev->code.id = c->id;
		ev->code.firstlineno = c->firstlineno;
		ev->code.version_hex = c->version_hex;
		ev->code.name_len = c->name_len;
		ev->code.file_len = c->file_len;
		ev->code.linetable_len = c->linetable_len;
		ev->code.name = s;
		ev->code.file = s + c->name_len;
		ev->code.linetable =
			(const uint8_t *)s + c->name_len + c->file_len;
		return 1;
	}
	case MA_REC_NODE: {
		const struct ma_rec_node *n = (const void *)rec;

		if (len < sizeof(*n))
			return rec_too_short("NODE", len);
		ev->type = MA_EV_NODE;
		ev->node.id = n->id;
		ev->node.parent = n->parent;
		ev->node.code = n->code;
		ev->node.addr = n->addr;
		return 1;
	}
	case MA_REC_STATS: {
		const struct ma_rec_stats *s = (const void *)rec;

		if (len < sizeof(*s))
			return rec_too_short("STATS", len);
		ev->type = MA_EV_STATS;
		ev->stats.allocs = s->allocs;
		ev->stats.frees = s->frees;
		ev->stats.lost_records = s->lost_records;
		ev->stats.lost_bytes = s->lost_bytes;
		ev->stats.stack_truncated = s->stack_truncated;
		ev->stats.node_table_full = s->node_table_full;
		return 1;
	}
	case MA_REC_FORK: {
		const struct ma_rec_fork *f = (const void *)rec;

		if (len < sizeof(*f))
			return rec_too_short("FORK", len);
		ev->type = MA_EV_FORK;
		ev->fork.child_pid = f->child_pid;
		return 1;
	}
	default:
		return ma_err(-ENOTSUP,
			      "ring record of unknown type %u (%u bytes)", type,
			      len);
	}
}
