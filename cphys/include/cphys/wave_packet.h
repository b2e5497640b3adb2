/* The wave-packet curve fit of the paper (figure 1, appendix B.1).
 *
 * Two parameters per example, p = (xi0, A), give a time series of
 * n_samples values at the sample positions xi_j = j, j = 0 .. n_samples - 1:
 *
 *   y_j = P(p)_j = A sin(f xi_j) exp(-(xi_j - xi0)^2 / (2 sigma^2)).
 *
 * Units: xi, xi0 and sigma in samples, f in radians per sample, A and y in the
 * units of the recorded signal.  The paper uses 256 samples, f = 4, sigma = 20,
 * xi0 in [25.6, 230.4) and A in [1, 4).  The envelope is the paper's
 * (appendix B.1): a Gaussian of standard deviation sigma, exp(-d^2 / (2 sigma^2)).
 *
 * Parameter arrays are C order [batch, 2] with (xi0, A) per row; series are
 * [batch, n_samples].  Every parameter and target value must be finite, else
 * CPHYS_ERROR_NONFINITE naming the first offending entry (checked before any
 * output is written).  batch >= 0; arrays may be NULL when batch == 0.
 *
 * Thread safety: a handle is read-only after Create, so any function may be
 * called on it from several threads at once; the fitter's TAO solves are
 * serialized by the library lock inside CPhysLeastSquaresMinimize. */
#pragma once
#include <stddef.h>

#include "cphys/error.h"
#include "cphys/minimize.h"
#include "cphys/physical_gradient.h"

typedef struct CPhysWavePacket_private *CPhysWavePacket;

#define CPHYS_WAVE_PACKET_DEFAULT_SAMPLES 256   /* n_samples of the paper */
#define CPHYS_WAVE_PACKET_DEFAULT_FREQUENCY 4.0 /* f, radians per sample */
#define CPHYS_WAVE_PACKET_DEFAULT_SIGMA 20.0    /* envelope width, samples */

typedef struct {
  ptrdiff_t n_samples; /* series length; >= 1 */
  double frequency;    /* f, radians per sample; finite */
  double sigma;        /* envelope width, samples; finite, > 0 */
} CPhysWavePacketConfig;

/* The paper's configuration: 256 samples, f = 4, sigma = 20. */
CPHYS_EXTERN CPhysWavePacketConfig CPhysWavePacketDefaultConfig(void);

/* Validates the configuration and tabulates the carrier sin(f xi_j). */
CPHYS_EXTERN int CPhysWavePacketCreate(const CPhysWavePacketConfig *config, CPhysWavePacket *packet);
/* NULL-safe; sets *packet = NULL. */
CPHYS_EXTERN int CPhysWavePacketDestroy(CPhysWavePacket *packet);
CPHYS_EXTERN int CPhysWavePacketGetConfig(CPhysWavePacket packet, CPhysWavePacketConfig *config);

/* y = P(params).
 *   params: [batch, 2] (xi0, A), y: [batch, n_samples]. */
CPHYS_EXTERN int CPhysWavePacketForward(CPhysWavePacket packet, ptrdiff_t batch, const double *params,
                                        double *y);

/* The vector-Jacobian product dparams = J(params)^T dy, per example:
 *   d xi0 = sum_j dy_j A sin(f xi_j) e_j (xi_j - xi0) / sigma^2,
 *   d A   = sum_j dy_j sin(f xi_j) e_j,        e_j = exp(-(xi_j - xi0)^2 / (2 sigma^2)).
 *   params: [batch, 2], dy: [batch, n_samples], dparams: [batch, 2]. */
CPHYS_EXTERN int CPhysWavePacketAdjoint(CPhysWavePacket packet, ptrdiff_t batch, const double *params,
                                        const double *dy, double *dparams);

/* Options of the Gauss-Newton step. */
typedef struct {
  double damping;          /* first Levenberg-Marquardt damping lambda; >= 0 (0: plain Gauss-Newton first) */
  double damping_increase; /* lambda *= this after a rejected try (lambda = this * 1e-12 if it was 0); > 1 */
  int max_tries;           /* tries before giving up with dparams = 0; >= 1 */
} CPhysWavePacketGaussNewtonConfig;

/* damping 1e-4, damping_increase 10, max_tries 12. */
CPHYS_EXTERN CPhysWavePacketGaussNewtonConfig CPhysWavePacketGaussNewtonDefaultConfig(void);

/* One damped, safeguarded Gauss-Newton step on f(p') = 1/2 ||P(p') - target||^2
 * from p' = p, per example.  With r = P(p) - target and J = dP/dp [n_samples, 2],
 * a try solves the 2 x 2 system
 *   (J^T J + lambda D) delta = -J^T r,   D = diag(J^T J) (floored at 1e-12 of its max),
 * so lambda is dimensionless and the step is invariant to rescaling xi0 or A.
 * A try is accepted only when f(p + delta) < f(p); otherwise lambda grows and
 * the step is retried, up to max_tries.  Returns, like every physgrad inverse
 * mode, the difference  dparams = p - p_new  (0 when no try decreased f, or
 * when p is already stationary: J^T r = 0).
 *   params: [batch, 2], target: [batch, n_samples], dparams: [batch, 2] (may
 *   alias params), info: [batch] or NULL: iterations = tries made, residual_norm
 *   = ||P(p_new) - target||, converged = 1 when a step was accepted or p is
 *   stationary, reason 1 ACCEPTED / 2 STATIONARY / -1 NO_DECREASE.
 * config: NULL for the defaults. */
