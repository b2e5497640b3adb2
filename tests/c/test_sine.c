/* Sine op: every mode (and the adjoint in a) against its closed form, the analytic inverse against a
 * brute-force search, finiteness near x = 0, error paths. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "cphys/sine.h"

#define N_POINTS 64

/* a in [0.1, 10.1) as in the paper, x over both signs, avoiding the floor. */
static void sample_points(double *a, double *x, unsigned long long seed) {
  for (int i = 0; i < N_POINTS; i++) {
    a[i] = 5.1 + 5.0 * test_random(&seed);
    x[i] = (0.05 + 2.0 * fabs(test_random(&seed))) * (i % 3 == 0 ? -1.0 : 1.0);
  }
}

/* Solution of sin(a/x') = t nearest to x in phase a/x, on x's side of 0, by
 * enumerating both ladders of solution phases far beyond the bracket:
 * independent of the library's bracketing. */
static double brute_force_nearest(double a, double x, double t) {
  double best = NAN, best_distance = INFINITY;
  const double start[2] = {asin(t), M_PI - asin(t)};
  const double centre = floor(a / x / (2.0 * M_PI));
  for (int ladder = 0; ladder < 2; ladder++) {
    for (double k = centre - 50.0; k <= centre + 50.0; k++) {
      const double phase = start[ladder] + 2.0 * M_PI * k;
      if (phase == 0.0 || (phase > 0.0) != (a / x > 0.0)) continue;
      const double distance = fabs(phase - a / x);
      if (distance < best_distance) best = a / phase, best_distance = distance;
    }
  }
  return best;
}

static void test_forward_is_sin_a_over_x(void) {
  double a[N_POINTS], x[N_POINTS], y[N_POINTS];
  sample_points(a, x, 11);
  CHECK_OK(CPhysSineForward(N_POINTS, a, x, y));
  for (int i = 0; i < N_POINTS; i++)
    CHECK(fabs(y[i] - sin(a[i] / x[i])) <= 1e-15, "y[%d] = %.17g, expected %.17g", i, y[i], sin(a[i] / x[i]));
}

static void test_adjoint_matches_closed_form_and_central_difference(void) {
  double a[N_POINTS], x[N_POINTS], dy[N_POINTS], dx[N_POINTS], clipped[N_POINTS];
  unsigned long long seed = 5;
  sample_points(a, x, 12);
  for (int i = 0; i < N_POINTS; i++) dy[i] = test_random(&seed);
  CHECK_OK(CPhysSineAdjoint(N_POINTS, a, x, dy, 0.0, dx));
  CHECK_OK(CPhysSineAdjoint(N_POINTS, a, x, dy, CPHYS_SINE_PAPER_CLIP, clipped));
  for (int i = 0; i < N_POINTS; i++) {
    const double derivative = -a[i] / (x[i] * x[i]) * cos(a[i] / x[i]);
    CHECK(fabs(dx[i] - derivative * dy[i]) <= 1e-13 * fabs(derivative) + 1e-300, "adjoint[%d]: %g vs %g", i,
          dx[i], derivative * dy[i]);
    const double h = 1e-6 * fabs(x[i]);
    const double difference = (sin(a[i] / (x[i] + h)) - sin(a[i] / (x[i] - h))) / (2.0 * h) * dy[i];
    CHECK(fabs(dx[i] - difference) <= 1e-6 * fmax(1.0, fabs(derivative)),
          "adjoint[%d] %g vs finite difference %g", i, dx[i], difference);
    const double expected_clipped = fmin(fmax(derivative, -1.0), 1.0) * dy[i];
    CHECK(fabs(clipped[i] - expected_clipped) <= 1e-15, "clipped adjoint[%d]: %g vs %g", i, clipped[i],
          expected_clipped);
  }
}

