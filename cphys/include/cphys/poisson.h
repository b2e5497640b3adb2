/* Poisson's equation on a uniform 2-D grid with zero Dirichlet boundary.
 *
 * The unknowns sit on the ny x nx interior nodes; the boundary nodes one cell
 * outside the grid hold 0.  The 5-point Laplacian is
 *   (L y)[j,i] = (y[j,i+1] - 2 y[j,i] + y[j,i-1]) / dx^2 + (y[j+1,i] - 2 y[j,i] + y[j-1,i]) / dy^2.
 * The forward map of the op is  y = P(x) = L^-1 x,  solved with PETSc KSP (CG on
 * the SPD matrix -L; solver and preconditioner replaceable through the options prefix, e.g.
 * -physgrad_poisson_pc_type gamg).  The default preconditioner is a sparse
 * Cholesky factorization of -L, made at Create, so CG converges in one
 * iteration to rounding level (GAMG beyond 512 x 512 nodes, where the factor
 * grows too large; benchmarks/RESULTS.md has the measurements).  Its analytic
 * inverse is x = L y (no solve), which is the physical gradient; its adjoint is
 * P itself (L is symmetric), one more solve.
 *
 * Thread safety: every function may be called from any thread; solves on all
 * objects are serialized by the library lock (PETSc is not thread-safe), the
 * stencil functions run without it. */
#pragma once
#include <stddef.h>

#include "cphys/error.h"
#include "cphys/minimize.h"
#include "cphys/physical_gradient.h"

typedef struct CPhysPoisson_private *CPhysPoisson;

typedef struct {
  ptrdiff_t shape[2];         /* interior nodes per axis, C order: [ny, nx]; each >= 1 */
  double spacing[2];          /* node spacing per axis [dy, dx], length units; > 0, with 1/h^2
                                 a finite, nonzero (normal) double and 2 (1/dy^2 + 1/dx^2) finite */
  double rtol;                /* KSP relative tolerance (of the preconditioned residual); in (0, 1) */
  double atol;                /* KSP absolute tolerance; >= 0 */
  int max_iterations;         /* beyond it the solve fails with CPHYS_ERROR_NOT_CONVERGED; >= 1 */
  const char *options_prefix; /* PETSc options prefix, e.g. "physgrad_poisson_"; NULL for none */
} CPhysPoissonConfig;

/* The defaults: 64 x 64 unit cells, rtol 1e-10, atol 1e-50, 10000 iterations, "physgrad_poisson_". */
CPHYS_EXTERN CPhysPoissonConfig CPhysPoissonDefaultConfig(void);

/* Builds the matrix and the KSP (all expensive setup happens here). */
CPHYS_EXTERN int CPhysPoissonCreate(const CPhysPoissonConfig *config, CPhysPoisson *poisson);
/* NULL-safe; sets *poisson = NULL. */
CPHYS_EXTERN int CPhysPoissonDestroy(CPhysPoisson *poisson);

/* y = L^-1 x for each sample.
 *   x:    borrowed, [batch, ny, nx]
 *   y:    written,  [batch, ny, nx]
 *   info: written when not NULL, [batch]: iterations, residual, reason per sample.
 * Every sample is solved even when one fails; on failure y holds each sample's
 * last iterate and the return value is CPHYS_ERROR_NOT_CONVERGED, with the
 * first failing sample and PETSc's reason in the message (a NaN or Inf input
 * fails this way: KSP_DIVERGED_NANORINF). */
CPHYS_EXTERN int CPhysPoissonSolve(CPhysPoisson poisson, ptrdiff_t batch, const double *x, double *y,
                                   CPhysSolveInfo *info);

/* Vector-Jacobian product of the forward map: dx = L^-T dy = L^-1 dy (one solve).
 * dy: [batch, ny, nx], dx: [batch, ny, nx], info: [batch] or NULL; failures as in Solve. */
CPHYS_EXTERN int CPhysPoissonAdjoint(CPhysPoisson poisson, ptrdiff_t batch, const double *dy, double *dx,
                                     CPhysSolveInfo *info);

/* x = L y, the stencil above (no solve).  y: [batch, ny, nx], x: [batch, ny, nx]. */
CPHYS_EXTERN int CPhysPoissonApplyLaplacian(CPhysPoisson poisson, ptrdiff_t batch, const double *y,
                                            double *x);

/* The physical gradient  x - P^-1(y - y_step*g | x) = L (y_step * g)  (since L y = x).
 * g: [batch, ny, nx] (dL/dy), dx: [batch, ny, nx].  No solve.  A non-finite g,
 * or a dx that overflows, is CPHYS_ERROR_NONFINITE (the message names the
 * first such value; dx is then partly written). */
CPHYS_EXTERN int CPhysPoissonPhysicalGradient(CPhysPoisson poisson, ptrdiff_t batch, double y_step,
                                              const double *g, double *dx);

/* The configuration the object was created with (options_prefix points into the object). */
CPHYS_EXTERN int CPhysPoissonGetConfig(CPhysPoisson poisson, CPhysPoissonConfig *config);

/* One sample of the forward map as a least-squares problem (n = m = ny*nx), for
 * the `lbfgs` mode.  The problem borrows the object: keep it alive while used. */
/* The `physical` mode in the contract of cphys/physical_gradient.h (direct:
 * dx = CPhysPoissonPhysicalGradient's laplace(y_step g); x and y not needed). */
CPHYS_EXTERN int CPhysPoissonGetInverseProblem(CPhysPoisson poisson, CPhysInverseProblem *problem);

CPHYS_EXTERN int CPhysPoissonGetLeastSquaresProblem(CPhysPoisson poisson, CPhysLeastSquaresProblem *problem);
