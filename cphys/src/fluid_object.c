/* Fluid object: configuration, memory, argument checks, statistics, work slots
 * and the loop over the samples of a batch.  Uses no other fluid source. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cphys_internal.h"
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
  c.viscosity = 0.0;
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
  CPhysCheck(isfinite(c->dt) && c->dt > 0.0, CPHYS_ERROR_ARGUMENT, "dt must be positive and finite, got %g",
             c->dt);
  CPhysCheck(c->steps >= 1 && c->steps <= 100000, CPHYS_ERROR_ARGUMENT,
             "steps must be in [1, 100000], got %d", c->steps);
  CPhysCheck(isfinite(c->atol) && c->atol >= 0.0, CPHYS_ERROR_ARGUMENT, "atol must be >= 0, got %g", c->atol);
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
  CPhysCheck(isfinite(c->viscosity) && c->viscosity >= 0.0, CPHYS_ERROR_ARGUMENT,
             "viscosity must be >= 0 and finite, got %g", c->viscosity);
  CPhysCheck(c->viscosity == 0.0 || c->energy == CPHYS_FLUID_ENERGY_NONE, CPHYS_ERROR_ARGUMENT,
             "viscosity %g needs the energy mode 'none': the energy rescale would restore the energy the "
             "viscosity dissipates",
             c->viscosity);
  CPhysCheck(isfinite(c->vortex_sigma) && c->vortex_sigma > 0.0, CPHYS_ERROR_ARGUMENT,
             "vortex_sigma must be positive and finite, got %g", c->vortex_sigma);
  CPhysCheck(isfinite(c->vortex_center[0]) && isfinite(c->vortex_center[1]) && isfinite(c->vortex_gain) &&
                 isfinite(c->marker_destination[0]) && isfinite(c->marker_destination[1]),
             CPHYS_ERROR_ARGUMENT, "vortex_center, vortex_gain and marker_destination must be finite");
  /* Between walls a fraction is not wrapped: a huge one would overflow the prior's offsets. */
  for (int xy = 0; xy < 2; xy++)
    CPhysCheck(c->boundary[1 - xy] == CPHYS_FLUID_PERIODIC ||
                   (fabs(c->vortex_center[xy]) <= 1e6 && fabs(c->marker_destination[xy]) <= 1e6),
               CPHYS_ERROR_ARGUMENT,
               "vortex_center and marker_destination along a walled axis must be within 1e6 box lengths, got "
               "%g and %g",
               c->vortex_center[xy], c->marker_destination[xy]);
  for (int axis = 0; axis < 2; axis++)
    CPhysCheck(c->boundary[axis] >= CPHYS_FLUID_PERIODIC && c->boundary[axis] <= CPHYS_FLUID_NO_SLIP,
               CPHYS_ERROR_ARGUMENT,
               "unknown boundary %d on axis %d ([y, x]): periodic (0), free-slip (1) or no-slip (2)",
               (int)c->boundary[axis], axis);
  return 0;
}

int fluid_object_create(const CPhysFluidConfig *config, CPhysFluid *fluid) {
  *fluid = NULL;
  CPhysCall(check_config(config));
  CPhysFluid f = calloc(1, sizeof *f);
  CPhysCheck(f != NULL, CPHYS_ERROR_MEMORY, "cannot allocate the fluid object");
  f->config = *config;
  strcpy(f->prefix, config->options_prefix ? config->options_prefix : "physgrad_fluid_");
  f->config.options_prefix = f->prefix;
  for (int axis = 0; axis < 2; axis++) {
    f->walls[axis] = config->boundary[axis] != CPHYS_FLUID_PERIODIC;
    f->tangential_ghost[axis] = config->boundary[axis] == CPHYS_FLUID_NO_SLIP ? -1.0 : 1.0;
  }
  f->any_walls = f->walls[0] || f->walls[1];
  /* Along a periodic axis a fraction names the same point as its wrapped value in [0, 1], and
   * wrapping keeps a huge fraction times the box length finite.  (Between walls it is a position
   * as given: a vortex centre outside the box is only far away.) */
  for (int xy = 0; xy < 2; xy++) {
    if (f->walls[1 - xy]) continue;
    f->config.vortex_center[xy] -= floor(f->config.vortex_center[xy]);
    f->config.marker_destination[xy] -= floor(f->config.marker_destination[xy]);
  }
  f->ny = config->shape[0], f->nx = config->shape[1], f->n = f->nx * f->ny;
  f->dy = config->spacing[0], f->dx = config->spacing[1];
  f->work = malloc((size_t)(FLUID_WORK_SLOTS * f->n) * sizeof *f->work);
  f->work_workers = 1;
  if (!f->work) {
    const ptrdiff_t cells = f->n;
    fluid_object_free(f);
    return CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate work arrays for %td cells", cells);
  }
  *fluid = f;
  return 0;
}

void fluid_object_free(CPhysFluid f) {
  free(f->work);
  free(f->unit_vortex);
  free(f->tape);
  free(f->tape_branches);
  free(f->inverse_record);
  free(f->inverse_record_valid);
  free(f->inverse_record_stats);
  for (int pass = 0; pass < 3; pass++) free(f->stats[pass].info);
  free(f);
}

int fluid_check_array(const double *a, ptrdiff_t count, const char *name, int need_finite,
                      const char *caller) {
  CPhysCheckCaller(caller, count == 0 || a != NULL, CPHYS_ERROR_ARGUMENT, "%s must not be NULL", name);
  if (need_finite) {
    const ptrdiff_t k = cphys_first_non_finite(a, count);
    CPhysCheckCaller(caller, k < 0, CPHYS_ERROR_NONFINITE, "%s[%td] is not finite (%g)", name, k, a[k]);
  }
  return 0;
}

int fluid_check_batch(CPhysFluid f, ptrdiff_t batch, int components, const char *caller) {
  CPhysCheckCaller(caller, f != NULL, CPHYS_ERROR_ARGUMENT, "the fluid object is NULL");
  CPhysCheckCaller(caller, batch >= 0, CPHYS_ERROR_ARGUMENT, "batch must be >= 0, got %td", batch);
  CPhysCheckCaller(caller, batch <= PTRDIFF_MAX / (ptrdiff_t)sizeof(double) / components / f->n,
                   CPHYS_ERROR_MEMORY, "batch %td of [%d, %td, %td] arrays overflows the address space",
                   batch, components, f->ny, f->nx);
  return 0;
}

int fluid_stats_reset(CPhysFluid f, CPhysFluidPass pass, ptrdiff_t batch, int solves) {
  FluidStats *st = &f->stats[pass];
  CPhysCheck(batch <= PTRDIFF_MAX / (ptrdiff_t)sizeof(CPhysSolveInfo) / (solves + 1), CPHYS_ERROR_MEMORY,
             "batch %td too large for the solver statistics", batch);
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