static void test_coefficient_adjoint_matches_closed_form_and_central_difference(void) {
  double a[N_POINTS], x[N_POINTS], dy[N_POINTS], da[N_POINTS];
  unsigned long long seed = 9;
  sample_points(a, x, 31);
  for (int i = 0; i < N_POINTS; i++) dy[i] = test_random(&seed);
  CHECK_OK(CPhysSineCoefficientAdjoint(N_POINTS, a, x, dy, da));
  for (int i = 0; i < N_POINTS; i++) {
    const double derivative = cos(a[i] / x[i]) / x[i];
    CHECK(fabs(da[i] - derivative * dy[i]) <= 1e-13 * fabs(derivative) + 1e-300, "da[%d]: %g vs %g", i, da[i],
          derivative * dy[i]);
    const double h = 1e-6 * fabs(a[i]);
    const double difference = (sin((a[i] + h) / x[i]) - sin((a[i] - h) / x[i])) / (2.0 * h) * dy[i];
    CHECK(fabs(da[i] - difference) <= 1e-6 * fmax(1.0, fabs(derivative)), "da[%d] %g vs finite difference %g",
          i, da[i], difference);
  }
  const double zero_x[2] = {0.0, -1e-300}, ones[2] = {1.0, 1.0}, unit_a[2] = {1.0, 1.0};
  CHECK_OK(CPhysSineCoefficientAdjoint(2, unit_a, zero_x, ones, da));
  CHECK(isfinite(da[0]) && isfinite(da[1]), "coefficient adjoint near 0: %g, %g", da[0], da[1]);
  const double huge[2] = {1e300, 1e300}, tiny_a[2] = {1e-100, 1e-100};
  CHECK_FAILS(CPhysSineCoefficientAdjoint(2, tiny_a, zero_x, huge, da), CPHYS_ERROR_NONFINITE);
  const double zero_a[2] = {0.0, 1.0};
  CHECK_FAILS(CPhysSineCoefficientAdjoint(2, zero_a, zero_x, ones, da), CPHYS_ERROR_ARGUMENT);
}

static void test_physical_lands_on_the_nearest_minimum(void) {
  double a[N_POINTS], x[N_POINTS], target[N_POINTS], dx[N_POINTS];
  sample_points(a, x, 13);
  for (int i = 0; i < N_POINTS; i++) target[i] = (i % 2) ? -1.0 : -3.5; /* at and below the minimum */
  CHECK_OK(CPhysSinePhysicalGradient(N_POINTS, a, x, target, dx));
  for (int i = 0; i < N_POINTS; i++) {
    const double x_new = x[i] - dx[i], phase = a[i] / x_new;
    CHECK(fabs(sin(phase) + 1.0) <= 1e-12, "x_new[%d] = %g: sin = %.17g is no minimum", i, x_new, sin(phase));
    /* The neighbouring minima on the same side are farther from x's phase. */
    const double m = round((phase - 1.5 * M_PI) / (2.0 * M_PI));
    for (int side = -1; side <= 1; side += 2) {
      const double neighbour_phase = 1.5 * M_PI + 2.0 * M_PI * (m + side);
      if (neighbour_phase * phase <= 0.0) continue; /* across 0: not on x's side */
      CHECK(fabs(neighbour_phase - a[i] / x[i]) >= fabs(phase - a[i] / x[i]),
            "minimum m=%g is nearer to x = %g in phase than %g", m + side, x[i], x_new);
    }
    const double expected = brute_force_nearest(a[i], x[i], -1.0);
    CHECK(fabs(x_new - expected) <= 1e-14 * fabs(expected), "x_new[%d] = %.17g, brute force %.17g", i, x_new,
          expected);
  }
}

static void test_physical_reaches_targets_inside_the_range_exactly(void) {
  double a[N_POINTS], x[N_POINTS], target[N_POINTS], dx[N_POINTS];
  unsigned long long seed = 99;
  sample_points(a, x, 14);
  for (int i = 0; i < N_POINTS; i++) target[i] = 0.999 * test_random(&seed);
  target[0] = 0.0;
  CHECK_OK(CPhysSinePhysicalGradient(N_POINTS, a, x, target, dx));
  for (int i = 0; i < N_POINTS; i++) {
    const double x_new = x[i] - dx[i];
    CHECK(fabs(sin(a[i] / x_new) - target[i]) <= 1e-12, "sin(a/x_new[%d]) = %.17g, target %.17g", i,
          sin(a[i] / x_new), target[i]);
    const double expected = brute_force_nearest(a[i], x[i], target[i]);
    CHECK(fabs(x_new - expected) <= 1e-14 * fabs(expected), "x_new[%d] = %.17g, brute force %.17g", i, x_new,
          expected);
  }
}

