/* Incompressible 2-D fluid with a passive marker (paper section 3.4, appendix B.5).
 *
 * Grid.  A MAC (staggered) grid of [ny, nx] cells of size [dy, dx], periodic
 * (the default) or closed by walls along either axis (see Walls below),
 * (length units; the paper: 64 x 64 cells of size 2 over a 128 x 128 box).
 * Cell (j, i) has its centre at ((i + 1/2) dx, (j + 1/2) dy).  Marker and
 * pressure live at cell centres.  The staggered velocity is stored as
 * [2, ny, nx]: channel 0 holds vx on the x-faces (i dx, (j + 1/2) dy),
 * channel 1 holds vy on the y-faces ((i + 1/2) dx, j dy).
 *
 * Walls (CPhysFluidConfig.boundary, per axis [y, x]: CPHYS_FLUID_PERIODIC,
 * CPHYS_FLUID_FREE_SLIP, CPHYS_FLUID_NO_SLIP).  A closed axis has walls on the
 * outer cell faces at 0 and L.  The faces on them (vx at i = 0 for walls in x,
 * vy at j = 0 for walls in y) hold the normal velocity, 0 always (not degrees
 * of freedom: whatever an input stores there is ignored and outputs hold 0).
 * Beyond a wall every field continues by a ghost rule, used by the
 * interpolation, the stencils and the viscosity: the normal velocity is 0 on
 * the wall; the tangential velocity's ghost half a cell beyond it is its
 * mirror (free-slip: zero normal derivative) or minus its mirror (no-slip: 0
 * on the wall); the marker's ghost is its mirror (no flux: it cannot leave).
 * Advection clamps a departure point beyond a wall onto the wall (no
 * derivative along that axis there).  The projection is Neumann at walls
 * (dp/dn = 0: no neighbour across them), so the normal velocity stays 0 and
 * the null space is still the constants.  Viscosity uses per axis the DFT
 * (periodic), DST-I (normal component, between walls), DCT-II (free-slip) or
 * DST-II (no-slip tangential component): exact, implicit, symmetric.  The
 * adjoint follows every step.  The physical inverse: see its notes below.
 * Periodic on both axes is bitwise the code before walls existed
 * (tests/c/test_fluid_walls.c).
 *
 * Conventions.  Extents of arrays follow C order, [y, x] (shape, spacing).
 * Physical vectors follow (x, y): velocity channel 0 is the x-component, in
 * cell-centred [2, ny, nx] fields as well as staggered ones; centres of mass
 * and the vortex centre are (x, y).  Every array is contiguous double,
 * borrowed for the duration of one call and never freed by cphys.
 *
 * One step (dt, time units), exactly in this order (SIP's physics_step):
 *   1. E0 = energy of the velocity;
 *   2. MacCormack self-advection of the staggered velocity (each component at
 *      its own faces, the velocity sampled there bilinearly);
 *   3. viscosity (skipped entirely when nu = `viscosity` is 0, the paper's
 *      inviscid case): one implicit (backward Euler) diffusion step
 *      v = (I - nu dt L)^-1 v of each face component, L the 5-point Laplacian
 *      (the Navier-Stokes term nu laplace(v); each component's faces form a
 *      periodic grid, so the solve is exact by FFT: mode k is multiplied by
 *      1 / (1 + nu dt k_h^2), k_h^2 = sum over the axes of (2/h sin(pi m/n))^2;
 *      between walls the sine and cosine transforms of Walls above);
 *   4. pressure projection: PETSc CG on the 5-point Poisson equation (Neumann at walls)
 *      (constant null space attached, warm-started from the previous step's
 *      pressure, absolute tolerance `atol` on the residual ||div v||_2);
 *   5. rescale to the energy E0 (see CPhysFluidEnergy; a zero velocity is left
 *      unchanged);
 *   6. MacCormack advection of the marker with the new velocity.
 * The forward map m_t = P(v0; m0): the cell-centred v0 is resampled to the
 * faces (average of the two neighbouring centres), projected once (zero
 * initial pressure, no rescale), then `steps` steps run (the first step's
 * pressure guess is zero again, as in SIP).
 *
 * MacCormack (Selle et al. 2008), per node p of the advected grid with the
 * velocity u(p):  semi = f(p - u dt),  back = semi(p + u dt),
 * corrected = semi + (f(p) - back) / 2, all by bilinear interpolation
 * (periodic, or with the walls' ghost rules); the limiter (CPhysFluidLimiter) bounds `corrected` by the
 * four values of f around p - u dt.
 *
 * Failures.  A pressure solve that does not converge does not stop a call: its
 * last iterate is applied and the call runs to the end of the batch, then
 * returns CPHYS_ERROR_NOT_CONVERGED with the first failure (pass, solve,
 * sample, PETSc's reason) in the message; the outputs hold what the last
 * iterates gave and the statistics say which solves failed (so a caller may
 * warn instead of raising, docs/decisions.md).  Any other error returns at once.
 *
 * Threading: one call at a time per object (it owns work arrays and the tape);
 * different objects may be used from different threads, but every call that
 * solves holds the library lock (recursive, shared with all PETSc users in
 * cphys) for its whole duration.  Inside a call the samples of the batch
 * (Forward, Adjoint, PhysicalInverse) run on up to CPhysSetThreads OpenMP
 * threads, each with its own work arrays; their pressure solves take turns in
 * one critical section.  Results, statistics and errors (the lowest failing
 * sample's) do not depend on the thread count. */
