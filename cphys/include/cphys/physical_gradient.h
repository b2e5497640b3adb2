/* The one C contract of every op's `physical` gradient mode (DESIGN section 1):
 *
 *   dx[s] = x[s] - P^-1(y[s] - y_step g[s] | x[s])      for every sample s < batch,
 *
 * x: [batch, n] (the op's input), y: [batch, m] (= P(x)), g: [batch, m]
 * (dL/dy), dx: [batch, n] (written), info: [batch] per-sample statistics of the
 * inverse solver (written when not NULL; a direct inverse reports 0 iterations,
 * converged, reason "DIRECT").  Each op describes its inverse as a
 * CPhysInverseProblem (CPhys<Op>GetInverseProblem), whose context is the op's
 * object bound to any per-sample data P needs besides x (the sine's
 * coefficients a, the fluid's marker m0); the glue calls them all the same way
 * (physgrad::physical_gradient).  An inverse solver that does not converge for
 * a sample returns CPHYS_ERROR_NOT_CONVERGED after the whole batch, with dx
 * holding that sample's last iterate and info saying which failed.
 *
 * The `lbfgs` mode's contract is its sibling in minimize.h
 * (CPhysLeastSquaresProblem, CPhysQuasiNewtonPhysicalGradient). */
#pragma once
#include <stddef.h>

#include "cphys/error.h"

typedef int (*CPhysPhysicalGradientFn)(void *context, ptrdiff_t batch, const double *x, const double *y,
                                       const double *g, double y_step, double *dx, CPhysSolveInfo *info);

typedef struct {
  ptrdiff_t n, m; /* per sample: entries of x and of y */
  CPhysPhysicalGradientFn physical_gradient;
  void *context;
} CPhysInverseProblem;

/* Fills info[0 .. batch) with the statistics of a direct (non-iterative)
 * inverse: 0 iterations, residual 0, converged, reason `reason` ("DIRECT"). */
CPHYS_EXTERN void CPhysSetDirectInfo(CPhysSolveInfo *info, ptrdiff_t batch, const char *reason);
