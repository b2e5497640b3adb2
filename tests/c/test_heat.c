/* The heat object: forward against a direct DFT, conservation, adjoint, exact
 * and stable (physical-gradient) inverses, batching, threads, error paths. */
#include <complex.h>
#include <pthread.h>
#include <string.h>

#include "check.h"
#include "cphys/heat.h"

static const double PI = 3.14159265358979323846;

/* Unnormalized full 2-D DFT  C[p, q] = sum x[j, i] exp(-2 pi i (p j / ny + q i / nx)),
 * separable and direct (no FFT), as an independent reference.  x: [ny, nx]; c: [ny, nx]. */
static void direct_dft(const double *x, ptrdiff_t ny, ptrdiff_t nx, double complex *c) {
  double complex *rows = malloc((size_t)(ny * nx) * sizeof *rows);
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t q = 0; q < nx; q++) {
      double complex s = 0.0;
      for (ptrdiff_t i = 0; i < nx; i++)
        s += x[j * nx + i] * cexp(-2.0 * PI * I * (double)((q * i) % nx) / nx);
      rows[j * nx + q] = s;
    }
  for (ptrdiff_t p = 0; p < ny; p++)
    for (ptrdiff_t q = 0; q < nx; q++) {
      double complex s = 0.0;
      for (ptrdiff_t j = 0; j < ny; j++)
        s += rows[j * nx + q] * cexp(-2.0 * PI * I * (double)((p * j) % ny) / ny);
      c[p * nx + q] = s;
    }
  free(rows);
}

/* Real part of the normalized inverse of direct_dft.  c: [ny, nx]; x: [ny, nx]. */
static void direct_inverse_dft(const double complex *c, ptrdiff_t ny, ptrdiff_t nx, double *x) {
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      double complex s = 0.0;
      for (ptrdiff_t p = 0; p < ny; p++)
        for (ptrdiff_t q = 0; q < nx; q++)
          s += c[p * nx + q] *
               cexp(2.0 * PI * I * ((double)((p * j) % ny) / ny + (double)((q * i) % nx) / nx));
      x[j * nx + i] = creal(s) / (double)(ny * nx);
    }
}

/* |k|^2 of bin (p, q) with k = 2 pi fftfreq(n, h). */
static double wave_number_squared(ptrdiff_t p, ptrdiff_t q, ptrdiff_t ny, ptrdiff_t nx, const double h[2]) {
  double py = (double)(p <= ny / 2 ? p : p - ny), qx = (double)(q <= nx / 2 ? q : q - nx);
  double ky = 2.0 * PI * py / (ny * h[0]), kx = 2.0 * PI * qx / (nx * h[1]);
  return ky * ky + kx * kx;
}

static double *random_field(size_t n, unsigned long long seed) {
  double *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = test_random(&seed);
  return v;
}

static CPhysHeat create(ptrdiff_t ny, ptrdiff_t nx, double hy, double hx, double nu_t) {
  /* dims 0: the 2-D periodic grid of configurations written before dims and boundary. */
  CPhysHeatConfig config = {{ny, nx}, {hy, hx}, nu_t, 0.0, 0.0, 0, {CPHYS_BOUNDARY_DIRICHLET}, 0.0};
  CPhysHeat heat = NULL;
  CHECK_OK(CPhysHeatCreate(&config, &heat));
  return heat;
}

