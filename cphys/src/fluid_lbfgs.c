/* The fluid's `lbfgs` physical gradient: TAO L-BFGS on one sample at a time,
 * the marker m0 of that sample held fixed (it is data, not an unknown). */
#include <stdio.h>
#include <string.h>

#include "fluid_internal.h"

/* What the least-squares callbacks of one sample need. */
typedef struct {
  CPhysFluid fluid;
  const double *m0; /* [n], the sample's marker */
} SampleProblem;

/* m_t = P(v; m0).  The run is recorded so that the adjoint TAO asks for next,
 * at the same v, reuses the tape instead of running the forward pass again. */
static int forward_one(void *context, const double *v, double *m_t) {
  const SampleProblem *p = context;
  return CPhysFluidForward(p->fluid, 1, v, p->m0, m_t, CPHYS_FLUID_RECORD_TAPE);
}

static int adjoint_one(void *context, const double *v, const double *g_mt, double *g_v) {
  const SampleProblem *p = context;
  return CPhysFluidAdjoint(p->fluid, 1, v, p->m0, g_mt, g_v, NULL);
}

int CPhysFluidLbfgsPhysicalGradient(CPhysFluid fluid, const CPhysLeastSquaresConfig *config, ptrdiff_t batch,
                                    const double *v0, const double *m0, const double *y, const double *g,
                                    double y_step, double *dv0, CPhysSolveInfo *info) {
  CPhysCall(fluid_check_batch(fluid, batch, 2, __func__));
  CPhysCheck(config != NULL, CPHYS_ERROR_ARGUMENT, "config must not be NULL");
  CPhysCall(fluid_check_array(v0, batch * 2 * fluid->n, "v0", 1, __func__));
  CPhysCall(fluid_check_array(m0, batch * fluid->n, "m0", 1, __func__));
  CPhysCall(fluid_check_array(y, batch * fluid->n, "y", 1, __func__));
  CPhysCall(fluid_check_array(g, batch * fluid->n, "g", 1, __func__));
  CPhysCheck(batch == 0 || dv0 != NULL, CPHYS_ERROR_ARGUMENT, "dv0 must not be NULL");
  const ptrdiff_t n = fluid->n;
  SampleProblem sample = {fluid, NULL};
  const CPhysLeastSquaresProblem problem = {2 * n, n, forward_one, adjoint_one, &sample};
  char first_failure[1024] = "";
  for (ptrdiff_t s = 0; s < batch; s++) {
    CPhysSolveInfo sample_info;
    memset(&sample_info, 0, sizeof sample_info);
    sample.m0 = m0 + s * n;
    const int ierr = CPhysQuasiNewtonPhysicalGradient(config, &problem, 1, v0 + s * 2 * n, y + s * n,
                                                      g + s * n, y_step, dv0 + s * 2 * n, &sample_info);
    if (ierr == CPHYS_ERROR_NOT_CONVERGED) {
      /* The minimizer leaves its start on failure: dv0 = 0 for this sample. */
      memset(dv0 + s * 2 * n, 0, (size_t)(2 * n) * sizeof *dv0);
      sample_info.converged = 0;
      snprintf(sample_info.reason_text, sizeof sample_info.reason_text, "PRESSURE_NOT_CONVERGED");
      if (!first_failure[0])
        snprintf(first_failure, sizeof first_failure, "sample %td: %s", s, CPhysGetLastErrorMessage());
    } else if (ierr) {
      return ierr;
    }
    if (info) info[s] = sample_info;
  }
  CPhysCheck(!first_failure[0], CPHYS_ERROR_NOT_CONVERGED,
             "L-BFGS stopped on an unconverged pressure solve, first at %s", first_failure);
  return 0;
}
