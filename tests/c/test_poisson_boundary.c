/* Prescribed Dirichlet values (cphys/poisson_boundary.h): a discretely harmonic
 * function's boundary values reproduce it through the spectral solve, the lift's
 * adjoint is its transpose, only Dirichlet faces are read, errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cphys/poisson_boundary.h"
#include "cphys/poisson_spectral.h"

/* x y z + x^2 + y^2 - 2 z^2 - y: zero Laplacian, and the 7-point stencil is exact on it. */
static double harmonic(double z, double y, double x) {
  return x * y * z + x * x + y * y - 2.0 * z * z - y;
}

static void test_harmonic_values_reproduce_the_function(void) {
  CPhysPoissonSpectralConfig c = CPhysPoissonSpectralDefaultConfig();
  c.dims = 3;
  const ptrdiff_t n[3] = {4, 5, 6};
  const double h[3] = {0.5, 1.5, 0.8};
  for (int a = 0; a < 3; a++)
    c.shape[a] = n[a], c.spacing[a] = h[a], c.boundary[a] = CPHYS_BOUNDARY_DIRICHLET;
  const ptrdiff_t size = n[0] * n[1] * n[2], ring = (n[0] + 2) * (n[1] + 2) * (n[2] + 2);
  double *values = malloc(sizeof(double) * ring), *rhs = calloc(size, sizeof(double));
  double *y = malloc(sizeof(double) * size);
  for (ptrdiff_t k = 0; k < n[0] + 2; k++)
    for (ptrdiff_t j = 0; j < n[1] + 2; j++)
      for (ptrdiff_t i = 0; i < n[2] + 2; i++)
        values[(k * (n[1] + 2) + j) * (n[2] + 2) + i] =
            harmonic(h[0] * (k - 1), h[1] * (j - 1), h[2] * (i - 1));
  CPhysPoissonSpectral p = NULL;
  CHECK_OK(CPhysPoissonSpectralCreate(&c, &p));
  CHECK_OK(CPhysPoissonBoundaryLift(&c, 1, values, rhs, rhs));
  CHECK_OK(CPhysPoissonSpectralSolve(p, 1, rhs, y, NULL));
  double error = 0.0;
  for (ptrdiff_t k = 0; k < n[0]; k++)
    for (ptrdiff_t j = 0; j < n[1]; j++)
      for (ptrdiff_t i = 0; i < n[2]; i++)
        error = fmax(error, fabs(y[(k * n[1] + j) * n[2] + i] - harmonic(h[0] * k, h[1] * j, h[2] * i)));
  CHECK(error < 1e-11, "max error %g", error);
  CPhysPoissonSpectralDestroy(&p);
  free(values), free(rhs), free(y);
}

/* <lift(g) - x, r> = <g, adjoint(r)>, and entries off the Dirichlet faces are neither read nor given a
 * gradient. */
static void test_adjoint_is_the_transpose_and_only_dirichlet_faces_count(void) {
  CPhysPoissonSpectralConfig c = CPhysPoissonSpectralDefaultConfig();
  c.shape[0] = 5, c.shape[1] = 4, c.spacing[0] = 0.5, c.spacing[1] = 2.0;
  c.boundary[0] = CPHYS_BOUNDARY_PERIODIC, c.boundary[1] = CPHYS_BOUNDARY_DIRICHLET;
  enum { SIZE = 20, RING = 42, BATCH = 2 };
  double g[BATCH * RING], r[BATCH * SIZE], x[BATCH * SIZE], lifted[BATCH * SIZE], dg[BATCH * RING];
  unsigned long long state = 7;
  for (int k = 0; k < BATCH * RING; k++) g[k] = test_random(&state);
  for (int k = 0; k < BATCH * SIZE; k++) r[k] = test_random(&state), x[k] = test_random(&state);
  CHECK_OK(CPhysPoissonBoundaryLift(&c, BATCH, g, x, lifted));
  CHECK_OK(CPhysPoissonBoundaryLiftAdjoint(&c, BATCH, r, dg));
  double left = 0.0, right = 0.0;
  for (int k = 0; k < BATCH * SIZE; k++) left += (lifted[k] - x[k]) * r[k];
  for (int k = 0; k < BATCH * RING; k++) right += g[k] * dg[k];
  CHECK(fabs(left - right) < 1e-12 * fabs(left), "<B g, r> %.17g vs <g, B^T r> %.17g", left, right);
  int nonzero = 0;
  for (int s = 0; s < BATCH; s++)
    for (int j = 0; j < 7; j++)
      for (int i = 0; i < 6; i++) {
        const int on_face = (i == 0 || i == 5) && j >= 1 && j <= 5;
        nonzero += dg[s * RING + j * 6 + i] != 0.0;
        CHECK(on_face || dg[s * RING + j * 6 + i] == 0.0, "gradient at ring node (%d, %d)", j, i);
        if (!on_face) g[s * RING + j * 6 + i] = NAN; /* not read */
      }
  CHECK(nonzero == BATCH * 10, "%d nonzero gradients", nonzero);
  double again[BATCH * SIZE];
  CHECK_OK(CPhysPoissonBoundaryLift(&c, BATCH, g, x, again));
  CHECK(memcmp(again, lifted, sizeof again) == 0, "entries off the Dirichlet faces changed the lift");
  /* rhs may be x */
  memcpy(again, x, sizeof again);
  CHECK_OK(CPhysPoissonBoundaryLift(&c, BATCH, g, again, again));
  CHECK(memcmp(again, lifted, sizeof again) == 0, "in-place lift differs");
}

static void test_errors_are_returned_not_raised(void) {
  CPhysPoissonSpectralConfig c = CPhysPoissonSpectralDefaultConfig();
  c.shape[0] = 2, c.shape[1] = 3;
  double values[20] = {0}, x[6] = {0}, rhs[6];
  values[1] = INFINITY; /* ring node (0, 1): the y- face */
  CHECK_FAILS(CPhysPoissonBoundaryLift(&c, 1, values, x, rhs), CPHYS_ERROR_NONFINITE);
  CHECK(strstr(CPhysGetLastErrorMessage(), "values[1] (sample 0, side y-) is not finite") != NULL,
        "message: %s", CPhysGetLastErrorMessage());
  CHECK_FAILS(CPhysPoissonBoundaryLift(NULL, 1, values, x, rhs), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonBoundaryLift(&c, 1, values, NULL, rhs), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonBoundaryLift(&c, -1, values, x, rhs), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonBoundaryLiftAdjoint(&c, 1, x, NULL), CPHYS_ERROR_ARGUMENT);
  c.spacing[1] = 0.0;
  CHECK_FAILS(CPhysPoissonBoundaryLiftAdjoint(&c, 1, x, values), CPHYS_ERROR_ARGUMENT);
  c.spacing[1] = 1.0;
  CHECK_OK(CPhysPoissonBoundaryLift(&c, 0, NULL, NULL, NULL));
}

int main(void) {
  test_harmonic_values_reproduce_the_function();
  test_adjoint_is_the_transpose_and_only_dirichlet_faces_count();
  test_errors_are_returned_not_raised();
  CHECK_REPORT();
}
