/* Poisson's equation on a uniform 2-D or 3-D grid, solved directly with FFTW's
 * real-to-real transforms, for zero Dirichlet, zero-flux Neumann or periodic
 * boundaries chosen per axis.
 *
 * The unknowns sit on the nodes of an [ny, nx] or [nz, ny, nx] grid with
 * spacing h_a per axis, and L is the 5-point (2-D) or 7-point (3-D) Laplacian
 *   (L y)[..., j, ...] = sum over axes a of (y[j-1] - 2 y[j] + y[j+1]) / h_a^2,
 * where a neighbour beyond the last node along an axis is, by that axis's boundary,
 *   DIRICHLET: 0.  The boundary nodes lie one spacing outside the grid, as in
 *              CPhysPoisson (cphys/poisson.h): the same operator, bitwise the
 *              same stencil.  Eigenvectors sin(pi p (j+1) / (n+1)), p = 1..n;
 *              the sine transform FFTW_RODFT00 (DST-I).
 *   NEUMANN:   the node's own value (y[-1] = y[0], y[n] = y[n-1]): zero flux
 *              through a wall half a spacing beyond the outermost nodes.  L is
 *              then the grid's graph Laplacian, symmetric; eigenvectors
 *              cos(pi p (j + 1/2) / n), p = 0..n-1; the cosine transforms
 *              FFTW_REDFT10 and its inverse FFTW_REDFT01.
 *   PERIODIC:  the node at the other end (y[-1] = y[n-1], y[n] = y[0]): period
 *              n h.  Eigenvalues from sin^2(pi p / n); FFTW_R2HC and FFTW_HC2R.
 *   DIRICHLET_NEUMANN (NEUMANN_DIRICHLET): each end its own condition above, the
 *              lower end (y[-1]) first.  Eigenvectors sin(2 theta_p (j+1)) with
 *              theta_p = pi (2p+1) / (2 (2n+1)), p = 0..n-1 (mirrored,
 *              j -> n-1-j, for NEUMANN_DIRICHLET).  No FFTW kind has these
 *              symmetry points, so such an axis is transformed by the dense
 *              orthonormal matrix of these vectors (made at Create, O(n) per
 *              node: put a mixed axis first where the problem allows, which
 *              the elimination below solves in O(1) per node).
 * Along every axis the eigenvalue of mode p is -(4 / h^2) sin^2(theta_p), and
 * those of L are their sums over the axes.
 *
 * The forward map is y = P(x) = L^+ x, the (pseudo-)inverse.  Without a
 * Dirichlet side, L annihilates the constants: P then projects x onto zero
 * mean (the part of x that no y can produce: the constant, "incompatible" part
 * of the right-hand side, is dropped) and returns the zero-mean solution, i.e.
 * L P(x) = x - mean(x) and mean(P(x)) = 0.  With a Dirichlet side L is
 * invertible and P = L^-1.  P is symmetric, so the adjoint is the same solve.
 *
 * Method.  The axes after the first are transformed with the kinds above (a
 * Dirichlet last axis as FFTW's r2c transform of each row's odd extension,
 * which is that sine transform: FFTW's own RODFT00 was 2.5 to 4 times slower
 * on grids of 64, 80 and 2048 nodes).  A first axis with a Dirichlet side
 * (at one or both ends) is solved by tridiagonal elimination per mode (exact,
 * O(n), and it saves the slowest transform pair); any other first axis is transformed too
 * and divided by the eigenvalues.  Both are direct: no iterations, no
 * tolerance; the results are exact up to rounding.  Plans are FFTW_ESTIMATE,
 * made once at Create under the library lock: measured plans are chosen by
 * timing, so results would differ in the last bits from run to run.
 *
 * Arrays are borrowed for one call, contiguous in C order [batch, <shape>], any
 * alignment.  Samples run on OpenMP threads (CPhysSetThreads); results do not
 * depend on the thread count.  Every function may be called from any thread,
 * also concurrently on one object; Destroy must not race with other calls. */
#pragma once
#include <stddef.h>

#include "cphys/error.h"
#include "cphys/minimize.h"
#include "cphys/physical_gradient.h"

/* An axis's boundary: one condition for both ends, or (Poisson only) one per
 * end, lower end (index -1) first. */
typedef enum {
  CPHYS_BOUNDARY_DIRICHLET = 0,         /* zero value one spacing beyond the outermost node */
  CPHYS_BOUNDARY_NEUMANN = 1,           /* zero flux through a wall half a spacing beyond it */
  CPHYS_BOUNDARY_PERIODIC = 2,          /* the grid repeats with period n h */
  CPHYS_BOUNDARY_DIRICHLET_NEUMANN = 3, /* Dirichlet at the lower end, Neumann at the upper */
  CPHYS_BOUNDARY_NEUMANN_DIRICHLET = 4  /* Neumann at the lower end, Dirichlet at the upper */
} CPhysBoundary;

