/* The fluid object's failures: bad arguments, non-finite inputs, an unconverged pressure solve. */
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "cphys/environment.h"
#include "cphys/fluid.h"

static CPhysFluidConfig small(void) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.shape[0] = 8, c.shape[1] = 10;
  return c;
}

static void test_bad_configs_are_rejected_with_messages(void) {
  CPhysFluid fluid = (CPhysFluid)1;
  CHECK_FAILS(CPhysFluidCreate(NULL, &fluid), CPHYS_ERROR_ARGUMENT);
  CHECK(fluid == NULL, "a failed Create must leave a NULL handle");
  CPhysFluidConfig c = small();
  CHECK_FAILS(CPhysFluidCreate(&c, NULL), CPHYS_ERROR_ARGUMENT);
  c = small(), c.shape[1] = 2;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c = small(), c.shape[0] = (ptrdiff_t)1 << 40, c.shape[1] = (ptrdiff_t)1 << 40;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_MEMORY);
  c = small(), c.spacing[0] = 0.0;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c = small(), c.spacing[1] = NAN;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  /* Found by fuzz_fluid: 1/dx^2 overflowed to inf and the ICC factorization never returned. */
  c = small(), c.spacing[1] = 2e-210;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c = small(), c.dt = -0.25;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c = small(), c.steps = 0;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c = small(), c.atol = 0.0, c.rtol = 0.0;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c = small(), c.rtol = 1.0;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c = small(), c.max_iterations = 0;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c = small(), c.limiter = (CPhysFluidLimiter)7;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c = small(), c.energy = (CPhysFluidEnergy)-1;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c = small(), c.vortex_sigma = 0.0;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c = small(), c.marker_destination[0] = INFINITY;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  CHECK_OK(CPhysFluidDestroy(NULL));
  fluid = NULL;
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_bad_calls_are_rejected_with_messages(void) {
  CPhysFluidConfig c = small();
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  enum { N = 80 };
  double v0[2 * N] = {0}, m0[N] = {0}, m_t[N], g[N] = {0}, out[2 * N], info_centre[2];
  CPhysSolveInfo info;
  CHECK_FAILS(CPhysFluidForward(NULL, 1, v0, m0, m_t, 0), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidForward(fluid, -1, v0, m0, m_t, 0), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidForward(fluid, 1, NULL, m0, m_t, 0), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidForward(fluid, 1, v0, NULL, m_t, 0), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidForward(fluid, 1, v0, m0, NULL, 0), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidForward(fluid, PTRDIFF_MAX / 2, v0, m0, m_t, 0), CPHYS_ERROR_MEMORY);
  CHECK_OK(CPhysFluidForward(fluid, 0, NULL, NULL, NULL, 0));
  CHECK_FAILS(CPhysFluidAdjoint(fluid, 1, v0, m0, g, NULL, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidAdjoint(fluid, 1, v0, m0, NULL, out, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidPhysicalInverse(fluid, 1, v0, m0, g, NULL, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidGetState(fluid, 0, 0, out, NULL), CPHYS_ERROR_ARGUMENT); /* nothing recorded */
  CHECK_OK(CPhysFluidForward(fluid, 1, v0, m0, m_t, 1));
  CHECK_FAILS(CPhysFluidGetState(fluid, 1, 0, out, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidGetState(fluid, 0, c.steps + 1, out, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_OK(CPhysFluidGetState(fluid, 0, c.steps, out, m_t));
  CHECK_FAILS(CPhysFluidGetSolveInfo(fluid, CPHYS_FLUID_PASS_FORWARD, 0, c.steps + 1, &info),
              CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidGetSolveInfo(fluid, CPHYS_FLUID_PASS_REVERSE, 0, 0, &info), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidGetSolveInfo(fluid, (CPhysFluidPass)9, 0, 0, &info), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidCentreOfMass(fluid, 1, m0, NULL, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidCentreOfMass(fluid, 1, NULL, info_centre, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidStep(fluid, 1, out, NULL, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidUnitVortex(fluid, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_OK(CPhysFluidDestroy(&fluid));
  CHECK(fluid == NULL, "Destroy must set the handle to NULL");
}

static void test_non_finite_inputs_are_rejected(void) {
  CPhysFluidConfig c = small();
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  enum { N = 80 };
  double v0[2 * N] = {0}, m0[N] = {0}, m_t[N], g[N] = {0}, out[2 * N];
  v0[17] = NAN;
  CHECK_FAILS(CPhysFluidForward(fluid, 1, v0, m0, m_t, 0), CPHYS_ERROR_NONFINITE);
  CHECK(strstr(CPhysGetLastErrorMessage(), "v0[17]") != NULL, "message does not name v0[17]: %s",
        CPhysGetLastErrorMessage());
  v0[17] = 0.0, m0[3] = INFINITY;
  CHECK_FAILS(CPhysFluidForward(fluid, 1, v0, m0, m_t, 0), CPHYS_ERROR_NONFINITE);
  m0[3] = 0.0, g[5] = NAN;
  CHECK_FAILS(CPhysFluidAdjoint(fluid, 1, v0, m0, g, out, NULL), CPHYS_ERROR_NONFINITE);
  CHECK_FAILS(CPhysFluidPhysicalInverse(fluid, 1, v0, m0, g, out, NULL), CPHYS_ERROR_NONFINITE);
  out[0] = NAN;
  CHECK_FAILS(CPhysFluidProject(fluid, 1, out), CPHYS_ERROR_NONFINITE);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_unconverged_pressure_solve_is_an_error(void) {
  CPhysFluidConfig c = small();
  c.max_iterations = 1, c.atol = 1e-12;
  CPhysFluid fluid = NULL;
  /* ICC(0): the default Cholesky preconditioner converges in one iteration. */
  CHECK_OK(CPhysSetOptions("-physgrad_fluid_pc_type icc"));
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  CHECK_OK(CPhysClearOptions());
  if (!fluid) return;
  enum { N = 80 };
  double v0[2 * N], m0[N] = {0}, m_t[N];
  unsigned long long state = 3;
  for (int k = 0; k < 2 * N; k++) v0[k] = test_random(&state);
  CHECK_FAILS(CPhysFluidForward(fluid, 1, v0, m0, m_t, 0), CPHYS_ERROR_NOT_CONVERGED);
  CHECK(strstr(CPhysGetLastErrorMessage(), "DIVERGED_ITS") != NULL, "message lacks the reason: %s",
        CPhysGetLastErrorMessage());
  CPhysSolveInfo info;
  CHECK_OK(CPhysFluidGetSolveInfo(fluid, CPHYS_FLUID_PASS_FORWARD, 0, 0, &info));
  CHECK(!info.converged && info.iterations == 1, "statistics: converged %d after %d iterations",
        info.converged, info.iterations);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_solver_options_are_read_under_the_prefix(void) {
  /* ICC(0): the default Cholesky preconditioner converges in one iteration. */
  CHECK_OK(CPhysSetOptions(
      "-physgrad_fluid_ksp_max_it 1 -physgrad_fluid_ksp_atol 1e-14 -physgrad_fluid_pc_type icc"));
  CPhysFluidConfig c = small();
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  CHECK_OK(CPhysClearOptions());
  if (!fluid) return;
  enum { N = 80 };
  double v0[2 * N], m0[N] = {0}, m_t[N];
  unsigned long long state = 5;
  for (int k = 0; k < 2 * N; k++) v0[k] = test_random(&state);
  CHECK_FAILS(CPhysFluidForward(fluid, 1, v0, m0, m_t, 0), CPHYS_ERROR_NOT_CONVERGED);
  CHECK_OK(CPhysFluidDestroy(&fluid));
  /* Options are read at Create: a new object has the defaults again. */
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  CHECK_OK(CPhysFluidForward(fluid, 1, v0, m0, m_t, 0));
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

/* Found by fuzz_fluid: a vortex narrower than the cells (<W, W> = 0) gave a NaN
 * estimate, and vortex_center = -DBL_MAX an infinite box position and a NaN unit
 * vortex, both with success; a huge gain now overflows into CPHYS_ERROR_NONFINITE. */
static int all_finite(const double *a, int n) {
  for (int k = 0; k < n; k++)
    if (!isfinite(a[k])) return 0; /* (max_abs would skip a NaN: fmax ignores it) */
  return 1;
}

static void test_inverse_is_finite_or_an_error_for_extreme_vortex_settings(void) {
  enum { N = 80 };
  double v0[2 * N], m0[N] = {0}, target[N] = {0}, v_new[2 * N], vortex[2 * N];
  unsigned long long state = 7;
  for (int k = 0; k < 2 * N; k++) v0[k] = 0.5 * test_random(&state);
  m0[33] = m0[34] = 1.0, target[35] = target[36] = 1.0;
  for (int setting = 0; setting < 3; setting++) {
    CPhysFluidConfig c = small();
    if (setting == 0) c.vortex_sigma = 4e-300;
    if (setting == 1) c.vortex_center[1] = -DBL_MAX;
    if (setting == 2) c.vortex_gain = DBL_MAX;
    CPhysFluid fluid = NULL;
    CHECK_OK(CPhysFluidCreate(&c, &fluid));
    if (!fluid) continue;
    CHECK_OK(CPhysFluidUnitVortex(fluid, vortex));
    CHECK(all_finite(vortex, 2 * N), "setting %d: non-finite unit vortex", setting);
    CPhysClearLastError();
    const int code = CPhysFluidPhysicalInverse(fluid, 1, v0, m0, target, v_new, NULL);
    if (setting < 2) {
      CHECK(code == 0, "setting %d: %s", setting, CPhysGetLastErrorMessage());
      CHECK(all_finite(v_new, 2 * N), "setting %d: non-finite estimate", setting);
    } else {
      CHECK(code == CPHYS_ERROR_NONFINITE && strstr(CPhysGetLastErrorMessage(), "overflows") != NULL,
            "a gain of DBL_MAX returned %s: %s", CPhysErrorName(code), CPhysGetLastErrorMessage());
    }
    CHECK_OK(CPhysFluidDestroy(&fluid));
  }
}

int main(void) {
  test_bad_configs_are_rejected_with_messages();
  test_inverse_is_finite_or_an_error_for_extreme_vortex_settings();
  test_bad_calls_are_rejected_with_messages();
  test_non_finite_inputs_are_rejected();
  test_unconverged_pressure_solve_is_an_error();
  test_solver_options_are_read_under_the_prefix();
  CHECK_REPORT();
}
