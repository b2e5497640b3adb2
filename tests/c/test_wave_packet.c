/* Wave packet: forward against the formula, adjoint against finite differences,
 * Gauss-Newton convergence (one step at a time and solved), the bounded L-BFGS-B fit, error paths. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cphys/wave_packet.h"

static double formula(double xi, double xi0, double amplitude) {
  return amplitude * sin(4.0 * xi) *
         exp(-(xi - xi0) * (xi - xi0) / (2.0 * 400.0)); /* sigma = 20, paper B.1 */
}

static double objective(CPhysWavePacket packet, const double *params, const double *target, ptrdiff_t n) {
  double *y = malloc(sizeof(double) * n), sum = 0.0;
  CHECK_OK(CPhysWavePacketForward(packet, 1, params, y));
  for (ptrdiff_t j = 0; j < n; j++) sum += (y[j] - target[j]) * (y[j] - target[j]);
  free(y);
  return 0.5 * sum;
}

static void test_forward_matches_formula_with_paper_defaults(void) {
  CPhysWavePacketConfig config = CPhysWavePacketDefaultConfig();
  CHECK(config.n_samples == 256 && config.frequency == 4.0 && config.sigma == 20.0, "defaults %td %g %g",
        config.n_samples, config.frequency, config.sigma);
  CPhysWavePacket packet;
  CHECK_OK(CPhysWavePacketCreate(&config, &packet));
  const double params[4] = {60.5, 1.5, 200.25, 3.75};
  double y[2 * 256];
  CHECK_OK(CPhysWavePacketForward(packet, 2, params, y));
  double error = 0.0;
  for (int b = 0; b < 2; b++)
    for (int j = 0; j < 256; j++)
      error = fmax(error, fabs(y[b * 256 + j] - formula(j, params[2 * b], params[2 * b + 1])));
  CHECK(error < 1e-14, "forward differs from the formula by %g", error);
  CPhysLeastSquaresProblem problem;
  CHECK_OK(CPhysWavePacketGetLeastSquaresProblem(packet, &problem));
  double y_problem[256];
  CHECK(problem.n == 2 && problem.m == 256, "problem sizes %td, %td", problem.n, problem.m);
  CHECK_OK(problem.forward(problem.context, params + 2, y_problem));
  CHECK(max_abs_diff(y_problem, y + 256, 256) == 0.0, "the problem's forward differs from Forward");
  CPhysWavePacketDestroy(&packet);
  CHECK(packet == NULL, "Destroy must set the handle to NULL");
  CHECK_OK(CPhysWavePacketDestroy(&packet));
}

static void test_adjoint_matches_central_differences(void) {
  CPhysWavePacket packet;
  CHECK_OK(CPhysWavePacketCreate(&(CPhysWavePacketConfig){100, 1.3, 7.0}, &packet));
  const double params[6] = {30.0, 2.0, 71.3, -1.2, 5.0, 0.7};
  double dy[300], dparams[6], y_plus[100], y_minus[100];
  unsigned long long seed = 42;
  for (int k = 0; k < 300; k++) dy[k] = test_random(&seed);
  CHECK_OK(CPhysWavePacketAdjoint(packet, 3, params, dy, dparams));
  for (int b = 0; b < 3; b++) {
    for (int k = 0; k < 2; k++) {
      double p_plus[2] = {params[2 * b], params[2 * b + 1]}, p_minus[2] = {params[2 * b], params[2 * b + 1]};
      const double h = 1e-6;
      p_plus[k] += h, p_minus[k] -= h;
      CHECK_OK(CPhysWavePacketForward(packet, 1, p_plus, y_plus));
      CHECK_OK(CPhysWavePacketForward(packet, 1, p_minus, y_minus));
      double difference = 0.0;
      for (int j = 0; j < 100; j++) difference += dy[b * 100 + j] * (y_plus[j] - y_minus[j]) / (2.0 * h);
      CHECK(fabs(dparams[2 * b + k] - difference) <= 1e-7 * fmax(1.0, fabs(difference)),
            "example %d parameter %d: adjoint %.12g, finite difference %.12g", b, k, dparams[2 * b + k],
            difference);
    }
  }
  CPhysWavePacketDestroy(&packet);
}

