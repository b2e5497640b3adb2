/* Spectral Poisson object: every boundary per axis in 2-D and 3-D against a
 * dense matrix built here from the ghost-node rules, discrete eigenfunctions,
 * the PETSc object (same operator, bitwise the same stencil), extreme
 * magnitudes, NaN samples, threads, alignment, error paths. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cphys/environment.h"
#include "cphys/poisson.h"
#include "cphys/poisson_spectral.h"

static const char *const BOUNDARY_NAMES[] = {"dirichlet", "neumann", "periodic", "dirichlet/neumann",
                                             "neumann/dirichlet"};

static CPhysPoissonSpectralConfig config_of(int dims, const ptrdiff_t *shape, const double *spacing,
                                            const CPhysBoundary *boundary) {
  CPhysPoissonSpectralConfig c = CPhysPoissonSpectralDefaultConfig();
  c.dims = dims;
  for (int a = 0; a < dims; a++)
    c.shape[a] = shape[a], c.spacing[a] = spacing[a], c.boundary[a] = boundary[a];
  return c;
}

/* The dense Laplacian, node by node from the ghost rules: beyond an end a
 * Dirichlet neighbour is 0, a Neumann one the node itself, a periodic one the
 * node at the other end (each end of an axis by its own condition).  A: [n, n]
 * with n = product of shape. */
static void dense_laplacian(const CPhysPoissonSpectralConfig *c, double *A) {
  ptrdiff_t n = 1, stride[3] = {1, 1, 1};
  for (int a = 0; a < c->dims; a++) n *= c->shape[a];
  for (int a = c->dims - 2; a >= 0; a--) stride[a] = stride[a + 1] * c->shape[a + 1];
  memset(A, 0, (size_t)(n * n) * sizeof *A);
  for (ptrdiff_t row = 0; row < n; row++) {
    for (int a = 0; a < c->dims; a++) {
      const ptrdiff_t index = row / stride[a] % c->shape[a], len = c->shape[a];
      const double w = 1.0 / (c->spacing[a] * c->spacing[a]);
      A[row * n + row] -= 2.0 * w;
      for (int side = -1; side <= 1; side += 2) {
        const ptrdiff_t k = index + side;
        if (k >= 0 && k < len)
          A[row * n + row + side * stride[a]] += w;
        else if (CPhysBoundaryOfSide(c->boundary[a], side > 0) == CPHYS_BOUNDARY_NEUMANN)
          A[row * n + row] += w;
        else if (c->boundary[a] == CPHYS_BOUNDARY_PERIODIC)
          A[row * n + row + (k < 0 ? len - 1 : -(len - 1)) * stride[a]] += w;
      }
    }
  }
}

static void multiply(const double *A, const double *v, double *out, ptrdiff_t n) {
  for (ptrdiff_t r = 0; r < n; r++) {
    double sum = 0.0;
    for (ptrdiff_t k = 0; k < n; k++) sum += A[r * n + k] * v[k];
    out[r] = sum;
  }
}

static double mean(const double *v, ptrdiff_t n) {
  double sum = 0.0;
  for (ptrdiff_t k = 0; k < n; k++) sum += v[k];
  return sum / (double)n;
}

/* One configuration: the stencil equals the dense matrix; the solution
 * satisfies A y = x (minus its mean when there is no Dirichlet axis) and, then,
 * has zero mean; the adjoint is the same map; the physical gradient is A (s g). */
