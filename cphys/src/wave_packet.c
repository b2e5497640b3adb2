/* Wave-packet object: forward, adjoint, the damped Gauss-Newton step and its iteration. */
#include "cphys/wave_packet.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cphys_internal.h"
#include "finite.h"
#include "threads.h"

struct CPhysWavePacket_private {
  CPhysWavePacketConfig config;
  double envelope_rate; /* 1 / (2 sigma^2), samples^-2: e_j = exp(-envelope_rate (xi_j - xi0)^2) */
  double *carrier;      /* [n_samples] sin(f xi_j), the part independent of the parameters */
};

CPhysWavePacketConfig CPhysWavePacketDefaultConfig(void) {
  CPhysWavePacketConfig config = {CPHYS_WAVE_PACKET_DEFAULT_SAMPLES, CPHYS_WAVE_PACKET_DEFAULT_FREQUENCY,
                                  CPHYS_WAVE_PACKET_DEFAULT_SIGMA};
  return config;
}

CPhysWavePacketGaussNewtonConfig CPhysWavePacketGaussNewtonDefaultConfig(void) {
  CPhysWavePacketGaussNewtonConfig config = {1e-4, 10.0, 12};
  return config;
}

int CPhysWavePacketCreate(const CPhysWavePacketConfig *config, CPhysWavePacket *packet) {
  CPhysCheck(packet != NULL, CPHYS_ERROR_ARGUMENT, "packet must not be NULL");
  *packet = NULL;
  CPhysCheck(config != NULL, CPHYS_ERROR_ARGUMENT, "config must not be NULL");
  CPhysCheck(config->n_samples >= 1, CPHYS_ERROR_ARGUMENT, "n_samples must be >= 1, got %td",
             config->n_samples);
  CPhysCheck(isfinite(config->frequency), CPHYS_ERROR_ARGUMENT, "frequency must be finite, got %g",
             config->frequency);
  CPhysCheck(isfinite(config->sigma) && config->sigma > 0.0, CPHYS_ERROR_ARGUMENT,
             "sigma must be positive and finite, got %g", config->sigma);
  const double envelope_rate = 0.5 / (config->sigma * config->sigma);
  CPhysCheck(isfinite(envelope_rate), CPHYS_ERROR_ARGUMENT,
             "sigma = %g is too small (1/(2 sigma^2) overflows)", config->sigma);
  CPhysCheck((size_t)config->n_samples <= SIZE_MAX / sizeof(double), CPHYS_ERROR_MEMORY,
             "n_samples = %td is too large", config->n_samples);
  struct CPhysWavePacket_private *p = calloc(1, sizeof *p);
  CPhysCheck(p != NULL, CPHYS_ERROR_MEMORY, "cannot allocate the wave-packet object");
  p->carrier = malloc(sizeof(double) * (size_t)config->n_samples);
  if (!p->carrier) {
    free(p);
    return CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate %td carrier samples",
                         config->n_samples);
  }
  p->config = *config;
  p->envelope_rate = envelope_rate;
  for (ptrdiff_t j = 0; j < config->n_samples; j++) p->carrier[j] = sin(config->frequency * (double)j);
  *packet = p;
  return 0;
}

int CPhysWavePacketDestroy(CPhysWavePacket *packet) {
  if (!packet || !*packet) return 0;
  free((*packet)->carrier);
  free(*packet);
  *packet = NULL;
  return 0;
}

int CPhysWavePacketGetConfig(CPhysWavePacket packet, CPhysWavePacketConfig *config) {
  CPhysCheck(packet != NULL && config != NULL, CPHYS_ERROR_ARGUMENT, "packet and config must not be NULL");
  *config = packet->config;
  return 0;
}

/* Shared checks: handle, batch, pointers, finite values of the inputs. */
static int check_call(const char *caller, CPhysWavePacket packet, ptrdiff_t batch, const double *params,
                      const double *series, const char *series_name, const void *out) {
  CPhysCheckCaller(caller, packet != NULL, CPHYS_ERROR_ARGUMENT, "packet must not be NULL");
  CPhysCheckCaller(caller, batch >= 0, CPHYS_ERROR_ARGUMENT, "batch must be >= 0, got %td", batch);
  if (batch == 0) return 0;
  CPhysCheckCaller(caller, params && out && (!series_name || series), CPHYS_ERROR_ARGUMENT,
                   "array arguments must not be NULL when batch = %td", batch);
  ptrdiff_t k = cphys_first_non_finite(params, 2 * batch);
  CPhysCheckCaller(caller, k < 0, CPHYS_ERROR_NONFINITE, "params[%td][%d] = %g is not finite", k / 2,
                   (int)(k % 2), params[k]);
  const ptrdiff_t n = packet->config.n_samples;
  k = series_name ? cphys_first_non_finite(series, batch * n) : -1;
  CPhysCheckCaller(caller, k < 0, CPHYS_ERROR_NONFINITE, "%s[%td][%td] = %g is not finite", series_name,
                   k / n, k % n, series[k]);
  return 0;
}

