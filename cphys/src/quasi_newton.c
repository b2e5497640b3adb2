/* The batched quasi-Newton physical gradient shared by every op's `lbfgs` mode. */
#include <math.h>
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
  for (ptrdiff_t s = 0; s < batch && !ierr; s++) {
    const double *xs = x + s * n, *ys = y + s * m, *gs = g + s * m;
    double *dxs = dx + s * n;
    for (ptrdiff_t k = 0; k < m; k++) target[k] = ys[k] - y_step * gs[k];
    /* The minimizer iterates in place, starting from x; dx is that buffer. */
    memcpy(dxs, xs, sizeof(double) * (size_t)n);
    CPhysSolveInfo sample_info;
    ierr = CPhysLeastSquaresMinimize(config, n, m, problem->forward, problem->adjoint, problem->context, target,
                                     dxs, &sample_info);
    if (info) info[s] = sample_info;
    for (ptrdiff_t k = 0; k < n; k++) dxs[k] = xs[k] - dxs[k];
  }
  free(target);
  return ierr;
}
