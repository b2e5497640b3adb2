/* The single-parameter sine op of the paper (section 3.1, appendix B.2):
 *
 *   y = P(x) = sin(a / x),  elementwise, with a per-element coefficient a.
 *
 * The paper's experiment minimizes y towards y* = -1 for a in [0.1, 10.1).
 * Its minima sit at phases a/x = 3 pi/2 + 2 pi m, i.e. x_m = a / (3 pi/2 + 2 pi m)
 * for integers m; m >= 0 are the minima on the side where x has the sign of a,
 * m <= -1 those on the other side.  The outermost ones (m = 0 and m = -1) are
 * the farthest from 0 on each side: beyond them a/x -> 0 and sin has no more
 * minima, so every x there has its nearest minimum at the outermost one.
 *
 * Domain, floor and non-finite values (the same rule for every function):
 *  - a: finite with |a| >= CPHYS_SINE_MIN_ABS_A, else CPHYS_ERROR_ARGUMENT
 *    (a = 0 makes P constant; a tinier |a| would let dP/dx overflow).
 *  - x: any finite value, negative included.  Every function evaluates P and its
 *    derivatives at the floored point
 *      x_eff = sign(x) * max(|x|, |a| / CPHYS_SINE_MAX_PHASE),  sign(+-0) = +1,
 *    so |a / x_eff| <= CPHYS_SINE_MAX_PHASE and every output is finite (only the
 *    adjoint's product with a huge dy can overflow; see there).  Below
 *    the floor the forward is constant, but the adjoint still reports the
 *    derivative at x_eff rather than 0: the floor lies far inside the region
 *    where sin(a/x) oscillates faster than the input resolution of any network,
 *    and a zero gradient there would freeze a prediction that landed at 0.
 *  - Any NaN or Inf in an input array: CPHYS_ERROR_NONFINITE naming the first
 *    offending element; all inputs are checked before any output is written,
 *    so on that error the outputs are untouched.
 *  - n: >= 0; the arrays may be NULL when n == 0.  Outputs may alias inputs
 *    (every element depends only on the same element of the inputs).
 *
 * Return convention: like every physgrad inverse-solver mode, the update
 * functions return  dx = x - x_new  (x_new is the solver's answer), so that a
 * network trained on dx gets the paper's proxy L2 loss.
 *
 * There is no handle: the op has no setup cost and no state (every constant is
 * compile-time), so plain functions of the arrays are the whole API, and all
 * of them are thread-safe. */
#pragma once
#include <stddef.h>

#include "cphys/error.h"
#include "cphys/physical_gradient.h"

/* The largest |a/x| ever evaluated (see the floor above).  At this phase the
 * rounding of a/x alone is ~1e-8 rad, still far below the spacing of minima. */
#define CPHYS_SINE_MAX_PHASE 1e8
/* The smallest accepted |a|; keeps |dP/dx| <= MAX_PHASE^2 / |a| <= 1e166. */
#define CPHYS_SINE_MIN_ABS_A 1e-150
/* The clip bound the paper uses for its clipped adjoint, Newton and inverse
 * gradient (B.2: "clip ... to [-1, 1]"). */
#define CPHYS_SINE_PAPER_CLIP 1.0

/* y = sin(a / x_eff).
 *   a: [n] coefficients, x: [n] inputs, y: [n] outputs. */
CPHYS_EXTERN int CPhysSineForward(ptrdiff_t n, const double *a, const double *x, double *y);

/* The vector-Jacobian product  dx = D * dy  with the derivative at x_eff
 *   D = dP/dx = -a / x^2 cos(a / x),
 * optionally clipped first:  D = min(max(D, -clip), clip)  when clip > 0 (the
 * paper's stabilized Adam baseline uses clip = CPHYS_SINE_PAPER_CLIP = 1; the
 * authors' code clips dL/dx of an L1 loss, whose dy is 1, which is the same);
 * clip == 0 gives the exact adjoint.  clip < 0 or NaN: CPHYS_ERROR_ARGUMENT.
 * The product D * dy itself can overflow for huge |dy| (|D| is at most
 * MAX_PHASE^2/|a|); that returns CPHYS_ERROR_NONFINITE, with dx partly written.
 *   a: [n], x: [n], dy: [n] (dL/dy), dx: [n] (dL/dx). */
CPHYS_EXTERN int CPhysSineAdjoint(ptrdiff_t n, const double *a, const double *x, const double *dy,
                                  double clip, double *dx);

/* The vector-Jacobian product with respect to the coefficient a,
 *   da = dP/da * dy,   dP/da = cos(a / x) / x,
 * at x_eff as above (never clipped: a is data, and this is for checking and
 * for the rare model that learns a).  Overflow for huge |dy| as in Adjoint.
 *   a: [n], x: [n], dy: [n] (dL/dy), da: [n] (dL/da). */
