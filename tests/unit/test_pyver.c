/* SPDX-License-Identifier: MIT */
/*
 * common/ma_pyver.h: the rows agree with themselves (one per minor, in
 * order) and with the layouts they name (a layout's rule needs the fields
 * it reads).
 */
#include <criterion/criterion.h>

#include "../../common/ma_pyver.h"

#define NROWS (sizeof(ma_pyvers) / sizeof(ma_pyvers[0]))

Test(pyver, one_row_per_minor_in_order)
{
	for (size_t i = 0; i < NROWS; i++) {
		const struct ma_pyver *v = &ma_pyvers[i];
		uint32_t hex = 0x030000f0u | (uint32_t)v->minor << 16;

		cr_expect_eq(v->minor, MA_PY_MIN_MINOR + (int)i);
		cr_expect(ma_pyver_supported(hex));
		cr_expect_eq(ma_pyver_of(hex), v);
		cr_expect_eq(ma_pyver_nearest(hex), v);
		cr_expect_lt(v->layout, MA_LAYOUT_COUNT);
		cr_expect(v->tstate_get && v->tstate_get[0]);
	}
	cr_expect_null(ma_pyver_of(0x030700f0u));
	cr_expect_null(ma_pyver_of(0x030e00f0u));
	cr_expect_null(ma_pyver_of(0x020d00f0u));
	cr_expect_eq(ma_pyver_nearest(0x030700f0u), &ma_pyvers[0]);
	cr_expect_eq(ma_pyver_nearest(0x030e00f0u), &ma_pyvers[NROWS - 1]);
}

Test(pyver, layouts_and_fields_agree)
{
	for (size_t i = 0; i < NROWS; i++) {
		const struct ma_pyver *v = &ma_pyvers[i];
		const struct ma_py_layout *L = &ma_py_layouts[v->layout];
		uint64_t f = v->fields;
		int m = v->minor;

		cr_expect(!(f & MA_F(tstate_frame)) == !!L->top_in_cframe,
			  "3.%d: innermost frame", m);
		cr_expect(!(f & MA_F(tstate_cframe)) == !L->top_in_cframe,
			  "3.%d: cframe", m);
		cr_expect(!(f & MA_F(code_code_adaptive)) == !!L->lasti_scale,
			  "3.%d: f_lasti or instruction pointer", m);
		cr_expect(L->cstack_owner < 0 || (f & MA_F(frame_owner)),
			  "3.%d: shims need the owner", m);
		cr_expect((L->entry == MA_ENTRY_FLAG) ==
				  !!(f & MA_F(frame_is_entry)),
			  "3.%d: entry flag", m);
		cr_expect(!(f & MA_F(interp_gil_ptr)) == !v->gil_per_interp,
			  "3.%d: GIL", m);
		cr_expect(!(f & MA_F(runtime_gil)) == !!v->gil_per_interp,
			  "3.%d: runtime GIL", m);
		cr_expect((v->linetable == MA_LT_LNOTAB) ==
				  (L->lasti_scale == 1),
			  "3.%d: line table", m);
		cr_expect_eq(
			ma_pyver_stack_fields(v) & ~ma_pyver_reader_fields(v),
			0, "3.%d: the reader needs what the payload does", m);
	}
}

Test(pyver, missing_fields)
{
	const struct ma_pyver *v = &ma_pyvers[NROWS - 1];
	struct ma_py_offsets o;

	for (int i = 0; i < MA_FI_COUNT; i++)
		ma_py_field_set(&o, i, 8);
	cr_expect_null(ma_pyver_missing(&o, v->fields));
	o.frame_owner = MA_OFF_NONE;
	cr_expect_str_eq(ma_pyver_missing(&o, v->fields), "frame_owner");
	o.frame_owner = 65536;
	cr_expect_str_eq(ma_pyver_missing(&o, v->fields), "frame_owner");
	cr_expect_null(ma_pyver_missing(&o, v->fields & ~MA_F(frame_owner)));
}