/* The envelope exp(-(xi_j - xi0)^2 / (2 sigma^2)) of sample j (paper B.1). */
static inline double envelope(const struct CPhysWavePacket_private *p, double offset) {
  return exp(-offset * offset * p->envelope_rate);
}

/* Rough seconds of work per example of each batch loop, for cphys_loop_threads:
 * one pass over the series costs ~15 ns per sample (an exp). */
static double pass_seconds(CPhysWavePacket p) {
  return 15e-9 * (double)p->config.n_samples;
}

/* dy_j / dA = sin(f xi_j) e_j.  Forward, objective and Gauss-Newton all form
 * y_j = A * shape(j) in this one order, so that P(p) - P(p) is exactly 0 and
 * Gauss-Newton sees a solution computed by Forward as exactly stationary. */
static inline double shape_at(const struct CPhysWavePacket_private *p, ptrdiff_t j, double xi0) {
  return p->carrier[j] * envelope(p, (double)j - xi0);
}

int CPhysWavePacketForward(CPhysWavePacket packet, ptrdiff_t batch, const double *params, double *y) {
  CPhysCall(check_call(__func__, packet, batch, params, NULL, NULL, y));
  const ptrdiff_t n = packet->config.n_samples;
  const int threads = cphys_loop_threads(batch, pass_seconds(packet));
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (ptrdiff_t b = 0; b < batch; b++) {
    const double xi0 = params[2 * b], amplitude = params[2 * b + 1];
    for (ptrdiff_t j = 0; j < n; j++) y[b * n + j] = amplitude * shape_at(packet, j, xi0);
  }
  return 0;
}

int CPhysWavePacketAdjoint(CPhysWavePacket packet, ptrdiff_t batch, const double *params, const double *dy,
                           double *dparams) {
  CPhysCall(check_call(__func__, packet, batch, params, dy, "dy", dparams));
  const ptrdiff_t n = packet->config.n_samples;
  const int threads = cphys_loop_threads(batch, pass_seconds(packet));
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (ptrdiff_t b = 0; b < batch; b++) {
    const double xi0 = params[2 * b], amplitude = params[2 * b + 1];
    double d_position = 0.0, d_amplitude = 0.0;
    for (ptrdiff_t j = 0; j < n; j++) {
      const double weighted = shape_at(packet, j, xi0) * dy[b * n + j];
      d_amplitude += weighted;
      d_position += weighted * 2.0 * ((double)j - xi0) * packet->envelope_rate;
    }
    /* Written after the reads so dparams may alias params. */
    dparams[2 * b] = amplitude * d_position;
    dparams[2 * b + 1] = d_amplitude;
  }
  return 0;
}

/* 1/2 ||P(p) - target||^2 for one example, without storing the series. */
static double objective(const struct CPhysWavePacket_private *p, double xi0, double amplitude,
                        const double *target) {
  double sum = 0.0;
  for (ptrdiff_t j = 0; j < p->config.n_samples; j++) {
    const double r = amplitude * shape_at(p, j, xi0) - target[j];
    sum += r * r;
  }
  return 0.5 * sum;
}

static void set_info(CPhysSolveInfo *info, int tries, double f, int converged, int reason, const char *text) {
  if (!info) return;
  info->iterations = tries;
  info->residual_norm = sqrt(2.0 * f);
  info->converged = converged;
  info->reason = reason;
  snprintf(info->reason_text, sizeof info->reason_text, "%s", text);
}

/* One example of CPhysWavePacketGaussNewton; writes its step and info, and in
 * *output_change (when not NULL) ||J delta||, the linearized change of the
 * series by the accepted step (0 when none was accepted). */
