/* The heat equation on a 2-D or 3-D grid, solved exactly in Fourier space (FFTW3).
 * Periodic on every axis unless the configuration asks for zero Dirichlet or
 * zero-flux Neumann boundaries (per axis; see "Boundaries" below).
 *
 * Forward map (diffusion over the time t with diffusivity nu):
 *   y = P(x) = F^-1( F(x) * exp(-|k|^2 nu_t) ),   nu_t = nu * t,
 * with F the 2-D DFT of the ny x nx grid and k = 2 pi p / (n h) for the signed
 * mode index p in (-n/2, n/2] (numpy's 2 pi fftfreq).  The mean is conserved;
 * P is symmetric, so the adjoint is P itself.
 *
 * Physical gradient: the stable probabilistic inverse of the paper's appendix
 * B.4.  Per sample and Fourier coefficient of the step it weighs signal against
 * noise and multiplies by exp(s |k|^2 nu_t), s in [-1, 1]: up to the exact
 * inverse where confidently signal, unchanged where undecided, down to the
 * forward kernel where noise.  The rule, its constants and why:
 * docs/heat-inverse.md.
 *
 * All arrays are borrowed for one call, contiguous in C order [batch, ny, nx],
 * any alignment; an output may be the same array as the input.  Every input is
 * checked to be finite: NaN or Inf gives CPHYS_ERROR_NONFINITE (the output is
 * then unspecified).  An output that would not be finite (only possible in
 * CPhysHeatInverseExact, or for inputs within a factor ~nx*ny of DBL_MAX) is
 * reported as CPHYS_ERROR_NONFINITE, never returned silently.
 *
 * Thread safety: every function may be called from any thread, also
 * concurrently on the same object (per-call, per-thread buffers, FFTW's
 * new-array execute); only planning (once, in Create) takes the library lock.
 * Destroy must not race with other calls on the same object.  The samples of a
 * call are spread over OpenMP threads (CPhysSetThreads, cphys/environment.h). */
/*
 * Boundaries.  With a Dirichlet or Neumann axis the grid is transformed with
 * real transforms, one kind per axis (the sine transform computed as FFTW's r2c
 * of each line's odd extension, the others FFTW's r2r kinds),
 * and each coefficient of that real basis is multiplied by exp(-|k|^2 nu_t),
 * |k|^2 the sum over the axes of the continuous Laplacian's eigenvalue of the
 * axis's basis function (as the periodic kernel uses the continuous |k|^2, not
 * the 5-point stencil's):
 *   PERIODIC:  cos and sin of 2 pi p j / n (FFTW_R2HC / FFTW_HC2R),
 *              k = 2 pi p / (n h), p = min(m, n - m) for coefficient m;
 *   DIRICHLET: sin(pi (m+1) (j+1) / (n+1)), the boundary nodes one spacing
 *              outside the grid (the sine transform of the odd extension,
 *              FFTW_RODFT00), k = pi (m+1) / ((n+1) h);
 *   NEUMANN:   cos(pi m (j+1/2) / n), a zero-flux wall half a spacing beyond
 *              the outermost nodes (FFTW_REDFT10 / FFTW_REDFT01), k = pi m / (n h).
 * Each basis is orthogonal, so P is symmetric and the adjoint is P itself.  A
 * grid that is periodic on every axis uses the complex DFT above (r2c); the
 * 2-D periodic results are bitwise those of the periodic-only object.  The
 * physical gradient decides per real coefficient with the amplitude of the
 * orthonormal basis scaled by sqrt(cells), the scale of the DFT coefficients,
 * so noise_relative and signal_amplitude mean the same for every boundary.
 */
#pragma once
#include <stddef.h>

#include "cphys/error.h"
#include "cphys/minimize.h"
#include "cphys/physical_gradient.h"
#include "cphys/poisson_spectral.h" /* CPhysBoundary */

typedef struct CPhysHeat_private *CPhysHeat;