static void check_against_dense(const CPhysPoissonSpectralConfig *c) {
  ptrdiff_t n = 1;
  for (int a = 0; a < c->dims; a++) n *= c->shape[a];
  const ptrdiff_t batch = 2;
  char label[160];
  snprintf(label, sizeof label, "%dD [%td %td %td] %s/%s/%s", c->dims, c->shape[0], c->shape[1],
           c->dims == 3 ? c->shape[2] : 0, BOUNDARY_NAMES[c->boundary[0]], BOUNDARY_NAMES[c->boundary[1]],
           c->dims == 3 ? BOUNDARY_NAMES[c->boundary[2]] : "-");
  CPhysPoissonSpectral p = NULL;
  CHECK_OK(CPhysPoissonSpectralCreate(c, &p));
  if (!p) return;
  int null_space = -1, expected_null = 1;
  for (int a = 0; a < c->dims; a++)
    expected_null = expected_null &&
                    (c->boundary[a] == CPHYS_BOUNDARY_NEUMANN || c->boundary[a] == CPHYS_BOUNDARY_PERIODIC);
  CHECK_OK(CPhysPoissonSpectralHasNullSpace(p, &null_space));
  CHECK(null_space == expected_null, "%s: null space %d", label, null_space);
  double *A = malloc((size_t)(n * n) * sizeof *A), *x = malloc((size_t)(batch * n) * sizeof *x);
  double *y = malloc((size_t)(batch * n) * sizeof *y), *back = malloc((size_t)(batch * n) * sizeof *back);
  double *ref = malloc((size_t)n * sizeof *ref), *adj = malloc((size_t)(batch * n) * sizeof *adj);
  dense_laplacian(c, A);
  unsigned long long state = 11 + (unsigned long long)n;
  for (ptrdiff_t k = 0; k < batch * n; k++) x[k] = test_random(&state) + 0.3; /* a nonzero mean */
  CPhysSolveInfo info[2];
  CHECK_OK(CPhysPoissonSpectralSolve(p, batch, x, y, info));
  CHECK_OK(CPhysPoissonSpectralApplyLaplacian(p, batch, x, back));
  CHECK_OK(CPhysPoissonSpectralAdjoint(p, batch, x, adj, NULL));
  double stencil_error = 0.0, residual = 0.0, y_mean = 0.0, scale = 0.0;
  for (ptrdiff_t s = 0; s < batch; s++) {
    const double *xs = x + s * n, *ys = y + s * n;
    multiply(A, xs, ref, n);
    stencil_error = fmax(stencil_error, max_abs_diff(back + s * n, ref, (size_t)n) / max_abs(ref, (size_t)n));
    multiply(A, ys, ref, n);
    const double shift = expected_null ? mean(xs, n) : 0.0;
    for (ptrdiff_t k = 0; k < n; k++) residual = fmax(residual, fabs(ref[k] - (xs[k] - shift)));
    if (expected_null) y_mean = fmax(y_mean, fabs(mean(ys, n)));
    scale = fmax(scale, max_abs(ys, (size_t)n));
    CHECK(info[s].converged == 1 && strcmp(info[s].reason_text, "DIRECT") == 0 && info[s].iterations == 0,
          "%s: info of sample %td: %d %s", label, s, info[s].converged, info[s].reason_text);
  }
  CHECK(stencil_error < 1e-14, "%s: the stencil differs from the dense matrix by %g", label, stencil_error);
  CHECK(residual < 1e-11, "%s: residual of the solve %g", label, residual);
  CHECK(y_mean < 1e-13 * scale + 1e-300, "%s: the solution's mean is %g", label, y_mean);
  CHECK(max_abs_diff(adj, y, (size_t)(batch * n)) == 0.0, "%s: the adjoint differs from the solve", label);
  free(A), free(x), free(y), free(back), free(ref), free(adj);
  CHECK_OK(CPhysPoissonSpectralDestroy(&p));
  CHECK(p == NULL, "Destroy must set the handle to NULL");
}

