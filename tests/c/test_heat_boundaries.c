/* The heat object with Dirichlet and Neumann boundaries and on 3-D grids: single
 * eigenfunctions decay by exp(-|k|^2 nu_t) with the continuous eigenvalues of
 * cphys/heat.h, P is symmetric, the exact inverse undoes it, the physical
 * gradient inverts a clean low mode, the legacy configuration is the 2-D
 * periodic one, and bad configurations are refused. */
#include <string.h>

#include "check.h"
#include "cphys/heat.h"

static const double PI = 3.14159265358979323846;

/* Eigenfunction `mode` of an axis of n cells and its k^2 (spacing h). */
static double axis_function(CPhysBoundary b, ptrdiff_t mode, ptrdiff_t j, ptrdiff_t n) {
  if (b == CPHYS_BOUNDARY_DIRICHLET) return sin(PI * (double)((mode + 1) * (j + 1)) / (double)(n + 1));
  if (b == CPHYS_BOUNDARY_NEUMANN) return cos(PI * (double)mode * ((double)j + 0.5) / (double)n);
  return cos(2.0 * PI * (double)((mode * j) % n) / (double)n);
}

static double axis_k2(CPhysBoundary b, ptrdiff_t mode, ptrdiff_t n, double h) {
  const double k = b == CPHYS_BOUNDARY_DIRICHLET ? PI * (double)(mode + 1) / ((double)(n + 1) * h)
                   : b == CPHYS_BOUNDARY_NEUMANN ? PI * (double)mode / ((double)n * h)
                                                 : 2.0 * PI * (double)mode / ((double)n * h);
  return k * k;
}

static CPhysHeatConfig config_of(int dims, const ptrdiff_t *shape, const double *spacing,
                                 const CPhysBoundary *boundary, double nu_t) {
  CPhysHeatConfig c = CPhysHeatDefaultConfig();
  c.dims = dims, c.nu_t = nu_t;
  for (int a = 0; a < dims; a++)
    c.shape[a] = shape[a], c.spacing[a] = spacing[a], c.boundary[a] = boundary[a];
  return c;
}

static ptrdiff_t cells_of(int dims, const ptrdiff_t *shape) {
  ptrdiff_t n = 1;
  for (int a = 0; a < dims; a++) n *= shape[a];
  return n;
}

/* A product of per-axis eigenfunctions on a 2-D (nz = 1) or 3-D grid; returns its |k|^2. */
static double product_mode(int dims, const ptrdiff_t *shape, const double *spacing, const CPhysBoundary *b,
                           const ptrdiff_t *modes, double *x) {
  const ptrdiff_t nz = dims == 3 ? shape[0] : 1, ny = shape[dims - 2], nx = shape[dims - 1];
  const int o = dims - 2; /* index of the y axis */
  for (ptrdiff_t k = 0; k < nz; k++)
    for (ptrdiff_t j = 0; j < ny; j++)
      for (ptrdiff_t i = 0; i < nx; i++)
        x[(k * ny + j) * nx + i] = (dims == 3 ? axis_function(b[0], modes[0], k, nz) : 1.0) *
                                   axis_function(b[o], modes[o], j, ny) *
                                   axis_function(b[o + 1], modes[o + 1], i, nx);
  double k2 = 0.0;
  for (int a = 0; a < dims; a++) k2 += axis_k2(b[a], modes[a], shape[a], spacing[a]);
  return k2;
}

