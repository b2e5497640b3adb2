/* Prescribed (non-zero) Dirichlet values of Poisson's equation, as a source.
 *
 * With values g on the boundary nodes of the Dirichlet sides, the problem
 *   laplace_h(y) = x on the grid's nodes,  y = g on the boundary nodes
 * is affine in g: it is  L y = x - B g,  with L the operator of
 * cphys/poisson_spectral.h (a boundary node counts as 0) and B g the stencil's
 * contribution of the boundary nodes:  (B g)[node] = sum over the node's
 * Dirichlet neighbours nb along axis a of g[nb] / h_a^2.  Both solvers then
 * solve the zero-boundary problem unchanged, for every mode: the adjoint
 * w.r.t. x is unchanged, the one w.r.t. g is -B^T applied to it.
 *
 * The values are given on the grid with a ring of one node on every side:
 * [batch, n0 + 2, n1 + 2] (2-D) or [batch, n0 + 2, n1 + 2, n2 + 2] (3-D), where
 * node (j0, j1, ...) of the grid is (j0 + 1, j1 + 1, ...) of the ring grid.  The
 * boundary node of side (axis a, lower) next to a grid node is the ring grid's
 * index 0 along a, that of (a, upper) index n_a + 1: the nodes one spacing
 * beyond the outermost nodes, where CPhysPoissonSpectral's Dirichlet condition
 * puts its zero.  Only the faces of Dirichlet sides are read: the interior,
 * the edges and the corners of the ring grid, which no stencil reaches, and
 * the faces of Neumann and periodic sides, where no value is prescribed, are
 * ignored (their entries of the adjoint are 0).  A function evaluated on the
 * whole ring grid can so be passed as is, and a network's ring-grid output
 * needs no masking. */
#pragma once
#include <stddef.h>

#include "cphys/error.h"
#include "cphys/poisson_spectral.h"

/* rhs = x - B g for each sample.
 *   config: the grid (dims, shape, spacing, boundary per axis, as for CPhysPoissonSpectralCreate)
 *   values: borrowed, [batch, <shape + 2>] (the ring grid above)
 *   x:      borrowed, [batch, <shape>]
 *   rhs:    written,  [batch, <shape>]; may be x
 * A non-finite value on a Dirichlet face is CPHYS_ERROR_NONFINITE naming its
 * flat index and side (rhs is then partly written); ignored entries are not read. */
CPHYS_EXTERN int CPhysPoissonBoundaryLift(const CPhysPoissonSpectralConfig *config, ptrdiff_t batch,
                                          const double *values, const double *x, double *rhs);

/* dvalues = -B^T g: the vector-Jacobian product of the lift w.r.t. the values.
 *   g:       borrowed, [batch, <shape>]
 *   dvalues: written,  [batch, <shape + 2>]; zero off the Dirichlet faces */
CPHYS_EXTERN int CPhysPoissonBoundaryLiftAdjoint(const CPhysPoissonSpectralConfig *config, ptrdiff_t batch,
                                                 const double *g, double *dvalues);
