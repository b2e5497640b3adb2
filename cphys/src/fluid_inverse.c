/* Physical inverse of the fluid map: forward and reverse runs, uniform flow plus one vortex
 * (paper B.5; SIP's estimate_v0 generalised, see fluid.h for the estimator).  The
 * entry point CPhysFluidPhysicalInverse is in fluid.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fluid_internal.h"

/* cross(a, b) = a_x b_y - a_y b_x of the differences a = p - q, b = q - c (minimal images on
 * periodic axes). */
static double box_cross(CPhysFluid f, const double p[2], const double q[2], const double c[2]) {
  const double ax = fluid_box_delta(f, 0, p[0] - q[0]), ay = fluid_box_delta(f, 1, p[1] - q[1]);
  const double bx = fluid_box_delta(f, 0, q[0] - c[0]), by = fluid_box_delta(f, 1, q[1] - c[1]);
  return ax * by - ay * bx;
}

/* Runs `steps` steps from v[0], m[0] (ping-pong with v[1], m[1]); returns the
 * index holding the final state.  The reverse pass is inviscid (fluid.h).  centres [steps + 1][2] and defined
 * [steps + 1] receive the marker's centre after each step (entry 0: the initial marker). */
static int simulate_locked(CPhysFluid f, double *v[2], double *m[2], double *p, CPhysFluidPass pass,
                           ptrdiff_t sample, int solve_offset, double *centres, int *defined, int *final) {
  const int steps = f->config.steps;
  const int viscous = pass != CPHYS_FLUID_PASS_REVERSE;
  int a = 0;
  fluid_centre_of_mass(f, m[0], centres, defined);
  for (int k = 0; k < steps; k++, a = 1 - a) {
    CPhysCall(fluid_step_sample_locked(f, viscous, v[a], m[a], v[1 - a], v[1 - a], m[1 - a], p, NULL,
                                       fluid_stats_at(f, pass, sample, k + solve_offset), sample, k + 1));
    fluid_centre_of_mass(f, m[1 - a], centres + 2 * (k + 1), defined + k + 1);
  }
  *final = a;
  return 0;
}

