// physgrad::sine and physgrad::wave_packet: schemas and CPU kernels (forward,
// backward of every mode), plus the two helpers without autograd: the sine's
// nearest minimum (supervised labels) and the wave-packet L-BFGS-B fitter.
// Both ops share one translation unit to save compile time (docs/decisions.md).
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "common.h"
#include "cphys/sine.h"
#include "cphys/wave_packet.h"

namespace physgrad {
namespace {

// ---- sine: y = sin(a / x) per element ---------------------------------------

const OpDescriptor kSineOp{
    "physgrad",
    "sine",
    "sine(Tensor x, Tensor a, str grad_mode=\"physical\", float y_step=1.0, float adjoint_clip=0.0, "
    "float step_clip=1.0) -> Tensor",
    "sine_backward(Tensor grad_y, Tensor x, Tensor a, Tensor y, str grad_mode, float y_step, "
    "float adjoint_clip, float step_clip) -> Tensor[]",
    {GradMode::Adjoint, GradMode::Physical, GradMode::Newton, GradMode::InverseGradient},
    ""};
const OpDescriptor kSineNearestMinimum{
    "physgrad", "sine_nearest_minimum", "sine_nearest_minimum(Tensor a, Tensor x0) -> Tensor", nullptr, {},
    ""};
constexpr const char *kSine = "sine";

struct SineOptions {
  GradMode mode;
  double y_step, adjoint_clip, step_clip;
};

SineOptions parse_sine_options(c10::string_view grad_mode, double y_step, double adjoint_clip,
                               double step_clip) {
  const GradMode mode = parse_mode_options(kSineOp, grad_mode, y_step).mode;
  TORCH_CHECK_VALUE(std::isfinite(adjoint_clip) && adjoint_clip >= 0.0,
                    "physgrad.sine: adjoint_clip must be >= 0 and finite (0: no clipping), got ",
                    adjoint_clip);
  TORCH_CHECK_VALUE(std::isfinite(step_clip) && step_clip > 0.0,
                    "physgrad.sine: step_clip must be positive and finite, got ", step_clip);
  return SineOptions{mode, y_step, adjoint_clip, step_clip};
}

// An elementwise argument ([B, ...], any number of dimensions >= 1) as a contiguous float64 tensor.
at::Tensor elementwise_input(const at::Tensor &tensor, const char *op, const char *argument) {
  TORCH_CHECK_VALUE(tensor.defined(), "physgrad.", op, ": ", argument, " is undefined");
  TORCH_CHECK_VALUE(tensor.dim() >= 1, "physgrad.", op, ": ", argument,
                    " must have at least 1 dimension ([B, ...]), got a 0-dimensional tensor");
  return as_double(tensor, op, argument, {tensor.dim()});
}

// Checks that `other` has the shape of `reference` and returns it as float64.
at::Tensor same_shape_input(const at::Tensor &other, const char *other_name, const at::Tensor &reference,
                            const char *reference_name, const char *op) {
  at::Tensor converted = elementwise_input(other, op, other_name);
  TORCH_CHECK_VALUE(other.sizes() == reference.sizes(), "physgrad.", op, ": ", other_name, " has shape ",
                    other.sizes(), " but ", reference_name, " has shape ", reference.sizes(),
                    " (they must be equal)");
  return converted;
}

// An explicit formula, no solve: recorded so that solve_stats (and the
// wrappers' on_failure='warn' check) describe this call, as after any forward.
void record_explicit_forward(const char *op, int64_t batch) {
  CPhysSolveInfo explicit_info = {0, 0.0, 1, 0, "EXPLICIT"};
  record_solve_info(op, "forward", std::vector<CPhysSolveInfo>(batch, explicit_info));
}

const double *ptr(const at::Tensor &t) {
  return t.data_ptr<double>();
}
double *mutable_ptr(at::Tensor &t) {
  return t.data_ptr<double>();
}

at::Tensor sine_forward(const at::Tensor &x, const at::Tensor &a, c10::string_view grad_mode, double y_step,
                        double adjoint_clip, double step_clip) {
  follow_torch_threads();
  const SineOptions o = parse_sine_options(grad_mode, y_step, adjoint_clip, step_clip);
  // Only the adjoint has a derivative in a; the inverse solvers update x alone.
  TORCH_CHECK_VALUE(
      o.mode == GradMode::Adjoint || !(a.defined() && a.requires_grad()),
      "physgrad.sine: a requires grad, but a is data: only grad_mode='adjoint' differentiates a "
      "(grad_mode is '",
      std::string(grad_mode), "'); pass a.detach()");
  const at::Tensor xd = elementwise_input(x, kSine, "x");
  const at::Tensor ad = same_shape_input(a, "a", x, "x", kSine);
  at::Tensor y = at::empty_like(xd);
  check_cphys(CPhysSineForward(xd.numel(), ptr(ad), ptr(xd), mutable_ptr(y)), kSine);
  record_explicit_forward(kSine, xd.size(0));
  return y.to(x.scalar_type());
}

// Returns [dL/dx, dL/da]; dL/da only in the adjoint mode (undefined otherwise).
std::vector<at::Tensor> sine_backward(const at::Tensor &g, const at::Tensor &x, const at::Tensor &a,
                                      const at::Tensor &y, c10::string_view grad_mode, double y_step,
                                      double adjoint_clip, double step_clip) {
  follow_torch_threads();
  const SineOptions o = parse_sine_options(grad_mode, y_step, adjoint_clip, step_clip);
  const char *op = "sine_backward";
  const at::Tensor xd = elementwise_input(x, op, "x");
  const at::Tensor ad = same_shape_input(a, "a", x, "x", op);
  const at::Tensor gd = same_shape_input(g, "grad_y", x, "x", op);
  const ptrdiff_t n = xd.numel();
  at::Tensor dx = at::empty_like(xd), da;
  if (o.mode == GradMode::Adjoint) {
    da = at::empty_like(ad);
    check_cphys(CPhysSineAdjoint(n, ptr(ad), ptr(xd), ptr(gd), o.adjoint_clip, mutable_ptr(dx)), kSine);
    check_cphys(CPhysSineCoefficientAdjoint(n, ptr(ad), ptr(xd), ptr(gd), mutable_ptr(da)), kSine);
    return {dx.to(x.scalar_type()), da.to(a.scalar_type())};
  }
  const at::Tensor yd = same_shape_input(y, "y", x, "x", op);
  if (o.mode == GradMode::Physical) {
    const int64_t batch = xd.size(0), per_sample = batch > 0 ? n / batch : 1;
    const CPhysSineData data{ptr(ad), static_cast<ptrdiff_t>(std::max<int64_t>(per_sample, 1))};
    CPhysInverseProblem problem;
    check_cphys(CPhysSineGetInverseProblem(&data, &problem), kSine);
    dx = physical_gradient(problem, kSineOp, xd, yd, gd, o.y_step, OnFailure::Raise);
    return {dx.to(x.scalar_type()).view(x.sizes()), at::Tensor()};
  }
  // The y-space target of the other inverse modes (DESIGN section 1).
  const at::Tensor target = yd - o.y_step * gd;
  switch (o.mode) {
    case GradMode::Newton:
      check_cphys(CPhysSineNewton(n, ptr(ad), ptr(xd), ptr(target), o.step_clip, mutable_ptr(dx)), kSine);
      break;
    default:
      check_cphys(CPhysSineInverseGradient(n, ptr(ad), ptr(xd), ptr(target), o.step_clip, mutable_ptr(dx)),
                  kSine);
  }
  return {dx.to(x.scalar_type()), at::Tensor()};
}

// No autograd: labels are constants.  Returned in x0's dtype.
at::Tensor sine_nearest_minimum(const at::Tensor &a, const at::Tensor &x0) {
  follow_torch_threads();
  const char *op = "sine_nearest_minimum";
  const at::Tensor x0d = elementwise_input(x0, op, "x0");
  const at::Tensor ad = same_shape_input(a, "a", x0, "x0", op);
  check_finite(x0d, op, "x0");  // cphys would call it x
  at::Tensor x_min = at::empty_like(x0d);
  check_cphys(CPhysSineNearestMinimum(x0d.numel(), ptr(ad), ptr(x0d), mutable_ptr(x_min)), op);
  return x_min.to(x0.scalar_type());
}

// ---- wave packet: [B, 2] (xi0, A) -> [B, samples] ---------------------------

const OpDescriptor kWavePacket{
    "physgrad",
    "wave_packet",
    "wave_packet(Tensor params, str grad_mode=\"physical\", float y_step=1.0, int samples=256, "
    "float frequency=4.0, float sigma=20.0, int lbfgs_iterations=32, str on_failure=\"raise\") -> Tensor",
    "wave_packet_backward(Tensor grad_y, Tensor params, Tensor y, str grad_mode, float y_step, int samples, "
    "float frequency, float sigma, int lbfgs_iterations, str on_failure) -> Tensor",
    {GradMode::Adjoint, GradMode::Physical, GradMode::Newton, GradMode::Lbfgs},
    "physgrad_wave_packet_",
    /*own_solver_options=*/false};
const OpDescriptor kWavePacketFit{
    "physgrad",
    "wave_packet_fit",
    "wave_packet_fit(Tensor target, float[2] initial=[128.0, 2.0], float[2] lower=[25.6, 1.0], "
    "float[2] upper=[230.4, 4.0], int max_iterations=1000, int samples=256, float frequency=4.0, "
    "float sigma=20.0, bool bounded=True) -> (Tensor, Tensor)",
    nullptr,
    {},
    "physgrad_wave_packet_fit_"};
constexpr const char *kPacket = "wave_packet";

using PacketKey = std::tuple<int64_t, double, double>;  // samples, frequency, sigma

ObjectCache<PacketKey, CPhysWavePacket> &packets() {
  static ObjectCache<PacketKey, CPhysWavePacket> cache(
      [](const PacketKey &k, CPhysWavePacket *packet) {
        CPhysWavePacketConfig config = CPhysWavePacketDefaultConfig();
        config.n_samples = std::get<0>(k), config.frequency = std::get<1>(k), config.sigma = std::get<2>(k);
        return CPhysWavePacketCreate(&config, packet);
      },
      [](CPhysWavePacket *packet) { return CPhysWavePacketDestroy(packet); });
  return cache;
}

// Checks the shape options with the op's argument names, and that the object
// and the call's [batch, samples] series fit in memory, then returns the cached object.
std::shared_ptr<CPhysWavePacket_private> packet_for(int64_t samples, double frequency, double sigma,
                                                    const char *op, int64_t batch) {
  TORCH_CHECK_VALUE(samples >= 1 && samples <= INT32_MAX, "physgrad.", op,
                    ": samples must be in [1, 2^31), got ", samples);
  check_memory((static_cast<double>(batch) + 1.0) * static_cast<double>(samples) * sizeof(double), op,
               "samples = " + std::to_string(samples) + " for a batch of " + std::to_string(batch));
  TORCH_CHECK_VALUE(std::isfinite(frequency), "physgrad.", op, ": frequency must be finite, got ", frequency);
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma > 0.0, "physgrad.", op,
                    ": sigma must be positive and finite, got ", sigma);
  return packets().get(PacketKey{samples, frequency, sigma}, op);
}

at::Tensor params_input(const at::Tensor &params, const char *op) {
  at::Tensor converted = as_double(params, op, "params", {2});
  TORCH_CHECK_VALUE(converted.size(1) == 2, "physgrad.", op, ": params must be [B, 2] (xi0, A), got shape ",
                    params.sizes());
  return converted;
}

// A [B, samples] series argument as float64.
at::Tensor series_input(const at::Tensor &series, const char *argument, int64_t batch, int64_t samples,
                        const char *op) {
  at::Tensor converted = as_double(series, op, argument, {2});
  TORCH_CHECK_VALUE(converted.size(0) == batch && converted.size(1) == samples, "physgrad.", op, ": ",
                    argument, " must be [", batch, ", ", samples, "] ([B, samples]), got shape ",
                    series.sizes());
  return converted;
}

at::Tensor wave_packet_forward(const at::Tensor &params, c10::string_view grad_mode, double y_step,
                               int64_t samples, double frequency, double sigma, int64_t lbfgs_iterations,
                               c10::string_view on_failure) {
  follow_torch_threads();
  parse_mode_options(kWavePacket, grad_mode, y_step, lbfgs_iterations, on_failure);
  // The output [B, samples] is checked before params (perhaps expanded) is copied.
  auto packet = packet_for(samples, frequency, sigma, kPacket, params.dim() == 2 ? params.size(0) : 0);
  const at::Tensor p = params_input(params, kPacket);
  at::Tensor y = at::empty({p.size(0), samples}, p.options());
  check_cphys(CPhysWavePacketForward(packet.get(), p.size(0), ptr(p), mutable_ptr(y)), kPacket);
  record_explicit_forward(kPacket, p.size(0));
  return y.to(params.scalar_type());
}

at::Tensor wave_packet_backward(const at::Tensor &g, const at::Tensor &params, const at::Tensor &y,
                                c10::string_view grad_mode, double y_step, int64_t samples, double frequency,
                                double sigma, int64_t lbfgs_iterations, c10::string_view on_failure) {
  follow_torch_threads();
  const ModeOptions o = parse_mode_options(kWavePacket, grad_mode, y_step, lbfgs_iterations, on_failure);
  const char *op = "wave_packet_backward";
  const at::Tensor p = params_input(params, op);
  const int64_t batch = p.size(0);
  auto packet = packet_for(samples, frequency, sigma, kPacket, batch);
  const at::Tensor gd = series_input(g, "grad_y", batch, samples, op);
  at::Tensor dp = at::empty_like(p);
  if (o.mode == GradMode::Adjoint) {
    check_cphys(CPhysWavePacketAdjoint(packet.get(), batch, ptr(p), ptr(gd), mutable_ptr(dp)), kPacket);
    return dp.to(params.scalar_type());
  }
  const at::Tensor yd = series_input(y, "y", batch, samples, op);
  if (o.mode == GradMode::Physical) {
    CPhysInverseProblem problem;
    check_cphys(CPhysWavePacketGetInverseProblem(packet.get(), &problem), kPacket);
    return physical_gradient(problem, kWavePacket, p, yd, gd, o.y_step, o.on_failure)
        .to(params.scalar_type());
  }
  if (o.mode == GradMode::Lbfgs) {
    CPhysLeastSquaresProblem problem;
    check_cphys(CPhysWavePacketGetLeastSquaresProblem(packet.get(), &problem), kPacket);
    return lbfgs_physical_gradient(problem, kWavePacket, p, yd, gd, o.y_step, o.lbfgs_iterations,
                                   o.on_failure)
        .to(params.scalar_type());
  }
  const at::Tensor target = yd - o.y_step * gd;
  std::vector<CPhysSolveInfo> info(batch);
  // A step that cannot lower the objective (its dparams is 0) is no error: the
  // statistics report it (as they report a physical solve that spends its steps).
  const int code = CPhysWavePacketGaussNewton(packet.get(), nullptr, batch, ptr(p), ptr(target),
                                              mutable_ptr(dp), info.data());
  record_solve_info(kPacket, "newton", info);
  check_cphys(code, kPacket);
  return dp.to(params.scalar_type());
}

// The paper's per-example L-BFGS-B baseline (no autograd).
std::tuple<at::Tensor, at::Tensor> wave_packet_fit(const at::Tensor &target, at::ArrayRef<double> initial,
                                                   at::ArrayRef<double> lower, at::ArrayRef<double> upper,
                                                   int64_t max_iterations, int64_t samples, double frequency,
                                                   double sigma, bool bounded) {
  const char *op = "wave_packet_fit";
  const std::pair<const char *, at::ArrayRef<double>> pairs[] = {
      {"initial", initial}, {"lower", lower}, {"upper", upper}};
  for (const auto &pair : pairs)
    TORCH_CHECK_VALUE(
        pair.second.size() == 2 && std::isfinite(pair.second[0]) && std::isfinite(pair.second[1]),
        "physgrad.wave_packet_fit: ", pair.first, " must be two finite numbers (xi0, A), got ", pair.second);
  TORCH_CHECK_VALUE(!bounded || (lower[0] < upper[0] && lower[1] < upper[1]),
                    "physgrad.wave_packet_fit: lower must be below upper in both parameters, got lower ",
                    lower, " and upper ", upper);
  TORCH_CHECK_VALUE(max_iterations >= 1 && max_iterations <= INT32_MAX,
                    "physgrad.wave_packet_fit: max_iterations must be in [1, 2^31), got ", max_iterations);
  auto packet = packet_for(samples, frequency, sigma, op, target.dim() == 2 ? target.size(0) : 0);
  at::Tensor t = as_double(target, op, "target", {2});
  TORCH_CHECK_VALUE(t.size(1) == samples, "physgrad.wave_packet_fit: target must be [B, samples] = [B, ",
                    samples, "], got shape ", target.sizes());
  CPhysWavePacketFitConfig config = CPhysWavePacketFitDefaultConfig();
  for (int k = 0; k < 2; k++)
    config.initial[k] = initial[k], config.lower[k] = lower[k], config.upper[k] = upper[k];
  config.use_initial = 1, config.bounded = bounded ? 1 : 0;
  config.max_iterations = static_cast<int>(max_iterations);
  const int64_t batch = t.size(0);
  at::Tensor params = at::empty({batch, 2}, t.options());
  std::vector<CPhysSolveInfo> info(batch);
  const int code = CPhysWavePacketFit(packet.get(), &config, batch, ptr(t), mutable_ptr(params), info.data());
  record_solve_info(op, "fit", info);
  check_cphys(code, op);
  at::Tensor converged = at::empty({batch}, t.options().dtype(at::kBool));
  bool *flags = converged.data_ptr<bool>();
  for (int64_t b = 0; b < batch; b++) flags[b] = info[b].converged != 0;
  return std::make_tuple(params.to(target.scalar_type()), converged);
}

}  // namespace
}  // namespace physgrad

TORCH_LIBRARY_FRAGMENT(physgrad, m) {
  for (const physgrad::OpDescriptor *op : {&physgrad::kSineOp, &physgrad::kSineNearestMinimum,
                                           &physgrad::kWavePacket, &physgrad::kWavePacketFit})
    physgrad::define_op(m, *op);
}

TORCH_LIBRARY_IMPL(physgrad, CPU, m) {
  m.impl("sine", physgrad::sine_forward);
  m.impl("sine_backward", physgrad::sine_backward);
  m.impl("sine_nearest_minimum", physgrad::sine_nearest_minimum);
  m.impl("wave_packet", physgrad::wave_packet_forward);
  m.impl("wave_packet_backward", physgrad::wave_packet_backward);
  m.impl("wave_packet_fit", physgrad::wave_packet_fit);
}

TORCH_LIBRARY_IMPL(physgrad, Autograd, m) {
  physgrad::register_physics_autograd(m, "sine");
  physgrad::register_physics_autograd(m, "wave_packet");
}