static void gauss_newton_example(const struct CPhysWavePacket_private *p,
                                 const CPhysWavePacketGaussNewtonConfig *c, const double *param,
                                 const double *target, double *dparam, CPhysSolveInfo *info,
                                 double *output_change) {
  const double xi0 = param[0], amplitude = param[1];
  double n00 = 0.0, n01 = 0.0, n11 = 0.0, g0 = 0.0, g1 = 0.0, sum = 0.0;
  for (ptrdiff_t j = 0; j < p->config.n_samples; j++) {
    const double shape = shape_at(p, j, xi0);
    const double slope = amplitude * shape * 2.0 * ((double)j - xi0) * p->envelope_rate; /* dy_j/dxi0 */
    const double r = amplitude * shape - target[j];
    n00 += slope * slope, n01 += slope * shape, n11 += shape * shape;
    g0 += slope * r, g1 += shape * r, sum += r * r;
  }
  const double f = 0.5 * sum;
  dparam[0] = dparam[1] = 0.0;
  if (output_change) *output_change = 0.0;
  if (g0 == 0.0 && g1 == 0.0) {
    set_info(info, 0, f, 1, 2, "STATIONARY");
    return;
  }
  /* Marquardt's scaling; the floor keeps the damped matrix definite when one
   * column of J vanishes (A = 0 leaves xi0 without influence). */
  const double scale_floor = 1e-12 * fmax(n00, n11);
  const double d0 = fmax(n00, scale_floor), d1 = fmax(n11, scale_floor);
  double lambda = c->damping;
  for (int tries = 1; tries <= c->max_tries; tries++) {
    const double m00 = n00 + lambda * d0, m11 = n11 + lambda * d1;
    const double determinant = m00 * m11 - n01 * n01;
    const double step0 = -(m11 * g0 - n01 * g1) / determinant;
    const double step1 = -(m00 * g1 - n01 * g0) / determinant;
    if (determinant > 0.0 && isfinite(step0) && isfinite(step1)) {
      const double f_new = objective(p, xi0 + step0, amplitude + step1, target);
      if (f_new < f) {
        /* p - p_new, as every physgrad inverse mode returns. */
        dparam[0] = -step0, dparam[1] = -step1;
        if (output_change)
          *output_change =
              sqrt(fmax(n00 * step0 * step0 + 2.0 * n01 * step0 * step1 + n11 * step1 * step1, 0.0));
        set_info(info, tries, f_new, 1, 1, "ACCEPTED");
        return;
      }
    }
    lambda = lambda > 0.0 ? lambda * c->damping_increase : 1e-12 * c->damping_increase;
  }
  set_info(info, c->max_tries, f, 0, -1, "NO_DECREASE");
}

static int check_gauss_newton_config(const char *caller, const CPhysWavePacketGaussNewtonConfig *c) {
  CPhysCheckCaller(caller, isfinite(c->damping) && c->damping >= 0.0, CPHYS_ERROR_ARGUMENT,
                   "damping must be >= 0 and finite, got %g", c->damping);
  CPhysCheckCaller(caller, isfinite(c->damping_increase) && c->damping_increase > 1.0, CPHYS_ERROR_ARGUMENT,
                   "damping_increase must be > 1 and finite, got %g", c->damping_increase);
  CPhysCheckCaller(caller, c->max_tries >= 1, CPHYS_ERROR_ARGUMENT, "max_tries must be >= 1, got %d",
                   c->max_tries);
  return 0;
}

int CPhysWavePacketGaussNewton(CPhysWavePacket packet, const CPhysWavePacketGaussNewtonConfig *config,
                               ptrdiff_t batch, const double *params, const double *target, double *dparams,
                               CPhysSolveInfo *info) {
  const CPhysWavePacketGaussNewtonConfig defaults = CPhysWavePacketGaussNewtonDefaultConfig();
  const CPhysWavePacketGaussNewtonConfig *c = config ? config : &defaults;
  CPhysCall(check_gauss_newton_config(__func__, c));
  CPhysCall(check_call(__func__, packet, batch, params, target, "target", dparams));
  const ptrdiff_t n = packet->config.n_samples;
  const int threads = cphys_loop_threads(batch, 3.0 * pass_seconds(packet));
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (ptrdiff_t b = 0; b < batch; b++) {
    /* Copied first so that dparams may alias params. */
    const double param[2] = {params[2 * b], params[2 * b + 1]};
    gauss_newton_example(packet, c, param, target + b * n, dparams + 2 * b, info ? info + b : NULL, NULL);
  }
  return 0;
}

CPhysWavePacketGaussNewtonSolveConfig CPhysWavePacketGaussNewtonSolveDefaultConfig(void) {
  CPhysWavePacketGaussNewtonSolveConfig config = {CPhysWavePacketGaussNewtonDefaultConfig(), 20, 1e-10};
  return config;
}

