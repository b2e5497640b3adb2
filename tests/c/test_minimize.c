/* CPhysLeastSquaresMinimize on P(x) = A x with a fixed 5 x 3 matrix. */
#include <float.h>
#include <string.h>

#include "check.h"
#include "cphys/environment.h"
#include "cphys/minimize.h"

enum { M = 5, N = 3 };

static const double A[M][N] = {
    {2.0, -1.0, 0.5}, {1.0, 3.0, -2.0}, {0.0, 1.5, 1.0}, {-1.0, 0.5, 4.0}, {3.0, 0.0, -1.0}};
static const double TARGET[M] = {1.0, -2.0, 0.5, 3.0, -1.5};

/* Callback context: counts calls, and can fail or emit NaN from a given call on. */
typedef struct {
  int calls;
  int fail_from_call;      /* 0: never */
  int nonfinite_from_call; /* 0: never */
} Matrix;

static int matrix_forward(void *context, const double *x, double *y) {
  Matrix *matrix = context;
  matrix->calls++;
  if (matrix->fail_from_call && matrix->calls >= matrix->fail_from_call)
    return CPhysSetError(CPHYS_ERROR_UNSUPPORTED, __func__, "test callback refuses call %d", matrix->calls);
  for (int i = 0; i < M; i++) {
    y[i] = 0.0;
    for (int j = 0; j < N; j++) y[i] += A[i][j] * x[j];
  }
  if (matrix->nonfinite_from_call && matrix->calls >= matrix->nonfinite_from_call) y[2] = NAN;
  return 0;
}

static int matrix_adjoint(void *context, const double *x, const double *dy, double *dx) {
  (void)context, (void)x;
  for (int j = 0; j < N; j++) {
    dx[j] = 0.0;
    for (int i = 0; i < M; i++) dx[j] += A[i][j] * dy[i];
  }
  return 0;
}

static double objective(const double *x) {
  double f = 0.0;
  for (int i = 0; i < M; i++) {
    double r = -TARGET[i];
    for (int j = 0; j < N; j++) r += A[i][j] * x[j];
    f += 0.5 * r * r;
  }
  return f;
}

/* Solves the normal equations A^T A x = A^T b by Gaussian elimination with partial pivoting. */
static void normal_equations_solution(double x[N]) {
  double g[N][N + 1];
  for (int r = 0; r < N; r++) {
    for (int c = 0; c < N; c++) {
      g[r][c] = 0.0;
      for (int i = 0; i < M; i++) g[r][c] += A[i][r] * A[i][c];
    }
    g[r][N] = 0.0;
    for (int i = 0; i < M; i++) g[r][N] += A[i][r] * TARGET[i];
  }
  for (int col = 0; col < N; col++) {
    int pivot = col;
    for (int r = col + 1; r < N; r++)
      if (fabs(g[r][col]) > fabs(g[pivot][col])) pivot = r;
    for (int c = 0; c <= N; c++) {
      double t = g[col][c];
      g[col][c] = g[pivot][c], g[pivot][c] = t;
    }
    for (int r = col + 1; r < N; r++) {
      double factor = g[r][col] / g[col][col];
      for (int c = col; c <= N; c++) g[r][c] -= factor * g[col][c];
    }
  }
  for (int r = N - 1; r >= 0; r--) {
    double s = g[r][N];
    for (int c = r + 1; c < N; c++) s -= g[r][c] * x[c];
    x[r] = s / g[r][r];
  }
}

static CPhysLeastSquaresConfig config_with(int max_iterations, double gradient_atol) {
  CPhysLeastSquaresConfig config = {max_iterations, gradient_atol, 0.0, NULL, NULL, NULL};
  return config;
}

static void test_lmvm_reaches_normal_equations_solution(void) {
  double expected[N], x[N] = {0.0, 0.0, 0.0};
  normal_equations_solution(expected);
  Matrix matrix = {0, 0, 0};
  CPhysLeastSquaresConfig config = config_with(100, 1e-12);
  CPhysSolveInfo info;
  CHECK_OK(
      CPhysLeastSquaresMinimize(&config, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, &info));
  CHECK(max_abs_diff(x, expected, N) < 1e-9, "x differs from the normal-equations solution by %g",
        max_abs_diff(x, expected, N));
  CHECK(info.converged == 1, "converged = %d, reason %s", info.converged, info.reason_text);
  CHECK(strcmp(info.reason_text, "CONVERGED_GATOL") == 0, "reason_text = %s", info.reason_text);
  CHECK(info.residual_norm <= 1e-12, "final gradient norm %g", info.residual_norm);
  CHECK(info.iterations >= 1 && info.iterations < 100, "iterations = %d", info.iterations);
}

