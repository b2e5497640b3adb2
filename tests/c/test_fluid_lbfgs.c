/* The fluid's lbfgs physical gradient, its deferred pressure failures and the
 * staggered-to-centred resampling. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cphys/environment.h"
#include "cphys/fluid.h"

enum { NY = 12, NX = 12, N = NY * NX };

static CPhysFluidConfig small(void) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.shape[0] = NY, c.shape[1] = NX;
  c.steps = 2;
  c.atol = 1e-10;
  return c;
}

/* A marker blob and a uniform-plus-vortex velocity of the data set's kind. */
static void example(CPhysFluid fluid, double strength, const double u[2], double *v, double *m) {
  double vortex[2 * N];
  unsigned long long state = 11;
  CHECK_OK(CPhysFluidUnitVortex(fluid, vortex));
  for (int c = 0; c < 2; c++)
    for (int k = 0; k < N; k++) v[c * N + k] = u[c] + strength * vortex[c * N + k];
  for (int j = 0; j < NY; j++)
    for (int i = 0; i < NX; i++)
      m[j * NX + i] = (i >= 2 && i < 7 && j >= 3 && j < 9 && test_random(&state) > -0.5) ? 1.0 : 0.0;
}

static double half_squared_distance(const double *a, const double *b, int n) {
  double s = 0.0;
  for (int k = 0; k < n; k++) s += 0.5 * (a[k] - b[k]) * (a[k] - b[k]);
  return s;
}

