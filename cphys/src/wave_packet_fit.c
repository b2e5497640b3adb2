/* The per-example L-BFGS-B fit of wave packets (the paper's figure-1 baseline).
 * Uses only the public wave-packet API and CPhysLeastSquaresMinimize (and the
 * internal finiteness helper). */
#include <math.h>

#include "cphys/minimize.h"
#include "cphys/wave_packet.h"
#include "finite.h"

CPhysWavePacketFitConfig CPhysWavePacketFitDefaultConfig(void) {
  CPhysWavePacketFitConfig config = {
      .initial = {128.0, 2.0}, /* paper B.1: "initial guess of xi0 = 128 and A = 2" */
      .use_initial = 1,
      .bounded = 1,
      .lower = {25.6, 1.0}, /* the sampling ranges of B.1 */
      .upper = {230.4, 4.0},
      .max_iterations = 1000,
      .gradient_atol = 1e-8,
      .gradient_rtol = 0.0,
      .options_prefix = "physgrad_wave_packet_fit_",
  };
  return config;
}

static int check_fit_config(const CPhysWavePacketFitConfig *c) {
  for (int k = 0; k < 2; k++) {
    CPhysCheck(!c->use_initial || isfinite(c->initial[k]), CPHYS_ERROR_ARGUMENT,
               "initial[%d] must be finite, got %g", k, c->initial[k]);
    CPhysCheck(!c->bounded || (isfinite(c->lower[k]) && isfinite(c->upper[k]) && c->lower[k] < c->upper[k]),
               CPHYS_ERROR_ARGUMENT, "bounds of parameter %d must be finite with lower < upper, got [%g, %g]",
               k, c->lower[k], c->upper[k]);
  }
  CPhysCheck(c->max_iterations >= 1, CPHYS_ERROR_ARGUMENT, "max_iterations must be >= 1, got %d",
             c->max_iterations);
  CPhysCheck(isfinite(c->gradient_atol) && c->gradient_atol >= 0.0, CPHYS_ERROR_ARGUMENT,
             "gradient_atol must be >= 0 and finite, got %g", c->gradient_atol);
  CPhysCheck(isfinite(c->gradient_rtol) && c->gradient_rtol >= 0.0, CPHYS_ERROR_ARGUMENT,
             "gradient_rtol must be >= 0 and finite, got %g", c->gradient_rtol);
  return 0;
}

/* The minimizer's callbacks: one example is a batch of one. */
static int fit_forward(void *context, const double *params, double *y) {
  return CPhysWavePacketForward((CPhysWavePacket)context, 1, params, y);
}

static int fit_adjoint(void *context, const double *params, const double *dy, double *dparams) {
  return CPhysWavePacketAdjoint((CPhysWavePacket)context, 1, params, dy, dparams);
}

int CPhysWavePacketGetLeastSquaresProblem(CPhysWavePacket packet, CPhysLeastSquaresProblem *problem) {
  CPhysWavePacketConfig shape;
  CPhysCheck(packet != NULL && problem != NULL, CPHYS_ERROR_ARGUMENT, "packet and problem must not be NULL");
  CPhysCall(CPhysWavePacketGetConfig(packet, &shape));
  *problem = (CPhysLeastSquaresProblem){0}; /* select_sample and later members: none */
  problem->n = 2, problem->m = shape.n_samples;
  problem->forward = fit_forward, problem->adjoint = fit_adjoint, problem->context = packet;
  return 0;
}

int CPhysWavePacketFit(CPhysWavePacket packet, const CPhysWavePacketFitConfig *config, ptrdiff_t batch,
                       const double *target, double *params, CPhysSolveInfo *info) {
  const CPhysWavePacketFitConfig defaults = CPhysWavePacketFitDefaultConfig();
  const CPhysWavePacketFitConfig *c = config ? config : &defaults;
  CPhysWavePacketConfig shape;
  CPhysCheck(packet != NULL, CPHYS_ERROR_ARGUMENT, "packet must not be NULL");
  CPhysCall(CPhysWavePacketGetConfig(packet, &shape));
  CPhysCall(check_fit_config(c));
  CPhysCheck(batch >= 0, CPHYS_ERROR_ARGUMENT, "batch must be >= 0, got %td", batch);
  if (batch == 0) return 0;
  CPhysCheck(target != NULL && params != NULL, CPHYS_ERROR_ARGUMENT,
             "target and params must not be NULL when batch = %td", batch);
  const ptrdiff_t n = shape.n_samples;
  ptrdiff_t k = cphys_first_non_finite(target, batch * n);
  CPhysCheck(k < 0, CPHYS_ERROR_NONFINITE, "target[%td][%td] = %g is not finite", k / n, k % n, target[k]);
  k = c->use_initial ? -1 : cphys_first_non_finite(params, 2 * batch);
  CPhysCheck(k < 0, CPHYS_ERROR_NONFINITE, "params[%td][%d] = %g is not finite (start)", k / 2, (int)(k % 2),
             params[k]);

  const CPhysLeastSquaresConfig solver = {.max_iterations = c->max_iterations,
                                          .gradient_atol = c->gradient_atol,
                                          .gradient_rtol = c->gradient_rtol,
                                          .lower = c->bounded ? c->lower : NULL,
                                          .upper = c->bounded ? c->upper : NULL,
                                          .options_prefix = c->options_prefix};
  CPhysLeastSquaresProblem problem;
  CPhysCall(CPhysWavePacketGetLeastSquaresProblem(packet, &problem));
  for (ptrdiff_t b = 0; b < batch; b++) {
    double x[2];
    for (int k = 0; k < 2; k++) {
      x[k] = c->use_initial ? c->initial[k] : params[2 * b + k];
      /* A start outside the box is moved onto it, so that the first iterate is feasible. */
      if (c->bounded) x[k] = fmin(fmax(x[k], c->lower[k]), c->upper[k]);
    }
    CPhysSolveInfo local;
    const int ierr =
        CPhysLeastSquaresMinimize(&solver, problem.n, problem.m, problem.forward, problem.adjoint,
                                  problem.context, target + b * n, x, info ? info + b : &local);
    if (ierr)
      return CPhysSetError(ierr, __func__, "example %td of %td: %s", b, batch, CPhysGetLastErrorMessage());
    params[2 * b] = x[0], params[2 * b + 1] = x[1];
  }
  return 0;
}
