/* Fluid object: configuration, one step, the forward map, its tape, statistics.
 *
 * Tape layout per sample (doubles, n = nx ny), n (5 steps + 6) in all:
 *   V_k, k = 0..steps   [2n]  velocity at the start of step k + 1 (V_0: projected v0)
 *   W_k, k < steps      [2n]  velocity of step k + 1 after projection, before rescale
 *   M_k, k = 0..steps   [n]   marker (M_0 = m0)
 *   v0, m0              [3n]  the inputs, to recognise a call with the same inputs
 * and per sample steps x 3n bytes of limiter branches (2n velocity, n marker).
 *
 * Inverse record (CPHYS_FLUID_RECORD_INVERSE) per sample, 5n + 3 (steps + 1) doubles:
 *   v0, m0              [3n]  the inputs
 *   velocity            [2n]  the final velocity
 *   centres             [2 (steps + 1)]  marker centre of mass (x, y) after each step (0: m0)
 *   defined             [steps + 1]      1.0 where that centre is defined, else 0.0 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "finite.h"
#include "fluid_internal.h"
#include "threads.h"

_Thread_local int fluid_worker = 0;

CPhysFluidConfig CPhysFluidDefaultConfig(void) {
  CPhysFluidConfig c;
  memset(&c, 0, sizeof c);
  c.shape[0] = c.shape[1] = 64;
  c.spacing[0] = c.spacing[1] = 2.0;
  c.dt = 0.25;
  c.steps = 8;
  c.atol = 1e-4;
  c.rtol = 0.0;
  c.max_iterations = 1000;
  c.options_prefix = NULL;
  c.limiter = CPHYS_FLUID_LIMITER_CLAMP;
  c.energy = CPHYS_FLUID_ENERGY_TOTAL;
  c.vortex_sigma = 20.0;
  c.vortex_center[0] = c.vortex_center[1] = 0.5;
  c.vortex_gain = 1e-3;
  c.marker_destination[0] = c.marker_destination[1] = 0.5;
  c.destination_from_target = 0;
  return c;
}

static int check_config(const CPhysFluidConfig *c) {
  CPhysCheck(c != NULL, CPHYS_ERROR_ARGUMENT, "config must not be NULL");
  CPhysCheck(c->shape[0] >= 3 && c->shape[1] >= 3, CPHYS_ERROR_ARGUMENT,
             "shape must be at least [3, 3] cells (periodic stencils), got [%td, %td]", c->shape[0],
             c->shape[1]);
  CPhysCheck(c->shape[0] <= PETSC_MAX_INT / c->shape[1] &&
                 c->shape[0] <= PTRDIFF_MAX / (ptrdiff_t)sizeof(double) / FLUID_WORK_SLOTS / c->shape[1],
             CPHYS_ERROR_MEMORY, "grid [%td, %td] is too large to index", c->shape[0], c->shape[1]);
  for (int axis = 0; axis < 2; axis++)
    CPhysCheck(isfinite(c->spacing[axis]) && c->spacing[axis] > 0.0, CPHYS_ERROR_ARGUMENT,
               "spacing[%d] must be positive and finite, got %g", axis, c->spacing[axis]);
  /* The pressure stencil's 1/h^2 must neither overflow (PETSc's ICC shift loop
   * never ends on an infinite matrix) nor underflow to 0 (a singular matrix). */
  const double wy = 1.0 / (c->spacing[0] * c->spacing[0]), wx = 1.0 / (c->spacing[1] * c->spacing[1]);
  CPhysCheck(isnormal(wy) && isnormal(wx) && isfinite(2.0 * (wx + wy)), CPHYS_ERROR_ARGUMENT,
             "spacing [%g, %g] is out of range: 1/spacing^2 must be a finite, nonzero double", c->spacing[0],
             c->spacing[1]);
  CPhysCheck(isfinite(c->dt) && c->dt > 0.0, CPHYS_ERROR_ARGUMENT,
             "dt must be positive and finite, got %g", c->dt);
  CPhysCheck(c->steps >= 1 && c->steps <= 100000, CPHYS_ERROR_ARGUMENT,
             "steps must be in [1, 100000], got %d", c->steps);
  CPhysCheck(isfinite(c->atol) && c->atol >= 0.0, CPHYS_ERROR_ARGUMENT, "atol must be >= 0, got %g",
             c->atol);
  CPhysCheck(isfinite(c->rtol) && c->rtol >= 0.0 && c->rtol < 1.0, CPHYS_ERROR_ARGUMENT,
             "rtol must be in [0, 1), got %g", c->rtol);
  CPhysCheck(c->atol > 0.0 || c->rtol > 0.0, CPHYS_ERROR_ARGUMENT,
             "atol and rtol are both 0: the pressure solve could never converge");
  CPhysCheck(c->max_iterations >= 1, CPHYS_ERROR_ARGUMENT, "max_iterations must be >= 1, got %d",
             c->max_iterations);
  CPhysCheck(c->options_prefix == NULL || strlen(c->options_prefix) < 127, CPHYS_ERROR_ARGUMENT,
             "options_prefix is longer than 126 characters");
  CPhysCheck(c->limiter >= CPHYS_FLUID_LIMITER_CLAMP && c->limiter <= CPHYS_FLUID_LIMITER_NONE,
             CPHYS_ERROR_ARGUMENT, "unknown limiter %d", (int)c->limiter);
  CPhysCheck(c->energy >= CPHYS_FLUID_ENERGY_TOTAL && c->energy <= CPHYS_FLUID_ENERGY_NONE,
             CPHYS_ERROR_ARGUMENT, "unknown energy mode %d", (int)c->energy);
  CPhysCheck(isfinite(c->vortex_sigma) && c->vortex_sigma > 0.0, CPHYS_ERROR_ARGUMENT,
             "vortex_sigma must be positive and finite, got %g", c->vortex_sigma);
  CPhysCheck(isfinite(c->vortex_center[0]) && isfinite(c->vortex_center[1]) && isfinite(c->vortex_gain) &&
                 isfinite(c->marker_destination[0]) && isfinite(c->marker_destination[1]),
             CPHYS_ERROR_ARGUMENT, "vortex_center, vortex_gain and marker_destination must be finite");
  return 0;
}

