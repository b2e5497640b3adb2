/* Internal: the spectral Poisson object's layout, shared by poisson_spectral.c
 * (object, transforms, elimination, solves) and poisson_stencil.c (the
 * Laplacian with each boundary, the physical gradient).  Only those include it. */
#pragma once
#include <fftw3.h>
#include <stddef.h>

#include "cphys/poisson_spectral.h"
#include "sine_lines.h"

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
  ptrdiff_t nx, rows;                /* the last axis's nodes; rows of nx nodes per sample */
  /* Plans made once at Create on scratch arrays, FFTW_ESTIMATE, in place; executed
   * through the new-array interface on arrays of the scratch arrays' alignment.
   * A Dirichlet axis after the first: the sine transform of its lines as r2c
   * transforms of their odd extensions in the thread's pad (sine_lines.h; FFTW's
   * RODFT00 of a grid of 2^k nodes was 2.5 to 4 times slower). */
  CPhysSineLines x_sine, y_sine;           /* the last axis, the middle axis (3-D), when Dirichlet */
  fftw_plan x_forward, x_backward;         /* the last axis, other boundaries: r2r on the rows */
  fftw_plan y_forward, y_backward;         /* 3-D: the middle axis, other boundaries, r2r */
  fftw_plan axis0_forward, axis0_backward; /* the first axis, every mode (not when eliminating) */
  /* An axis after the first with different conditions at its ends (Dirichlet at
   * one, Neumann at the other) has no FFTW transform in this grid's conventions:
   * its orthonormal eigenvectors, mixed[a][j * n + p] = v_p[j], then the
   * transpose (n * n doubles each), applied as a dense transform (NULL for the
   * other axes). */
  double *mixed[3];
};

/* Mode p of an axis of n nodes, Dirichlet at the lower end and Neumann at the
 * upper: v_p[j] = sin(theta_p (j + 1)), theta_p = pi (2p + 1) / (2n + 1), the
 * eigenvalue -4/h^2 sin^2(theta_p / 2); mirrored (j -> n - 1 - j) for Neumann
 * then Dirichlet. */
double CPhysPoissonSpectralMixedTheta(ptrdiff_t n, ptrdiff_t p);
/* The eigenvector tables of the mixed axes (Create, before planning). */
int CPhysPoissonSpectralMakeMixedBases(CPhysPoissonSpectral p);

/* One alignment for planning arrays and buffers, so that FFTW's new-array
 * execute rule (equal alignment) holds; caller arrays of another alignment go
 * through a buffer. */
enum { CPHYS_SPECTRAL_ALIGNMENT = 64 };
double *CPhysPoissonSpectralBufferAlloc(ptrdiff_t count); /* aligned; free() it */

/* poisson_transforms.c: the plans (library lock held) and their destruction. */
int CPhysPoissonSpectralPlanLocked(CPhysPoissonSpectral p);
void CPhysPoissonSpectralDestroyPlansLocked(CPhysPoissonSpectral p);
/* Doubles of the per-thread pad buffer the inner transforms need (0: none). */
ptrdiff_t CPhysPoissonSpectralPadSize(const CPhysPoissonSpectral p);
/* The transforms along the axes after the first, unnormalized, in place on one
 * sample w: [n0, inner] (aligned as the planning arrays); pad: the thread's buffer. */
void CPhysPoissonSpectralInnerForward(const CPhysPoissonSpectral p, double *w, double *pad);
void CPhysPoissonSpectralInnerBackward(const CPhysPoissonSpectral p, double *w, double *pad);

/* The configuration's validation (Create's), shared with poisson_boundary.c. */
int CPhysPoissonSpectralCheckConfig(const CPhysPoissonSpectralConfig *config);
/* Validation shared with the stencil functions: object, batch and pointers. */
int CPhysPoissonSpectralCheckBatch(CPhysPoissonSpectral p, ptrdiff_t batch, const void *in, const void *out,
                                   const char *caller);
