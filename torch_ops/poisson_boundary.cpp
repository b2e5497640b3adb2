// physgrad::poisson_boundary_lift: prescribed Dirichlet values as a source.
//   rhs = x - B g (cphys/poisson_boundary.h), so that poisson(rhs) solves
//   laplace(y) = x with y = g on the boundary nodes of the Dirichlet sides.
//   x: a grid as for poisson; boundary_values: the grid with a ring of one node
//   per side ([B, ny + 2, nx + 2], [B, nz + 2, ny + 2, nx + 2], or with a channel
//   of 1 as x).  A separate op (physgrad.poisson composes the two) so that every
//   solver and mode of poisson stays as it is: the lift is linear, its backward
//   passes the gradient of rhs to x unchanged and -B^T of it to the values.
//   grad_mode: that of the poisson call the lift feeds; values that require
//   grad are refused unless it is "adjoint" (the inverse solvers of the other
//   modes hold the boundary fixed).
#include "cphys/poisson_boundary.h"

#include <torch/library.h>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "common.h"

namespace physgrad {
namespace {

constexpr const char *kOp = "poisson_boundary_lift";
// The modes of the poisson call the lift feeds (its messages speak of poisson).
const std::initializer_list<GradMode> kModes = {GradMode::Adjoint, GradMode::Physical, GradMode::Lbfgs};
const OpDescriptor kLift{"physgrad",
                         "poisson_boundary_lift",
                         "poisson_boundary_lift(Tensor x, Tensor boundary_values, float[] spacing=[1.0], str "
                         "boundary=\"dirichlet\", "
                         "str grad_mode=\"adjoint\") -> Tensor",
                         "poisson_boundary_lift_backward(Tensor grad_y, Tensor x, Tensor boundary_values, "
                         "Tensor y, float[] spacing, "
                         "str boundary, str grad_mode) -> Tensor[]",
                         kModes,
                         ""};

struct Lift {
  Grid x, values;
  CPhysPoissonSpectralConfig config;
};

Lift parse(const at::Tensor &x, const at::Tensor &values, at::ArrayRef<double> spacing,
           c10::string_view boundary) {
  Lift lift{grid_input(x, kOp, "x", "node"), grid_input(values, kOp, "boundary_values", "node"),
            CPhysPoissonSpectralDefaultConfig()};
  const Grid &g = lift.x;
  bool ring = lift.values.dims == g.dims && values.size(0) == x.size(0);
  for (int a = 0; ring && a < g.dims; a++) ring = lift.values.shape[a] == g.shape[a] + 2;
  TORCH_CHECK_VALUE(ring,
                    "physgrad.poisson: boundary_values must be the grid with a ring of one node per side, ",
                    g.dims == 3 ? "[B, nz + 2, ny + 2, nx + 2]" : "[B, ny + 2, nx + 2]", " = [", x.size(0),
                    ", ", g.shape[0] + 2, ", ", g.shape[1] + 2,
                    g.dims == 3 ? ", " + std::to_string(g.shape[2] + 2) : std::string(), "] for x of shape ",
                    x.sizes(), ", got shape ", values.sizes());
  const std::array<double, 3> h = parse_spacing(spacing, g.dims, "poisson");
  CPhysPoissonSpectralConfig &c = lift.config;
  c.dims = g.dims;
  const std::array<CPhysBoundary, 3> kinds = parse_boundary(
      boundary, g.dims, "poisson", "'dirichlet', 'neumann' or 'periodic'", CPHYS_BOUNDARY_DIRICHLET, true);
  for (int a = 0; a < g.dims; a++) {
    c.shape[a] = g.shape[a];
    c.spacing[a] = h[a];
    c.boundary[a] = kinds[a];
  }
  return lift;
}

at::Tensor lift_forward(const at::Tensor &x, const at::Tensor &values, at::ArrayRef<double> spacing,
                        c10::string_view boundary, c10::string_view grad_mode) {
  const GradMode mode = parse_grad_mode(grad_mode, "poisson", kModes);
  TORCH_CHECK_VALUE(mode == GradMode::Adjoint || !values.requires_grad(),
                    "physgrad.poisson: boundary_values require grad, but they are data for the inverse "
                    "solver: only grad_mode='adjoint' differentiates boundary_values (grad_mode is '",
                    std::string(grad_mode), "'); pass boundary_values.detach()");
  const Lift lift = parse(x, values, spacing, boundary);
  at::Tensor rhs = at::empty_like(lift.x.data);
  const int code = CPhysPoissonBoundaryLift(&lift.config, x.size(0), lift.values.data.data_ptr<double>(),
                                            lift.x.data.data_ptr<double>(), rhs.data_ptr<double>());
  // cphys names the flat index; as every op, name the first non-finite value by its indices.
  if (code == CPHYS_ERROR_NONFINITE) check_finite(values, "poisson", "boundary_values");
  check_cphys(code, "poisson");
  return rhs.to(x.scalar_type()).view(x.sizes());
}

std::vector<at::Tensor> lift_backward(const at::Tensor &grad_rhs, const at::Tensor &x,
                                      const at::Tensor &values, const at::Tensor &rhs,
                                      at::ArrayRef<double> spacing, c10::string_view boundary,
                                      c10::string_view grad_mode) {
  parse_grad_mode(grad_mode, "poisson", kModes);
  TORCH_CHECK_VALUE(grad_rhs.sizes() == x.sizes() && rhs.sizes() == x.sizes(),
                    "physgrad.poisson_boundary_lift_backward: grad_y ", grad_rhs.sizes(), " and y ",
                    rhs.sizes(), " must have the shape of x ", x.sizes());
  const Lift lift = parse(x, values, spacing, boundary);
  const at::Tensor g = as_double(grad_rhs, kOp, "grad_y", {grad_rhs.dim()});
  at::Tensor dvalues = at::empty_like(lift.values.data);
  check_cphys(CPhysPoissonBoundaryLiftAdjoint(&lift.config, x.size(0), g.data_ptr<double>(),
                                              dvalues.data_ptr<double>()),
              "poisson");
  return {grad_rhs.to(x.scalar_type()).clone(), dvalues.to(values.scalar_type()).view(values.sizes())};
}

}  // namespace
}  // namespace physgrad

TORCH_LIBRARY_FRAGMENT(physgrad, m) {
  physgrad::define_op(m, physgrad::kLift);
}

TORCH_LIBRARY_IMPL(physgrad, CPU, m) {
  m.impl("poisson_boundary_lift", physgrad::lift_forward);
  m.impl("poisson_boundary_lift_backward", physgrad::lift_backward);
}

TORCH_LIBRARY_IMPL(physgrad, Autograd, m) {
  physgrad::register_physics_autograd(m, "poisson_boundary_lift");
}
