/* Internal: the fluid object's layout and the functions its source files share.
 *
 * The sources, each using only those listed before it (scripts/check_include_cycles.py
 * checks that no two of them use each other in a circle):
 *   fluid_object.c    the object: configuration, memory, argument checks, statistics,
 *                     work slots and the loop over the samples of a batch
 *   fluid_tape.c      the recordings of a forward run: the tape and the inverse's record
 *   fluid_advect.c    resampling and MacCormack advection (periodic or walls), with adjoints
 *   fluid_pressure.c  the pressure projection (PETSc CG) and its deferred failures
 *   fluid_geometry.c  the box (periodic or closed): centre of mass, unit vortex
 *   fluid_forward.c   one step (its viscosity stage's FFTs too) and the forward map, recording
 *                     what is asked
 *   fluid_adjoint.c   the discrete adjoint of the forward map, from the tape
 *   fluid_inverse.c   the physical inverse: forward and reverse runs, the fit
 *   fluid.c           the public entry points: checks, the library lock, dispatch
 *   fluid_modes.c     the inverse modes (physical, lbfgs) in the shared contracts, on the
 *                     public API only */
#pragma once
#include <fftw3.h>
#include <math.h>

#include "cphys/fluid.h"
#include "petsc_env.h"

/* The three node sets of the MAC grid; all have ny x nx nodes. */
typedef enum { FLUID_CENTRED = 0, FLUID_XFACE = 1, FLUID_YFACE = 2 } FluidGridKind;

/* Branch taken by the limiter at one node, recorded for the adjoint:
 * 0 the corrected value, 1 + k the clamp bound taken from the k-th of the four
 * departure-point neighbours (k = 0 (i0, j0), 1 (i1, j0), 2 (i0, j1), 3 (i1, j1)),
 * FLUID_BRANCH_SEMI the semi-Lagrangian value. */
enum { FLUID_BRANCH_CORRECTED = 0, FLUID_BRANCH_SEMI = 5 };

typedef struct {
  CPhysSolveInfo *info; /* [batch][solves] */
  ptrdiff_t capacity;   /* entries allocated */
  ptrdiff_t batch;
  int solves;
} FluidStats;

/* Work arrays of n doubles each, by slot and by worker (the thread of a sample
 * loop, fluid_for_samples_locked).  A [2n] field takes two consecutive slots.
 * The kernels' slots are theirs during one kernel call; the states' slots
 * belong to the one top-level routine a worker runs at a time (a sample of the
 * forward map, of the adjoint or of the inverse; a batch of steps or of
 * projections), which must not hand them to a kernel that uses them too. */
enum {
  /* fluid_advect.c: node velocities, MacCormack's semi-Lagrangian field, their adjoints */
  FLUID_SLOT_UX = 0,
  FLUID_SLOT_UY = 1,
  FLUID_SLOT_SEMI = 2,
  FLUID_SLOT_GSEMI = 3,
  FLUID_SLOT_GUX = 4,
  FLUID_SLOT_GUY = 5,
  /* the top-level routine's states (in the adjoint: their adjoints), as ping-pong pairs */
  FLUID_SLOT_VELOCITY = 6,      /* [2n] */
  FLUID_SLOT_VELOCITY_NEXT = 8, /* [2n] */
  FLUID_SLOT_MARKER = 10,
  FLUID_SLOT_MARKER_NEXT = 11,
  FLUID_SLOT_PRESSURE = 12,  /* warm start and result of the pressure solves */
  FLUID_SLOT_PROJECTED = 13, /* [2n] the adjoint of the projected velocity */
  /* fluid_pressure.c: the projection's right-hand side */
  FLUID_SLOT_RHS = 15,
  /* fluid_geometry.c: the centre of mass's column and row sums */
  FLUID_SLOT_COLUMNS = 16,
  FLUID_SLOT_ROWS = 17,
  FLUID_WORK_SLOTS = 18
};

/* The inverse modes' problems (fluid_modes.c): the markers bound, the sample being
 * minimized and its marker. */