/* One example of CPhysWavePacketGaussNewtonSolve. */
static void gauss_newton_solve_example(const struct CPhysWavePacket_private *p,
                                       const CPhysWavePacketGaussNewtonSolveConfig *c, const double *param,
                                       const double *target, double *dparam, CPhysSolveInfo *info) {
  double target_norm = 0.0;
  for (ptrdiff_t j = 0; j < p->config.n_samples; j++) target_norm += target[j] * target[j];
  target_norm = sqrt(target_norm);
  double current[2] = {param[0], param[1]}, step[2], output_change;
  CPhysSolveInfo step_info;
  int steps = 0, converged = 0, reason = -1;
  const char *text = "DIVERGED_MAX_STEPS";
  while (steps < c->max_steps) {
    gauss_newton_example(p, &c->step, current, target, step, &step_info, &output_change);
    if (step_info.reason == 2) {
      converged = 1, reason = 2, text = "CONVERGED_STATIONARY";
      break;
    }
    if (step_info.reason == -1) {
      /* Not even a tiny damped step lowers f: a minimum to working precision. */
      converged = 1, reason = 3, text = "CONVERGED_NO_DECREASE";
      break;
    }
    current[0] -= step[0], current[1] -= step[1];
    steps++;
    if (output_change <= c->output_rtol * target_norm) {
      converged = 1, reason = 1, text = "CONVERGED_OUTPUT_CHANGE";
      break;
    }
  }
  dparam[0] = param[0] - current[0], dparam[1] = param[1] - current[1];
  set_info(info, steps, objective(p, current[0], current[1], target), converged, reason, text);
}

int CPhysWavePacketGaussNewtonSolve(CPhysWavePacket packet,
                                    const CPhysWavePacketGaussNewtonSolveConfig *config, ptrdiff_t batch,
                                    const double *params, const double *target, double *dparams,
                                    CPhysSolveInfo *info) {
  const CPhysWavePacketGaussNewtonSolveConfig defaults = CPhysWavePacketGaussNewtonSolveDefaultConfig();
  const CPhysWavePacketGaussNewtonSolveConfig *c = config ? config : &defaults;
  CPhysCall(check_gauss_newton_config(__func__, &c->step));
  CPhysCheck(c->max_steps >= 1, CPHYS_ERROR_ARGUMENT, "max_steps must be >= 1, got %d", c->max_steps);
  CPhysCheck(isfinite(c->output_rtol) && c->output_rtol >= 0.0, CPHYS_ERROR_ARGUMENT,
             "output_rtol must be >= 0 and finite, got %g", c->output_rtol);
  CPhysCall(check_call(__func__, packet, batch, params, target, "target", dparams));
  const ptrdiff_t n = packet->config.n_samples;
  /* Examples take different numbers of steps: dynamic scheduling balances them. */
  const int threads = cphys_loop_threads(batch, 3.0 * c->max_steps * pass_seconds(packet));
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(dynamic, 4)
  for (ptrdiff_t b = 0; b < batch; b++) {
    /* Copied first so that dparams may alias params. */
    const double param[2] = {params[2 * b], params[2 * b + 1]};
    gauss_newton_solve_example(packet, c, param, target + b * n, dparams + 2 * b, info ? info + b : NULL);
  }
  return 0;
}

/* ---- the physical-gradient contract (cphys/physical_gradient.h) ---- */

/* The op's inverse solver: Gauss-Newton iterated (default settings) towards y - y_step g. */
static int packet_physical_gradient(void *context, ptrdiff_t batch, const double *x, const double *y,
                                    const double *g, double y_step, double *dx, CPhysSolveInfo *info) {
  CPhysWavePacket packet = context;
  CPhysCheck(isfinite(y_step), CPHYS_ERROR_ARGUMENT, "y_step must be finite, got %g", y_step);
  double *target;
  CPhysCall(cphys_target(__func__, batch * packet->config.n_samples, y, g, y_step, &target));
  const int ierr = CPhysWavePacketGaussNewtonSolve(packet, NULL, batch, x, target, dx, info);
  free(target);
  return ierr;
}

int CPhysWavePacketGetInverseProblem(CPhysWavePacket packet, CPhysInverseProblem *problem) {
  CPhysCheck(packet != NULL && problem != NULL, CPHYS_ERROR_ARGUMENT, "packet and problem must not be NULL");
  *problem = (CPhysInverseProblem){2, packet->config.n_samples, packet_physical_gradient, packet};
  return 0;
}