static void test_physical_clamps_targets_above_one_to_the_nearest_maximum(void) {
  const double a[2] = {2.0, -3.0}, x[2] = {0.3, 0.7}, target[2] = {1.0, 7.0};
  double dx[2];
  CHECK_OK(CPhysSinePhysicalGradient(2, a, x, target, dx));
  for (int i = 0; i < 2; i++) {
    const double x_new = x[i] - dx[i];
    CHECK(fabs(sin(a[i] / x_new) - 1.0) <= 1e-12, "sin(a/x_new[%d]) = %.17g is no maximum", i,
          sin(a[i] / x_new));
    CHECK(fabs(x_new - brute_force_nearest(a[i], x[i], 1.0)) <= 1e-14, "x_new[%d] = %g is not the nearest", i,
          x_new);
  }
}

/* Beyond the outermost minimum on each side (a/x -> 0) the nearest minimum is
 * the outermost one: m = 0 on a's side (a / (3 pi/2)), m = -1 on the other
 * (a / (-pi/2)); never one across 0. */
static void test_outermost_minima_catch_everything_beyond_them(void) {
  const double a[6] = {1.0, 1.0, -2.0, -2.0, 1.0, 1.0}, x0[6] = {100.0, -100.0, 1e6, -1e6, 1e300, -1e300};
  const double expected[6] = {1.0 / (1.5 * M_PI),  -1.0 / (0.5 * M_PI), 2.0 / (0.5 * M_PI),
                              -2.0 / (1.5 * M_PI), 1.0 / (1.5 * M_PI),  -1.0 / (0.5 * M_PI)};
  double x_min[6];
  CHECK_OK(CPhysSineNearestMinimum(6, a, x0, x_min));
  for (int i = 0; i < 6; i++)
    CHECK(fabs(x_min[i] - expected[i]) <= 1e-15, "x_min[%d] = %.17g, expected %.17g", i, x_min[i],
          expected[i]);
}

static void test_nearest_minimum_from_one_gives_the_supervised_labels(void) {
  double a[N_POINTS], one[N_POINTS], x_min[N_POINTS], minus_one[N_POINTS], dx[N_POINTS];
  unsigned long long seed = 3;
  for (int i = 0; i < N_POINTS; i++) a[i] = 5.1 + 5.0 * test_random(&seed), one[i] = 1.0, minus_one[i] = -1.0;
  CHECK_OK(CPhysSineNearestMinimum(N_POINTS, a, one, x_min));
  CHECK_OK(CPhysSinePhysicalGradient(N_POINTS, a, one, minus_one, dx));
  for (int i = 0; i < N_POINTS; i++) {
    CHECK(x_min[i] == 1.0 - dx[i] || fabs(x_min[i] - (1.0 - dx[i])) <= 1e-15, "label[%d] %g != physical %g",
          i, x_min[i], 1.0 - dx[i]);
    CHECK(fabs(x_min[i] - brute_force_nearest(a[i], 1.0, -1.0)) <= 1e-14, "label[%d] = %g is not the nearest",
          i, x_min[i]);
  }
}

static void test_newton_matches_the_paper_formula_and_walks_downhill(void) {
  double a[N_POINTS], x[N_POINTS], target[N_POINTS], dx[N_POINTS];
  sample_points(a, x, 15);
  for (int i = 0; i < N_POINTS; i++) target[i] = -1.0;
  CHECK_OK(CPhysSineNewton(N_POINTS, a, x, target, CPHYS_SINE_PAPER_CLIP, dx));
  for (int i = 0; i < N_POINTS; i++) {
    const double u = a[i] / x[i];
    const double newton = x[i] * x[i] * cos(u) / (2.0 * x[i] * cos(u) - a[i] * sin(u));
    const double derivative = -a[i] / (x[i] * x[i]) * cos(u);
    /* The step x_new - x points against dP/dx (downhill), |step| = min(|newton|, 1). */
    const double expected = (derivative > 0 ? 1.0 : -1.0) * fmin(fabs(newton), 1.0);
    CHECK(fabs(dx[i] - expected) <= 1e-12 * fmax(1.0, fabs(expected)), "newton[%d] = %.17g, expected %.17g",
          i, dx[i], expected);
  }
  /* Started near a minimum, the unclipped iteration converges quadratically. */
  double a1 = 1.0, xk = 1.0 / (1.5 * M_PI) * 1.05, minus_one = -1.0, step;
  int iterations = 0;
  while (sin(a1 / xk) + 1.0 > 1e-15 && iterations < 8) {
    CHECK_OK(CPhysSineNewton(1, &a1, &xk, &minus_one, 1.0, &step));
    xk -= step, iterations++;
  }
  CHECK(iterations <= 5 && fabs(xk - 1.0 / (1.5 * M_PI)) < 1e-10, "Newton needed %d iterations, x = %.17g",
        iterations, xk);
}