/* The condition (DIRICHLET, NEUMANN or PERIODIC) at one end of an axis: upper 0 the lower, 1 the upper. */
static inline CPhysBoundary CPhysBoundaryOfSide(CPhysBoundary axis, int upper) {
  if (axis == CPHYS_BOUNDARY_DIRICHLET_NEUMANN)
    return upper ? CPHYS_BOUNDARY_NEUMANN : CPHYS_BOUNDARY_DIRICHLET;
  if (axis == CPHYS_BOUNDARY_NEUMANN_DIRICHLET)
    return upper ? CPHYS_BOUNDARY_DIRICHLET : CPHYS_BOUNDARY_NEUMANN;
  return axis;
}

typedef struct CPhysPoissonSpectral_private *CPhysPoissonSpectral;

typedef struct {
  int dims;                  /* 2 or 3 */
  ptrdiff_t shape[3];        /* nodes per axis, C order: [ny, nx] or [nz, ny, nx]; each >= 1 */
  double spacing[3];         /* node spacing per axis, same order, length units; > 0, with 1/h^2 a finite,
                                nonzero (normal) double and the sum of 4/h^2 over the axes finite */
  CPhysBoundary boundary[3]; /* per axis, same order */
} CPhysPoissonSpectralConfig;

/* The defaults: 2-D, 64 x 64 nodes, unit spacing, zero Dirichlet on every axis. */
CPHYS_EXTERN CPhysPoissonSpectralConfig CPhysPoissonSpectralDefaultConfig(void);

/* Validates the configuration, computes the eigenvalues and the elimination
 * table, and makes the FFTW plans (all expensive setup happens here). */
CPHYS_EXTERN int CPhysPoissonSpectralCreate(const CPhysPoissonSpectralConfig *config,
                                            CPhysPoissonSpectral *poisson);
/* NULL-safe (also *poisson == NULL); sets *poisson = NULL. */
CPHYS_EXTERN int CPhysPoissonSpectralDestroy(CPhysPoissonSpectral *poisson);
CPHYS_EXTERN int CPhysPoissonSpectralGetConfig(CPhysPoissonSpectral poisson,
                                               CPhysPoissonSpectralConfig *config);
/* 1 when L has the constants as null space (no Dirichlet side), else 0. */
CPHYS_EXTERN int CPhysPoissonSpectralHasNullSpace(CPhysPoissonSpectral poisson, int *has_null_space);

/* y = P(x) = L^+ x for each sample.
 *   x:    borrowed, [batch, <shape>]
 *   y:    written,  [batch, <shape>]; may be the same array as x
 *   info: written when not NULL, [batch]: iterations 0, residual_norm 0,
 *         converged 1, reason 0, reason_text "DIRECT" for a solved sample.
 * A sample whose x holds a NaN or Inf, or whose solution overflows the double
 * range, is not solved: its y is NaN (overflow: the values computed) and its
 * info says converged 0, reason -1, "DIVERGED_NANORINF" (PETSc's name for the
 * same condition, so that both solvers report it alike).  Every other sample
 * is still solved; the call then returns CPHYS_ERROR_NOT_CONVERGED naming the
 * first such sample.  Inputs of any finite magnitude (1e-300 .. 1e300) are
 * solved: samples far from unit size are scaled by a power of 2 (exact). */
CPHYS_EXTERN int CPhysPoissonSpectralSolve(CPhysPoissonSpectral poisson, ptrdiff_t batch, const double *x,
                                           double *y, CPhysSolveInfo *info);

/* Vector-Jacobian product dx = P^T dy = P dy (P is symmetric): the same solve.
 * dy: [batch, <shape>], dx: [batch, <shape>], info: [batch] or NULL; failures as in Solve. */
CPHYS_EXTERN int CPhysPoissonSpectralAdjoint(CPhysPoissonSpectral poisson, ptrdiff_t batch, const double *dy,
                                             double *dx, CPhysSolveInfo *info);

/* x = L y with the boundaries above (no solve).  y: [batch, <shape>], x: [batch, <shape>]. */
CPHYS_EXTERN int CPhysPoissonSpectralApplyLaplacian(CPhysPoissonSpectral poisson, ptrdiff_t batch,
                                                    const double *y, double *x);

/* The physical gradient  x - P^-1(y - y_step*g | x) = L (y_step * g)  (no solve).
 * Without a Dirichlet side the preimage nearest to x keeps x's mean, and L y =
 * x - mean(x), so the same formula holds.  g: [batch, <shape>] (dL/dy), dx:
 * [batch, <shape>].  A non-finite g, or a dx that overflows, is
 * CPHYS_ERROR_NONFINITE naming the first such value (dx is then partly written). */
CPHYS_EXTERN int CPhysPoissonSpectralPhysicalGradient(CPhysPoissonSpectral poisson, ptrdiff_t batch,
                                                      double y_step, const double *g, double *dx);

/* One sample of the forward map as a least-squares problem (n = m = nodes), for
 * the `lbfgs` mode.  The problem borrows the object: keep it alive while used. */
/* The `physical` mode in the contract of cphys/physical_gradient.h (direct:
 * dx = laplace(y_step g) as CPhysPoissonSpectralPhysicalGradient; x, y not needed). */
CPHYS_EXTERN int CPhysPoissonSpectralGetInverseProblem(CPhysPoissonSpectral poisson,
                                                       CPhysInverseProblem *problem);

CPHYS_EXTERN int CPhysPoissonSpectralGetLeastSquaresProblem(CPhysPoissonSpectral poisson,
                                                            CPhysLeastSquaresProblem *problem);
