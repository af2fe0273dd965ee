/* SPDX-License-Identifier: MIT */
/*
 * Python stacks from inside the target: the calling thread's own frames,
 * walked like attacher/cpython/pyread.c does from outside, but with plain pointer
 * reads.  Reading one's own frames needs no GIL: only this thread links and
 * unlinks them, and the code objects of live frames are alive.
 *
 * A stack becomes one number, a node of the frame trie (ma_record.h):
 *   - code objects get ids (CODE record, once per code object),
 *   - (parent node, code id, instruction offset) get node ids (NODE record).
 * Both tables are open-addressing hash tables with immutable entries:
 * lookups are lock-free (an acquire load of the id, 0 = empty), inserts
 * take a spinlock, and the definition record is committed to the ring
 * BEFORE the id is published, so no event can name an id the consumer has
 * not seen.  A code object freed and another allocated at its address is a
 * different key (name, file and first line are part of it).
 *
 * Each thread keeps its previous stack (slot cache): the unchanged outer
 * part of the next stack costs no lookup at all, so an allocation in the
 * same function as the last one costs one node lookup.
 */
#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include "internal.h"

#define CODE_CAP      (1u << 16)
#define NODE_CAP      (1u << 20)
#define MAX_STR_CHARS 4096
#define MAX_LINETABLE (1u << 20)

static void *(*get_tstate)(void);
/* The thread state of the thread holding the GIL (<= 3.11) or of the calling
 * thread if attached (3.12+): one call and one load, where
 * PyGILState_GetThisThreadState goes through pthread_getspecific.  Right only
 * for a caller holding the GIL, which the MEM and OBJ domains' callers do. */
static void *(*cur_tstate)(void);
/* ... and when that function is a single load of a global (`mov X(%rip),
 * %rax; ret`: _PyRuntime.gilstate.tstate_current up to 3.11 in a static
 * build such as Debian's python3.11), that global, read directly */
static const uintptr_t *cur_tstate_var;
static uintptr_t code_type; /* &PyCode_Type */

static inline uint64_t rd64(uintptr_t base, int32_t off)
{
	return *(const uint64_t *)(base + (intptr_t)off);
}

static inline int32_t rd32(uintptr_t base, int32_t off)
{
	return *(const int32_t *)(base + (intptr_t)off);
}

static inline uint8_t rd8(uintptr_t base, int32_t off)
{
	return *(const uint8_t *)(base + (intptr_t)off);
}

/* ------------------------------------------------------------------ */
/* Setup */

/* The code and node tables, taken from the session's parts (ma_parts) */
size_t ma_stacks_bytes(void)
{
	return CODE_CAP * sizeof(struct ma_code_ent) +
	       NODE_CAP * sizeof(struct ma_node_ent);
}

