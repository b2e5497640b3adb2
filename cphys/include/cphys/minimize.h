/* Generic least-squares minimizer on PETSc TAO (limited-memory quasi-Newton).
 *
 * Minimizes  f(x) = 1/2 ||P(x) - target||^2  for one sample, starting from the
 * given x, with P given by a forward and an adjoint (vector-Jacobian product)
 * callback.  Without bounds TAO's TAOLMVM is used, with bounds TAOBLMVM.  This
 * is the machinery of every op's `lbfgs` gradient mode and of the wave-packet
 * fitter.  TAO options can be set with the options prefix, e.g.
 * "-physgrad_heat_lbfgs_tao_lmvm_recycle". */
#pragma once
#include <stddef.h>

#include "cphys/error.h"

/* y = P(x).  x: [n], y: [m].  Returns 0 or a cphys error code. */
typedef int (*CPhysForwardFn)(void *context, const double *x, double *y);
/* dx = J(x)^T dy.  x: [n], dy: [m], dx: [n].  Returns 0 or a cphys error code. */
typedef int (*CPhysAdjointFn)(void *context, const double *x, const double *dy, double *dx);

typedef struct {
  int max_iterations;         /* TAO iterations, e.g. 32 as in the paper; > 0 */
  double gradient_atol;       /* stop when ||grad f|| < gradient_atol (0: never) */
  double gradient_rtol;       /* stop when ||grad f|| / f < gradient_rtol (0: never) */
  const double *lower;        /* [n] lower bounds, or NULL for none; each <= upper, -inf (none) or
                                 finite within +-DBL_MAX/4 (PETSc's infinity), not NaN */
  const double *upper;        /* [n] upper bounds, or NULL for none; +inf (none) or finite within
                                 +-DBL_MAX/4, not NaN */
  const char *options_prefix; /* PETSc options prefix, or NULL */
} CPhysLeastSquaresConfig;

/* x: [n], in: the start, out: the last iterate (unchanged on failure).  target: [m].
 * info: written on success when not NULL (iterations, final gradient norm, TAO reason).
 * Reaching max_iterations is not an error: info->converged says whether a
 * tolerance was met.  A non-finite objective or gradient is
 * CPHYS_ERROR_NONFINITE; a callback's nonzero code is returned as it is (with a
 * message naming the callback when the callback recorded none).
 * The callbacks run on the calling thread while it holds the library lock
 * (recursive: they may call cphys), so they must not wait for other threads
 * that call cphys; solves from different threads run one at a time. */
CPHYS_EXTERN int CPhysLeastSquaresMinimize(const CPhysLeastSquaresConfig *config, ptrdiff_t n, ptrdiff_t m,
                                           CPhysForwardFn forward, CPhysAdjointFn adjoint, void *context,
                                           const double *target, double *x, CPhysSolveInfo *info);

/* A least-squares problem for the batched physical gradient below: one
 * sample's forward and adjoint, x in R^n, y in R^m.  Every op's `lbfgs` mode
 * describes its problem this way and runs through that one function.
 * Zero-initialize it before setting members (C: `= {0}`), so that members a
 * caller does not know of (select_sample) are NULL. */
typedef struct {
  ptrdiff_t n, m;
  CPhysForwardFn forward;
  CPhysAdjointFn adjoint;
  void *context;
  /* NULL, or called with the sample's index before each sample is minimized:
   * for a P that depends on per-sample data besides x (the fluid's marker m0).
   * Returns 0 or a cphys error code (which ends the call). */
  int (*select_sample)(void *context, ptrdiff_t sample);
} CPhysLeastSquaresProblem;

/* The `lbfgs` physical gradient of DESIGN section 1, per sample s:
 *   dx[s] = x[s] - x_n   where x_n = config->max_iterations quasi-Newton steps on
 *   1/2 ||P(x') - (y[s] - y_step * g[s])||^2 from x' = x[s].
 * x: [batch, n]; y: [batch, m] (= P(x)); g: [batch, m] (dL/dy); dx: [batch, n];
 * info: [batch] or NULL. */
CPHYS_EXTERN int CPhysQuasiNewtonPhysicalGradient(const CPhysLeastSquaresConfig *config,
                                                  const CPhysLeastSquaresProblem *problem, ptrdiff_t batch,
                                                  const double *x, const double *y, const double *g,
                                                  double y_step, double *dx, CPhysSolveInfo *info);