typedef struct {
  CPhysFluid fluid;
  const double *markers; /* [batch, ny, nx] */
  const double *m0;      /* the current sample's */
  ptrdiff_t batch;
} FluidSampleProblem;

struct CPhysFluid_private {
  CPhysFluidConfig config;
  char prefix[128];
  ptrdiff_t nx, ny, n; /* n = nx ny */
  double dx, dy;
  /* Per axis [y, x]: walls[a] 1 where the axis is closed (CPhysFluidBoundary), and the factor of the
   * tangential velocity's ghost value beyond those walls (+1 free-slip, -1 no-slip; 1 if periodic). */
  int walls[2], any_walls;
  double tangential_ghost[2];
  /* PETSc: -Laplacian (SPD on the complement of the constants), its solver. */
  Mat laplacian;
  MatNullSpace nullspace;
  KSP ksp;
  Vec rhs, solution;
  double *work; /* work_workers x FLUID_WORK_SLOTS x n */
  int work_workers;
  /* The viscosity stage (nu > 0 only): FFTW plans of one [ny, nx] grid (unaligned, so any
   * arrays of that layout) and the implicit step's gain per mode, 1 / ((1 + nu dt k_h^2) n). */
  fftw_plan diffusion_r2c, diffusion_c2r;
  double *diffusion_gain; /* [ny, nx / 2 + 1] */
  /* With walls: per velocity component an in-place real-to-real plan pair (DFT halfcomplex along a
   * periodic axis, DST-I on the faces between the walls of the normal component, DCT-II / DST-II
   * for the tangential one, free-slip / no-slip) and its gains, normalization included. */
  fftw_plan diffusion_walls_forward[2], diffusion_walls_backward[2];
  double *diffusion_walls_gain[2]; /* [modes_y, modes_x] of the component's transform */
  ptrdiff_t diffusion_walls_offset[2], diffusion_walls_modes[2], diffusion_walls_columns[2];
  double *unit_vortex;      /* [2, ny, nx] cell-centred, (x, y) */
  double unit_vortex_norm2; /* <W, W> */
  /* Tape of the last recorded forward pass (layout: fluid_tape.c). */
  double *tape;
  unsigned char *tape_branches;
  ptrdiff_t tape_capacity, tape_branch_capacity, tape_batch;
  int tape_valid;
  /* CPHYS_FLUID_RECORD_INVERSE: per sample the inputs, the final velocity, the
   * marker centres and their flags (layout: fluid_tape.c), and the forward statistics. */
  double *inverse_record;
  unsigned char *inverse_record_valid;  /* [batch]: the sample ran to the end, every solve converged */
  CPhysSolveInfo *inverse_record_stats; /* [batch][steps + 1] */
  ptrdiff_t inverse_record_capacity, inverse_record_batch;
  FluidStats stats[3];               /* by CPhysFluidPass */
  FluidSampleProblem sample_problem; /* CPhysFluidGetLeastSquaresProblem's context */
  /* The first unconverged pressure solve of the current call (see
   * fluid_failures_begin); the call goes on with the solver's last iterate. */
  int failed;
  ptrdiff_t failed_sample;
  char failure[512];
};

/* ---- fluid_object.c ---- */
/* A new object after validating `config`: the configuration (prefix and
 * fractions normalized), the grid and one worker's work slots; nothing of PETSc. */
int fluid_object_create(const CPhysFluidConfig *config, CPhysFluid *fluid);
/* Frees what the object owns besides PETSc's objects (fluid_pressure_destroy_locked). */
void fluid_object_free(CPhysFluid f);
/* Argument checks of the entry points; errors name `caller`. */
int fluid_check_array(const double *a, ptrdiff_t count, const char *name, int need_finite,
                      const char *caller);
int fluid_check_batch(CPhysFluid f, ptrdiff_t batch, int components, const char *caller);
/* Sizes the statistics of `pass` for batch x solves (zeroed). */
int fluid_stats_reset(CPhysFluid f, CPhysFluidPass pass, ptrdiff_t batch, int solves);
static inline CPhysSolveInfo *fluid_stats_at(CPhysFluid f, CPhysFluidPass pass, ptrdiff_t sample, int solve) {
  return f->stats[pass].info + sample * f->stats[pass].solves + solve;
}

