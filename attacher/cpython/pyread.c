/* SPDX-License-Identifier: MIT */
/*
 * Read-only walk of a stopped CPython process (see pyread.h).
 *
 * Cost model: the target is frozen while we walk, so what matters is the
 * number of ma_mem_read() calls (one syscall each).  Two caches keep it low:
 *   - a page cache, valid for one snapshot only: every struct is read through
 *     it, so a tstate, its frames on the same data-stack page (3.11+), the
 *     strings sitting in the same pymalloc pool, ... cost one read per 4 KiB
 *     page instead of one per field or per object;
 *   - a code object cache, kept across snapshots: name, file and line table
 *     are read once; later snapshots only re-read the code object's header
 *     (usually a page-cache hit) to check it is still the same object.
 *
 * Everything read is untrusted: loops are bounded, lists are checked for
 * cycles (Brent), and a failed read stops the walk of that thread only
 * (marked truncated), never the whole snapshot.
 */
#include "pyread.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "linetable.h"
#include "textfit.h"
#include "memread.h"

#define MA_MAX_INTERPS 256
#define MA_MAX_THREADS 4096
#define MA_MAX_FRAMES  MA_PY_MAX_FRAMES /* pyread.h */
/* shims (3.12+) are not counted as frames, so allow for one per frame */
#define MA_MAX_FRAME_STEPS (2 * MA_MAX_FRAMES)

#define TN_MAX_INTERPS 8 /* interpreters whose _active is cached */

#define PC_PAGE	 4096u
#define PC_SLOTS 256u /* 1 MiB of cached pages per snapshot */

/* Limits on what we copy out of the target, whatever its sizes say */
#define MA_MAX_STR	 4096 /* characters of a name or file name */
#define MA_MAX_LINETABLE (1u << 20)
#define MA_MAX_CODES	 65536 /* code cache entries before a flush */

/* Function name of a frame whose code object could not be read */
static const char unreadable[] = "<unreadable>";

/*
 * What the path to a Thread's name crosses, per minor version: CPython's
 * dicts (Objects/dictobject.c, Include/internal/pycore_dict.h) and where
 * an instance keeps its attributes (Include/internal/pycore_object.h).
 * These are not in struct ma_py_offsets (its field set is full and none of
 * it is needed by stacks or tracking); the struct members were taken from
 * the DWARF of the pyenv builds and Debian's 3.11, and the modules offset
 * is checked on use (a dict holding 'sys' -> a module), else looked for
 * near it (see find_modules).
 */
enum tn_attrs {
	TN_DICTOFFSET,	/* <= 3.10: the dict at obj + tp_dictoffset */
	TN_MANAGED_311, /* values at obj - 4 words, dict at obj - 3 words */
	TN_MANAGED_312, /* obj - 3 words: dict, or values - 1 */
	TN_INLINE_313,	/* dict at obj - 3 words, else values inline at
			   obj + tp_basicsize (Py_TPFLAGS_INLINE_VALUES) */
};

struct tn_layout {
	int minor;
	int32_t interp_modules;		/* PyInterpreterState.modules
				   (3.12+: .imports.modules) */
	int32_t type_flags;		/* PyTypeObject.tp_flags */
	int32_t type_basicsize;		/* PyTypeObject.tp_basicsize */
	int32_t type_dictoffset;	/* PyTypeObject.tp_dictoffset */
	int32_t heaptype_cached_keys;	/* PyHeapTypeObject.ht_cached_keys */
	int32_t dict_keys, dict_values; /* PyDictObject.ma_keys, .ma_values */
	int keys_log2;	  /* 3.11+: dk_log2_size, dk_kind; else dk_size */
	int values_first; /* bytes before values[0] in PyDictValues */
	int long_tag;	  /* 3.12+: PyLongObject.long_value.lv_tag */
	enum tn_attrs attrs;
};

static const struct tn_layout tn_layouts[] = {
	{ 8, 56, 168, 32, 288, 872, 32, 40, 0, 0, 0, TN_DICTOFFSET },
	{ 9, 856, 168, 32, 288, 864, 32, 40, 0, 0, 0, TN_DICTOFFSET },
	{ 10, 856, 168, 32, 288, 872, 32, 40, 0, 0, 0, TN_DICTOFFSET },
	{ 11, 888, 168, 32, 288, 872, 32, 40, 1, 0, 0, TN_MANAGED_311 },
	{ 12, 944, 168, 32, 288, 880, 32, 40, 1, 0, 1, TN_MANAGED_312 },
	{ 13, 7656, 168, 32, 288, 880, 32, 40, 1, 8, 1, TN_INLINE_313 },
};

#define TPF_INLINE_VALUES (1ul << 2)
#define TPF_MANAGED_DICT  (1ul << 4)

#define TN_MAX_ENTRIES (1 << 16) /* entries of a dict we look through */
#define TN_SCAN_BYTES  4096	 /* each side of the table's modules offset */

static const struct tn_layout *tn_layout_of(int minor)
{
	for (size_t i = 0; i < sizeof(tn_layouts) / sizeof(tn_layouts[0]); i++)
		if (tn_layouts[i].minor == minor)
			return &tn_layouts[i];
	return NULL;
}

struct pc_slot {
	uint64_t page;
	uint32_t gen; /* valid when equal to the reader's generation */
	int err;      /* the read of this page failed with err */
};

struct code_entry {
	uint64_t addr; /* 0: empty slot */
	/* The header fields this entry was built from: when any differs the
	 * address was reused for another code object. */
	uint64_t type, name_p, qualname_p, file_p, table_p;
	int firstlineno;
	uint32_t checked_gen; /* header compared during this snapshot */
	const char *func;     /* interned */
	const char *file;     /* interned */
	uint8_t *table;
	size_t table_len;
};

struct ma_pyreader {
	struct ma_mem *m;
	struct ma_py_offsets o;
	uint64_t runtime;
	int minor;
	const struct ma_py_layout *L; /* the frame rules of this version */
	struct ma_py_walk_off w;
	uint32_t gen;

	/* Spans (bytes from the struct start) covering every field we read */
	size_t tstate_span, frame_span, code_span, gil_span;

	struct pc_slot slots[PC_SLOTS];
	uint8_t *pages; /* PC_SLOTS * PC_PAGE */

	struct code_entry *codes; /* open addressing, power of 2 */
	size_t codes_cap, ncodes;

	char **strs; /* interned strings, open addressing */
	size_t strs_cap, nstrs;

	uint64_t code_type; /* address of PyCode_Type once seen */

	/* thread names: the version's facts (NULL: none known), types
	 * seen, where sys.modules is, threading._active per interpreter */
	const struct tn_layout *tn;
	uint64_t tn_dict_type, tn_str_type, tn_module_type, tn_int_type;
	int32_t tn_modules_off;
	int tn_scanned;
	struct {
		uint64_t interp, active, main;
	} tn_cache[TN_MAX_INTERPS];
};

