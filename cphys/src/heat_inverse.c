/* The heat object's physical gradient: the stable probabilistic inverse of a
 * y-space step (paper appendix B.4).  The rule and its constants are
 * documented in docs/heat-inverse.md. */
#include <math.h>

#include "heat_internal.h"

/* Posterior probability of signal from which a frequency is amplified; between
 * 1/2 and this it is left as it is.  0.68: about one sigma of confidence. */
static const double confident_signal = 0.68;

/* ||v||_2 of n values: the plain sum of squares where it neither overflows nor
 * underflows, else scaled by the largest magnitude. */
static double sample_norm(const double *v, ptrdiff_t n) {
  double sum = 0.0;
  for (ptrdiff_t i = 0; i < n; i++) sum += v[i] * v[i];
  if (sum > 1e-280 && sum < 1e280) return sqrt(sum);
  double largest = 0.0;
  for (ptrdiff_t i = 0; i < n; i++) largest = fmax(largest, fabs(v[i]));
  if (largest == 0.0) return 0.0;
  sum = 0.0;
  for (ptrdiff_t i = 0; i < n; i++) sum += (v[i] / largest) * (v[i] / largest);
  return largest * sqrt(sum);
}

/* Log-odds of signal against noise for the amplitude a, from the logs of a, of
 * the noise scale f and of the signal scale E:
 *   lambda = a^2 / (2 f^2) - a^2 / (2 E^2).
 * The two terms are factored by the larger one, so huge ratios give +-inf with
 * the right sign instead of inf - inf. */
static double log_odds_of_signal(double log_amplitude, double log_noise, double log_signal) {
  const double u = log_amplitude - log_noise, v = log_amplitude - log_signal, w = fmax(u, v);
  const double difference = exp(2.0 * (u - w)) - exp(2.0 * (v - w)); /* in [-1, 1] */
  return difference == 0.0 ? 0.0 : 0.5 * difference * exp(2.0 * w);
}

/* Gain exponent s in [-1, 1]: the coefficient is multiplied by exp(s |k|^2 nu_t). */
static double action_of(double log_odds) {
  /* Beyond |lambda| = 40, p rounds to exactly 0 or 1 (s = -1 or 1): no exp needed. */
  if (log_odds > 40.0) return 1.0;
  if (log_odds < -40.0) return -1.0;
  const double p = 1.0 / (1.0 + exp(-log_odds));
  return (p >= confident_signal || p <= 0.5) ? 2.0 * p - 1.0 : 0.0;
}

/* The coefficient c of amplitude a > 0 times exp(s |k|^2 nu_t) / (ny nx), in log
 * space: exp(|k|^2 nu_t) alone may overflow where the product does not. */
static fftw_complex scaled_in_log_space(fftw_complex c, double amplitude, double s, double exponent,
                                        double log_cells) {
  return c / amplitude * exp(log(amplitude) + s * exponent - log_cells);
}

/* The rule in log space for every amplitude and scale (the reference; used
 * where the fast path's ranges do not hold). */
static void stable_inverse_log_space(CPhysHeat heat, double log_noise, fftw_complex *spectrum) {
  const double log_cells = log((double)heat->cells);
  const double log_signal_at_k0 = log(heat->config.signal_amplitude) + 0.5 * log_cells;
  for (ptrdiff_t q = 0; q < heat->modes; q++) {
    const double amplitude = cabs(spectrum[q]);
    if (amplitude == 0.0) continue;
    const double exponent = heat->exponent[q];
    const double action =
        action_of(log_odds_of_signal(log(amplitude), log_noise, log_signal_at_k0 - exponent));
    spectrum[q] = scaled_in_log_space(spectrum[q], amplitude, action, exponent, log_cells);
  }
}

/* The same rule in plain arithmetic (profiled: the log-space form spent ~7
 * transcendental calls per mode, 8x the transforms' time).  With r^2 = a^2 / f^2
 * and q = f^2 / E^2 = (f / E_0)^2 exp(2 |k|^2 nu_t) (E_0: E at k = 0),
 *   lambda = r^2 / 2 (1 - q),
 * with no logarithm, no square root and, where |lambda| > 40, no exponential;
 * the gains exp(+-|k|^2 nu_t) / (ny nx) and 1 / (ny nx) come from tables.
 * Valid when f and (f / E_0)^2 are normal numbers and a / f cannot overflow
 * (a <= sqrt(ny nx) ||dy||, so r^2 <= ny nx / noise_relative^2): returns 0
 * without touching the spectrum otherwise, and the caller uses the log-space form. */