static double max_abs_difference(const double *a, const double *b, ptrdiff_t n) {
  double m = 0.0;
  for (ptrdiff_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
  return m;
}

typedef struct {
  int dims;
  ptrdiff_t shape[3];
  double spacing[3];
  CPhysBoundary boundary[3];
  ptrdiff_t modes[3];
} Case;

static const Case CASES[] = {
    {2, {12, 9, 0}, {0.9, 1.2, 0}, {CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_DIRICHLET}, {2, 4, 0}},
    {2, {8, 11, 0}, {1.0, 0.7, 0}, {CPHYS_BOUNDARY_NEUMANN, CPHYS_BOUNDARY_NEUMANN}, {0, 3, 0}},
    {2, {10, 6, 0}, {1.1, 1.0, 0}, {CPHYS_BOUNDARY_NEUMANN, CPHYS_BOUNDARY_PERIODIC}, {1, 2, 0}},
    {2, {7, 8, 0}, {1.0, 1.0, 0}, {CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_DIRICHLET}, {0, 5, 0}},
    {3,
     {5, 6, 7},
     {1.0, 0.8, 1.2},
     {CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_NEUMANN, CPHYS_BOUNDARY_PERIODIC},
     {1, 2, 3}},
    {3,
     {4, 6, 5},
     {0.9, 1.0, 1.1},
     {CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_PERIODIC},
     {1, 2, 1}},
    {3,
     {6, 4, 5},
     {1.0, 1.0, 1.0},
     {CPHYS_BOUNDARY_NEUMANN, CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_NEUMANN},
     {2, 0, 4}},
};
enum { CASE_COUNT = sizeof CASES / sizeof CASES[0] };

static void test_single_modes_decay_by_their_continuous_eigenvalue(void) {
  const double nu_t = 1.7;
  for (int c = 0; c < CASE_COUNT; c++) {
    const Case *k = &CASES[c];
    CPhysHeatConfig config = config_of(k->dims, k->shape, k->spacing, k->boundary, nu_t);
    CPhysHeat heat = NULL;
    CHECK_OK(CPhysHeatCreate(&config, &heat));
    const ptrdiff_t n = cells_of(k->dims, k->shape);
    double *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    const double k2 = product_mode(k->dims, k->shape, k->spacing, k->boundary, k->modes, x);
    CHECK_OK(CPhysHeatForward(heat, 1, x, y));
    for (ptrdiff_t i = 0; i < n; i++) x[i] *= exp(-k2 * nu_t);
    CHECK(max_abs_difference(x, y, n) < 1e-14, "case %d: mode decays wrongly by %g", c,
          max_abs_difference(x, y, n));
    free(x), free(y);
    CHECK_OK(CPhysHeatDestroy(&heat));
  }
}

static void test_symmetric_and_exact_inverse_round_trip(void) {
  for (int c = 0; c < CASE_COUNT; c++) {
    const Case *k = &CASES[c];
    const double nu_t = 0.3;
    CPhysHeatConfig config = config_of(k->dims, k->shape, k->spacing, k->boundary, nu_t);
    CPhysHeat heat = NULL;
    CHECK_OK(CPhysHeatCreate(&config, &heat));
    const ptrdiff_t n = cells_of(k->dims, k->shape);
    double *x = malloc((size_t)n * sizeof *x), *u = malloc((size_t)n * sizeof *u);
    double *px = malloc((size_t)n * sizeof *px), *pu = malloc((size_t)n * sizeof *pu);
    unsigned long long seed = 11 + (unsigned long long)c;
    for (ptrdiff_t i = 0; i < n; i++) x[i] = test_random(&seed), u[i] = test_random(&seed);
    CHECK_OK(CPhysHeatForward(heat, 1, x, px));
    CHECK_OK(CPhysHeatAdjoint(heat, 1, u, pu));
    double a = 0.0, b = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) a += px[i] * u[i], b += x[i] * pu[i];
    CHECK(fabs(a - b) < 1e-12 * fabs(a) + 1e-13, "case %d: <Px, u> = %.17g but <x, P^T u> = %.17g", c, a, b);
    CHECK_OK(CPhysHeatInverseExact(heat, 1, px, pu));
    /* The inverse amplifies rounding by up to exp(nu_t |k|^2), |k|^2 <= sum of (pi / h)^2. */
    double largest = 0.0;
    for (int a = 0; a < k->dims; a++) largest += (PI / k->spacing[a]) * (PI / k->spacing[a]);
    const double tolerance = 1e-13 * exp(nu_t * largest);
    CHECK(max_abs_difference(pu, x, n) < tolerance, "case %d: round trip off by %g (tolerance %g)", c,
          max_abs_difference(pu, x, n), tolerance);
    free(x), free(u), free(px), free(pu);
    CHECK_OK(CPhysHeatDestroy(&heat));
  }
}

