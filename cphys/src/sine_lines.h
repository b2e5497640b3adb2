/* Internal: FFTW's RODFT00, the unnormalized DST-I
 *   y[k] = 2 sum_j x[j] sin(pi (j+1)(k+1) / (n+1)),  j, k < n
 * (its own inverse up to 2 (n+1)), of every line along one axis of a grid,
 * computed as FFTW's r2c transform of each line's odd extension
 * z = (0, x, 0, -reversed x) of length N = 2 (n+1), whose DFT is -i y[k] at
 * frequency k + 1, several lines per execution: FFTW's own RODFT00 measured
 * 2.5-4x slower here (docs/decisions.md).  Used by the heat object (every
 * Dirichlet axis) and the spectral Poisson object (a Dirichlet last axis). */
#pragma once
#include <complex.h> /* before fftw3.h: fftw_complex is then double _Complex */
#include <fftw3.h>
#include <stddef.h>

/* Lines per r2c execution: the padded block stays in cache. */
enum { CPHYS_SINE_LINES_BLOCK = 8 };

typedef struct {
  ptrdiff_t n;                       /* nodes per line */
  ptrdiff_t block;                   /* lines per execution of block_plan */
  fftw_plan block_plan, single_plan; /* r2c of `block` padded lines, of one (slot 0) */
} CPhysSineLines;

/* The doubles of the pad buffer CPhysSineLinesApply needs for lines of n nodes
 * when one call transforms at most `lines` lines. */
ptrdiff_t CPhysSineLinesPadSize(ptrdiff_t n, ptrdiff_t lines);

/* Plans (FFTW_ESTIMATE) for lines of n nodes, at most `lines` per call; `pad`
 * is scratch of CPhysSineLinesPadSize doubles at the alignment the callers'
 * pads will have (FFTW's new-array rule).  The library lock must be held (the
 * FFTW planner is not thread-safe).  Returns 0 or CPHYS_ERROR_FFTW. */
int CPhysSineLinesPlanLocked(CPhysSineLines *s, ptrdiff_t n, ptrdiff_t lines, double *pad);
/* Destroys the plans (library lock held); a zeroed struct is fine. */
void CPhysSineLinesDestroyLocked(CPhysSineLines *s);

/* The transform of every line of w, a grid [outer, n, inner] (line (o, i):
 * w[o n inner + j inner + i], j < n), in place.  pad: CPhysSineLinesPadSize
 * doubles, private to the calling thread, aligned as the planning pad. */
void CPhysSineLinesApply(const CPhysSineLines *s, double *w, ptrdiff_t outer, ptrdiff_t inner, double *pad);
