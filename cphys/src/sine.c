/* The sine op sin(a/x): forward, adjoint and the paper's four inverse updates. */
#include "cphys/sine.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "cphys_internal.h"
#include "threads.h"

/* Checks what every sine function shares, with the caller's name in the
 * message.  `second` is the other input array (y_target, dy) or NULL. */
static int check_inputs(const char *caller, ptrdiff_t n, const double *a, const double *x,
                        const double *second, const char *second_name, const double *out) {
  CPhysCheckCaller(caller, n >= 0, CPHYS_ERROR_ARGUMENT, "n must be >= 0, got %td", n);
  if (n == 0) return 0;
  CPhysCheckCaller(caller, a && x && out && (!second_name || second), CPHYS_ERROR_ARGUMENT,
                   "array arguments must not be NULL when n = %td", n);
  for (ptrdiff_t i = 0; i < n; i++) {
    CPhysCheckCaller(caller, isfinite(a[i]), CPHYS_ERROR_NONFINITE, "a[%td] = %g is not finite", i, a[i]);
    CPhysCheckCaller(caller, fabs(a[i]) >= CPHYS_SINE_MIN_ABS_A, CPHYS_ERROR_ARGUMENT,
                     "|a[%td]| = %g is below %g (sin(a/x) is flat)", i, fabs(a[i]), CPHYS_SINE_MIN_ABS_A);
    CPhysCheckCaller(caller, isfinite(x[i]), CPHYS_ERROR_NONFINITE, "x[%td] = %g is not finite", i, x[i]);
    CPhysCheckCaller(caller, !second_name || isfinite(second[i]), CPHYS_ERROR_NONFINITE,
                     "%s[%td] = %g is not finite", second_name, i, second[i]);
  }
  return 0;
}

static int check_positive_clip(const char *caller, double clip) {
  CPhysCheckCaller(caller, isfinite(clip) && clip > 0.0, CPHYS_ERROR_ARGUMENT,
                   "clip must be positive and finite, got %g", clip);
  return 0;
}

/* The point every function evaluates at: |x| floored so that |a/x| stays
 * below CPHYS_SINE_MAX_PHASE; +-0 goes to the positive side. */
static double floored(double a, double x) {
  const double floor_abs = fabs(a) / CPHYS_SINE_MAX_PHASE;
  const double magnitude = fmax(fabs(x), floor_abs);
  return x < 0.0 ? -magnitude : magnitude;
}

/* +1 when a and x are on the same side of 0, i.e. a/x > 0.  Taken from the
 * signs rather than from a/x, which can underflow to a signless 0. */
static double phase_side(double a, double x_eff) {
  return (a > 0.0) == (x_eff > 0.0) ? 1.0 : -1.0;
}

static double sign_of(double v) {
  return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : 0.0);
}

static double clamp_target(double t) {
  return fmin(fmax(t, -1.0), 1.0);
}

/* min(numerator / denominator, clip) for non-negative operands, without
 * dividing by 0: an infinite ratio clips. */
static double clipped_ratio(double numerator, double denominator, double clip) {
  if (numerator >= clip * denominator) return clip;
  return numerator / denominator;
}

/* The x' with sin(a/x') = t nearest to x_eff in phase a/x, t in [-1, 1], as
 * the paper's appendix B.2 does (the index of the closest minimum is
 * round(a / (2 pi x) - 3/4)).  The solution phases form the two ladders
 * asin(t) + 2 pi k and pi - asin(t) + 2 pi k; the candidates are those
 * bracketing x_eff's phase on each ladder.  Nearest in phase, not in x: near 0
 * the solutions crowd together in x, and the nearest in x pulls a prediction
 * further in, where training through the op stalls (measured on the sin
 * experiment); in phase every solution has an equal share. */