static int stable_inverse_fast(CPhysHeat heat, double log_noise, fftw_complex *spectrum) {
  const double log_cells = log((double)heat->cells);
  const double log_signal_at_k0 = log(heat->config.signal_amplitude) + 0.5 * log_cells;
  const double log_noise_odds = 2.0 * (log_noise - log_signal_at_k0); /* log (f / E_0)^2 */
  const double largest_r2 = log((double)heat->cells) - 2.0 * log(heat->config.noise_relative);
  if (!(fabs(log_noise) < 650.0 && fabs(log_noise_odds) < 650.0 && largest_r2 < 650.0)) return 0;
  const double inverse_noise = exp(-log_noise), noise_odds = exp(log_noise_odds);
  const double inverse_cells = 1.0 / (double)heat->cells;
  for (ptrdiff_t q = 0; q < heat->modes; q++) {
    const double re = creal(spectrum[q]) * inverse_noise, im = cimag(spectrum[q]) * inverse_noise;
    const double r2 = re * re + im * im;
    if (r2 == 0.0) {
      if (spectrum[q] != 0.0) /* below the noise scale by ~1e-154: log space decides */
        spectrum[q] = scaled_in_log_space(spectrum[q], cabs(spectrum[q]),
                                          action_of(log_odds_of_signal(log(cabs(spectrum[q])), log_noise,
                                                                       log_signal_at_k0 - heat->exponent[q])),
                                          heat->exponent[q], log_cells);
      continue;
    }
    /* noise_odds * table = q may be +inf (E << f): lambda = -inf, s = -1. */
    const double lambda = 0.5 * r2 * (1.0 - noise_odds * heat->noise_odds[q]);
    const double s = action_of(lambda);
    double gain;
    if (s == -1.0)
      gain = heat->forward_gain[q];
    else if (s == 0.0)
      gain = inverse_cells;
    else if (s == 1.0)
      gain = heat->inverse_gain[q];
    else
      gain = exp(s * heat->exponent[q] - log_cells);
    if (isfinite(gain))
      spectrum[q] *= gain;
    else
      spectrum[q] = scaled_in_log_space(spectrum[q], cabs(spectrum[q]), s, heat->exponent[q], log_cells);
  }
  return 1;
}

/* log f, the noise scale of a step of norm `norm` > 0: the relative noise
 * noise_relative ||dy|| and the absolute floor sqrt(cells) noise_absolute, as
 * independent sources (hypot: no overflow where the first alone is finite). */
static double log_noise_of(CPhysHeat heat, double norm) {
  const double relative = log(heat->config.noise_relative) + log(norm);
  if (heat->config.noise_absolute == 0.0) return relative;
  const double floor_scale = log(heat->config.noise_absolute) + 0.5 * log((double)heat->cells);
  const double larger = fmax(relative, floor_scale), smaller = fmin(relative, floor_scale);
  return larger + 0.5 * log1p(exp(2.0 * (smaller - larger)));
}

static int apply_stable_inverse(CPhysHeat heat, const double *sample, fftw_complex *spectrum, void *context) {
  (void)context;
  const double norm = sample_norm(sample, heat->cells);
  if (norm == 0.0) return 0; /* the spectrum of a zero step is zero */
  CPhysCheck(isfinite(norm), CPHYS_ERROR_NONFINITE, "the step's norm overflows (values near DBL_MAX)");
  const double log_noise = log_noise_of(heat, norm);
  if (!stable_inverse_fast(heat, log_noise, spectrum)) stable_inverse_log_space(heat, log_noise, spectrum);
  return 0;
}

/* The rule on the coefficients of a real basis (a Dirichlet or Neumann axis):
 * each coefficient's amplitude is taken to the DFT's scale (its orthonormal
 * coefficient times sqrt(cells), heat->weight and heat->log_weight), where the
 * noise and signal scales are those of the complex path, and the gain
 * exp(s |k|^2 nu_t) includes the r2r pair's normalization.
 * One real coefficient in log space (the reference form): */
static double stable_inverse_real_coefficient(CPhysHeat heat, ptrdiff_t q, double c, double log_noise,
                                              double log_signal_at_k0, double log_normalization) {
  const double exponent = heat->exponent[q], log_amplitude = log(fabs(c));
  const double action = action_of(
      log_odds_of_signal(log_amplitude + heat->log_weight[q], log_noise, log_signal_at_k0 - exponent));
  return copysign(exp(log_amplitude + action * exponent - log_normalization), c);
}

