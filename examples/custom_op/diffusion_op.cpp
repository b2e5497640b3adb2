// pgexample::diffuse: an op defined outside physgrad, with physgrad's autograd
// kernel, gradient modes, statistics and failure policy.  Uses only the
// installed <physgrad/op.h> and the C object of diffusion.h.
//   y = (I - nu L)^-steps x per sample, x and y [B, n].
#include <physgrad/op.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "diffusion.h"

// The op namespace, and the check physgrad.load_library makes: pgexample::physgrad_abi().
PHYSGRAD_EXTENSION(pgexample)

namespace {

using physgrad::GradMode;

// The op's one declaration: schemas, modes, options prefix.  physgrad.op_info("pgexample::diffuse")
// reports it; the lbfgs mode reads PETSc options under -pgexample_diffuse_lbfgs_.
const physgrad::OpDescriptor kDiffuse{
    "pgexample",
    "diffuse",
    "diffuse(Tensor x, float nu=1.0, int steps=4, str grad_mode=\"physical\", float y_step=1.0, "
    "int lbfgs_iterations=32, str on_failure=\"raise\") -> Tensor",
    "diffuse_backward(Tensor grad_y, Tensor x, Tensor y, float nu, int steps, str grad_mode, float y_step, "
    "int lbfgs_iterations, str on_failure) -> Tensor",
    {GradMode::Adjoint, GradMode::Physical, GradMode::Lbfgs},
    "pgexample_diffuse_",
    /*own_solver_options=*/false};
// The op's name in messages ("physgrad.pgexample.diffuse: ...") and in physgrad.solve_stats.
const std::string kLabel = physgrad::op_label(kDiffuse);
const char *const kOp = kLabel.c_str();

// The shared options (mode, y_step, lbfgs_iterations, on_failure) are checked by
// physgrad with its messages; the op checks its own.
physgrad::ModeOptions parse_options(double nu, int64_t steps, c10::string_view grad_mode, double y_step,
                                    int64_t lbfgs_iterations, c10::string_view on_failure) {
  TORCH_CHECK_VALUE(std::isfinite(nu) && nu >= 0.0, "physgrad.", kOp, ": nu must be finite and >= 0, got ",
                    nu);
  TORCH_CHECK_VALUE(steps >= 1 && steps <= 1000000, "physgrad.", kOp, ": steps must be in [1, 1e6], got ",
                    steps);
  return physgrad::parse_mode_options(kDiffuse, grad_mode, y_step, lbfgs_iterations, on_failure);
}

using Object = std::unique_ptr<Diffusion1D_private, void (*)(Diffusion1D)>;

// A new object per call: creating one costs two vectors of n doubles.
Object create(int64_t n, double nu, int64_t steps) {
  Diffusion1DConfig config = {static_cast<ptrdiff_t>(n), nu, static_cast<int>(steps)};
  Diffusion1D diffusion = nullptr;
  physgrad::check_cphys(Diffusion1DCreate(&config, &diffusion), kOp);
  return Object(diffusion, [](Diffusion1D d) { Diffusion1DDestroy(&d); });
}

at::Tensor signal(const at::Tensor &tensor, const char *argument) {
  const at::Tensor values = physgrad::as_double(tensor, kOp, argument, {2});
  TORCH_CHECK_VALUE(values.size(1) >= 1, "physgrad.", kOp, ": ", argument,
                    " must be [B, n] with n >= 1, got ", tensor.sizes());
  return values;
}

// The forward is direct; its statistics say so.
void record_direct(const char *phase, int64_t batch, int64_t steps) {
  CPhysSolveInfo direct = {};
  direct.iterations = static_cast<int>(steps);
  direct.converged = 1;
  std::snprintf(direct.reason_text, sizeof direct.reason_text, "%s", "DIRECT");
  physgrad::record_solve_info(kOp, phase, std::vector<CPhysSolveInfo>(batch, direct));
}

at::Tensor diffuse_forward(const at::Tensor &x, double nu, int64_t steps, c10::string_view grad_mode,
                           double y_step, int64_t lbfgs_iterations, c10::string_view on_failure) {
  parse_options(nu, steps, grad_mode, y_step, lbfgs_iterations, on_failure);  // a bad option fails here
  const at::Tensor values = signal(x, "x");
  Object diffusion = create(values.size(1), nu, steps);
  at::Tensor y = at::empty_like(values);
  physgrad::check_cphys(
      Diffusion1DForward(diffusion.get(), values.size(0), values.data_ptr<double>(), y.data_ptr<double>()),
      kOp);
  record_direct("forward", values.size(0), steps);
  return y.to(x.scalar_type());
}

at::Tensor diffuse_backward(const at::Tensor &grad_y, const at::Tensor &x, const at::Tensor &y, double nu,
                            int64_t steps, c10::string_view grad_mode, double y_step,
                            int64_t lbfgs_iterations, c10::string_view on_failure) {
  const physgrad::ModeOptions o = parse_options(nu, steps, grad_mode, y_step, lbfgs_iterations, on_failure);
  const at::Tensor g = signal(grad_y, "grad_y"), xs = signal(x, "x"), ys = signal(y, "y");
  TORCH_CHECK_VALUE(g.sizes() == xs.sizes() && ys.sizes() == xs.sizes(), "physgrad.", kOp,
                    "_backward: grad_y, x and y must have one shape, got ", g.sizes(), ", ", xs.sizes(), ", ",
                    ys.sizes());
  Object diffusion = create(xs.size(1), nu, steps);
  const int64_t batch = xs.size(0);
  at::Tensor dx = at::empty_like(xs);
  switch (o.mode) {
    case GradMode::Adjoint:
      physgrad::check_cphys(
          Diffusion1DAdjoint(diffusion.get(), batch, g.data_ptr<double>(), dx.data_ptr<double>()), kOp);
      record_direct("adjoint", batch, steps);
      break;
    case GradMode::Physical: {
      std::vector<CPhysSolveInfo> info(batch);
      physgrad::check_cphys(
          Diffusion1DPhysicalGradient(diffusion.get(), batch, xs.data_ptr<double>(), ys.data_ptr<double>(),
                                      g.data_ptr<double>(), y_step, dx.data_ptr<double>(), info.data()),
          kOp);
      physgrad::record_solve_info(kOp, "physical", info);
      break;
    }
    default: {
      CPhysLeastSquaresProblem problem;
      physgrad::check_cphys(Diffusion1DGetLeastSquaresProblem(diffusion.get(), &problem), kOp);
      dx = physgrad::lbfgs_physical_gradient(problem, kDiffuse, xs, ys, g, y_step, lbfgs_iterations,
                                             o.on_failure);
    }
  }
  return dx.to(x.scalar_type());
}

}  // namespace

TORCH_LIBRARY(pgexample, m) {
  physgrad::define_op(m, kDiffuse);
}

TORCH_LIBRARY_IMPL(pgexample, CPU, m) {
  m.impl("diffuse", &diffuse_forward);
  m.impl("diffuse_backward", &diffuse_backward);
}

// The autograd kernel of the built-in ops: the backward op by grad_mode.
TORCH_LIBRARY_IMPL(pgexample, Autograd, m) {
  physgrad::register_physics_autograd(m, "diffuse");
}
