/* The heat object's kernels and transforms: the decay factor of every mode per
 * boundary (heat.h), the FFTW plans made at creation, and the real basis's
 * per-axis transforms.  Used by heat.c; uses nothing of it. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cphys_internal.h"
#include "heat_internal.h"

/* Scratch arrays for FFTW.  One fixed alignment for planning and executing
 * arrays satisfies the new-array execute rule (equal alignment), and C11
 * aligned_alloc, unlike fftw_malloc, is documented as thread-safe. */
enum { HEAT_BUFFER_ALIGNMENT = 64 };

void *heat_buffer_alloc(size_t bytes) {
  size_t rounded = (bytes + HEAT_BUFFER_ALIGNMENT - 1) / HEAT_BUFFER_ALIGNMENT * HEAT_BUFFER_ALIGNMENT;
  return aligned_alloc(HEAT_BUFFER_ALIGNMENT, rounded ? rounded : HEAT_BUFFER_ALIGNMENT);
}

/* Signed mode index p in (-n/2, n/2] of FFT bin j; its sign never matters (only p^2 is used). */
static double signed_mode(ptrdiff_t j, ptrdiff_t n) {
  return (double)(j <= n / 2 ? j : j - n);
}

/* k^2 of coefficient m of n along an axis with boundary b and spacing h (see cphys/heat.h),
 * for the complex DFT's bins (periodic, `complex_bins`: m in the signed order of fftfreq) or
 * the r2r transforms' coefficients. */
static double axis_k2(CPhysBoundary b, ptrdiff_t m, ptrdiff_t n, double h, int complex_bins) {
  double k;
  if (b == CPHYS_BOUNDARY_DIRICHLET)
    k = CPHYS_PI * (double)(m + 1) / ((double)(n + 1) * h);
  else if (b == CPHYS_BOUNDARY_NEUMANN)
    k = CPHYS_PI * (double)m / ((double)n * h);
  else
    k = 2.0 * CPHYS_PI * (complex_bins ? signed_mode(m, n) : (double)(m <= n - m ? m : n - m)) /
        ((double)n * h);
  return k * k;
}

/* log of the factor taking an unnormalized r2r coefficient m of n (FFTW's kinds
 * of cphys/heat.h) to the coefficient of the orthonormal basis. */
static double axis_log_weight(CPhysBoundary b, ptrdiff_t m, ptrdiff_t n) {
  const double count = (double)n;
  if (b == CPHYS_BOUNDARY_DIRICHLET) return -0.5 * log(2.0 * (count + 1.0)); /* 2 <x, s>, |s|^2 = (n+1)/2 */
  if (b == CPHYS_BOUNDARY_NEUMANN) /* 2 <x, c>, |c|^2 = n (m = 0) or n/2 */
    return m == 0 ? -0.5 * log(4.0 * count) : -0.5 * log(2.0 * count);
  /* R2HC: <x, c> or <x, s>, |c|^2 = n at m = 0 and m = n/2, else n/2 */
  return (m == 0 || 2 * m == n) ? -0.5 * log(count) : -0.5 * log(0.5 * count);
}

/* The scale of the r2r transform pair along an axis: backward(forward(x)) = scale * x. */
static double axis_normalization(CPhysBoundary b, ptrdiff_t n) {
  return b == CPHYS_BOUNDARY_DIRICHLET ? 2.0 * (double)(n + 1)
         : b == CPHYS_BOUNDARY_NEUMANN ? 2.0 * (double)n
                                       : (double)n;
}

