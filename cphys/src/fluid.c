/* The fluid's public entry points: each checks its arguments, takes the library
 * lock where PETSc may run, brackets the deferred pressure failures and hands
 * the work to the numerics below (fluid_internal.h lists the sources).  Not
 * here: CPhysFluidDefaultConfig (fluid_object.c, beside the configuration's
 * checks) and CPhysFluidLbfgsPhysicalGradient (fluid_modes.c). */
#include <string.h>

#include "fluid_internal.h"

/* ---- the object ---- */

static int create_locked(CPhysFluid f) {
  CPhysCall(CPhysPetscEnsureInitializedLocked());
  CPhysCall(fluid_pressure_create_locked(f));
  CPhysCall(fluid_diffusion_create_locked(f));
  return 0;
}

int CPhysFluidCreate(const CPhysFluidConfig *config, CPhysFluid *fluid) {
  CPhysCheck(fluid != NULL, CPHYS_ERROR_ARGUMENT, "fluid (output handle) must not be NULL");
  *fluid = NULL;
  CPhysFluid f;
  CPhysCall(fluid_object_create(config, &f));
  int ierr = fluid_unit_vortex_create(f);
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
  CPhysLibraryLock();
  fluid_pressure_destroy_locked(*fluid);
  fluid_diffusion_destroy_locked(*fluid);
  CPhysLibraryUnlock();
  fluid_object_free(*fluid);
  *fluid = NULL;
  return 0;
}

/* ---- the forward map, its adjoint and its physical inverse ---- */

static int check_forward_args(CPhysFluid f, ptrdiff_t batch, const double *v0, const double *m0,
                              const char *caller) {
  CPhysCall(fluid_check_batch(f, batch, 2, caller));
  CPhysCall(fluid_check_array(v0, batch * 2 * f->n, "v0", 1, caller));
  CPhysCall(fluid_check_array(m0, batch * f->n, "m0", 1, caller));
  return 0;
}

int CPhysFluidForward(CPhysFluid fluid, ptrdiff_t batch, const double *v0, const double *m0, double *m_t,
                      int record) {
  CPhysCall(check_forward_args(fluid, batch, v0, m0, __func__));
  CPhysCheck(batch == 0 || m_t != NULL, CPHYS_ERROR_ARGUMENT, "m_t must not be NULL");
  CPhysLibraryLock();
  fluid_failures_begin(fluid);
  int ierr = fluid_failures_end(fluid, fluid_forward_locked(fluid, batch, v0, m0, m_t, record));
  CPhysLibraryUnlock();
  return ierr;
}

int CPhysFluidAdjoint(CPhysFluid fluid, ptrdiff_t batch, const double *v0, const double *m0,
                      const double *g_mt, double *g_v0, double *g_m0) {
  CPhysCall(check_forward_args(fluid, batch, v0, m0, __func__));
  CPhysCall(fluid_check_array(g_mt, batch * fluid->n, "g_mt", 1, __func__));
  CPhysCheck(batch == 0 || g_v0 != NULL, CPHYS_ERROR_ARGUMENT, "g_v0 must not be NULL");
  CPhysLibraryLock();
  fluid_failures_begin(fluid);
  int ierr = fluid_ensure_tape_locked(fluid, batch, v0, m0);
  if (!ierr) ierr = fluid_adjoint_locked(fluid, batch, g_mt, g_v0, g_m0);
  ierr = fluid_failures_end(fluid, ierr);
  CPhysLibraryUnlock();
  return ierr;
}

int CPhysFluidPhysicalInverse(CPhysFluid fluid, ptrdiff_t batch, const double *v0, const double *m0,
                              const double *target, double *v0_new, double *dv0) {
  CPhysCall(check_forward_args(fluid, batch, v0, m0, __func__));
  CPhysCall(fluid_check_array(target, batch * fluid->n, "target", 1, __func__));
  CPhysCheck(batch == 0 || v0_new != NULL || dv0 != NULL, CPHYS_ERROR_ARGUMENT,
             "at least one of v0_new and dv0 must be given");
  CPhysLibraryLock();
  fluid_failures_begin(fluid);
  int ierr = fluid_failures_end(fluid, fluid_inverse_locked(fluid, batch, v0, m0, target, v0_new, dv0));
  CPhysLibraryUnlock();
  return ierr;
}

