/* Heat object: configuration, create/destroy, the per-sample spectral driver, forward, adjoint, exact
 * inverse, the least-squares problem of the `lbfgs` mode (kernels and transforms: heat_transforms.c). */
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

CPhysHeatConfig CPhysHeatDefaultConfig(void) {
  CPhysHeatConfig config = {{64, 64, 0},
                            {1.0, 1.0, 0.0},
                            8.0,
                            1e-6,
                            1.0,
                            2,
                            {CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_PERIODIC},
                            0.0};
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
  CPhysCheck(isfinite(c->noise_absolute) && c->noise_absolute >= 0.0, CPHYS_ERROR_ARGUMENT,
             "noise_absolute must be finite and >= 0 (0: none), got %g", c->noise_absolute);
  return 0;
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
  /* A thread's spectrum buffer, and for a Dirichlet axis the pad of its sine
   * transform's block of odd extensions after it, at the buffers' alignment
   * (8 doubles). */
  h->pad_offset = (2 * h->modes + 7) / 8 * 8;
  h->scratch = 2 * h->modes;
  for (int a = 0; a < dims; a++) {
    const ptrdiff_t n = h->config.shape[a];
    if (h->config.boundary[a] == CPHYS_BOUNDARY_DIRICHLET &&
        h->pad_offset + CPhysSineLinesPadSize(n, h->cells / n) > h->scratch)
      h->scratch = h->pad_offset + CPhysSineLinesPadSize(n, h->cells / n);
  }
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
  heat_fill_kernels(h);
  /* The largest |k|^2 nu_t must be a number for the inverses' log-space arithmetic. */
  for (ptrdiff_t q = 0; q < h->modes; q++) {
    if (!isfinite(h->exponent[q])) {
      const double nu_t = h->config.nu_t;
      CPhysHeatDestroy(&h);
      return CPhysSetError(CPHYS_ERROR_ARGUMENT, __func__, "nu_t = %g overflows |k|^2 nu_t", nu_t);
    }
  }
  CPhysLibraryLock();
  int ierr = heat_make_plans_locked(h);
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
    CPhysSineLinesDestroyLocked(&h->sine[a]);
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
    heat_real_transform(heat, coefficients, pad, 1);
    CPhysCall(real_filter(heat, real, coefficients, context));
    heat_real_transform(heat, coefficients, pad, 0);
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
    double *real = heat_buffer_alloc((size_t)heat->cells * sizeof(double));
    fftw_complex *spectrum = heat_buffer_alloc((size_t)heat->scratch * sizeof(double));
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
  *problem = (CPhysLeastSquaresProblem){0}; /* select_sample and later members: none */
  problem->n = problem->m = heat->cells;
  problem->forward = forward_one;
  problem->adjoint = adjoint_one;
  problem->context = heat;
  return 0;
}