#pragma once
#include <stddef.h>

#include "cphys/error.h"
#include "cphys/minimize.h"
#include "cphys/physical_gradient.h"

typedef struct CPhysFluid_private *CPhysFluid;

/* What MacCormack does when the corrected value leaves [min, max] of the four
 * grid values around the departure point p - u dt. */
typedef enum {
  /* Clip to the nearer bound (PhiFlow's advect.mac_cormack, used by the paper). */
  CPHYS_FLUID_LIMITER_CLAMP = 0,
  /* Fall back to the semi-Lagrangian value (Selle et al.'s alternative). */
  CPHYS_FLUID_LIMITER_REVERT = 1,
  /* No limiter: plain MacCormack (not unconditionally stable; for tests). */
  CPHYS_FLUID_LIMITER_NONE = 2
} CPhysFluidLimiter;

/* How step 5 restores the energy E = sum of squared face velocities. */
typedef enum {
  /* One factor sqrt(E0 / E) for the whole field (the paper's text). */
  CPHYS_FLUID_ENERGY_TOTAL = 0,
  /* One factor per component (what SIP's code does: PhiFlow's field.mean keeps
   * the vector channel, so vx and vy are rescaled separately). */
  CPHYS_FLUID_ENERGY_PER_COMPONENT = 1,
  /* No rescale. */
  CPHYS_FLUID_ENERGY_NONE = 2
} CPhysFluidEnergy;

/* What bounds the box along one axis (CPhysFluidConfig.boundary). */
typedef enum {
  /* The two ends are the same place (the paper's box). */
  CPHYS_FLUID_PERIODIC = 0,
  /* Closed walls at both ends: no flow through them, the tangential velocity slides along them
   * (its ghost value mirrors: zero normal derivative). */
  CPHYS_FLUID_FREE_SLIP = 1,
  /* Closed walls at both ends: no flow through them, the tangential velocity is zero on them
   * (its ghost value is the negative mirror). */
  CPHYS_FLUID_NO_SLIP = 2
} CPhysFluidBoundary;

/* Which pressure solves CPhysFluidGetSolveInfo reports. */
typedef enum {
  CPHYS_FLUID_PASS_FORWARD = 0, /* steps + 1 solves: index 0 the initial projection, k the step k */
  CPHYS_FLUID_PASS_ADJOINT = 1, /* steps + 1 solves, same indexing as the forward pass */
  CPHYS_FLUID_PASS_REVERSE = 2  /* steps solves of the inverse's reverse run: index k-1 the step k */
} CPhysFluidPass;

