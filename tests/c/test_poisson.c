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
  CHECK_FAILS(
      CPhysPoissonCreate(&(CPhysPoissonConfig){{PTRDIFF_MAX / 2, 4}, {1, 1}, 1e-8, 0, 10, NULL}, &poisson),
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
  CHECK_OK(
      CPhysSetOptions("-cphys_test_ksp_type richardson -cphys_test_pc_type jacobi -cphys_test_ksp_max_it 3"));
  CPhysPoisson poisson;
  CHECK_OK(
      CPhysPoissonCreate(&(CPhysPoissonConfig){{16, 16}, {1, 1}, 1e-12, 0, 100, "cphys_test_"}, &poisson));
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
  CHECK_FAILS(
      CPhysPoissonCreate(&(CPhysPoissonConfig){{16, 16}, {1, 1}, 1e-12, 0, 100, "cphys_test_"}, &poisson),
      CPHYS_ERROR_UNSUPPORTED);
  CHECK(poisson == NULL, "a refused Create must leave the handle NULL");
  CHECK_OK(CPhysClearOptions());
}

/* The stencil node by node with explicit zero neighbours outside the grid. */
static double reference_node(const double *y, int ny, int nx, int j, int i, double wx, double wy) {
  const double left = i > 0 ? y[j * nx + i - 1] : 0.0, right = i < nx - 1 ? y[j * nx + i + 1] : 0.0;
  const double down = j > 0 ? y[(j - 1) * nx + i] : 0.0, up = j < ny - 1 ? y[(j + 1) * nx + i] : 0.0;
  return wx * (left + right - 2.0 * y[j * nx + i]) + wy * (down + up - 2.0 * y[j * nx + i]);
}

/* The stencil's fast interior loop computes every node exactly as the plain
 * node-by-node formula, on every shape (1 x 1 up to rows and columns of 1 and 2). */
static void test_laplacian_equals_the_node_formula_bitwise(void) {
  const int shapes[][2] = {{1, 1}, {1, 7}, {6, 1}, {2, 2}, {2, 5}, {3, 3}, {5, 2}, {7, 11}, {60, 80}};
  unsigned long long state = 5;
  for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
    const int ny = shapes[t][0], nx = shapes[t][1], n = ny * nx, batch = 3;
    CPhysPoissonConfig c = CPhysPoissonDefaultConfig();
    c.shape[0] = ny, c.shape[1] = nx, c.spacing[0] = 0.7, c.spacing[1] = 1.3;
    CPhysPoisson poisson = NULL;
    CHECK_OK(CPhysPoissonCreate(&c, &poisson));
    if (!poisson) continue;
    double *y = malloc((size_t)(batch * n) * sizeof *y), *x = malloc((size_t)(batch * n) * sizeof *x);
    double *pg = malloc((size_t)(batch * n) * sizeof *pg);
    for (int k = 0; k < batch * n; k++) y[k] = test_random(&state);
    CHECK_OK(CPhysPoissonApplyLaplacian(poisson, batch, y, x));
    CHECK_OK(CPhysPoissonPhysicalGradient(poisson, batch, 0.25, y, pg));
    int mismatches = 0;
    for (int s = 0; s < batch; s++)
      for (int j = 0; j < ny; j++)
        for (int i = 0; i < nx; i++) {
          const int k = s * n + j * nx + i;
          mismatches += x[k] != reference_node(y + s * n, ny, nx, j, i, 1.0 / (1.3 * 1.3), 1.0 / (0.7 * 0.7));
          mismatches +=
              pg[k] != reference_node(y + s * n, ny, nx, j, i, 0.25 / (1.3 * 1.3), 0.25 / (0.7 * 0.7));
        }
    CHECK(mismatches == 0, "%d x %d: %d nodes differ from the node formula", ny, nx, mismatches);
    free(y), free(x), free(pg);
    CHECK_OK(CPhysPoissonDestroy(&poisson));
  }
}

/* A NaN or Inf in g, and a gradient that overflows, are errors naming the first
 * offender of the lowest failing sample. */
static void test_physical_gradient_rejects_non_finite_values(void) {
  CPhysPoissonConfig c = CPhysPoissonDefaultConfig();
  c.shape[0] = 4, c.shape[1] = 5;
  CPhysPoisson poisson = NULL;
  CHECK_OK(CPhysPoissonCreate(&c, &poisson));
  if (!poisson) return;
  double g[3 * 20], dx[3 * 20];
  for (int k = 0; k < 60; k++) g[k] = 1.0;
  g[47] = NAN, g[52] = INFINITY;
  CHECK_FAILS(CPhysPoissonPhysicalGradient(poisson, 3, 1.0, g, dx), CPHYS_ERROR_NONFINITE);
  CHECK(strstr(CPhysGetLastErrorMessage(), "g[47] is not finite") != NULL, "message: %s",
        CPhysGetLastErrorMessage());
  for (int k = 0; k < 60; k++) g[k] = 1.0;
  g[45] = 1e300; /* sample 2: 1e10 * 4 * 1e300 overflows */
  g[7] = NAN;    /* sample 0 fails first */
  CHECK_FAILS(CPhysPoissonPhysicalGradient(poisson, 3, 1e10, g, dx), CPHYS_ERROR_NONFINITE);
  CHECK(strstr(CPhysGetLastErrorMessage(), "g[7] is not finite") != NULL, "message: %s",
        CPhysGetLastErrorMessage());
  g[7] = 1.0;
  CHECK_FAILS(CPhysPoissonPhysicalGradient(poisson, 3, 1e10, g, dx), CPHYS_ERROR_NONFINITE);
  CHECK(strstr(CPhysGetLastErrorMessage(), "overflows at dx[4") != NULL, "message: %s",
        CPhysGetLastErrorMessage());
  CHECK_OK(CPhysPoissonPhysicalGradient(poisson, 3, 1.0, g, dx)); /* 4e300: still finite */
  CHECK_OK(CPhysPoissonDestroy(&poisson));
}

int main(void) {
  test_solve_matches_discrete_eigenfunction();
  test_laplacian_inverts_solve_for_a_batch();
  test_solve_is_symmetric();
  test_errors_are_returned_not_raised();
  test_options_prefix_selects_the_solver();
  test_laplacian_equals_the_node_formula_bitwise();
  test_physical_gradient_rejects_non_finite_values();
  CHECK_REPORT();
}
