/* Poisson object: analytic eigenfunction, L(P(f)) == f, symmetry, error paths. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cphys/environment.h"
#include "cphys/poisson.h"

/* sin(pi p (i+1) / (nx+1)) sin(pi q (j+1) / (ny+1)) is an eigenvector of the
 * discrete Laplacian with eigenvalue -(4/dx^2) sin^2(pi p / (2(nx+1))) - (4/dy^2) sin^2(...). */
static void test_solve_matches_discrete_eigenfunction(void) {
  const ptrdiff_t ny = 12, nx = 17;
  const double dy = 0.5, dx = 1.5;
  CPhysPoisson poisson;
  CHECK_OK(CPhysPoissonCreate(&(CPhysPoissonConfig){{ny, nx}, {dy, dx}, 1e-12, 0.0, 1000, NULL}, &poisson));
  double *f = malloc(sizeof(double) * ny * nx), *y = malloc(sizeof(double) * ny * nx);
  const int p = 3, q = 2;
  const double eigenvalue = -4.0 / (dx * dx) * pow(sin(M_PI * p / (2.0 * (nx + 1))), 2) -
                            4.0 / (dy * dy) * pow(sin(M_PI * q / (2.0 * (ny + 1))), 2);
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++)
      f[j * nx + i] = sin(M_PI * p * (i + 1) / (nx + 1.0)) * sin(M_PI * q * (j + 1) / (ny + 1.0));
  CPhysSolveInfo info;
  CHECK_OK(CPhysPoissonSolve(poisson, 1, f, y, &info));
  double error = 0.0;
  for (ptrdiff_t k = 0; k < ny * nx; k++) error = fmax(error, fabs(y[k] - f[k] / eigenvalue));
  CHECK(error < 1e-10, "eigenfunction solve error %g", error);
  CHECK(info.converged && info.iterations > 0, "info: converged %d after %d iterations (%s)", info.converged,
        info.iterations, info.reason_text);
  free(f), free(y);
  CPhysPoissonDestroy(&poisson);
  CHECK(poisson == NULL, "Destroy must set the handle to NULL");
}

static void test_laplacian_inverts_solve_for_a_batch(void) {
  const ptrdiff_t batch = 3, ny = 20, nx = 9, n = batch * ny * nx;
  CPhysPoisson poisson;
  CHECK_OK(CPhysPoissonCreate(&(CPhysPoissonConfig){{ny, nx}, {1.0, 0.7}, 1e-12, 0.0, 1000, NULL}, &poisson));
  double *f = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n), *back = malloc(sizeof(double) * n);
  unsigned long long state = 42;
  for (ptrdiff_t k = 0; k < n; k++) f[k] = test_random(&state);
  CPhysSolveInfo info[3];
  CHECK_OK(CPhysPoissonSolve(poisson, batch, f, y, info));
  CHECK_OK(CPhysPoissonApplyLaplacian(poisson, batch, y, back));
  CHECK(max_abs_diff(back, f, n) < 1e-9, "L(P(f)) differs from f by %g", max_abs_diff(back, f, n));
  for (int s = 0; s < 3; s++) CHECK(info[s].converged, "sample %d did not converge", s);
  /* The physical gradient is the Laplacian of y_step * g. */
  double *pg = malloc(sizeof(double) * n);
  CHECK_OK(CPhysPoissonPhysicalGradient(poisson, batch, 0.5, y, pg));
  for (ptrdiff_t k = 0; k < n; k++) back[k] *= 0.5;
  CHECK(max_abs_diff(pg, back, n) < 1e-14, "physical gradient is not L(y_step g)");
  free(f), free(y), free(back), free(pg);
  CPhysPoissonDestroy(&poisson);
}

static double dot(const double *a, const double *b, ptrdiff_t n) {
  double sum = 0.0;
  for (ptrdiff_t k = 0; k < n; k++) sum += a[k] * b[k];
  return sum;
}

static void test_solve_is_symmetric(void) {
  const ptrdiff_t ny = 11, nx = 13, n = ny * nx;
  CPhysPoisson poisson;
  CHECK_OK(CPhysPoissonCreate(&(CPhysPoissonConfig){{ny, nx}, {0.3, 0.2}, 1e-13, 0.0, 1000, NULL}, &poisson));
  double u[11 * 13], v[11 * 13], pu[11 * 13], pv[11 * 13];
  unsigned long long state = 7;
  for (ptrdiff_t k = 0; k < n; k++) u[k] = test_random(&state), v[k] = test_random(&state);
  CHECK_OK(CPhysPoissonSolve(poisson, 1, u, pu, NULL));
  CHECK_OK(CPhysPoissonAdjoint(poisson, 1, v, pv, NULL));
  const double left = dot(pu, v, n), right = dot(u, pv, n);
  CHECK(fabs(left - right) < 1e-10 * fabs(left), "<P u, v> = %.15g but <u, P v> = %.15g", left, right);
  CPhysPoissonDestroy(&poisson);
}