static int create_locked(CPhysFluid f) {
  CPhysCall(CPhysPetscEnsureInitializedLocked());
  CPhysCall(fluid_pressure_create_locked(f));
  return 0;
}

int CPhysFluidCreate(const CPhysFluidConfig *config, CPhysFluid *fluid) {
  CPhysCheck(fluid != NULL, CPHYS_ERROR_ARGUMENT, "fluid (output handle) must not be NULL");
  *fluid = NULL;
  CPhysCall(check_config(config));
  CPhysFluid f = calloc(1, sizeof *f);
  CPhysCheck(f != NULL, CPHYS_ERROR_MEMORY, "cannot allocate the fluid object");
  f->config = *config;
  strcpy(f->prefix, config->options_prefix ? config->options_prefix : "physgrad_fluid_");
  f->config.options_prefix = f->prefix;
  /* The box is periodic: a fraction names the same point as its wrapped value in
   * [0, 1], and wrapping keeps a huge fraction times the box length finite. */
  for (int axis = 0; axis < 2; axis++) {
    f->config.vortex_center[axis] -= floor(f->config.vortex_center[axis]);
    f->config.marker_destination[axis] -= floor(f->config.marker_destination[axis]);
  }
  f->ny = config->shape[0], f->nx = config->shape[1], f->n = f->nx * f->ny;
  f->dy = config->spacing[0], f->dx = config->spacing[1];
  f->work = malloc((size_t)(FLUID_WORK_SLOTS * f->n) * sizeof *f->work);
  f->work_workers = 1;
  int ierr = 0;
  if (!f->work)
    ierr = CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate work arrays for %td cells", f->n);
  if (!ierr) ierr = fluid_unit_vortex_create(f);
  if (!ierr) {
    CPhysLibraryLock();
    ierr = create_locked(f);
    CPhysLibraryUnlock();
  }
  if (ierr) {
    CPhysFluidDestroy(&f);
    return ierr;
  }
  *fluid = f;
  return 0;
}

int CPhysFluidDestroy(CPhysFluid *fluid) {
  if (!fluid || !*fluid) return 0;
  CPhysFluid f = *fluid;
  CPhysLibraryLock();
  fluid_pressure_destroy_locked(f);
  CPhysLibraryUnlock();
  free(f->work);
  free(f->unit_vortex);
  free(f->tape);
  free(f->tape_branches);
  free(f->inverse_record);
  free(f->inverse_record_valid);
  free(f->inverse_record_stats);
  for (int pass = 0; pass < 3; pass++) free(f->stats[pass].info);
  free(f);
  *fluid = NULL;
  return 0;
}