/* This thread's worker index inside a sample loop of fluid_for_samples_locked,
 * 0 everywhere else. */
extern _Thread_local int fluid_worker;

static inline double *fluid_slot(CPhysFluid f, int slot) {
  return f->work + ((ptrdiff_t)fluid_worker * FLUID_WORK_SLOTS + slot) * f->n;
}

/* Runs `sample(f, s, context)` for s = 0..batch-1, on several threads when the
 * batch is worth it (cphys_loop_threads; each thread its own work slots), and
 * returns the error of the lowest failing sample (later samples may or may not
 * have run), else 0.  The per-sample work is independent, so results are
 * bitwise those of the serial loop.  Inside `sample` PETSc is called only by
 * fluid_project_locked, which serializes its solves. */
typedef int (*FluidSampleFunction)(CPhysFluid f, ptrdiff_t s, void *context);
int fluid_for_samples_locked(CPhysFluid f, ptrdiff_t batch, FluidSampleFunction sample, void *context);

/* Node (j, i), j in [-1, ny], i in [-1, nx], of the faces of staggered component c (0: vx, 1: vy)
 * as factor * v[c n + index]: a periodic axis wraps; on a closed axis the component normal to the
 * walls is 0 on the wall faces (index 0 and n: not degrees of freedom, whatever is stored there) and
 * the tangential one's ghost beyond the walls (index -1 or n) is tangential_ghost times its mirror. */
static inline ptrdiff_t fluid_face_node(CPhysFluid f, int c, ptrdiff_t j, ptrdiff_t i, double *factor) {
  const int normal = c == 0 ? 1 : 0; /* the axis [y, x] the component points along */
  ptrdiff_t index[2] = {j, i};
  const ptrdiff_t size[2] = {f->ny, f->nx};
  double s = 1.0;
  for (int a = 0; a < 2; a++) {
    ptrdiff_t k = index[a];
    const ptrdiff_t n = size[a];
    if (!f->walls[a]) {
      k = k < 0 ? k + n : k >= n ? k - n : k;
    } else if (a == normal) {
      if (k <= 0 || k >= n) s = 0.0, k = 0;
    } else if (k < 0 || k >= n) {
      s *= f->tangential_ghost[a], k = k < 0 ? 0 : n - 1;
    }
    index[a] = k;
  }
  *factor = s;
  return index[0] * f->nx + index[1];
}

/* 1 where node (j, i) of `kind` is a face on a wall (its value is always 0). */
static inline int fluid_wall_node(CPhysFluid f, FluidGridKind kind, ptrdiff_t j, ptrdiff_t i) {
  return (kind == FLUID_XFACE && f->walls[1] && i == 0) || (kind == FLUID_YFACE && f->walls[0] && j == 0);
}

/* ---- fluid_tape.c ---- */
/* Room for the tape of `batch` samples; the tape is invalid until the caller sets tape_valid. */
int fluid_tape_reserve(CPhysFluid f, ptrdiff_t batch);
/* Tape accessors: V_k (k = 0..steps) [2n], W_k (k < steps) [2n], M_k [n], branches of step k [3n],
 * the inputs v0 [2n] and m0 [n] (contiguous) the tape was made from. */
double *fluid_tape_velocity(CPhysFluid f, ptrdiff_t sample, int k);
double *fluid_tape_projected(CPhysFluid f, ptrdiff_t sample, int k);
double *fluid_tape_marker(CPhysFluid f, ptrdiff_t sample, int k);
unsigned char *fluid_tape_branches(CPhysFluid f, ptrdiff_t sample, int k);
double *fluid_tape_inputs(CPhysFluid f, ptrdiff_t sample);
/* 1 when the valid tape was made from these inputs (v0 [batch, 2n], m0 [batch, n]), bitwise. */
int fluid_tape_matches(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0);
/* Room for the inverse record of `batch` samples, every sample marked incomplete. */
int fluid_inverse_record_reserve(CPhysFluid f, ptrdiff_t batch);
/* Sample s's marker centre (x, y) after `k` steps (k = 0: the initial marker) and whether it is defined. */
void fluid_inverse_record_centre(CPhysFluid f, ptrdiff_t s, int k, const double centre[2], int defined);
/* Completes sample s's record after a forward run that reached its end: the
 * inputs v0 [2n] and m0 [n], the final velocity [2n] and the FORWARD statistics of s. */