static void test_forward_matches_direct_dft_on_odd_and_even_grids(void) {
  const ptrdiff_t shapes[][2] = {{4, 6}, {5, 7}, {6, 9}, {7, 4}, {1, 5}, {8, 1}, {1, 1}};
  const double spacing[2] = {0.7, 1.3}, nu_t = 0.9;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const ptrdiff_t ny = shapes[s][0], nx = shapes[s][1], n = ny * nx;
    CPhysHeat heat = create(ny, nx, spacing[0], spacing[1], nu_t);
    double *x = random_field((size_t)n, 11 + s), *y = malloc((size_t)n * sizeof *y),
           *expected = malloc((size_t)n * sizeof *expected);
    double complex *c = malloc((size_t)n * sizeof *c);
    direct_dft(x, ny, nx, c);
    for (ptrdiff_t p = 0; p < ny; p++)
      for (ptrdiff_t q = 0; q < nx; q++)
        c[p * nx + q] *= exp(-wave_number_squared(p, q, ny, nx, spacing) * nu_t);
    direct_inverse_dft(c, ny, nx, expected);
    CHECK_OK(CPhysHeatForward(heat, 1, x, y));
    CHECK(max_abs_diff(y, expected, (size_t)n) < 1e-13, "%tdx%td: forward differs from the direct DFT by %g",
          ny, nx, max_abs_diff(y, expected, (size_t)n));
    free(x), free(y), free(expected), free(c);
    CHECK_OK(CPhysHeatDestroy(&heat));
    CHECK(heat == NULL, "Destroy did not clear the handle");
  }
}

static void test_single_fourier_mode_decays_analytically(void) {
  const ptrdiff_t shapes[][2] = {{5, 8}, {6, 7}};
  const double hy = 0.5, hx = 2.0, nu_t = 1.7;
  for (size_t s = 0; s < 2; s++) {
    const ptrdiff_t ny = shapes[s][0], nx = shapes[s][1];
    CPhysHeat heat = create(ny, nx, hy, hx, nu_t);
    for (int px = 0; px <= nx / 2; px++) {
      double x[64], y[64], expected[64];
      const double k = 2.0 * PI * px / (nx * hx), decay = exp(-k * k * nu_t);
      for (ptrdiff_t j = 0; j < ny; j++)
        for (ptrdiff_t i = 0; i < nx; i++) {
          x[j * nx + i] = cos(k * (double)i * hx) + 0.25 * cos(2.0 * PI * (double)j / ny);
          const double ky = 2.0 * PI / (ny * hy);
          expected[j * nx + i] =
              decay * cos(k * (double)i * hx) + 0.25 * exp(-ky * ky * nu_t) * cos(2.0 * PI * (double)j / ny);
        }
      CHECK_OK(CPhysHeatForward(heat, 1, x, y));
      CHECK(max_abs_diff(y, expected, (size_t)(ny * nx)) < 1e-13, "%tdx%td mode %d: error %g", ny, nx, px,
            max_abs_diff(y, expected, (size_t)(ny * nx)));
    }
    CHECK_OK(CPhysHeatDestroy(&heat));
  }
}

