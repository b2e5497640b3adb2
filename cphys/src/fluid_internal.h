/* Internal: the fluid object's layout and the pieces its source files share. */
#pragma once
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

/* Work arrays of n doubles each, by slot and by worker (the thread of a
 * sample loop, fluid_for_samples_locked).  Slots 0-5 belong to the advection
 * kernels, the rest to whichever top-level routine runs (one at a time per
 * worker). */
enum {
  FLUID_SLOT_UX = 0, FLUID_SLOT_UY = 1, FLUID_SLOT_SEMI = 2, FLUID_SLOT_GSEMI = 3,
  FLUID_SLOT_GUX = 4, FLUID_SLOT_GUY = 5,
  FLUID_SLOT_FREE = 6, /* first slot for the callers */
  FLUID_SLOT_RHS = 21,  /* fluid_project_locked's right-hand side */
  FLUID_WORK_SLOTS = 24 /* 22 and 23: fluid_centre_of_mass */
};

struct CPhysFluid_private {
  CPhysFluidConfig config;
  char prefix[128];
  ptrdiff_t nx, ny, n; /* n = nx ny */
  double dx, dy;
  /* PETSc: -Laplacian (SPD on the complement of the constants), its solver. */
  Mat laplacian;
  MatNullSpace nullspace;
  KSP ksp;
  Vec rhs, solution;
  double *work;                /* work_workers x FLUID_WORK_SLOTS x n */
  int work_workers;
  double *unit_vortex;         /* [2, ny, nx] cell-centred, (x, y) */
  double unit_vortex_norm2;    /* <W, W> */
  /* Tape of the last recorded forward pass (see fluid.c for the layout). */
  double *tape;
  unsigned char *tape_branches;
  ptrdiff_t tape_capacity, tape_branch_capacity, tape_batch;
  int tape_valid;
  /* CPHYS_FLUID_RECORD_INVERSE: per sample the inputs, the final velocity, the
   * marker centres and their flags (see fluid.c), and the forward statistics. */
  double *inverse_record;
  unsigned char *inverse_record_valid; /* [batch]: the sample ran to the end, every solve converged */
  CPhysSolveInfo *inverse_record_stats; /* [batch][steps + 1] */
  ptrdiff_t inverse_record_capacity, inverse_record_batch;
  FluidStats stats[3];         /* by CPhysFluidPass */
  /* The first unconverged pressure solve of the current call (see
   * fluid_failures_begin); the call goes on with the solver's last iterate. */
  int failed;
  ptrdiff_t failed_sample;
  char failure[512];
};

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

/* ---- fluid_advect.c: periodic resampling and MacCormack (no PETSc) ---- */
/* Staggered velocity v [2, n] sampled at the nodes of `kind`: ux, uy [n]. */
void fluid_node_velocity(CPhysFluid f, FluidGridKind kind, const double *v, double *ux, double *uy);
/* Adds the transpose: g_v [2, n] += S^T (g_ux, g_uy). */
void fluid_node_velocity_adjoint(CPhysFluid f, FluidGridKind kind, const double *g_ux,
                                 const double *g_uy, double *g_v);
/* out [n] = MacCormack(field [n]) with node velocities ux, uy [n]; semi [n] is
 * work; branches [n] (may be NULL) records the limiter's choices. */
void fluid_maccormack(CPhysFluid f, const double *field, const double *ux, const double *uy,
                      double *semi, double *out, unsigned char *branches);
/* Adds the adjoint of fluid_maccormack for the recorded branches:
 * g_field [n] += (d out / d field)^T g_out, g_ux, g_uy [n] += (d out / d u)^T g_out.
 * Uses slots SEMI and GSEMI. */
void fluid_maccormack_adjoint(CPhysFluid f, const double *field, const double *ux, const double *uy,
                              const unsigned char *branches, const double *g_out, double *g_field,
                              double *g_ux, double *g_uy);
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
 * the PETSc part runs in one critical section (PETSc is not thread-safe). */
int fluid_project_locked(CPhysFluid f, double *v, double *p, CPhysSolveInfo *info,
                         const char *what, ptrdiff_t sample, int solve);

/* Every public entry point that solves brackets its work (under the library
 * lock) with these: begin forgets earlier failures; end returns `ierr` when it
 * is an error, else CPHYS_ERROR_NOT_CONVERGED with the first deferred failure's
 * message, else 0.  So a batch runs to the end even when a solve fails
 * (docs/decisions.md), and the outputs hold what the last iterates gave. */
void fluid_failures_begin(CPhysFluid f);
int fluid_failures_end(CPhysFluid f, int ierr);

/* ---- fluid.c ---- */
/* Energy groups of the rescale: count and [begin, end) of group g in a [2 n] field. */
int fluid_energy_groups(CPhysFluid f, ptrdiff_t begin[2], ptrdiff_t end[2]);
/* One step for one sample.  v_in [2n], m_in [n]; w_out [2n] the projected,
 * unscaled velocity (may alias v_out); v_out [2n], m_out [n]; p [n] warm start;
 * branches [3n] or NULL. */
int fluid_step_sample_locked(CPhysFluid f, const double *v_in, const double *m_in, double *w_out,
                             double *v_out, double *m_out, double *p, unsigned char *branches,
                             CPhysSolveInfo *info, ptrdiff_t sample, int step);
/* Sizes the statistics of `pass` for batch x solves (zeroed). */
int fluid_stats_reset(CPhysFluid f, CPhysFluidPass pass, ptrdiff_t batch, int solves);
static inline CPhysSolveInfo *fluid_stats_at(CPhysFluid f, CPhysFluidPass pass, ptrdiff_t sample,
                                             int solve) {
  return f->stats[pass].info + sample * f->stats[pass].solves + solve;
}
/* The forward run CPHYS_FLUID_RECORD_INVERSE kept for sample s if it was made
 * from (v0, m0) of that sample ([2n], [n]): 1 and the final velocity [2n], the
 * centres [steps + 1][2] and flags [steps + 1], with the forward statistics
 * copied into stats[FORWARD] row s; else 0. */
int fluid_inverse_record_lookup(CPhysFluid f, ptrdiff_t s, const double *v0, const double *m0, double *velocity,
                                double *centres, int *defined);
/* Records the tape for (v0, m0) unless the current one was made from them. */
int fluid_ensure_tape_locked(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0);
/* Tape accessors: V_k (k = 0..steps) [2n], W_k (k < steps) [2n], M_k [n], branches of step k [3n]. */
double *fluid_tape_velocity(CPhysFluid f, ptrdiff_t sample, int k);
double *fluid_tape_projected(CPhysFluid f, ptrdiff_t sample, int k);
double *fluid_tape_marker(CPhysFluid f, ptrdiff_t sample, int k);
unsigned char *fluid_tape_branches(CPhysFluid f, ptrdiff_t sample, int k);
/* Argument checks shared by the entry points. */
int fluid_check_array(const double *a, ptrdiff_t count, const char *name, int need_finite);
int fluid_check_batch(CPhysFluid f, ptrdiff_t batch, int components);

/* ---- fluid_adjoint.c ---- */
int fluid_adjoint_locked(CPhysFluid f, ptrdiff_t batch, const double *g_mt, double *g_v0,
                         double *g_m0);

/* ---- fluid_inverse.c ---- */
int fluid_unit_vortex_create(CPhysFluid f);
int fluid_inverse_locked(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0,
                         const double *target, double *v0_new, double *dv0);
void fluid_centre_of_mass(CPhysFluid f, const double *marker, double centre[2], int *defined);
