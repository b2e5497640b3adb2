/* libFuzzer target: the heat object (cphys/heat.h) on grids up to 16 x 16:
 * Create with fuzzed configurations, Forward, Adjoint, InverseExact and
 * PhysicalGradient on batches up to 3 (several batch sizes per object, so the
 * plan cache is exercised), in place or not.  heat.h promises: every output
 * is finite on success (an overflow is CPHYS_ERROR_NONFINITE), the mean is
 * conserved by the forward map, and a zero step gives a zero physical gradient.
 * Also the `lbfgs` mode: the least-squares problem through the minimizer. */
#include "cphys/environment.h"
#include "cphys/heat.h"
#define CPHYS_MINIMIZE_FUZZ_HELPERS
#include "fuzz_common.h"

enum { MAX_AXIS = 16, MAX_BATCH = 3 };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  FUZZ_INITIALIZE_PETSC(); /* for the `lbfgs` mode (TAO) */
  return 0;
}

static ptrdiff_t fuzz_axis(FuzzInput *in) {
  const int v = fuzz_int(in, -1, MAX_AXIS + 16);
  return v > MAX_AXIS ? 1 + v % MAX_AXIS : v;
}

static int all_zero(const double *a, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (a[i] != 0.0) return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzInput in = fuzz_input(data, size);
  CPhysHeatConfig config = CPhysHeatDefaultConfig();
  config.shape[0] = fuzz_axis(&in), config.shape[1] = fuzz_axis(&in);
  config.spacing[0] = fuzz_positive(&in, 1.0), config.spacing[1] = fuzz_positive(&in, 1.0);
  config.nu_t = fuzz_bool(&in) ? fuzz_int(&in, 0, 16) * 0.5 : fuzz_double(&in);
  config.noise_relative = fuzz_bool(&in) ? 0.0 : fuzz_double(&in);
  config.signal_amplitude = fuzz_bool(&in) ? 0.0 : fuzz_double(&in);
  config.noise_absolute = fuzz_bool(&in) ? 0.0 : fuzz_double(&in);

  CPhysHeat heat = (CPhysHeat)&in;
  if (fuzz_call(CPhysHeatCreate(fuzz_int(&in, 0, 31) ? &config : NULL, &heat))) {
    FUZZ_CHECK(heat == NULL, "a failed Create left a non-NULL handle");
    return 0;
  }
  CPhysHeatConfig got;
  fuzz_call(CPhysHeatGetConfig(heat, &got));
  FUZZ_CHECK(got.noise_relative > 0.0 && got.signal_amplitude > 0.0, "defaults not filled in");

  const size_t cells = (size_t)(config.shape[0] * config.shape[1]);
  const int rounds = fuzz_int(&in, 1, 4);
  for (int round = 0; round < rounds; round++) {
    const ptrdiff_t batch = fuzz_int(&in, -1, MAX_BATCH);
    const size_t total = cells * (size_t)(batch > 0 ? batch : 0);
    double *x = fuzz_array(&in, total), *y = fuzz_zeros(total);
    const int op = fuzz_int(&in, 0, 4), in_place = fuzz_bool(&in), pass_null = fuzz_int(&in, 0, 15) == 0;
    double *copy = fuzz_zeros(total);
    memcpy(copy, x, total * sizeof *x);
    double *out = in_place ? x : y;
    const double *input = pass_null ? NULL : x;
    int code = 0;
    switch (op) {
      case 0:
        code = fuzz_call(CPhysHeatForward(heat, batch, input, out));
        break;
      case 1:
        code = fuzz_call(CPhysHeatAdjoint(heat, batch, input, out));
        break;
      case 2:
        code = fuzz_call(CPhysHeatInverseExact(heat, batch, input, out));
        break;
      case 3:
        code = fuzz_call(CPhysHeatPhysicalGradient(heat, batch, input, out));
        break;
      case 4: {
        CPhysLeastSquaresProblem problem;
        code = fuzz_call(CPhysHeatGetLeastSquaresProblem(pass_null ? NULL : heat, &problem));
        if (pass_null) FUZZ_CHECK(code == CPHYS_ERROR_ARGUMENT, "a NULL heat object was accepted");
        if (!code && cells <= 64) {
          code = fuzz_quasi_newton(&in, &problem, batch, x, y);
          if (batch < 0) FUZZ_CHECK(code == CPHYS_ERROR_ARGUMENT, "lbfgs accepted batch %td", batch);
        }
        break;
      }
    }
    if (op != 4 && (batch < 0 || (pass_null && batch > 0)))
      FUZZ_CHECK(code == CPHYS_ERROR_ARGUMENT, "op %d accepted batch %td or a NULL array", op, batch);
    if (op == 4) {
      /* lbfgs: its own invariants in fuzz_quasi_newton */
    } else if (!code) {
      FUZZ_CHECK(fuzz_all_finite(copy, total), "op %d accepted a non-finite input", op);
      FUZZ_CHECK_FINITE(out, total, "a heat transform");
      for (ptrdiff_t s = 0; s < batch; s++) {
        const double *xs = copy + (size_t)s * cells, *ys = out + (size_t)s * cells;
        if (op == 3 && all_zero(xs, cells))
          FUZZ_CHECK(all_zero(ys, cells), "the physical gradient of a zero step is not zero");
        if (op <= 1) { /* the k = 0 mode passes unchanged: equal sums up to rounding */
          double sum_in = 0.0, sum_out = 0.0, scale = 0.0;
          for (size_t k = 0; k < cells; k++) sum_in += xs[k], sum_out += ys[k], scale += fabs(xs[k]);
          if (isfinite(scale) && scale < 1e300)
            FUZZ_CHECK(fabs(sum_in - sum_out) <= 1e-9 * scale + 1e-300, "the mean changed: %g -> %g", sum_in,
                       sum_out);
        }
      }
    } else {
      FUZZ_CHECK(code == CPHYS_ERROR_ARGUMENT || code == CPHYS_ERROR_NONFINITE ||
                     code == CPHYS_ERROR_MEMORY || code == CPHYS_ERROR_FFTW,
                 "unexpected failure %s", CPhysErrorName(code));
    }
    free(x);
    free(y);
    free(copy);
  }
  fuzz_call(CPhysHeatDestroy(&heat));
  FUZZ_CHECK(heat == NULL, "Destroy did not clear the handle");
  fuzz_call(CPhysHeatDestroy(&heat));
  fuzz_call(CPhysHeatDestroy(NULL));
  return 0;
}
