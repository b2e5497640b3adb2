/* Internal: the heat object's layout and its spectral driver, shared by heat.c
 * (object, transforms, forward, exact inverse) and heat_inverse.c (the stable
 * probabilistic inverse).  Only these two sources include this header. */
#pragma once
#include <complex.h> /* before fftw3.h: fftw_complex is then double _Complex */
#include <fftw3.h>
#include <stddef.h>

#include "cphys/heat.h"
#include "sine_lines.h"

struct CPhysHeat_private {
  CPhysHeatConfig config; /* with the defaults filled in (dims 2 or 3) */
  ptrdiff_t ny, nx;       /* the last two axes */
  ptrdiff_t nz;           /* the first axis of a 3-D grid; 1 in 2-D */
  ptrdiff_t cells;        /* nz * ny * nx */
  int real_basis;         /* a Dirichlet or Neumann axis: r2r transforms, `modes` real coefficients */
  ptrdiff_t modes;        /* complex: nz * ny * (nx / 2 + 1), the half spectrum of r2c; real: cells */
  double normalization;   /* the transform pair's scale: cells (complex), the r2r pair's logical size */
  double *exponent;       /* [modes] |k|^2 nu_t, >= 0 */
  double *forward_gain;   /* [modes] exp(-|k|^2 nu_t) / normalization: kernel and inverse's normalization */
  double *inverse_gain;   /* [modes] exp(+|k|^2 nu_t) / normalization; may hold +inf */
  double *noise_odds;     /* [modes] exp(2 |k|^2 nu_t) (heat_inverse.c); may hold +inf */
  double *log_weight;     /* real only, [modes]: log of the factor from an unnormalized r2r coefficient
                             to the DFT scale (orthonormal coefficient * sqrt(cells)) */
  double *weight;         /* real only, [modes]: exp(log_weight) */
  /* One transform of one grid each way, FFTW_ESTIMATE, made at creation and
   * executed on per-thread buffers through the thread-safe new-array interface:
   * r2c and c2r (complex), or, for a real basis, one plan per axis in place:
   * FFTW's r2r kind along the axis, or for a Dirichlet axis the sine transform
   * as the r2c transform of the lines' odd extensions in a pad buffer, 8 lines
   * per execution (sine_lines.h: FFTW's RODFT00 measured 2.5-4x slower). */
  fftw_plan r2c, c2r;
  fftw_plan axis_forward[3], axis_backward[3]; /* r2r along an axis, looped over the others */
  CPhysSineLines sine[3];                      /* Dirichlet axis: r2c of its padded lines */
  ptrdiff_t pad_offset;                        /* doubles from a thread's spectrum buffer to its pad */
  ptrdiff_t scratch;                           /* doubles of a thread's spectrum buffer, pad included */
};

/* heat_transforms.c: aligned scratch memory for FFTW (free with free()); the
 * kernels (exponent, gains, noise odds, real-basis weights) of a created
 * object; its FFTW plans (library lock held); the real basis's unnormalized
 * transform (forward) or its inverse up to `normalization`, in place on one
 * sample `w`, with `pad` the thread's line buffer. */
void *heat_buffer_alloc(size_t bytes);
void heat_fill_kernels(CPhysHeat h);
int heat_make_plans_locked(CPhysHeat h);
void heat_real_transform(CPhysHeat h, double *w, double *pad, int forward);

/* Changes one sample's unnormalized half spectrum in place, including the
 * 1/(ny nx) normalization of the inverse transform.
 * sample: [ny, nx] the sample's input values; spectrum: [ny, nx/2+1]. */
typedef int (*CPhysHeatSpectralFilter)(CPhysHeat heat, const double *sample, fftw_complex *spectrum,
                                       void *context);
/* The same for an object with a real basis: coefficients [modes] of the r2r transform. */
typedef int (*CPhysHeatRealFilter)(CPhysHeat heat, const double *sample, double *coefficients, void *context);

/* out = F^-1(filter(F(in))) sample by sample (real_filter for an object with a
 * real basis), after checking the arguments and
 * the finiteness of `in`, and checking that `out` is finite.  Errors name `caller`.
 * Samples run in parallel over the threads CPhysSetThreads allows (the filter
 * must be thread-safe); the `sample` the filter gets is a copy of the input.
 * in: [batch, ny, nx]; out: [batch, ny, nx]; they may alias. */
int CPhysHeatApplySpectral(CPhysHeat heat, ptrdiff_t batch, const double *in, double *out,
                           CPhysHeatSpectralFilter filter, CPhysHeatRealFilter real_filter, void *context,
                           const char *caller);
