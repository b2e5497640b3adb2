/* The batched quasi-Newton physical gradient shared by every op's `lbfgs` mode. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cphys/minimize.h"

int CPhysQuasiNewtonPhysicalGradient(const CPhysLeastSquaresConfig *config,
                                     const CPhysLeastSquaresProblem *problem, ptrdiff_t batch,
                                     const double *x, const double *y, const double *g, double y_step,
                                     double *dx, CPhysSolveInfo *info) {
  CPhysCheck(config != NULL && problem != NULL, CPHYS_ERROR_ARGUMENT, "config and problem must not be NULL");
  CPhysCheck(problem->n >= 1 && problem->m >= 1, CPHYS_ERROR_ARGUMENT, "problem sizes must be >= 1");
  CPhysCheck(batch >= 0, CPHYS_ERROR_ARGUMENT, "batch must be >= 0, got %td", batch);
  CPhysCheck(batch == 0 || (x && y && g && dx), CPHYS_ERROR_ARGUMENT, "arrays must not be NULL");
  CPhysCheck(isfinite(y_step), CPHYS_ERROR_ARGUMENT, "y_step must be finite, got %g", y_step);
  const ptrdiff_t n = problem->n, m = problem->m;
  double *target = malloc(sizeof(double) * (size_t)m);
  CPhysCheck(target != NULL, CPHYS_ERROR_MEMORY, "cannot allocate %td doubles", m);
  int ierr = 0;
  char first_failure[1024] = "";
  for (ptrdiff_t s = 0; s < batch && !ierr; s++) {
    const double *xs = x + s * n, *ys = y + s * m, *gs = g + s * m;
    double *dxs = dx + s * n;
    for (ptrdiff_t k = 0; k < m; k++) target[k] = ys[k] - y_step * gs[k];
    /* The minimizer iterates in place, starting from x; dx is that buffer. */
    memcpy(dxs, xs, sizeof(double) * (size_t)n);
    CPhysSolveInfo sample_info;
    memset(&sample_info, 0, sizeof sample_info);
    if (problem->select_sample) {
      ierr = problem->select_sample(problem->context, s);
      if (ierr) break;
    }
    const int serr = CPhysLeastSquaresMinimize(config, n, m, problem->forward, problem->adjoint,
                                               problem->context, target, dxs, &sample_info);
    if (serr == CPHYS_ERROR_NOT_CONVERGED) {
      /* An inner solve of P (a Poisson or pressure CG) failed: as for any solver
       * failure, this sample keeps its start (dx = 0), the batch goes on, and the
       * call reports the first failure (the caller raises or warns). */
      memcpy(dxs, xs, sizeof(double) * (size_t)n);
      snprintf(sample_info.reason_text, sizeof sample_info.reason_text, "INNER_SOLVE_NOT_CONVERGED");
      if (!first_failure[0])
        snprintf(first_failure, sizeof first_failure, "sample %td: %s", s, CPhysGetLastErrorMessage());
    } else if (serr) {
      snprintf(sample_info.reason_text, sizeof sample_info.reason_text, "ERROR");
      ierr = serr;
    }
    if (info) info[s] = sample_info;
    for (ptrdiff_t k = 0; k < n; k++) dxs[k] = xs[k] - dxs[k];
  }
  free(target);
  if (ierr) return ierr;
  CPhysCheck(!first_failure[0], CPHYS_ERROR_NOT_CONVERGED,
             "L-BFGS stopped on an unconverged inner solve, first at %s", first_failure);
  return 0;
}
