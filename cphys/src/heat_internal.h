/* Internal: the heat object's layout and its spectral driver, shared by heat.c
 * (object, transforms, forward, exact inverse) and heat_inverse.c (the stable
 * probabilistic inverse).  Only these two sources include this header. */
#pragma once
#include <complex.h> /* before fftw3.h: fftw_complex is then double _Complex */
#include <fftw3.h>
#include <stddef.h>

#include "cphys/heat.h"

struct CPhysHeat_private {
  CPhysHeatConfig config; /* with the defaults filled in */
  ptrdiff_t ny, nx;
  ptrdiff_t cells;      /* ny * nx */
  ptrdiff_t modes;      /* ny * (nx / 2 + 1): the half spectrum of r2c */
  double *exponent;     /* [ny, nx/2+1] |k|^2 nu_t, >= 0 */
  double *forward_gain; /* [ny, nx/2+1] exp(-|k|^2 nu_t) / (ny nx): kernel and c2r normalization */
  double *inverse_gain; /* [ny, nx/2+1] exp(+|k|^2 nu_t) / (ny nx); may hold +inf */
  double *noise_odds;   /* [ny, nx/2+1] exp(2 |k|^2 nu_t) (heat_inverse.c); may hold +inf */
  /* One transform of one grid each way, FFTW_ESTIMATE, made at creation and
   * executed on per-thread buffers through the thread-safe new-array interface. */
  fftw_plan r2c, c2r;
};

/* Changes one sample's unnormalized half spectrum in place, including the
 * 1/(ny nx) normalization of the inverse transform.
 * sample: [ny, nx] the sample's input values; spectrum: [ny, nx/2+1]. */
typedef int (*CPhysHeatSpectralFilter)(CPhysHeat heat, const double *sample, fftw_complex *spectrum,
                                       void *context);

/* out = F^-1(filter(F(in))) sample by sample, after checking the arguments and
 * the finiteness of `in`, and checking that `out` is finite.  Errors name `caller`.
 * Samples run in parallel over the threads CPhysSetThreads allows (the filter
 * must be thread-safe); the `sample` the filter gets is a copy of the input.
 * in: [batch, ny, nx]; out: [batch, ny, nx]; they may alias. */
int CPhysHeatApplySpectral(CPhysHeat heat, ptrdiff_t batch, const double *in, double *out,
                           CPhysHeatSpectralFilter filter, void *context, const char *caller);