/* ------------------------------------------------------------------ */
/* Reading */

static int pc_page(struct ma_pyreader *r, uint64_t page, const uint8_t **out)
{
	size_t idx = (size_t)(page / PC_PAGE) % PC_SLOTS;
	struct pc_slot *s = &r->slots[idx];
	uint8_t *data = r->pages + idx * PC_PAGE;

	if (s->gen != r->gen || s->page != page) {
		s->page = page;
		s->gen = r->gen;
		s->err = ma_mem_read(r->m, page, data, PC_PAGE);
	}
	*out = data;
	return s->err;
}

/*
 * Read len bytes at addr through the page cache.  Large reads (line tables)
 * go straight to the target in one call: caching them would only evict the
 * small objects that do get re-read.
 */
static int rd(struct ma_pyreader *r, uint64_t addr, void *buf, size_t len)
{
	uint8_t *dst = buf;

	if (len == 0)
		return 0;
	if (addr == 0 || addr + len < addr)
		return -EFAULT;
	if (len > 2 * PC_PAGE)
		return ma_mem_read(r->m, addr, buf, len);
	while (len) {
		uint64_t page = addr & ~(uint64_t)(PC_PAGE - 1);
		size_t in = addr - page;
		size_t n = PC_PAGE - in < len ? PC_PAGE - in : len;
		const uint8_t *data;
		int err = pc_page(r, page, &data);

		if (err < 0)
			return err;
		memcpy(dst, data + in, n);
		dst += n;
		addr += n;
		len -= n;
	}
	return 0;
}

/* A generic reader, so that ma_pyread_unicode() works without a reader */
struct src {
	struct ma_pyreader *r; /* through the page cache when set */
	struct ma_mem *m;
};

static int src_read(const struct src *s, uint64_t addr, void *buf, size_t len)
{
	if (s->r)
		return rd(s->r, addr, buf, len);
	return ma_mem_read(s->m, addr, buf, len);
}

static uint64_t get_u64(const uint8_t *b, int32_t off)
{
	uint64_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

static int32_t get_i32(const uint8_t *b, int32_t off)
{
	int32_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

/* A pointer field, or 0 when the field does not exist */
static uint64_t get_ptr_opt(const uint8_t *b, int32_t off)
{
	return off == MA_OFF_NONE ? 0 : get_u64(b, off);
}

/* ------------------------------------------------------------------ */
/* Strings */

/* Append code point c as UTF-8; returns bytes written, 0 if no room */
static size_t put_utf8(char *out, size_t room, uint32_t c)
{
	if (c >= 0xd800 && c <= 0xdfff) /* lone surrogate: not UTF-8 */
		c = 0xfffd;
	if (c < 0x80 && room >= 1) {
		out[0] = (char)c;
		return 1;
	}
	if (c < 0x800 && room >= 2) {
		out[0] = (char)(0xc0 | c >> 6);
		out[1] = (char)(0x80 | (c & 63));
		return 2;
	}
	if (c < 0x10000 && room >= 3) {
		out[0] = (char)(0xe0 | c >> 12);
		out[1] = (char)(0x80 | (c >> 6 & 63));
		out[2] = (char)(0x80 | (c & 63));
		return 3;
	}
	if (c >= 0x10000 && c < 0x110000 && room >= 4) {
		out[0] = (char)(0xf0 | c >> 18);
		out[1] = (char)(0x80 | (c >> 12 & 63));
		out[2] = (char)(0x80 | (c >> 6 & 63));
		out[3] = (char)(0x80 | (c & 63));
		return 4;
	}
	if (c >= 0x110000 && room >= 3)
		return put_utf8(out, room, 0xfffd);
	return 0;
}

/*
 * A str object as UTF-8.  Code objects only hold compact strings (their
 * data follows the header): ASCII ones after PyASCIIObject, the others
 * after PyCompactUnicodeObject with 1, 2 or 4 bytes per character.
 */
static int read_unicode(const struct src *s, const struct ma_py_offsets *o,
			uint64_t addr, char *buf, size_t len)
{
	uint8_t hdr[128];
	size_t hlen = (size_t)o->unicode_compact_size;
	size_t pos = 0;

	if (len == 0)
		return -EINVAL;
	buf[0] = '\0';
	if (hlen > sizeof(hdr) ||
	    o->unicode_ascii_size > o->unicode_compact_size)
		return -EINVAL;
	/* The ASCII header is shorter: read only it first, so that a short
	 * string at the very end of a mapping is still readable. */
	int err = src_read(s, addr, hdr, (size_t)o->unicode_ascii_size);

	if (err < 0)
		return err;
	int64_t length = (int64_t)get_u64(hdr, o->unicode_length);
	uint32_t state = (uint32_t)get_i32(hdr, o->unicode_state);
	unsigned int kind = (state >> o->unicode_kind_shift) & 7;
	int compact = (state >> o->unicode_compact_bit) & 1;
	int ascii = (state >> o->unicode_ascii_bit) & 1;

	if (!compact || length < 0 || (kind != 1 && kind != 2 && kind != 4))
		return -EPROTO;
	if (length > MA_MAX_STR)
		length = MA_MAX_STR;
	if (ascii) {
		size_t n = (size_t)length < len - 1 ? (size_t)length : len - 1;

		err = src_read(s, addr + o->unicode_ascii_size, buf, n);
		if (err < 0)
			return err;
		buf[n] = '\0';
		/* NULs would cut the name short anyway; keep it printable */
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)buf[i] >= 0x80 || buf[i] == '\0')
				buf[i] = '?';
		return (int)n;
	}
	size_t nbytes = (size_t)length * kind;
	uint8_t *data = malloc(nbytes ? nbytes : 1);

	if (!data)
		return -ENOMEM;
	err = src_read(s, addr + hlen, data, nbytes);
	if (err < 0) {
		free(data);
		return err;
	}
	for (int64_t i = 0; i < length; i++) {
		uint32_t c;

		if (kind == 1) {
			c = data[i];
		} else if (kind == 2) {
			uint16_t c16;

			memcpy(&c16, data + 2 * i, 2);
			c = c16;
		} else {
			memcpy(&c, data + 4 * i, 4);
		}
		size_t n = put_utf8(buf + pos, len - 1 - pos, c ? c : '?');

		if (n == 0)
			break;
		pos += n;
	}
	free(data);
	buf[pos] = '\0';
	return (int)pos;
}