static void test_gauss_newton_converges_from_near_the_solution(void) {
  const CPhysWavePacketConfig config = CPhysWavePacketDefaultConfig();
  const ptrdiff_t n = config.n_samples;
  CPhysWavePacket packet;
  CHECK_OK(CPhysWavePacketCreate(&config, &packet));
  const double truth[4] = {100.3, 2.7, 180.0, 1.2};
  double params[4] = {106.0, 2.1, 171.0, 1.9}, target[512], dparams[4];
  CHECK_OK(CPhysWavePacketForward(packet, 2, truth, target));
  CPhysSolveInfo info[2];
  double relative[2] = {1.0, 1.0};
  int steps = 0;
  for (; steps < 8 && fmax(relative[0], relative[1]) > 1e-20; steps++) {
    CHECK_OK(CPhysWavePacketGaussNewton(packet, NULL, 2, params, target, dparams, info));
    for (int b = 0; b < 2; b++) {
      CHECK(info[b].converged, "step %d example %d: %s", steps, b, info[b].reason_text);
      params[2 * b] -= dparams[2 * b], params[2 * b + 1] -= dparams[2 * b + 1];
      relative[b] = objective(packet, params + 2 * b, target + b * n, n) /
                    objective(packet, (double[2]){0.0, 0.0}, target + b * n, n);
    }
  }
  CHECK(fmax(relative[0], relative[1]) <= 1e-20, "relative objective %g, %g after %d steps", relative[0],
        relative[1], steps);
  CHECK(steps <= 6, "Gauss-Newton needed %d steps", steps);
  CHECK(max_abs_diff(params, truth, 4) < 1e-8, "parameters off the truth by %g",
        max_abs_diff(params, truth, 4));
  /* At the solution J^T r = 0 exactly: no step, reported as stationary. */
  CHECK_OK(CPhysWavePacketGaussNewton(packet, NULL, 2, truth, target, dparams, info));
  CHECK(max_abs(dparams, 4) == 0.0 && info[0].reason == 2, "step at the solution: %g (%s)",
        max_abs(dparams, 4), info[0].reason_text);
  /* dparams may alias params; A = 0 leaves xi0 without influence but must stay finite. */
  double aliased[2] = {120.0, 0.0};
  CHECK_OK(CPhysWavePacketGaussNewton(packet, NULL, 1, aliased, target, aliased, NULL));
  CHECK(isfinite(aliased[0]) && isfinite(aliased[1]), "step from A = 0 is not finite");
  CPhysWavePacketDestroy(&packet);
}