typedef struct {
  ptrdiff_t shape[3]; /* cells per axis, C order: [ny, nx] or [nz, ny, nx]; each >= 1 */
  double spacing[3];  /* cell size per axis, same order, length units; > 0 */
  double nu_t;        /* diffusivity * time, length^2 units; >= 0 (0: P is the identity) */
  /* Physical gradient only (docs/heat-inverse.md); 0 selects the default. */
  double noise_relative;     /* noise per cell relative to |dy_i|, dimensionless; > 0 (default 1e-6) */
  double signal_amplitude;   /* expected size of an x-space step per cell, x units; > 0 (default 1) */
  int dims;                  /* 2 or 3; 0: 2 with both axes periodic (boundary ignored) */
  CPhysBoundary boundary[3]; /* per axis, same order as shape (dims 2 or 3) */
  /* Physical gradient only: an absolute noise floor per cell, y units, >= 0 (default 0:
   * none), added to the relative noise as an independent source: the noise scale is
   * f = hypot(noise_relative ||dy||, sqrt(cells) noise_absolute) (docs/heat-inverse.md). */
  double noise_absolute;
} CPhysHeatConfig;

/* The paper's setting: 2-D, 64 x 64 unit cells, periodic, nu_t = 8, noise_relative 1e-6,
 * signal_amplitude 1. */
CPHYS_EXTERN CPhysHeatConfig CPhysHeatDefaultConfig(void);

/* Validates the configuration, precomputes the Fourier kernels and makes the
 * FFTW plans (one grid each way, FFTW_ESTIMATE: reproducible from run to run). */
CPHYS_EXTERN int CPhysHeatCreate(const CPhysHeatConfig *config, CPhysHeat *heat);
/* NULL-safe (also *heat == NULL); sets *heat = NULL. */
CPHYS_EXTERN int CPhysHeatDestroy(CPhysHeat *heat);
/* The configuration the object uses (defaults filled in). */
CPHYS_EXTERN int CPhysHeatGetConfig(CPhysHeat heat, CPhysHeatConfig *config);

/* y = P(x).  x: borrowed [batch, <shape>]; y: written [batch, <shape>]; batch >= 0.
 * (Shapes below are written [batch, ny, nx]; a 3-D object's are [batch, nz, ny, nx].) */
CPHYS_EXTERN int CPhysHeatForward(CPhysHeat heat, ptrdiff_t batch, const double *x, double *y);

/* Vector-Jacobian product dx = P^T dy (= P dy: the kernel is real and even).
 * dy: borrowed [batch, ny, nx]; dx: written [batch, ny, nx]. */
CPHYS_EXTERN int CPhysHeatAdjoint(CPhysHeat heat, ptrdiff_t batch, const double *dy, double *dx);

/* x = P^-1(y), amplifying every frequency by exp(+|k|^2 nu_t).  Unstable: use
 * for small nu_t and tests only.  CPHYS_ERROR_NONFINITE when the amplified
 * result overflows.  y: borrowed [batch, ny, nx]; x: written [batch, ny, nx]. */
CPHYS_EXTERN int CPhysHeatInverseExact(CPhysHeat heat, ptrdiff_t batch, const double *y, double *x);

/* The physical gradient  dx = x - P^-1_stable(y - dy | x) = P^-1_stable(dy),  the
 * stable probabilistic inverse of the step (docs/heat-inverse.md), decided per
 * sample and per frequency.  The op's backward passes
 * dy = y_step * dL/dy.  dy: borrowed [batch, ny, nx]; dx: written [batch, ny, nx].
 * A sample with dy == 0 gives dx == 0. */
CPHYS_EXTERN int CPhysHeatPhysicalGradient(CPhysHeat heat, ptrdiff_t batch, const double *dy, double *dx);

/* The `physical` mode in the contract of cphys/physical_gradient.h: x and y
 * are not needed (P is linear), dx = CPhysHeatPhysicalGradient(y_step g). */
CPHYS_EXTERN int CPhysHeatGetInverseProblem(CPhysHeat heat, CPhysInverseProblem *problem);

/* One sample of the forward map as a least-squares problem (n = m = ny*nx), for
 * the `lbfgs` mode; the adjoint callback ignores x (P is linear).  The problem
 * borrows the object: keep it alive while the problem is used. */
CPHYS_EXTERN int CPhysHeatGetLeastSquaresProblem(CPhysHeat heat, CPhysLeastSquaresProblem *problem);