CPHYS_EXTERN int CPhysSineCoefficientAdjoint(ptrdiff_t n, const double *a, const double *x, const double *dy,
                                             double *da);

/* The physical gradient: dx = x - x_new, with x_new the analytic inverse
 *   x_new = a / phi*,  phi* = argmin_{phi : sin(phi) = t, phi on x_eff's side} |phi - a/x_eff|,
 *   t = min(max(y_target, -1), 1),
 * i.e. the solution nearest to the current point measured in phase a/x, as in
 * the paper's appendix B.2 (minimum index n = round(a / (2 pi x) - 3/4)).
 * Targets at or below -1 therefore land on the nearest minimum, at or above 1
 * on the nearest maximum; a target outside [-1, 1] is unreachable and the
 * nearest extremum is the best output P can give.  The answer always lies on
 * the same side of 0 as x_eff: beyond the outermost solution of a side (the
 * paper's "furthest-out minima", n = 0 and n = -1) the nearest one is that
 * outermost solution, never one across 0.  x = +-infinity (where a/x = 0) is
 * not a solution.  Exact ties go to the solution farther from 0.  (Nearest in
 * x instead would pull predictions near 0, where the solutions crowd together,
 * further in; training through it stalls.)  Accuracy:
 * sin(a/x_new) = t up to the rounding of the phase, ~1e-16 |a/x_new|.
 * The op's backward calls this with y_target = y - y_step * g.
 *   a: [n], x: [n], y_target: [n], dx: [n]. */
CPHYS_EXTERN int CPhysSinePhysicalGradient(ptrdiff_t n, const double *a, const double *x,
                                           const double *y_target, double *dx);

/* The minimum nearest to x0 (the inverse above with target -1), as a position:
 *   x_min = a / (3 pi/2 + 2 pi m)  for the m whose phase is nearest to a / x0_eff.
 * The supervised baseline of the paper uses x0 = 1 for its labels.
 *   a: [n], x0: [n], x_min: [n]. */
CPHYS_EXTERN int CPhysSineNearestMinimum(ptrdiff_t n, const double *a, const double *x0, double *x_min);

/* The paper's Newton update (B.2): a Newton step towards a stationary point of
 * P itself (not of the y-space least squares), whose length
 *   s = | x^2 cos(a/x) / (2 x cos(a/x) - a sin(a/x)) |,   at x = x_eff,
 * is clipped to  min(s, clip),  and whose direction is flipped so that it moves
 * P towards the target: x_new - x = -sign((P(x) - t) * dP/dx) * min(s, clip),
 * t = min(max(y_target, -1), 1).  So dx = sign((P - t) dP/dx) * min(s, clip).
 * For the paper's target t = -1 (P - t >= 0) this always walks downhill, to a
 * minimum, and converges quadratically; for targets inside (-1, 1) it heads
 * for the extremum beyond the target and can overshoot it: use the physical
 * gradient or the inverse gradient there.  dx = 0 when P = t or
 * cos(a/x_eff) = 0 exactly (no direction).  clip must be positive and finite (unclipped, s is infinite
 * where the second derivative vanishes); the paper uses 1.
 *   a: [n], x: [n], y_target: [n], dx: [n]. */
CPHYS_EXTERN int CPhysSineNewton(ptrdiff_t n, const double *a, const double *x, const double *y_target,
                                 double clip, double *dx);

/* The paper's inverse gradient (B.2): a first-order inversion of dP/dx using
 * the height of P above the target,
 *   h = P(x) - t,  t = min(max(y_target, -1), 1),   dx = clip_[-c, c]( h / (dP/dx) ),
 * at x = x_eff, c = clip.  With the paper's t = -1, h = sin(a/x) + 1 is the
 * height above the minimum (domain knowledge: min P = -1); for a scalar P this
 * is also the Gauss-Newton step of 1/2 (P(x) - t)^2.  It diverges where
 * dP/dx -> 0 (at maxima), hence the clip: |h / dP/dx| >= c gives
 * c * sign(h) * sign(dP/dx) (also where |dP/dx| underflows).  dx = 0 when
 * h = 0 or cos(a/x_eff) = 0 exactly (no direction).
 * clip must be positive and finite; the paper uses 1.
 *   a: [n], x: [n], y_target: [n], dx: [n]. */
CPHYS_EXTERN int CPhysSineInverseGradient(ptrdiff_t n, const double *a, const double *x,
                                          const double *y_target, double clip, double *dx);

/* The sine's data for the contract of cphys/physical_gradient.h: the
 * coefficients a, [batch, n] (n elements per sample), borrowed. */
typedef struct {
  const double *a;
  ptrdiff_t n;
} CPhysSineData;

/* The `physical` mode in that contract (CPhysSinePhysicalGradient towards
 * y - y_step g, per element; direct).  The problem borrows `data`. */
CPHYS_EXTERN int CPhysSineGetInverseProblem(const CPhysSineData *data, CPhysInverseProblem *problem);
