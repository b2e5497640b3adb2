/* The fluid's inverse modes in the shared contracts, on the public API only:
 * the `physical` mode as a CPhysInverseProblem (physical_gradient.h) and the
 * `lbfgs` mode's least-squares problem (one sample's forward and adjoint) for
 * the shared quasi-Newton code (minimize.h); the marker m0 of each sample is
 * bound (it is data, not an unknown). */
#include <stdlib.h>
#include <string.h>

#include "cphys_internal.h"
#include "fluid_internal.h"

/* m_t = P(v; m0).  The run is recorded so that the adjoint TAO asks for next,
 * at the same v, reuses the tape instead of running the forward pass again. */
static int forward_one(void *context, const double *v, double *m_t) {
  const FluidSampleProblem *p = context;
  return CPhysFluidForward(p->fluid, 1, v, p->m0, m_t, CPHYS_FLUID_RECORD_TAPE);
}

static int adjoint_one(void *context, const double *v, const double *g_mt, double *g_v) {
  const FluidSampleProblem *p = context;
  return CPhysFluidAdjoint(p->fluid, 1, v, p->m0, g_mt, g_v, NULL);
}

static int select_sample(void *context, ptrdiff_t sample) {
  FluidSampleProblem *p = context;
  CPhysCheck(sample >= 0 && sample < p->batch, CPHYS_ERROR_ARGUMENT, "sample %td is outside the batch of %td",
             sample, p->batch);
  p->m0 = p->markers + sample * p->fluid->n;
  return 0;
}

/* Binds the markers of a batch for the next problem's calls (the problems' context). */
static int bind_markers(CPhysFluid fluid, ptrdiff_t batch, const double *m0, const void *problem,
                        const char *caller) {
  CPhysCall(fluid_check_batch(fluid, batch, 2, caller));
  CPhysCall(fluid_check_array(m0, batch * fluid->n, "m0", 1, caller));
  CPhysCheckCaller(caller, problem != NULL, CPHYS_ERROR_ARGUMENT, "problem must not be NULL");
  fluid->sample_problem = (FluidSampleProblem){fluid, m0, m0, batch};
  return 0;
}

int CPhysFluidGetLeastSquaresProblem(CPhysFluid fluid, ptrdiff_t batch, const double *m0,
                                     CPhysLeastSquaresProblem *problem) {
  CPhysCall(bind_markers(fluid, batch, m0, problem, __func__));
  *problem = (CPhysLeastSquaresProblem){2 * fluid->n,           fluid->n,     forward_one, adjoint_one,
                                        &fluid->sample_problem, select_sample};
  return 0;
}

int CPhysFluidLbfgsPhysicalGradient(CPhysFluid fluid, const CPhysLeastSquaresConfig *config, ptrdiff_t batch,
                                    const double *v0, const double *m0, const double *y, const double *g,
                                    double y_step, double *dv0, CPhysSolveInfo *info) {
  CPhysLeastSquaresProblem problem;
  CPhysCall(CPhysFluidGetLeastSquaresProblem(fluid, batch, m0, &problem));
  CPhysCheck(config != NULL, CPHYS_ERROR_ARGUMENT, "config must not be NULL");
  CPhysCall(fluid_check_array(v0, batch * 2 * fluid->n, "v0", 1, __func__));
  CPhysCall(fluid_check_array(y, batch * fluid->n, "y", 1, __func__));
  CPhysCall(fluid_check_array(g, batch * fluid->n, "g", 1, __func__));
  CPhysCheck(batch == 0 || dv0 != NULL, CPHYS_ERROR_ARGUMENT, "dv0 must not be NULL");
  return CPhysQuasiNewtonPhysicalGradient(config, &problem, batch, v0, y, g, y_step, dv0, info);
}

/* ---- the physical-gradient contract (cphys/physical_gradient.h) ---- */

int CPhysFluidSummarizeSolves(CPhysFluid fluid, const CPhysFluidPass *passes, int count, ptrdiff_t batch,
                              CPhysSolveInfo *info) {
  CPhysCheck(fluid != NULL && (count == 0 || passes != NULL), CPHYS_ERROR_ARGUMENT,
             "fluid and passes must not be NULL");
  CPhysCheck(batch >= 0 && (batch == 0 || info != NULL), CPHYS_ERROR_ARGUMENT, "info must hold the batch");
  for (ptrdiff_t s = 0; s < batch; s++) {
    CPhysSolveInfo *total = &info[s];
    memset(total, 0, sizeof *total);
    total->converged = 1;
    for (int p = 0; p < count; p++) {
      ptrdiff_t recorded = 0;
      int solves = 0;
      if (CPhysFluidGetSolveCount(fluid, passes[p], &recorded, &solves) || recorded != batch) continue;
      for (int solve = 0; solve < solves; solve++) {
        CPhysSolveInfo one;
        if (CPhysFluidGetSolveInfo(fluid, passes[p], s, solve, &one)) continue;
        total->iterations += one.iterations;
        if (one.residual_norm > total->residual_norm) total->residual_norm = one.residual_norm;
        if (total->converged) {
          total->converged = one.converged;
          total->reason = one.reason;
          memcpy(total->reason_text, one.reason_text, sizeof total->reason_text);
        }
      }
    }
  }
  return 0;
}

static int fluid_physical_gradient(void *context, ptrdiff_t batch, const double *v0, const double *y,
                                   const double *g, double y_step, double *dv0, CPhysSolveInfo *info) {
  const FluidSampleProblem *bound = context;
  CPhysFluid fluid = bound->fluid;
  CPhysCheck(batch == bound->batch, CPHYS_ERROR_ARGUMENT, "batch %td differs from the bound markers' %td",
             batch, bound->batch);
  CPhysCheck(isfinite(y_step), CPHYS_ERROR_ARGUMENT, "y_step must be finite, got %g", y_step);
  double *target;
  CPhysCall(cphys_target(__func__, batch * fluid->n, y, g, y_step, &target));
  const int ierr = CPhysFluidPhysicalInverse(fluid, batch, v0, bound->markers, target, NULL, dv0);
  free(target);
  if ((ierr == 0 || ierr == CPHYS_ERROR_NOT_CONVERGED) && info) {
    const CPhysFluidPass passes[] = {CPHYS_FLUID_PASS_FORWARD, CPHYS_FLUID_PASS_REVERSE};
    const int summary = CPhysFluidSummarizeSolves(fluid, passes, 2, batch, info);
    if (summary) return summary;
  }
  return ierr;
}

int CPhysFluidGetInverseProblem(CPhysFluid fluid, ptrdiff_t batch, const double *m0,
                                CPhysInverseProblem *problem) {
  CPhysCall(bind_markers(fluid, batch, m0, problem, __func__));
  *problem = (CPhysInverseProblem){2 * fluid->n, fluid->n, fluid_physical_gradient, &fluid->sample_problem};
  return 0;
}
