/* The spectral Poisson object's transforms along the axes after the first: FFTW
 * plans, the sine transform of a Dirichlet axis (sine_lines.h) and the dense
 * basis of an axis with mixed ends. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "poisson_spectral_internal.h"

double *CPhysPoissonSpectralBufferAlloc(ptrdiff_t count) {
  size_t bytes = (size_t)count * sizeof(double);
  bytes = (bytes + CPHYS_SPECTRAL_ALIGNMENT - 1) / CPHYS_SPECTRAL_ALIGNMENT * CPHYS_SPECTRAL_ALIGNMENT;
  return aligned_alloc(CPHYS_SPECTRAL_ALIGNMENT, bytes ? bytes : CPHYS_SPECTRAL_ALIGNMENT);
}

static fftw_r2r_kind forward_kind(CPhysBoundary b) {
  return b == CPHYS_BOUNDARY_DIRICHLET ? FFTW_RODFT00
         : b == CPHYS_BOUNDARY_NEUMANN ? FFTW_REDFT10
                                       : FFTW_R2HC;
}

static fftw_r2r_kind backward_kind(CPhysBoundary b) {
  return b == CPHYS_BOUNDARY_DIRICHLET ? FFTW_RODFT00
         : b == CPHYS_BOUNDARY_NEUMANN ? FFTW_REDFT01
                                       : FFTW_HC2R;
}

static int sine_rows(const CPhysPoissonSpectral p) {
  return p->config.boundary[p->config.dims - 1] == CPHYS_BOUNDARY_DIRICHLET;
}

/* 3-D with a Dirichlet middle axis. */
static int sine_columns(const CPhysPoissonSpectral p) {
  return p->config.dims == 3 && p->config.boundary[1] == CPHYS_BOUNDARY_DIRICHLET;
}

static int is_mixed(CPhysBoundary b) {
  return b == CPHYS_BOUNDARY_DIRICHLET_NEUMANN || b == CPHYS_BOUNDARY_NEUMANN_DIRICHLET;
}

double CPhysPoissonSpectralMixedTheta(ptrdiff_t n, ptrdiff_t p) {
  return acos(-1.0) * (double)(2 * p + 1) / (double)(2 * n + 1);
}

/* The modes are the exact eigenvectors of the second difference with these
 * ends (sin(theta (j+1)) is 0 at j = -1, and theta (2n + 1) = (2p + 1) pi makes
 * it even about j = n - 1/2); distinct eigenvalues make them orthogonal, so
 * normalizing each gives the orthonormal basis. */
int CPhysPoissonSpectralMakeMixedBases(CPhysPoissonSpectral p) {
  const CPhysPoissonSpectralConfig *c = &p->config;
  for (int a = 1; a < c->dims; a++) {
    if (!is_mixed(c->boundary[a])) continue;
    const ptrdiff_t n = c->shape[a];
    double *v = malloc((size_t)(2 * n * n) * sizeof(double)); /* V, then V^T */
    CPhysCheck(v != NULL, CPHYS_ERROR_MEMORY, "cannot allocate the %td x %td basis of axis %d", n, n, a);
    p->mixed[a] = v;
    for (ptrdiff_t mode = 0; mode < n; mode++) {
      const double theta = CPhysPoissonSpectralMixedTheta(n, mode);
      double norm = 0.0;
      for (ptrdiff_t j = 0; j < n; j++) {
        const ptrdiff_t from_dirichlet = c->boundary[a] == CPHYS_BOUNDARY_DIRICHLET_NEUMANN ? j + 1 : n - j;
        v[j * n + mode] = sin(theta * (double)from_dirichlet);
        norm += v[j * n + mode] * v[j * n + mode];
      }
      const double scale = 1.0 / sqrt(norm);
      for (ptrdiff_t j = 0; j < n; j++) v[j * n + mode] *= scale, v[n * n + mode * n + j] = v[j * n + mode];
    }
  }
  return 0;
}

/* out = V^T in (forward) or V in (backward) for each of `count` vectors of
 * length n spaced `stride` apart, each vector's entries `inner` apart (inner
 * contiguous columns at once); tmp: n * inner doubles. */
