/* The fluid's viscosity stage (implicit, by FFT): configuration checks, the decay of a shear mode,
 * the adjoint. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cphys/environment.h"
#include "cphys/fluid.h"

static CPhysFluidConfig viscous_config(ptrdiff_t ny, ptrdiff_t nx, double viscosity) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.shape[0] = ny, c.shape[1] = nx;
  c.spacing[0] = 1.5, c.spacing[1] = 2.0;
  c.steps = 2;
  c.atol = 1e-12;
  c.energy = CPHYS_FLUID_ENERGY_NONE;
  c.viscosity = viscosity;
  return c;
}

static void test_bad_viscosity_is_refused(void) {
  CPhysFluid fluid = NULL;
  CPhysFluidConfig c = viscous_config(6, 6, -1.0);
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  c.viscosity = NAN;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  /* Implicit: no stability limit, even where nu dt overflows. */
  c.viscosity = 1e308, c.dt = 1e10;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  CHECK_OK(CPhysFluidDestroy(&fluid));
  c.viscosity = 0.5, c.dt = 0.25;
  c.energy = CPHYS_FLUID_ENERGY_TOTAL;
  CHECK_FAILS(CPhysFluidCreate(&c, &fluid), CPHYS_ERROR_ARGUMENT);
  CHECK(strstr(CPhysGetLastErrorMessage(), "energy mode 'none'") != NULL, "unexpected message: %s",
        CPhysGetLastErrorMessage());
  CHECK(fluid == NULL, "a refused configuration left an object");
}

/* vx = sin(2 pi y / Ly), vy = 0 is steady under advection and projection: one step multiplies it by
 * 1 / (1 + nu dt k^2) with k^2 = (2 / dy sin(pi / ny))^2, minus the 5-point Laplacian's eigenvalue. */
static void test_shear_mode_decays_by_the_implicit_factor(void) {
  enum { NY = 12, NX = 5, N = NY * NX };
  const double nu = 30.0; /* far beyond an explicit step's limit (2.88 here) */
  CPhysFluidConfig c = viscous_config(NY, NX, nu);
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  double v[2 * N], v0[2 * N], m[N];
  for (int j = 0; j < NY; j++)
    for (int i = 0; i < NX; i++) {
      v0[j * NX + i] = sin(2.0 * 3.141592653589793 * (j + 0.5) / NY);
      v0[N + j * NX + i] = 0.0;
      m[j * NX + i] = 1.0;
    }
  memcpy(v, v0, sizeof v);
  CHECK_OK(CPhysFluidStep(fluid, 1, v, m, NULL));
  const double k = 2.0 / c.spacing[0] * sin(3.141592653589793 / NY);
  const double factor = 1.0 / (1.0 + nu * c.dt * k * k);
  for (int q = 0; q < 2 * N; q++) v0[q] *= factor;
  CHECK(max_abs_diff(v, v0, 2 * N) < 1e-13, "the shear mode is off its decay by %g (factor %.15f)",
        max_abs_diff(v, v0, 2 * N), factor);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static double objective(CPhysFluid fluid, const double *v0, const double *m0, const double *g, double *m_t,
                        int n) {
  CHECK_OK(CPhysFluidForward(fluid, 1, v0, m0, m_t, 0));
  double s = 0.0;
  for (int k = 0; k < n; k++) s += g[k] * m_t[k];
  return s;
}

static void test_adjoint_matches_finite_differences(void) {
  enum { NY = 7, NX = 9, N = NY * NX };
  CPhysFluidConfig c = viscous_config(NY, NX, 0.6);
  c.limiter = CPHYS_FLUID_LIMITER_NONE; /* smooth: no branch flips under the perturbation */
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  double v0[2 * N], m0[N], g[N], m_t[N], g_v0[2 * N], dir[2 * N], v_p[2 * N];
  unsigned long long state = 29;
  for (int q = 0; q < 2 * N; q++) v0[q] = 1.0 + 1.5 * test_random(&state);
  for (int q = 0; q < N; q++) m0[q] = 0.5 + 0.5 * test_random(&state), g[q] = test_random(&state);
  CHECK_OK(CPhysFluidAdjoint(fluid, 1, v0, m0, g, g_v0, NULL));
  const double h = 1e-5;
  for (int trial = 0; trial < 3; trial++) {
    double ad = 0.0;
    for (int q = 0; q < 2 * N; q++) dir[q] = test_random(&state), ad += g_v0[q] * dir[q];
    for (int q = 0; q < 2 * N; q++) v_p[q] = v0[q] + h * dir[q];
    const double plus = objective(fluid, v_p, m0, g, m_t, N);
    for (int q = 0; q < 2 * N; q++) v_p[q] = v0[q] - h * dir[q];
    const double minus = objective(fluid, v_p, m0, g, m_t, N);
    const double fd = (plus - minus) / (2 * h), rel = fabs(fd - ad) / fmax(fabs(fd), 1e-300);
    printf("viscous adjoint, direction %d: adjoint %.12e  fd %.12e  rel %.2e\n", trial, ad, fd, rel);
    CHECK(rel < 1e-6, "viscous v0 gradient off by %.3e relative (adjoint %.12e, fd %.12e)", rel, ad, fd);
  }
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

/* The samples' FFTs run on several threads (new-array execute): results as on one thread, bitwise. */
static void test_threads_give_the_serial_results(void) {
  enum { NY = 32, NX = 32, N = NY * NX, BATCH = 4 };
  CPhysFluidConfig c = viscous_config(NY, NX, 0.5);
  c.steps = 8;
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  static double v0[BATCH * 2 * N], m0[BATCH * N], g[BATCH * N], m_t[2][BATCH * N], g_v0[2][BATCH * 2 * N];
  unsigned long long state = 31;
  for (int q = 0; q < BATCH * 2 * N; q++) v0[q] = 2.0 * test_random(&state);
  for (int q = 0; q < BATCH * N; q++) m0[q] = test_random(&state), g[q] = test_random(&state);
  for (int run = 0; run < 2; run++) {
    CHECK_OK(CPhysSetThreads(run == 0 ? 1 : 2));
    CHECK_OK(CPhysFluidForward(fluid, BATCH, v0, m0, m_t[run], 1));
    CHECK_OK(CPhysFluidAdjoint(fluid, BATCH, v0, m0, g, g_v0[run], NULL));
  }
  CHECK_OK(CPhysSetThreads(0));
  CHECK(max_abs_diff(m_t[0], m_t[1], BATCH * N) == 0.0, "m_t differs between 1 and 2 threads");
  CHECK(max_abs_diff(g_v0[0], g_v0[1], BATCH * 2 * N) == 0.0, "g_v0 differs between 1 and 2 threads");
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

int main(void) {
  test_bad_viscosity_is_refused();
  test_shear_mode_decays_by_the_implicit_factor();
  test_adjoint_matches_finite_differences();
  test_threads_give_the_serial_results();
  CHECK_REPORT();
}
