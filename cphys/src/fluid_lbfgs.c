/* The fluid's `lbfgs` physical gradient: its least-squares problem (one
 * sample's forward and adjoint, the marker m0 of that sample held fixed: it is
 * data, not an unknown) for the shared quasi-Newton code (minimize.h). */
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

int CPhysFluidGetLeastSquaresProblem(CPhysFluid fluid, ptrdiff_t batch, const double *m0,
                                     CPhysLeastSquaresProblem *problem) {
  CPhysCall(fluid_check_batch(fluid, batch, 2, __func__));
  CPhysCall(fluid_check_array(m0, batch * fluid->n, "m0", 1, __func__));
  CPhysCheck(problem != NULL, CPHYS_ERROR_ARGUMENT, "problem must not be NULL");
  fluid->sample_problem = (FluidSampleProblem){fluid, m0, m0, batch};
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
