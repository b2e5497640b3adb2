/* Physical inverse of the fluid map: forward and reverse runs, uniform flow plus one vortex
 * (paper B.5; SIP's estimate_v0 generalised, see fluid.h for the estimator). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fluid_internal.h"

static const double two_pi = 6.283185307179586476925286766559;

/* Minimal-image offset on a period L: in [-L/2, L/2]. */
static double periodic_delta(double d, double period) { return d - period * round(d / period); }

int fluid_unit_vortex_create(CPhysFluid f) {
  const ptrdiff_t nx = f->nx, ny = f->ny, n = f->n;
  const double lx = (double)nx * f->dx, ly = (double)ny * f->dy;
  const double cx = f->config.vortex_center[0] * lx, cy = f->config.vortex_center[1] * ly;
  const double inv_two_sigma2 = 0.5 / (f->config.vortex_sigma * f->config.vortex_sigma);
  f->unit_vortex = malloc((size_t)(2 * n) * sizeof *f->unit_vortex);
  CPhysCheck(f->unit_vortex != NULL, CPHYS_ERROR_MEMORY, "cannot allocate the unit vortex");
  double norm2 = 0.0;
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const double rx = periodic_delta(((double)i + 0.5) * f->dx - cx, lx);
      const double ry = periodic_delta(((double)j + 0.5) * f->dy - cy, ly);
      /* r = 0 must not meet a 1 / sigma^2 that overflowed (0 * inf); W is 0 there anyway. */
      const double r2 = rx * rx + ry * ry, falloff = r2 == 0.0 ? 1.0 : exp(-r2 * inv_two_sigma2);
      const double wx = -falloff * ry, wy = falloff * rx;
      f->unit_vortex[j * nx + i] = wx;
      f->unit_vortex[n + j * nx + i] = wy;
      norm2 += wx * wx + wy * wy; /* not falloff^2 r^2: 0 * inf where r^2 overflows */
    }
  f->unit_vortex_norm2 = norm2;
  return 0;
}

/* One axis of the circular mean: the phase of sum_k w_k exp(2 pi i (k + 1/2) / count). */
static double circular_axis(const double *weights, ptrdiff_t count, double spacing, double total,
                            int *defined) {
  double c = 0.0, s = 0.0;
  for (ptrdiff_t k = 0; k < count; k++) {
    const double angle = two_pi * ((double)k + 0.5) / (double)count;
    c += weights[k] * cos(angle);
    s += weights[k] * sin(angle);
  }
  const double period = (double)count * spacing;
  if (!(hypot(c, s) > 1e-12 * total)) {
    *defined = 0;
    return 0.5 * period;
  }
  double position = atan2(s, c) / two_pi * period;
  return position < 0.0 ? position + period : position;
}

void fluid_centre_of_mass(CPhysFluid f, const double *marker, double centre[2], int *defined) {
  const ptrdiff_t nx = f->nx, ny = f->ny;
  /* Column and row sums: nx + ny trigonometric calls instead of 2 n. */
  double *columns = fluid_slot(f, FLUID_WORK_SLOTS - 2), *rows = fluid_slot(f, FLUID_WORK_SLOTS - 1);
  double total = 0.0;
  memset(columns, 0, (size_t)nx * sizeof *columns);
  for (ptrdiff_t j = 0; j < ny; j++) {
    double row = 0.0;
    for (ptrdiff_t i = 0; i < nx; i++) {
      const double m = marker[j * nx + i];
      columns[i] += m, row += m, total += fabs(m);
    }
    rows[j] = row;
  }
  *defined = 1;
  centre[0] = circular_axis(columns, nx, f->dx, total, defined);
  centre[1] = circular_axis(rows, ny, f->dy, total, defined);
  if (!*defined) centre[0] = 0.5 * (double)nx * f->dx, centre[1] = 0.5 * (double)ny * f->dy;
}

/* cross(a, b) = a_x b_y - a_y b_x of minimal-image differences a = p - q, b = q - c. */
static double periodic_cross(CPhysFluid f, const double p[2], const double q[2], const double c[2]) {
  const double lx = (double)f->nx * f->dx, ly = (double)f->ny * f->dy;
  const double ax = periodic_delta(p[0] - q[0], lx), ay = periodic_delta(p[1] - q[1], ly);
  const double bx = periodic_delta(q[0] - c[0], lx), by = periodic_delta(q[1] - c[1], ly);
  return ax * by - ay * bx;
}

