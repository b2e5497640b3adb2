/* Heat object: Fourier kernels, FFTW plans, the per-sample spectral driver, forward, adjoint, exact inverse,
 * the least-squares problem of the `lbfgs` mode. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cphys_internal.h"
#include "finite.h"
#include "heat_internal.h"
#include "petsc_env.h"
#include "threads.h"

/* Scratch arrays for FFTW.  One fixed alignment for planning and executing
 * arrays satisfies the new-array execute rule (equal alignment), and C11
 * aligned_alloc, unlike fftw_malloc, is documented as thread-safe. */
enum { HEAT_BUFFER_ALIGNMENT = 64 };

static void *buffer_alloc(size_t bytes) {
  size_t rounded = (bytes + HEAT_BUFFER_ALIGNMENT - 1) / HEAT_BUFFER_ALIGNMENT * HEAT_BUFFER_ALIGNMENT;
  return aligned_alloc(HEAT_BUFFER_ALIGNMENT, rounded ? rounded : HEAT_BUFFER_ALIGNMENT);
}

static int make_plans_locked(CPhysHeat h);

CPhysHeatConfig CPhysHeatDefaultConfig(void) {
  CPhysHeatConfig config = {{64, 64, 0},
                            {1.0, 1.0, 0.0},
                            8.0,
                            1e-6,
                            1.0,
                            2,
                            {CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_PERIODIC}};
  return config;
}

