/* The fluid's discrete adjoint against central finite differences on small grids. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cphys/fluid.h"

static CPhysFluidConfig small_config(ptrdiff_t ny, ptrdiff_t nx, CPhysFluidLimiter limiter,
                                     CPhysFluidEnergy energy) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.shape[0] = ny, c.shape[1] = nx;
  c.spacing[0] = 1.5, c.spacing[1] = 2.0;
  c.steps = 2;
  /* The projection is linear only as far as CG converges: gradients need a tight solve. */
  c.atol = 1e-12;
  c.limiter = limiter;
  c.energy = energy;
  return c;
}

static double dot(const double *a, const double *b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* L(v0, m0) = <g, m_t(v0, m0)>. */
static double objective(CPhysFluid fluid, const double *v0, const double *m0, const double *g, double *m_t,
                        size_t n) {
  CHECK_OK(CPhysFluidForward(fluid, 1, v0, m0, m_t, 0));
  return dot(g, m_t, n);
}

/* Smooth random velocity: a few low Fourier modes, amplitude ~ speed (length / time). */
static void smooth_field(double *a, ptrdiff_t ny, ptrdiff_t nx, double amplitude, unsigned long long *state) {
  double c[4][4];
  for (int p = 0; p < 4; p++)
    for (int q = 0; q < 4; q++) c[p][q] = test_random(state);
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      double v = 0.0;
      for (int p = 0; p < 2; p++)
        for (int q = 0; q < 2; q++)
          v += c[p][q] * cos(6.283185307 * ((p + 1) * (double)i / nx + q * (double)j / ny) + c[2 + p][q]);
      a[j * nx + i] = amplitude * (v + 0.3 * test_random(state));
    }
}