static void test_lbfgs_step_lowers_the_objective(void) {
  CPhysFluidConfig c = small();
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  double v_true[2 * N], m0[N], target[N], v[2 * N], y[N], g[N], dv[2 * N], v_next[2 * N], y_next[N];
  const double u_true[2] = {3.0, -2.0}, u_start[2] = {1.0, 0.5};
  example(fluid, 0.4, u_true, v_true, m0);
  CHECK_OK(CPhysFluidForward(fluid, 1, v_true, m0, target, 0));
  example(fluid, -0.1, u_start, v, m0);
  CHECK_OK(CPhysFluidForward(fluid, 1, v, m0, y, 0));
  for (int k = 0; k < N; k++) g[k] = y[k] - target[k]; /* dL/dy of 1/2 ||y - target||^2 */
  CPhysLeastSquaresConfig lsq = {0};
  lsq.max_iterations = 8;
  CPhysSolveInfo info;
  CHECK_OK(CPhysFluidLbfgsPhysicalGradient(fluid, &lsq, 1, v, m0, y, g, 1.0, dv, &info));
  for (int k = 0; k < 2 * N; k++) v_next[k] = v[k] - dv[k];
  CHECK_OK(CPhysFluidForward(fluid, 1, v_next, m0, y_next, 0));
  const double before = half_squared_distance(y, target, N), after = half_squared_distance(y_next, target, N);
  CHECK(after < 0.5 * before, "8 L-BFGS iterations: objective %g -> %g", before, after);
  CHECK(info.iterations >= 1 && info.iterations <= 8, "TAO reported %d iterations", info.iterations);
  CPhysLeastSquaresConfig bad = lsq;
  bad.max_iterations = 0;
  CHECK_FAILS(CPhysFluidLbfgsPhysicalGradient(fluid, &bad, 1, v, m0, y, g, 1.0, dv, NULL),
              CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidLbfgsPhysicalGradient(fluid, NULL, 1, v, m0, y, g, 1.0, dv, NULL),
              CPHYS_ERROR_ARGUMENT);
  g[3] = NAN;
  CHECK_FAILS(CPhysFluidLbfgsPhysicalGradient(fluid, &lsq, 1, v, m0, y, g, 1.0, dv, NULL),
              CPHYS_ERROR_NONFINITE);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

/* max_iterations 1: every pressure solve fails, yet every sample is computed. */
static void test_unconverged_solves_still_finish_the_batch(void) {
  CPhysFluidConfig c = small();
  c.max_iterations = 1, c.atol = 1e-12;
  CPhysFluid fluid = NULL;
  /* ICC(0): the default Cholesky preconditioner converges in one iteration. */
  CHECK_OK(CPhysSetOptions("-physgrad_fluid_pc_type icc"));
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  CHECK_OK(CPhysClearOptions());
  if (!fluid) return;
  double v[2 * 2 * N], m0[2 * N], m_t[2 * N], alone[N], y[2 * N], g[2 * N], dv[2 * 2 * N];
  const double u0[2] = {2.0, 1.0}, u1[2] = {-1.0, 3.0};
  example(fluid, 0.3, u0, v, m0);
  example(fluid, -0.2, u1, v + 2 * N, m0 + N);
  CHECK_FAILS(CPhysFluidForward(fluid, 2, v, m0, m_t, 0), CPHYS_ERROR_NOT_CONVERGED);
  CHECK(strstr(CPhysGetLastErrorMessage(), "DIVERGED_ITS") && strstr(CPhysGetLastErrorMessage(), "sample 0"),
        "message: %s", CPhysGetLastErrorMessage());
  CPhysSolveInfo info;
  CHECK_OK(CPhysFluidGetSolveInfo(fluid, CPHYS_FLUID_PASS_FORWARD, 1, c.steps, &info));
  CHECK(!info.converged && info.iterations == 1, "sample 1, last solve: converged %d, %d iterations",
        info.converged, info.iterations);
  CHECK_FAILS(CPhysFluidForward(fluid, 1, v + 2 * N, m0 + N, alone, 0), CPHYS_ERROR_NOT_CONVERGED);
  CHECK(max_abs_diff(alone, m_t + N, N) == 0.0, "sample 1 differs from its run alone by %g",
        max_abs_diff(alone, m_t + N, N));
  CHECK(max_abs(m_t, 2 * N) < 10.0, "the last iterates gave a marker of size %g", max_abs(m_t, 2 * N));
  /* lbfgs: each sample stops on its first failed solve, with dv0 = 0, and the batch goes on. */
  for (int k = 0; k < 2 * N; k++) y[k] = m_t[k], g[k] = 0.1;
  for (int k = 0; k < 4 * N; k++) dv[k] = 1.0;
  CPhysLeastSquaresConfig lsq = {0};
  lsq.max_iterations = 4;
  CPhysSolveInfo infos[2];
  CHECK_FAILS(CPhysFluidLbfgsPhysicalGradient(fluid, &lsq, 2, v, m0, y, g, 1.0, dv, infos),
              CPHYS_ERROR_NOT_CONVERGED);
  CHECK(max_abs(dv, 4 * N) == 0.0, "dv0 of failed samples must be 0, got %g", max_abs(dv, 4 * N));
  CHECK(!infos[0].converged && !infos[1].converged, "info: converged %d %d", infos[0].converged,
        infos[1].converged);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_staggered_to_centred_averages_the_two_faces(void) {
  CPhysFluidConfig c = small();
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  double staggered[2 * N], centred[2 * N], back[2 * N];
  unsigned long long state = 7;
  for (int k = 0; k < 2 * N; k++) staggered[k] = test_random(&state);
  CHECK_OK(CPhysFluidStaggeredToCentred(fluid, 1, staggered, centred));
  const int j = 4, i = 11; /* the last column: the x-face to the right wraps to column 0 */
  CHECK(fabs(centred[j * NX + i] - 0.5 * (staggered[j * NX + i] + staggered[j * NX])) < 1e-15,
        "vx at the centre of (4, 11)");
  CHECK(fabs(centred[N + 11 * NX + 3] - 0.5 * (staggered[N + 11 * NX + 3] + staggered[N + 3])) < 1e-15,
        "vy at the centre of (11, 3)");
  /* A uniform field is the same on faces and centres. */
  for (int k = 0; k < 2 * N; k++) centred[k] = k < N ? 1.25 : -0.5;
  CHECK_OK(CPhysFluidCentredToStaggered(fluid, 1, centred, staggered));
  CHECK_OK(CPhysFluidStaggeredToCentred(fluid, 1, staggered, back));
  CHECK(max_abs_diff(back, centred, 2 * N) < 1e-15, "uniform round trip");
  CHECK_FAILS(CPhysFluidStaggeredToCentred(fluid, 1, staggered, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysFluidStaggeredToCentred(NULL, 1, staggered, back), CPHYS_ERROR_ARGUMENT);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

int main(void) {
  test_lbfgs_step_lowers_the_objective();
  test_unconverged_solves_still_finish_the_batch();
  test_staggered_to_centred_averages_the_two_faces();
  CHECK_REPORT();
}