/* ---- readers of the statistics and of the tape ---- */

int CPhysFluidGetSolveInfo(CPhysFluid fluid, CPhysFluidPass pass, ptrdiff_t sample, int solve,
                           CPhysSolveInfo *info) {
  CPhysCheck(fluid != NULL && info != NULL, CPHYS_ERROR_ARGUMENT, "fluid and info must not be NULL");
  CPhysCheck(pass >= CPHYS_FLUID_PASS_FORWARD && pass <= CPHYS_FLUID_PASS_REVERSE, CPHYS_ERROR_ARGUMENT,
             "unknown pass %d", (int)pass);
  const FluidStats *st = &fluid->stats[pass];
  CPhysCheck(sample >= 0 && sample < st->batch, CPHYS_ERROR_ARGUMENT,
             "sample %td out of range: the last pass %d had batch %td", sample, (int)pass, st->batch);
  CPhysCheck(solve >= 0 && solve < st->solves, CPHYS_ERROR_ARGUMENT,
             "solve %d out of range: the last pass %d had %d solves per sample", solve, (int)pass,
             st->solves);
  *info = *fluid_stats_at(fluid, pass, sample, solve);
  return 0;
}

int CPhysFluidGetSolveCount(CPhysFluid fluid, CPhysFluidPass pass, ptrdiff_t *batch, int *solves) {
  CPhysCheck(fluid != NULL && batch != NULL && solves != NULL, CPHYS_ERROR_ARGUMENT,
             "fluid, batch and solves must not be NULL");
  CPhysCheck(pass >= CPHYS_FLUID_PASS_FORWARD && pass <= CPHYS_FLUID_PASS_REVERSE, CPHYS_ERROR_ARGUMENT,
             "unknown pass %d", (int)pass);
  *batch = fluid->stats[pass].batch;
  *solves = fluid->stats[pass].solves;
  return 0;
}

int CPhysFluidGetState(CPhysFluid fluid, ptrdiff_t sample, int k, double *velocity, double *marker) {
  CPhysCheck(fluid != NULL, CPHYS_ERROR_ARGUMENT, "the fluid object is NULL");
  CPhysCheck(fluid->tape_valid, CPHYS_ERROR_ARGUMENT,
             "no recorded forward pass: call CPhysFluidForward with record = CPHYS_FLUID_RECORD_TAPE first");
  CPhysCheck(sample >= 0 && sample < fluid->tape_batch, CPHYS_ERROR_ARGUMENT,
             "sample %td out of range [0, %td)", sample, fluid->tape_batch);
  CPhysCheck(k >= 0 && k <= fluid->config.steps, CPHYS_ERROR_ARGUMENT, "state %d out of range [0, %d]", k,
             fluid->config.steps);
  if (velocity)
    memcpy(velocity, fluid_tape_velocity(fluid, sample, k), (size_t)(2 * fluid->n) * sizeof *velocity);
  if (marker) memcpy(marker, fluid_tape_marker(fluid, sample, k), (size_t)fluid->n * sizeof *marker);
  return 0;
}

/* ---- building blocks ---- */

int CPhysFluidCentredToStaggered(CPhysFluid fluid, ptrdiff_t batch, const double *centred,
                                 double *staggered) {
  CPhysCall(fluid_check_batch(fluid, batch, 2, __func__));
  CPhysCall(fluid_check_array(centred, batch * 2 * fluid->n, "centred", 0, __func__));
  CPhysCheck(batch == 0 || staggered != NULL, CPHYS_ERROR_ARGUMENT, "staggered must not be NULL");
  for (ptrdiff_t s = 0; s < batch; s++)
    fluid_centred_to_staggered(fluid, centred + s * 2 * fluid->n, staggered + s * 2 * fluid->n);
  return 0;
}