static void gradient_check(const char *name, CPhysFluidConfig config, double tolerance) {
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&config, &fluid));
  if (!fluid) return;
  const ptrdiff_t ny = config.shape[0], nx = config.shape[1];
  const size_t n = (size_t)(nx * ny);
  unsigned long long state = 0x9e3779b97f4a7c15ULL ^ (unsigned long long)(nx * 131 + ny);
  double *v0 = malloc(2 * n * sizeof *v0), *m0 = malloc(n * sizeof *m0), *g = malloc(n * sizeof *g);
  double *m_t = malloc(n * sizeof *m_t), *g_v0 = malloc(2 * n * sizeof *g_v0);
  double *g_m0 = malloc(n * sizeof *g_m0), *dir = malloc(2 * n * sizeof *dir);
  double *v_p = malloc(2 * n * sizeof *v_p), *m_p = malloc(n * sizeof *m_p);
  /* About 0.5 - 1.5 cells per step: every stencil and limiter branch is exercised. */
  smooth_field(v0, ny, nx, 4.0, &state);
  smooth_field(v0 + n, ny, nx, 4.0, &state);
  for (size_t k = 0; k < n; k++) m0[k] = 0.5 + 0.5 * test_random(&state);
  for (size_t k = 0; k < n; k++) g[k] = test_random(&state);
  CHECK_OK(CPhysFluidForward(fluid, 1, v0, m0, m_t, 1));
  CHECK_OK(CPhysFluidAdjoint(fluid, 1, v0, m0, g, g_v0, g_m0));
  const double h = 1e-5;
  for (int trial = 0; trial < 3; trial++) {
    for (size_t k = 0; k < 2 * n; k++) dir[k] = test_random(&state);
    for (size_t k = 0; k < 2 * n; k++) v_p[k] = v0[k] + h * dir[k];
    double plus = objective(fluid, v_p, m0, g, m_t, n);
    for (size_t k = 0; k < 2 * n; k++) v_p[k] = v0[k] - h * dir[k];
    double minus = objective(fluid, v_p, m0, g, m_t, n);
    double fd = (plus - minus) / (2 * h), ad = dot(g_v0, dir, 2 * n);
    double rel = fabs(fd - ad) / fmax(fabs(fd), 1e-300);
    printf("%s: v0 direction %d: adjoint %.12e  fd %.12e  rel %.2e\n", name, trial, ad, fd, rel);
    CHECK(rel < tolerance, "%s: v0 gradient off by %.3e relative (adjoint %.12e, fd %.12e)", name, rel, ad,
          fd);

    for (size_t k = 0; k < n; k++) dir[k] = test_random(&state);
    for (size_t k = 0; k < n; k++) m_p[k] = m0[k] + h * dir[k];
    plus = objective(fluid, v0, m_p, g, m_t, n);
    for (size_t k = 0; k < n; k++) m_p[k] = m0[k] - h * dir[k];
    minus = objective(fluid, v0, m_p, g, m_t, n);
    fd = (plus - minus) / (2 * h), ad = dot(g_m0, dir, n);
    rel = fabs(fd - ad) / fmax(fabs(fd), 1e-300);
    printf("%s: m0 direction %d: adjoint %.12e  fd %.12e  rel %.2e\n", name, trial, ad, fd, rel);
    CHECK(rel < tolerance, "%s: m0 gradient off by %.3e relative (adjoint %.12e, fd %.12e)", name, rel, ad,
          fd);
  }
  /* The adjoint pass reports its solves like the forward pass. */
  ptrdiff_t batch = 0;
  int solves = 0;
  CHECK_OK(CPhysFluidGetSolveCount(fluid, CPHYS_FLUID_PASS_ADJOINT, &batch, &solves));
  CHECK(batch == 1 && solves == config.steps + 1, "adjoint statistics: batch %td, solves %d", batch, solves);
  free(v0), free(m0), free(g), free(m_t), free(g_v0), free(g_m0), free(dir), free(v_p), free(m_p);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_resampling_adjoint_is_the_transpose(void) {
  CPhysFluidConfig c = small_config(5, 7, CPHYS_FLUID_LIMITER_CLAMP, CPHYS_FLUID_ENERGY_TOTAL);
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  enum { N = 2 * 5 * 7 };
  double x[N], y[N], sx[N], sty[N];
  unsigned long long state = 7;
  for (int k = 0; k < N; k++) x[k] = test_random(&state), y[k] = test_random(&state);
  CHECK_OK(CPhysFluidCentredToStaggered(fluid, 1, x, sx));
  CHECK_OK(CPhysFluidCentredToStaggeredAdjoint(fluid, 1, y, sty));
  const double lhs = dot(sx, y, N), rhs = dot(x, sty, N);
  CHECK(fabs(lhs - rhs) < 1e-13 * fmax(1.0, fabs(lhs)), "<S x, y> = %.17g but <x, S^T y> = %.17g", lhs, rhs);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_adjoint_without_a_recorded_forward_records_one(void) {
  CPhysFluidConfig c = small_config(6, 6, CPHYS_FLUID_LIMITER_CLAMP, CPHYS_FLUID_ENERGY_TOTAL);
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  enum { N = 36 };
  double v0[2 * N], m0[N], g[N], m_t[N], a[2 * N], b[2 * N];
  unsigned long long state = 11;
  for (int k = 0; k < 2 * N; k++) v0[k] = 3.0 * test_random(&state);
  for (int k = 0; k < N; k++) m0[k] = test_random(&state), g[k] = test_random(&state);
  CHECK_OK(CPhysFluidAdjoint(fluid, 1, v0, m0, g, a, NULL));
  CHECK_OK(CPhysFluidForward(fluid, 1, v0, m0, m_t, 1));
  CHECK_OK(CPhysFluidAdjoint(fluid, 1, v0, m0, g, b, NULL));
  CHECK(max_abs_diff(a, b, 2 * N) == 0.0, "adjoint differs with and without a prior recording: %g",
        max_abs_diff(a, b, 2 * N));
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_adjoint_is_linear_in_the_gradient_at_the_default_tolerance(void) {
  /* With atol = 1e-4 on a tiny incoming gradient, an absolute test would skip
   * the adjoint projections; the solves are scaled, so the result scales. */
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.shape[0] = c.shape[1] = 16;
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  enum { N = 256 };
  double v0[2 * N], m0[N], g[N], g_small[N], a[2 * N], b[2 * N];
  unsigned long long state = 13;
  for (int k = 0; k < 2 * N; k++) v0[k] = 3.0 * test_random(&state);
  for (int k = 0; k < N; k++)
    m0[k] = test_random(&state), g[k] = test_random(&state), g_small[k] = 1e-9 * g[k];
  CHECK_OK(CPhysFluidAdjoint(fluid, 1, v0, m0, g, a, NULL));
  CHECK_OK(CPhysFluidAdjoint(fluid, 1, v0, m0, g_small, b, NULL));
  for (int k = 0; k < 2 * N; k++) b[k] *= 1e9;
  CHECK(max_abs_diff(a, b, 2 * N) < 1e-9 * max_abs(a, 2 * N), "adjoint of g / 1e9 differs by %g of %g",
        max_abs_diff(a, b, 2 * N), max_abs(a, 2 * N));
  CPhysSolveInfo info;
  CHECK_OK(CPhysFluidGetSolveInfo(fluid, CPHYS_FLUID_PASS_ADJOINT, 0, 1, &info));
  CHECK(info.iterations > 0, "the adjoint projection of a tiny gradient took no iterations");
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

int main(void) {
  test_adjoint_is_linear_in_the_gradient_at_the_default_tolerance();
  test_resampling_adjoint_is_the_transpose();
  test_adjoint_without_a_recorded_forward_records_one();
  gradient_check("8x8 clamp total", small_config(8, 8, CPHYS_FLUID_LIMITER_CLAMP, CPHYS_FLUID_ENERGY_TOTAL),
                 1e-6);
  gradient_check("8x8 none total", small_config(8, 8, CPHYS_FLUID_LIMITER_NONE, CPHYS_FLUID_ENERGY_TOTAL),
                 1e-6);
  gradient_check("7x9 revert per-component",
                 small_config(7, 9, CPHYS_FLUID_LIMITER_REVERT, CPHYS_FLUID_ENERGY_PER_COMPONENT), 1e-6);
  gradient_check("9x7 clamp no-rescale",
                 small_config(9, 7, CPHYS_FLUID_LIMITER_CLAMP, CPHYS_FLUID_ENERGY_NONE), 1e-6);
  CHECK_REPORT();
}