typedef struct {
  ptrdiff_t shape[2];         /* cells [ny, nx]; each >= 3 so that the periodic stencils (5-point
                                 Laplacian, the 2 x 2 interpolation and clamp neighbourhoods) do
                                 not alias a cell with itself */
  double spacing[2];          /* cell size [dy, dx], length units, > 0, with 1/h^2 a finite, nonzero
                                 (normal) double and 2 (1/dy^2 + 1/dx^2) finite */
  double dt;                  /* time step, time units, > 0 */
  int steps;                  /* number of steps, >= 1 (paper: 8 of 0.25, t = 2) */
  double atol;                /* CG absolute tolerance on ||div v||_2, 1 / time units (paper: 1e-4) */
  double rtol;                /* CG relative tolerance, in [0, 1) (paper: 0) */
  int max_iterations;         /* CG iteration limit; beyond it: CPHYS_ERROR_NOT_CONVERGED */
  const char *options_prefix; /* PETSc options prefix; NULL: "physgrad_fluid_" */
  CPhysFluidLimiter limiter;
  CPhysFluidEnergy energy;
  double viscosity; /* kinematic viscosity nu, length^2 / time, >= 0 and finite (default 0: inviscid,
                       bitwise the results without the term; step 3).  Implicit: stable for any nu
                       and dt.  nu > 0 needs energy = CPHYS_FLUID_ENERGY_NONE: the rescale would
                       restore the energy the viscosity removes.  The physical inverse's reverse run
                       is inviscid (reverse diffusion is ill-posed); its forward run is viscous. */
  /* Physical inverse (CPhysFluidPhysicalInverse). */
  double vortex_sigma;          /* Gaussian falloff exp(-r^2 / (2 sigma^2)), length units (SIP: 20) */
  double vortex_center[2];      /* (x, y) of the vortex at t = 0, as fractions of the box (0.5, 0.5);
                                   periodic: any finite value, taken modulo 1;
                                   walled axis: |.| <= 1e6, not wrapped */
  double vortex_gain;           /* strength correction per unit cross product, 1 / (length^2 time)
                                   (SIP: 1e-3) */
  double marker_destination[2]; /* (x, y), fractions of the box (modulo 1), where the uniform flow
                                   carries the marker's centre in time T (the paper's data: the box
                                   centre) */
  int destination_from_target;  /* 1: the destination is the target's centre of mass instead */
  /* The box's sides, per axis [y, x] (see "Walls" above); the default, periodic on both axes,
   * gives bitwise the results of the periodic code. */
  CPhysFluidBoundary boundary[2];
} CPhysFluidConfig;

/* The paper's setup: 64 x 64 cells of size 2, 8 steps of 0.25, atol 1e-4, rtol 0,
 * 1000 CG iterations, clamp limiter, total-energy rescale, vortex sigma 20 at the
 * box centre, gain 1e-3.  The pressure solver is CG preconditioned by a sparse
 * Cholesky factorization (ICC(0) beyond 512 x 512 cells) with a nonzero factor
 * shift, its convergence tested on the unpreconditioned residual, so atol
 * bounds the true ||div v||_2 as in PhiFlow's plain CG (at 64 x 64: one
 * iteration per solve instead of ~33 with ICC(0) and ~90 with plain CG).
 * "-physgrad_fluid_pc_type none" restores plain CG; every KSP/PC option under
 * the prefix overrides these defaults. */
CPHYS_EXTERN CPhysFluidConfig CPhysFluidDefaultConfig(void);

/* Validates `config`, assembles the Poisson matrix and the KSP (PETSc lazily
 * started); options under the prefix are read here. */
CPHYS_EXTERN int CPhysFluidCreate(const CPhysFluidConfig *config, CPhysFluid *fluid);
/* NULL-safe; sets *fluid = NULL. */
CPHYS_EXTERN int CPhysFluidDestroy(CPhysFluid *fluid);

/* What CPhysFluidForward keeps for a later call on the same inputs. */
typedef enum {
  CPHYS_FLUID_RECORD_NONE = 0,
  /* Every intermediate state (the tape, about (5 steps + 6) ny nx doubles per
   * sample) for CPhysFluidAdjoint and CPhysFluidGetState. */
  CPHYS_FLUID_RECORD_TAPE = 1,
  /* What CPhysFluidPhysicalInverse's forward run computes: the marker's centre
   * of mass after every step and the final velocity (with the inputs, about
   * 5 ny nx doubles per sample).  CPhysFluidPhysicalInverse then skips its
   * forward run for every sample whose v0 and m0 are bitwise the recorded ones
   * and whose recorded solves converged, which halves its cost. */
  CPHYS_FLUID_RECORD_INVERSE = 2
} CPhysFluidRecord;

/* Forward map m_t = P(v0; m0).
 *   v0:  [batch, 2, ny, nx] cell-centred initial velocity, channel 0 = vx (length / time)
 *   m0:  [batch, ny, nx] initial marker
 *   m_t: [batch, ny, nx] marker after `steps` steps (output)
 * record: a CPhysFluidRecord (any other nonzero value means the tape).  The
 * tape and the inverse record are independent: each stays until a later
 * call records that kind again.  Inputs must be finite (CPHYS_ERROR_NONFINITE). */
