/* Internal: the spectral Poisson object's layout, shared by poisson_spectral.c
 * (object, transforms, elimination, solves) and poisson_stencil.c (the
 * Laplacian with each boundary, the physical gradient).  Only those include it. */
#pragma once
#include <fftw3.h>
#include <stddef.h>

#include "cphys/poisson_spectral.h"

/* Every grid is handled as [n0, inner]: the first axis, and the slice across the others. */
struct CPhysPoissonSpectral_private {
  CPhysPoissonSpectralConfig config; /* unused trailing entries zeroed */
  ptrdiff_t n0;                      /* nodes along the first axis */
  ptrdiff_t inner;                   /* nodes of one slice across the other axes */
  ptrdiff_t size;                    /* n0 * inner */
  int eliminate;                     /* first axis Dirichlet: tridiagonal elimination along it */
  int null_space;                    /* no Dirichlet axis: L annihilates the constants */
  double *axis0_eigen;               /* [n0] 4/h0^2 sin^2(theta_p) of the first axis (transform order) */
  double *inner_eigen;               /* [inner] sum of 4/h^2 sin^2(theta) over the other axes */
  double *pivot_inverse;             /* [n0, inner] 1 / pivot of the elimination (eliminate only) */
  double *zero_row;                  /* [nx] zeros: the neighbour row beyond a Dirichlet boundary */
  double inner_scale;                /* 1 / normalization of the inner transform pair */
  double total_scale;                /* inner_scale / normalization of the first axis's pair */
  /* Made once at Create on a scratch array, FFTW_ESTIMATE, in place; executed on
   * arrays of the scratch array's alignment through the new-array interface. */
  fftw_plan inner_forward, inner_backward; /* the other axes, all n0 slices */
  fftw_plan axis0_forward, axis0_backward; /* the first axis, every mode (not when eliminating) */
};

/* Validation shared with the stencil functions: object, batch and pointers. */
int CPhysPoissonSpectralCheckBatch(CPhysPoissonSpectral p, ptrdiff_t batch, const void *in, const void *out,
                                   const char *caller);
