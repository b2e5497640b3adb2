/* The sine transform (DST-I) of the lines of a grid through FFTW's r2c of their
 * odd extensions, CPHYS_SINE_LINES_BLOCK lines per execution (sine_lines.h). */
#include "sine_lines.h"

#include "cphys_internal.h"

/* A padded line: the odd extension of length 2 (n + 1), plus the 2 doubles the
 * in-place r2c writes beyond it. */
static ptrdiff_t padded_line(ptrdiff_t n) {
  return 2 * (n + 1) + 2;
}

static ptrdiff_t block_of(ptrdiff_t lines) {
  return lines < CPHYS_SINE_LINES_BLOCK ? (lines > 0 ? lines : 1) : CPHYS_SINE_LINES_BLOCK;
}

ptrdiff_t CPhysSineLinesPadSize(ptrdiff_t n, ptrdiff_t lines) {
  return block_of(lines) * padded_line(n);
}

int CPhysSineLinesPlanLocked(CPhysSineLines *s, ptrdiff_t n, ptrdiff_t lines, double *pad) {
  const int length = (int)(2 * (n + 1)), stride = (int)padded_line(n);
  s->n = n;
  s->block = block_of(lines);
  fftw_complex *spectrum = (fftw_complex *)pad;
  s->block_plan = fftw_plan_many_dft_r2c(1, &length, (int)s->block, pad, NULL, 1, stride, spectrum, NULL, 1,
                                         stride / 2, FFTW_ESTIMATE);
  s->single_plan = fftw_plan_many_dft_r2c(1, &length, 1, pad, NULL, 1, stride, spectrum, NULL, 1, stride / 2,
                                          FFTW_ESTIMATE);
  CPhysCheck(s->block_plan && s->single_plan, CPHYS_ERROR_FFTW,
             "FFTW could not plan the sine transform of lines of %td nodes", n);
  return 0;
}

void CPhysSineLinesDestroyLocked(CPhysSineLines *s) {
  if (s->block_plan) fftw_destroy_plan(s->block_plan);
  if (s->single_plan) fftw_destroy_plan(s->single_plan);
  s->block_plan = s->single_plan = NULL;
}

/* y[k] = -Im(Z[k+1]) for `count` lines whose first nodes are w[base[c]], nodes
 * `inner` apart, through slots 0..count-1 of pad. */
static void transform_block(const CPhysSineLines *s, fftw_plan plan, double *w, const ptrdiff_t *base,
                            ptrdiff_t count, ptrdiff_t inner, double *pad) {
  const ptrdiff_t n = s->n, stride = padded_line(n), length = 2 * (n + 1);
  for (ptrdiff_t c = 0; c < count; c++) pad[c * stride] = 0.0, pad[c * stride + n + 1] = 0.0;
  for (ptrdiff_t j = 0; j < n; j++) /* node-major: neighbouring lines share cache lines */
    for (ptrdiff_t c = 0; c < count; c++) {
      const double v = w[base[c] + j * inner];
      double *z = pad + c * stride;
      z[1 + j] = v, z[length - 1 - j] = -v;
    }
  fftw_execute_dft_r2c(plan, pad, (fftw_complex *)pad);
  for (ptrdiff_t k = 0; k < n; k++)
    for (ptrdiff_t c = 0; c < count; c++) w[base[c] + k * inner] = -pad[c * stride + 2 * k + 3];
}

void CPhysSineLinesApply(const CPhysSineLines *s, double *w, ptrdiff_t outer, ptrdiff_t inner, double *pad) {
  const ptrdiff_t n = s->n, lines = outer * inner;
  ptrdiff_t base[CPHYS_SINE_LINES_BLOCK];
  for (ptrdiff_t first = 0; first < lines; first += s->block) {
    const ptrdiff_t count = lines - first < s->block ? lines - first : s->block;
    for (ptrdiff_t c = 0; c < count; c++) {
      const ptrdiff_t line = first + c;
      base[c] = line / inner * n * inner + line % inner;
    }
    if (count == s->block) {
      transform_block(s, s->block_plan, w, base, count, inner, pad);
    } else { /* a partial block line by line through slot 0, the alignment the plans were made for */
      for (ptrdiff_t c = 0; c < count; c++) transform_block(s, s->single_plan, w, base + c, 1, inner, pad);
    }
  }
}