static void test_every_boundary_combination_matches_the_dense_operator(void) {
  /* Every axis kind, the mixed ones (Dirichlet at one end, Neumann at the other) included. */
  const CPhysBoundary all[5] = {CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_NEUMANN, CPHYS_BOUNDARY_PERIODIC,
                                CPHYS_BOUNDARY_DIRICHLET_NEUMANN, CPHYS_BOUNDARY_NEUMANN_DIRICHLET};
  const ptrdiff_t shapes2[][2] = {{5, 7}, {6, 4}, {1, 5}, {4, 1}, {1, 1}, {2, 3}};
  const double spacing[3] = {0.7, 1.3, 0.45};
  for (size_t t = 0; t < sizeof shapes2 / sizeof shapes2[0]; t++)
    for (int b0 = 0; b0 < 5; b0++)
      for (int b1 = 0; b1 < 5; b1++) {
        const CPhysBoundary boundary[2] = {all[b0], all[b1]};
        const CPhysPoissonSpectralConfig c = config_of(2, shapes2[t], spacing, boundary);
        check_against_dense(&c);
      }
  const ptrdiff_t shapes3[][3] = {{3, 4, 5}, {4, 1, 3}, {2, 3, 1}};
  for (size_t t = 0; t < sizeof shapes3 / sizeof shapes3[0]; t++)
    for (int b0 = 0; b0 < 5; b0++)
      for (int b1 = 0; b1 < 5; b1++)
        for (int b2 = 0; b2 < 5; b2++) {
          const CPhysBoundary boundary[3] = {all[b0], all[b1], all[b2]};
          const CPhysPoissonSpectralConfig c = config_of(3, shapes3[t], spacing, boundary);
          check_against_dense(&c);
        }
}

/* Products of the 1-D eigenvectors of each boundary are eigenvectors of L with
 * the sum of the axes' eigenvalues: P(f) = f / lambda, no reference solver needed. */
static double mode_value(CPhysBoundary b, int p, ptrdiff_t j, ptrdiff_t n) {
  if (b == CPHYS_BOUNDARY_DIRICHLET) return sin(M_PI * p * (double)(j + 1) / (double)(n + 1));
  if (b == CPHYS_BOUNDARY_NEUMANN) return cos(M_PI * p * ((double)j + 0.5) / (double)n);
  return cos(2.0 * M_PI * p * (double)j / (double)n + 0.3); /* any phase */
}

static double mode_eigenvalue(CPhysBoundary b, int p, ptrdiff_t n, double h) {
  const double theta = b == CPHYS_BOUNDARY_DIRICHLET ? M_PI * p / (2.0 * (double)(n + 1))
                       : b == CPHYS_BOUNDARY_NEUMANN ? M_PI * p / (2.0 * (double)n)
                                                     : M_PI * p / (double)n;
  return -4.0 / (h * h) * sin(theta) * sin(theta);
}

static void test_solve_matches_discrete_eigenfunctions(void) {
  const ptrdiff_t shape[3] = {9, 16, 12};
  const double spacing[3] = {0.5, 1.5, 0.8};
  const int modes[3] = {3, 2, 5};
  const CPhysBoundary sets[][3] = {
      {CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_DIRICHLET},
      {CPHYS_BOUNDARY_NEUMANN, CPHYS_BOUNDARY_NEUMANN, CPHYS_BOUNDARY_NEUMANN},
      {CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_PERIODIC},
      {CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_NEUMANN},
      {CPHYS_BOUNDARY_NEUMANN, CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_PERIODIC}};
  for (int dims = 2; dims <= 3; dims++)
    for (size_t t = 0; t < sizeof sets / sizeof sets[0]; t++) {
      const ptrdiff_t *sh = dims == 3 ? shape : shape + 1;
      const double *sp = dims == 3 ? spacing : spacing + 1;
      const int *md = dims == 3 ? modes : modes + 1;
      const CPhysBoundary *bd = dims == 3 ? sets[t] : sets[t] + 1;
      const CPhysPoissonSpectralConfig c = config_of(dims, sh, sp, bd);
      CPhysPoissonSpectral p = NULL;
      CHECK_OK(CPhysPoissonSpectralCreate(&c, &p));
      if (!p) continue;
      ptrdiff_t n = 1;
      double lambda = 0.0;
      for (int a = 0; a < dims; a++) n *= sh[a], lambda += mode_eigenvalue(bd[a], md[a], sh[a], sp[a]);
      double *f = malloc((size_t)n * sizeof *f), *y = malloc((size_t)n * sizeof *y);
      for (ptrdiff_t k = 0; k < n; k++) {
        ptrdiff_t rest = k;
        double value = 1.0;
        for (int a = dims - 1; a >= 0; a--)
          value *= mode_value(bd[a], md[a], rest % sh[a], sh[a]), rest /= sh[a];
        f[k] = value;
      }
      CHECK_OK(CPhysPoissonSpectralSolve(p, 1, f, y, NULL));
      double error = 0.0;
      for (ptrdiff_t k = 0; k < n; k++) error = fmax(error, fabs(y[k] - f[k] / lambda));
      CHECK(error < 1e-12 * max_abs(f, (size_t)n) / fabs(lambda), "%dD set %zu: eigenfunction error %g", dims,
            t, error);
      free(f), free(y);
      CPhysPoissonSpectralDestroy(&p);
    }
}