static void dense_transform(const double *v, ptrdiff_t n, ptrdiff_t inner, ptrdiff_t count, ptrdiff_t stride,
                            int forward, double *w, double *tmp) {
  for (ptrdiff_t s = 0; s < count; s++) {
    double *block = w + s * stride;
    memcpy(tmp, block, (size_t)(n * inner) * sizeof(double));
    memset(block, 0, (size_t)(n * inner) * sizeof(double));
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t k = 0; k < n; k++) {
        /* forward: out[k] += V[j][k] in[j]; backward: out[j] += V[j][k] in[k] */
        const double coefficient = v[j * n + k];
        double *restrict out = block + (forward ? k : j) * inner;
        const double *restrict in = tmp + (forward ? j : k) * inner;
        for (ptrdiff_t i = 0; i < inner; i++) out[i] += coefficient * in[i];
      }
  }
}

/* Along the last axis: each row times V (forward) or V^T (backward), as
 * contiguous row updates. */
static void mixed_x(const CPhysPoissonSpectral p, double *w, double *pad, int forward) {
  const ptrdiff_t n = p->nx;
  const double *m = p->mixed[p->config.dims - 1] + (forward ? 0 : n * n);
  for (ptrdiff_t r = 0; r < p->rows; r++) {
    double *restrict row = w + r * n;
    memcpy(pad, row, (size_t)n * sizeof(double));
    memset(row, 0, (size_t)n * sizeof(double));
    for (ptrdiff_t j = 0; j < n; j++) {
      const double in = pad[j], *restrict line = m + j * n;
      for (ptrdiff_t k = 0; k < n; k++) row[k] += in * line[k];
    }
  }
}

/* Along the middle axis of a 3-D grid, per slice (rows of nx at once). */
static void mixed_y(const CPhysPoissonSpectral p, double *w, double *pad, int forward) {
  const ptrdiff_t ny = p->config.shape[1], nx = p->nx;
  dense_transform(p->mixed[1], ny, nx, p->n0, ny * nx, forward, w, pad);
}

ptrdiff_t CPhysPoissonSpectralPadSize(const CPhysPoissonSpectral p) {
  ptrdiff_t size = sine_rows(p) ? CPhysSineLinesPadSize(p->nx, p->rows) : 0;
  const ptrdiff_t ny = p->config.shape[1];
  if (sine_columns(p) && CPhysSineLinesPadSize(ny, p->n0 * p->nx) > size)
    size = CPhysSineLinesPadSize(ny, p->n0 * p->nx);
  const int x = p->config.dims - 1;
  if (p->mixed[x] && p->nx > size) size = p->nx;
  if (x == 2 && p->mixed[1] && ny * p->nx > size) size = ny * p->nx;
  return size;
}

