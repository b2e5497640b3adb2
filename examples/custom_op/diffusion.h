/* An out-of-tree physics object in plain C: 1-D implicit diffusion with zero
 * Dirichlet boundaries, y = (I - nu L)^-steps x per sample (L: the unit-spacing
 * second difference).  High frequencies are damped by up to (1 + 4 nu)^-steps,
 * so plain backpropagation sees an ill-conditioned problem, while the inverse,
 * x = (I - nu L)^steps y, is exact and explicit: the physical gradient.
 *
 * It follows the contract of physgrad's objects (Create/Destroy, Forward,
 * Adjoint, PhysicalGradient, GetLeastSquaresProblem) and cphys's error
 * convention: every function returns 0 or a CPHYS_ERROR_* code with a message
 * (cphys/error.h, CPhysCheck), which physgrad::check_cphys turns into a Python
 * exception.  No torch here: diffusion_op.cpp is the glue. */
#pragma once
#include <stddef.h>

#include "cphys/error.h"
#include "cphys/minimize.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct Diffusion1D_private *Diffusion1D;

typedef struct {
  ptrdiff_t n; /* grid points, >= 1 */
  double nu;   /* diffusion number per step (nu_t / h^2), finite, >= 0 */
  int steps;   /* implicit steps, >= 1 */
} Diffusion1DConfig;

int Diffusion1DCreate(const Diffusion1DConfig *config, Diffusion1D *diffusion);
/* NULL-safe; sets *diffusion to NULL. */
int Diffusion1DDestroy(Diffusion1D *diffusion);
/* y = P(x).  x, y: [batch, n]; may alias.  A non-finite x is CPHYS_ERROR_NONFINITE. */
int Diffusion1DForward(Diffusion1D diffusion, ptrdiff_t batch, const double *x, double *y);
/* dx = J^T g = P g (P is symmetric).  g, dx: [batch, n]; may alias. */
int Diffusion1DAdjoint(Diffusion1D diffusion, ptrdiff_t batch, const double *g, double *dx);
/* dx = x - P^-1(y - y_step g) = P^-1(y_step g) (P is linear: x and y are not needed).
 * x, y, g, dx: [batch, n]; info: [batch] or NULL (residual ||P(x - dx) - (y - y_step g)||). */
int Diffusion1DPhysicalGradient(Diffusion1D diffusion, ptrdiff_t batch, const double *x, const double *y,
                                const double *g, double y_step, double *dx, CPhysSolveInfo *info);
/* One sample's forward and adjoint, for physgrad::lbfgs_physical_gradient. */
int Diffusion1DGetLeastSquaresProblem(Diffusion1D diffusion, CPhysLeastSquaresProblem *problem);

#ifdef __cplusplus
}
#endif