static int apply_stable_inverse_real(CPhysHeat heat, const double *sample, double *coefficients,
                                     void *context) {
  (void)context;
  const double norm = sample_norm(sample, heat->cells);
  if (norm == 0.0) return 0; /* the coefficients of a zero step are zero */
  CPhysCheck(isfinite(norm), CPHYS_ERROR_NONFINITE, "the step's norm overflows (values near DBL_MAX)");
  const double log_noise = log_noise_of(heat, norm);
  const double log_signal_at_k0 = log(heat->config.signal_amplitude) + 0.5 * log((double)heat->cells);
  const double log_normalization = log(heat->normalization);
  /* Plain arithmetic as in stable_inverse_fast, under the same range conditions
   * (a DFT-scale amplitude is at most sqrt(cells) ||dy|| here too); log space
   * for a coefficient where they do not hold. */
  const double log_noise_odds = 2.0 * (log_noise - log_signal_at_k0);
  const double largest_r2 = log((double)heat->cells) - 2.0 * log(heat->config.noise_relative);
  const int fast = fabs(log_noise) < 650.0 && fabs(log_noise_odds) < 650.0 && largest_r2 < 650.0;
  const double inverse_noise = fast ? exp(-log_noise) : 0.0, noise_odds = fast ? exp(log_noise_odds) : 0.0;
  const double inverse_normalization = 1.0 / heat->normalization;
  for (ptrdiff_t q = 0; q < heat->modes; q++) {
    const double c = coefficients[q];
    if (c == 0.0) continue;
    const double r = c * heat->weight[q] * inverse_noise, r2 = r * r;
    if (!fast || r2 == 0.0 || !isfinite(r2)) {
      coefficients[q] =
          stable_inverse_real_coefficient(heat, q, c, log_noise, log_signal_at_k0, log_normalization);
      continue;
    }
    /* noise_odds * table may be +inf (E << f): lambda = -inf, s = -1. */
    const double s = action_of(0.5 * r2 * (1.0 - noise_odds * heat->noise_odds[q]));
    const double gain = s == -1.0  ? heat->forward_gain[q]
                        : s == 0.0 ? inverse_normalization
                        : s == 1.0 ? heat->inverse_gain[q]
                                   : exp(s * heat->exponent[q] - log_normalization);
    const double scaled = c * gain;
    coefficients[q] = isfinite(scaled) && (scaled != 0.0 || gain == 0.0)
                          ? scaled
                          : copysign(exp(log(fabs(c)) + s * heat->exponent[q] - log_normalization), c);
  }
  return 0;
}

int CPhysHeatPhysicalGradient(CPhysHeat heat, ptrdiff_t batch, const double *dy, double *dx) {
  return CPhysHeatApplySpectral(heat, batch, dy, dx, apply_stable_inverse, apply_stable_inverse_real, NULL,
                                __func__);
}

/* ---- the physical-gradient contract (cphys/physical_gradient.h) ---- */

/* P is linear: the physical gradient is the stable inverse of the step y_step g alone. */
static int heat_physical_gradient(void *context, ptrdiff_t batch, const double *x, const double *y,
                                  const double *g, double y_step, double *dx, CPhysSolveInfo *info) {
  CPhysHeat heat = context;
  (void)x, (void)y;
  CPhysCheck(batch >= 0, CPHYS_ERROR_ARGUMENT, "batch must be >= 0, got %td", batch);
  CPhysCheck(batch == 0 || (g != NULL && dx != NULL), CPHYS_ERROR_ARGUMENT, "g and dx must not be NULL");
  CPhysCheck(isfinite(y_step), CPHYS_ERROR_ARGUMENT, "y_step must be finite, got %g", y_step);
  for (ptrdiff_t k = 0; k < batch * heat->cells; k++) dx[k] = y_step * g[k];
  CPhysCall(CPhysHeatPhysicalGradient(heat, batch, dx, dx));
  CPhysSetDirectInfo(info, batch, "DIRECT");
  return 0;
}

int CPhysHeatGetInverseProblem(CPhysHeat heat, CPhysInverseProblem *problem) {
  CPhysCheck(heat != NULL && problem != NULL, CPHYS_ERROR_ARGUMENT, "heat and problem must not be NULL");
  *problem = (CPhysInverseProblem){heat->cells, heat->cells, heat_physical_gradient, heat};
  return 0;
}
