/* One step of the fluid (with the viscosity stage's FFTW plans and gains) and
 * the forward map m_t = P(v0; m0), recording the tape or the inverse's record
 * when asked (their layouts: fluid_tape.c).  The entry points
 * (CPhysFluidForward, CPhysFluidStep) are in fluid.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cphys_internal.h"
#include "finite.h"
#include "fluid_internal.h"

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

/* (2 / h sin(pi m / n))^2: minus the eigenvalue of the periodic 3-point second difference
 * (spacing h, n nodes) for the DFT bin m. */
static double stencil_k2(ptrdiff_t m, ptrdiff_t n, double h) {
  const double s = 2.0 / h * sin(CPHYS_PI * (double)m / (double)n);
  return s * s;
}

/* One axis of a component's transform between walls or periodic: FFTW's kinds, the size, the
 * first node, the eigenvalue of -(second difference) per mode and the normalization. */
typedef struct {
  fftw_r2r_kind forward, backward;
  ptrdiff_t size, offset;
  double normalization;
} DiffusionAxis;

static DiffusionAxis diffusion_axis(CPhysFluid f, int c, int axis) {
  const ptrdiff_t n = axis == 0 ? f->ny : f->nx;
  DiffusionAxis a = {FFTW_R2HC, FFTW_HC2R, n, 0, (double)n};
  if (!f->walls[axis]) return a;
  a.normalization = 2.0 * (double)n;
  if (axis == (c == 0 ? 1 : 0)) { /* the normal component: 0 on the wall faces 0 and n (odd about them) */
    a.forward = a.backward = FFTW_RODFT00, a.size = n - 1, a.offset = 1;
  } else if (f->config.boundary[axis] == CPHYS_FLUID_FREE_SLIP) { /* even about the walls */
    a.forward = FFTW_REDFT10, a.backward = FFTW_REDFT01;
  } else { /* no-slip: odd about the walls */
    a.forward = FFTW_RODFT10, a.backward = FFTW_RODFT01;
  }
  return a;
}

/* -(second difference) of mode m of the axis's transform, spacing h over n cells. */
static double diffusion_axis_k2(CPhysFluid f, const DiffusionAxis *a, int axis, ptrdiff_t m) {
  const ptrdiff_t n = axis == 0 ? f->ny : f->nx;
  const double h = axis == 0 ? f->dy : f->dx;
  /* R2HC: entry m and n - m are the cosine and sine of frequency min(m, n - m), same eigenvalue. */
  if (a->forward == FFTW_R2HC) return stencil_k2(m, n, h);
  const double s = 2.0 / h * sin(CPHYS_PI * (double)(a->forward == FFTW_REDFT10 ? m : m + 1) / (2.0 * n));
  return s * s;
}

static int diffusion_walls_create_locked(CPhysFluid f) {
  const double nu = f->config.viscosity, dt = f->config.dt;
  double *scratch = malloc((size_t)f->n * sizeof *scratch);
  CPhysCheck(scratch != NULL, CPHYS_ERROR_MEMORY, "cannot allocate the viscosity's work array");
  int ierr = 0;
  for (int c = 0; c < 2 && !ierr; c++) {
    const DiffusionAxis ay = diffusion_axis(f, c, 0), ax = diffusion_axis(f, c, 1);
    const ptrdiff_t modes = ay.size * ax.size;
    f->diffusion_walls_offset[c] = ay.offset * f->nx + ax.offset;
    f->diffusion_walls_modes[c] = modes, f->diffusion_walls_columns[c] = ax.size;
    f->diffusion_walls_gain[c] = malloc((size_t)modes * sizeof *f->diffusion_walls_gain[c]);
    if (!f->diffusion_walls_gain[c]) {
      ierr = CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate the viscosity's gains");
      break;
    }
    for (ptrdiff_t j = 0; j < ay.size; j++)
      for (ptrdiff_t i = 0; i < ax.size; i++) {
        const double k2 = diffusion_axis_k2(f, &ay, 0, j) + diffusion_axis_k2(f, &ax, 1, i);
        f->diffusion_walls_gain[c][j * ax.size + i] =
            (k2 > 0.0 ? 1.0 / (1.0 + nu * dt * k2) : 1.0) / (ay.normalization * ax.normalization);
      }
    /* In place on the component's nodes (row stride nx), from its first node off the walls. */
    const fftw_iodim dims[2] = {{(int)ay.size, (int)f->nx, (int)f->nx}, {(int)ax.size, 1, 1}};
    const fftw_r2r_kind forward[2] = {ay.forward, ax.forward}, backward[2] = {ay.backward, ax.backward};
    const unsigned flags = FFTW_ESTIMATE | FFTW_UNALIGNED;
    double *first = scratch + f->diffusion_walls_offset[c];
    f->diffusion_walls_forward[c] = fftw_plan_guru_r2r(2, dims, 0, NULL, first, first, forward, flags);
    f->diffusion_walls_backward[c] = fftw_plan_guru_r2r(2, dims, 0, NULL, first, first, backward, flags);
    if (!f->diffusion_walls_forward[c] || !f->diffusion_walls_backward[c])
      ierr = CPhysSetError(CPHYS_ERROR_FFTW, __func__, "FFTW could not plan the viscosity's wall transforms");
  }
  free(scratch);
  return ierr;
}