static void test_gauss_newton_solve_reaches_the_solution_in_one_call(void) {
  const CPhysWavePacketConfig config = CPhysWavePacketDefaultConfig();
  const ptrdiff_t n = config.n_samples;
  CPhysWavePacket packet;
  CHECK_OK(CPhysWavePacketCreate(&config, &packet));
  const double truth[4] = {100.3, 2.7, 180.0, 1.2};
  double params[4] = {106.0, 2.1, 171.0, 1.9}, target[512], dparams[4];
  CHECK_OK(CPhysWavePacketForward(packet, 2, truth, target));
  CPhysSolveInfo info[2];
  CHECK_OK(CPhysWavePacketGaussNewtonSolve(packet, NULL, 2, params, target, dparams, info));
  for (int b = 0; b < 2; b++) {
    CHECK(info[b].converged && info[b].iterations >= 2 && info[b].iterations <= 10,
          "example %d: %s after %d steps", b, info[b].reason_text, info[b].iterations);
    CHECK(info[b].residual_norm < 1e-10, "example %d: residual %g", b, info[b].residual_norm);
    for (int k = 0; k < 2; k++)
      CHECK(fabs(params[2 * b + k] - dparams[2 * b + k] - truth[2 * b + k]) < 1e-9,
            "example %d parameter %d: reached %.15g, truth %.15g", b, k,
            params[2 * b + k] - dparams[2 * b + k], truth[2 * b + k]);
  }
  /* Noise: converges to the least-squares minimum, where one more Gauss-Newton step does not move. */
  unsigned long long seed = 3;
  for (ptrdiff_t k = 0; k < 2 * n; k++) target[k] += 0.5 * test_random(&seed);
  CHECK_OK(CPhysWavePacketGaussNewtonSolve(packet, NULL, 2, params, target, dparams, info));
  for (int b = 0; b < 2; b++) {
    double reached[2] = {params[2 * b] - dparams[2 * b], params[2 * b + 1] - dparams[2 * b + 1]}, again[2];
    CHECK(info[b].converged, "noisy example %d: %s after %d steps", b, info[b].reason_text,
          info[b].iterations);
    CHECK_OK(CPhysWavePacketGaussNewton(packet, NULL, 1, reached, target + b * n, again, NULL));
    CHECK(fabs(again[0]) < 1e-7 && fabs(again[1]) < 1e-7,
          "noisy example %d: a further step moves by (%g, %g)", b, again[0], again[1]);
  }
  /* One step allowed from far away: not converged, reported, last iterate returned. */
  CPhysWavePacketGaussNewtonSolveConfig one_step = CPhysWavePacketGaussNewtonSolveDefaultConfig();
  CHECK(one_step.max_steps == 20 && one_step.output_rtol == 1e-10, "solve defaults %d %g", one_step.max_steps,
        one_step.output_rtol);
  one_step.max_steps = 1;
  double aliased[4] = {106.0, 2.1, 171.0, 1.9};
  CHECK_OK(CPhysWavePacketGaussNewtonSolve(packet, &one_step, 2, aliased, target, aliased, info));
  CHECK(!info[0].converged && info[0].reason == -1 && info[0].iterations == 1, "one-step solve: %s, %d steps",
        info[0].reason_text, info[0].iterations);
  CHECK(isfinite(aliased[0]) && aliased[0] != 0.0, "the one-step solve returned no step");
  /* At the solution: stationary, no step. */
  CHECK_OK(CPhysWavePacketForward(packet, 2, truth, target));
  CHECK_OK(CPhysWavePacketGaussNewtonSolve(packet, NULL, 2, truth, target, dparams, info));
  CHECK(max_abs(dparams, 4) == 0.0 && info[0].converged && info[0].iterations == 0,
        "solve at the solution: %g (%s)", max_abs(dparams, 4), info[0].reason_text);
  one_step.max_steps = 0;
  CHECK_FAILS(CPhysWavePacketGaussNewtonSolve(packet, &one_step, 1, truth, target, dparams, NULL),
              CPHYS_ERROR_ARGUMENT);
  one_step = CPhysWavePacketGaussNewtonSolveDefaultConfig(), one_step.step.max_tries = 0;
  CHECK_FAILS(CPhysWavePacketGaussNewtonSolve(packet, &one_step, 1, truth, target, dparams, NULL),
              CPHYS_ERROR_ARGUMENT);
  target[5] = NAN;
  CHECK_FAILS(CPhysWavePacketGaussNewtonSolve(packet, NULL, 1, truth, target, dparams, NULL),
              CPHYS_ERROR_NONFINITE);
  CPhysWavePacketDestroy(&packet);
}

/* The minimizer behind the op's lbfgs mode: an exact target is reached (the
 * objective's rounding level stops TAO), and a start where the objective is
 * flat to rounding (the packet 100 samples away) ends as a line-search
 * failure at the best point seen, not as an error. */