CPHYS_EXTERN int CPhysFluidForward(CPhysFluid fluid, ptrdiff_t batch, const double *v0, const double *m0,
                                   double *m_t, int record);

/* Discrete adjoint of the forward map: g_v0 = (dm_t/dv0)^T g_mt and
 * g_m0 = (dm_t/dm0)^T g_mt.  Uses the tape of the last CPhysFluidForward with
 * record when it was made from the same (bitwise) v0 and m0; records one
 * otherwise.  The limiter's branch choices are those of the recorded forward
 * pass; the projection's adjoint is the projection itself (exact only as far
 * as the CG tolerance is met: use a tight atol where gradients must be exact).
 * Each adjoint solve runs on the adjoint field scaled to the norm of the
 * forward velocity at that step, so atol gives it the forward's relative
 * accuracy whatever the scale of g_mt (the result is linear in g_mt).
 * Statistics: ADJOINT (and FORWARD when a recording was made).
 *   v0: [batch, 2, ny, nx]   m0, g_mt: [batch, ny, nx]
 *   g_v0: [batch, 2, ny, nx] (output)   g_m0: [batch, ny, nx] (output, may be NULL) */
CPHYS_EXTERN int CPhysFluidAdjoint(CPhysFluid fluid, ptrdiff_t batch, const double *v0, const double *m0,
                                   const double *g_mt, double *g_v0, double *g_m0);

/* Physical inverse (paper B.5; SIP's estimate_v0 with its constants, made
 * grid-independent): an estimate v0_new of the initial velocity whose forward
 * run ends at `target`.  It fits only a uniform flow plus one Gaussian vortex
 * (the prior of the paper's data set); small-scale parts of v0 are dropped.
 *  1. Forward run from (v0, m0), recording the marker centre of mass c_f(t_k),
 *     t_k = k dt, k = 0..steps, T = steps dt (taken from the last
 *     CPhysFluidForward with CPHYS_FLUID_RECORD_INVERSE where it ran on the same
 *     inputs: the result and the statistics are the same).
 *  2. Uniform part u = d(c(m0), D) / T with d the periodic minimal-image
 *     displacement (the plain one between walls; along a walled axis u = 0: a
 *     uniform flow towards walls is no flow of the closed box, so the prior
 *     does not hold there and only the vortex can move the centre): the uniform velocity that carries the
 * marker's centre to its destination D in the simulated time.  D = marker_destination, by default the box
 * centre: the paper's data set moves every marker there (SIP: u = (64 - c(m0)) / T).  With
 * destination_from_target, D = c(target): no knowledge of the data is needed, but the vortex's own
 * displacement of the centre is then mistaken for uniform flow (and the truth is no longer a fixed point).
 * The com mismatch cannot tell translation from rotation; the prior is what lets the vortex estimate below
 * see the rotation.
 *  3. Current vortex strength s = <v0 - mean(v0), W> / <W, W>: the least-squares
 *     fit by the unit vortex W(x) = exp(-|r|^2 / (2 sigma^2)) (-r_y, r_x), r the
 *     minimal-image offset of the cell centre x from the vortex centre c0
 *     (counter-clockwise for s > 0; s is an angular velocity, 1 / time).
 *     (SIP: mean(cross(-v0, x - 64)) / 120.5, the same for a pure vortex.)
 *  4. Reverse run: marker = target, velocity = -(final forward velocity),
 *     `steps` ordinary steps without viscosity (nu = 0: diffusion cannot be run
 *     backwards stably), recording centres c_r(t_k) back to t_0.
 *  5. s_new = s + gain * mean_k cross(d(c_r, c_f), d(c(t_k), c_r))(t_k), with
 *     cross(a, b) = a_x b_y - a_y b_x, over the steps + 1 times (c_r(T) is the
 *     target's centre) where both centres are defined, and the vortex centre
 *     moved with the uniform flow, c(t_k) = c0 + u t_k.  (SIP moves it by u per
 *     step index rather than u t_k; we use the physical time.)
 *  6. v0_new = u + s_new W (W is divergence-free up to its periodic truncation).
 * Constants (config): sigma = 20 length units, c0 = D = the box centre, gain
 * 1e-3 per length^2 per time, as in SIP.
 * Centre of mass: the circular mean per axis, c_x = Lx / (2 pi) arg(sum_cells
 * m exp(2 pi i x / Lx)), in [0, Lx) (see CPhysFluidCentreOfMass); on a periodic
 * domain the plain mean depends on where the box is cut, this does not.
 * Between walls: the plain mean along the walled axis, plain offsets (no
 * minimal image) in W and the cross products, fractions not wrapped.  The
 * reverse run obeys the walls.  Where the prior no longer holds: no uniform
 * flow along walled axes (step 2), and a vortex whose Gaussian reaches the
 * walls is reshaped by the projection (W is not tangential there), which
 * biases the fitted strength; the lbfgs mode does not depend on the prior.
 *   v0: [batch, 2, ny, nx]   m0, target: [batch, ny, nx] (target = y - y_step g)
 *   v0_new: [batch, 2, ny, nx] (output, may be NULL)
 *   dv0:    [batch, 2, ny, nx] (output, may be NULL) = v0 - v0_new, the physical gradient
 * A vortex too narrow for the grid to see (<W, W> = 0) is fitted with s = 0; an
 * estimate or dv0 that overflows is CPHYS_ERROR_NONFINITE (outputs then partly written).
 * Statistics: FORWARD (steps + 1 solves) and REVERSE (steps solves). */