static void diffuse_walls(CPhysFluid f, double *v) {
  for (int c = 0; c < 2; c++) {
    double *first = v + c * f->n + f->diffusion_walls_offset[c];
    const double *gain = f->diffusion_walls_gain[c];
    const ptrdiff_t nx = f->nx, modes = f->diffusion_walls_modes[c], columns = f->diffusion_walls_columns[c];
    fftw_execute_r2r(f->diffusion_walls_forward[c], first, first);
    for (ptrdiff_t k = 0; k < modes; k++) first[k / columns * nx + k % columns] *= gain[k];
    fftw_execute_r2r(f->diffusion_walls_backward[c], first, first);
  }
}

int fluid_diffusion_create_locked(CPhysFluid f) {
  const double nu = f->config.viscosity, dt = f->config.dt;
  if (!(nu > 0.0)) return 0;
  if (f->any_walls) return diffusion_walls_create_locked(f);
  const ptrdiff_t half = f->nx / 2 + 1, modes = f->ny * half;
  f->diffusion_gain = malloc((size_t)modes * sizeof *f->diffusion_gain);
  double *real = malloc((size_t)f->n * sizeof *real);
  fftw_complex *spectrum = malloc((size_t)modes * sizeof *spectrum);
  int ierr = 0;
  if (!f->diffusion_gain || !real || !spectrum) {
    ierr = CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate the viscosity's spectra of %td cells",
                         f->n);
  } else {
    for (ptrdiff_t j = 0; j < f->ny; j++)
      for (ptrdiff_t i = 0; i < half; i++) {
        const double k2 = stencil_k2(j, f->ny, f->dy) + stencil_k2(i, f->nx, f->dx);
        /* k2 = 0 (the mean) is kept exactly, also where nu dt overflows. */
        f->diffusion_gain[j * half + i] = (k2 > 0.0 ? 1.0 / (1.0 + nu * dt * k2) : 1.0) / (double)f->n;
      }
    /* Unaligned: executed on the tape's and the work slots' arrays. ESTIMATE: reproducible. */
    const unsigned flags = FFTW_ESTIMATE | FFTW_UNALIGNED;
    f->diffusion_r2c = fftw_plan_dft_r2c_2d((int)f->ny, (int)f->nx, real, spectrum, flags);
    f->diffusion_c2r = fftw_plan_dft_c2r_2d((int)f->ny, (int)f->nx, spectrum, real, flags);
    if (!f->diffusion_r2c || !f->diffusion_c2r)
      ierr = CPhysSetError(CPHYS_ERROR_FFTW, __func__, "FFTW could not plan the viscosity's transforms");
  }
  free(real);
  free(spectrum);
  return ierr;
}