int fluid_check_array(const double *a, ptrdiff_t count, const char *name, int need_finite) {
  CPhysCheck(count == 0 || a != NULL, CPHYS_ERROR_ARGUMENT, "%s must not be NULL", name);
  if (need_finite) {
    const ptrdiff_t k = cphys_first_non_finite(a, count);
    CPhysCheck(k < 0, CPHYS_ERROR_NONFINITE, "%s[%td] is not finite (%g)", name, k, a[k]);
  }
  return 0;
}

int fluid_check_batch(CPhysFluid f, ptrdiff_t batch, int components) {
  CPhysCheck(f != NULL, CPHYS_ERROR_ARGUMENT, "the fluid object is NULL");
  CPhysCheck(batch >= 0, CPHYS_ERROR_ARGUMENT, "batch must be >= 0, got %td", batch);
  CPhysCheck(batch <= PTRDIFF_MAX / (ptrdiff_t)sizeof(double) / components / f->n, CPHYS_ERROR_MEMORY,
             "batch %td of [%d, %td, %td] arrays overflows the address space", batch, components,
             f->ny, f->nx);
  return 0;
}

int fluid_stats_reset(CPhysFluid f, CPhysFluidPass pass, ptrdiff_t batch, int solves) {
  FluidStats *st = &f->stats[pass];
  CPhysCheck(batch <= PTRDIFF_MAX / (ptrdiff_t)sizeof(CPhysSolveInfo) / (solves + 1),
             CPHYS_ERROR_MEMORY, "batch %td too large for the solver statistics", batch);
  const ptrdiff_t need = batch * solves;
  if (need > st->capacity) {
    CPhysSolveInfo *info = realloc(st->info, (size_t)need * sizeof *info);
    CPhysCheck(info != NULL, CPHYS_ERROR_MEMORY, "cannot allocate statistics for %td solves", need);
    st->info = info, st->capacity = need;
  }
  if (need) memset(st->info, 0, (size_t)need * sizeof *st->info);
  st->batch = batch, st->solves = solves;
  return 0;
}

int fluid_energy_groups(CPhysFluid f, ptrdiff_t begin[2], ptrdiff_t end[2]) {
  switch (f->config.energy) {
    case CPHYS_FLUID_ENERGY_TOTAL:
      begin[0] = 0, end[0] = 2 * f->n;
      return 1;
    case CPHYS_FLUID_ENERGY_PER_COMPONENT:
      begin[0] = 0, end[0] = f->n, begin[1] = f->n, end[1] = 2 * f->n;
      return 2;
    default:
      return 0;
  }
}

static double sum_squares(const double *a, ptrdiff_t begin, ptrdiff_t end) {
  double s = 0.0;
  for (ptrdiff_t k = begin; k < end; k++) s += a[k] * a[k];
  return s;
}

int fluid_step_sample_locked(CPhysFluid f, const double *v_in, const double *m_in, double *w_out,
                             double *v_out, double *m_out, double *p, unsigned char *branches,
                             CPhysSolveInfo *info, ptrdiff_t sample, int step) {
  const ptrdiff_t n = f->n;
  double *ux = fluid_slot(f, FLUID_SLOT_UX), *uy = fluid_slot(f, FLUID_SLOT_UY);
  double *semi = fluid_slot(f, FLUID_SLOT_SEMI);
  ptrdiff_t begin[2], end[2];
  double energy0[2];
  const int groups = fluid_energy_groups(f, begin, end);
  for (int g = 0; g < groups; g++) energy0[g] = sum_squares(v_in, begin[g], end[g]);
  for (int c = 0; c < 2; c++) {
    fluid_node_velocity(f, c == 0 ? FLUID_XFACE : FLUID_YFACE, v_in, ux, uy);
    fluid_maccormack(f, v_in + c * n, ux, uy, semi, w_out + c * n, branches ? branches + c * n : NULL);
  }
  CPhysCall(fluid_project_locked(f, w_out, p, info, "forward", sample, step));
  for (int g = 0; g < groups; g++) {
    const double energy = sum_squares(w_out, begin[g], end[g]);
    /* A zero velocity stays zero (SIP guards the same division). */
    const double scale = energy > 0.0 ? sqrt(energy0[g] / energy) : 1.0;
    for (ptrdiff_t k = begin[g]; k < end[g]; k++) v_out[k] = scale * w_out[k];
  }
  if (groups == 0 && v_out != w_out) memcpy(v_out, w_out, (size_t)(2 * n) * sizeof *v_out);
  fluid_node_velocity(f, FLUID_CENTRED, v_out, ux, uy);
  fluid_maccormack(f, m_in, ux, uy, semi, m_out, branches ? branches + 2 * n : NULL);
  return 0;
}