void fluid_inverse_record_finish(CPhysFluid f, ptrdiff_t s, const double *v0, const double *m0,
                                 const double *velocity);
/* The forward run CPHYS_FLUID_RECORD_INVERSE kept for sample s if it was made
 * from (v0, m0) of that sample ([2n], [n]): 1 and the final velocity [2n], the
 * centres [steps + 1][2] and flags [steps + 1], with the forward statistics
 * copied into stats[FORWARD] row s; else 0. */
int fluid_inverse_record_lookup(CPhysFluid f, ptrdiff_t s, const double *v0, const double *m0,
                                double *velocity, double *centres, int *defined);

/* ---- fluid_advect.c: resampling and MacCormack, periodic or between walls (no PETSc) ---- */
/* Staggered velocity v [2, n] sampled at the nodes of `kind`: ux, uy [n]. */
void fluid_node_velocity(CPhysFluid f, FluidGridKind kind, const double *v, double *ux, double *uy);
/* Adds the transpose: g_v [2, n] += S^T (g_ux, g_uy). */
void fluid_node_velocity_adjoint(CPhysFluid f, FluidGridKind kind, const double *g_ux, const double *g_uy,
                                 double *g_v);
/* out [n] = MacCormack(field [n]) on the nodes of `kind` (which says how the field continues
 * beyond walls) with node velocities ux, uy [n]; semi [n] is work; branches [n] (may be NULL)
 * records the limiter's choices.  Wall nodes (fluid_wall_node) get 0. */
void fluid_maccormack(CPhysFluid f, FluidGridKind kind, const double *field, const double *ux,
                      const double *uy, double *semi, double *out, unsigned char *branches);
/* Adds the adjoint of fluid_maccormack for the recorded branches:
 * g_field [n] += (d out / d field)^T g_out, g_ux, g_uy [n] += (d out / d u)^T g_out.
 * Uses slots SEMI and GSEMI. */
void fluid_maccormack_adjoint(CPhysFluid f, FluidGridKind kind, const double *field, const double *ux,
                              const double *uy, const unsigned char *branches, const double *g_out,
                              double *g_field, double *g_ux, double *g_uy);
/* staggered [2, n] = S centred [2, n] and the transpose (overwrites). */
void fluid_centred_to_staggered(CPhysFluid f, const double *centred, double *staggered);
void fluid_centred_to_staggered_adjoint(CPhysFluid f, const double *g_staggered, double *g_centred);

/* ---- fluid_pressure.c ---- */
int fluid_pressure_create_locked(CPhysFluid f);
void fluid_pressure_destroy_locked(CPhysFluid f);
void fluid_divergence(CPhysFluid f, const double *v, double *divergence);
/* v [2, n] -= grad p with -Laplacian p = -div v; p [n] is the warm start and the
 * result.  Non-convergence is deferred: the last iterate is applied, the first
 * failure of the call (the lowest sample's first; naming `what`, `sample` and
 * PETSc's reason) is kept and the caller goes on; fluid_failures_end turns it
 * into CPHYS_ERROR_NOT_CONVERGED.  Callable from the threads of a sample loop:
 * the PETSc part runs in one critical section (PETSc is not thread-safe).
 * Uses slot RHS. */
int fluid_project_locked(CPhysFluid f, double *v, double *p, CPhysSolveInfo *info, const char *what,
                         ptrdiff_t sample, int solve);
/* Projects each [2n] field of staggered [batch, 2n] in place from a zero
 * pressure guess (statistics: FORWARD, solve 0).  Uses slot PRESSURE. */
int fluid_project_batch_locked(CPhysFluid f, ptrdiff_t batch, double *staggered);