static void test_errors_are_returned_not_raised(void) {
  CPhysPoisson poisson = NULL;
  CHECK_FAILS(CPhysPoissonCreate(&(CPhysPoissonConfig){{0, 4}, {1, 1}, 1e-8, 0, 10, NULL}, &poisson),
              CPHYS_ERROR_ARGUMENT);
  CHECK(poisson == NULL, "a failed Create must leave the handle NULL");
  CHECK_FAILS(CPhysPoissonCreate(&(CPhysPoissonConfig){{4, 4}, {-1, 1}, 1e-8, 0, 10, NULL}, &poisson),
              CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonCreate(&(CPhysPoissonConfig){{4, 4}, {1, 1}, 2.0, 0, 10, NULL}, &poisson),
              CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonCreate(&(CPhysPoissonConfig){{4, 4}, {1, NAN}, 1e-8, 0, 10, NULL}, &poisson),
              CPHYS_ERROR_ARGUMENT);
  /* Found by fuzz_poisson: 1/dy^2 overflowed to inf and PETSc's ICC factorization never returned. */
  CHECK_FAILS(
      CPhysPoissonCreate(&(CPhysPoissonConfig){{14, 15}, {1e-300, 2.25}, 1e-10, 0, 37, NULL}, &poisson),
      CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonCreate(&(CPhysPoissonConfig){{4, 4}, {1e300, 1e300}, 1e-8, 0, 10, NULL}, &poisson),
              CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonCreate(&(CPhysPoissonConfig){{PTRDIFF_MAX / 2, 4}, {1, 1}, 1e-8, 0, 10, NULL}, &poisson),
              CPHYS_ERROR_MEMORY);
  CHECK_FAILS(CPhysPoissonCreate(NULL, &poisson), CPHYS_ERROR_ARGUMENT);

  CHECK_OK(CPhysPoissonCreate(&(CPhysPoissonConfig){{8, 8}, {1, 1}, 1e-10, 0, 100, NULL}, &poisson));
  double x[64], y[64];
  for (int k = 0; k < 64; k++) x[k] = 1.0;
  x[10] = NAN;
  CPhysSolveInfo info;
  CHECK_FAILS(CPhysPoissonSolve(poisson, 1, x, y, &info), CPHYS_ERROR_NOT_CONVERGED);
  CHECK(!info.converged && strstr(CPhysGetLastErrorMessage(), "NAN") != NULL,
        "a NaN right-hand side must fail with PETSc's reason, got: %s", CPhysGetLastErrorMessage());
  CHECK_FAILS(CPhysPoissonSolve(poisson, -1, x, y, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonSolve(poisson, 1, NULL, y, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonSolve(NULL, 1, x, y, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_OK(CPhysPoissonSolve(poisson, 0, NULL, NULL, NULL));
  /* The object still works after the failures. */
  x[10] = 1.0;
  CHECK_OK(CPhysPoissonSolve(poisson, 1, x, y, &info));
  CPhysPoissonDestroy(&poisson);

  /* An iteration limit too small for the tolerance is reported, not hidden.
   * ICC(0) needs tens of iterations here (the default Cholesky preconditioner converges in one). */
  CHECK_OK(CPhysSetOptions("-cphys_slow_pc_type icc"));
  CHECK_OK(CPhysPoissonCreate(&(CPhysPoissonConfig){{30, 30}, {1, 1}, 1e-12, 0, 2, "cphys_slow_"}, &poisson));
  double big[900], out[900];
  unsigned long long state = 3;
  for (int k = 0; k < 900; k++) big[k] = test_random(&state);
  CHECK_FAILS(CPhysPoissonSolve(poisson, 1, big, out, &info), CPHYS_ERROR_NOT_CONVERGED);
  CHECK(info.iterations == 2 && strstr(info.reason_text, "ITS") != NULL, "reason %s after %d iterations",
        info.reason_text, info.iterations);
  CPhysPoissonDestroy(&poisson);
  CHECK_OK(CPhysClearOptions());
  CHECK_OK(CPhysPoissonDestroy(NULL));
}

static void test_options_prefix_selects_the_solver(void) {
  /* Jacobi: the default (exact) Cholesky preconditioner would converge in one iteration. */
  CHECK_OK(CPhysSetOptions("-cphys_test_ksp_type richardson -cphys_test_pc_type jacobi -cphys_test_ksp_max_it 3"));
  CPhysPoisson poisson;
  CHECK_OK(CPhysPoissonCreate(&(CPhysPoissonConfig){{16, 16}, {1, 1}, 1e-12, 0, 100, "cphys_test_"}, &poisson));
  double x[256], y[256];
  for (int k = 0; k < 256; k++) x[k] = 1.0;
  CPhysSolveInfo info;
  CHECK_FAILS(CPhysPoissonSolve(poisson, 1, x, y, &info), CPHYS_ERROR_NOT_CONVERGED);
  CHECK(info.iterations == 3, "the option -cphys_test_ksp_max_it 3 was not applied (%d iterations)",
        info.iterations);
  CPhysPoissonDestroy(&poisson);
  CHECK_OK(CPhysClearOptions());

  /* Geometric multigrid without a grid hierarchy is refused, not a crash. */
  CHECK_OK(CPhysSetOptions("-cphys_test_pc_type mg -cphys_test_pc_mg_levels 3"));
  CHECK_FAILS(CPhysPoissonCreate(&(CPhysPoissonConfig){{16, 16}, {1, 1}, 1e-12, 0, 100, "cphys_test_"}, &poisson),
              CPHYS_ERROR_UNSUPPORTED);
  CHECK(poisson == NULL, "a refused Create must leave the handle NULL");
  CHECK_OK(CPhysClearOptions());
}

int main(void) {
  test_solve_matches_discrete_eigenfunction();
  test_laplacian_inverts_solve_for_a_batch();
  test_solve_is_symmetric();
  test_errors_are_returned_not_raised();
  test_options_prefix_selects_the_solver();
  CHECK_REPORT();
}
