/* The fluid's physical inverse (uniform flow + one vortex from forward and reverse runs). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cphys/fluid.h"

enum { NY = 64, NX = 64, N = NY * NX };

static double distance(const double *a, const double *b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
  return sqrt(s);
}

/* A noisy blob of the paper's kind: half-filled cells in a disc. */
static void blob(double *m, double cx, double cy, double radius, unsigned long long *state) {
  for (int j = 0; j < NY; j++)
    for (int i = 0; i < NX; i++) {
      const double x = (i + 0.5) * 2.0 - cx, y = (j + 0.5) * 2.0 - cy;
      m[j * NX + i] = x * x + y * y < radius * radius && test_random(state) > -0.4 ? 1.0 : 0.0;
    }
}

/* The strength of the vortex in v: the least-squares fit after removing the mean. */
static double fitted_strength(const double *v, const double *vortex) {
  double num = 0.0, den = 0.0;
  for (int c = 0; c < 2; c++) {
    double mean = 0.0;
    for (int k = 0; k < N; k++) mean += v[c * N + k];
    mean /= N;
    for (int k = 0; k < N; k++)
      num += (v[c * N + k] - mean) * vortex[c * N + k], den += vortex[c * N + k] * vortex[c * N + k];
  }
  return num / den;
}

static void check_recovery(CPhysFluid fluid, const CPhysFluidConfig *c, const double start[2],
                           double strength) {
  double *vortex = malloc(2 * N * sizeof *vortex), *v_true = malloc(2 * N * sizeof *v_true);
  double *v = malloc(2 * N * sizeof *v), *v_new = malloc(2 * N * sizeof *v_new);
  double *dv = malloc(2 * N * sizeof *dv), *g_v = malloc(2 * N * sizeof *g_v);
  double *m0 = malloc(N * sizeof *m0), *target = malloc(N * sizeof *target);
  double *m_t = malloc(N * sizeof *m_t), *residual = malloc(N * sizeof *residual);
  unsigned long long state = 41;
  double centre[2];
  CHECK_OK(CPhysFluidUnitVortex(fluid, vortex));
  blob(m0, start[0], start[1], 24.0, &state);
  /* As the paper's data: the uniform flow carries the marker's centre to the
   * box centre in t = 2; the vortex sits at the box centre at t = 0. */
  CHECK_OK(CPhysFluidCentreOfMass(fluid, 1, m0, centre, NULL));
  const double time = c->steps * c->dt;
  const double u_true[2] = {(64.0 - centre[0]) / time, (64.0 - centre[1]) / time};
  for (int cpt = 0; cpt < 2; cpt++)
    for (int k = 0; k < N; k++) v_true[cpt * N + k] = u_true[cpt] + strength * vortex[cpt * N + k];
  CHECK_OK(CPhysFluidForward(fluid, 1, v_true, m0, target, 0));

  /* From rest: one physical-inverse step ... */
  memset(v, 0, 2 * N * sizeof *v);
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, 1, v, m0, target, v_new, dv));
  const double e0 = distance(v, v_true, 2 * N), e_inverse = distance(v_new, v_true, 2 * N);
  double check_dv = 0.0;
  for (int k = 0; k < 2 * N; k++) check_dv = fmax(check_dv, fabs(dv[k] - (v[k] - v_new[k])));
  CHECK(check_dv == 0.0, "dv0 is not v0 - v0_new (off by %g)", check_dv);
  /* ... against one gradient step of 1/2 |m_t - target|^2 with unit step size. */
  CHECK_OK(CPhysFluidForward(fluid, 1, v, m0, m_t, 1));
  for (int k = 0; k < N; k++) residual[k] = m_t[k] - target[k];
  CHECK_OK(CPhysFluidAdjoint(fluid, 1, v, m0, residual, g_v, NULL));
  for (int k = 0; k < 2 * N; k++) g_v[k] = v[k] - g_v[k];
  const double e_gradient = distance(g_v, v_true, 2 * N);
  printf(
      "strength %.2f: |v0 - v*| from rest %.4g, after one inverse step %.4g, after one gradient "
      "step %.4g\n",
      strength, e0, e_inverse, e_gradient);
  CHECK(e_inverse < 0.25 * e0 && e_inverse < 0.25 * e_gradient,
        "inverse step error %g is not far below the start %g and the gradient step %g", e_inverse, e0,
        e_gradient);

  /* Iterated, the vortex strength approaches the true one monotonically. */
  double error = fabs(strength);
  for (int it = 1; it <= 10; it++) {
    memcpy(v, v_new, 2 * N * sizeof *v);
    const double now = fabs(fitted_strength(v, vortex) - strength);
    CHECK(now < error, "iteration %d: strength error %g did not decrease from %g", it, now, error);
    error = now;
    CHECK_OK(CPhysFluidPhysicalInverse(fluid, 1, v, m0, target, v_new, NULL));
  }
  printf("strength %.2f: after 10 inverse steps, strength error %.3g, |v0 - v*| %.4g\n", strength, error,
         distance(v, v_true, 2 * N));
  CHECK(error < 0.05 * fabs(strength), "strength error %g after 10 steps", error);
  /* The true solution is nearly a fixed point (the scheme is not time-reversible). */
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, 1, v_true, m0, target, v_new, NULL));
  const double drift = distance(v_new, v_true, 2 * N);
  printf("strength %.2f: |P^-1(v*) - v*| = %.3g of |v*| = %.4g\n", strength, drift, e0);
  CHECK(drift < 0.01 * e0, "the true velocity moved by %g under the inverse", drift);
  free(vortex), free(v_true), free(v), free(v_new), free(dv), free(g_v), free(m0), free(target);
  free(m_t), free(residual);
}