static void test_mean_is_conserved_and_in_place_works(void) {
  const ptrdiff_t n = 12 * 10;
  CPhysHeat heat = create(12, 10, 1.0, 1.0, 8.0);
  double *x = random_field((size_t)n, 3), *y = malloc((size_t)n * sizeof *y);
  CHECK_OK(CPhysHeatForward(heat, 1, x, y));
  double mean_x = 0.0, mean_y = 0.0;
  for (ptrdiff_t i = 0; i < n; i++) mean_x += x[i] / n, mean_y += y[i] / n;
  CHECK(fabs(mean_x - mean_y) < 1e-15, "mean %g became %g", mean_x, mean_y);
  CHECK_OK(CPhysHeatForward(heat, 1, x, x));
  CHECK(max_abs_diff(x, y, (size_t)n) == 0.0, "in-place forward differs by %g",
        max_abs_diff(x, y, (size_t)n));
  free(x), free(y);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

static void test_adjoint_identity(void) {
  const ptrdiff_t n = 9 * 14;
  CPhysHeat heat = create(9, 14, 0.8, 1.1, 2.5);
  double *u = random_field((size_t)n, 5), *v = random_field((size_t)n, 6);
  double *pu = malloc((size_t)n * sizeof *pu), *ptv = malloc((size_t)n * sizeof *ptv);
  CHECK_OK(CPhysHeatForward(heat, 1, u, pu));
  CHECK_OK(CPhysHeatAdjoint(heat, 1, v, ptv));
  double left = 0.0, right = 0.0;
  for (ptrdiff_t i = 0; i < n; i++) left += pu[i] * v[i], right += u[i] * ptv[i];
  CHECK(fabs(left - right) < 1e-13 * fabs(left) + 1e-14, "<P u, v> = %.17g but <u, P^T v> = %.17g", left,
        right);
  free(u), free(v), free(pu), free(ptv);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

static void test_exact_inverse_round_trip_and_overflow(void) {
  const ptrdiff_t n = 16 * 16;
  CPhysHeat heat = create(16, 16, 1.0, 1.0, 0.5);
  double *x = random_field((size_t)n, 8), *y = malloc((size_t)n * sizeof *y),
         *back = malloc((size_t)n * sizeof *back);
  CHECK_OK(CPhysHeatForward(heat, 1, x, y));
  CHECK_OK(CPhysHeatInverseExact(heat, 1, y, back));
  CHECK(max_abs_diff(x, back, (size_t)n) < 1e-9, "P^-1 P x differs from x by %g",
        max_abs_diff(x, back, (size_t)n));
  CHECK_OK(CPhysHeatDestroy(&heat));
  /* exp(|k|^2 nu_t) reaches exp(2 pi^2 * 100): no double holds it. */
  heat = create(16, 16, 1.0, 1.0, 100.0);
  CHECK_FAILS(CPhysHeatInverseExact(heat, 1, x, back), CPHYS_ERROR_NONFINITE);
  free(x), free(y), free(back);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

/* A smooth step made of the few lowest modes; [ny, nx]. */
static void smooth_field(double *v, ptrdiff_t ny, ptrdiff_t nx, double amplitude) {
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      double a = 2.0 * PI * (double)i / nx, b = 2.0 * PI * (double)j / ny;
      v[j * nx + i] =
          amplitude * (0.3 + cos(a) - 0.5 * sin(2.0 * b) + 0.4 * cos(a + b) + 0.2 * sin(2.0 * a - b));
    }
}

static void test_physical_gradient_is_exact_inverse_of_a_clean_step_on_low_frequencies(void) {
  enum { NY = 32, NX = 32 };
  const ptrdiff_t n = NY * NX;
  const double spacing[2] = {1.0, 1.0};
  CPhysHeat heat = create(NY, NX, 1.0, 1.0, 8.0);
  double *dx_true = malloc(n * sizeof(double)), *dy = malloc(n * sizeof(double)),
         *dx = malloc(n * sizeof(double));
  double complex *c_true = malloc(n * sizeof(double complex)), *c = malloc(n * sizeof(double complex));
  for (int step = 0; step < 3; step++) {
    const double amplitude = pow(10.0, -3.0 * step); /* 1, 1e-3, 1e-6: smaller and smaller steps */
    smooth_field(dx_true, NY, NX, amplitude);
    CHECK_OK(CPhysHeatForward(heat, 1, dx_true, dy));
    CHECK_OK(CPhysHeatPhysicalGradient(heat, 1, dy, dx));
    direct_dft(dx_true, NY, NX, c_true);
    direct_dft(dx, NY, NX, c);
    double worst = 0.0;
    for (ptrdiff_t p = 0; p < NY; p++)
      for (ptrdiff_t q = 0; q < NX; q++)
        if (wave_number_squared(p, q, NY, NX, spacing) * 8.0 < 4.0) /* amplification below e^4 */
          worst = fmax(worst, cabs(c[p * NX + q] - c_true[p * NX + q]) / (amplitude * n));
    CHECK(worst < 1e-10, "step %g: low modes differ from the exact inverse by %g (relative)", amplitude,
          worst);
    CHECK(max_abs_diff(dx, dx_true, n) < 1e-6 * amplitude, "step %g: dx differs from the exact inverse by %g",
          amplitude, max_abs_diff(dx, dx_true, n));
  }
  free(dx_true), free(dy), free(dx), free(c_true), free(c);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

static void test_physical_gradient_is_finite_and_damps_noise(void) {
  enum { NY = 64, NX = 64 };
  const ptrdiff_t n = NY * NX;
  const double spacing[2] = {1.0, 1.0}, nu_t = 8.0, noise = 1e-3;
  double *x = malloc(n * sizeof(double)), *dy = malloc(n * sizeof(double)), *dx = malloc(n * sizeof(double));
  smooth_field(x, NY, NX, 0.5);
  CPhysHeat heat = create(NY, NX, 1.0, 1.0, nu_t);
  CHECK_OK(CPhysHeatForward(heat, 1, x, dy));
  unsigned long long seed = 99;
  for (ptrdiff_t i = 0; i < n; i++) dy[i] += noise * test_random(&seed);
  CHECK_OK(CPhysHeatInverseExact(heat, 1, dy, dx));
  const double exact_size = max_abs(dx, n);
  CHECK(exact_size > 1e40, "the exact inverse of noise should explode, max |x| = %g", exact_size);

  /* Noise model matched to the added noise: per cell noise ~ noise_relative * |dy_i| on average. */
  double norm = 0.0;
  for (ptrdiff_t i = 0; i < n; i++) norm += dy[i] * dy[i];
  norm = sqrt(norm);
  const double noise_std = noise / sqrt(3.0); /* uniform on [-noise, noise] */
  CHECK_OK(CPhysHeatDestroy(&heat));
  CPhysHeatConfig config = {{NY, NX},
                            {1.0, 1.0},
                            nu_t,
                            noise_std * sqrt((double)n) / norm,
                            1.0,
                            2,
                            {CPHYS_BOUNDARY_PERIODIC, CPHYS_BOUNDARY_PERIODIC},
                            0.0};
  CHECK_OK(CPhysHeatCreate(&config, &heat));
  CHECK_OK(CPhysHeatPhysicalGradient(heat, 1, dy, dx));
  for (ptrdiff_t i = 0; i < n; i++) CHECK(isfinite(dx[i]), "dx[%td] = %g", i, dx[i]);
  CHECK(max_abs(dx, n) < 10.0, "stable inverse too large: max |dx| = %g", max_abs(dx, n));

  double complex *c_dy = malloc(n * sizeof(double complex)), *c_dx = malloc(n * sizeof(double complex));
  direct_dft(dy, NY, NX, c_dy);
  direct_dft(dx, NY, NX, c_dx);
  const double f = config.noise_relative * norm;
  int damped = 0, noise_modes = 0;
  for (ptrdiff_t p = 0; p < NY; p++)
    for (ptrdiff_t q = 0; q < NX; q++) {
      const ptrdiff_t m = p * NX + q;
      const double exponent = wave_number_squared(p, q, NY, NX, spacing) * nu_t;
      const double gain = cabs(c_dx[m]) / cabs(c_dy[m]);
      CHECK(gain <= exp(exponent) * (1.0 + 1e-9), "mode (%td, %td) amplified by %g > exp(%g)", p, q, gain,
            exponent);
      const double expected_signal = sqrt((double)n) * exp(-exponent);
      if (expected_signal < f) { /* a signal would not stand out of the noise here */
        noise_modes++;
        damped += gain <= 1.0 + 1e-9;
      }
    }
  CHECK(noise_modes > 1000 && damped == noise_modes, "%d of %d noise-only modes damped", damped, noise_modes);
  /* The signal's lowest modes survive: compare with the clean x. */
  double complex *c_x = malloc(n * sizeof(double complex));
  direct_dft(x, NY, NX, c_x);
  const ptrdiff_t signal_modes[] = {1, 2 * NX, NX + 1,
                                    (NY - 1) * NX + 2}; /* (0, 1), (2, 0), (1, 1), (-1, 2) */
  for (int s = 0; s < 4; s++) {
    const ptrdiff_t m = signal_modes[s];
    CHECK(cabs(c_dx[m] - c_x[m]) < 1e-3 * cabs(c_x[m]), "signal mode %td: %g vs clean %g", m, cabs(c_dx[m]),
          cabs(c_x[m]));
  }
  free(x), free(dy), free(dx), free(c_dy), free(c_dx), free(c_x);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

static void test_physical_gradient_is_finite_for_extreme_steps(void) {
  enum { NY = 64, NX = 64 };
  const ptrdiff_t n = NY * NX;
  CPhysHeatConfig config = CPhysHeatDefaultConfig();
  CPhysHeat heat = NULL;
  CHECK_OK(CPhysHeatCreate(&config, &heat));
  double *dy = random_field(n, 77), *dx = malloc(n * sizeof(double));
  const double scales[] = {1e-300, 1e-30, 1e30, 1e250};
  for (int s = 0; s < 4; s++) {
    for (ptrdiff_t i = 0; i < n; i++) dy[i] *= s == 0 ? scales[0] : scales[s] / scales[s - 1];
    dy[5] = 1e3 * scales[s]; /* a spike */
    CHECK_OK(CPhysHeatPhysicalGradient(heat, 1, dy, dx));
    for (ptrdiff_t i = 0; i < n; i++) CHECK(isfinite(dx[i]), "scale %g: dx[%td] = %g", scales[s], i, dx[i]);
  }
  free(dy), free(dx);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

typedef int (*HeatApply)(CPhysHeat, ptrdiff_t, const double *, double *);

static void test_batch_equals_per_sample_calls(void) {
  enum { B = 4, NY = 10, NX = 13 };
  const ptrdiff_t n = NY * NX;
  CPhysHeat heat = create(NY, NX, 1.0, 0.9, 1.5);
  double *in = random_field(B * n, 21), *batched = malloc(B * n * sizeof(double)),
         *single = malloc(n * sizeof(double));
  for (ptrdiff_t i = 0; i < n; i++) in[i] *= 1e-3; /* samples of different size: per-sample noise scales */
  const HeatApply applies[] = {CPhysHeatForward, CPhysHeatAdjoint, CPhysHeatInverseExact,
                               CPhysHeatPhysicalGradient};
  for (int a = 0; a < 4; a++) {
    CHECK_OK(applies[a](heat, B, in, batched));
    for (int b = 0; b < B; b++) {
      CHECK_OK(applies[a](heat, 1, in + b * n, single));
      double scale = max_abs(single, n);
      CHECK(max_abs_diff(single, batched + b * n, n) <= 1e-12 * scale,
            "function %d sample %d: batched differs by %g", a, b, max_abs_diff(single, batched + b * n, n));
    }
  }
  CHECK_OK(CPhysHeatForward(heat, 0, NULL, NULL)); /* an empty batch is fine */
  free(in), free(batched), free(single);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

typedef struct {
  CPhysHeat heat;
  const double *in;     /* [4, ny, nx] */
  const double *expect; /* [4, ny, nx] */
  ptrdiff_t n;
  int failures;
} ThreadWork;

static void *forward_repeatedly(void *arg) {
  ThreadWork *w = arg;
  double *out = malloc(4 * w->n * sizeof(double));
  for (int round = 0; round < 20; round++) {
    ptrdiff_t batch = 1 + round % 4; /* new batch sizes plan concurrently with executes */
    if (CPhysHeatForward(w->heat, batch, w->in, out) || max_abs_diff(out, w->expect, batch * w->n) > 1e-13)
      w->failures++;
  }
  free(out);
  return NULL;
}

static void test_concurrent_calls_on_one_object(void) {
  const ptrdiff_t n = 24 * 20;
  CPhysHeat heat = create(24, 20, 1.0, 1.0, 3.0);
  double *in = random_field(4 * n, 31), *expect = malloc(4 * n * sizeof(double));
  for (int b = 0; b < 4; b++) CHECK_OK(CPhysHeatForward(heat, 1, in + b * n, expect + b * n));
  ThreadWork work[4];
  pthread_t threads[4];
  for (int t = 0; t < 4; t++) {
    work[t] = (ThreadWork){heat, in, expect, n, 0};
    CHECK(pthread_create(&threads[t], NULL, forward_repeatedly, &work[t]) == 0, "pthread_create");
  }
  for (int t = 0; t < 4; t++) {
    pthread_join(threads[t], NULL);
    CHECK(work[t].failures == 0, "thread %d: %d wrong results", t, work[t].failures);
  }
  free(in), free(expect);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

/* The absolute noise floor: a step at rounding level, which the relative rule
 * alone takes for signal and amplifies by up to exp(|k|^2 nu_t), is judged
 * noise and damped (||dx|| <= ||dy||: every gain is exp(-|k|^2 nu_t) <= 1); a step
 * far above the floor gets the same physical gradient as without it. */
static void test_noise_floor_damps_a_rounding_level_step_and_leaves_signal(void) {
  enum { NY = 32, NX = 32 };
  const ptrdiff_t n = NY * NX;
  CPhysHeatConfig config = CPhysHeatDefaultConfig();
  config.shape[0] = NY, config.shape[1] = NX;
  CPhysHeat plain, floored;
  CHECK_OK(CPhysHeatCreate(&config, &plain));
  config.noise_absolute = 1e-8;
  CHECK_OK(CPhysHeatCreate(&config, &floored));
  CPhysHeatConfig used;
  CHECK_OK(CPhysHeatGetConfig(floored, &used));
  CHECK(used.noise_absolute == 1e-8, "noise_absolute not kept: %g", used.noise_absolute);
  double *residual = random_field((size_t)n, 21), *dx = malloc(n * sizeof(double)),
         *dx_floor = malloc(n * sizeof(double));
  for (ptrdiff_t i = 0; i < n; i++) residual[i] *= 1e-14;
  CHECK_OK(CPhysHeatPhysicalGradient(plain, 1, residual, dx));
  CHECK_OK(CPhysHeatPhysicalGradient(floored, 1, residual, dx_floor));
  CHECK(max_abs(dx, n) > 1e3 * max_abs(residual, n),
        "without a floor the residual was not amplified: %g vs %g", max_abs(dx, n), max_abs(residual, n));
  double norm_residual = 0.0, norm_floor = 0.0; /* every gain <= 1: the 2-norm cannot grow */
  for (ptrdiff_t i = 0; i < n; i++)
    norm_residual += residual[i] * residual[i], norm_floor += dx_floor[i] * dx_floor[i];
  CHECK(norm_floor <= norm_residual * (1.0 + 1e-12), "with a floor the residual grew: %g vs %g",
        sqrt(norm_floor), sqrt(norm_residual));
  double *dx_true = malloc(n * sizeof(double)), *dy = malloc(n * sizeof(double));
  smooth_field(dx_true, NY, NX, 1.0);
  CHECK_OK(CPhysHeatForward(plain, 1, dx_true, dy));
  CHECK_OK(CPhysHeatPhysicalGradient(plain, 1, dy, dx));
  CHECK_OK(CPhysHeatPhysicalGradient(floored, 1, dy, dx_floor));
  CHECK(max_abs_diff(dx, dx_floor, n) <= 1e-12 * max_abs(dx, n), "a clean step changed by %g",
        max_abs_diff(dx, dx_floor, n));
  config.noise_absolute = -1e-8;
  CPhysHeat bad = NULL;
  CHECK_FAILS(CPhysHeatCreate(&config, &bad), CPHYS_ERROR_ARGUMENT);
  config.noise_absolute = INFINITY;
  CHECK_FAILS(CPhysHeatCreate(&config, &bad), CPHYS_ERROR_ARGUMENT);
  free(residual), free(dx), free(dx_floor), free(dx_true), free(dy);
  CHECK_OK(CPhysHeatDestroy(&plain));
  CHECK_OK(CPhysHeatDestroy(&floored));
}

static void test_invalid_arguments_are_refused(void) {
  CPhysHeat heat = NULL;
  CPhysHeatConfig config = CPhysHeatDefaultConfig();
  config.shape[1] = 0;
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  CHECK(heat == NULL, "a failed Create left a handle");
  config = CPhysHeatDefaultConfig(), config.nu_t = -1.0;
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  config = CPhysHeatDefaultConfig(), config.nu_t = INFINITY;
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  config = CPhysHeatDefaultConfig(), config.nu_t = 1e308; /* |k|^2 nu_t overflows */
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  config = CPhysHeatDefaultConfig(), config.spacing[0] = 0.0;
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  config = CPhysHeatDefaultConfig(), config.spacing[1] = NAN;
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  config = CPhysHeatDefaultConfig(), config.noise_relative = -1e-6;
  CHECK_FAILS(CPhysHeatCreate(&config, &heat), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysHeatCreate(NULL, &heat), CPHYS_ERROR_ARGUMENT);
  config = CPhysHeatDefaultConfig();
  CHECK_FAILS(CPhysHeatCreate(&config, NULL), CPHYS_ERROR_ARGUMENT);

  CHECK_OK(CPhysHeatCreate(&config, &heat));
  CPhysHeatConfig used;
  CHECK_OK(CPhysHeatGetConfig(heat, &used));
  CHECK(used.noise_relative == 1e-6 && used.signal_amplitude == 1.0 && used.nu_t == 8.0,
        "defaults not filled in");
  double *x = calloc(64 * 64, sizeof(double)), *y = calloc(64 * 64, sizeof(double));
  CHECK_FAILS(CPhysHeatForward(heat, 1, NULL, y), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysHeatAdjoint(heat, 1, x, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysHeatForward(heat, -1, x, y), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysHeatForward(NULL, 1, x, y), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysHeatForward(heat, (ptrdiff_t)1 << 40, x, y), CPHYS_ERROR_ARGUMENT);
  x[77] = NAN;
  CHECK_FAILS(CPhysHeatForward(heat, 1, x, y), CPHYS_ERROR_NONFINITE);
  CHECK_FAILS(CPhysHeatPhysicalGradient(heat, 1, x, y), CPHYS_ERROR_NONFINITE);
  x[77] = 0.0;
  CHECK_OK(CPhysHeatPhysicalGradient(heat, 1, x, y)); /* a zero step gives a zero gradient */
  CHECK(max_abs(y, 64 * 64) == 0.0, "zero step gave a nonzero gradient");
  free(x), free(y);
  CHECK_OK(CPhysHeatDestroy(&heat));
  CHECK_OK(CPhysHeatDestroy(&heat)); /* already NULL */
  CHECK_OK(CPhysHeatDestroy(NULL));
}

int main(void) {
  test_forward_matches_direct_dft_on_odd_and_even_grids();
  test_single_fourier_mode_decays_analytically();
  test_mean_is_conserved_and_in_place_works();
  test_adjoint_identity();
  test_exact_inverse_round_trip_and_overflow();
  test_physical_gradient_is_exact_inverse_of_a_clean_step_on_low_frequencies();
  test_physical_gradient_is_finite_and_damps_noise();
  test_physical_gradient_is_finite_for_extreme_steps();
  test_batch_equals_per_sample_calls();
  test_concurrent_calls_on_one_object();
  test_noise_floor_damps_a_rounding_level_step_and_leaves_signal();
  test_invalid_arguments_are_refused();
  CHECK_REPORT();
}