static void test_iteration_limit_is_not_an_error_and_objective_decreases(void) {
  double previous = INFINITY;
  for (int iterations = 1; iterations <= 3; iterations++) {
    double x[N] = {1.0, -1.0, 2.0};
    Matrix matrix = {0, 0, 0};
    CPhysLeastSquaresConfig config = config_with(iterations, 0.0);
    CPhysSolveInfo info;
    CHECK_OK(
        CPhysLeastSquaresMinimize(&config, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, &info));
    CHECK(info.iterations == iterations, "iterations = %d, expected %d", info.iterations, iterations);
    CHECK(info.converged == 0, "converged after %d iterations with tolerances off", iterations);
    CHECK(info.reason < 0 && strcmp(info.reason_text, "DIVERGED_MAXITS") == 0, "reason %d = %s", info.reason,
          info.reason_text);
    double f = objective(x);
    CHECK(f < previous, "objective %g after %d iterations is not below %g", f, iterations, previous);
    previous = f;
  }
}

static void test_bounds_are_respected(void) {
  double unconstrained[N];
  normal_equations_solution(unconstrained);
  double lower[N] = {-10.0, -10.0, -10.0}, upper[N] = {10.0, 10.0, 10.0};
  upper[0] = unconstrained[0] - 0.25; /* makes the first bound active */
  lower[2] = unconstrained[2] + 0.1;  /* and the third */
  double x[N] = {0.0, 0.0, 0.0};
  Matrix matrix = {0, 0, 0};
  CPhysLeastSquaresConfig config = config_with(200, 1e-10);
  config.lower = lower, config.upper = upper;
  CPhysSolveInfo info;
  CHECK_OK(
      CPhysLeastSquaresMinimize(&config, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, &info));
  for (int j = 0; j < N; j++)
    CHECK(x[j] >= lower[j] && x[j] <= upper[j], "x[%d] = %g outside [%g, %g]", j, x[j], lower[j], upper[j]);
  CHECK(fabs(x[0] - upper[0]) < 1e-9 && fabs(x[2] - lower[2]) < 1e-9, "bounds not active: x = %g %g %g", x[0],
        x[1], x[2]);
  /* With x[0] and x[2] fixed the optimum in x[1] is a 1-D least-squares fit. */
  double numerator = 0.0, denominator = 0.0;
  for (int i = 0; i < M; i++) {
    numerator += A[i][1] * (TARGET[i] - A[i][0] * x[0] - A[i][2] * x[2]);
    denominator += A[i][1] * A[i][1];
  }
  CHECK(fabs(x[1] - numerator / denominator) < 1e-8, "free coordinate %g, expected %g", x[1],
        numerator / denominator);
  CHECK(info.converged == 1, "bounded solve did not converge: %s", info.reason_text);

  /* One-sided bounds: only a lower bound. */
  double x_lower_only[N] = {0.0, 0.0, 0.0};
  config.upper = NULL;
  CHECK_OK(CPhysLeastSquaresMinimize(&config, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET,
                                     x_lower_only, &info));
  CHECK(x_lower_only[2] >= lower[2], "x[2] = %g below its lower bound %g", x_lower_only[2], lower[2]);
}

static void test_callback_error_propagates_with_its_code(void) {
  double x[N] = {0.5, 0.5, 0.5}, start[N] = {0.5, 0.5, 0.5};
  Matrix matrix = {0, 4, 0};
  CPhysLeastSquaresConfig config = config_with(50, 0.0);
  CHECK_FAILS(
      CPhysLeastSquaresMinimize(&config, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, NULL),
      CPHYS_ERROR_UNSUPPORTED);
  CHECK(strstr(CPhysGetLastErrorMessage(), "refuses call 4") != NULL, "message lost: %s",
        CPhysGetLastErrorMessage());
  CHECK(max_abs_diff(x, start, N) == 0.0, "x changed on failure");
}

static void test_nonfinite_objective_is_reported(void) {
  for (int from_call = 1; from_call <= 3; from_call += 2) {
    double x[N] = {0.5, 0.5, 0.5};
    Matrix matrix = {0, 0, from_call};
    CPhysLeastSquaresConfig config = config_with(50, 0.0);
    CHECK_FAILS(
        CPhysLeastSquaresMinimize(&config, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, NULL),
        CPHYS_ERROR_NONFINITE);
  }
  double x[N] = {NAN, 0.0, 0.0};
  Matrix matrix = {0, 0, 0};
  CPhysLeastSquaresConfig config = config_with(5, 0.0);
  CHECK_FAILS(
      CPhysLeastSquaresMinimize(&config, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, NULL),
      CPHYS_ERROR_NONFINITE);
}