static double nearest_solution(double a, double x_eff, double t) {
  const double side = phase_side(a, x_eff);
  const double phase = copysign(a / x_eff, side);
  const double ladder_start[2] = {asin(t), CPHYS_PI - asin(t)};
  double best = 0.0, best_distance = INFINITY;
  int found = 0;
  for (int ladder = 0; ladder < 2; ladder++) {
    const double below = floor((phase - ladder_start[ladder]) / (2.0 * CPHYS_PI));
    for (int step = 0; step < 2; step++) {
      const double candidate_phase = ladder_start[ladder] + 2.0 * CPHYS_PI * (below + step);
      /* Only solutions on x_eff's side; phase 0 would be x = infinity. */
      if (!(candidate_phase * side > 0.0)) continue;
      const double candidate = a / candidate_phase;
      /* A tiny candidate phase (e.g. asin of a denormal target) puts x beyond the
       * doubles: at infinity, like phase 0, so not a solution either. */
      if (!isfinite(candidate)) continue;
      const double distance = fabs(candidate_phase - phase);
      if (!found || distance < best_distance || (distance == best_distance && fabs(candidate) > fabs(best))) {
        best = candidate, best_distance = distance, found = 1;
      }
    }
  }
  /* The bracket above x_eff's phase (below, on the negative side) on the second
   * ladder always lies on x_eff's side with |phase| >= pi/2, so `found` is
   * always set and `best` is finite. */
  return best;
}

/* The elementwise loops run on cphys_loop_threads(n, ~30 ns) threads: only
 * batches of several thousand elements are worth a parallel region. */
#define SINE_THREADS(n) cphys_loop_threads((n), 30e-9)

int CPhysSineForward(ptrdiff_t n, const double *a, const double *x, double *y) {
  CPhysCall(check_inputs(__func__, n, a, x, NULL, NULL, y));
  const int threads = SINE_THREADS(n);
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (ptrdiff_t i = 0; i < n; i++) y[i] = sin(a[i] / floored(a[i], x[i]));
  return 0;
}

int CPhysSineAdjoint(ptrdiff_t n, const double *a, const double *x, const double *dy, double clip,
                     double *dx) {
  CPhysCheck(clip >= 0.0, CPHYS_ERROR_ARGUMENT, "clip must be >= 0 (0: no clipping), got %g", clip);
  CPhysCall(check_inputs(__func__, n, a, x, dy, "dy", dx));
  ptrdiff_t first_overflow = PTRDIFF_MAX;
  const int threads = SINE_THREADS(n);
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static) reduction(min \
                                                                                          : first_overflow)
  for (ptrdiff_t i = 0; i < n; i++) {
    const double x_eff = floored(a[i], x[i]), phase = a[i] / x_eff;
    /* (a/x)/x rather than a/x^2: x^2 overflows for |x| > 1e154. */
    double derivative = -(phase / x_eff) * cos(phase);
    if (clip > 0.0) derivative = fmin(fmax(derivative, -clip), clip);
    const double product = derivative * dy[i];
    if (isfinite(product))
      dx[i] = product;
    else if (i < first_overflow) /* dx[i] stays unwritten: it may alias dy[i], named below */
      first_overflow = i;
  }
  if (first_overflow < n) {
    const ptrdiff_t i = first_overflow;
    const double x_eff = floored(a[i], x[i]), phase = a[i] / x_eff;
    double derivative = -(phase / x_eff) * cos(phase);
    if (clip > 0.0) derivative = fmin(fmax(derivative, -clip), clip);
    return CPhysSetError(CPHYS_ERROR_NONFINITE, __func__,
                         "dP/dx * dy overflows at element %td (dP/dx = %g, dy = %g)", i, derivative, dy[i]);
  }
  return 0;
}

int CPhysSineCoefficientAdjoint(ptrdiff_t n, const double *a, const double *x, const double *dy, double *da) {
  CPhysCall(check_inputs(__func__, n, a, x, dy, "dy", da));
  ptrdiff_t first_overflow = PTRDIFF_MAX;
  const int threads = SINE_THREADS(n);
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static) reduction(min \
                                                                                          : first_overflow)
  for (ptrdiff_t i = 0; i < n; i++) {
    const double x_eff = floored(a[i], x[i]);
    const double product = cos(a[i] / x_eff) / x_eff * dy[i];
    if (isfinite(product))
      da[i] = product;
    else if (i < first_overflow) /* da[i] stays unwritten: it may alias dy[i], named below */
      first_overflow = i;
  }
  if (first_overflow < n)
    return CPhysSetError(CPHYS_ERROR_NONFINITE, __func__,
                         "dP/da * dy overflows at element %td (x = %g, dy = %g)", first_overflow,
                         floored(a[first_overflow], x[first_overflow]), dy[first_overflow]);
  return 0;
}

