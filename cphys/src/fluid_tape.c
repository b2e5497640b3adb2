/* The recordings of a fluid forward run, and where each value lies in them.
 *
 * Tape (CPHYS_FLUID_RECORD_TAPE), per sample n (5 steps + 6) doubles, n = nx ny:
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
 *   defined             [steps + 1]      1.0 where that centre is defined, else 0.0
 * with the forward statistics of the sample and whether the record is complete. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fluid_internal.h"

static ptrdiff_t tape_doubles_per_sample(CPhysFluid f) {
  return f->n * (5 * (ptrdiff_t)f->config.steps + 6);
}

double *fluid_tape_velocity(CPhysFluid f, ptrdiff_t sample, int k) {
  return f->tape + sample * tape_doubles_per_sample(f) + (ptrdiff_t)k * 2 * f->n;
}
double *fluid_tape_projected(CPhysFluid f, ptrdiff_t sample, int k) {
  return fluid_tape_velocity(f, sample, f->config.steps + 1 + k);
}
double *fluid_tape_marker(CPhysFluid f, ptrdiff_t sample, int k) {
  return fluid_tape_velocity(f, sample, 2 * f->config.steps + 1) + (ptrdiff_t)k * f->n;
}
double *fluid_tape_inputs(CPhysFluid f, ptrdiff_t sample) {
  return fluid_tape_marker(f, sample, f->config.steps + 1);
}
unsigned char *fluid_tape_branches(CPhysFluid f, ptrdiff_t sample, int k) {
  return f->tape_branches + (sample * f->config.steps + k) * 3 * f->n;
}

int fluid_tape_reserve(CPhysFluid f, ptrdiff_t batch) {
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

int fluid_tape_matches(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0) {
  const ptrdiff_t n = f->n;
  int same = f->tape_valid && f->tape_batch == batch;
  for (ptrdiff_t s = 0; same && s < batch; s++)
    same = !memcmp(fluid_tape_inputs(f, s), v0 + s * 2 * n, (size_t)(2 * n) * sizeof *v0) &&
           !memcmp(fluid_tape_inputs(f, s) + 2 * n, m0 + s * n, (size_t)n * sizeof *m0);
  return same;
}

static ptrdiff_t inverse_record_doubles(CPhysFluid f) {
  return 5 * f->n + 3 * ((ptrdiff_t)f->config.steps + 1);
}

static double *inverse_record(CPhysFluid f, ptrdiff_t sample) {
  return f->inverse_record + sample * inverse_record_doubles(f);
}

int fluid_inverse_record_reserve(CPhysFluid f, ptrdiff_t batch) {
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
    CPhysCheck(record && valid && stats, CPHYS_ERROR_MEMORY,
               "cannot allocate an inverse record for batch %td", batch);
    f->inverse_record_capacity = batch;
  }
  if (batch) memset(f->inverse_record_valid, 0, (size_t)batch);
  f->inverse_record_batch = batch;
  return 0;
}

void fluid_inverse_record_centre(CPhysFluid f, ptrdiff_t s, int k, const double centre[2], int defined) {
  double *centres = inverse_record(f, s) + 5 * f->n;
  centres[2 * k] = centre[0], centres[2 * k + 1] = centre[1];
  centres[2 * (f->config.steps + 1) + k] = defined ? 1.0 : 0.0;
}

void fluid_inverse_record_finish(CPhysFluid f, ptrdiff_t s, const double *v0, const double *m0,
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

int fluid_inverse_record_lookup(CPhysFluid f, ptrdiff_t s, const double *v0, const double *m0,
                                double *velocity, double *centres, int *defined) {
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
