/* The heat equation on a periodic 2-D grid, solved exactly in Fourier space (FFTW3).
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
#pragma once
#include <stddef.h>

#include "cphys/error.h"
#include "cphys/minimize.h"

typedef struct CPhysHeat_private *CPhysHeat;

typedef struct {
  ptrdiff_t shape[2]; /* cells per axis, C order: [ny, nx]; each >= 1 */
  double spacing[2];  /* cell size per axis [dy, dx], length units; > 0 */
  double nu_t;        /* diffusivity * time, length^2 units; >= 0 (0: P is the identity) */
  /* Physical gradient only (docs/heat-inverse.md); 0 selects the default. */
  double noise_relative;   /* noise per cell relative to |dy_i|, dimensionless; > 0 (default 1e-6) */
  double signal_amplitude; /* expected size of an x-space step per cell, x units; > 0 (default 1) */
} CPhysHeatConfig;

/* The paper's setting: 64 x 64 unit cells, nu_t = 8, noise_relative 1e-6, signal_amplitude 1. */
CPHYS_EXTERN CPhysHeatConfig CPhysHeatDefaultConfig(void);

/* Validates the configuration, precomputes the Fourier kernels and makes the
 * FFTW plans (one grid each way, FFTW_ESTIMATE: reproducible from run to run). */
CPHYS_EXTERN int CPhysHeatCreate(const CPhysHeatConfig *config, CPhysHeat *heat);
/* NULL-safe (also *heat == NULL); sets *heat = NULL. */
CPHYS_EXTERN int CPhysHeatDestroy(CPhysHeat *heat);
/* The configuration the object uses (defaults filled in). */
CPHYS_EXTERN int CPhysHeatGetConfig(CPhysHeat heat, CPhysHeatConfig *config);

/* y = P(x).  x: borrowed [batch, ny, nx]; y: written [batch, ny, nx]; batch >= 0. */
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

/* One sample of the forward map as a least-squares problem (n = m = ny*nx), for
 * the `lbfgs` mode; the adjoint callback ignores x (P is linear).  The problem
 * borrows the object: keep it alive while the problem is used. */
CPHYS_EXTERN int CPhysHeatGetLeastSquaresProblem(CPhysHeat heat, CPhysLeastSquaresProblem *problem);