static void test_unbounded_minimize_stops_at_rounding_level_and_in_flat_regions(void) {
  const CPhysWavePacketConfig config = CPhysWavePacketDefaultConfig();
  CPhysWavePacket packet;
  CHECK_OK(CPhysWavePacketCreate(&config, &packet));
  CPhysLeastSquaresProblem problem;
  CHECK_OK(CPhysWavePacketGetLeastSquaresProblem(packet, &problem));
  const CPhysLeastSquaresConfig lbfgs = {.max_iterations = 200};
  const double truth[4] = {100.3, 2.7, 229.83892654596355, 3.423879262782304};
  double target[512], x[2] = {101.5, 2.5};
  CHECK_OK(CPhysWavePacketForward(packet, 2, truth, target));
  CPhysSolveInfo info;
  CHECK_OK(CPhysLeastSquaresMinimize(&lbfgs, 2, 256, problem.forward, problem.adjoint, problem.context,
                                     target, x, &info));
  CHECK(info.converged && strcmp(info.reason_text, "CONVERGED_MINF") == 0,
        "exact target: %s after %d iterations", info.reason_text, info.iterations);
  CHECK(fabs(x[0] - truth[0]) < 1e-9 && fabs(x[1] - truth[1]) < 1e-9, "exact target reached (%.15g, %.15g)",
        x[0], x[1]);
  const double flat_start[2] = {128.0, 2.0};
  x[0] = flat_start[0], x[1] = flat_start[1];
  const double before = objective(packet, x, target + 256, 256);
  CHECK_OK(CPhysLeastSquaresMinimize(&lbfgs, 2, 256, problem.forward, problem.adjoint, problem.context,
                                     target + 256, x, &info));
  CHECK(isfinite(x[0]) && isfinite(x[1]) && objective(packet, x, target + 256, 256) <= before,
        "flat start: (%g, %g), %s", x[0], x[1], info.reason_text);
  CPhysWavePacketDestroy(&packet);
}

static void test_fit_respects_bounds_and_reports_each_example(void) {
  const CPhysWavePacketConfig config = CPhysWavePacketDefaultConfig();
  const ptrdiff_t n = config.n_samples, batch = 4;
  CPhysWavePacket packet;
  CHECK_OK(CPhysWavePacketCreate(&config, &packet));
  /* Two packets near the initial guess (128, 2), two far to the sides. */
  const double truth[8] = {131.0, 2.6, 122.5, 1.4, 30.0, 3.9, 225.0, 3.5};
  double target[4 * 256], params[8];
  CHECK_OK(CPhysWavePacketForward(packet, batch, truth, target));
  CPhysSolveInfo info[4];
  memset(info, 0, sizeof info);
  const CPhysWavePacketFitConfig fit = CPhysWavePacketFitDefaultConfig();
  CHECK(fit.initial[0] == 128.0 && fit.initial[1] == 2.0 && fit.lower[0] == 25.6 && fit.upper[0] == 230.4 &&
            fit.lower[1] == 1.0 && fit.upper[1] == 4.0,
        "fit defaults differ from the paper's");
  CHECK_OK(CPhysWavePacketFit(packet, NULL, batch, target, params, info));
  for (ptrdiff_t b = 0; b < batch; b++) {
    for (int k = 0; k < 2; k++)
      CHECK(params[2 * b + k] >= fit.lower[k] && params[2 * b + k] <= fit.upper[k],
            "example %td parameter %d = %g outside [%g, %g]", b, k, params[2 * b + k], fit.lower[k],
            fit.upper[k]);
    CHECK(info[b].iterations > 0 && info[b].reason_text[0] != '\0', "example %td: no statistics", b);
  }
  for (ptrdiff_t b = 0; b < 2; b++) {
    CHECK(info[b].converged, "example %td near the start did not converge: %s", b, info[b].reason_text);
    CHECK(fabs(params[2 * b] - truth[2 * b]) < 1e-3 && fabs(params[2 * b + 1] - truth[2 * b + 1]) < 1e-3,
          "example %td fitted (%g, %g), truth (%g, %g)", b, params[2 * b], params[2 * b + 1], truth[2 * b],
          truth[2 * b + 1]);
  }
  /* Unbounded, from the params passed in (the op's lbfgs mode). */
  CPhysWavePacketFitConfig from_params = fit;
  from_params.use_initial = 0, from_params.bounded = 0, from_params.max_iterations = 200;
  double start[2] = {226.0, 3.0};
  CHECK_OK(CPhysWavePacketFit(packet, &from_params, 1, target + 3 * n, start, info));
  CHECK(info[0].converged && fabs(start[0] - 225.0) < 1e-3, "fit from (226, 3) reached (%g, %g): %s",
        start[0], start[1], info[0].reason_text);
  CPhysWavePacketDestroy(&packet);
}