/* Runs `steps` steps from v[0], m[0] (ping-pong with v[1], m[1]); returns the
 * index holding the final state.  centres [steps + 1][2] and defined [steps + 1]
 * receive the marker's centre after each step (entry 0: the initial marker). */
static int simulate_locked(CPhysFluid f, double *v[2], double *m[2], double *p, CPhysFluidPass pass,
                           ptrdiff_t sample, int solve_offset, double *centres, int *defined,
                           int *final) {
  const int steps = f->config.steps;
  int a = 0;
  fluid_centre_of_mass(f, m[0], centres, defined);
  for (int k = 0; k < steps; k++, a = 1 - a) {
    CPhysCall(fluid_step_sample_locked(f, v[a], m[a], v[1 - a], v[1 - a], m[1 - a], p, NULL,
                                       fluid_stats_at(f, pass, sample, k + solve_offset), sample,
                                       k + 1));
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
  double *v[2] = {fluid_slot(f, FLUID_SLOT_FREE), fluid_slot(f, FLUID_SLOT_FREE + 2)};
  double *m[2] = {fluid_slot(f, FLUID_SLOT_FREE + 4), fluid_slot(f, FLUID_SLOT_FREE + 5)};
  double *p = fluid_slot(f, FLUID_SLOT_FREE + 6);
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
  double u[2] = {0.0, 0.0}, destination[2] = {f->config.marker_destination[0] * lx,
                                               f->config.marker_destination[1] * ly};
  int has_destination = fwd_ok[0];
  if (f->config.destination_from_target) {
    destination[0] = rev[0], destination[1] = rev[1];
    has_destination = has_destination && rev_ok[0];
  }
  if (has_destination) {
    u[0] = periodic_delta(destination[0] - fwd[0], lx) / time;
    u[1] = periodic_delta(destination[1] - fwd[1], ly) / time;
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
    mismatch += periodic_cross(f, fwd + 2 * k, rev + 2 * r, centre);
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

int CPhysFluidPhysicalInverse(CPhysFluid fluid, ptrdiff_t batch, const double *v0, const double *m0,
                              const double *target, double *v0_new, double *dv0) {
  CPhysCall(fluid_check_batch(fluid, batch, 2));
  CPhysCall(fluid_check_array(v0, batch * 2 * fluid->n, "v0", 1));
  CPhysCall(fluid_check_array(m0, batch * fluid->n, "m0", 1));
  CPhysCall(fluid_check_array(target, batch * fluid->n, "target", 1));
  CPhysCheck(batch == 0 || v0_new != NULL || dv0 != NULL, CPHYS_ERROR_ARGUMENT,
             "at least one of v0_new and dv0 must be given");
  CPhysLibraryLock();
  fluid_failures_begin(fluid);
  int ierr = fluid_failures_end(fluid, fluid_inverse_locked(fluid, batch, v0, m0, target, v0_new, dv0));
  CPhysLibraryUnlock();
  return ierr;
}

int CPhysFluidCentreOfMass(CPhysFluid fluid, ptrdiff_t batch, const double *marker, double *centre,
                           int *defined) {
  CPhysCall(fluid_check_batch(fluid, batch, 1));
  CPhysCall(fluid_check_array(marker, batch * fluid->n, "marker", 1));
  CPhysCheck(batch == 0 || centre != NULL, CPHYS_ERROR_ARGUMENT, "centre must not be NULL");
  for (ptrdiff_t s = 0; s < batch; s++) {
    int ok;
    fluid_centre_of_mass(fluid, marker + s * fluid->n, centre + 2 * s, &ok);
    if (defined) defined[s] = ok;
  }
  return 0;
}

int CPhysFluidUnitVortex(CPhysFluid fluid, double *vortex) {
  CPhysCheck(fluid != NULL && vortex != NULL, CPHYS_ERROR_ARGUMENT, "fluid and vortex must not be NULL");
  memcpy(vortex, fluid->unit_vortex, (size_t)(2 * fluid->n) * sizeof *vortex);
  return 0;
}
