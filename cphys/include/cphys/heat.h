/* The heat equation on a periodic 2-D grid, solved exactly in Fourier space (FFTW3).
 *
 * Forward map (diffusion over the time t with diffusivity nu):
 *   y = P(x) = F^-1( F(x) * exp(-|k|^2 nu_t) ),   nu_t = nu * t,
 * with F the 2-D discrete Fourier transform of the ny x nx grid and the
 * angular wave numbers of numpy's convention,
 *   k_axis = 2 pi * fftfreq(n_axis, spacing_axis),  |k|^2 = k_y^2 + k_x^2,
 * i.e. k = 2 pi p / (n h) for the signed mode index p in (-n/2, n/2].  The mean
 * (k = 0) is conserved; P is symmetric, so the adjoint is P itself.
 *
 * All arrays are borrowed for one call, contiguous in C order [batch, ny, nx],
 * any alignment (data is copied through internal aligned buffers); an output
 * may be the same array as the input.  Every input is checked to be finite:
 * NaN or Inf gives CPHYS_ERROR_NONFINITE and the output is then unspecified.  An output that would not be
 * finite (only possible in CPhysHeatInverseExact, or for inputs within a factor ~nx*ny of DBL_MAX) is
 * reported as CPHYS_ERROR_NONFINITE, never returned silently.
 *
 * The physical gradient (CPhysHeatPhysicalGradient) is the stable probabilistic
 * inverse of the paper's appendix B.4, applied to the y-space step dy:
 * since P is linear, x - P^-1(y - dy | x) = P^-1(dy) whatever x is, so the
 * current x and y are not needed.  For each Fourier coefficient c of one
 * sample's step (unnormalized DFT, amplitude a = |c|) two hypotheses with equal
 * priors 1/2 are weighed by zero-mean Gaussian likelihoods of the amplitude:
 *   signal: scale E = signal_amplitude * sqrt(ny nx) * exp(-|k|^2 nu_t)
 *           (an x-space step with cell values of size signal_amplitude,
 *           white in frequency, diffused by P);
 *   noise:  scale f = noise_relative * ||dy||_2 of the sample
 *           (independent cell noise of size noise_relative * |dy_i|, which has
 *           this scale in every coefficient).
 * As in the SIP code the likelihoods are the Gaussian kernels exp(-a^2 / (2 s^2))
 * without the 1/s normalization, so the posterior probability of signal is
 *   p = 1 / (1 + exp(-lambda)),   lambda = a^2 / (2 f^2) - a^2 / (2 E^2),
 * and a frequency can only be judged signal where E > f, i.e. where a signal
 * would stand out of the noise.  (With normalized densities a log(f / E) term
 * joins lambda; it judges amplitudes far below the noise level as signal where
 * E < f and amplifies round-off up to the size of the signal: rejected.)
 * The action is  s = 2 p - 1  when p >= 0.68 (about one sigma of confidence) or
 * p <= 1/2, and s = 0 in between, and the coefficient is multiplied by
 *   exp(s * |k|^2 nu_t)   (s in [-1, 1]).
 * So a confident signal gets (almost) the exact inverse exp(+|k|^2 nu_t), an
 * undecided one is left as it is, and one judged noise is damped, down to the
 * forward kernel exp(-|k|^2 nu_t); nothing is ever amplified beyond the exact
 * inverse.  The result is finite for every finite dy: amplification needs
 * E > f, which bounds each amplified coefficient's contribution to a cell by
 * signal_amplitude / noise_relative.  For a noise-free step every frequency
 * whose amplitude is well above the noise level f (a > ~1.2 f, where also
 * E > f) is a confident signal, with p -> 1 as a / f grows, so on the low
 * frequencies the result approaches the exact inverse P^-1(dy), the more so
 * the smaller the step (the smaller f, the more frequencies have E > f).
 * Defaults (those of the paper's code, tum-pbs/SIP heat/inv_diffuse.py and
 * heat/train_heat.py): noise_relative = 1e-6,
 * signal_amplitude = 1.  Unlike that code the log-odds are evaluated in log
 * space: where both kernels underflow (a > ~38 E and a > ~38 f) the SIP code
 * gets 0/0 and damps; here the larger likelihood still wins.
 *
 * Thread safety: every function may be called from any thread, also
 * concurrently on the same object.  Transforms run sample by sample on
 * per-call, per-thread buffers with FFTW's thread-safe new-array execute; only
 * planning (once, in Create) takes the library lock.  Destroy must not race
 * with other calls on the same object.  The samples of a call are spread over
 * OpenMP threads (CPhysSetThreads, cphys/environment.h). */
#pragma once
#include <stddef.h>

#include "cphys/error.h"
#include "cphys/minimize.h"

typedef struct CPhysHeat_private *CPhysHeat;

typedef struct {
  ptrdiff_t shape[2]; /* cells per axis, C order: [ny, nx]; each >= 1 */
  double spacing[2];  /* cell size per axis [dy, dx], length units; > 0 */
  double nu_t;        /* diffusivity * time, length^2 units; >= 0 (0: P is the identity) */
  /* Physical gradient only (see above); 0 selects the default. */
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
 * stable probabilistic inverse of the step described at the top of this file,
 * decided per sample and per frequency.  The op's backward passes
 * dy = y_step * dL/dy.  dy: borrowed [batch, ny, nx]; dx: written [batch, ny, nx].
 * A sample with dy == 0 gives dx == 0. */
CPHYS_EXTERN int CPhysHeatPhysicalGradient(CPhysHeat heat, ptrdiff_t batch, const double *dy, double *dx);

/* One sample of the forward map as a least-squares problem (n = m = ny*nx), for
 * the `lbfgs` mode; the adjoint callback ignores x (P is linear).  The problem
 * borrows the object: keep it alive while the problem is used. */
CPHYS_EXTERN int CPhysHeatGetLeastSquaresProblem(CPhysHeat heat, CPhysLeastSquaresProblem *problem);