static void test_error_paths_return_codes_with_messages(void) {
  CPhysWavePacket packet = NULL;
  CHECK_FAILS(CPhysWavePacketCreate(&(CPhysWavePacketConfig){256, 4.0, 0.0}, &packet), CPHYS_ERROR_ARGUMENT);
  CHECK(packet == NULL, "a failed Create must leave the handle NULL");
  CHECK_FAILS(CPhysWavePacketCreate(&(CPhysWavePacketConfig){256, 4.0, -1.0}, &packet), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysWavePacketCreate(&(CPhysWavePacketConfig){0, 4.0, 20.0}, &packet), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysWavePacketCreate(&(CPhysWavePacketConfig){256, NAN, 20.0}, &packet), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysWavePacketCreate(NULL, &packet), CPHYS_ERROR_ARGUMENT);
  CHECK_OK(CPhysWavePacketCreate(&(CPhysWavePacketConfig){8, 4.0, 20.0}, &packet));
  double params[2] = {4.0, 1.0}, y[8] = {0}, dparams[2];
  CHECK_FAILS(CPhysWavePacketForward(packet, -1, params, y), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysWavePacketForward(NULL, 1, params, y), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysWavePacketAdjoint(packet, 1, params, NULL, dparams), CPHYS_ERROR_ARGUMENT);
  CHECK_OK(CPhysWavePacketForward(packet, 0, NULL, NULL));
  params[1] = NAN;
  CHECK_FAILS(CPhysWavePacketForward(packet, 1, params, y), CPHYS_ERROR_NONFINITE);
  params[1] = 1.0, y[3] = INFINITY;
  CHECK_FAILS(CPhysWavePacketGaussNewton(packet, NULL, 1, params, y, dparams, NULL), CPHYS_ERROR_NONFINITE);
  y[3] = 0.0;
  CHECK_FAILS(CPhysWavePacketGaussNewton(packet, &(CPhysWavePacketGaussNewtonConfig){-1.0, 10.0, 5}, 1,
                                         params, y, dparams, NULL),
              CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysWavePacketGaussNewton(packet, &(CPhysWavePacketGaussNewtonConfig){1e-3, 1.0, 5}, 1, params,
                                         y, dparams, NULL),
              CPHYS_ERROR_ARGUMENT);
  CPhysWavePacketFitConfig fit = CPhysWavePacketFitDefaultConfig();
  fit.lower[1] = 5.0;
  CHECK_FAILS(CPhysWavePacketFit(packet, &fit, 1, y, params, NULL), CPHYS_ERROR_ARGUMENT);
  fit = CPhysWavePacketFitDefaultConfig(), fit.max_iterations = 0;
  CHECK_FAILS(CPhysWavePacketFit(packet, &fit, 1, y, params, NULL), CPHYS_ERROR_ARGUMENT);
  fit = CPhysWavePacketFitDefaultConfig(), fit.use_initial = 0, params[0] = NAN;
  CHECK_FAILS(CPhysWavePacketFit(packet, &fit, 1, y, params, NULL), CPHYS_ERROR_NONFINITE);
  CPhysWavePacketDestroy(&packet);
}

int main(void) {
  test_forward_matches_formula_with_paper_defaults();
  test_adjoint_matches_central_differences();
  test_gauss_newton_converges_from_near_the_solution();
  test_gauss_newton_solve_reaches_the_solution_in_one_call();
  test_unbounded_minimize_stops_at_rounding_level_and_in_flat_regions();
  test_fit_respects_bounds_and_reports_each_example();
  test_error_paths_return_codes_with_messages();
  CHECK_REPORT();
}