int CPhysPoissonSpectralPlanLocked(CPhysPoissonSpectral p) {
  const CPhysPoissonSpectralConfig *c = &p->config;
  const int n0 = (int)p->n0, inner = (int)p->inner, nx = (int)p->nx, rows = (int)p->rows;
  double *scratch = CPhysPoissonSpectralBufferAlloc(p->size);
  if (!scratch)
    return CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate a scratch grid of %td nodes",
                         p->size);
  double *pad = NULL;
  const ptrdiff_t pad_size = CPhysPoissonSpectralPadSize(p);
  if (pad_size && !(pad = CPhysPoissonSpectralBufferAlloc(pad_size))) {
    free(scratch);
    return CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate a pad of %td doubles", pad_size);
  }
  int ok = 1;
  const CPhysBoundary bx = c->boundary[c->dims - 1];
  if (sine_rows(p)) {
    ok = CPhysSineLinesPlanLocked(&p->x_sine, nx, rows, pad) == 0;
  } else if (!is_mixed(bx)) {
    const fftw_r2r_kind forward = forward_kind(bx), backward = backward_kind(bx);
    p->x_forward =
        fftw_plan_many_r2r(1, &nx, rows, scratch, NULL, 1, nx, scratch, NULL, 1, nx, &forward, FFTW_ESTIMATE);
    p->x_backward = fftw_plan_many_r2r(1, &nx, rows, scratch, NULL, 1, nx, scratch, NULL, 1, nx, &backward,
                                       FFTW_ESTIMATE);
    ok = p->x_forward && p->x_backward;
  }
  if (sine_columns(p)) {
    ok = ok && CPhysSineLinesPlanLocked(&p->y_sine, c->shape[1], p->n0 * p->nx, pad) == 0;
  } else if (c->dims == 3 && !is_mixed(c->boundary[1])) {
    /* The middle axis of every slice: n = ny at stride nx, looped over slices and columns. */
    const fftw_iodim axis = {(int)c->shape[1], nx, nx};
    const fftw_iodim loops[2] = {{n0, inner, inner}, {nx, 1, 1}};
    const fftw_r2r_kind forward = forward_kind(c->boundary[1]), backward = backward_kind(c->boundary[1]);
    p->y_forward = fftw_plan_guru_r2r(1, &axis, 2, loops, scratch, scratch, &forward, FFTW_ESTIMATE);
    p->y_backward = fftw_plan_guru_r2r(1, &axis, 2, loops, scratch, scratch, &backward, FFTW_ESTIMATE);
    ok = ok && p->y_forward && p->y_backward;
  }
  if (!p->eliminate) {
    const fftw_r2r_kind forward = forward_kind(c->boundary[0]), backward = backward_kind(c->boundary[0]);
    p->axis0_forward = fftw_plan_many_r2r(1, &n0, inner, scratch, NULL, inner, 1, scratch, NULL, inner, 1,
                                          &forward, FFTW_ESTIMATE);
    p->axis0_backward = fftw_plan_many_r2r(1, &n0, inner, scratch, NULL, inner, 1, scratch, NULL, inner, 1,
                                           &backward, FFTW_ESTIMATE);
    ok = ok && p->axis0_forward && p->axis0_backward;
  }
  free(scratch);
  free(pad);
  CPhysCheck(ok, CPHYS_ERROR_FFTW, "FFTW could not plan the transforms of a grid of %td nodes", p->size);
  return 0;
}

void CPhysPoissonSpectralDestroyPlansLocked(CPhysPoissonSpectral p) {
  fftw_plan plans[6] = {p->x_forward,  p->x_backward,    p->y_forward,
                        p->y_backward, p->axis0_forward, p->axis0_backward};
  for (int k = 0; k < 6; k++)
    if (plans[k]) fftw_destroy_plan(plans[k]);
  CPhysSineLinesDestroyLocked(&p->x_sine);
  CPhysSineLinesDestroyLocked(&p->y_sine);
}

/* The middle axis of a 3-D grid [n0, ny, nx]: the lines of each slice. */
static void middle_axis(const CPhysPoissonSpectral p, double *w, double *pad, int forward) {
  if (sine_columns(p))
    CPhysSineLinesApply(&p->y_sine, w, p->n0, p->nx, pad); /* RODFT00 is its own inverse (up to scale) */
  else if (p->y_forward)
    fftw_execute_r2r(forward ? p->y_forward : p->y_backward, w, w);
  else if (p->config.dims == 3)
    mixed_y(p, w, pad, forward);
}

void CPhysPoissonSpectralInnerForward(const CPhysPoissonSpectral p, double *w, double *pad) {
  if (sine_rows(p))
    CPhysSineLinesApply(&p->x_sine, w, p->rows, 1, pad);
  else if (p->x_forward)
    fftw_execute_r2r(p->x_forward, w, w);
  else
    mixed_x(p, w, pad, 1);
  middle_axis(p, w, pad, 1);
}

void CPhysPoissonSpectralInnerBackward(const CPhysPoissonSpectral p, double *w, double *pad) {
  middle_axis(p, w, pad, 0);
  if (sine_rows(p))
    CPhysSineLinesApply(&p->x_sine, w, p->rows, 1, pad); /* RODFT00 is its own inverse, up to scale */
  else if (p->x_backward)
    fftw_execute_r2r(p->x_backward, w, w);
  else
    mixed_x(p, w, pad, 0);
}