/* The 2-D Dirichlet object is CPhysPoisson's operator: solves agree to CG's
 * tolerance, and the physical gradient is bitwise the same. */
static void test_dirichlet_2d_agrees_with_the_petsc_object(void) {
  const ptrdiff_t batch = 3, ny = 60, nx = 80, n = ny * nx;
  CPhysPoissonConfig pc = CPhysPoissonDefaultConfig();
  pc.shape[0] = ny, pc.shape[1] = nx, pc.spacing[0] = 0.7, pc.spacing[1] = 1.1;
  CPhysPoisson petsc = NULL;
  CPhysPoissonSpectral spectral = NULL;
  CHECK_OK(CPhysPoissonCreate(&pc, &petsc));
  const CPhysBoundary dirichlet[2] = {CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_DIRICHLET};
  const CPhysPoissonSpectralConfig sc = config_of(2, pc.shape, pc.spacing, dirichlet);
  CHECK_OK(CPhysPoissonSpectralCreate(&sc, &spectral));
  if (!petsc || !spectral) return;
  double *x = malloc((size_t)(batch * n) * sizeof *x), *a = malloc((size_t)(batch * n) * sizeof *a);
  double *b = malloc((size_t)(batch * n) * sizeof *b);
  unsigned long long state = 17;
  for (ptrdiff_t k = 0; k < batch * n; k++) x[k] = test_random(&state);
  CHECK_OK(CPhysPoissonSolve(petsc, batch, x, a, NULL));
  CHECK_OK(CPhysPoissonSpectralSolve(spectral, batch, x, b, NULL));
  CHECK(max_abs_diff(a, b, (size_t)(batch * n)) < 1e-9 * max_abs(a, (size_t)(batch * n)),
        "spectral and PETSc solves differ by %g", max_abs_diff(a, b, (size_t)(batch * n)));
  CHECK_OK(CPhysPoissonPhysicalGradient(petsc, batch, 0.3, x, a));
  CHECK_OK(CPhysPoissonSpectralPhysicalGradient(spectral, batch, 0.3, x, b));
  CHECK(memcmp(a, b, (size_t)(batch * n) * sizeof *a) == 0, "the physical gradients are not bitwise equal");
  free(x), free(a), free(b);
  CPhysPoissonDestroy(&petsc);
  CPhysPoissonSpectralDestroy(&spectral);
}

/* Exact scaling: 1e300 and 1e-300 inputs give 1e300 / 1e-300 times the unit
 * result; threads and array alignment do not change a bit; in place works. */
