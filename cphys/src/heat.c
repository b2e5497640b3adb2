/* Heat object: Fourier kernels, cached batched FFTW plans, forward, adjoint, exact inverse,
 * the least-squares problem of the `lbfgs` mode. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "heat_private.h"
#include "petsc_env.h"

/* Scratch arrays for FFTW.  One fixed alignment for planning and executing
 * arrays satisfies the new-array execute rule (equal alignment), and C11
 * aligned_alloc, unlike fftw_malloc, is documented as thread-safe. */
enum { HEAT_BUFFER_ALIGNMENT = 64 };

static void *buffer_alloc(size_t bytes) {
  size_t rounded = (bytes + HEAT_BUFFER_ALIGNMENT - 1) / HEAT_BUFFER_ALIGNMENT * HEAT_BUFFER_ALIGNMENT;
  return aligned_alloc(HEAT_BUFFER_ALIGNMENT, rounded ? rounded : HEAT_BUFFER_ALIGNMENT);
}

CPhysHeatConfig CPhysHeatDefaultConfig(void) {
  CPhysHeatConfig config = {{64, 64}, {1.0, 1.0}, 8.0, 1e-6, 1.0};
  return config;
}

static int check_config(const CPhysHeatConfig *c) {
  CPhysCheck(c != NULL, CPHYS_ERROR_ARGUMENT, "config must not be NULL");
  CPhysCheck(c->shape[0] >= 1 && c->shape[1] >= 1, CPHYS_ERROR_ARGUMENT,
             "shape must be at least [1, 1], got [%td, %td]", c->shape[0], c->shape[1]);
  /* FFTW's plan_many interface counts in int. */
  CPhysCheck(c->shape[0] <= INT_MAX / c->shape[1], CPHYS_ERROR_ARGUMENT,
             "grid [%td, %td] has more cells than FFTW's int sizes allow", c->shape[0], c->shape[1]);
  for (int axis = 0; axis < 2; axis++)
    CPhysCheck(isfinite(c->spacing[axis]) && c->spacing[axis] > 0.0, CPHYS_ERROR_ARGUMENT,
               "spacing[%d] must be positive and finite, got %g", axis, c->spacing[axis]);
  CPhysCheck(isfinite(c->nu_t) && c->nu_t >= 0.0, CPHYS_ERROR_ARGUMENT,
             "nu_t must be finite and >= 0, got %g", c->nu_t);
  CPhysCheck(isfinite(c->noise_relative) && c->noise_relative >= 0.0, CPHYS_ERROR_ARGUMENT,
             "noise_relative must be finite and > 0 (0: default), got %g", c->noise_relative);
  CPhysCheck(isfinite(c->signal_amplitude) && c->signal_amplitude >= 0.0, CPHYS_ERROR_ARGUMENT,
             "signal_amplitude must be finite and > 0 (0: default), got %g", c->signal_amplitude);
  return 0;
}

/* Signed mode index p in (-n/2, n/2] of FFT bin j; its sign never matters (only p^2 is used). */
static double signed_mode(ptrdiff_t j, ptrdiff_t n) { return (double)(j <= n / 2 ? j : j - n); }