static int inverse_sample_locked(CPhysFluid f, ptrdiff_t s, const double *v0, const double *m0,
                                 const double *target, double *v0_new, double *dv0, double *centres,
                                 int *defined) {
  const ptrdiff_t n = f->n;
  const int steps = f->config.steps;
  const double time = steps * f->config.dt;
  double *v[2] = {fluid_slot(f, FLUID_SLOT_VELOCITY), fluid_slot(f, FLUID_SLOT_VELOCITY_NEXT)};
  double *m[2] = {fluid_slot(f, FLUID_SLOT_MARKER), fluid_slot(f, FLUID_SLOT_MARKER_NEXT)};
  double *p = fluid_slot(f, FLUID_SLOT_PRESSURE);
  double *fwd = centres, *rev = centres + 2 * (steps + 1);
  int *fwd_ok = defined, *rev_ok = defined + steps + 1, final;
  /* 1. forward run, unless the op's forward recorded it (the same computation) */
  if (fluid_inverse_record_lookup(f, s, v0, m0, v[0], fwd, fwd_ok)) {
    final = 0;
  } else {
    fluid_centred_to_staggered(f, v0, v[0]);
    memset(p, 0, (size_t)n * sizeof *p);
    CPhysCall(fluid_project_locked(f, v[0], p, fluid_stats_at(f, CPHYS_FLUID_PASS_FORWARD, s, 0),
                                   "inverse forward", s, 0));
    memset(p, 0, (size_t)n * sizeof *p);
    memcpy(m[0], m0, (size_t)n * sizeof *m0);
    CPhysCall(simulate_locked(f, v, m, p, CPHYS_FLUID_PASS_FORWARD, s, 1, fwd, fwd_ok, &final));
  }
  /* 4. reverse run from the target with the negated final velocity */
  double *v_rev[2] = {v[final], v[1 - final]}, *m_rev[2] = {m[1 - final], m[final]};
  for (ptrdiff_t k = 0; k < 2 * n; k++) v_rev[0][k] = -v_rev[0][k];
  memcpy(m_rev[0], target, (size_t)n * sizeof *target);
  memset(p, 0, (size_t)n * sizeof *p);
  CPhysCall(simulate_locked(f, v_rev, m_rev, p, CPHYS_FLUID_PASS_REVERSE, s, 0, rev, rev_ok, &final));
  /* 2. uniform part: carries the centre of m0 to its destination in time T */
  const double lx = (double)f->nx * f->dx, ly = (double)f->ny * f->dy;
  double u[2] = {0.0, 0.0},
         destination[2] = {f->config.marker_destination[0] * lx, f->config.marker_destination[1] * ly};
  int has_destination = fwd_ok[0];
  if (f->config.destination_from_target) {
    destination[0] = rev[0], destination[1] = rev[1];
    has_destination = has_destination && rev_ok[0];
  }
  /* Between walls a uniform flow along the axis is no flow at all (the projection removes it): 0. */
  if (has_destination) {
    u[0] = f->walls[1] ? 0.0 : fluid_box_delta(f, 0, destination[0] - fwd[0]) / time;
    u[1] = f->walls[0] ? 0.0 : fluid_box_delta(f, 1, destination[1] - fwd[1]) / time;
  }
  /* 3. current vortex strength: least-squares fit of v0 less its mean */
  double strength = 0.0;
  for (int c = 0; c < 2; c++) {
    double mean = 0.0;
    for (ptrdiff_t k = 0; k < n; k++) mean += v0[c * n + k];
    mean /= (double)n;
    for (ptrdiff_t k = 0; k < n; k++) strength += (v0[c * n + k] - mean) * f->unit_vortex[c * n + k];
  }
  /* A vortex narrower than the cells is invisible on the grid (<W, W> = 0): no fit. */
  strength = f->unit_vortex_norm2 > 0.0 ? strength / f->unit_vortex_norm2 : 0.0;
  /* 5. mismatch of forward and reverse centres about the moving vortex centre;
   * the reverse entry r (r = 0: the target) is at time t_k, k = steps - r. */
  double mismatch = 0.0;
  int terms = 0;
  for (int r = 0; r <= steps; r++) {
    const int k = steps - r;
    if (!fwd_ok[k] || !rev_ok[r]) continue;
    const double t = k * f->config.dt;
    const double centre[2] = {f->config.vortex_center[0] * lx + u[0] * t,
                              f->config.vortex_center[1] * ly + u[1] * t};
    mismatch += box_cross(f, fwd + 2 * k, rev + 2 * r, centre);
    terms++;
  }
  if (terms) strength += f->config.vortex_gain * mismatch / terms;
  /* 6. the estimate */
  for (int c = 0; c < 2; c++)
    for (ptrdiff_t k = 0; k < n; k++) {
      const double estimate = u[c] + strength * f->unit_vortex[c * n + k];
      CPhysCheck(isfinite(estimate) && isfinite(v0[c * n + k] - estimate), CPHYS_ERROR_NONFINITE,
                 "the estimate of sample %td overflows (uniform flow (%g, %g), vortex strength %g)", s, u[0],
                 u[1], strength);
      if (v0_new) v0_new[c * n + k] = estimate;
      if (dv0) dv0[c * n + k] = v0[c * n + k] - estimate;
    }
  return 0;
}

typedef struct {
  const double *v0, *m0, *target;
  double *v0_new, *dv0;
} InverseArgs;

static int inverse_sample_with_buffers(CPhysFluid f, ptrdiff_t s, void *context) {
  const InverseArgs *args = context;
  const ptrdiff_t n = f->n;
  const int steps = f->config.steps;
  double *centres = malloc((size_t)(4 * (steps + 1)) * sizeof *centres);
  int *defined = malloc((size_t)(2 * (steps + 1)) * sizeof *defined);
  int ierr = 0;
  if (!centres || !defined) ierr = CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate centres");
  if (!ierr)
    ierr = inverse_sample_locked(f, s, args->v0 + s * 2 * n, args->m0 + s * n, args->target + s * n,
                                 args->v0_new ? args->v0_new + s * 2 * n : NULL,
                                 args->dv0 ? args->dv0 + s * 2 * n : NULL, centres, defined);
  free(centres);
  free(defined);
  return ierr;
}

int fluid_inverse_locked(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0,
                         const double *target, double *v0_new, double *dv0) {
  InverseArgs args = {v0, m0, target, v0_new, dv0};
  CPhysCall(fluid_stats_reset(f, CPHYS_FLUID_PASS_FORWARD, batch, f->config.steps + 1));
  CPhysCall(fluid_stats_reset(f, CPHYS_FLUID_PASS_REVERSE, batch, f->config.steps));
  return fluid_for_samples_locked(f, batch, inverse_sample_with_buffers, &args);
}