static void test_magnitudes_threads_alignment_and_aliasing(void) {
  const ptrdiff_t shape[3] = {6, 10, 7}, batch = 5, n = 6 * 10 * 7;
  const double spacing[3] = {1.0, 0.5, 2.0};
  const CPhysBoundary boundary[3][3] = {
      {CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_DIRICHLET},
      {CPHYS_BOUNDARY_NEUMANN, CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_NEUMANN},
      {CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_PERIODIC}};
  for (int t = 0; t < 3; t++) {
    const CPhysPoissonSpectralConfig c = config_of(3, shape, spacing, boundary[t]);
    CPhysPoissonSpectral p = NULL;
    CHECK_OK(CPhysPoissonSpectralCreate(&c, &p));
    if (!p) continue;
    double *storage = malloc((size_t)(4 * batch * n + 1) * sizeof(double));
    double *x = storage, *y1 = x + batch * n, *y2 = y1 + batch * n,
           *shifted = y2 + batch * n + 1; /* odd offset */
    unsigned long long state = 23;
    for (ptrdiff_t k = 0; k < batch * n; k++) x[k] = test_random(&state);
    CHECK_OK(CPhysSetThreads(1));
    CHECK_OK(CPhysPoissonSpectralSolve(p, batch, x, y1, NULL));
    CHECK_OK(CPhysSetThreads(2));
    CHECK_OK(CPhysPoissonSpectralSolve(p, batch, x, y2, NULL));
    CHECK(memcmp(y1, y2, (size_t)(batch * n) * sizeof(double)) == 0, "set %d: two threads differ from one",
          t);
    CHECK_OK(CPhysPoissonSpectralSolve(p, batch, x, shifted, NULL));
    CHECK(memcmp(y1, shifted, (size_t)(batch * n) * sizeof(double)) == 0, "set %d: unaligned output differs",
          t);
    memcpy(y2, x, (size_t)(batch * n) * sizeof(double));
    CHECK_OK(CPhysPoissonSpectralSolve(p, batch, y2, y2, NULL));
    CHECK(memcmp(y1, y2, (size_t)(batch * n) * sizeof(double)) == 0, "set %d: the in-place solve differs", t);
    memcpy(shifted, x, (size_t)(batch * n) * sizeof(double));
    CHECK_OK(CPhysPoissonSpectralSolve(p, batch, shifted, shifted, NULL));
    CHECK(memcmp(y1, shifted, (size_t)(batch * n) * sizeof(double)) == 0,
          "set %d: unaligned in place differs", t);
    const double scales[2] = {1e300, 1e-300};
    for (int k = 0; k < 2; k++) {
      for (ptrdiff_t i = 0; i < batch * n; i++) y2[i] = x[i] * scales[k];
      CHECK_OK(CPhysPoissonSpectralSolve(p, batch, y2, y2, NULL));
      double error = 0.0;
      for (ptrdiff_t i = 0; i < batch * n; i++) error = fmax(error, fabs(y2[i] / scales[k] - y1[i]));
      CHECK(error < 1e-12 * max_abs(y1, (size_t)(batch * n)), "set %d, scale %g: error %g", t, scales[k],
            error);
    }
    free(storage);
    CPhysPoissonSpectralDestroy(&p);
  }
  CHECK_OK(CPhysSetThreads(0));
}

/* A NaN sample fails alone, named, with PETSc's reason; the others are solved. */
static void test_non_finite_samples_fail_alone(void) {
  const ptrdiff_t shape[2] = {6, 7}, n = 42;
  const double spacing[2] = {1.0, 1.0};
  const CPhysBoundary boundary[2] = {CPHYS_BOUNDARY_NEUMANN, CPHYS_BOUNDARY_DIRICHLET};
  const CPhysPoissonSpectralConfig c = config_of(2, shape, spacing, boundary);
  CPhysPoissonSpectral p = NULL;
  CHECK_OK(CPhysPoissonSpectralCreate(&c, &p));
  if (!p) return;
  double x[3 * 42], y[3 * 42], alone[42];
  unsigned long long state = 29;
  for (int k = 0; k < 3 * 42; k++) x[k] = test_random(&state);
  x[n + 5] = INFINITY;
  CPhysSolveInfo info[3];
  CHECK_FAILS(CPhysPoissonSpectralSolve(p, 3, x, y, info), CPHYS_ERROR_NOT_CONVERGED);
  CHECK(strstr(CPhysGetLastErrorMessage(), "Poisson solve of sample 1 did not converge: DIVERGED_NANORINF") !=
            NULL,
        "message: %s", CPhysGetLastErrorMessage());
  CHECK(info[0].converged && !info[1].converged && info[2].converged &&
            strcmp(info[1].reason_text, "DIVERGED_NANORINF") == 0,
        "info: %d %d %d %s", info[0].converged, info[1].converged, info[2].converged, info[1].reason_text);
  CHECK(isnan(y[n]) && isnan(y[2 * n - 1]), "the failed sample's output must be NaN");
  CHECK_OK(CPhysPoissonSpectralSolve(p, 1, x + 2 * n, alone, NULL));
  CHECK(memcmp(alone, y + 2 * n, sizeof alone) == 0, "sample 2 differs from its solve alone");
  /* A solution beyond the double range is a failure too, not an Inf returned silently. */
  const ptrdiff_t big_shape[2] = {64, 64};
  const double big_spacing[2] = {1e150, 1e150};
  const CPhysPoissonSpectralConfig big = config_of(2, big_shape, big_spacing, boundary);
  CPhysPoissonSpectral q = NULL;
  CHECK_OK(CPhysPoissonSpectralCreate(&big, &q));
  double *ones = malloc(sizeof(double) * 4096), *out = malloc(sizeof(double) * 4096);
  for (int k = 0; k < 4096; k++) ones[k] = 1e10;
  CHECK_FAILS(CPhysPoissonSpectralSolve(q, 1, ones, out, info), CPHYS_ERROR_NOT_CONVERGED);
  CHECK(strstr(CPhysGetLastErrorMessage(), "overflows") != NULL, "message: %s", CPhysGetLastErrorMessage());
  free(ones), free(out);
  CPhysPoissonSpectralDestroy(&q);
  CPhysPoissonSpectralDestroy(&p);
}