void fluid_diffusion_destroy_locked(CPhysFluid f) {
  if (f->diffusion_r2c) fftw_destroy_plan(f->diffusion_r2c);
  if (f->diffusion_c2r) fftw_destroy_plan(f->diffusion_c2r);
  f->diffusion_r2c = f->diffusion_c2r = NULL;
  free(f->diffusion_gain);
  f->diffusion_gain = NULL;
  for (int c = 0; c < 2; c++) {
    if (f->diffusion_walls_forward[c]) fftw_destroy_plan(f->diffusion_walls_forward[c]);
    if (f->diffusion_walls_backward[c]) fftw_destroy_plan(f->diffusion_walls_backward[c]);
    f->diffusion_walls_forward[c] = f->diffusion_walls_backward[c] = NULL;
    free(f->diffusion_walls_gain[c]);
    f->diffusion_walls_gain[c] = NULL;
  }
}

void fluid_diffuse(CPhysFluid f, double *v) {
  if (f->any_walls) {
    diffuse_walls(f, v);
    return;
  }
  const ptrdiff_t modes = f->ny * (f->nx / 2 + 1);
  /* Slots UX and UY are consecutive: 2 n doubles >= ny (nx + 2), the half spectrum. */
  fftw_complex *spectrum = (fftw_complex *)fluid_slot(f, FLUID_SLOT_UX);
  for (int c = 0; c < 2; c++) {
    double *u = v + c * f->n;
    fftw_execute_dft_r2c(f->diffusion_r2c, u, spectrum);
    for (ptrdiff_t k = 0; k < modes; k++) {
      spectrum[k][0] *= f->diffusion_gain[k];
      spectrum[k][1] *= f->diffusion_gain[k];
    }
    fftw_execute_dft_c2r(f->diffusion_c2r, spectrum, u);
  }
}

int fluid_step_sample_locked(CPhysFluid f, int viscous, const double *v_in, const double *m_in, double *w_out,
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
    const FluidGridKind kind = c == 0 ? FLUID_XFACE : FLUID_YFACE;
    fluid_node_velocity(f, kind, v_in, ux, uy);
    fluid_maccormack(f, kind, v_in + c * n, ux, uy, semi, w_out + c * n, branches ? branches + c * n : NULL);
  }
  if (viscous && f->config.viscosity > 0.0) fluid_diffuse(f, w_out);
  CPhysCall(fluid_project_locked(f, w_out, p, info, "forward", sample, step));
  for (int g = 0; g < groups; g++) {
    const double energy = sum_squares(w_out, begin[g], end[g]);
    /* A zero velocity stays zero (SIP guards the same division). */
    const double scale = energy > 0.0 ? sqrt(energy0[g] / energy) : 1.0;
    for (ptrdiff_t k = begin[g]; k < end[g]; k++) v_out[k] = scale * w_out[k];
  }
  if (groups == 0 && v_out != w_out) memcpy(v_out, w_out, (size_t)(2 * n) * sizeof *v_out);
  fluid_node_velocity(f, FLUID_CENTRED, v_out, ux, uy);
  fluid_maccormack(f, FLUID_CENTRED, m_in, ux, uy, semi, m_out, branches ? branches + 2 * n : NULL);
  return 0;
}

typedef struct {
  const double *v0, *m0;
  double *m_t;
  int record, keep;
} ForwardArgs;

/* Sample s's marker centre after `k` steps (k = 0: the initial marker) into the inverse's record. */
static void record_centre(CPhysFluid f, ptrdiff_t s, int k, const double *marker) {
  double centre[2];
  int defined;
  fluid_centre_of_mass(f, marker, centre, &defined);
  fluid_inverse_record_centre(f, s, k, centre, defined);
}

