/* The floor of the heat op: FFTW's real transforms alone, against the op's C calls.
 *
 *   bench_heat_fftw [batch] [n] [repeats] [threads]
 *
 * On a batch of n x n grids (default 128 x 64 x 64, the paper's heat setting)
 * times, as the median of `repeats` rounds (default 50) after 3 warm-up rounds,
 * every case once per round (interleaved, so that the load of a shared
 * machine weighs on all cases alike):
 *   floor_batched_measure   one rfft (r2c) + one irfft (c2r) of the whole batch,
 *                           one fftw_plan_many per direction, FFTW_MEASURE;
 *   floor_batched_estimate  the same with FFTW_ESTIMATE plans;
 *   floor_io_measure, floor_io_estimate
 *                           the same plans executed from the input array into
 *                           the output array (new-array execute): the
 *                           transforms as the op needs them, reading x and
 *                           writing y (the floor_batched_* cases run in place on
 *                           a buffer that an untimed copy has just made hot);
 *   floor_per_sample        a one-grid MEASURE plan pair executed sample by
 *                           sample through the new-array interface on a
 *                           cache-sized buffer (copy in, r2c, c2r, copy out),
 *                           over `threads` OpenMP threads (default 1) when
 *                           built with OpenMP;
 *   cphys_forward, cphys_adjoint, cphys_physical_gradient
 *                           CPhysHeatForward / Adjoint / PhysicalGradient
 *                           (nu_t = 8, unit cells) on the same batch, with
 *                           CPhysSetThreads(threads).
 * The op's forward + backward is two r2c + c2r pairs plus the kernel products,
 * so its floor is twice the floor of one pair.  Output: one line per case,
 * "name median_ms min_ms", for benchmarks/bench_ops.py to read. */
#include <complex.h> /* before fftw3.h: fftw_complex is then double _Complex */
#include <fftw3.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cphys/environment.h"
#include "cphys/heat.h"