static void test_least_squares_problem_is_the_solve(void) {
  CPhysPoissonSpectralConfig c = CPhysPoissonSpectralDefaultConfig();
  c.shape[0] = 5, c.shape[1] = 6, c.boundary[1] = CPHYS_BOUNDARY_PERIODIC;
  CPhysPoissonSpectral p = NULL;
  CHECK_OK(CPhysPoissonSpectralCreate(&c, &p));
  if (!p) return;
  CPhysLeastSquaresProblem problem;
  CHECK_OK(CPhysPoissonSpectralGetLeastSquaresProblem(p, &problem));
  double x[30], a[30], b[30];
  unsigned long long state = 31;
  for (int k = 0; k < 30; k++) x[k] = test_random(&state);
  CHECK(problem.n == 30 && problem.m == 30, "sizes %td %td", problem.n, problem.m);
  CHECK_OK(problem.forward(problem.context, x, a));
  CHECK_OK(CPhysPoissonSpectralSolve(p, 1, x, b, NULL));
  CHECK(memcmp(a, b, sizeof a) == 0, "forward differs from Solve");
  CHECK_OK(problem.adjoint(problem.context, x, x, a));
  CHECK(memcmp(a, b, sizeof a) == 0, "adjoint differs from Solve");
  CPhysPoissonSpectralDestroy(&p);
}

