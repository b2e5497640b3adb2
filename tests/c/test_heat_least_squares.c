/* The heat object as a least-squares problem (the `lbfgs` mode): the callbacks
 * are the forward and adjoint maps, and quasi-Newton steps on it approach the
 * target more closely the more of them are taken. */
#include <string.h>

#include "check.h"
#include "cphys/heat.h"

enum { NY = 12, NX = 10, N = NY * NX };

static double *random_field(size_t n, unsigned long long seed) {
  double *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = test_random(&seed);
  return v;
}

static CPhysHeat create(double nu_t) {
  CPhysHeatConfig config = {
      {NY, NX}, {1.0, 0.8}, nu_t, 0.0, 0.0, 2, {CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_PERIODIC}, 0.0};
  CPhysHeat heat = NULL;
  CHECK_OK(CPhysHeatCreate(&config, &heat));
  return heat;
}

static void test_callbacks_are_forward_and_adjoint_of_one_sample(void) {
  CPhysHeat heat = create(1.5);
  CPhysLeastSquaresProblem problem;
  CHECK_OK(CPhysHeatGetLeastSquaresProblem(heat, &problem));
  CHECK(problem.n == N && problem.m == N, "sizes n = %td, m = %td, expected %d", problem.n, problem.m, N);
  CHECK(problem.context == heat, "the problem does not borrow the object");
  double *x = random_field(N, 1), *dy = random_field(N, 2);
  double by_callback[N], direct[N];
  CHECK_OK(problem.forward(problem.context, x, by_callback));
  CHECK_OK(CPhysHeatForward(heat, 1, x, direct));
  CHECK(max_abs_diff(by_callback, direct, N) == 0.0, "forward callback differs by %g",
        max_abs_diff(by_callback, direct, N));
  CHECK_OK(problem.adjoint(problem.context, x, dy, by_callback));
  CHECK_OK(CPhysHeatAdjoint(heat, 1, dy, direct));
  CHECK(max_abs_diff(by_callback, direct, N) == 0.0, "adjoint callback differs by %g",
        max_abs_diff(by_callback, direct, N));
  x[3] = NAN;
  CHECK_FAILS(problem.forward(problem.context, x, by_callback), CPHYS_ERROR_NONFINITE);
  free(x), free(dy);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

/* 1/2 ||P(x) - target||^2 of one sample. */
static double objective(CPhysHeat heat, const double *x, const double *target) {
  double y[N], f = 0.0;
  CHECK_OK(CPhysHeatForward(heat, 1, x, y));
  for (int i = 0; i < N; i++) f += 0.5 * (y[i] - target[i]) * (y[i] - target[i]);
  return f;
}

static void test_quasi_newton_steps_lower_the_objective(void) {
  enum { B = 2 };
  CPhysHeat heat = create(1.0);
  CPhysLeastSquaresProblem problem;
  CHECK_OK(CPhysHeatGetLeastSquaresProblem(heat, &problem));
  double *x = random_field(B * N, 3), *x_star = random_field(B * N, 4);
  double y[B * N], y_star[B * N], g[B * N], dx[B * N], moved[N];
  CHECK_OK(CPhysHeatForward(heat, B, x, y));
  CHECK_OK(CPhysHeatForward(heat, B, x_star, y_star));
  for (int i = 0; i < B * N; i++) g[i] = y[i] - y_star[i]; /* l2 loss: y - g is the target y* */
  double previous[B] = {0.0, 0.0};
  for (int b = 0; b < B; b++) previous[b] = objective(heat, x + b * N, y_star + b * N);
  const int iteration_counts[] = {1, 4, 32};
  for (int c = 0; c < 3; c++) {
    CPhysLeastSquaresConfig config = {iteration_counts[c], 0.0, 0.0, NULL, NULL, "physgrad_heat_lbfgs_"};
    CPhysSolveInfo info[B];
    CHECK_OK(CPhysQuasiNewtonPhysicalGradient(&config, &problem, B, x, y, g, 1.0, dx, info));
    for (int b = 0; b < B; b++) {
      for (int i = 0; i < N; i++) moved[i] = x[b * N + i] - dx[b * N + i];
      const double f = objective(heat, moved, y_star + b * N);
      CHECK(f < previous[b], "sample %d: objective %g after %d iterations is not below %g", b, f,
            iteration_counts[c], previous[b]);
      CHECK(info[b].iterations >= 1 && info[b].iterations <= iteration_counts[c], "sample %d: %d iterations",
            b, info[b].iterations);
      previous[b] = f;
    }
  }
  for (int b = 0; b < B; b++)
    CHECK(previous[b] < 1e-2 * objective(heat, x + b * N, y_star + b * N),
          "sample %d: 32 iterations left the objective at %g", b, previous[b]);
  free(x), free(x_star);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

static void test_invalid_arguments_are_refused(void) {
  CPhysLeastSquaresProblem problem;
  CHECK_FAILS(CPhysHeatGetLeastSquaresProblem(NULL, &problem), CPHYS_ERROR_ARGUMENT);
  CPhysHeat heat = create(1.0);
  CHECK_FAILS(CPhysHeatGetLeastSquaresProblem(heat, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

int main(void) {
  test_callbacks_are_forward_and_adjoint_of_one_sample();
  test_quasi_newton_steps_lower_the_objective();
  test_invalid_arguments_are_refused();
  CHECK_REPORT();
}
