/* The fluid's forward map: exact translation, conservation where it holds, the
 * limiter's bounds, projection, energy, batching, statistics. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cphys/fluid.h"

static CPhysFluidConfig grid(ptrdiff_t ny, ptrdiff_t nx, double dy, double dx) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.shape[0] = ny, c.shape[1] = nx, c.spacing[0] = dy, c.spacing[1] = dx;
  return c;
}

static double sum(const double *a, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += a[i];
  return s;
}

static double sum_squares(const double *a, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += a[i] * a[i];
  return s;
}

/* A marker blob with noise, values in [0, 1]. */
static void blob(double *m, ptrdiff_t ny, ptrdiff_t nx, double cy, double cx, double radius,
                 unsigned long long *state) {
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const double r2 = ((double)j - cy) * ((double)j - cy) + ((double)i - cx) * ((double)i - cx);
      m[j * nx + i] = r2 < radius * radius ? 0.5 + 0.5 * fabs(test_random(state)) : 0.0;
    }
}

static void test_whole_cell_uniform_velocity_translates_marker_exactly(void) {
  /* dx = 2, dy = 1.5, dt = 0.25: vx = 8 moves one cell right, vy = -6 one cell down per step. */
  CPhysFluidConfig c = grid(12, 16, 1.5, 2.0);
  c.steps = 5;
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  enum { NY = 12, NX = 16, N = NY * NX };
  double v0[2 * N], m0[N], m_t[N], centre[4];
  unsigned long long state = 3;
  for (int k = 0; k < N; k++) v0[k] = 8.0, v0[N + k] = -6.0, m0[k] = test_random(&state);
  CHECK_OK(CPhysFluidForward(fluid, 1, v0, m0, m_t, 0));
  double worst = 0.0;
  for (int j = 0; j < NY; j++)
    for (int i = 0; i < NX; i++)
      worst = fmax(worst, fabs(m_t[j * NX + i] - m0[((j + 5) % NY) * NX + (i - 5 + NX) % NX]));
  CHECK(worst == 0.0, "a whole-cell translation is not exact: max deviation %g", worst);
  double total = 0.0;
  for (int k = 0; k < N; k++) total += fabs(m0[k]);
  CHECK(fabs(sum(m_t, N) - sum(m0, N)) <= 1e-14 * total, "mass changed by %g", sum(m_t, N) - sum(m0, N));
  /* The circular centre of mass moves with it: 5 cells = (10, -7.5) length units. */
  double both[2 * N];
  memcpy(both, m0, sizeof m0), memcpy(both + N, m_t, sizeof m_t);
  for (int k = 0; k < 2 * N; k++) both[k] = fabs(both[k]);
  CHECK_OK(CPhysFluidCentreOfMass(fluid, 2, both, centre, NULL));
  double dx = fmod(centre[2] - centre[0] + 32.0 + 16.0, 32.0) - 16.0;
  double dy = fmod(centre[3] - centre[1] + 18.0 + 9.0, 18.0) - 9.0;
  CHECK(fabs(dx - 10.0) < 1e-9 && fabs(dy + 7.5) < 1e-9, "centre moved by (%g, %g), expected (10, -7.5)", dx,
        dy);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_unlimited_maccormack_conserves_mass_under_uniform_flow(void) {
  /* Semi-Lagrangian and MacCormack are not conservative in general; under a
   * uniform flow every bilinear weight set sums to one over the targets, so
   * the unlimited scheme conserves the marker to rounding.  The limiter breaks
   * this where it clips. */
  CPhysFluidConfig c = grid(16, 16, 2.0, 2.0);
  c.limiter = CPHYS_FLUID_LIMITER_NONE;
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  enum { N = 256 };
  double v0[2 * N], m0[N], m_t[N];
  unsigned long long state = 5;
  for (int k = 0; k < N; k++) v0[k] = 2.7, v0[N + k] = -1.3, m0[k] = fabs(test_random(&state));
  CHECK_OK(CPhysFluidForward(fluid, 1, v0, m0, m_t, 0));
  const double change = fabs(sum(m_t, N) - sum(m0, N)) / sum(m0, N);
  CHECK(change < 1e-13, "unlimited MacCormack changed the mass by %.3e relative", change);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_limiters_keep_the_marker_within_its_initial_bounds(void) {
  CPhysFluidLimiter limiters[2] = {CPHYS_FLUID_LIMITER_CLAMP, CPHYS_FLUID_LIMITER_REVERT};
  for (int l = 0; l < 2; l++) {
    CPhysFluidConfig c = grid(24, 24, 2.0, 2.0);
    c.limiter = limiters[l];
    CPhysFluid fluid = NULL;
    CHECK_OK(CPhysFluidCreate(&c, &fluid));
    if (!fluid) return;
    enum { N = 576 };
    double v0[2 * N], m0[N], m_t[N], vortex[2 * N];
    unsigned long long state = 17;
    CHECK_OK(CPhysFluidUnitVortex(fluid, vortex));
    for (int k = 0; k < 2 * N; k++) v0[k] = 1.5 * vortex[k] + 2.0 * test_random(&state);
    blob(m0, 24, 24, 10.0, 13.0, 7.0, &state);
    CHECK_OK(CPhysFluidForward(fluid, 1, v0, m0, m_t, 0));
    double lo = m0[0], hi = m0[0], lo_t = m_t[0], hi_t = m_t[0];
    for (int k = 0; k < N; k++)
      lo = fmin(lo, m0[k]), hi = fmax(hi, m0[k]), lo_t = fmin(lo_t, m_t[k]), hi_t = fmax(hi_t, m_t[k]);
    CHECK(lo_t >= lo && hi_t <= hi, "limiter %d: marker range [%g, %g] left [%g, %g]", l, lo_t, hi_t, lo, hi);
    printf("limiter %d: relative mass change over %d steps of a vortical flow: %.3e\n", l, c.steps,
           (sum(m_t, N) - sum(m0, N)) / sum(m0, N));
    CHECK_OK(CPhysFluidDestroy(&fluid));
  }
}

static void test_projection_leaves_divergence_below_tolerance(void) {
  const double tolerances[2] = {1e-4, 1e-10};
  for (int t = 0; t < 2; t++) {
    CPhysFluidConfig c = grid(20, 24, 1.0, 2.0);
    c.atol = tolerances[t];
    CPhysFluid fluid = NULL;
    CHECK_OK(CPhysFluidCreate(&c, &fluid));
    if (!fluid) return;
    enum { N = 480 };
    double v[2 * 2 * N], div[2 * N];
    unsigned long long state = 23;
    for (int k = 0; k < 4 * N; k++) v[k] = 5.0 * test_random(&state);
    CHECK_OK(CPhysFluidProject(fluid, 2, v));
    CHECK_OK(CPhysFluidDivergence(fluid, 2, v, div));
    for (int s = 0; s < 2; s++) {
      const double norm = sqrt(sum_squares(div + s * N, N));
      CPhysSolveInfo info;
      CHECK_OK(CPhysFluidGetSolveInfo(fluid, CPHYS_FLUID_PASS_FORWARD, s, 0, &info));
      CHECK(norm <= 1.001 * tolerances[t], "sample %d: ||div v||_2 = %g above atol %g", s, norm,
            tolerances[t]);
      CHECK(info.converged && info.iterations > 0, "sample %d: %s after %d iterations", s, info.reason_text,
            info.iterations);
    }
    CHECK_OK(CPhysFluidDestroy(&fluid));
  }
}

static void test_step_restores_the_energy(void) {
  CPhysFluidEnergy modes[2] = {CPHYS_FLUID_ENERGY_TOTAL, CPHYS_FLUID_ENERGY_PER_COMPONENT};
  for (int e = 0; e < 2; e++) {
    CPhysFluidConfig c = grid(16, 20, 2.0, 2.0);
    c.energy = modes[e];
    CPhysFluid fluid = NULL;
    CHECK_OK(CPhysFluidCreate(&c, &fluid));
    if (!fluid) return;
    enum { N = 320 };
    double v[2 * N], m[N], p[N], zero_v[2 * N], zero_m[N];
    unsigned long long state = 29;
    for (int k = 0; k < 2 * N; k++) v[k] = 4.0 * test_random(&state);
    for (int k = 0; k < N; k++) m[k] = fabs(test_random(&state)), p[k] = 0.0;
    CHECK_OK(CPhysFluidProject(fluid, 1, v));
    const double ex = sum_squares(v, N), ey = sum_squares(v + N, N);
    for (int step = 0; step < 3; step++) CHECK_OK(CPhysFluidStep(fluid, 1, v, m, p));
    const double ex1 = sum_squares(v, N), ey1 = sum_squares(v + N, N);
    CHECK(fabs(ex1 + ey1 - ex - ey) < 1e-12 * (ex + ey), "mode %d: energy %.15g became %.15g", e, ex + ey,
          ex1 + ey1);
    if (modes[e] == CPHYS_FLUID_ENERGY_PER_COMPONENT)
      CHECK(fabs(ex1 - ex) < 1e-12 * ex && fabs(ey1 - ey) < 1e-12 * ey,
            "per-component energies (%g, %g) became (%g, %g)", ex, ey, ex1, ey1);
    /* A fluid at rest stays at rest (no 0 / 0). */
    memset(zero_v, 0, sizeof zero_v);
    for (int k = 0; k < N; k++) zero_m[k] = m[k];
    CHECK_OK(CPhysFluidStep(fluid, 1, zero_v, zero_m, NULL));
    CHECK(max_abs(zero_v, 2 * N) == 0.0, "a zero velocity became %g", max_abs(zero_v, 2 * N));
    CHECK(max_abs_diff(zero_m, m, N) == 0.0, "a fluid at rest moved its marker");
    CHECK_OK(CPhysFluidDestroy(&fluid));
  }
}

static void test_recorded_paper_run_is_divergence_free_energy_conserving_and_batched(void) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig(); /* 64 x 64, 8 steps of 0.25 */
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  enum { N = 64 * 64, B = 2 };
  double *v0 = malloc(B * 2 * N * sizeof *v0), *m0 = malloc(B * N * sizeof *m0);
  double *m_t = malloc(B * N * sizeof *m_t), *one = malloc(N * sizeof *one);
  double *v = malloc(2 * N * sizeof *v), *div = malloc(N * sizeof *div), vortex[2 * N];
  unsigned long long state = 31;
  CHECK_OK(CPhysFluidUnitVortex(fluid, vortex));
  for (int s = 0; s < B; s++) {
    for (int k = 0; k < 2 * N; k++)
      v0[s * 2 * N + k] = (k < N ? 6.0 : -3.0) + (s ? -1.0 : 1.0) * vortex[k] + 0.3 * test_random(&state);
    blob(m0 + s * N, 64, 64, 30.0 + 4 * s, 26.0, 14.0, &state);
  }
  CHECK_OK(CPhysFluidForward(fluid, B, v0, m0, m_t, 1));
  for (int s = 0; s < B; s++) {
    double energy0 = 0.0;
    for (int k = 0; k <= c.steps; k++) {
      CHECK_OK(CPhysFluidGetState(fluid, s, k, v, NULL));
      CHECK_OK(CPhysFluidDivergence(fluid, 1, v, div));
      const double energy = sum_squares(v, 2 * N), norm = sqrt(sum_squares(div, N));
      if (k == 0) energy0 = energy;
      CHECK(norm <= 2.0 * c.atol, "sample %d state %d: ||div||_2 = %g", s, k, norm);
      CHECK(fabs(energy - energy0) <= 1e-12 * energy0, "sample %d state %d: energy %.15g vs %.15g", s, k,
            energy, energy0);
    }
    for (int solve = 0; solve <= c.steps; solve++) {
      CPhysSolveInfo info;
      CHECK_OK(CPhysFluidGetSolveInfo(fluid, CPHYS_FLUID_PASS_FORWARD, s, solve, &info));
      CHECK(info.converged, "sample %d solve %d: %s", s, solve, info.reason_text);
      if (s == 0)
        printf("solve %d: %d CG iterations, residual %.2e\n", solve, info.iterations, info.residual_norm);
    }
  }
  /* A batch is its samples run one by one. */
  for (int s = 0; s < B; s++) {
    CHECK_OK(CPhysFluidForward(fluid, 1, v0 + s * 2 * N, m0 + s * N, one, 0));
    CHECK(max_abs_diff(one, m_t + s * N, N) == 0.0, "sample %d differs alone and in the batch", s);
  }
  free(v0), free(m0), free(m_t), free(one), free(v), free(div);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

int main(void) {
  test_whole_cell_uniform_velocity_translates_marker_exactly();
  test_unlimited_maccormack_conserves_mass_under_uniform_flow();
  test_limiters_keep_the_marker_within_its_initial_bounds();
  test_projection_leaves_divergence_below_tolerance();
  test_step_restores_the_energy();
  test_recorded_paper_run_is_divergence_free_energy_conserving_and_batched();
  CHECK_REPORT();
}