int CPhysSinePhysicalGradient(ptrdiff_t n, const double *a, const double *x, const double *y_target,
                              double *dx) {
  CPhysCall(check_inputs(__func__, n, a, x, y_target, "y_target", dx));
  const int threads = SINE_THREADS(n);
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (ptrdiff_t i = 0; i < n; i++) {
    const double x_now = x[i];
    dx[i] = x_now - nearest_solution(a[i], floored(a[i], x_now), clamp_target(y_target[i]));
  }
  return 0;
}

int CPhysSineNearestMinimum(ptrdiff_t n, const double *a, const double *x0, double *x_min) {
  CPhysCall(check_inputs(__func__, n, a, x0, NULL, NULL, x_min));
  const int threads = SINE_THREADS(n);
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (ptrdiff_t i = 0; i < n; i++) x_min[i] = nearest_solution(a[i], floored(a[i], x0[i]), -1.0);
  return 0;
}

/* sign(dP/dx) at x_eff: dP/dx = -(a/x^2) cos(a/x), and a/x^2 has the sign of a.
 * Taken from the signs so that it survives an underflowing magnitude. */
static double derivative_sign(double a, double phase) {
  return -sign_of(a) * sign_of(cos(phase));
}

int CPhysSineNewton(ptrdiff_t n, const double *a, const double *x, const double *y_target, double clip,
                    double *dx) {
  CPhysCall(check_positive_clip(__func__, clip));
  CPhysCall(check_inputs(__func__, n, a, x, y_target, "y_target", dx));
  const int threads = SINE_THREADS(n);
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (ptrdiff_t i = 0; i < n; i++) {
    const double x_eff = floored(a[i], x[i]), phase = a[i] / x_eff;
    const double c = cos(phase), s = sin(phase);
    /* x^2 cos / (2 x cos - a sin), divided through by x so nothing overflows. */
    const double length = clipped_ratio(fabs(x_eff * c), fabs(2.0 * c - phase * s), clip);
    const double height = s - clamp_target(y_target[i]);
    dx[i] = sign_of(height) * derivative_sign(a[i], phase) * length;
  }
  return 0;
}

int CPhysSineInverseGradient(ptrdiff_t n, const double *a, const double *x, const double *y_target,
                             double clip, double *dx) {
  CPhysCall(check_positive_clip(__func__, clip));
  CPhysCall(check_inputs(__func__, n, a, x, y_target, "y_target", dx));
  const int threads = SINE_THREADS(n);
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (ptrdiff_t i = 0; i < n; i++) {
    const double x_eff = floored(a[i], x[i]), phase = a[i] / x_eff;
    const double height = sin(phase) - clamp_target(y_target[i]);
    const double slope = fabs(phase / x_eff * cos(phase));
    dx[i] = sign_of(height) * derivative_sign(a[i], phase) * clipped_ratio(fabs(height), slope, clip);
  }
  return 0;
}

/* ---- the physical-gradient contract (cphys/physical_gradient.h) ---- */

static int sine_physical_gradient(void *context, ptrdiff_t batch, const double *x, const double *y,
                                  const double *g, double y_step, double *dx, CPhysSolveInfo *info) {
  const CPhysSineData *data = context;
  CPhysCheck(batch >= 0, CPHYS_ERROR_ARGUMENT, "batch must be >= 0, got %td", batch);
  CPhysCheck(isfinite(y_step), CPHYS_ERROR_ARGUMENT, "y_step must be finite, got %g", y_step);
  double *target;
  CPhysCall(cphys_target(__func__, batch * data->n, y, g, y_step, &target));
  const int ierr = CPhysSinePhysicalGradient(batch * data->n, data->a, x, target, dx);
  free(target);
  if (!ierr) CPhysSetDirectInfo(info, batch, "DIRECT");
  return ierr;
}

int CPhysSineGetInverseProblem(const CPhysSineData *data, CPhysInverseProblem *problem) {
  CPhysCheck(data != NULL && problem != NULL, CPHYS_ERROR_ARGUMENT, "data and problem must not be NULL");
  CPhysCheck(data->n >= 1, CPHYS_ERROR_ARGUMENT, "data->n must be >= 1, got %td", data->n);
  *problem = (CPhysInverseProblem){data->n, data->n, sine_physical_gradient, (void *)data};
  return 0;
}