/* Kernels of a 3-D periodic grid (complex half spectrum) or of any grid with a real basis. */
static void fill_kernels_3d_or_real(CPhysHeat h) {
  const CPhysHeatConfig *c = &h->config;
  const int complex_bins = !h->real_basis;
  const ptrdiff_t n[3] = {h->nz, h->ny, h->nx};
  const ptrdiff_t last = complex_bins ? h->nx / 2 + 1 : h->nx;
  /* Axis a of the object: config axis a - (3 - dims); a 2-D grid has a single plane (nz = 1). */
  const int offset = 3 - c->dims;
  double log_cells = 0.5 * log((double)h->cells);
  h->normalization = complex_bins ? (double)h->cells : 1.0;
  if (!complex_bins)
    for (int a = offset; a < 3; a++) h->normalization *= axis_normalization(c->boundary[a - offset], n[a]);
  ptrdiff_t q = 0;
  for (ptrdiff_t k = 0; k < n[0]; k++) {
    const double kz2 = offset ? 0.0 : axis_k2(c->boundary[0], k, n[0], c->spacing[0], complex_bins);
    const double wz = offset ? 0.0 : complex_bins ? 0.0 : axis_log_weight(c->boundary[0], k, n[0]);
    for (ptrdiff_t j = 0; j < n[1]; j++) {
      const double ky2 = axis_k2(c->boundary[1 - offset], j, n[1], c->spacing[1 - offset], complex_bins);
      const double wy = complex_bins ? 0.0 : axis_log_weight(c->boundary[1 - offset], j, n[1]);
      for (ptrdiff_t i = 0; i < last; i++, q++) {
        const double kx2 = axis_k2(c->boundary[2 - offset], i, n[2], c->spacing[2 - offset], complex_bins);
        const double exponent = (kz2 + ky2 + kx2) * c->nu_t;
        h->exponent[q] = exponent;
        h->forward_gain[q] = exp(-exponent) / h->normalization;
        h->inverse_gain[q] = exp(exponent) / h->normalization;
        h->noise_odds[q] = exp(2.0 * exponent);
        if (!complex_bins)
          h->log_weight[q] = wz + wy + axis_log_weight(c->boundary[2 - offset], i, n[2]) + log_cells;
        if (!complex_bins) h->weight[q] = exp(h->log_weight[q]);
      }
    }
  }
}

void heat_fill_kernels(CPhysHeat h) {
  const ptrdiff_t half = h->nx / 2 + 1;
  if (h->config.dims == 3 || h->real_basis) {
    fill_kernels_3d_or_real(h);
    return;
  }
  const double two_pi = 2.0 * CPHYS_PI, cells = (double)h->cells;
  for (ptrdiff_t j = 0; j < h->ny; j++) {
    double ky = two_pi * signed_mode(j, h->ny) / ((double)h->ny * h->config.spacing[0]);
    for (ptrdiff_t i = 0; i < half; i++) {
      double kx = two_pi * (double)i / ((double)h->nx * h->config.spacing[1]);
      double exponent = (ky * ky + kx * kx) * h->config.nu_t;
      h->exponent[j * half + i] = exponent;
      h->forward_gain[j * half + i] = exp(-exponent) / cells;
      h->inverse_gain[j * half + i] = exp(exponent) / cells;
      h->noise_odds[j * half + i] = exp(2.0 * exponent);
    }
  }
}

/* Plans one grid each way on scratch arrays, never on caller data.  One grid
 * rather than the batch: a sample's input, spectrum and output stay in the
 * core's cache between the transforms and the filter, the plan serves every
 * batch size, and the samples can go to different threads (new-array execute).
 * FFTW_ESTIMATE, not FFTW_MEASURE: measured plans executed ~15% faster here,
 * but FFTW picks them by timing, so they (and the last bits of the results)
 * change from run to run; estimated plans keep runs reproducible. */
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

/* The real basis: per axis an in-place r2r plan each way (looped over the other
 * axes), or for a Dirichlet axis the sine transform of its lines (sine_lines.h). */