static ptrdiff_t tape_doubles_per_sample(CPhysFluid f) { return f->n * (5 * (ptrdiff_t)f->config.steps + 6); }

double *fluid_tape_velocity(CPhysFluid f, ptrdiff_t sample, int k) {
  return f->tape + sample * tape_doubles_per_sample(f) + (ptrdiff_t)k * 2 * f->n;
}
double *fluid_tape_projected(CPhysFluid f, ptrdiff_t sample, int k) {
  return fluid_tape_velocity(f, sample, f->config.steps + 1 + k);
}
double *fluid_tape_marker(CPhysFluid f, ptrdiff_t sample, int k) {
  return fluid_tape_velocity(f, sample, 2 * f->config.steps + 1) + (ptrdiff_t)k * f->n;
}
static double *tape_inputs(CPhysFluid f, ptrdiff_t sample) {
  return fluid_tape_marker(f, sample, f->config.steps + 1);
}
unsigned char *fluid_tape_branches(CPhysFluid f, ptrdiff_t sample, int k) {
  return f->tape_branches + (sample * f->config.steps + k) * 3 * f->n;
}

static int tape_reserve(CPhysFluid f, ptrdiff_t batch) {
  const ptrdiff_t per = tape_doubles_per_sample(f);
  CPhysCheck(batch <= PTRDIFF_MAX / (ptrdiff_t)sizeof(double) / per, CPHYS_ERROR_MEMORY,
             "a tape for batch %td overflows the address space", batch);
  f->tape_valid = 0;
  if (batch * per > f->tape_capacity) {
    double *tape = realloc(f->tape, (size_t)(batch * per) * sizeof *tape);
    CPhysCheck(tape != NULL, CPHYS_ERROR_MEMORY, "cannot allocate a tape of %td doubles", batch * per);
    f->tape = tape, f->tape_capacity = batch * per;
  }
  const ptrdiff_t branches = batch * f->config.steps * 3 * f->n;
  if (branches > f->tape_branch_capacity) {
    unsigned char *b = realloc(f->tape_branches, (size_t)branches);
    CPhysCheck(b != NULL, CPHYS_ERROR_MEMORY, "cannot allocate %td tape bytes", branches);
    f->tape_branches = b, f->tape_branch_capacity = branches;
  }
  return 0;
}

static ptrdiff_t inverse_record_doubles(CPhysFluid f) { return 5 * f->n + 3 * ((ptrdiff_t)f->config.steps + 1); }

static double *inverse_record(CPhysFluid f, ptrdiff_t sample) {
  return f->inverse_record + sample * inverse_record_doubles(f);
}

static int inverse_record_reserve(CPhysFluid f, ptrdiff_t batch) {
  const ptrdiff_t per = inverse_record_doubles(f), solves = f->config.steps + 1;
  CPhysCheck(batch <= PTRDIFF_MAX / (ptrdiff_t)sizeof(double) / per, CPHYS_ERROR_MEMORY,
             "an inverse record for batch %td overflows the address space", batch);
  f->inverse_record_batch = 0;
  if (batch > f->inverse_record_capacity) {
    double *record = realloc(f->inverse_record, (size_t)(batch * per) * sizeof *record);
    if (record) f->inverse_record = record;
    unsigned char *valid = realloc(f->inverse_record_valid, (size_t)batch);
    if (valid) f->inverse_record_valid = valid;
    CPhysSolveInfo *stats = realloc(f->inverse_record_stats, (size_t)(batch * solves) * sizeof *stats);
    if (stats) f->inverse_record_stats = stats;
    CPhysCheck(record && valid && stats, CPHYS_ERROR_MEMORY, "cannot allocate an inverse record for batch %td",
               batch);
    f->inverse_record_capacity = batch;
  }
  if (batch) memset(f->inverse_record_valid, 0, (size_t)batch);
  f->inverse_record_batch = batch;
  return 0;
}