/* One sample of the forward map; with a tape the states go to the tape, else to work slots. */
static int forward_sample_locked(CPhysFluid f, ptrdiff_t s, void *context) {
  const ForwardArgs *args = context;
  const ptrdiff_t n = f->n;
  const int steps = f->config.steps, record = args->record, keep = args->keep;
  const double *v0 = args->v0 + s * 2 * n, *m0 = args->m0 + s * n;
  double *p = fluid_slot(f, FLUID_SLOT_PRESSURE);
  double *v[2] = {fluid_slot(f, FLUID_SLOT_VELOCITY), fluid_slot(f, FLUID_SLOT_VELOCITY_NEXT)};
  double *m[2] = {fluid_slot(f, FLUID_SLOT_MARKER), fluid_slot(f, FLUID_SLOT_MARKER_NEXT)};
  if (record) {
    memcpy(fluid_tape_inputs(f, s), v0, (size_t)(2 * n) * sizeof *v0);
    memcpy(fluid_tape_inputs(f, s) + 2 * n, m0, (size_t)n * sizeof *m0);
    v[0] = fluid_tape_velocity(f, s, 0), m[0] = fluid_tape_marker(f, s, 0);
  }
  fluid_centred_to_staggered(f, v0, v[0]);
  memset(p, 0, (size_t)n * sizeof *p);
  CPhysCall(
      fluid_project_locked(f, v[0], p, fluid_stats_at(f, CPHYS_FLUID_PASS_FORWARD, s, 0), "forward", s, 0));
  memset(p, 0, (size_t)n * sizeof *p);
  memcpy(m[0], m0, (size_t)n * sizeof *m0);
  if (keep) record_centre(f, s, 0, m[0]);
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
    CPhysCall(fluid_step_sample_locked(f, 1, v[a], m[a], w, v[b], m[a == 0 ? 1 : 0], p, branches,
                                       fluid_stats_at(f, CPHYS_FLUID_PASS_FORWARD, s, k + 1), s, k + 1));
    if (keep) record_centre(f, s, k + 1, m[a == 0 ? 1 : 0]);
  }
  const double *last = record ? m[1] : m[steps % 2];
  const ptrdiff_t q = cphys_first_non_finite(last, n);
  CPhysCheck(q < 0, CPHYS_ERROR_NONFINITE, "the marker of sample %td became non-finite at cell %td", s, q);
  if (args->m_t) memcpy(args->m_t + s * n, last, (size_t)n * sizeof *args->m_t);
  if (keep) fluid_inverse_record_finish(f, s, v0, m0, v[steps % 2]);
  return 0;
}

int fluid_forward_locked(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0, double *m_t,
                         int mode) {
  ForwardArgs args = {v0, m0, m_t, mode != CPHYS_FLUID_RECORD_NONE && mode != CPHYS_FLUID_RECORD_INVERSE,
                      mode == CPHYS_FLUID_RECORD_INVERSE};
  CPhysCall(fluid_stats_reset(f, CPHYS_FLUID_PASS_FORWARD, batch, f->config.steps + 1));
  if (args.record) CPhysCall(fluid_tape_reserve(f, batch));
  if (args.keep) CPhysCall(fluid_inverse_record_reserve(f, batch));
  CPhysCall(fluid_for_samples_locked(f, batch, forward_sample_locked, &args));
  if (args.record) f->tape_valid = 1, f->tape_batch = batch;
  return 0;
}

int fluid_ensure_tape_locked(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0) {
  if (fluid_tape_matches(f, batch, v0, m0)) return 0;
  return fluid_forward_locked(f, batch, v0, m0, NULL, CPHYS_FLUID_RECORD_TAPE);
}

int fluid_step_batch_locked(CPhysFluid f, ptrdiff_t batch, double *velocity, double *marker,
                            double *pressure) {
  const ptrdiff_t n = f->n;
  double *v_in = fluid_slot(f, FLUID_SLOT_VELOCITY), *m_in = fluid_slot(f, FLUID_SLOT_MARKER);
  double *p = fluid_slot(f, FLUID_SLOT_PRESSURE);
  CPhysCall(fluid_stats_reset(f, CPHYS_FLUID_PASS_FORWARD, batch, 2));
  for (ptrdiff_t s = 0; s < batch; s++) {
    double *v = velocity + s * 2 * n, *m = marker + s * n, *ps = pressure ? pressure + s * n : p;
    memcpy(v_in, v, (size_t)(2 * n) * sizeof *v);
    memcpy(m_in, m, (size_t)n * sizeof *m);
    if (!pressure) memset(p, 0, (size_t)n * sizeof *p);
    CPhysCall(fluid_step_sample_locked(f, 1, v_in, m_in, v, v, m, ps, NULL,
                                       fluid_stats_at(f, CPHYS_FLUID_PASS_FORWARD, s, 1), s, 1));
  }
  return 0;
}