enum { WARMUP = 3, CASES = 8 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct {
  int batch, n, threads, cells, modes;
  double *input;           /* [batch, n, n] the data, never overwritten */
  double *real, *out;      /* [batch, n, n] */
  fftw_complex *spectrum;  /* [batch, n, n/2+1] */
  fftw_plan batched[2][2]; /* [MEASURE, ESTIMATE][r2c, c2r] over the batch */
  fftw_plan single[2];     /* one grid, MEASURE: r2c, c2r */
  CPhysHeat heat;
} Bench;

static void plan(Bench *b) {
  const int dims[2] = {b->n, b->n};
  const unsigned flags[2] = {FFTW_MEASURE, FFTW_ESTIMATE};
  for (int f = 0; f < 2; f++) {
    b->batched[f][0] = fftw_plan_many_dft_r2c(2, dims, b->batch, b->real, NULL, 1, b->cells, b->spectrum,
                                              NULL, 1, b->modes, flags[f]);
    b->batched[f][1] = fftw_plan_many_dft_c2r(2, dims, b->batch, b->spectrum, NULL, 1, b->modes, b->real,
                                              NULL, 1, b->cells, flags[f]);
  }
  b->single[0] = fftw_plan_dft_r2c(2, dims, b->real, b->spectrum, FFTW_MEASURE);
  b->single[1] = fftw_plan_dft_c2r(2, dims, b->spectrum, b->real, FFTW_MEASURE);
}

/* One rfft + irfft of the whole batch with one batched plan per direction. */
static double run_batched(Bench *b, int estimate) {
  memcpy(b->real, b->input, (size_t)b->batch * (size_t)b->cells * sizeof(double));
  const double start = now();
  fftw_execute(b->batched[estimate][0]);
  fftw_execute(b->batched[estimate][1]);
  return now() - start;
}

/* The batched plans from the input to the output array (out of place). */
static double run_batched_io(Bench *b, int estimate) {
  const double start = now();
  fftw_execute_dft_r2c(b->batched[estimate][0], b->input, b->spectrum);
  fftw_execute_dft_c2r(b->batched[estimate][1], b->spectrum, b->out);
  return now() - start;
}

/* Sample by sample on a cache-sized buffer per thread (copy in, r2c, c2r, copy out). */
static double run_per_sample(Bench *b) {
  const double start = now();
#pragma omp parallel num_threads(b->threads)
  {
    double *real = fftw_alloc_real((size_t)b->cells);
    fftw_complex *spectrum = fftw_alloc_complex((size_t)b->modes);
#pragma omp for schedule(static)
    for (int s = 0; s < b->batch; s++) {
      memcpy(real, b->input + (size_t)s * (size_t)b->cells, (size_t)b->cells * sizeof(double));
      fftw_execute_dft_r2c(b->single[0], real, spectrum);
      fftw_execute_dft_c2r(b->single[1], spectrum, real);
      memcpy(b->out + (size_t)s * (size_t)b->cells, real, (size_t)b->cells * sizeof(double));
    }
    fftw_free(real);
    fftw_free(spectrum);
  }
  return now() - start;
}

typedef int (*HeatCall)(CPhysHeat, ptrdiff_t, const double *, double *);

static double run_cphys(Bench *b, HeatCall call) {
  const double start = now();
  if (call(b->heat, b->batch, b->input, b->out)) {
    fprintf(stderr, "cphys heat call failed: %s\n", CPhysGetLastErrorMessage());
    exit(1);
  }
  return now() - start;
}

int main(int argc, char **argv) {
  Bench b;
  b.batch = argc > 1 && atoi(argv[1]) > 0 ? atoi(argv[1]) : 128;
  b.n = argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 64;
  const int repeats = argc > 3 && atoi(argv[3]) > 0 ? atoi(argv[3]) : 50;
  b.threads = argc > 4 && atoi(argv[4]) > 0 ? atoi(argv[4]) : 1;
  b.cells = b.n * b.n, b.modes = b.n * (b.n / 2 + 1);
  const size_t total = (size_t)b.batch * (size_t)b.cells;
  b.input = fftw_alloc_real(total);
  b.real = fftw_alloc_real(total);
  b.out = fftw_alloc_real(total);
  b.spectrum = fftw_alloc_complex((size_t)b.batch * (size_t)b.modes);
  double *seconds = malloc((size_t)(CASES * repeats) * sizeof *seconds);
  if (!b.input || !b.real || !b.out || !b.spectrum || !seconds) return 1;
  plan(&b); /* before filling the input: a measuring planner overwrites its arrays */
  /* Any data will do: the transforms' cost does not depend on it. */
  unsigned long long state = 12345;
  for (size_t k = 0; k < total; k++) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    b.input[k] = (double)(state >> 11) / (double)(1ULL << 53);
  }
  CPhysHeatConfig config = CPhysHeatDefaultConfig();
  config.shape[0] = config.shape[1] = b.n;
  if (CPhysHeatCreate(&config, &b.heat)) {
    fprintf(stderr, "CPhysHeatCreate failed: %s\n", CPhysGetLastErrorMessage());
    return 1;
  }
  CPhysSetThreads(b.threads);
  const char *names[CASES] = {"floor_batched_measure", "floor_batched_estimate", "floor_io_measure",
                              "floor_io_estimate",     "floor_per_sample",       "cphys_forward",
                              "cphys_adjoint",         "cphys_physical_gradient"};
  for (int r = -WARMUP; r < repeats; r++) {
    const double t[CASES] = {run_batched(&b, 0),
                             run_batched(&b, 1),
                             run_batched_io(&b, 0),
                             run_batched_io(&b, 1),
                             run_per_sample(&b),
                             run_cphys(&b, CPhysHeatForward),
                             run_cphys(&b, CPhysHeatAdjoint),
                             run_cphys(&b, CPhysHeatPhysicalGradient)};
    if (r >= 0)
      for (int c = 0; c < CASES; c++) seconds[c * repeats + r] = t[c];
  }
  printf("# batch %d, grid %d x %d, %d rounds, %d thread(s); median_ms min_ms\n", b.batch, b.n, b.n, repeats,
         b.threads);
  for (int c = 0; c < CASES; c++) {
    double *times = seconds + c * repeats;
    qsort(times, (size_t)repeats, sizeof *times, compare_doubles);
    printf("%-26s %10.4f %10.4f\n", names[c], 1e3 * times[repeats / 2], 1e3 * times[0]);
  }
  CPhysHeatDestroy(&b.heat);
  for (int f = 0; f < 2; f++) fftw_destroy_plan(b.batched[f][0]), fftw_destroy_plan(b.batched[f][1]);
  fftw_destroy_plan(b.single[0]);
  fftw_destroy_plan(b.single[1]);
  fftw_free(b.input), fftw_free(b.real), fftw_free(b.out), fftw_free(b.spectrum);
  free(seconds);
  return 0;
}