static void fill_kernels(CPhysHeat h) {
  const ptrdiff_t half = h->nx / 2 + 1;
  const double two_pi = 2.0 * acos(-1.0), cells = (double)h->cells;
  for (ptrdiff_t j = 0; j < h->ny; j++) {
    double ky = two_pi * signed_mode(j, h->ny) / ((double)h->ny * h->config.spacing[0]);
    for (ptrdiff_t i = 0; i < half; i++) {
      double kx = two_pi * (double)i / ((double)h->nx * h->config.spacing[1]);
      double exponent = (ky * ky + kx * kx) * h->config.nu_t;
      h->exponent[j * half + i] = exponent;
      h->forward_gain[j * half + i] = exp(-exponent) / cells;
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
  h->ny = config->shape[0];
  h->nx = config->shape[1];
  h->cells = h->ny * h->nx;
  h->modes = h->ny * (h->nx / 2 + 1);
  h->exponent = malloc((size_t)h->modes * sizeof(double));
  h->forward_gain = malloc((size_t)h->modes * sizeof(double));
  if (!h->exponent || !h->forward_gain) {
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
  *heat = h;
  return 0;
}

int CPhysHeatDestroy(CPhysHeat *heat) {
  if (!heat || !*heat) return 0;
  CPhysHeat h = *heat;
  /* fftw_destroy_plan is a planner routine: not thread-safe. */
  CPhysLibraryLock();
  while (h->plans) {
    CPhysHeatPlans *next = h->plans->next;
    if (h->plans->r2c) fftw_destroy_plan(h->plans->r2c);
    if (h->plans->c2r) fftw_destroy_plan(h->plans->c2r);
    free(h->plans);
    h->plans = next;
  }
  CPhysLibraryUnlock();
  free(h->exponent);
  free(h->forward_gain);
  free(h);
  *heat = NULL;
  return 0;
}

int CPhysHeatGetConfig(CPhysHeat heat, CPhysHeatConfig *config) {
  CPhysCheck(heat != NULL && config != NULL, CPHYS_ERROR_ARGUMENT, "heat and config must not be NULL");
  *config = heat->config;
  return 0;
}

/* Plans on internal scratch arrays, never on caller data (a measuring planner
 * would overwrite them).  FFTW_ESTIMATE: at 64 x 64 x 128 FFTW_MEASURE planned
 * for ~60 ms and executed no faster here, and estimated plans keep new batch
 * sizes cheap and results reproducible from run to run. */
static int make_plans_locked(CPhysHeat h, ptrdiff_t batch, CPhysHeatPlans **made) {
  const int n[2] = {(int)h->ny, (int)h->nx};
  double *real = buffer_alloc((size_t)(batch * h->cells) * sizeof(double));
  fftw_complex *spectrum = buffer_alloc((size_t)(batch * h->modes) * sizeof(fftw_complex));
  CPhysHeatPlans *p = calloc(1, sizeof *p);
  int ierr = 0;
  if (!real || !spectrum || !p) {
    ierr =
        CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate FFT buffers for a batch of %td", batch);
  } else {
    p->batch = batch;
    p->r2c = fftw_plan_many_dft_r2c(2, n, (int)batch, real, NULL, 1, (int)h->cells, spectrum, NULL, 1,
                                    (int)h->modes, FFTW_ESTIMATE);
    p->c2r = fftw_plan_many_dft_c2r(2, n, (int)batch, spectrum, NULL, 1, (int)h->modes, real, NULL, 1,
                                    (int)h->cells, FFTW_ESTIMATE);
    if (!p->r2c || !p->c2r) {
      ierr = CPhysSetError(CPHYS_ERROR_FFTW, __func__, "FFTW could not plan %td transforms of %td x %td",
                           batch, h->ny, h->nx);
      if (p->r2c) fftw_destroy_plan(p->r2c);
      if (p->c2r) fftw_destroy_plan(p->c2r);
    }
  }
  free(real);
  free(spectrum);
  if (ierr) {
    free(p);
    return ierr;
  }
  p->next = h->plans;
  h->plans = p;
  *made = p;
  return 0;
}

static int get_plans(CPhysHeat h, ptrdiff_t batch, CPhysHeatPlans **plans) {
  CPhysLibraryLock();
  int ierr = 0;
  CPhysHeatPlans *p = h->plans;
  while (p && p->batch != batch) p = p->next;
  if (p)
    *plans = p;
  else
    ierr = make_plans_locked(h, batch, plans);
  CPhysLibraryUnlock();
  return ierr;
}

#define HEAT_CHECK(caller, cond, code, ...)                           \
  do {                                                                \
    if (!(cond)) return CPhysSetError((code), (caller), __VA_ARGS__); \
  } while (0)

static int check_batch(CPhysHeat h, ptrdiff_t batch, const double *in, const double *out,
                       const char *caller) {
  HEAT_CHECK(caller, h != NULL, CPHYS_ERROR_ARGUMENT, "heat must not be NULL");
  HEAT_CHECK(caller, batch >= 0, CPHYS_ERROR_ARGUMENT, "batch must be >= 0, got %td", batch);
  HEAT_CHECK(caller, batch <= INT_MAX, CPHYS_ERROR_ARGUMENT, "batch %td exceeds FFTW's int sizes", batch);
  HEAT_CHECK(caller, batch == 0 || (in != NULL && out != NULL), CPHYS_ERROR_ARGUMENT,
             "input and output arrays must not be NULL");
  HEAT_CHECK(caller, batch == 0 || batch <= (ptrdiff_t)(PTRDIFF_MAX / sizeof(fftw_complex)) / h->modes,
             CPHYS_ERROR_MEMORY, "batch %td of %td x %td grids needs more memory than can be addressed",
             batch, h->ny, h->nx);
  return 0;
}

int CPhysHeatApplySpectral(CPhysHeat heat, ptrdiff_t batch, const double *in, double *out,
                           CPhysHeatSpectralFilter filter, void *context, const char *caller) {
  CPhysCall(check_batch(heat, batch, in, out, caller));
  if (batch == 0) return 0;
  const ptrdiff_t total = batch * heat->cells;
  for (ptrdiff_t i = 0; i < total; i++)
    HEAT_CHECK(caller, isfinite(in[i]), CPHYS_ERROR_NONFINITE, "input value %td (sample %td) is %g", i,
               i / heat->cells, in[i]);
  CPhysHeatPlans *plans;
  CPhysCall(get_plans(heat, batch, &plans));
  /* Per-call buffers keep concurrent calls on one object independent. */
  double *real = buffer_alloc((size_t)total * sizeof(double));
  fftw_complex *spectrum = buffer_alloc((size_t)(batch * heat->modes) * sizeof(fftw_complex));
  int ierr = 0;
  if (!real || !spectrum) {
    ierr = CPhysSetError(CPHYS_ERROR_MEMORY, caller, "cannot allocate FFT buffers for a batch of %td", batch);
    goto cleanup;
  }
  memcpy(real, in, (size_t)total * sizeof(double));
  fftw_execute_dft_r2c(plans->r2c, real, spectrum);
  for (ptrdiff_t b = 0; b < batch && !ierr; b++)
    ierr = filter(heat, in + b * heat->cells, spectrum + b * heat->modes, context);
  if (ierr) goto cleanup;
  fftw_execute_dft_c2r(plans->c2r, spectrum, real);
  for (ptrdiff_t i = 0; i < total; i++) {
    if (!isfinite(real[i])) {
      ierr = CPhysSetError(CPHYS_ERROR_NONFINITE, caller, "output value %td (sample %td) overflows to %g", i,
                           i / heat->cells, real[i]);
      goto cleanup;
    }
  }
  memcpy(out, real, (size_t)total * sizeof(double));
cleanup:
  free(real);
  free(spectrum);
  return ierr;
}

static int apply_forward_gain(CPhysHeat heat, const double *sample, fftw_complex *spectrum, void *context) {
  (void)sample, (void)context;
  for (ptrdiff_t q = 0; q < heat->modes; q++) spectrum[q] *= heat->forward_gain[q];
  return 0;
}

int CPhysHeatForward(CPhysHeat heat, ptrdiff_t batch, const double *x, double *y) {
  return CPhysHeatApplySpectral(heat, batch, x, y, apply_forward_gain, NULL, __func__);
}

int CPhysHeatAdjoint(CPhysHeat heat, ptrdiff_t batch, const double *dy, double *dx) {
  /* A real, even kernel: P is symmetric, its transpose is itself. */
  return CPhysHeatApplySpectral(heat, batch, dy, dx, apply_forward_gain, NULL, __func__);
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

int CPhysHeatInverseExact(CPhysHeat heat, ptrdiff_t batch, const double *y, double *x) {
  return CPhysHeatApplySpectral(heat, batch, y, x, apply_inverse_gain, NULL, __func__);
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