static void test_physical_gradient_inverts_a_clean_low_mode(void) {
  const double nu_t = 3.0;
  for (int c = 0; c < CASE_COUNT; c++) {
    const Case *k = &CASES[c];
    CPhysHeatConfig config = config_of(k->dims, k->shape, k->spacing, k->boundary, nu_t);
    CPhysHeat heat = NULL;
    CHECK_OK(CPhysHeatCreate(&config, &heat));
    const ptrdiff_t n = cells_of(k->dims, k->shape), low[3] = {0, 1, 1};
    double *x = malloc((size_t)n * sizeof *x), *dy = malloc((size_t)n * sizeof *dy);
    double *dx = malloc((size_t)n * sizeof *dx);
    product_mode(k->dims, k->shape, k->spacing, k->boundary, low, x);
    CHECK_OK(CPhysHeatForward(heat, 1, x, dy));
    CHECK_OK(CPhysHeatPhysicalGradient(heat, 1, dy, dx));
    CHECK(max_abs_difference(dx, x, n) < 1e-10, "case %d: clean low mode recovered to %g only", c,
          max_abs_difference(dx, x, n));
    memset(dy, 0, (size_t)n * sizeof *dy);
    CHECK_OK(CPhysHeatPhysicalGradient(heat, 1, dy, dx));
    CHECK(max_abs_difference(dx, dy, n) == 0.0, "case %d: a zero step gave a nonzero gradient", c);
    free(x), free(dy), free(dx);
    CHECK_OK(CPhysHeatDestroy(&heat));
  }
}

static void test_legacy_configuration_is_the_periodic_2d_grid(void) {
  const ptrdiff_t ny = 9, nx = 10, n = ny * nx;
  CPhysHeatConfig legacy = {{ny, nx}, {0.9, 1.1}, 2.0, 0.0, 0.0, 0, {CPHYS_BOUNDARY_DIRICHLET}, 0.0};
  CPhysHeatConfig explicit = legacy;
  explicit.dims = 2, explicit.boundary[0] = explicit.boundary[1] = CPHYS_BOUNDARY_PERIODIC;
  CPhysHeat a = NULL, b = NULL;
  CHECK_OK(CPhysHeatCreate(&legacy, &a));
  CHECK_OK(CPhysHeatCreate(&explicit, &b));
  CPhysHeatConfig used;
  CHECK_OK(CPhysHeatGetConfig(a, &used));
  CHECK(used.dims == 2 && used.boundary[0] == CPHYS_BOUNDARY_PERIODIC &&
            used.boundary[1] == CPHYS_BOUNDARY_PERIODIC,
        "dims 0 not filled in as 2-D periodic");
  double *x = malloc((size_t)n * sizeof *x), *ya = malloc((size_t)n * sizeof *ya),
         *yb = malloc((size_t)n * sizeof *yb);
  unsigned long long seed = 5;
  for (ptrdiff_t i = 0; i < n; i++) x[i] = test_random(&seed);
  CHECK_OK(CPhysHeatForward(a, 1, x, ya));
  CHECK_OK(CPhysHeatForward(b, 1, x, yb));
  CHECK(memcmp(ya, yb, (size_t)n * sizeof *ya) == 0, "legacy and explicit periodic configurations differ");
  CHECK_OK(CPhysHeatPhysicalGradient(a, 1, x, ya));
  CHECK_OK(CPhysHeatPhysicalGradient(b, 1, x, yb));
  CHECK(memcmp(ya, yb, (size_t)n * sizeof *ya) == 0, "legacy and explicit physical gradients differ");
  free(x), free(ya), free(yb);
  CHECK_OK(CPhysHeatDestroy(&a));
  CHECK_OK(CPhysHeatDestroy(&b));
}

static void test_bad_configurations_are_refused(void) {
  CPhysHeat heat = NULL;
  CPhysHeatConfig config = CPhysHeatDefaultConfig();
  config.dims = 4;
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  config = CPhysHeatDefaultConfig(), config.dims = 1;
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  config = CPhysHeatDefaultConfig(), config.boundary[1] = (CPhysBoundary)7;
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  config = CPhysHeatDefaultConfig(), config.dims = 3; /* shape[2] and spacing[2] are 0 */
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  config.shape[2] = 4;
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  config.spacing[2] = 1.0, config.boundary[0] = CPHYS_BOUNDARY_DIRICHLET;
  config.nu_t = 1e308; /* |k|^2 nu_t overflows on a real basis too */
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  CHECK(heat == NULL, "a failed Create left a handle");
  config.nu_t = 1.0;
  CHECK_OK(CPhysHeatCreate(&config, &heat));
  CPhysLeastSquaresProblem problem;
  CHECK_OK(CPhysHeatGetLeastSquaresProblem(heat, &problem));
  CHECK(problem.n == 64 * 64 * 4 && problem.m == problem.n, "least-squares size %td", problem.n);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

int main(void) {
  test_single_modes_decay_by_their_continuous_eigenvalue();
  test_symmetric_and_exact_inverse_round_trip();
  test_physical_gradient_inverts_a_clean_low_mode();
  test_legacy_configuration_is_the_periodic_2d_grid();
  test_bad_configurations_are_refused();
  CHECK_REPORT();
}