static void test_invalid_arguments_are_refused(void) {
  double x[N] = {0.0, 0.0, 0.0};
  Matrix matrix = {0, 0, 0};
  CPhysLeastSquaresConfig config = config_with(10, 0.0);
  CHECK_FAILS(CPhysLeastSquaresMinimize(NULL, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, NULL),
              CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(
      CPhysLeastSquaresMinimize(&config, 0, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, NULL),
      CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysLeastSquaresMinimize(&config, N, M, NULL, matrix_adjoint, &matrix, TARGET, x, NULL),
              CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(
      CPhysLeastSquaresMinimize(&config, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, NULL, NULL),
      CPHYS_ERROR_ARGUMENT);
  CPhysLeastSquaresConfig bad = config_with(0, 0.0);
  CHECK_FAILS(CPhysLeastSquaresMinimize(&bad, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, NULL),
              CPHYS_ERROR_ARGUMENT);
  bad = config_with(10, -1.0);
  CHECK_FAILS(CPhysLeastSquaresMinimize(&bad, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, NULL),
              CPHYS_ERROR_ARGUMENT);
  double lower[N] = {1.0, 0.0, 0.0}, upper[N] = {0.0, 1.0, 1.0};
  bad = config_with(10, 0.0);
  bad.lower = lower, bad.upper = upper;
  CHECK_FAILS(CPhysLeastSquaresMinimize(&bad, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, NULL),
              CPHYS_ERROR_ARGUMENT);
  /* Found by fuzz_minimize: an upper bound of -inf, then one of -DBL_MAX, was accepted
   * and TAO returned x[0] = -4.5e307 = -DBL_MAX / 4 (its "no bound", which an absent
   * lower bound is passed as), outside the upper bound. */
  const double below_tao_infinity[2] = {-INFINITY, -DBL_MAX};
  for (int k = 0; k < 2; k++) {
    double upper_bound[N] = {below_tao_infinity[k], 1.0, 1.0};
    bad = config_with(10, 0.0);
    bad.upper = upper_bound;
    CHECK_FAILS(
        CPhysLeastSquaresMinimize(&bad, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, NULL),
        CPHYS_ERROR_ARGUMENT);
  }
}

static int silent_forward(void *context, const double *x, double *y) {
  (void)context, (void)x, (void)y;
  return CPHYS_ERROR_INTERNAL; /* a bare code, no message */
}

/* Found by fuzz_minimize: a callback failing without a message of its own left the
 * thread's message empty (or an earlier failure's); the code must still come back. */
static void test_callback_failure_without_message_gets_one(void) {
  double x[N] = {0.0, 0.0, 0.0};
  CPhysLeastSquaresConfig config = config_with(5, 0.0);
  CHECK_FAILS(CPhysLeastSquaresMinimize(&config, N, M, silent_forward, matrix_adjoint, NULL, TARGET, x, NULL),
              CPHYS_ERROR_INTERNAL);
  CHECK(strstr(CPhysGetLastErrorMessage(), "forward callback") != NULL, "message: %s",
        CPhysGetLastErrorMessage());
  CPhysSetError(CPHYS_ERROR_ARGUMENT, "earlier_call", "an earlier failure");
  const int code =
      CPhysLeastSquaresMinimize(&config, N, M, silent_forward, matrix_adjoint, NULL, TARGET, x, NULL);
  CHECK(code == CPHYS_ERROR_INTERNAL && strstr(CPhysGetLastErrorMessage(), "forward callback") != NULL,
        "%s with the earlier message kept: %s", CPhysErrorName(code), CPhysGetLastErrorMessage());
}

static void test_options_prefix_reaches_tao(void) {
  CHECK_OK(CPhysSetOptions("-test_minimize_tao_max_it 2"));
  double x[N] = {0.0, 0.0, 0.0};
  Matrix matrix = {0, 0, 0};
  CPhysLeastSquaresConfig config = config_with(50, 0.0);
  config.options_prefix = "test_minimize_";
  CPhysSolveInfo info;
  CHECK_OK(
      CPhysLeastSquaresMinimize(&config, N, M, matrix_forward, matrix_adjoint, &matrix, TARGET, x, &info));
  CHECK(info.iterations == 2, "the option -test_minimize_tao_max_it 2 gave %d iterations", info.iterations);
  CHECK_OK(CPhysClearOptions());
}

int main(void) {
  test_lmvm_reaches_normal_equations_solution();
  test_iteration_limit_is_not_an_error_and_objective_decreases();
  test_bounds_are_respected();
  test_callback_error_propagates_with_its_code();
  test_nonfinite_objective_is_reported();
  test_invalid_arguments_are_refused();
  test_callback_failure_without_message_gets_one();
  test_options_prefix_reaches_tao();
  /* A solve after all those failures still works: no PETSc state was left behind. */
  test_lmvm_reaches_normal_equations_solution();
  CHECK_REPORT();
}