static void test_inverse_gradient_is_height_over_slope_clipped(void) {
  double a[N_POINTS], x[N_POINTS], target[N_POINTS], dx[N_POINTS];
  unsigned long long seed = 17;
  sample_points(a, x, 16);
  for (int i = 0; i < N_POINTS; i++) target[i] = (i % 2) ? -1.0 : 0.9 * test_random(&seed);
  CHECK_OK(CPhysSineInverseGradient(N_POINTS, a, x, target, 0.5, dx));
  for (int i = 0; i < N_POINTS; i++) {
    const double u = a[i] / x[i];
    const double ratio = (sin(u) - target[i]) / (-a[i] / (x[i] * x[i]) * cos(u));
    const double expected = fmin(fmax(ratio, -0.5), 0.5);
    CHECK(fabs(dx[i] - expected) <= 1e-12 * fmax(1.0, fabs(expected)),
          "inverse gradient[%d] = %g, expected %g", i, dx[i], expected);
  }
}

static int all_finite(const double *v, int n) {
  for (int i = 0; i < n; i++)
    if (!isfinite(v[i])) return 0;
  return 1;
}

static void test_every_mode_is_finite_at_and_near_zero(void) {
  enum { M = 12 };
  const double x[M] = {0.0,   -0.0,  1e-300, -1e-300, 5e-324, DBL_MIN,
                       1e-12, -1e-9, 1e-150, 1e300,   -1e300, DBL_MAX};
  double a[M], ones[M], minus_one[M], half[M], out[M];
  for (int i = 0; i < M; i++) a[i] = (i % 2) ? 0.1 : 10.1, ones[i] = 1.0, minus_one[i] = -1.0, half[i] = 0.5;
  CHECK_OK(CPhysSineForward(M, a, x, out));
  CHECK(all_finite(out, M), "forward is not finite near 0");
  CHECK_OK(CPhysSineAdjoint(M, a, x, ones, 0.0, out));
  CHECK(all_finite(out, M), "adjoint is not finite near 0");
  CHECK_OK(CPhysSineAdjoint(M, a, x, ones, 1.0, out));
  CHECK(all_finite(out, M), "clipped adjoint is not finite near 0");
  CHECK_OK(CPhysSinePhysicalGradient(M, a, x, minus_one, out));
  CHECK(all_finite(out, M), "physical gradient is not finite near 0");
  CHECK_OK(CPhysSinePhysicalGradient(M, a, x, half, out));
  CHECK(all_finite(out, M), "physical gradient (target 0.5) is not finite near 0");
  CHECK_OK(CPhysSineNearestMinimum(M, a, x, out));
  CHECK(all_finite(out, M), "nearest minimum is not finite near 0");
  CHECK_OK(CPhysSineNewton(M, a, x, minus_one, 1.0, out));
  CHECK(all_finite(out, M), "newton is not finite near 0");
  CHECK_OK(CPhysSineInverseGradient(M, a, x, minus_one, 1.0, out));
  CHECK(all_finite(out, M), "inverse gradient is not finite near 0");
  /* The extremes of the accepted a, against the same x. */
  const double extreme_a[4] = {CPHYS_SINE_MIN_ABS_A, -CPHYS_SINE_MIN_ABS_A, 1e300, -DBL_MAX};
  for (int k = 0; k < 4; k++) {
    for (int i = 0; i < M; i++) a[i] = extreme_a[k];
    int finite = 1;
    finite &= CPhysSineForward(M, a, x, out) == 0 && all_finite(out, M);
    finite &= CPhysSineAdjoint(M, a, x, ones, 0.0, out) == 0 && all_finite(out, M);
    finite &= CPhysSinePhysicalGradient(M, a, x, half, out) == 0 && all_finite(out, M);
    finite &= CPhysSineNearestMinimum(M, a, x, out) == 0 && all_finite(out, M);
    finite &= CPhysSineNewton(M, a, x, minus_one, 1.0, out) == 0 && all_finite(out, M);
    finite &= CPhysSineInverseGradient(M, a, x, half, 1.0, out) == 0 && all_finite(out, M);
    CHECK(finite, "a mode failed or is not finite for a = %g: %s", extreme_a[k], CPhysGetLastErrorMessage());
  }
  /* Found by fuzz_sine: a denormal target made asin(t) a denormal phase, the
   * nearest one in phase to a tiny a/x, and x_new = a / asin(t) = -inf. */
  const double a_found = -0x1.0979797979797p+3, x_found = -0x1.1d1d13dd1d1d1p+286;
  const double t_found[3] = {0x0.000000101d1d1p-1022, 1e-309, -5e-324};
  for (int k = 0; k < 3; k++) {
    double dx = NAN;
    CHECK_OK(CPhysSinePhysicalGradient(1, &a_found, &x_found, &t_found[k], &dx));
    CHECK(isfinite(dx), "target %g: physical gradient %g", t_found[k], dx);
  }
  /* At x = 0 the floor |a| / MAX_PHASE stands in for x, on the positive side. */
  const double a1 = 2.0, zero = 0.0;
  double y;
  CHECK_OK(CPhysSineForward(1, &a1, &zero, &y));
  CHECK(fabs(y - sin(CPHYS_SINE_MAX_PHASE)) < 1e-7, "forward at 0 is %.17g, expected sin(MAX_PHASE)", y);
}