int CPhysFluidCentredToStaggeredAdjoint(CPhysFluid fluid, ptrdiff_t batch, const double *g_staggered,
                                        double *g_centred) {
  CPhysCall(fluid_check_batch(fluid, batch, 2, __func__));
  CPhysCall(fluid_check_array(g_staggered, batch * 2 * fluid->n, "g_staggered", 0, __func__));
  CPhysCheck(batch == 0 || g_centred != NULL, CPHYS_ERROR_ARGUMENT, "g_centred must not be NULL");
  for (ptrdiff_t s = 0; s < batch; s++)
    fluid_centred_to_staggered_adjoint(fluid, g_staggered + s * 2 * fluid->n, g_centred + s * 2 * fluid->n);
  return 0;
}

int CPhysFluidStaggeredToCentred(CPhysFluid fluid, ptrdiff_t batch, const double *staggered,
                                 double *centred) {
  CPhysCall(fluid_check_batch(fluid, batch, 2, __func__));
  CPhysCall(fluid_check_array(staggered, batch * 2 * fluid->n, "staggered", 0, __func__));
  CPhysCheck(batch == 0 || centred != NULL, CPHYS_ERROR_ARGUMENT, "centred must not be NULL");
  for (ptrdiff_t s = 0; s < batch; s++) {
    double *out = centred + s * 2 * fluid->n;
    fluid_node_velocity(fluid, FLUID_CENTRED, staggered + s * 2 * fluid->n, out, out + fluid->n);
  }
  return 0;
}

int CPhysFluidDivergence(CPhysFluid fluid, ptrdiff_t batch, const double *staggered, double *divergence) {
  CPhysCall(fluid_check_batch(fluid, batch, 2, __func__));
  CPhysCall(fluid_check_array(staggered, batch * 2 * fluid->n, "staggered", 0, __func__));
  CPhysCheck(batch == 0 || divergence != NULL, CPHYS_ERROR_ARGUMENT, "divergence must not be NULL");
  for (ptrdiff_t s = 0; s < batch; s++)
    fluid_divergence(fluid, staggered + s * 2 * fluid->n, divergence + s * fluid->n);
  return 0;
}

int CPhysFluidProject(CPhysFluid fluid, ptrdiff_t batch, double *staggered) {
  CPhysCall(fluid_check_batch(fluid, batch, 2, __func__));
  CPhysCall(fluid_check_array(staggered, batch * 2 * fluid->n, "staggered", 1, __func__));
  CPhysLibraryLock();
  fluid_failures_begin(fluid);
  int ierr = fluid_failures_end(fluid, fluid_project_batch_locked(fluid, batch, staggered));
  CPhysLibraryUnlock();
  return ierr;
}

int CPhysFluidStep(CPhysFluid fluid, ptrdiff_t batch, double *velocity, double *marker, double *pressure) {
  CPhysCall(fluid_check_batch(fluid, batch, 2, __func__));
  CPhysCall(fluid_check_array(velocity, batch * 2 * fluid->n, "velocity", 1, __func__));
  CPhysCall(fluid_check_array(marker, batch * fluid->n, "marker", 1, __func__));
  if (pressure) CPhysCall(fluid_check_array(pressure, batch * fluid->n, "pressure", 1, __func__));
  CPhysLibraryLock();
  fluid_failures_begin(fluid);
  int ierr = fluid_failures_end(fluid, fluid_step_batch_locked(fluid, batch, velocity, marker, pressure));
  CPhysLibraryUnlock();
  return ierr;
}

int CPhysFluidCentreOfMass(CPhysFluid fluid, ptrdiff_t batch, const double *marker, double *centre,
                           int *defined) {
  CPhysCall(fluid_check_batch(fluid, batch, 1, __func__));
  CPhysCall(fluid_check_array(marker, batch * fluid->n, "marker", 1, __func__));
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