CPHYS_EXTERN int CPhysFluidPhysicalInverse(CPhysFluid fluid, ptrdiff_t batch, const double *v0,
                                           const double *m0, const double *target, double *v0_new,
                                           double *dv0);

/* The fluid's least-squares problem for the shared quasi-Newton code
 * (CPhysQuasiNewtonPhysicalGradient, the op's `lbfgs` mode): x = v0 of one
 * sample ([2, ny, nx]), y = m_t ([ny, nx]), the marker m0 of the sample
 * (m0: [batch, ny, nx], borrowed until the problem's last use) held fixed.
 * The problem's context lives in the object: one problem per object at a time. */
CPHYS_EXTERN int CPhysFluidGetLeastSquaresProblem(CPhysFluid fluid, ptrdiff_t batch, const double *m0,
                                                  CPhysLeastSquaresProblem *problem);

/* The `lbfgs` physical gradient (DESIGN section 1) with m0 fixed, per sample s:
 *   dv0[s] = v0[s] - v_n,  v_n = config->max_iterations TAO L-BFGS iterations on
 *   1/2 ||P(v'; m0[s]) - (y[s] - y_step g[s])||^2 from v' = v0[s],
 * each objective evaluation one forward run (recorded) and one adjoint run of
 * this object (CPhysQuasiNewtonPhysicalGradient with batch 1 per sample).  A
 * sample whose minimization stops on an unconverged pressure solve gets
 * dv0[s] = 0, info[s] says so, and the call goes on with the next sample and
 * returns CPHYS_ERROR_NOT_CONVERGED at the end; other errors return at once.
 * Afterwards the object's statistics and tape are those of the last evaluation.
 *   v0, dv0: [batch, 2, ny, nx]   m0, y, g: [batch, ny, nx] (y = P(v0; m0), g = dL/dy)
 *   info: [batch] TAO statistics (output, may be NULL) */
CPHYS_EXTERN int CPhysFluidLbfgsPhysicalGradient(CPhysFluid fluid, const CPhysLeastSquaresConfig *config,
                                                 ptrdiff_t batch, const double *v0, const double *m0,
                                                 const double *y, const double *g, double y_step, double *dv0,
                                                 CPhysSolveInfo *info);

/* Statistics of the last call's pressure solves of `pass`: `solve` indexes as
 * documented at CPhysFluidPass.  CPHYS_ERROR_ARGUMENT when out of range or when
 * the last call made no such pass. */
CPHYS_EXTERN int CPhysFluidGetSolveInfo(CPhysFluid fluid, CPhysFluidPass pass, ptrdiff_t sample, int solve,
                                        CPhysSolveInfo *info);
/* Batch and solves per sample recorded for `pass` (0, 0 when none). */
CPHYS_EXTERN int CPhysFluidGetSolveCount(CPhysFluid fluid, CPhysFluidPass pass, ptrdiff_t *batch,
                                         int *solves);

/* One CPhysSolveInfo per sample for the last call's solves of the `count`
 * passes: the CG iterations summed, the largest final residual, converged when
 * all converged, and the first failure's reason (else the last solve's).
 * Passes recorded for another batch size are skipped.  info: [batch]. */