static void test_inverse_recovers_uniform_plus_vortex_far_better_than_a_gradient_step(void) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  check_recovery(fluid, &c, (const double[2]){48.0, 74.0}, 0.4);
  check_recovery(fluid, &c, (const double[2]){80.0, 52.0}, -0.3);
  ptrdiff_t batch;
  int solves;
  CHECK_OK(CPhysFluidGetSolveCount(fluid, CPHYS_FLUID_PASS_REVERSE, &batch, &solves));
  CHECK(batch == 1 && solves == c.steps, "reverse statistics: batch %td, solves %d", batch, solves);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_centre_of_mass_is_periodic(void) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  double *m = calloc(3 * N, sizeof *m), centre[6];
  int defined[3];
  /* Two cells straddling the seam x = 0: their centre is on the seam, not mid-box. */
  m[10 * NX + 0] = 1.0, m[10 * NX + NX - 1] = 1.0;
  /* A single cell: its own centre. */
  m[N + 20 * NX + 5] = 2.0;
  /* Uniform: undefined. */
  for (int k = 0; k < N; k++) m[2 * N + k] = 1.0;
  CHECK_OK(CPhysFluidCentreOfMass(fluid, 3, m, centre, defined));
  const double seam = fmin(centre[0], 128.0 - centre[0]);
  CHECK(defined[0] && seam < 1e-9 && fabs(centre[1] - 21.0) < 1e-9, "seam pair centre (%g, %g)", centre[0],
        centre[1]);
  CHECK(defined[1] && fabs(centre[2] - 11.0) < 1e-9 && fabs(centre[3] - 41.0) < 1e-9,
        "single cell centre (%g, %g)", centre[2], centre[3]);
  CHECK(!defined[2] && centre[4] == 64.0 && centre[5] == 64.0, "uniform marker: defined %d at (%g, %g)",
        defined[2], centre[4], centre[5]);
  free(m);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_destination_from_target_recovers_a_uniform_flow(void) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.destination_from_target = 1;
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  double *v = calloc(2 * N, sizeof *v), *v_true = malloc(2 * N * sizeof *v_true);
  double *v_new = malloc(2 * N * sizeof *v_new), *m0 = malloc(N * sizeof *m0);
  double *target = malloc(N * sizeof *target);
  unsigned long long state = 43;
  blob(m0, 40.0, 90.0, 20.0, &state);
  /* Whole cells per step (dx = 2, dt = 0.25): the target is m0 translated exactly. */
  for (int k = 0; k < N; k++) v_true[k] = 16.0, v_true[N + k] = -8.0;
  CHECK_OK(CPhysFluidForward(fluid, 1, v_true, m0, target, 0));
  /* From rest the uniform part (the mean: the unit vortex has none) is exact at
   * once; the vortex picks up the forward-reverse mismatch of this first guess. */
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, 1, v, m0, target, v_new, NULL));
  double mean[2] = {0.0, 0.0};
  for (int c2 = 0; c2 < 2; c2++) {
    for (int k = 0; k < N; k++) mean[c2] += v_new[c2 * N + k];
    mean[c2] /= N;
  }
  CHECK(fabs(mean[0] - 16.0) < 1e-9 && fabs(mean[1] + 8.0) < 1e-9, "uniform part (%.12g, %.12g)", mean[0],
        mean[1]);
  /* The exact translation runs back exactly: the truth is a fixed point. */
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, 1, v_true, m0, target, v_new, NULL));
  const double error = distance(v_new, v_true, 2 * N) / distance(v, v_true, 2 * N);
  CHECK(error < 1e-12, "the uniform flow is not a fixed point: relative change %g", error);
  free(v), free(v_true), free(v_new), free(m0), free(target);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