/* Sample s's marker centre after `k` steps (k = 0: the initial marker) into the record. */
static void inverse_record_centre(CPhysFluid f, ptrdiff_t s, int k, const double *marker) {
  double *centres = inverse_record(f, s) + 5 * f->n;
  int defined;
  fluid_centre_of_mass(f, marker, centres + 2 * k, &defined);
  centres[2 * (f->config.steps + 1) + k] = defined ? 1.0 : 0.0;
}

/* Completes sample s's record after a forward run that reached its end. */
static void inverse_record_finish(CPhysFluid f, ptrdiff_t s, const double *v0, const double *m0,
                                  const double *velocity) {
  const ptrdiff_t n = f->n;
  const int solves = f->config.steps + 1;
  double *record = inverse_record(f, s);
  memcpy(record, v0, (size_t)(2 * n) * sizeof *v0);
  memcpy(record + 2 * n, m0, (size_t)n * sizeof *m0);
  memcpy(record + 3 * n, velocity, (size_t)(2 * n) * sizeof *velocity);
  const CPhysSolveInfo *stats = fluid_stats_at(f, CPHYS_FLUID_PASS_FORWARD, s, 0);
  memcpy(f->inverse_record_stats + s * solves, stats, (size_t)solves * sizeof *stats);
  /* A failed solve must fail the inverse's call too: such samples are rerun there. */
  int converged = 1;
  for (int k = 0; k < solves; k++) converged = converged && stats[k].converged;
  f->inverse_record_valid[s] = (unsigned char)converged;
}

int fluid_inverse_record_lookup(CPhysFluid f, ptrdiff_t s, const double *v0, const double *m0, double *velocity,
                                double *centres, int *defined) {
  const ptrdiff_t n = f->n;
  const int solves = f->config.steps + 1;
  if (s >= f->inverse_record_batch || !f->inverse_record_valid[s]) return 0;
  const double *record = inverse_record(f, s);
  if (memcmp(record, v0, (size_t)(2 * n) * sizeof *v0) || memcmp(record + 2 * n, m0, (size_t)n * sizeof *m0))
    return 0;
  memcpy(velocity, record + 3 * n, (size_t)(2 * n) * sizeof *velocity);
  memcpy(centres, record + 5 * n, (size_t)(2 * solves) * sizeof *centres);
  for (int k = 0; k < solves; k++) defined[k] = record[5 * n + 2 * solves + k] != 0.0;
  memcpy(fluid_stats_at(f, CPHYS_FLUID_PASS_FORWARD, s, 0), f->inverse_record_stats + s * solves,
         (size_t)solves * sizeof(CPhysSolveInfo));
  return 1;
}

/* Work slots for `workers` threads (the first worker's are kept). */
static int work_reserve(CPhysFluid f, int workers) {
  if (workers <= f->work_workers) return 0;
  const ptrdiff_t per = FLUID_WORK_SLOTS * f->n;
  CPhysCheck((ptrdiff_t)workers <= PTRDIFF_MAX / (ptrdiff_t)sizeof(double) / per, CPHYS_ERROR_MEMORY,
             "work arrays for %d threads overflow the address space", workers);
  double *work = realloc(f->work, (size_t)(workers * per) * sizeof *work);
  CPhysCheck(work != NULL, CPHYS_ERROR_MEMORY, "cannot allocate work arrays for %d threads", workers);
  f->work = work, f->work_workers = workers;
  return 0;
}

int fluid_for_samples_locked(CPhysFluid f, ptrdiff_t batch, FluidSampleFunction sample, void *context) {
  /* About 0.15 us per cell and step (measured at 64 x 64 on one core). */
  const double seconds = 1.5e-7 * (double)f->n * (double)(f->config.steps + 1);
  int threads = cphys_loop_threads(batch, seconds);
  if (threads > 1 && work_reserve(f, threads)) threads = 1; /* no memory for more: one thread */
  if (threads <= 1) {
    for (ptrdiff_t s = 0; s < batch; s++) CPhysCall(sample(f, s, context));
    return 0;
  }
  CPhysLoopError failure;
  cphys_loop_error_init(&failure);
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    fluid_worker = omp_get_thread_num();
#endif
    /* Dynamic: a thread that waited for the solver lock takes fewer samples. */
#pragma omp for schedule(dynamic, 1)
    for (ptrdiff_t s = 0; s < batch; s++) {
      if (cphys_loop_error_skip(&failure, s)) continue;
      const int ierr = sample(f, s, context);
      if (ierr) cphys_loop_error_record(&failure, ierr, s);
    }
    fluid_worker = 0;
  }
  return cphys_loop_error_raise(&failure);
}