CPHYS_EXTERN int CPhysFluidSummarizeSolves(CPhysFluid fluid, const CPhysFluidPass *passes, int count,
                                           ptrdiff_t batch, CPhysSolveInfo *info);

/* The `physical` mode in the contract of cphys/physical_gradient.h: x = v0 of a
 * sample ([2, ny, nx]), y = m_t ([ny, nx]), dx = v0 - CPhysFluidPhysicalInverse's
 * estimate for the target y - y_step g, the markers m0 ([batch, ny, nx],
 * borrowed until the problem's last use) bound; info sums the forward and
 * reverse pressure solves per sample (CPhysFluidSummarizeSolves).  The
 * context lives in the object (shared with CPhysFluidGetLeastSquaresProblem):
 * one problem per object at a time. */
CPHYS_EXTERN int CPhysFluidGetInverseProblem(CPhysFluid fluid, ptrdiff_t batch, const double *m0,
                                             CPhysInverseProblem *problem);

/* State k (0..steps) of the recorded forward pass of `sample`: the staggered
 * velocity at the start of step k + 1 (k = 0: the projected v0; k = steps: the
 * final velocity) and the marker.
 *   velocity: [2, ny, nx] staggered (output, may be NULL)   marker: [ny, nx] (output, may be NULL) */
CPHYS_EXTERN int CPhysFluidGetState(CPhysFluid fluid, ptrdiff_t sample, int k, double *velocity,
                                    double *marker);

/* ---- building blocks (for tests, diagnostics and the glue) ---- */

/* Face values = averages of the two neighbouring cell centres (0 on wall faces), and its adjoint.
 *   centred: [batch, 2, ny, nx]   staggered: [batch, 2, ny, nx] */
CPHYS_EXTERN int CPhysFluidCentredToStaggered(CPhysFluid fluid, ptrdiff_t batch, const double *centred,
                                              double *staggered);
CPHYS_EXTERN int CPhysFluidCentredToStaggeredAdjoint(CPhysFluid fluid, ptrdiff_t batch,
                                                     const double *g_staggered, double *g_centred);
/* Cell-centre values = averages of the two faces around each centre (for
 * plots: the velocity CPhysFluidGetState returns, at the cell centres).
 *   staggered: [batch, 2, ny, nx]   centred: [batch, 2, ny, nx] (output) */
CPHYS_EXTERN int CPhysFluidStaggeredToCentred(CPhysFluid fluid, ptrdiff_t batch, const double *staggered,
                                              double *centred);
/* Cell-centred divergence of a staggered field, 1 / time units.
 *   staggered: [batch, 2, ny, nx]   divergence: [batch, ny, nx] (output) */
CPHYS_EXTERN int CPhysFluidDivergence(CPhysFluid fluid, ptrdiff_t batch, const double *staggered,
                                      double *divergence);
/* Pressure projection in place, from a zero pressure guess (stats: FORWARD, solve 0).
 *   staggered: [batch, 2, ny, nx] (in/out) */
CPHYS_EXTERN int CPhysFluidProject(CPhysFluid fluid, ptrdiff_t batch, double *staggered);
/* One step (the six stages above) in place (stats: FORWARD, solve 1).
 *   velocity: [batch, 2, ny, nx] staggered (in/out)   marker: [batch, ny, nx] (in/out)
 *   pressure: [batch, ny, nx] warm start and result (in/out; NULL: zero guess) */
CPHYS_EXTERN int CPhysFluidStep(CPhysFluid fluid, ptrdiff_t batch, double *velocity, double *marker,
                                double *pressure);
/* Centre of mass (x, y), length units in [0, L): the circular mean along a
 * periodic axis, the plain mean of the cell centres along a walled one.  A
 * marker whose first Fourier coefficient on a periodic axis (its sum on a
 * walled axis) vanishes (|.| <= 1e-12 sum |m|), e.g. a uniform (periodic) or
 * zero one, has no centre: defined[s] = 0 and the centre is the box centre.
 * Exact under periodic translation by whole cells.
 *   marker: [batch, ny, nx]   centre: [batch, 2] (output)   defined: [batch] (output, may be NULL) */
CPHYS_EXTERN int CPhysFluidCentreOfMass(CPhysFluid fluid, ptrdiff_t batch, const double *marker,
                                        double *centre, int *defined);
/* The unit vortex W of the inverse at cell centres: [2, ny, nx] (output). */
CPHYS_EXTERN int CPhysFluidUnitVortex(CPhysFluid fluid, double *vortex);