int ma_pyread_unicode(struct ma_mem *m, const struct ma_py_offsets *o,
		      uint64_t addr, char *buf, size_t len)
{
	struct src s = { .r = NULL, .m = m };

	return read_unicode(&s, o, addr, buf, len);
}

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int strs_grow(struct ma_pyreader *r)
{
	size_t cap = r->strs_cap ? 2 * r->strs_cap : 1024;
	char **n = calloc(cap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < r->strs_cap; i++) {
		if (!r->strs[i])
			continue;
		size_t j = str_hash(r->strs[i]) & (cap - 1);

		while (n[j])
			j = (j + 1) & (cap - 1);
		n[j] = r->strs[i];
	}
	free(r->strs);
	r->strs = n;
	r->strs_cap = cap;
	return 0;
}

/* The reader's copy of s: snapshots hand out these pointers, so that equal
 * names are equal pointers and nothing is freed before the reader. */
static const char *intern(struct ma_pyreader *r, const char *s)
{
	if (2 * (r->nstrs + 1) > r->strs_cap && strs_grow(r) < 0)
		return NULL;
	size_t j = str_hash(s) & (r->strs_cap - 1);

	while (r->strs[j]) {
		if (strcmp(r->strs[j], s) == 0)
			return r->strs[j];
		j = (j + 1) & (r->strs_cap - 1);
	}
	r->strs[j] = strdup(s);
	if (!r->strs[j])
		return NULL;
	r->nstrs++;
	return r->strs[j];
}

/* ------------------------------------------------------------------ */
/* Code objects */

static void codes_flush(struct ma_pyreader *r)
{
	for (size_t i = 0; i < r->codes_cap; i++)
		free(r->codes[i].table);
	memset(r->codes, 0, r->codes_cap * sizeof(*r->codes));
	r->ncodes = 0;
}

static size_t code_slot(uint64_t addr, size_t cap)
{
	return (size_t)((addr >> 4) * 0x9e3779b97f4a7c15ull >> 20) & (cap - 1);
}

static int codes_grow(struct ma_pyreader *r)
{
	size_t cap = r->codes_cap ? 2 * r->codes_cap : 256;
	struct code_entry *n = calloc(cap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < r->codes_cap; i++) {
		if (!r->codes[i].addr)
			continue;
		size_t j = code_slot(r->codes[i].addr, cap);

		while (n[j].addr)
			j = (j + 1) & (cap - 1);
		n[j] = r->codes[i];
	}
	free(r->codes);
	r->codes = n;
	r->codes_cap = cap;
	return 0;
}

/* The entry for addr, or a free slot for it (addr == 0); NULL on ENOMEM */
static struct code_entry *codes_find(struct ma_pyreader *r, uint64_t addr)
{
	if (r->ncodes >= MA_MAX_CODES)
		codes_flush(r);
	if (2 * (r->ncodes + 1) > r->codes_cap && codes_grow(r) < 0)
		return NULL;
	size_t j = code_slot(addr, r->codes_cap);

	while (r->codes[j].addr && r->codes[j].addr != addr)
		j = (j + 1) & (r->codes_cap - 1);
	return &r->codes[j];
}

/* Is type the code type?  Its tp_name is "code" on every version. */
static int is_code_type(struct ma_pyreader *r, uint64_t type)
{
	uint64_t name_p;
	char name[8];

	if (type == 0)
		return 0;
	if (type == r->code_type)
		return 1;
	if (rd(r, type + r->o.type_name, &name_p, sizeof(name_p)) < 0)
		return 0;
	/* tp_name is a C string in the binary's rodata: read 5 bytes, no
	 * need for a page-by-page string read */
	if (rd(r, name_p, name, 5) < 0)
		return 0;
	if (memcmp(name, "code", 5) != 0)
		return 0;
	r->code_type = type;
	return 1;
}

static int read_bytes_obj(struct ma_pyreader *r, uint64_t addr, uint8_t **out,
			  size_t *outlen)
{
	uint64_t size;
	int err = rd(r, addr + r->o.varobject_size, &size, sizeof(size));

	*out = NULL;
	*outlen = 0;
	if (err < 0)
		return err;
	if ((int64_t)size < 0 || size > MA_MAX_LINETABLE)
		return -EPROTO;
	uint8_t *b = malloc(size ? size : 1);

	if (!b)
		return -ENOMEM;
	err = rd(r, addr + r->o.bytes_sval, b, size);
	if (err < 0) {
		free(b);
		return err;
	}
	*out = b;
	*outlen = size;
	return 0;
}

static const char *read_interned(struct ma_pyreader *r, uint64_t addr)
{
	struct src s = { .r = r, .m = r->m };
	char buf[MA_MAX_STR + 1];

	if (read_unicode(&s, &r->o, addr, buf, sizeof(buf)) < 0)
		return NULL;
	/* code and file names go to the user's terminal (stacks, attach):
	 * a control character in them is '?' (ma_ctl_sanitize).  The raw
	 * reader, ma_pyread_unicode, leaves that to its callers (the heap
	 * census escapes instead) */
	ma_ctl_sanitize(buf, strlen(buf));
	return intern(r, buf);
}

/*
 * The cached entry for the code object at addr, (re)built when needed.
 * -ENOEXEC when addr is not a code object (3.13 frames may run other
 * executables), other negative errno when it cannot be read.
 */
static int get_code(struct ma_pyreader *r, uint64_t addr,
		    struct code_entry **out)
{
	const struct ma_py_offsets *o = &r->o;
	uint8_t hdr[512];
	struct code_entry *e = codes_find(r, addr);

	if (!e)
		return -ENOMEM;
	if (e->addr == addr && e->checked_gen == r->gen) {
		*out = e;
		return 0;
	}
	int err = rd(r, addr, hdr, r->code_span);

	if (err < 0)
		return err;
	uint64_t type = get_u64(hdr, o->object_type);
	uint64_t name_p = get_u64(hdr, o->code_name);
	uint64_t qualname_p = get_ptr_opt(hdr, o->code_qualname);
	uint64_t file_p = get_u64(hdr, o->code_filename);
	uint64_t table_p = get_u64(hdr, o->code_linetable);
	int firstlineno = get_i32(hdr, o->code_firstlineno);

	if (e->addr == addr && e->type == type && e->name_p == name_p &&
	    e->qualname_p == qualname_p && e->file_p == file_p &&
	    e->table_p == table_p && e->firstlineno == firstlineno) {
		e->checked_gen = r->gen;
		*out = e;
		return 0;
	}
	if (!is_code_type(r, type))
		return -ENOEXEC;

	const char *func = read_interned(r, qualname_p ? qualname_p : name_p);
	const char *file = read_interned(r, file_p);
	uint8_t *table;
	size_t table_len;

