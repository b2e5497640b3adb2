/* The heat object's physical gradient: the stable probabilistic inverse of a
 * y-space step (paper appendix B.4).  The rule and its constants are
 * documented in cphys/heat.h. */
#include <math.h>

#include "heat_private.h"

/* Posterior probability of signal from which a frequency is amplified; between
 * 1/2 and this it is left as it is.  0.68: about one sigma of confidence. */
static const double confident_signal = 0.68;

/* ||v||_2 of n values, scaled so that squaring neither overflows nor underflows. */
static double scaled_norm(const double *v, ptrdiff_t n) {
  double largest = 0.0;
  for (ptrdiff_t i = 0; i < n; i++) largest = fmax(largest, fabs(v[i]));
  if (largest == 0.0) return 0.0;
  double sum = 0.0;
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
  const double p = 1.0 / (1.0 + exp(-log_odds)); /* exact 0 and 1 at -inf and +inf */
  return (p >= confident_signal || p <= 0.5) ? 2.0 * p - 1.0 : 0.0;
}

static int apply_stable_inverse(CPhysHeat heat, const double *sample, fftw_complex *spectrum, void *context) {
  (void)context;
  const double norm = scaled_norm(sample, heat->cells);
  if (norm == 0.0) return 0; /* the spectrum of a zero step is zero */
  CPhysCheck(isfinite(norm), CPHYS_ERROR_NONFINITE, "the step's norm overflows (values near DBL_MAX)");
  const double log_cells = log((double)heat->cells);
  const double log_noise = log(heat->config.noise_relative) + log(norm);
  const double log_signal_at_k0 = log(heat->config.signal_amplitude) + 0.5 * log_cells;
  for (ptrdiff_t q = 0; q < heat->modes; q++) {
    const double amplitude = cabs(spectrum[q]);
    if (amplitude == 0.0) continue;
    const double exponent = heat->exponent[q], log_amplitude = log(amplitude);
    const double action =
        action_of(log_odds_of_signal(log_amplitude, log_noise, log_signal_at_k0 - exponent));
    /* In log space: exp(exponent) alone may overflow where the product does not. */
    spectrum[q] = spectrum[q] / amplitude * exp(log_amplitude + action * exponent - log_cells);
  }
  return 0;
}

int CPhysHeatPhysicalGradient(CPhysHeat heat, ptrdiff_t batch, const double *dy, double *dx) {
  return CPhysHeatApplySpectral(heat, batch, dy, dx, apply_stable_inverse, NULL, __func__);
}