typedef struct {
  const double *v0, *m0;
  double *m_t;
  int record, keep;
} ForwardArgs;

/* One sample of the forward map; with a tape the states go to the tape, else to work slots. */
static int forward_sample_locked(CPhysFluid f, ptrdiff_t s, void *context) {
  const ForwardArgs *args = context;
  const ptrdiff_t n = f->n;
  const int steps = f->config.steps, record = args->record, keep = args->keep;
  const double *v0 = args->v0 + s * 2 * n, *m0 = args->m0 + s * n;
  double *p = fluid_slot(f, FLUID_SLOT_FREE + 6);
  double *v[2] = {fluid_slot(f, FLUID_SLOT_FREE), fluid_slot(f, FLUID_SLOT_FREE + 2)};
  double *m[2] = {fluid_slot(f, FLUID_SLOT_FREE + 4), fluid_slot(f, FLUID_SLOT_FREE + 5)};
  if (record) {
    memcpy(tape_inputs(f, s), v0, (size_t)(2 * n) * sizeof *v0);
    memcpy(tape_inputs(f, s) + 2 * n, m0, (size_t)n * sizeof *m0);
    v[0] = fluid_tape_velocity(f, s, 0), m[0] = fluid_tape_marker(f, s, 0);
  }
  fluid_centred_to_staggered(f, v0, v[0]);
  memset(p, 0, (size_t)n * sizeof *p);
  CPhysCall(fluid_project_locked(f, v[0], p, fluid_stats_at(f, CPHYS_FLUID_PASS_FORWARD, s, 0), "forward", s, 0));
  memset(p, 0, (size_t)n * sizeof *p);
  memcpy(m[0], m0, (size_t)n * sizeof *m0);
  if (keep) inverse_record_centre(f, s, 0, m[0]);
  for (int k = 0; k < steps; k++) {
    const int a = record ? 0 : k % 2, b = record ? 1 : 1 - a;
    double *w = v[b];
    unsigned char *branches = NULL;
    if (record) {
      v[0] = fluid_tape_velocity(f, s, k), v[1] = fluid_tape_velocity(f, s, k + 1);
      m[0] = fluid_tape_marker(f, s, k), m[1] = fluid_tape_marker(f, s, k + 1);
      w = fluid_tape_projected(f, s, k);
      branches = fluid_tape_branches(f, s, k);
    }
    CPhysCall(fluid_step_sample_locked(f, v[a], m[a], w, v[b], m[a == 0 ? 1 : 0], p, branches,
                                       fluid_stats_at(f, CPHYS_FLUID_PASS_FORWARD, s, k + 1), s, k + 1));
    if (keep) inverse_record_centre(f, s, k + 1, m[a == 0 ? 1 : 0]);
  }
  const double *last = record ? m[1] : m[steps % 2];
  const ptrdiff_t q = cphys_first_non_finite(last, n);
  CPhysCheck(q < 0, CPHYS_ERROR_NONFINITE, "the marker of sample %td became non-finite at cell %td", s, q);
  if (args->m_t) memcpy(args->m_t + s * n, last, (size_t)n * sizeof *args->m_t);
  if (keep) inverse_record_finish(f, s, v0, m0, v[steps % 2]);
  return 0;
}

/* The forward map (m_t may be NULL: a recording for the adjoint only). */
static int forward_locked(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0,
                          double *m_t, int mode) {
  ForwardArgs args = {v0, m0, m_t, mode != CPHYS_FLUID_RECORD_NONE && mode != CPHYS_FLUID_RECORD_INVERSE,
                      mode == CPHYS_FLUID_RECORD_INVERSE};
  CPhysCall(fluid_stats_reset(f, CPHYS_FLUID_PASS_FORWARD, batch, f->config.steps + 1));
  if (args.record) CPhysCall(tape_reserve(f, batch));
  if (args.keep) CPhysCall(inverse_record_reserve(f, batch));
  CPhysCall(fluid_for_samples_locked(f, batch, forward_sample_locked, &args));
  if (args.record) f->tape_valid = 1, f->tape_batch = batch;
  return 0;
}