/* A forward run recorded for the inverse (CPHYS_FLUID_RECORD_INVERSE) gives the
 * inverse bitwise the result and statistics of its own forward run, and is not
 * used for other inputs. */
static void test_recorded_forward_gives_the_same_inverse(void) {
  enum { B = 3, NS = 8, SMALL = 16 * 16 };
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.shape[0] = c.shape[1] = 16;
  c.steps = 4;
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  double *v0 = malloc(B * 2 * SMALL * sizeof *v0), *m0 = malloc(B * SMALL * sizeof *m0);
  double *m_t = malloc(B * SMALL * sizeof *m_t), *target = malloc(B * SMALL * sizeof *target);
  double *plain = malloc(B * 2 * SMALL * sizeof *plain), *recorded = malloc(B * 2 * SMALL * sizeof *recorded);
  unsigned long long state = 5;
  for (int k = 0; k < B * 2 * SMALL; k++) v0[k] = 2.0 * test_random(&state);
  for (int k = 0; k < B * SMALL; k++) m0[k] = test_random(&state) > 0.3 ? 1.0 : 0.0;
  CHECK_OK(CPhysFluidForward(fluid, B, v0, m0, m_t, CPHYS_FLUID_RECORD_NONE));
  for (int k = 0; k < B * SMALL; k++) target[k] = m_t[k] + 0.1 * test_random(&state);
  CPhysSolveInfo plain_info[B][NS], recorded_info[B][NS];
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, B, v0, m0, target, NULL, plain));
  for (int s = 0; s < B; s++)
    for (int k = 0; k <= c.steps; k++)
      CHECK_OK(CPhysFluidGetSolveInfo(fluid, CPHYS_FLUID_PASS_FORWARD, s, k, &plain_info[s][k]));
  CHECK_OK(CPhysFluidForward(fluid, B, v0, m0, m_t, CPHYS_FLUID_RECORD_INVERSE));
  memcpy(recorded, v0, 2 * SMALL * sizeof *v0); /* other calls in between do not matter */
  CHECK_OK(CPhysFluidStep(fluid, 1, recorded, m_t, NULL));
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, B, v0, m0, target, NULL, recorded));
  CHECK(memcmp(plain, recorded, B * 2 * SMALL * sizeof *plain) == 0,
        "the recorded forward changed the inverse");
  for (int s = 0; s < B; s++)
    for (int k = 0; k <= c.steps; k++) {
      CHECK_OK(CPhysFluidGetSolveInfo(fluid, CPHYS_FLUID_PASS_FORWARD, s, k, &recorded_info[s][k]));
      CHECK(recorded_info[s][k].iterations == plain_info[s][k].iterations &&
                recorded_info[s][k].residual_norm == plain_info[s][k].residual_norm,
            "sample %d solve %d: statistics differ", s, k);
    }
  /* Other inputs: the record does not apply (sample 1 changed, the others did). */
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, B, v0, m0, target, NULL, plain));
  v0[2 * SMALL + 7] += 0.5;
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, B, v0, m0, target, NULL, recorded));
  CHECK(memcmp(plain, recorded, 2 * SMALL * sizeof *plain) == 0, "sample 0 should be unchanged");
  CHECK(memcmp(plain + 2 * SMALL, recorded + 2 * SMALL, 2 * SMALL * sizeof *plain) != 0,
        "sample 1's changed input must not use the record");
  CHECK_OK(CPhysFluidForward(fluid, 1, v0, m0, m_t, CPHYS_FLUID_RECORD_NONE));
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, B, v0, m0, target, NULL, plain));
  CHECK(memcmp(plain, recorded, B * 2 * SMALL * sizeof *plain) == 0, "recomputed inverse differs");
  free(v0), free(m0), free(m_t), free(target), free(plain), free(recorded);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

int main(void) {
  test_recorded_forward_gives_the_same_inverse();
  test_destination_from_target_recovers_a_uniform_flow();
  test_centre_of_mass_is_periodic();
  test_inverse_recovers_uniform_plus_vortex_far_better_than_a_gradient_step();
  CHECK_REPORT();
}
