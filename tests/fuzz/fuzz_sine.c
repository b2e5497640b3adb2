/* libFuzzer target: every function of the sine op (cphys/sine.h).
 * Beyond the common invariants: finite outputs on success, outputs untouched
 * when an input is rejected, the documented clip bounds, and the nearest
 * minimum really being a minimum on x_eff's side of 0. */
#include "cphys/sine.h"
#include "fuzz_common.h"

enum { MAX_N = 8 };
static const double sentinel = 12345.678;

static double x_eff(double a, double x) {
  const double floor_abs = fabs(a) / CPHYS_SINE_MAX_PHASE, m = fmax(fabs(x), floor_abs);
  return x < 0.0 ? -m : m;
}

/* Inputs every function accepts: a finite with |a| >= the floor, x finite. */
static int inputs_valid(ptrdiff_t n, const double *a, const double *x, const double *second) {
  for (ptrdiff_t i = 0; i < n; i++) {
    if (!isfinite(a[i]) || !(fabs(a[i]) >= CPHYS_SINE_MIN_ABS_A) || !isfinite(x[i])) return 0;
    if (second && !isfinite(second[i])) return 0;
  }
  return 1;
}

static void check_untouched(const double *out, ptrdiff_t n, const char *what) {
  for (ptrdiff_t i = 0; i < n; i++)
    FUZZ_CHECK(out[i] == sentinel, "%s wrote output %td although it rejected its inputs", what, i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzInput in = fuzz_input(data, size);
  const ptrdiff_t n = fuzz_int(&in, -1, MAX_N);
  const size_t count = n > 0 ? (size_t)n : 0;
  double a[MAX_N], x[MAX_N], second[MAX_N], out[MAX_N];
  for (size_t i = 0; i < count; i++) {
    /* a mostly in the paper's range, x and the second array anything. */
    a[i] = fuzz_bool(&in) ? 0.1 + fuzz_u8(&in) / 25.5 : fuzz_double(&in);
    if (fuzz_bool(&in)) a[i] = -a[i];
  }
  fuzz_fill(&in, x, count);
  fuzz_fill(&in, second, count);
  const double clip = fuzz_bool(&in) ? CPHYS_SINE_PAPER_CLIP : fuzz_double(&in);
  const int null_mode = fuzz_int(&in, 0, 15); /* 0: pass a NULL array */
  const double *pa = null_mode == 0 ? NULL : a;
  if (getenv("FUZZ_VERBOSE"))
    for (size_t i = 0; i < count; i++)
      fprintf(stderr, "a[%zu] = %a  x[%zu] = %a  second[%zu] = %a  clip %a\n", i, a[i], i, x[i], i, second[i],
              clip);
  const int valid = inputs_valid(n, a, x, NULL), valid2 = inputs_valid(n, a, x, second);

  for (int call = 0; call < 7; call++) {
    for (size_t i = 0; i < count; i++) out[i] = sentinel;
    int code = 0;
    const char *what = "";
    switch (call) {
      case 0:
        what = "CPhysSineForward";
        code = fuzz_call(CPhysSineForward(n, pa, x, out));
        break;
      case 1:
        what = "CPhysSineAdjoint";
        code = fuzz_call(CPhysSineAdjoint(n, pa, x, second, clip, out));
        break;
      case 2:
        what = "CPhysSinePhysicalGradient";
        code = fuzz_call(CPhysSinePhysicalGradient(n, pa, x, second, out));
        break;
      case 3:
        what = "CPhysSineNearestMinimum";
        code = fuzz_call(CPhysSineNearestMinimum(n, pa, x, out));
        break;
      case 4:
        what = "CPhysSineNewton";
        code = fuzz_call(CPhysSineNewton(n, pa, x, second, clip, out));
        break;
      case 5:
        what = "CPhysSineInverseGradient";
        code = fuzz_call(CPhysSineInverseGradient(n, pa, x, second, clip, out));
        break;
      case 6:
        what = "CPhysSineCoefficientAdjoint";
        code = fuzz_call(CPhysSineCoefficientAdjoint(n, pa, x, second, out));
        break;
    }
    const int uses_second = call != 0 && call != 3;
    const int may_overflow = call == 1 || call == 6; /* a product with a huge dy */
    const int accepted = (uses_second ? valid2 : valid) && (pa != NULL || n == 0) && n >= 0;
    const int clip_ok = call == 1                  ? (clip >= 0.0)
                        : (call == 4 || call == 5) ? (isfinite(clip) && clip > 0.0)
                                                   : 1;
    if (!code) {
      FUZZ_CHECK(accepted && clip_ok, "%s accepted invalid inputs", what);
      FUZZ_CHECK_FINITE(out, count, what);
    } else if (!may_overflow || code != CPHYS_ERROR_NONFINITE || !accepted) {
      /* Only the adjoints' overflow may fail after writing. */
      FUZZ_CHECK(!(accepted && clip_ok), "%s rejected valid inputs: %s", what, CPhysGetLastErrorMessage());
      check_untouched(out, (ptrdiff_t)count, what);
    }
    if (code) continue;
    for (size_t i = 0; i < count; i++) {
      const double xe = x_eff(a[i], x[i]);
      if (call == 1 && clip > 0.0 && isfinite(clip))
        FUZZ_CHECK(fabs(out[i]) <= clip * fabs(second[i]) * (1.0 + 1e-15),
                   "clipped adjoint %g exceeds %g * |%g|", out[i], clip, second[i]);
      if (call == 4 || call == 5)
        FUZZ_CHECK(fabs(out[i]) <= clip, "%s step %g exceeds the clip %g", what, out[i], clip);
      if (call == 3) {
        /* A minimum, on x_eff's side: sin(a / x_min) = -1 up to the phase's rounding. */
        const double phase = a[i] / out[i];
        FUZZ_CHECK((out[i] > 0.0) == (xe > 0.0), "nearest minimum %g of x = %g (a = %g) is across 0", out[i],
                   x[i], a[i]);
        if (fabs(phase) < 1e6)
          FUZZ_CHECK(sin(phase) + 1.0 < 1e-6, "x_min = %g (a = %g) is no minimum: sin = %g", out[i], a[i],
                     sin(phase));
      }
    }
  }
  return 0;
}