int ma_stacks_setup(struct ma_session *s, char *msg, size_t len)
{
	const struct ma_py_offsets *o = &s->cfg.off;
	const struct ma_pyver *v = ma_pyver_of(o->version_hex);
	const char *missing;

	s->minor = 0;
	if (o->abi != MA_OFFSETS_ABI) {
		ma_fmt(msg, len, "python stacks off: offsets ABI %u, not %u",
		       o->abi, MA_OFFSETS_ABI);
		return -EPROTO;
	}
	if (!v) {
		ma_fmt(msg, len,
		       "python stacks off: version %x not supported "
		       "(3.%d-3.%d)",
		       o->version_hex, MA_PY_MIN_MINOR, MA_PY_MAX_MINOR);
		return -ENOTSUP;
	}
	missing = ma_pyver_missing(o, ma_pyver_stack_fields(v));
	if (missing) {
		ma_fmt(msg, len, "python stacks off: offset %s is missing",
		       missing);
		return -EPROTO;
	}
	if (!ma_py_str_bits_ok(o)) {
		ma_fmt(msg, len, "python stacks off: str layout out of range");
		return -EPROTO;
	}
	if (!get_tstate)
		get_tstate = (void *(*)(void))dlsym(
			RTLD_DEFAULT, "PyGILState_GetThisThreadState");
	if (!code_type)
		code_type = (uintptr_t)dlsym(RTLD_DEFAULT, "PyCode_Type");
	if (!cur_tstate)
		cur_tstate =
			(void *(*)(void))dlsym(RTLD_DEFAULT, v->tstate_get);
	if (cur_tstate && !cur_tstate_var) {
		const uint8_t *c = (const uint8_t *)(uintptr_t)cur_tstate;

		if (c[0] == 0x48 && c[1] == 0x8b && c[2] == 0x05 &&
		    c[7] == 0xc3) {
			int32_t d;

			memcpy(&d, c + 3, sizeof(d));
			cur_tstate_var = (const uintptr_t *)(c + 7 + d);
		}
	}
	if (!get_tstate ||
	    (ma_py_layouts[v->layout].other_executables && !code_type)) {
		ma_fmt(msg, len,
		       "python stacks off: PyGILState_GetThisThreadState or "
		       "PyCode_Type not found");
		return -ENOENT;
	}
	s->codes_cap = CODE_CAP;
	s->nodes_cap = NODE_CAP;
	s->tabs_len = ma_stacks_bytes();
	s->tabs = ma_parts_take(&s->parts, s->tabs_len);
	if (!s->tabs) {
		ma_fmt(msg, len, "python stacks off: no memory for tables");
		return -ENOMEM;
	}
	s->codes = s->tabs;
	s->nodes = (struct ma_node_ent *)(s->codes + CODE_CAP);
	s->max_frames =
		s->cfg.max_frames ? s->cfg.max_frames : MA_DEFAULT_FRAMES;
	if (s->max_frames > MA_MAX_FRAMES)
		s->max_frames = MA_MAX_FRAMES;
	s->layout = v->layout;
	s->minor = v->minor;
	/* short-lived blocks (record.c) rely on one GIL serialising the
	 * Python domains: always so up to 3.11; from 3.12 only while a
	 * single interpreter exists, which needs these two offsets */
	if (s->cfg.flags & MA_TRACK_EVERY) {
		s->gil_serial = 0;
	} else if (!v->gil_per_interp) {
		s->gil_serial = 1;
	} else if (s->cfg.runtime_addr && o->runtime_interpreters_head >= 0 &&
		   o->interp_next >= 0) {
		s->interp_head = (uintptr_t)s->cfg.runtime_addr +
				 (uintptr_t)o->runtime_interpreters_head;
		s->interp_next = o->interp_next;
		s->gil_serial = 2;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Strings */

/* A compact str: its characters follow the header (code objects hold no
 * other kind) */
struct ustr {
	const uint8_t *data;
	int64_t len;
	int kind; /* 1, 2, 4 bytes per character; 0: unreadable */
};

static void ustr_get(const struct ma_py_offsets *o, uintptr_t str,
		     struct ustr *u)
{
	u->kind = 0;
	u->len = 0;
	if (!str)
		return;
	int64_t len = (int64_t)rd64(str, o->unicode_length);
	uint32_t state = (uint32_t)rd32(str, o->unicode_state);
	int kind = (int)((state >> o->unicode_kind_shift) & 7);
	int compact = (state >> o->unicode_compact_bit) & 1;
	int ascii = (state >> o->unicode_ascii_bit) & 1;

	if (!compact || len < 0 || (kind != 1 && kind != 2 && kind != 4))
		return;
	u->len = len > MAX_STR_CHARS ? MAX_STR_CHARS : len;
	u->kind = kind;
	u->data =
		(const uint8_t *)(str +
				  (uintptr_t)(ascii ? o->unicode_ascii_size
						    : o->unicode_compact_size));
}

static uint32_t ustr_char(const struct ustr *u, int64_t i)
{
	if (u->kind == 1)
		return u->data[i];
	if (u->kind == 2)
		return ((const uint16_t *)u->data)[i];
	return ((const uint32_t *)u->data)[i];
}

/* UTF-8 of a str into out (NULL: only count); unreadable ones are "?" */
static size_t ustr_utf8(const struct ustr *u, char *out)
{
	size_t n = 0;

	if (!u->kind) {
		if (out)
			out[0] = '?';
		return 1;
	}
	for (int64_t i = 0; i < u->len; i++) {
		uint32_t c = ustr_char(u, i);
		char b[4];
		size_t k;

		if ((c >= 0xd800 && c <= 0xdfff) || c >= 0x110000 || c == 0)
			c = c == 0 ? '?' : 0xfffd;
		if (c < 0x80) {
			b[0] = (char)c;
			k = 1;
		} else if (c < 0x800) {
			b[0] = (char)(0xc0 | c >> 6);
			b[1] = (char)(0x80 | (c & 63));
			k = 2;
		} else if (c < 0x10000) {
			b[0] = (char)(0xe0 | c >> 12);
			b[1] = (char)(0x80 | (c >> 6 & 63));
			b[2] = (char)(0x80 | (c & 63));
			k = 3;
		} else {
			b[0] = (char)(0xf0 | c >> 18);
			b[1] = (char)(0x80 | (c >> 12 & 63));
			b[2] = (char)(0x80 | (c >> 6 & 63));
			b[3] = (char)(0x80 | (c & 63));
			k = 4;
		}
		if (out)
			memcpy(out + n, b, k);
		n += k;
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* Code ids */

static inline uint32_t code_hash(uintptr_t code)
{
	return (uint32_t)(((uint64_t)code >> 4) * 0x9e3779b97f4a7c15ull >> 32);
}

static uint32_t code_find(const struct ma_session *s, uintptr_t code,
			  uint64_t name_p, uint64_t file_p, int32_t first,
			  struct ma_code_ent **empty)
{
	uint32_t mask = s->codes_cap - 1, i = code_hash(code) & mask;

	for (;;) {
		struct ma_code_ent *e = &s->codes[i];
		uint32_t id = __atomic_load_n(&e->id, __ATOMIC_ACQUIRE);

		if (!id) {
			if (empty)
				*empty = e;
			return 0;
		}
		if (e->addr == code && e->name_p == name_p &&
		    e->file_p == file_p && e->firstlineno == first)
			return id;
		i = (i + 1) & mask;
	}
}

/* Under tab_lock: write the CODE record, then publish the entry */
static uint32_t code_define(struct ma_session *s, struct ma_slot *sl,
			    uintptr_t code, uint64_t name_p, uint64_t file_p,
			    int32_t first, struct ma_code_ent *e)
{
	const struct ma_py_offsets *o = &s->cfg.off;
	const struct ma_pyver *v = ma_pyver_of(o->version_hex);
	uintptr_t qual = v->fields & MA_F(code_qualname)
				 ? rd64(code, o->code_qualname)
				 : 0;
	struct ustr name, file;
	uintptr_t lt = rd64(code, o->code_linetable);
	const uint8_t *lt_data = NULL;
	size_t nlen, flen, ltlen = 0, fixed = sizeof(struct ma_rec_code);
	size_t limit = s->ring.size / 4, total;
	struct ma_rec_code *r;
	uint32_t id;

	ustr_get(o, qual ? qual : name_p, &name);
	ustr_get(o, file_p, &file);
	nlen = ustr_utf8(&name, NULL);
	flen = ustr_utf8(&file, NULL);
	if (lt) {
		int64_t n = (int64_t)rd64(lt, o->varobject_size);

		if (n > 0 && n <= MAX_LINETABLE) {
			ltlen = (size_t)n;
			lt_data = (const uint8_t *)(lt +
						    (uintptr_t)o->bytes_sval);
		}
	}
	if (fixed + nlen + flen + 8 > limit)
		return 0;
	/* a cut line table still maps the first instructions right */
	if (fixed + nlen + flen + ltlen + 7 > limit)
		ltlen = limit - 7 - fixed - nlen - flen;
	total = (fixed + nlen + flen + ltlen + 7) & ~(size_t)7;
	r = ma_ring_reserve(&s->ring, (uint32_t)total);
	if (!r)
		return 0;
	id = s->next_code + 1;
	r->h.thread = sl->thread;
	r->id = id;
	r->firstlineno = first;
	r->name_len = (uint32_t)nlen;
	r->file_len = (uint32_t)flen;
	r->linetable_len = (uint32_t)ltlen;
	r->version_hex = o->version_hex;
	char *p = (char *)(r + 1);

	ustr_utf8(&name, p);
	ustr_utf8(&file, p + nlen);
	if (ltlen)
		memcpy(p + nlen + flen, lt_data, ltlen);
	memset(p + nlen + flen + ltlen, 0, total - fixed - nlen - flen - ltlen);
	ma_ring_commit(r, MA_REC_CODE, (uint32_t)total);
	MA_CTR_INC(sl->defs);

	e->addr = code;
	e->name_p = name_p;
	e->file_p = file_p;
	e->firstlineno = first;
	__atomic_store_n(&e->id, id, __ATOMIC_RELEASE);
	s->next_code = id;
	s->ncodes++;
	return id;
}

static uint32_t code_id(struct ma_session *s, struct ma_slot *sl,
			uintptr_t code)
{
	const struct ma_py_offsets *o = &s->cfg.off;
	uint64_t name_p = rd64(code, o->code_name);
	uint64_t file_p = rd64(code, o->code_filename);
	int32_t first = rd32(code, o->code_firstlineno);
	struct ma_code_ent *e = NULL;
	uint32_t id = code_find(s, code, name_p, file_p, first, NULL);

	if (ma_likely(id != 0))
		return id;
	ma_spin_lock(&s->tab_lock);
	id = code_find(s, code, name_p, file_p, first, &e);
	if (!id && s->ncodes < s->codes_cap / 4 * 3 &&
	    (!code_type || rd64(code, o->object_type) == code_type))
		id = code_define(s, sl, code, name_p, file_p, first, e);
	ma_spin_unlock(&s->tab_lock);
	return id;
}

/* ------------------------------------------------------------------ */
/* Nodes */

static inline uint32_t node_hash(uint32_t parent, uint32_t code, int32_t addr)
{
	uint64_t h = (uint64_t)parent * 0x9e3779b97f4a7c15ull;

	h ^= ((uint64_t)code << 32 | (uint32_t)addr) * 0xc2b2ae3d27d4eb4full;
	h ^= h >> 29;
	return (uint32_t)(h * 0x165667b19e3779f9ull >> 32);
}

static uint32_t node_find(const struct ma_session *s, uint32_t parent,
			  uint32_t code, int32_t addr,
			  struct ma_node_ent **empty)
{
	uint32_t mask = s->nodes_cap - 1;
	uint32_t i = node_hash(parent, code, addr) & mask;

	for (;;) {
		struct ma_node_ent *e = &s->nodes[i];
		uint32_t id = __atomic_load_n(&e->id, __ATOMIC_ACQUIRE);

		if (!id) {
			if (empty)
				*empty = e;
			return 0;
		}
		if (e->parent == parent && e->code == code && e->addr == addr)
			return id;
		i = (i + 1) & mask;
	}
}

static uint32_t node_id(struct ma_session *s, struct ma_slot *sl,
			uint32_t parent, uint32_t code, int32_t addr)
{
	struct ma_node_ent *e = NULL, *mo;
	struct ma_rec_node *r;
	uint32_t id;

	mo = &sl->memo[((uint32_t)addr ^ (uint32_t)addr >> 5 ^ parent) &
		       (MA_MEMO - 1)];
	if (mo->id && mo->addr == addr && mo->parent == parent &&
	    mo->code == code)
		return mo->id;
	id = node_find(s, parent, code, addr, NULL);
	if (ma_likely(id != 0))
		goto memo;
	ma_spin_lock(&s->tab_lock);
	id = node_find(s, parent, code, addr, &e);
	if (id || s->nnodes >= s->nodes_cap / 4 * 3)
		goto out;
	r = ma_ring_reserve(&s->ring, sizeof(*r));
	if (!r)
		goto out;
	id = s->next_node + 1;
	r->h.thread = sl->thread;
	r->id = id;
	r->parent = parent;
	r->code = code;
	r->addr = addr;
	ma_ring_commit(r, MA_REC_NODE, sizeof(*r));
	MA_CTR_INC(sl->defs);
	e->parent = parent;
	e->code = code;
	e->addr = addr;
	__atomic_store_n(&e->id, id, __ATOMIC_RELEASE);
	s->next_node = id;
	s->nnodes++;
out:
	ma_spin_unlock(&s->tab_lock);
	if (!id)
		return 0;
memo:
	mo->parent = parent;
	mo->code = code;
	mo->addr = addr;
	mo->id = id;
	return id;
}

/* ------------------------------------------------------------------ */
/* Walking */

/*
 * The walk is specialised per frame layout (common/ma_pyver.h: the layout
 * `L` is a constant at each call site, so the tests of its facts fold away)
 * and keeps the offsets in registers: on an allocation-heavy loop it runs
 * for every allocation, and generic code cost more than the allocation
 * itself.  The frame rules themselves (f_lasti units, incomplete frames,
 * shims, other executables) are ma_pyver.h's, shared with the attacher.
 */

/*
 * A frame at an instruction it runs only while incomplete (MAKE_CELL,
 * RETURN_GENERATOR...): the generator or cell it makes is charged to its
 * caller's line, as tracemalloc does.  addr >= 0: ip is inside the code.
 */
static inline __attribute__((always_inline)) int
setup_op(const struct ma_py_layout *L, uintptr_t ip, int32_t addr)
{
	return L->op_setup[0] && addr >= 0 &&
	       ma_py_op_is_setup(L, *(const uint8_t *)ip);
}

/*
 * One frame: 1 and *e filled when it is a Python function frame to keep, 0
 * when it is to be skipped (shim, incomplete, not code); *prev always.
 */
static inline __attribute__((always_inline)) int
frame_read(const struct ma_py_walk_off *w, const struct ma_py_layout *L,
	   uintptr_t f, uintptr_t *prev, struct ma_frame_ent *e)
{
	uintptr_t code;

	*prev = *(const uintptr_t *)(f + w->prev);
	code = *(const uintptr_t *)(f + w->code);
	if (ma_py_frame_is_shim(L, w, f))
		return 0;
	if (ma_unlikely(!code))
		return 0;
	/* 3.13 frames may run other executables than code */
	if (L->other_executables &&
	    *(const uintptr_t *)(code + w->type) != code_type)
		return 0;
	e->frame = f;
	e->code = code;
	e->ip = ma_py_frame_ip(L, f, w->instr);
	if (!ma_py_instr_addr(L, w, code, e->ip, -1, &e->addr))
		return 0;
	return !setup_op(L, e->ip, e->addr);
}

static inline int same_frame(const struct ma_frame_ent *c,
			     const struct ma_frame_ent *e)
{
	return c->frame == e->frame && c->code == e->code && c->addr == e->addr;
}

/* shims are not counted as frames: allow one per frame */
#define MAX_STEPS (2 * MA_MAX_FRAMES + 8)

/*
 * Innermost frame j of n sits at depth n - 1 - j of the cache (outermost
 * first).  Returns the highest j whose frame differs from the cache entry
 * at its depth, -1 when the whole stack is the cached one.  Loads only:
 * stores here would queue behind the ring's cache-missing stores.
 */
static inline __attribute__((always_inline)) int
compare(const struct ma_py_walk_off *w, const struct ma_py_layout *L,
	uintptr_t f, uint32_t n, const struct ma_frame_ent *cache, uint32_t old)
{
	struct ma_frame_ent e;
	uintptr_t prev;
	int m = -1;

	for (uint32_t j = 0, steps = 0; f && j < n && steps < MAX_STEPS;
	     steps++, f = prev) {
		if (!frame_read(w, L, f, &prev, &e))
			continue;
		if (n - 1 - j >= old || !same_frame(&cache[n - 1 - j], &e))
			m = (int)j;
		j++;
	}
	return m;
}

/* Frames m..0 changed: look their nodes up, outermost first */
static __attribute__((noinline)) uint32_t
relink(struct ma_session *s, struct ma_slot *sl, const struct ma_py_walk_off *w,
       const struct ma_py_layout *L, uintptr_t top, uint32_t n, uint32_t old,
       int m)
{
	struct ma_frame_ent *cache = ma_slot_cache(sl);
	struct ma_frame_ent *cur = ma_slot_scratch(sl);
	uint32_t d0 = n - 1 - (uint32_t)m, j = 0, steps = 0;
	uint32_t parent = d0 ? cache[d0 - 1].node : 0;
	uintptr_t f, prev;

	for (f = top; f && j <= (uint32_t)m && steps < MAX_STEPS;
	     steps++, f = prev)
		if (frame_read(w, L, f, &prev, &cur[j]))
			j++;
	if (j <= (uint32_t)m) { /* cannot be: the stack is ours */
		sl->depth = 0;
		return 0;
	}
	for (int i = m; i >= 0; i--) {
		uint32_t d = n - 1 - (uint32_t)i;
		struct ma_frame_ent *c = &cache[d];
		const struct ma_frame_ent *fe = &cur[i];
		/* same frame running the same code: same code id */
		uint32_t cid =
			d < old && c->frame == fe->frame && c->code == fe->code
				? c->code_id
				: code_id(s, sl, fe->code);
		uint32_t node = cid ? node_id(s, sl, parent, cid, fe->addr) : 0;

		if (!node) {
			/* table full or ring dropped the definition: the
			 * deepest node we have stands for the stack */
			MA_CTR_INC(sl->table_full);
			sl->depth = d;
			return parent;
		}
		c->frame = fe->frame;
		c->code = fe->code;
		c->ip = fe->ip;
		c->addr = fe->addr;
		c->code_id = cid;
		c->node = node;
		parent = node;
	}
	sl->depth = n;
	return parent;
}

/*
 * The whole walk: compare every frame with the cache, look up what changed,
 * and keep the raw chain for stack_node's quick check.  *walked: kept
 * frames seen (the cache is complete when sl->depth ends equal to it).
 */
static inline __attribute__((always_inline)) uint32_t
stack_walk(struct ma_session *s, struct ma_slot *sl,
	   const struct ma_py_walk_off *wp, const struct ma_py_layout *L,
	   uintptr_t top, uint32_t *walked)
{
	const struct ma_py_walk_off w = *wp;
	const struct ma_frame_ent *cache = ma_slot_cache(sl);
	struct ma_frame_ent *cache_w = ma_slot_cache(sl);
	struct ma_raw_ent *raw = ma_slot_raw(sl);
	const uint32_t cap = s->max_frames, old = sl->depth;
	uint32_t n = 0, steps = 0;
	struct ma_frame_ent e, e0 = { 0 };
	uintptr_t f, prev;
	int m = -1;

	/* count the frames, comparing as if the depth had not changed.  A
	 * frame at the cached address whose raw instruction word is the
	 * cached one is taken as the cached frame without reading more: from
	 * 3.11 that word points into the code object's own bytecode, so the
	 * code is the same too; up to 3.10 (a frame object and its f_lasti)
	 * the code pointer is compared as well. */
	for (f = top; f && n < cap && steps < MAX_STEPS; steps++, f = prev) {
		uintptr_t ip = ma_py_frame_ip(L, f, w.instr);
		const struct ma_frame_ent *c =
			n < old ? &cache[old - 1 - n] : NULL;
		int kept = 1;

		if (c && c->frame == f && c->ip == ip &&
		    (ma_py_ip_names_code(L) ||
		     c->code == rd64(f, (int32_t)w.code))) {
			prev = rd64(f, (int32_t)w.prev);
		} else if (frame_read(&w, L, f, &prev, &e)) {
			if (!c || !same_frame(c, &e))
				m = (int)n;
			if (!n)
				e0 = e;
		} else {
			kept = 0;
		}
		raw[steps].frame = f;
		raw[steps].prev = prev;
		raw[steps].ip = ip;
		if (!steps)
			sl->raw_top_kept = (uint8_t)kept;
		n += (uint32_t)kept;
	}
	sl->raw_n = steps;
	sl->raw_trunc = f != 0;
	*walked = n;
	if (ma_unlikely(f != 0))
		MA_CTR_INC(sl->truncated);
	if (ma_unlikely(n != old))
		m = compare(&w, L, top, n, cache, old);
	if (m < 0) {
		if (sl->depth != n)
			sl->depth = n;
		return n ? cache[n - 1].node : 0;
	}
	if (m == 0 && n == old) {
		/* the usual change: only the innermost frame moved on */
		struct ma_frame_ent *c = &cache_w[n - 1];
		uint32_t parent = n >= 2 ? cache[n - 2].node : 0;
		uint32_t cid = c->frame == e0.frame && c->code == e0.code
				       ? c->code_id
				       : code_id(s, sl, e0.code);
		uint32_t node = cid ? node_id(s, sl, parent, cid, e0.addr) : 0;

		if (ma_unlikely(!node)) {
			MA_CTR_INC(sl->table_full);
			sl->depth = n - 1;
			return parent;
		}
		*c = e0;
		c->code_id = cid;
		c->node = node;
		return node;
	}
	return relink(s, sl, &w, L, top, n, old, m);
}

/* The thread's innermost frame (0: none) */
static inline __attribute__((always_inline)) uintptr_t
top_frame(const struct ma_py_offsets *o, uintptr_t ts,
	  const struct ma_py_layout *L)
{
	if (L->top_in_cframe) {
		uintptr_t cf = rd64(ts, o->tstate_cframe);

		return cf ? rd64(cf, o->cframe_current_frame) : 0;
	}
	return rd64(ts, o->tstate_frame);
}

/*
 * Quick check: the same chain of frames as at the last walk, the innermost
 * one maybe further on.  Each frame's link to its caller and (but for the
 * innermost) its instruction word are compared with the raw chain kept
 * then.  A frame read here is always live: its address is the link just
 * found equal in its callee, which is live.  The loads use the addresses
 * kept in the slot, not the ones just loaded, so the CPU issues them all at
 * once rather than one after the other (a walk is otherwise a chain of
 * dependent loads), and a load past a failed comparison is never executed
 * for real.  1 and *ip set when the chain holds.
 */
static inline __attribute__((always_inline)) int
chain_same(const struct ma_py_offsets *o, struct ma_slot *sl, uintptr_t top,
	   const struct ma_py_layout *L, uintptr_t *ip)
{
	const struct ma_raw_ent *r = ma_slot_raw(sl);
	const int32_t prev = o->frame_previous, instr = o->frame_instr;
	uint32_t k, rn = sl->raw_n;

	if (!sl->depth || !rn || sl->raw_depth != sl->depth ||
	    top != r[0].frame || rd64(top, prev) != r[0].prev)
		return 0;
	for (k = 1; k < rn; k++)
		if (rd64(r[k].frame, prev) != r[k].prev ||
		    ma_py_frame_ip(L, r[k].frame, instr) != r[k].ip)
			return 0;
	*ip = ma_py_frame_ip(L, top, instr);
	return 1;
}

/* The site table's entry for the innermost frame's instruction word ip (an
 * entry holds the node of that instruction under the callers chain_same
 * checked, while its gen is the slot's site_gen) */
static inline struct ma_site_ent *site_of(struct ma_slot *sl, uintptr_t ip)
{
	return &sl->site[(uint32_t)((ip * 0x9e3779b97f4a7c15ull) >> 58) &
			 (MA_SITES - 1)];
}

/* What chain_same's hit cannot answer: a new instruction of the innermost
 * frame, or a changed chain (then a walk) */
static inline __attribute__((always_inline)) uint32_t
stack_slow(struct ma_session *s, struct ma_slot *sl, uintptr_t top,
	   const struct ma_py_layout *L)
{
	const struct ma_py_offsets *o = &s->cfg.off;
	struct ma_py_walk_off w;
	const uint32_t old = sl->depth;
	struct ma_raw_ent *r = ma_slot_raw(sl);
	uint32_t node, walked;
	uintptr_t ip;

	ma_py_walk_off_init(&w, o);
	if (sl->raw_top_kept && chain_same(o, sl, top, L, &ip)) {
		struct ma_frame_ent *cache = ma_slot_cache(sl);
		struct ma_frame_ent *c = cache + old - 1;
		int32_t addr;

		/* the innermost frame moved on: same frame, same code (so a
		 * code object, kept before), another instruction */
		if (rd64(top, (int32_t)w.code) == c->code &&
		    ma_py_instr_addr(L, &w, c->code, ip, -1, &addr) &&
		    !setup_op(L, ip, addr)) {
			node = node_id(s, sl,
				       old >= 2 ? cache[old - 2].node : 0,
				       c->code_id, addr);
			if (ma_likely(node != 0)) {
				struct ma_site_ent *se = site_of(sl, ip);

				if (ma_unlikely(sl->raw_trunc))
					MA_CTR_INC(sl->truncated);
				c->ip = ip;
				c->addr = addr;
				c->node = node;
				r[0].ip = ip;
				se->ip = ip;
				se->code = c->code;
				se->gen = sl->site_gen;
				se->node = node;
				return node;
			}
		}
	}
	node = stack_walk(s, sl, &w, L, top, &walked);
	sl->raw_depth = sl->depth == walked ? walked : UINT32_MAX;
	ma_slot_sites_reset(sl);
	return node;
}

/* return fn(args..., L) with L a constant layout: a copy of fn specialised
 * for each layout of ma_pyver.h (3.8 and 3.9 share one) */
#define LAYOUT_CASE(l, fn, ...)                                                \
	case l:                                                                \
		return fn(__VA_ARGS__, &ma_py_layouts[l])
#define RETURN_BY_LAYOUT(l, fn, ...)                                           \
	switch (l) {                                                           \
		LAYOUT_CASE(MA_LAYOUT_38, fn, __VA_ARGS__);                    \
		LAYOUT_CASE(MA_LAYOUT_310, fn, __VA_ARGS__);                   \
		LAYOUT_CASE(MA_LAYOUT_311, fn, __VA_ARGS__);                   \
		LAYOUT_CASE(MA_LAYOUT_312, fn, __VA_ARGS__);                   \
	default:                                                               \
		return fn(__VA_ARGS__, &ma_py_layouts[MA_LAYOUT_313]);         \
	}
_Static_assert(MA_LAYOUT_COUNT == 5, "RETURN_BY_LAYOUT has a case per layout");

static __attribute__((noinline)) uint32_t
stack_slow_any(struct ma_session *s, struct ma_slot *sl, uintptr_t top)
{
	RETURN_BY_LAYOUT(s->layout, stack_slow, s, sl, top)
}

/*
 * The node of the thread's stack.  What an allocation-heavy loop meets
 * nearly every time is answered here, in a few independent loads: the
 * chain of callers as last walked, and the innermost frame at the
 * instruction it was at last time, or at one it was seen at since the
 * callers last changed (from 3.11 the instruction word points into the
 * code object, which the frame holds, so it names the code too; up to 3.10
 * the code is compared as well).
 */
static inline __attribute__((always_inline)) uint32_t
stack_node(struct ma_session *s, struct ma_slot *sl, uintptr_t ts,
	   const struct ma_py_layout *L)
{
	const struct ma_py_offsets *o = &s->cfg.off;
	uintptr_t top = top_frame(o, ts, L), ip;

	if (ma_likely(chain_same(o, sl, top, L, &ip))) {
		const struct ma_raw_ent *r = ma_slot_raw(sl);
		const struct ma_site_ent *se;

		/* a cut stack is counted where its node is found: here, or
		 * once in stack_slow (counted here too, it was twice) */
		if (ip == r[0].ip) {
			if (ma_unlikely(sl->raw_trunc))
				MA_CTR_INC(sl->truncated);
			return ma_slot_cache(sl)[sl->depth - 1].node;
		}
		se = site_of(sl, ip);
		if (se->ip == ip && se->gen == sl->site_gen &&
		    (ma_py_ip_names_code(L) ||
		     se->code == rd64(top, (int32_t)o->frame_code))) {
			if (ma_unlikely(sl->raw_trunc))
				MA_CTR_INC(sl->truncated);
			return se->node;
		}
	}
	return stack_slow_any(s, sl, top);
}

static inline __attribute__((always_inline)) uint32_t
stack_of(struct ma_session *s, struct ma_slot *sl, uintptr_t ts)
{
	if (!ts) {
		sl->depth = 0;
		return 0;
	}
	RETURN_BY_LAYOUT(s->layout, stack_node, s, sl, ts)
}

uint32_t ma_stack_node(struct ma_session *s, struct ma_slot *sl)
{
	return stack_of(s, sl, (uintptr_t)get_tstate());
}

uint32_t ma_stack_node_gil(struct ma_session *s, struct ma_slot *sl)
{
	uintptr_t ts = cur_tstate_var ? __atomic_load_n(cur_tstate_var,
							__ATOMIC_RELAXED)
		       : cur_tstate   ? (uintptr_t)cur_tstate()
				      : (uintptr_t)get_tstate();

	return stack_of(s, sl, ts);
}