static void test_error_paths_return_codes_with_messages(void) {
  double a[2] = {1.0, 2.0}, x[2] = {0.5, 0.7}, t[2] = {-1.0, -1.0}, out[2] = {42.0, 42.0};
  CHECK_FAILS(CPhysSineForward(-1, a, x, out), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysSineForward(2, NULL, x, out), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysSinePhysicalGradient(2, a, x, NULL, out), CPHYS_ERROR_ARGUMENT);
  CHECK_OK(CPhysSineForward(0, NULL, NULL, NULL));
  x[1] = NAN;
  CHECK_FAILS(CPhysSineForward(2, a, x, out), CPHYS_ERROR_NONFINITE);
  CHECK(out[0] == 42.0, "outputs must be untouched after a non-finite input");
  x[1] = 0.7, t[0] = INFINITY;
  CHECK_FAILS(CPhysSineNewton(2, a, x, t, 1.0, out), CPHYS_ERROR_NONFINITE);
  t[0] = -1.0, a[0] = INFINITY;
  CHECK_FAILS(CPhysSineInverseGradient(2, a, x, t, 1.0, out), CPHYS_ERROR_NONFINITE);
  a[0] = 0.0;
  CHECK_FAILS(CPhysSineNearestMinimum(2, a, x, out), CPHYS_ERROR_ARGUMENT);
  a[0] = 1.0;
  CHECK_FAILS(CPhysSineAdjoint(2, a, x, t, -1.0, out), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysSineNewton(2, a, x, t, 0.0, out), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysSineInverseGradient(2, a, x, t, INFINITY, out), CPHYS_ERROR_ARGUMENT);
  double huge[2] = {1e300, 1e300}, tiny_x[2] = {1e-9, 1e-9};
  CHECK_FAILS(CPhysSineAdjoint(2, a, tiny_x, huge, 0.0, out), CPHYS_ERROR_NONFINITE);
}

int main(void) {
  test_forward_is_sin_a_over_x();
  test_adjoint_matches_closed_form_and_central_difference();
  test_coefficient_adjoint_matches_closed_form_and_central_difference();
  test_physical_lands_on_the_nearest_minimum();
  test_physical_reaches_targets_inside_the_range_exactly();
  test_physical_clamps_targets_above_one_to_the_nearest_maximum();
  test_outermost_minima_catch_everything_beyond_them();
  test_nearest_minimum_from_one_gives_the_supervised_labels();
  test_newton_matches_the_paper_formula_and_walks_downhill();
  test_inverse_gradient_is_height_over_slope_clipped();
  test_every_mode_is_finite_at_and_near_zero();
  test_error_paths_return_codes_with_messages();
  CHECK_REPORT();
}