	if (!func || !file)
		return -EFAULT;
	err = read_bytes_obj(r, table_p, &table, &table_len);
	if (err < 0)
		return err;
	if (e->addr != addr)
		r->ncodes++;
	free(e->table);
	*e = (struct code_entry){
		.addr = addr,
		.type = type,
		.name_p = name_p,
		.qualname_p = qualname_p,
		.file_p = file_p,
		.table_p = table_p,
		.firstlineno = firstlineno,
		.checked_gen = r->gen,
		.func = func,
		.file = file,
		.table = table,
		.table_len = table_len,
	};
	*out = e;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Setup */

/* Buffer for a struct prefix: ma_pyreader_new() checks the spans fit */
union spanbuf {
	uint8_t b[4096];
	uint64_t align;
};

/*
 * Bytes from a struct's start that cover all the given fields, each taken
 * as 8 bytes wide (ints and chars too: the struct, or at worst the page,
 * goes on after them, and one span is simpler than per-field sizes).
 */
static size_t span_of(const int32_t *offs, size_t n)
{
	size_t span = 0;

	for (size_t i = 0; i < n; i++)
		if (offs[i] >= 0 && (size_t)offs[i] + 8 > span)
			span = (size_t)offs[i] + 8;
	return span;
}

#define SPAN(...)                                                              \
	span_of((const int32_t[]){ __VA_ARGS__ },                              \
		sizeof((const int32_t[]){ __VA_ARGS__ }) / sizeof(int32_t))

static int check_offsets(const struct ma_py_offsets *o,
			 const struct ma_pyver *v)
{
	const char *missing = ma_pyver_missing(o, ma_pyver_reader_fields(v));

	if (missing)
		return ma_err(-EINVAL, "python 3.%d offsets: %s is missing",
			      v->minor, missing);
	if (o->unicode_compact_size > 128 ||
	    o->unicode_ascii_size > o->unicode_compact_size ||
	    !ma_py_str_bits_ok(o))
		return ma_err(-EINVAL,
			      "python 3.%d offsets: str layout out of range",
			      v->minor);
	return 0;
}

int ma_pyreader_new(struct ma_mem *m, const struct ma_py_offsets *o,
		    uint64_t runtime_addr, struct ma_pyreader **out)
{
	const struct ma_pyver *v = ma_pyver_of(o->version_hex);
	int minor = ma_py_minor(o->version_hex);
	int err;

	*out = NULL;
	if (!v)
		return ma_err(-ENOTSUP,
			      "read python frames: version %x not supported "
			      "(3.%d to 3.%d)",
			      o->version_hex, MA_PY_MIN_MINOR, MA_PY_MAX_MINOR);
	err = check_offsets(o, v);
	if (err < 0)
		return err;

	struct ma_pyreader *r = calloc(1, sizeof(*r));

	if (!r)
		return ma_err(-ENOMEM, "read python frames: out of memory");
	r->pages = malloc((size_t)PC_SLOTS * PC_PAGE);
	if (!r->pages) {
		free(r);
		return ma_err(-ENOMEM, "read python frames: out of memory");
	}
	r->m = m;
	r->o = *o;
	r->runtime = runtime_addr;
	r->minor = minor;
	r->L = &ma_py_layouts[v->layout];
	ma_py_walk_off_init(&r->w, o);
	r->gen = 1;
	r->tn = tn_layout_of(minor);
	if (r->tn)
		r->tn_modules_off = r->tn->interp_modules;
	r->tstate_span = SPAN(o->tstate_next, o->tstate_interp, o->tstate_frame,
			      o->tstate_cframe, o->tstate_thread_id,
			      o->tstate_native_thread_id);
	r->frame_span = SPAN(o->frame_previous, o->frame_code, o->frame_instr,
			     o->frame_owner, o->frame_is_entry);
	r->code_span =
		SPAN(o->object_type, o->code_filename, o->code_name,
		     o->code_qualname, o->code_firstlineno, o->code_linetable);
	r->gil_span = SPAN(o->gil_last_holder, o->gil_locked);
	/* the buffers the spans are read into: union spanbuf, 512 bytes */
	if (r->tstate_span > sizeof(union spanbuf) || r->frame_span > 512 ||
	    r->code_span > 512 || r->gil_span > 512) {
		ma_pyreader_free(r);
		return ma_err(-EINVAL,
			      "python 3.%d offsets: struct spans out of range",
			      minor);
	}
	*out = r;
	return 0;
}

void ma_pyreader_free(struct ma_pyreader *r)
{
	if (!r)
		return;
	if (r->codes)
		codes_flush(r);
	free(r->codes);
	for (size_t i = 0; i < r->strs_cap; i++)
		free(r->strs[i]);
	free(r->strs);
	free(r->pages);
	free(r);
}

/* ------------------------------------------------------------------ */
/* Walking */

/* Brent's cycle detection over a list of addresses: O(1) memory */
struct cycle {
	uint64_t saved;
	unsigned long power, lam;
};

static int cycle_step(struct cycle *c, uint64_t addr)
{
	if (addr == c->saved)
		return 1;
	if (c->lam == c->power) {
		c->saved = addr;
		c->power = c->power ? 2 * c->power : 1;
		c->lam = 0;
	}
	c->lam++;
	return 0;
}

/* GIL state: locked and last holder, from the struct _gil_runtime_state */
static uint64_t gil_holder(struct ma_pyreader *r, uint64_t gil)
{
	uint8_t b[512];

	if (!gil || r->o.gil_last_holder < 0 || r->o.gil_locked < 0)
		return 0;
	if (rd(r, gil, b, r->gil_span) < 0)
		return 0;
	if (!get_i32(b, r->o.gil_locked))
		return 0;
	return get_u64(b, r->o.gil_last_holder);
}

static int push_frame(struct ma_py_thread *t, int *cap,
		      const struct ma_py_frame *f)
{
	if (t->nframes == *cap) {
		int ncap = *cap ? 2 * *cap : 32;
		struct ma_py_frame *n =
			realloc(t->frames, (size_t)ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->frames = n;
		*cap = ncap;
	}
	t->frames[t->nframes++] = *f;
	return 0;
}

/* First frame of a thread: tstate->frame, ->cframe->current_frame, or
 * ->current_frame depending on the version */
static int first_frame(struct ma_pyreader *r, const uint8_t *ts,
		       uint64_t *frame)
{
	if (r->L->top_in_cframe) {
		uint64_t cframe = get_u64(ts, r->o.tstate_cframe);

		*frame = 0;
		if (!cframe)
			return 0;
		return rd(r, cframe + r->o.cframe_current_frame, frame,
			  sizeof(*frame));
	}
	*frame = get_u64(ts, r->o.tstate_frame);
	return 0;
}

/*
 * Walk the frames of one thread into t (innermost first).  Returns 0 (the
 * thread may be marked truncated) or -ENOMEM.
 */
static int walk_frames(struct ma_pyreader *r, uint64_t frame,
		       struct ma_py_thread *t)
{
	const struct ma_py_offsets *o = &r->o;
	const struct ma_py_layout *L = r->L;
	struct cycle cyc = { 0 };
	union spanbuf fb;
	int cap = 0;
	/* index of the last frame emitted and the address of its previous
	 * frame: 3.12+ marks it entry when that previous is a shim */
	int last = -1;
	uint64_t last_prev = 0;

	for (int steps = 0; frame; steps++) {
		if (t->nframes >= MA_MAX_FRAMES) {
			t->truncated = MA_PY_CUT_DEEP;
			break;
		}
		if (steps >= MA_MAX_FRAME_STEPS || cycle_step(&cyc, frame)) {
			t->truncated = MA_PY_CUT_BAD;
			break;
		}
		if (rd(r, frame, fb.b, r->frame_span) < 0) {
			t->truncated = 1;
			break;
		}
		uintptr_t fp = (uintptr_t)fb.b;
		uint64_t prev = get_u64(fb.b, o->frame_previous);
		uint64_t code = get_u64(fb.b, o->frame_code);
		struct ma_py_frame f = { .frame_addr = frame,
					 .code_addr = code,
					 .line = -1 };
		struct code_entry *e = NULL;
		int32_t addr;

		if (ma_py_frame_is_shim(L, &r->w, fp)) {
			if (last >= 0 && last_prev == frame)
				t->frames[last].is_entry = 1;
			frame = prev;
			continue;
		}
		int err = get_code(r, code, &e);

		if (err == -ENOMEM)
			return err;
		if (err == -ENOEXEC && L->other_executables) {
			/* not a code object: not a Python function frame */
			frame = prev;
			continue;
		}
		/* Garbage instruction pointers: keep the frame, without a
		 * line (-2) */
		uint64_t ip = ma_py_frame_ip(L, fp, r->w.instr);
		uint8_t op = 0;

		if (!ma_py_instr_addr(L, &r->w, code, ip, -2, &addr) ||
		    (L->op_setup[0] && addr >= 0 && rd(r, ip, &op, 1) == 0 &&
		     ma_py_op_is_setup(L, op))) {
			/* incomplete: CPython does not show it either */
			frame = prev;
			continue;
		}
		if (L->entry == MA_ENTRY_EVERY)
			f.is_entry = 1;
		else if (L->entry == MA_ENTRY_FLAG)
			f.is_entry = fb.b[o->frame_is_entry] != 0;
		else if (!prev)
			f.is_entry = 1;
		if (e) {
			f.func = e->func;
			f.file = e->file;
			if (addr == -2)
				f.line = -1;
			else
				f.line = ma_linetable_addr2line(
					o->version_hex, e->table, e->table_len,
					e->firstlineno, addr);
		} else {
			f.func = unreadable;
			f.file = "";
		}
		if (push_frame(t, &cap, &f) < 0)
			return -ENOMEM;
		last = t->nframes - 1;
		last_prev = prev;
		frame = prev;
	}
	return 0;
}

static int push_thread(struct ma_py_snapshot *s, int *cap,
		       struct ma_py_thread **out)
{
	if (s->nthreads == *cap) {
		int ncap = *cap ? 2 * *cap : 16;
		struct ma_py_thread *n =
			realloc(s->threads, (size_t)ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->threads = n;
		*cap = ncap;
	}
	*out = &s->threads[s->nthreads++];
	memset(*out, 0, sizeof(**out));
	return 0;
}

/*
 * PyInterpreterState is large (its thread list is 7 KiB into it in 3.13):
 * read the few fields one by one, they are page-cache hits after the first.
 */
struct interp_info {
	uint64_t next, threads_head, gil;
	long id;
};

static int read_interp(struct ma_pyreader *r, uint64_t interp,
		       struct interp_info *ii)
{
	const struct ma_py_offsets *o = &r->o;
	uint64_t id = 0;
	int err;

	memset(ii, 0, sizeof(*ii));
	err = rd(r, interp + o->interp_next, &ii->next, 8);
	if (!err)
		err = rd(r, interp + o->interp_threads_head, &ii->threads_head,
			 8);
	if (!err && o->interp_id >= 0)
		err = rd(r, interp + o->interp_id, &id, 8);
	if (!err && o->interp_gil_ptr >= 0)
		err = rd(r, interp + o->interp_gil_ptr, &ii->gil, 8);
	ii->id = (long)id;
	return err;
}

static int walk_threads(struct ma_pyreader *r, const struct interp_info *ii,
			uint64_t holder, struct ma_py_snapshot *s, int *cap)
{
	const struct ma_py_offsets *o = &r->o;
	struct cycle cyc = { 0 };
	union spanbuf tb;
	uint64_t ts = ii->threads_head;

	while (ts) {
		struct ma_py_thread *t;
		uint64_t frame;

		if (s->nthreads >= MA_MAX_THREADS || cycle_step(&cyc, ts) ||
		    rd(r, ts, tb.b, r->tstate_span) < 0) {
			s->truncated = 1;
			break;
		}
		if (push_thread(s, cap, &t) < 0)
			return -ENOMEM;
		t->tstate = ts;
		t->thread_id = get_u64(tb.b, o->tstate_thread_id);
		t->native_tid =
			o->tstate_native_thread_id >= 0
				? (long)get_u64(tb.b,
						o->tstate_native_thread_id)
				: 0;
		t->interp_id = ii->id;
		t->holds_gil = holder && holder == ts;
		if (first_frame(r, tb.b, &frame) < 0)
			t->truncated = 1;
		else if (walk_frames(r, frame, t) < 0)
			return -ENOMEM;
		ts = get_u64(tb.b, o->tstate_next);
	}
	return 0;
}

/* Start a new snapshot: everything read before may have changed */
static void new_generation(struct ma_pyreader *r)
{
	if (++r->gen == 0) {
		/* wrapped: make sure no slot or entry looks current */
		memset(r->slots, 0, sizeof(r->slots));
		for (size_t i = 0; i < r->codes_cap; i++)
			r->codes[i].checked_gen = 0;
		r->gen = 1;
	}
}

/* ------------------------------------------------------------------ */
/* Thread names: sys.modules['threading']._active[ident]._name         */

/* Is the object at addr of the type named name?  Type addresses seen are
 * remembered in *cache. */
static int obj_is(struct ma_pyreader *r, uint64_t addr, const char *name,
		  uint64_t *cache)
{
	uint64_t type, name_p;
	char buf[16];
	size_t len = strlen(name) + 1;

	if (!addr || (addr & 7) || rd(r, addr + r->o.object_type, &type, 8) < 0)
		return 0;
	if (!type)
		return 0;
	if (type == *cache)
		return 1;
	if (rd(r, type + r->o.type_name, &name_p, 8) < 0 ||
	    rd(r, name_p, buf, len) < 0 || memcmp(buf, name, len) != 0)
		return 0;
	*cache = type;
	return 1;
}

/* The entries of a dict's keys, and where their values are */
struct dview {
	uint64_t entries; /* address of entry 0 */
	int64_t n;	  /* entries in use or deleted (dk_nentries) */
	int esize, key_at, value_at;
	uint64_t values; /* split table: values[i] at values + 8 * i */
};

static int keys_open(struct ma_pyreader *r, uint64_t keys, struct dview *v)
{
	const struct tn_layout *L = r->tn;
	uint8_t b[40];

	memset(v, 0, sizeof(*v));
	if (!keys || rd(r, keys, b, sizeof(b)) < 0)
		return -EFAULT;
	if (L->keys_log2) {
		unsigned log2 = b[8], log2ix = b[9], kind = b[10];

		v->n = (int64_t)get_u64(b, 24);
		if (log2 < 3 || log2 > 30 || log2ix > 34 || kind > 2 ||
		    v->n < 0 || v->n > (1ll << log2))
			return -EPROTO;
		v->entries = keys + 32 + (1ull << log2ix);
		/* DICT_KEYS_GENERAL holds hashes, unicode and split do not */
		v->esize = kind == 0 ? 24 : 16;
		v->key_at = kind == 0 ? 8 : 0;
		v->value_at = kind == 0 ? 16 : 8;
	} else {
		int64_t size = (int64_t)get_u64(b, 8);
		int ix;

		v->n = (int64_t)get_u64(b, 32);
		if (size < 8 || size > (1ll << 30) || (size & (size - 1)) ||
		    v->n < 0 || v->n > size)
			return -EPROTO;
		ix = size <= 0xff ? 1 : size <= 0xffff ? 2 : 4;
		v->entries = keys + 40 + (uint64_t)size * ix;
		v->esize = 24;
		v->key_at = 8;
		v->value_at = 16;
	}
	if (v->n > TN_MAX_ENTRIES)
		v->n = TN_MAX_ENTRIES;
	return 0;
}

static int dict_open(struct ma_pyreader *r, uint64_t dict, struct dview *v)
{
	uint64_t keys, values;
	int err;

	if (!obj_is(r, dict, "dict", &r->tn_dict_type) ||
	    rd(r, dict + r->tn->dict_keys, &keys, 8) < 0 ||
	    rd(r, dict + r->tn->dict_values, &values, 8) < 0)
		return -EPROTO;
	err = keys_open(r, keys, v);
	if (!err && values)
		v->values = values + (uint64_t)r->tn->values_first;
	return err;
}

/* Entry i: 0 with key and value (either may be 0: a deleted entry or a
 * split table's missing value), or a read error */
static int dview_get(struct ma_pyreader *r, const struct dview *v, int64_t i,
		     uint64_t *key, uint64_t *value)
{
	uint8_t e[24];
	uint64_t at = v->entries + (uint64_t)i * (uint64_t)v->esize;

	if (rd(r, at, e, (size_t)v->esize) < 0)
		return -EFAULT;
	*key = get_u64(e, v->key_at);
	*value = get_u64(e, v->value_at);
	if (v->values && *key &&
	    rd(r, v->values + 8 * (uint64_t)i, value, 8) < 0)
		return -EFAULT;
	return 0;
}

/* Is the str at addr equal to want (ASCII)? */
static int str_is(struct ma_pyreader *r, uint64_t addr, const char *want)
{
	struct src s = { .r = r, .m = r->m };
	char buf[32];
	size_t len = strlen(want);

	if (len >= sizeof(buf) || !obj_is(r, addr, "str", &r->tn_str_type))
		return 0;
	return read_unicode(&s, &r->o, addr, buf, len + 2) == (int)len &&
	       memcmp(buf, want, len) == 0;
}

/* The value of key name in a dict view, 0 when absent or unreadable */
static uint64_t dview_find(struct ma_pyreader *r, const struct dview *v,
			   const char *name, int64_t *ix)
{
	for (int64_t i = 0; i < v->n; i++) {
		uint64_t key, value;

		if (dview_get(r, v, i, &key, &value) < 0)
			return 0;
		if (key && str_is(r, key, name)) {
			if (ix)
				*ix = i;
			return value;
		}
	}
	return 0;
}

static uint64_t dict_get(struct ma_pyreader *r, uint64_t dict, const char *name)
{
	struct dview v;

	if (dict_open(r, dict, &v) < 0)
		return 0;
	return dview_find(r, &v, name, NULL);
}

/* Attribute name of an instance of a Python class: from its __dict__ or,
 * 3.11+, from the values it keeps without one (keys shared in the type) */
static uint64_t attr_get(struct ma_pyreader *r, uint64_t obj, const char *name)
{
	const struct tn_layout *L = r->tn;
	uint64_t type, flags, dict = 0, values = 0, keys;
	uint8_t vh[8] = { 0 };
	int64_t ix = -1;

	if (rd(r, obj + r->o.object_type, &type, 8) < 0 || !type ||
	    rd(r, type + L->type_flags, &flags, 8) < 0)
		return 0;
	if (L->attrs != TN_DICTOFFSET && (flags & TPF_MANAGED_DICT)) {
		uint64_t w[4]; /* the 4 words before the object */

		if (rd(r, obj - 32, w, sizeof(w)) < 0)
			return 0;
		if (L->attrs == TN_MANAGED_311) {
			values = w[0];
			dict = w[1];
		} else if (L->attrs == TN_MANAGED_312) {
			/* stored as the values' address - 1 */
			if (w[1] & 1)
				values = w[1] + 1;
			else
				dict = w[1];
		} else {
			dict = w[1];
			if (!dict && (flags & TPF_INLINE_VALUES)) {
				int64_t bs;

				if (rd(r, type + L->type_basicsize, &bs, 8) <
					    0 ||
				    bs < 16 || bs > 4096 ||
				    rd(r, obj + (uint64_t)bs, vh, 8) < 0 ||
				    !vh[3] /* valid */)
					return 0;
				values = obj + (uint64_t)bs;
			}
		}
		if (dict)
			return dict_get(r, dict, name);
		if (!values)
			return 0;
		struct dview v;

		if (rd(r, type + L->heaptype_cached_keys, &keys, 8) < 0 ||
		    keys_open(r, keys, &v) < 0)
			return 0;
		v.values = 0; /* the keys' own values are NULL: take ix */
		dview_find(r, &v, name, &ix);
		if (ix < 0)
			return 0;
		if (L->attrs == TN_INLINE_313 && ix >= vh[0] /* capacity */)
			return 0;
		uint64_t value;

		if (rd(r, values + (uint64_t)L->values_first + 8 * (uint64_t)ix,
		       &value, 8) < 0)
			return 0;
		return value;
	}
	int64_t off;

	if (rd(r, type + L->type_dictoffset, &off, 8) < 0 || off <= 0 ||
	    off > 4096 || rd(r, obj + (uint64_t)off, &dict, 8) < 0)
		return 0;
	return dict_get(r, dict, name);
}

/* A small int (an ident: up to 64 bits, 3 digits of 30 bits) */
static int long_get(struct ma_pyreader *r, uint64_t addr, uint64_t *out)
{
	uint8_t b[40];
	int64_t nd;
	int neg = 0;

	if (!obj_is(r, addr, "int", &r->tn_int_type) ||
	    rd(r, addr + r->o.varobject_size, b, 8 + 12) < 0)
		return -EPROTO;
	if (r->tn->long_tag) {
		uint64_t tag = get_u64(b, 0);

		nd = (int64_t)(tag >> 3);
		neg = (tag & 3) == 2;
	} else {
		nd = (int64_t)get_u64(b, 0);
		neg = nd < 0;
		nd = neg ? -nd : nd;
	}
	if (neg || nd > 3)
		return -EPROTO;
	*out = 0;
	for (int64_t i = nd - 1; i >= 0; i--) {
		uint32_t d;

		memcpy(&d, b + 8 + 4 * i, 4);
		*out = *out << 30 | (d & 0x3fffffff);
	}
	return 0;
}

/* Is dict sys.modules?  It maps 'sys' to a module. */
static int is_modules(struct ma_pyreader *r, uint64_t dict)
{
	return obj_is(r, dict, "dict", &r->tn_dict_type) &&
	       obj_is(r, dict_get(r, dict, "sys"), "module",
		      &r->tn_module_type);
}

/*
 * sys.modules of an interpreter: at the table's offset, else (another
 * build of the minor version) at the word near it that points to it; the
 * offset found is kept for the next calls.
 */
static uint64_t find_modules(struct ma_pyreader *r, uint64_t interp)
{
	int32_t off = r->tn_modules_off;
	uint64_t dict;

	if (rd(r, interp + (uint64_t)off, &dict, 8) == 0 && is_modules(r, dict))
		return dict;
	if (r->tn_scanned)
		return 0;
	r->tn_scanned = 1;
	for (int32_t d = 8; d <= TN_SCAN_BYTES; d += 8) {
		for (int sgn = -1; sgn <= 1; sgn += 2) {
			int32_t at = off + sgn * d;

			if (at < 0 ||
			    rd(r, interp + (uint64_t)at, &dict, 8) < 0 ||
			    !is_modules(r, dict))
				continue;
			r->tn_modules_off = at;
			return dict;
		}
	}
	return 0;
}

/* threading._active of an interpreter, 0 when threading is not imported */
/* threading._active of an interpreter, and *main its threading._main_thread
 * (0 when it could not be read) */
static uint64_t find_active(struct ma_pyreader *r, uint64_t interp,
			    uint64_t *main)
{
	uint64_t mod, mdict, active;
	size_t i, slot = 0;

	*main = 0;
	for (i = 0; i < TN_MAX_INTERPS; i++) {
		if (r->tn_cache[i].interp == interp &&
		    obj_is(r, r->tn_cache[i].active, "dict",
			   &r->tn_dict_type)) {
			*main = r->tn_cache[i].main;
			return r->tn_cache[i].active;
		}
		if (!r->tn_cache[i].interp)
			slot = i;
	}
	mod = dict_get(r, find_modules(r, interp), "threading");
	/* PyModuleObject.md_dict: 16 on every version, when the heap
	 * census' fields did not say */
	if (!obj_is(r, mod, "module", &r->tn_module_type) ||
	    rd(r,
	       mod + (uint64_t)(r->o.module_dict >= 0 ? r->o.module_dict : 16),
	       &mdict, 8) < 0)
		return 0;
	active = dict_get(r, mdict, "_active");
	if (!obj_is(r, active, "dict", &r->tn_dict_type))
		return 0;
	*main = dict_get(r, mdict, "_main_thread");
	r->tn_cache[slot].interp = interp;
	r->tn_cache[slot].active = active;
	r->tn_cache[slot].main = *main;
	return active;
}

static int push_tname(struct ma_py_tname **v, size_t *n, size_t *cap,
		      uint64_t ident, uint64_t native_id, const char *name)
{
	if (*n == *cap) {
		size_t c = *cap ? 2 * *cap : 16;
		struct ma_py_tname *p = realloc(*v, c * sizeof(*p));

		if (!p)
			return -ENOMEM;
		*v = p;
		*cap = c;
	}
	(*v)[(*n)++] = (struct ma_py_tname){ .ident = ident,
					     .native_id = native_id,
					     .name = name };
	return 0;
}

/* The names of one interpreter's threads, appended to *v; is_main: the
 * main interpreter (the last of the list) */
static int interp_names(struct ma_pyreader *r, uint64_t interp, int is_main,
			struct ma_py_tname **v, size_t *n, size_t *cap)
{
	struct src s = { .r = r, .m = r->m };
	struct dview dv;
	uint64_t active, main;

	if (!r->tn)
		return 0;
	active = find_active(r, interp, &main);
	if (!active || dict_open(r, active, &dv) < 0)
		return 0;
	for (int64_t i = 0; i < dv.n && i < MA_MAX_THREADS; i++) {
		uint64_t key, thread, ident, name_p, native_id;
		char buf[MA_PY_TNAME_MAX];
		const char *name;

		if (dview_get(r, &dv, i, &key, &thread) < 0)
			break;
		if (!key || !thread || long_get(r, key, &ident) < 0)
			continue;
		name_p = attr_get(r, thread, "_name");
		if (!obj_is(r, name_p, "str", &r->tn_str_type) ||
		    read_unicode(&s, &r->o, name_p, buf, sizeof(buf)) < 0)
			continue;
		/* one line of text, whatever the name holds */
		ma_ctl_sanitize(buf, strlen(buf));
		name = intern(r, buf);
		/* None until the thread runs, and absent before 3.8 */
		if (long_get(r, attr_get(r, thread, "_native_id"), &native_id) <
		    0)
			native_id = 0;
		/* In a fork child the Thread that forked keeps its parent's
		 * _native_id (CPython does not reset it), yet it is this
		 * process's main thread, whose pthread_t no other thread can
		 * take while the process lives: its ident alone names it. */
		if (is_main && thread == main)
			native_id = 0;
		if (!name || push_tname(v, n, cap, ident, native_id, name) < 0)
			return -ENOMEM;
	}
	return 0;
}

int ma_pyreader_thread_names(struct ma_pyreader *r, struct ma_py_tname **out,
			     size_t *n)
{
	struct cycle cyc = { 0 };
	uint64_t interp;
	size_t cap = 0;
	int ninterps = 0;

	*out = NULL;
	*n = 0;
	new_generation(r);
	if (rd(r, r->runtime + r->o.runtime_interpreters_head, &interp, 8) < 0)
		return 0;
	while (interp && ninterps++ < MA_MAX_INTERPS &&
	       !cycle_step(&cyc, interp)) {
		uint64_t next;

		if (rd(r, interp + r->o.interp_next, &next, 8) < 0)
			next = 0;
		if (interp_names(r, interp, !next, out, n, &cap) < 0) {
			free(*out);
			*out = NULL;
			*n = 0;
			return -ENOMEM;
		}
		interp = next;
	}
	return 0;
}

/* Name the snapshot's threads first..end of interpreter interp */
static int name_threads(struct ma_pyreader *r, uint64_t interp, int is_main,
			struct ma_py_snapshot *s, int first)
{
	struct ma_py_tname *v = NULL;
	size_t n = 0, cap = 0;

	if (interp_names(r, interp, is_main, &v, &n, &cap) < 0)
		return -ENOMEM;
	for (int k = first; k < s->nthreads; k++) {
		const struct ma_py_thread *t = &s->threads[k];

		for (size_t i = 0; i < n; i++)
			if (v[i].ident && v[i].ident == t->thread_id &&
			    (!v[i].native_id || !t->native_tid ||
			     v[i].native_id == (uint64_t)t->native_tid))
				s->threads[k].name = v[i].name;
	}
	free(v);
	return 0;
}

static int read_interp_head(struct ma_pyreader *r, uint64_t *head)
{
	int err = rd(r, r->runtime + r->o.runtime_interpreters_head, head,
		     sizeof(*head));

	if (err < 0)
		return ma_err(err,
			      "read python threads of %d: _PyRuntime at 0x%llx "
			      "unreadable (%s)",
			      (int)ma_mem_pid(r->m),
			      (unsigned long long)r->runtime, strerror(-err));
	return 0;
}

int ma_pyreader_snapshot(struct ma_pyreader *r, struct ma_py_snapshot *out)
{
	const struct ma_py_offsets *o = &r->o;
	struct cycle cyc = { 0 };
	uint64_t interp, runtime_holder = 0;
	int cap = 0, err, ninterps = 0;

	memset(out, 0, sizeof(*out));
	new_generation(r);
	err = read_interp_head(r, &interp);
	if (err < 0)
		return err;
	/* <= 3.11: one GIL for the whole runtime */
	if (o->runtime_gil >= 0 && o->interp_gil_ptr < 0)
		runtime_holder = gil_holder(r, r->runtime + o->runtime_gil);
	while (interp) {
		uint64_t holder = runtime_holder;
		struct interp_info ii;

		if (ninterps++ >= MA_MAX_INTERPS || cycle_step(&cyc, interp) ||
		    read_interp(r, interp, &ii) < 0) {
			out->truncated = 1;
			break;
		}
		/* 3.12+: each interpreter points to its GIL (maybe shared) */
		if (o->interp_gil_ptr >= 0)
			holder = gil_holder(r, ii.gil);
		int first = out->nthreads;

		err = walk_threads(r, &ii, holder, out, &cap);
		if (!err)
			err = name_threads(r, interp, !ii.next, out, first);
		if (err < 0) {
			ma_py_snapshot_free(out);
			return ma_err(err,
				      "read python threads of %d: out of "
				      "memory",
				      (int)ma_mem_pid(r->m));
		}
		interp = ii.next;
	}
	return 0;
}

void ma_py_snapshot_free(struct ma_py_snapshot *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->nthreads; i++)
		free(s->threads[i].frames);
	free(s->threads);
	memset(s, 0, sizeof(*s));
}

/* One look at the live process for ma_pyreader_validate() */
static int validate_once(struct ma_pyreader *r)
{
	const struct ma_py_offsets *o = &r->o;
	int pid = (int)ma_mem_pid(r->m);
	struct interp_info ii;
	union spanbuf tb;
	uint64_t interp, ts, ts_interp;
	struct ma_py_snapshot s;
	int err, nframes = 0, ncode = 0;

	new_generation(r);
	err = read_interp_head(r, &interp);
	if (err < 0)
		return -EPROTO;
	if (!interp)
		return ma_err(-ENODATA,
			      "check python offsets of %d: no interpreter "
			      "(interpreters.head is NULL)",
			      pid);
	/* the first interpreter with a thread state: the newest one comes
	 * first, and a subinterpreter that runs no code has none (3.13
	 * deletes the state its run_string made) */
	for (int n = 0;; n++) {
		if (read_interp(r, interp, &ii) < 0)
			return ma_err(-EPROTO,
				      "check python offsets of %d: interpreter "
				      "at 0x%llx unreadable",
				      pid, (unsigned long long)interp);
		if (ii.threads_head || !ii.next || n >= MA_MAX_INTERPS)
			break;
		interp = ii.next;
	}
	ts = ii.threads_head;
	if (!ts || rd(r, ts, tb.b, r->tstate_span) < 0)
		return ma_err(-EPROTO,
			      "check python offsets of %d: first thread state "
			      "0x%llx of interpreter 0x%llx unreadable",
			      pid, (unsigned long long)ts,
			      (unsigned long long)interp);
	ts_interp = get_u64(tb.b, o->tstate_interp);
	if (ts_interp != interp)
		return ma_err(-EPROTO,
			      "check python offsets of %d: thread state 0x%llx "
			      "points to interpreter 0x%llx, not 0x%llx",
			      pid, (unsigned long long)ts,
			      (unsigned long long)ts_interp,
			      (unsigned long long)interp);

	/* Frames: at least one must run a real code object */
	err = ma_pyreader_snapshot(r, &s);
	if (err < 0)
		return err;
	for (int i = 0; i < s.nthreads; i++) {
		for (int j = 0; j < s.threads[i].nframes; j++) {
			nframes++;
			/* get_code() only accepts objects of type "code" */
			if (s.threads[i].frames[j].func != unreadable)
				ncode++;
		}
	}
	ma_py_snapshot_free(&s);
	if (nframes && !ncode)
		return ma_err(-EPROTO,
			      "check python offsets of %d: %d frames, none "
			      "with a code object of type \"code\"",
			      pid, nframes);
	return 0;
}

/*
 * The process runs while it is checked: a thread state freed or a frame
 * popped as we read is garbage for that one read.  A server starting a
 * thread per request, looked at 1500 times, once failed every source's
 * check (DWARF's saw 1 frame, the table's 2, none with a code object:
 * the thread list walked through a state being freed) and the command
 * failed with "no usable struct offsets".  Wrong offsets fail every look;
 * a race, seldom two in a row: a failed check is made again, a few times,
 * a little apart.
 */
int ma_pyreader_validate(struct ma_pyreader *r)
{
	for (int attempt = 0;; attempt++) {
		int err = validate_once(r);

		if (err != -EPROTO || attempt == 5)
			return err;
		usleep(1000u << attempt);
	}
}