static int check_config(const CPhysHeatConfig *c) {
  CPhysCheck(c != NULL, CPHYS_ERROR_ARGUMENT, "config must not be NULL");
  CPhysCheck(c->dims == 0 || c->dims == 2 || c->dims == 3, CPHYS_ERROR_ARGUMENT,
             "dims must be 2 or 3 (0: 2-D periodic), got %d", c->dims);
  const int dims = c->dims == 3 ? 3 : 2;
  CPhysCheck(c->shape[0] >= 1 && c->shape[1] >= 1 && (dims == 2 || c->shape[2] >= 1), CPHYS_ERROR_ARGUMENT,
             "shape must be at least 1 per axis, got [%td, %td%s", c->shape[0], c->shape[1],
             dims == 3 ? ", ...]" : "]");
  /* FFTW's plan_many interface counts in int. */
  CPhysCheck(c->shape[0] <= INT_MAX / c->shape[1] &&
                 (dims == 2 || c->shape[2] <= INT_MAX / (c->shape[0] * c->shape[1])),
             CPHYS_ERROR_ARGUMENT, "grid [%td, %td, ...] has more cells than FFTW's int sizes allow",
             c->shape[0], c->shape[1]);
  for (int axis = 0; axis < dims; axis++) {
    CPhysCheck(isfinite(c->spacing[axis]) && c->spacing[axis] > 0.0, CPHYS_ERROR_ARGUMENT,
               "spacing[%d] must be positive and finite, got %g", axis, c->spacing[axis]);
    CPhysCheck(c->dims == 0 || c->boundary[axis] == CPHYS_BOUNDARY_DIRICHLET ||
                   c->boundary[axis] == CPHYS_BOUNDARY_NEUMANN ||
                   c->boundary[axis] == CPHYS_BOUNDARY_PERIODIC,
               CPHYS_ERROR_ARGUMENT, "boundary[%d] must be DIRICHLET, NEUMANN or PERIODIC, got %d", axis,
               (int)c->boundary[axis]);
  }
  CPhysCheck(isfinite(c->nu_t) && c->nu_t >= 0.0, CPHYS_ERROR_ARGUMENT,
             "nu_t must be finite and >= 0, got %g", c->nu_t);
  CPhysCheck(isfinite(c->noise_relative) && c->noise_relative >= 0.0, CPHYS_ERROR_ARGUMENT,
             "noise_relative must be finite and > 0 (0: default), got %g", c->noise_relative);
  CPhysCheck(isfinite(c->signal_amplitude) && c->signal_amplitude >= 0.0, CPHYS_ERROR_ARGUMENT,
             "signal_amplitude must be finite and > 0 (0: default), got %g", c->signal_amplitude);
  return 0;
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

static void fill_kernels(CPhysHeat h) {
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

int CPhysHeatCreate(const CPhysHeatConfig *config, CPhysHeat *heat) {
  CPhysCheck(heat != NULL, CPHYS_ERROR_ARGUMENT, "heat (the output handle) must not be NULL");
  *heat = NULL;
  CPhysCall(check_config(config));
  CPhysHeat h = calloc(1, sizeof *h);
  CPhysCheck(h != NULL, CPHYS_ERROR_MEMORY, "cannot allocate the heat object");
  h->config = *config;
  if (h->config.noise_relative == 0.0) h->config.noise_relative = 1e-6;
  if (h->config.signal_amplitude == 0.0) h->config.signal_amplitude = 1.0;
  if (h->config.dims == 0) {
    h->config.dims = 2;
    for (int a = 0; a < 3; a++) h->config.boundary[a] = CPHYS_BOUNDARY_PERIODIC;
  }
  if (h->config.dims == 2) { /* unused trailing entries zeroed */
    h->config.shape[2] = 0, h->config.spacing[2] = 0.0;
    h->config.boundary[2] = CPHYS_BOUNDARY_PERIODIC;
  }
  const int dims = h->config.dims;
  for (int a = 0; a < dims; a++) h->real_basis |= h->config.boundary[a] != CPHYS_BOUNDARY_PERIODIC;
  h->nz = dims == 3 ? config->shape[0] : 1;
  h->ny = config->shape[dims - 2];
  h->nx = config->shape[dims - 1];
  h->cells = h->nz * h->ny * h->nx;
  h->modes = h->real_basis ? h->cells : h->nz * h->ny * (h->nx / 2 + 1);
  h->normalization = (double)h->cells;
  /* A thread's spectrum buffer, and for a Dirichlet axis a pad of its longest
   * odd extension after it, at the buffers' alignment (8 doubles). */
  h->pad_offset = (2 * h->modes + 7) / 8 * 8;
  h->scratch = 2 * h->modes;
  for (int a = 0; a < dims; a++)
    if (h->config.boundary[a] == CPHYS_BOUNDARY_DIRICHLET &&
        h->pad_offset + 2 * h->config.shape[a] + 4 > h->scratch)
      h->scratch = h->pad_offset + 2 * h->config.shape[a] + 4;
  h->exponent = malloc((size_t)h->modes * sizeof(double));
  h->forward_gain = malloc((size_t)h->modes * sizeof(double));
  h->inverse_gain = malloc((size_t)h->modes * sizeof(double));
  h->noise_odds = malloc((size_t)h->modes * sizeof(double));
  if (h->real_basis) h->log_weight = malloc((size_t)h->modes * sizeof(double));
  if (h->real_basis) h->weight = malloc((size_t)h->modes * sizeof(double));
  if (!h->exponent || !h->forward_gain || !h->inverse_gain || !h->noise_odds ||
      (h->real_basis && (!h->log_weight || !h->weight))) {
    const ptrdiff_t modes = h->modes;
    CPhysHeatDestroy(&h);
    return CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate kernels of %td modes", modes);
  }
  fill_kernels(h);
  /* The largest |k|^2 nu_t must be a number for the inverses' log-space arithmetic. */
  for (ptrdiff_t q = 0; q < h->modes; q++) {
    if (!isfinite(h->exponent[q])) {
      const double nu_t = h->config.nu_t;
      CPhysHeatDestroy(&h);
      return CPhysSetError(CPHYS_ERROR_ARGUMENT, __func__, "nu_t = %g overflows |k|^2 nu_t", nu_t);
    }
  }
  CPhysLibraryLock();
  int ierr = make_plans_locked(h);
  CPhysLibraryUnlock();
  if (ierr) {
    CPhysHeatDestroy(&h);
    return ierr;
  }
  *heat = h;
  return 0;
}

int CPhysHeatDestroy(CPhysHeat *heat) {
  if (!heat || !*heat) return 0;
  CPhysHeat h = *heat;
  /* fftw_destroy_plan is a planner routine: not thread-safe. */
  CPhysLibraryLock();
  if (h->r2c) fftw_destroy_plan(h->r2c);
  if (h->c2r) fftw_destroy_plan(h->c2r);
  for (int a = 0; a < 3; a++) {
    if (h->axis_forward[a]) fftw_destroy_plan(h->axis_forward[a]);
    if (h->axis_backward[a]) fftw_destroy_plan(h->axis_backward[a]);
    if (h->sine[a]) fftw_destroy_plan(h->sine[a]);
  }
  CPhysLibraryUnlock();
  free(h->exponent);
  free(h->forward_gain);
  free(h->inverse_gain);
  free(h->noise_odds);
  free(h->log_weight);
  free(h->weight);
  free(h);
  *heat = NULL;
  return 0;
}

int CPhysHeatGetConfig(CPhysHeat heat, CPhysHeatConfig *config) {
  CPhysCheck(heat != NULL && config != NULL, CPHYS_ERROR_ARGUMENT, "heat and config must not be NULL");
  *config = heat->config;
  return 0;
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
 * axes), or for a Dirichlet axis an in-place r2c plan of one padded line (sine_lines). */
static int make_real_plans_locked(CPhysHeat h) {
  const int dims = h->config.dims;
  int n[3];
  fftw_r2r_kind forward[3], backward[3];
  for (int a = 0; a < dims; a++) {
    n[a] = (int)h->config.shape[a];
    forward[a] = forward_kind(h->config.boundary[a]);
    backward[a] = backward_kind(h->config.boundary[a]);
  }
  double *scratch = buffer_alloc((size_t)h->scratch * sizeof(double));
  if (!scratch)
    return CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate transform buffers of %td cells",
                         h->cells);
  int ok = 1;
  ptrdiff_t outer = 1;
  for (int a = 0; a < dims; a++) {
    const ptrdiff_t inner = h->cells / outer / n[a];
    if (h->config.boundary[a] == CPHYS_BOUNDARY_DIRICHLET) {
      const int length = 2 * (n[a] + 1);
      double *pad = scratch + h->pad_offset;
      h->sine[a] = fftw_plan_dft_r2c(1, &length, pad, (fftw_complex *)pad, FFTW_ESTIMATE);
      ok = ok && h->sine[a];
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

static int make_plans_locked(CPhysHeat h) {
  if (h->real_basis) return make_real_plans_locked(h);
  if (h->config.dims == 3) {
    const int n3[3] = {(int)h->nz, (int)h->ny, (int)h->nx};
    double *real = buffer_alloc((size_t)h->cells * sizeof(double));
    fftw_complex *spectrum = buffer_alloc((size_t)h->modes * sizeof(fftw_complex));
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
  double *real = buffer_alloc((size_t)h->cells * sizeof(double));
  fftw_complex *spectrum = buffer_alloc((size_t)h->modes * sizeof(fftw_complex));
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

static int check_batch(CPhysHeat h, ptrdiff_t batch, const double *in, const double *out,
                       const char *caller) {
  CPhysCheckCaller(caller, h != NULL, CPHYS_ERROR_ARGUMENT, "heat must not be NULL");
  CPhysCheckCaller(caller, batch >= 0, CPHYS_ERROR_ARGUMENT, "batch must be >= 0, got %td", batch);
  CPhysCheckCaller(caller, batch <= INT_MAX, CPHYS_ERROR_ARGUMENT, "batch %td exceeds FFTW's int sizes",
                   batch);
  CPhysCheckCaller(caller, batch == 0 || (in != NULL && out != NULL), CPHYS_ERROR_ARGUMENT,
                   "input and output arrays must not be NULL");
  CPhysCheckCaller(caller, batch == 0 || batch <= (ptrdiff_t)(PTRDIFF_MAX / sizeof(fftw_complex)) / h->modes,
                   CPHYS_ERROR_MEMORY, "batch %td of %td x %td grids needs more memory than can be addressed",
                   batch, h->ny, h->nx);
  return 0;
}

/* One sample: check and copy in, r2c, filter, c2r, check and copy out.
 * real [cells] and spectrum [modes] are the thread's buffers (in cache). */
/* FFTW's RODFT00 along axis a, y[k] = 2 sum_j x[j] sin(pi (j+1)(k+1) / (n+1)), of
 * every line: the DFT of the odd extension (0, x, 0, -reversed x) of length
 * 2 (n+1) is -i times that sum at frequency k + 1.  Its own inverse up to 2 (n+1). */
static void sine_lines(CPhysHeat h, int a, double *w, double *pad) {
  const int dims = h->config.dims;
  ptrdiff_t outer = 1, inner = 1;
  for (int b = 0; b < a; b++) outer *= h->config.shape[b];
  for (int b = a + 1; b < dims; b++) inner *= h->config.shape[b];
  const ptrdiff_t n = h->config.shape[a], length = 2 * (n + 1);
  for (ptrdiff_t o = 0; o < outer; o++)
    for (ptrdiff_t i = 0; i < inner; i++) {
      double *line = w + o * n * inner + i;
      pad[0] = 0.0, pad[n + 1] = 0.0;
      for (ptrdiff_t j = 0; j < n; j++) {
        const double v = line[j * inner];
        pad[1 + j] = v, pad[length - 1 - j] = -v;
      }
      fftw_execute_dft_r2c(h->sine[a], pad, (fftw_complex *)pad);
      for (ptrdiff_t k = 0; k < n; k++) line[k * inner] = -pad[2 * k + 3];
    }
}

/* The real basis's unnormalized transform (forward) or its inverse up to the normalization, in place. */
static void real_transform(CPhysHeat h, double *w, double *pad, int forward) {
  for (int a = 0; a < h->config.dims; a++) {
    if (h->sine[a])
      sine_lines(h, a, w, pad);
    else
      fftw_execute_r2r(forward ? h->axis_forward[a] : h->axis_backward[a], w, w);
  }
}

static int apply_sample(CPhysHeat heat, ptrdiff_t s, const double *in, double *out, double *real,
                        fftw_complex *spectrum, CPhysHeatSpectralFilter filter,
                        CPhysHeatRealFilter real_filter, void *context, const char *caller) {
  const ptrdiff_t cells = heat->cells;
  ptrdiff_t bad = cphys_copy_checked(real, in + s * cells, cells);
  CPhysCheckCaller(caller, bad < 0, CPHYS_ERROR_NONFINITE, "input value %td (sample %td) is %g",
                   s * cells + bad, s, in[s * cells + bad]);
  if (heat->real_basis) {
    /* In place on a copy: `real` still holds the sample for the filter. */
    double *coefficients = (double *)spectrum, *pad = (double *)spectrum + heat->pad_offset;
    memcpy(coefficients, real, (size_t)cells * sizeof(double));
    real_transform(heat, coefficients, pad, 1);
    CPhysCall(real_filter(heat, real, coefficients, context));
    real_transform(heat, coefficients, pad, 0);
    memcpy(real, coefficients, (size_t)cells * sizeof(double));
  } else {
    fftw_execute_dft_r2c(heat->r2c, real, spectrum);
    /* r2c leaves its input alone: `real` still holds the sample for the filter. */
    CPhysCall(filter(heat, real, spectrum, context));
    fftw_execute_dft_c2r(heat->c2r, spectrum, real);
  }
  /* out may alias in: sample s of in has been read (into real) by now. */
  bad = cphys_copy_checked(out + s * cells, real, cells);
  CPhysCheckCaller(caller, bad < 0, CPHYS_ERROR_NONFINITE, "output value %td (sample %td) overflows to %g",
                   s * cells + bad, s, real[bad]);
  return 0;
}

int CPhysHeatApplySpectral(CPhysHeat heat, ptrdiff_t batch, const double *in, double *out,
                           CPhysHeatSpectralFilter filter, CPhysHeatRealFilter real_filter, void *context,
                           const char *caller) {
  CPhysCall(check_batch(heat, batch, in, out, caller));
  if (batch == 0) return 0;
  /* Measured ~60 us per 64 x 64 sample for both transforms and the filter. */
  const double seconds_per_sample = 15e-9 * (double)heat->cells;
  const int threads = cphys_loop_threads(batch, seconds_per_sample);
  CPhysLoopError failure;
  cphys_loop_error_init(&failure);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    /* Per-thread buffers (one sample, cache-sized) keep concurrent calls and threads independent. */
    double *real = buffer_alloc((size_t)heat->cells * sizeof(double));
    fftw_complex *spectrum = buffer_alloc((size_t)heat->scratch * sizeof(double));
    if (!real || !spectrum) /* index -1: before every sample, so that all are skipped */
      cphys_loop_error_record(&failure,
                              CPhysSetError(CPHYS_ERROR_MEMORY, caller, "cannot allocate FFT buffers"), -1);
#pragma omp for schedule(static)
    for (ptrdiff_t s = 0; s < batch; s++) {
      if (cphys_loop_error_skip(&failure, s)) continue;
      const int ierr = apply_sample(heat, s, in, out, real, spectrum, filter, real_filter, context, caller);
      if (ierr) cphys_loop_error_record(&failure, ierr, s);
    }
    free(real);
    free(spectrum);
  }
  return cphys_loop_error_raise(&failure);
}

static int apply_forward_gain(CPhysHeat heat, const double *sample, fftw_complex *spectrum, void *context) {
  (void)sample, (void)context;
  for (ptrdiff_t q = 0; q < heat->modes; q++) spectrum[q] *= heat->forward_gain[q];
  return 0;
}

static int apply_forward_gain_real(CPhysHeat heat, const double *sample, double *coefficients,
                                   void *context) {
  (void)sample, (void)context;
  for (ptrdiff_t q = 0; q < heat->modes; q++) coefficients[q] *= heat->forward_gain[q];
  return 0;
}

int CPhysHeatForward(CPhysHeat heat, ptrdiff_t batch, const double *x, double *y) {
  return CPhysHeatApplySpectral(heat, batch, x, y, apply_forward_gain, apply_forward_gain_real, NULL,
                                __func__);
}

int CPhysHeatAdjoint(CPhysHeat heat, ptrdiff_t batch, const double *dy, double *dx) {
  /* A real, even kernel, or a real diagonal in an orthogonal basis: P is symmetric. */
  return CPhysHeatApplySpectral(heat, batch, dy, dx, apply_forward_gain, apply_forward_gain_real, NULL,
                                __func__);
}

/* Multiplies by exp(+|k|^2 nu_t) / (ny nx) in log space, so a zero coefficient
 * stays zero instead of becoming 0 * inf. */
static int apply_inverse_gain(CPhysHeat heat, const double *sample, fftw_complex *spectrum, void *context) {
  (void)sample, (void)context;
  const double log_cells = log((double)heat->cells);
  for (ptrdiff_t q = 0; q < heat->modes; q++) {
    double amplitude = cabs(spectrum[q]);
    if (amplitude == 0.0) continue;
    double scaled = exp(log(amplitude) + heat->exponent[q] - log_cells);
    CPhysCheck(isfinite(scaled), CPHYS_ERROR_NONFINITE,
               "amplifying mode %td by exp(%g) overflows; the exact inverse is unstable at this nu_t", q,
               heat->exponent[q]);
    spectrum[q] = spectrum[q] / amplitude * scaled;
  }
  return 0;
}

static int apply_inverse_gain_real(CPhysHeat heat, const double *sample, double *coefficients,
                                   void *context) {
  (void)sample, (void)context;
  const double log_normalization = log(heat->normalization);
  for (ptrdiff_t q = 0; q < heat->modes; q++) {
    const double amplitude = fabs(coefficients[q]);
    if (amplitude == 0.0) continue;
    const double scaled = exp(log(amplitude) + heat->exponent[q] - log_normalization);
    CPhysCheck(isfinite(scaled), CPHYS_ERROR_NONFINITE,
               "amplifying mode %td by exp(%g) overflows; the exact inverse is unstable at this nu_t", q,
               heat->exponent[q]);
    coefficients[q] = copysign(scaled, coefficients[q]);
  }
  return 0;
}

int CPhysHeatInverseExact(CPhysHeat heat, ptrdiff_t batch, const double *y, double *x) {
  return CPhysHeatApplySpectral(heat, batch, y, x, apply_inverse_gain, apply_inverse_gain_real, NULL,
                                __func__);
}

static int forward_one(void *context, const double *x, double *y) {
  return CPhysHeatForward((CPhysHeat)context, 1, x, y);
}

static int adjoint_one(void *context, const double *x, const double *dy, double *dx) {
  (void)x; /* the map is linear */
  return CPhysHeatAdjoint((CPhysHeat)context, 1, dy, dx);
}

int CPhysHeatGetLeastSquaresProblem(CPhysHeat heat, CPhysLeastSquaresProblem *problem) {
  CPhysCheck(heat != NULL && problem != NULL, CPHYS_ERROR_ARGUMENT, "heat and problem must not be NULL");
  problem->n = problem->m = heat->cells;
  problem->forward = forward_one;
  problem->adjoint = adjoint_one;
  problem->context = heat;
  return 0;
}