CPHYS_EXTERN int CPhysWavePacketGaussNewton(CPhysWavePacket packet,
                                            const CPhysWavePacketGaussNewtonConfig *config, ptrdiff_t batch,
                                            const double *params, const double *target, double *dparams,
                                            CPhysSolveInfo *info);

/* Options of the Gauss-Newton solve (the op's `physical` mode). */
typedef struct {
  CPhysWavePacketGaussNewtonConfig step; /* the damping of every step */
  int max_steps;                         /* accepted steps at most; >= 1 */
  double output_rtol;                    /* converged when a step changes the series by
                                            ||J delta|| <= output_rtol * ||target||; >= 0 */
} CPhysWavePacketGaussNewtonSolveConfig;

/* The step defaults above, 20 steps, output_rtol 1e-10. */
CPHYS_EXTERN CPhysWavePacketGaussNewtonSolveConfig CPhysWavePacketGaussNewtonSolveDefaultConfig(void);

/* The op's inverse solver: CPhysWavePacketGaussNewton repeated from each new
 * point until it converges, per example.  An example converges when a step's
 * linearized change of the series ||J delta|| falls to output_rtol * ||target||
 * (dimensionless, so invariant to rescaling xi0 or A), when p is stationary
 * (J^T r = 0), or when no damped step lowers f any more (a minimum to working
 * precision).  Returns  dparams = p - p_final.
 *   params: [batch, 2], target: [batch, n_samples], dparams: [batch, 2] (may
 *   alias params), info: [batch] or NULL: iterations = accepted steps,
 *   residual_norm = ||P(p_final) - target||, reason 1 CONVERGED_OUTPUT_CHANGE /
 *   2 CONVERGED_STATIONARY / 3 CONVERGED_NO_DECREASE / -1 DIVERGED_MAX_STEPS.
 * Reaching max_steps is not an error (info[b].converged says; dparams holds
 * the last iterate): with noisy targets Gauss-Newton converges only linearly,
 * and from far away it may wander, so a fixed budget is the op's contract, as
 * max_iterations is for the `lbfgs` mode.  config: NULL for the defaults. */
CPHYS_EXTERN int CPhysWavePacketGaussNewtonSolve(CPhysWavePacket packet,
                                                 const CPhysWavePacketGaussNewtonSolveConfig *config,
                                                 ptrdiff_t batch, const double *params, const double *target,
                                                 double *dparams, CPhysSolveInfo *info);

/* The `physical` mode in the contract of cphys/physical_gradient.h:
 * CPhysWavePacketGaussNewtonSolve (default settings) towards y - y_step g;
 * x = (xi0, A), y the [n_samples] series. */
CPHYS_EXTERN int CPhysWavePacketGetInverseProblem(CPhysWavePacket packet, CPhysInverseProblem *problem);

/* Options of the per-example L-BFGS-B fitter (the paper's baseline). */
typedef struct {
  double initial[2];          /* start (xi0, A) of every example when use_initial != 0 */
  int use_initial;            /* 1: start from `initial`; 0: start from the params passed in */
  int bounded;                /* 1: enforce lower/upper (TAO BLMVM); 0: unbounded (TAO LMVM) */
  double lower[2];            /* lower bounds of (xi0, A) */
  double upper[2];            /* upper bounds of (xi0, A); > lower */
  int max_iterations;         /* TAO iterations per example; >= 1 */
  double gradient_atol;       /* stop when ||grad f|| < gradient_atol; >= 0 */
  double gradient_rtol;       /* stop when ||grad f|| / f < gradient_rtol; >= 0 */
  const char *options_prefix; /* PETSc options prefix, or NULL */
} CPhysWavePacketFitConfig;

/* The paper's fit: start (128, 2), bounds xi0 in [25.6, 230.4], A in [1, 4],
 * 1000 iterations, gradient_atol 1e-8, gradient_rtol 0, "physgrad_wave_packet_fit_". */
CPHYS_EXTERN CPhysWavePacketFitConfig CPhysWavePacketFitDefaultConfig(void);

/* Minimizes 1/2 ||P(p) - target||^2 for each example with
 * CPhysLeastSquaresMinimize (L-BFGS-B when bounded).
 *   target: [batch, n_samples],
 *   params: [batch, 2]: in: the starts (read only when use_initial == 0),
 *           out: the fitted parameters (within the bounds when bounded),
 *   info:   [batch] or NULL: the solver statistics of each example.
 * Reaching max_iterations is not an error (info[b].converged says).  A failing
 * example stops the fit with the minimizer's code and the example's index;
 * params of later examples are then unspecified.  config: NULL for the defaults. */
CPHYS_EXTERN int CPhysWavePacketFit(CPhysWavePacket packet, const CPhysWavePacketFitConfig *config,
                                    ptrdiff_t batch, const double *target, double *params,
                                    CPhysSolveInfo *info);

/* One example as a least-squares problem (n = 2, m = n_samples; forward and
 * adjoint above with batch 1), for CPhysLeastSquaresMinimize and
 * CPhysQuasiNewtonPhysicalGradient (the op's `lbfgs` mode).  The problem
 * borrows the handle: valid until CPhysWavePacketDestroy. */
CPHYS_EXTERN int CPhysWavePacketGetLeastSquaresProblem(CPhysWavePacket packet,
                                                       CPhysLeastSquaresProblem *problem);