static int make_real_plans_locked(CPhysHeat h) {
  const int dims = h->config.dims;
  int n[3];
  fftw_r2r_kind forward[3], backward[3];
  for (int a = 0; a < dims; a++) {
    n[a] = (int)h->config.shape[a];
    forward[a] = forward_kind(h->config.boundary[a]);
    backward[a] = backward_kind(h->config.boundary[a]);
  }
  double *scratch = heat_buffer_alloc((size_t)h->scratch * sizeof(double));
  if (!scratch)
    return CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate transform buffers of %td cells",
                         h->cells);
  int ok = 1;
  ptrdiff_t outer = 1;
  for (int a = 0; a < dims; a++) {
    const ptrdiff_t inner = h->cells / outer / n[a];
    if (h->config.boundary[a] == CPHYS_BOUNDARY_DIRICHLET) {
      ok = ok && CPhysSineLinesPlanLocked(&h->sine[a], n[a], outer * inner, scratch + h->pad_offset) == 0;
    } else {
      const fftw_iodim axis = {n[a], (int)inner, (int)inner};
      const fftw_iodim loops[2] = {{(int)outer, (int)(n[a] * inner), (int)(n[a] * inner)},
                                   {(int)inner, 1, 1}};
      h->axis_forward[a] =
          fftw_plan_guru_r2r(1, &axis, 2, loops, scratch, scratch, &forward[a], FFTW_ESTIMATE);
      h->axis_backward[a] =
          fftw_plan_guru_r2r(1, &axis, 2, loops, scratch, scratch, &backward[a], FFTW_ESTIMATE);
      ok = ok && h->axis_forward[a] && h->axis_backward[a];
    }
    outer *= n[a];
  }
  free(scratch);
  CPhysCheck(ok, CPHYS_ERROR_FFTW, "FFTW could not plan the real transforms of %td cells", h->cells);
  return 0;
}

int heat_make_plans_locked(CPhysHeat h) {
  if (h->real_basis) return make_real_plans_locked(h);
  if (h->config.dims == 3) {
    const int n3[3] = {(int)h->nz, (int)h->ny, (int)h->nx};
    double *real = heat_buffer_alloc((size_t)h->cells * sizeof(double));
    fftw_complex *spectrum = heat_buffer_alloc((size_t)h->modes * sizeof(fftw_complex));
    int ierr = 0;
    if (!real || !spectrum) {
      ierr =
          CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate FFT buffers of %td cells", h->cells);
    } else {
      h->r2c = fftw_plan_dft_r2c(3, n3, real, spectrum, FFTW_ESTIMATE);
      h->c2r = fftw_plan_dft_c2r(3, n3, spectrum, real, FFTW_ESTIMATE);
      if (!h->r2c || !h->c2r)
        ierr = CPhysSetError(CPHYS_ERROR_FFTW, __func__, "FFTW could not plan transforms of %td cells",
                             h->cells);
    }
    free(real);
    free(spectrum);
    return ierr;
  }
  const int n[2] = {(int)h->ny, (int)h->nx};
  double *real = heat_buffer_alloc((size_t)h->cells * sizeof(double));
  fftw_complex *spectrum = heat_buffer_alloc((size_t)h->modes * sizeof(fftw_complex));
  int ierr = 0;
  if (!real || !spectrum) {
    ierr = CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate FFT buffers of %td cells", h->cells);
  } else {
    h->r2c = fftw_plan_dft_r2c(2, n, real, spectrum, FFTW_ESTIMATE);
    h->c2r = fftw_plan_dft_c2r(2, n, spectrum, real, FFTW_ESTIMATE);
    if (!h->r2c || !h->c2r)
      ierr = CPhysSetError(CPHYS_ERROR_FFTW, __func__, "FFTW could not plan transforms of %td x %td", h->ny,
                           h->nx);
  }
  free(real);
  free(spectrum);
  return ierr;
}

/* The real basis's unnormalized transform (forward) or its inverse up to the normalization, in place. */
void heat_real_transform(CPhysHeat h, double *w, double *pad, int forward) {
  for (int a = 0; a < h->config.dims; a++) {
    if (h->config.boundary[a] == CPHYS_BOUNDARY_DIRICHLET) {
      ptrdiff_t outer = 1;
      for (int b = 0; b < a; b++) outer *= h->config.shape[b];
      CPhysSineLinesApply(&h->sine[a], w, outer, h->cells / outer / h->config.shape[a], pad);
    } else {
      fftw_execute_r2r(forward ? h->axis_forward[a] : h->axis_backward[a], w, w);
    }
  }
}