static int check_forward_args(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0) {
  CPhysCall(fluid_check_batch(f, batch, 2));
  CPhysCall(fluid_check_array(v0, batch * 2 * f->n, "v0", 1));
  CPhysCall(fluid_check_array(m0, batch * f->n, "m0", 1));
  return 0;
}

int CPhysFluidForward(CPhysFluid fluid, ptrdiff_t batch, const double *v0, const double *m0,
                      double *m_t, int record) {
  CPhysCall(check_forward_args(fluid, batch, v0, m0));
  CPhysCheck(batch == 0 || m_t != NULL, CPHYS_ERROR_ARGUMENT, "m_t must not be NULL");
  CPhysLibraryLock();
  fluid_failures_begin(fluid);
  int ierr = fluid_failures_end(fluid, forward_locked(fluid, batch, v0, m0, m_t, record));
  CPhysLibraryUnlock();
  return ierr;
}

int fluid_ensure_tape_locked(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0) {
  const ptrdiff_t n = f->n;
  int same = f->tape_valid && f->tape_batch == batch;
  for (ptrdiff_t s = 0; same && s < batch; s++)
    same = !memcmp(tape_inputs(f, s), v0 + s * 2 * n, (size_t)(2 * n) * sizeof *v0) &&
           !memcmp(tape_inputs(f, s) + 2 * n, m0 + s * n, (size_t)n * sizeof *m0);
  if (same) return 0;
  return forward_locked(f, batch, v0, m0, NULL, 1);
}

int CPhysFluidAdjoint(CPhysFluid fluid, ptrdiff_t batch, const double *v0, const double *m0,
                      const double *g_mt, double *g_v0, double *g_m0) {
  CPhysCall(check_forward_args(fluid, batch, v0, m0));
  CPhysCall(fluid_check_array(g_mt, batch * fluid->n, "g_mt", 1));
  CPhysCheck(batch == 0 || g_v0 != NULL, CPHYS_ERROR_ARGUMENT, "g_v0 must not be NULL");
  CPhysLibraryLock();
  fluid_failures_begin(fluid);
  int ierr = fluid_ensure_tape_locked(fluid, batch, v0, m0);
  if (!ierr) ierr = fluid_adjoint_locked(fluid, batch, g_mt, g_v0, g_m0);
  ierr = fluid_failures_end(fluid, ierr);
  CPhysLibraryUnlock();
  return ierr;
}

static int step_batch_locked(CPhysFluid f, ptrdiff_t batch, double *velocity, double *marker,
                             double *pressure) {
  const ptrdiff_t n = f->n;
  double *v_in = fluid_slot(f, FLUID_SLOT_FREE), *m_in = fluid_slot(f, FLUID_SLOT_FREE + 2);
  double *p = fluid_slot(f, FLUID_SLOT_FREE + 3);
  CPhysCall(fluid_stats_reset(f, CPHYS_FLUID_PASS_FORWARD, batch, 2));
  for (ptrdiff_t s = 0; s < batch; s++) {
    double *v = velocity + s * 2 * n, *m = marker + s * n, *ps = pressure ? pressure + s * n : p;
    memcpy(v_in, v, (size_t)(2 * n) * sizeof *v);
    memcpy(m_in, m, (size_t)n * sizeof *m);
    if (!pressure) memset(p, 0, (size_t)n * sizeof *p);
    CPhysCall(fluid_step_sample_locked(f, v_in, m_in, v, v, m, ps, NULL,
                                       fluid_stats_at(f, CPHYS_FLUID_PASS_FORWARD, s, 1), s, 1));
  }
  return 0;
}

int CPhysFluidStep(CPhysFluid fluid, ptrdiff_t batch, double *velocity, double *marker,
                   double *pressure) {
  CPhysCall(fluid_check_batch(fluid, batch, 2));
  CPhysCall(fluid_check_array(velocity, batch * 2 * fluid->n, "velocity", 1));
  CPhysCall(fluid_check_array(marker, batch * fluid->n, "marker", 1));
  if (pressure) CPhysCall(fluid_check_array(pressure, batch * fluid->n, "pressure", 1));
  CPhysLibraryLock();
  fluid_failures_begin(fluid);
  int ierr = fluid_failures_end(fluid, step_batch_locked(fluid, batch, velocity, marker, pressure));
  CPhysLibraryUnlock();
  return ierr;
}