static void test_errors_are_returned_not_raised(void) {
  CPhysPoissonSpectral p = NULL;
  CPhysPoissonSpectralConfig c = CPhysPoissonSpectralDefaultConfig();
  c.dims = 4;
  CHECK_FAILS(CPhysPoissonSpectralCreate(&c, &p), CPHYS_ERROR_ARGUMENT);
  CHECK(p == NULL, "a failed Create must leave the handle NULL");
  c = CPhysPoissonSpectralDefaultConfig(), c.shape[1] = 0;
  CHECK_FAILS(CPhysPoissonSpectralCreate(&c, &p), CPHYS_ERROR_ARGUMENT);
  c = CPhysPoissonSpectralDefaultConfig(), c.spacing[0] = -1.0;
  CHECK_FAILS(CPhysPoissonSpectralCreate(&c, &p), CPHYS_ERROR_ARGUMENT);
  c = CPhysPoissonSpectralDefaultConfig(), c.spacing[1] = NAN;
  CHECK_FAILS(CPhysPoissonSpectralCreate(&c, &p), CPHYS_ERROR_ARGUMENT);
  c = CPhysPoissonSpectralDefaultConfig(), c.spacing[0] = 1e-300;
  CHECK_FAILS(CPhysPoissonSpectralCreate(&c, &p), CPHYS_ERROR_ARGUMENT);
  CHECK(strstr(CPhysGetLastErrorMessage(), "spacing [1e-300, 1] is out of range") != NULL, "message: %s",
        CPhysGetLastErrorMessage());
  c = CPhysPoissonSpectralDefaultConfig(), c.spacing[0] = c.spacing[1] = 1e200;
  CHECK_FAILS(CPhysPoissonSpectralCreate(&c, &p), CPHYS_ERROR_ARGUMENT);
  c = CPhysPoissonSpectralDefaultConfig(), c.boundary[0] = (CPhysBoundary)7;
  CHECK_FAILS(CPhysPoissonSpectralCreate(&c, &p), CPHYS_ERROR_ARGUMENT);
  c = CPhysPoissonSpectralDefaultConfig(), c.shape[0] = c.shape[1] = (ptrdiff_t)1 << 40;
  CHECK_FAILS(CPhysPoissonSpectralCreate(&c, &p), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonSpectralCreate(NULL, &p), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonSpectralCreate(&c, NULL), CPHYS_ERROR_ARGUMENT);

  c = CPhysPoissonSpectralDefaultConfig(), c.shape[0] = c.shape[1] = 4;
  CHECK_OK(CPhysPoissonSpectralCreate(&c, &p));
  double x[16] = {0}, y[16];
  CHECK_FAILS(CPhysPoissonSpectralSolve(p, -1, x, y, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonSpectralSolve(p, 1, NULL, y, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonSpectralSolve(NULL, 1, x, y, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonSpectralApplyLaplacian(p, 1, x, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonSpectralPhysicalGradient(p, 1, NAN, x, y), CPHYS_ERROR_ARGUMENT);
  x[3] = NAN;
  CHECK_FAILS(CPhysPoissonSpectralPhysicalGradient(p, 1, 1.0, x, y), CPHYS_ERROR_NONFINITE);
  CHECK(strstr(CPhysGetLastErrorMessage(), "g[3] is not finite") != NULL, "message: %s",
        CPhysGetLastErrorMessage());
  CHECK_OK(CPhysPoissonSpectralSolve(p, 0, NULL, NULL, NULL));
  CPhysPoissonSpectralDestroy(&p);
  CHECK_OK(CPhysPoissonSpectralDestroy(NULL));
  CHECK_OK(CPhysPoissonSpectralDestroy(&p));
}

/* The query the torch op's solver="auto" uses to honour PETSc options of the op's prefix. */
static void test_options_query_sees_the_prefix_but_not_the_excluded_one(void) {
  int found = -1;
  CHECK_OK(CPhysClearOptions());
  CHECK_OK(CPhysHasOptionsWithPrefix("physgrad_poisson_", "physgrad_poisson_lbfgs_", &found));
  CHECK(found == 0, "no options set, found %d", found);
  CHECK_OK(CPhysSetOptions("-physgrad_poisson_lbfgs_tao_type lmvm -other_physgrad_poisson_x 1"));
  CHECK_OK(CPhysHasOptionsWithPrefix("physgrad_poisson_", "physgrad_poisson_lbfgs_", &found));
  CHECK(found == 0, "only excluded or unrelated options set, found %d", found);
  CHECK_OK(CPhysSetOptions("-physgrad_poisson_pc_type icc"));
  CHECK_OK(CPhysHasOptionsWithPrefix("physgrad_poisson_", "physgrad_poisson_lbfgs_", &found));
  CHECK(found == 1, "-physgrad_poisson_pc_type set, found %d", found);
  CHECK_OK(CPhysClearOptions());
  CHECK_OK(CPhysHasOptionsWithPrefix("physgrad_poisson_", NULL, &found));
  CHECK(found == 0, "options cleared, found %d", found);
  CHECK_FAILS(CPhysHasOptionsWithPrefix("", NULL, &found), CPHYS_ERROR_ARGUMENT);
}

int main(void) {
  test_every_boundary_combination_matches_the_dense_operator();
  test_solve_matches_discrete_eigenfunctions();
  test_dirichlet_2d_agrees_with_the_petsc_object();
  test_magnitudes_threads_alignment_and_aliasing();
  test_non_finite_samples_fail_alone();
  test_least_squares_problem_is_the_solve();
  test_errors_are_returned_not_raised();
  test_options_query_sees_the_prefix_but_not_the_excluded_one();
  CHECK_REPORT();
}
