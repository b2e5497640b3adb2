/* Poisson's equation and its physical gradient through the C API alone
 * (cphys/poisson.h), checked against the grid's discrete eigenfunctions.
 *
 *   cmake --install build --prefix $HOME/.local            # physgrad's build
 *   cmake -S examples/c_api -B c-api-build -DCMAKE_PREFIX_PATH=$HOME/.local
 *   cmake --build c-api-build && c-api-build/c_api_example
 *
 * On ny x nx interior nodes with zero Dirichlet boundary, phi_pq[j,i] =
 * sin(pi p (j+1)/(ny+1)) sin(pi q (i+1)/(nx+1)) is an exact eigenfunction of the
 * 5-point Laplacian L with eigenvalue
 *   lambda_pq = -4/dy^2 sin^2(pi p / (2(ny+1))) - 4/dx^2 sin^2(pi q / (2(nx+1))).
 * So the forward map y = L^-1 x gives phi/lambda, and the physical gradient of
 * the loss 1/2 |y - y*|^2 (g = y - y*) is dx = L g = x - x*: one step x - dx
 * lands exactly on the input x* whose output is the target y*. The adjoint
 * gradient, L^-1 g, is that step shrunk by 1/lambda per frequency.
 * Exit status 0 when every check passes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cphys/poisson.h"

#define CHECK(call)                                                                                     \
  do {                                                                                                  \
    int code_ = (call);                                                                                 \
    if (code_) {                                                                                        \
      fprintf(stderr, "%s failed: %s: %s\n", #call, CPhysErrorName(code_), CPhysGetLastErrorMessage()); \
      return 1;                                                                                         \
    }                                                                                                   \
  } while (0)

enum { NY = 24, NX = 32, N = NY * NX };
static const double PI = 3.14159265358979323846;
static const double DY = 0.5, DX = 0.25; /* node spacing, length units */

static double eigenvalue(int p, int q) {
  const double sy = sin(PI * p / (2.0 * (NY + 1))), sx = sin(PI * q / (2.0 * (NX + 1)));
  return -4.0 * sy * sy / (DY * DY) - 4.0 * sx * sx / (DX * DX);
}

/* f += scale * phi_pq; f: [NY, NX] */
static void add_eigenfunction(int p, int q, double scale, double *f) {
  for (int j = 0; j < NY; ++j)
    for (int i = 0; i < NX; ++i)
      f[j * NX + i] += scale * sin(PI * p * (j + 1) / (NY + 1)) * sin(PI * q * (i + 1) / (NX + 1));
}

/* max |f|; f: [N] */
static double max_abs(const double *f) {
  double size = 0;
  for (int k = 0; k < N; ++k) size = fmax(size, fabs(f[k]));
  return size;
}

/* max |a - b| / max |b|; a, b: [N] */
static double relative_error(const double *a, const double *b) {
  double difference = 0, size = 0;
  for (int k = 0; k < N; ++k) {
    difference = fmax(difference, fabs(a[k] - b[k]));
    size = fmax(size, fabs(b[k]));
  }
  return difference / size;
}

int main(void) {
  static double x[N], y[N], x_star[N], y_star[N], g[N], dx[N], dx_adjoint[N], expected[N];
  const double tolerance = 1e-8;
  const double lambda_x = eigenvalue(1, 2), lambda_star = eigenvalue(3, 1);

  CPhysPoissonConfig config = CPhysPoissonDefaultConfig();
  config.shape[0] = NY;
  config.shape[1] = NX;
  config.spacing[0] = DY;
  config.spacing[1] = DX;
  CPhysPoisson poisson = NULL;
  CHECK(CPhysPoissonCreate(&config, &poisson));
  printf("cphys %s: Poisson on %d x %d interior nodes, spacing (%g, %g)\n", CPhysVersion(), NY, NX, DY, DX);

  /* Forward: the current input x = phi_12 and the target x* = phi_31, through y = L^-1 x. */
  add_eigenfunction(1, 2, 1.0, x);
  add_eigenfunction(3, 1, 1.0, x_star);
  CPhysSolveInfo info;
  CHECK(CPhysPoissonSolve(poisson, 1, x, y, &info));
  CHECK(CPhysPoissonSolve(poisson, 1, x_star, y_star, NULL));
  add_eigenfunction(1, 2, 1.0 / lambda_x, expected);
  const double forward_error = relative_error(y, expected);
  printf("forward:  %d CG iterations (%s), |y - phi/lambda| / |phi/lambda| = %.2e\n", info.iterations,
         info.reason_text, forward_error);

  /* Backward of L = 1/2 |y - y*|^2: g = y - y*. */
  for (int k = 0; k < N; ++k) g[k] = y[k] - y_star[k];
  CHECK(CPhysPoissonPhysicalGradient(poisson, 1, 1.0, g, dx));
  for (int k = 0; k < N; ++k) expected[k] = x[k] - dx[k];
  const double physical_error = relative_error(expected, x_star);
  printf("physical: x - dx reaches x* (the input of the target), relative error %.2e\n", physical_error);

  CHECK(CPhysPoissonAdjoint(poisson, 1, g, dx_adjoint, &info));
  for (int k = 0; k < N; ++k) expected[k] = 0;
  add_eigenfunction(1, 2, 1.0 / (lambda_x * lambda_x), expected);
  add_eigenfunction(3, 1, -1.0 / (lambda_star * lambda_star), expected);
  const double adjoint_error = relative_error(dx_adjoint, expected);
  printf(
      "adjoint:  dx = L^-1 g, %d CG iterations, relative error %.2e; max|adjoint| / max|physical| = %.2e\n",
      info.iterations, adjoint_error, max_abs(dx_adjoint) / max_abs(dx));

  CHECK(CPhysPoissonDestroy(&poisson));
  const int ok = forward_error < tolerance && physical_error < tolerance && adjoint_error < tolerance;
  printf("%s (tolerance %.0e)\n", ok ? "all checks passed" : "CHECK FAILED", tolerance);
  return ok ? 0 : 1;
}