/* Every public entry point that solves brackets its work (under the library
 * lock) with these: begin forgets earlier failures; end returns `ierr` when it
 * is an error, else CPHYS_ERROR_NOT_CONVERGED with the first deferred failure's
 * message, else 0.  So a batch runs to the end even when a solve fails
 * (docs/decisions.md), and the outputs hold what the last iterates gave. */
void fluid_failures_begin(CPhysFluid f);
int fluid_failures_end(CPhysFluid f, int ierr);

/* ---- fluid_geometry.c ---- */
/* Minimal-image offset on a period L: in [-L/2, L/2]. */
static inline double fluid_periodic_delta(double d, double period) {
  return d - period * round(d / period);
}
/* Offset d of two positions along physical axis xy (0: x, 1: y): the minimal image on a periodic
 * axis, d itself between walls. */
static inline double fluid_box_delta(CPhysFluid f, int xy, double d) {
  if (f->walls[1 - xy]) return d;
  return fluid_periodic_delta(d, xy == 0 ? (double)f->nx * f->dx : (double)f->ny * f->dy);
}
/* Fills f->unit_vortex and f->unit_vortex_norm2 from the configuration. */
int fluid_unit_vortex_create(CPhysFluid f);
/* Centre (x, y) of marker [n]: circular mean on a periodic axis, plain mean between walls (see
 * CPhysFluidCentreOfMass).  Uses slots COLUMNS and ROWS. */
void fluid_centre_of_mass(CPhysFluid f, const double *marker, double centre[2], int *defined);

/* ---- fluid_forward.c ---- */
/* Energy groups of the rescale: count and [begin, end) of group g in a [2 n] field. */
int fluid_energy_groups(CPhysFluid f, ptrdiff_t begin[2], ptrdiff_t end[2]);
/* The viscosity stage's plans and gains (nothing when nu = 0); the destroy is NULL-safe.
 * FFTW's planner is not thread-safe: both run under the library lock. */
int fluid_diffusion_create_locked(CPhysFluid f);
void fluid_diffusion_destroy_locked(CPhysFluid f);
/* The viscosity stage, v [2n] = (I - nu dt L)^-1 v per component (L the 5-point
 * Laplacian of the component's nodes with the box's boundary rules), by FFT (periodic)
 * or real-to-real transforms (walls).  Symmetric: it is its own adjoint.  Needs nu > 0.
 * Uses slots UX and UY (together: the spectrum). */
void fluid_diffuse(CPhysFluid f, double *v);
/* One step for one sample, with the viscosity stage when `viscous` (0 for the
 * inverse's reverse run).  v_in [2n], m_in [n]; w_out [2n] the projected,
 * unscaled velocity (may alias v_out); v_out [2n], m_out [n]; p [n] warm start;
 * branches [3n] or NULL.  Uses the kernels' slots. */
int fluid_step_sample_locked(CPhysFluid f, int viscous, const double *v_in, const double *m_in, double *w_out,
                             double *v_out, double *m_out, double *p, unsigned char *branches,
                             CPhysSolveInfo *info, ptrdiff_t sample, int step);
/* The forward map for a CPhysFluidRecord `mode` (m_t may be NULL: a recording only). */
int fluid_forward_locked(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0, double *m_t,
                         int mode);
/* Records the tape for (v0, m0) unless the current one was made from them. */
int fluid_ensure_tape_locked(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0);
/* One step of each sample in place: velocity [batch, 2n], marker [batch, n],
 * pressure [batch, n] or NULL (statistics: FORWARD, solve 1).  Uses the states' slots. */
int fluid_step_batch_locked(CPhysFluid f, ptrdiff_t batch, double *velocity, double *marker,
                            double *pressure);

/* ---- fluid_adjoint.c ---- */
/* g_v0 [batch, 2n] and g_m0 [batch, n] (may be NULL) from g_mt [batch, n], with the valid tape. */
int fluid_adjoint_locked(CPhysFluid f, ptrdiff_t batch, const double *g_mt, double *g_v0, double *g_m0);

/* ---- fluid_inverse.c ---- */
int fluid_inverse_locked(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0,
                         const double *target, double *v0_new, double *dv0);
