// One autograd kernel for every physics op: the forward op runs below autograd,
// its tensors and options are saved, and the backward calls the op's registered
// backward op with them, so each op only writes its two CPU kernels.
#include <torch/autograd.h>

#include <string>
#include <vector>

#include "common.h"

namespace physgrad {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The leading Tensor arguments of a schema are the differentiable inputs.
size_t count_leading_tensors(const c10::FunctionSchema &schema) {
  size_t count = 0;
  for (const auto &argument : schema.arguments()) {
    if (!argument.type()->isSubtypeOf(*c10::TensorType::get())) break;
    count++;
  }
  return count;
}

c10::OperatorHandle find_op(const std::string &qualified_name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(qualified_name.c_str(), "");
}

variable_list outputs_as_tensors(const c10::IValue &result) {
  if (result.isTensor()) return {result.toTensor()};
  return result.toTensorVector();
}

c10::List<c10::IValue> as_list(const std::vector<c10::IValue> &values) {
  c10::impl::GenericList list(c10::AnyType::get());
  for (const auto &value : values) list.push_back(value);
  return list;
}

// Refuses to differentiate a backward op: physical gradients have no derivative
// in the sense autograd would need, and no mode needs second derivatives.
// A custom Function cannot return an undefined tensor (torch 1.13 fails with
// "get_autograd_meta() on undefined tensor"), but a backward op returns one for
// each input it gives no gradient: those leave forward() as empty placeholders,
// flagged in `undefined`, and call_backward_op restores them.
class NoDoubleBackward : public torch::autograd::Function<NoDoubleBackward> {
 public:
  static variable_list forward(AutogradContext *ctx, std::string name, at::TensorList inputs,
                               std::vector<c10::IValue> options, std::vector<bool> *undefined) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->saved_data["name"] = name;
    torch::jit::Stack stack(inputs.begin(), inputs.end());
    stack.insert(stack.end(), options.begin(), options.end());
    find_op(name).callBoxed(stack);
    variable_list outputs = outputs_as_tensors(stack.at(0));
    undefined->assign(outputs.size(), false);
    for (size_t i = 0; i < outputs.size(); i++) {
      if (!outputs[i].defined()) (*undefined)[i] = true, outputs[i] = at::empty({0});
    }
    return outputs;
  }
  static variable_list backward(AutogradContext *ctx, variable_list) {
    TORCH_CHECK(false, ctx->saved_data["name"].toStringRef(),
                ": double backward (differentiating a gradient) is not supported");
  }
};

// Runs backward op `name` through NoDoubleBackward; undefined gradients stay undefined.
variable_list call_backward_op(const std::string &name, at::TensorList inputs,
                               std::vector<c10::IValue> options) {
  std::vector<bool> undefined;
  variable_list outputs = NoDoubleBackward::apply(name, inputs, std::move(options), &undefined);
  for (size_t i = 0; i < outputs.size(); i++) {
    if (undefined.at(i)) outputs[i] = at::Tensor();
  }
  return outputs;
}

class PhysicsFunction : public torch::autograd::Function<PhysicsFunction> {
 public:
  static variable_list forward(AutogradContext *ctx, std::string name, at::TensorList inputs,
                               std::vector<c10::IValue> options) {
    at::AutoDispatchBelowADInplaceOrView guard;
    torch::jit::Stack stack(inputs.begin(), inputs.end());
    stack.insert(stack.end(), options.begin(), options.end());
    find_op(name).callBoxed(stack);
    at::Tensor y = stack.at(0).toTensor();
    std::vector<at::Tensor> saved(inputs.begin(), inputs.end());
    saved.push_back(y);
    ctx->save_for_backward(saved);
    ctx->saved_data["name"] = name;
    ctx->saved_data["options"] = as_list(options);
    return {y};
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    const std::string name = ctx->saved_data["name"].toStringRef() + "_backward";
    const variable_list saved = ctx->get_saved_variables();  // inputs..., y
    std::vector<at::Tensor> tensors{grads.at(0).defined() ? grads[0].contiguous()
                                                          : at::zeros_like(saved.back())};
    tensors.insert(tensors.end(), saved.begin(), saved.end());
    std::vector<c10::IValue> options;
    for (const c10::IValue &option : ctx->saved_data["options"].toList()) options.push_back(option);
    const variable_list input_grads = call_backward_op(name, at::TensorList(tensors), options);
    TORCH_CHECK(input_grads.size() == saved.size() - 1, name, " returned ", input_grads.size(),
                " gradients for ", saved.size() - 1, " inputs");
    variable_list result{at::Tensor()};  // the name
    result.insert(result.end(), input_grads.begin(), input_grads.end());
    result.push_back(at::Tensor());  // the options
    return result;
  }
};

void physics_autograd_kernel(const c10::OperatorHandle &op, torch::jit::Stack *stack) {
  const auto &schema = op.schema();
  const size_t total = schema.arguments().size(), tensors = count_leading_tensors(schema);
  auto arguments = torch::jit::last(*stack, total);
  std::vector<at::Tensor> inputs;
  for (size_t i = 0; i < tensors; i++) inputs.push_back(arguments[i].toTensor());
  // Under torch.no_grad() nothing is recorded, so an input that requires grad
  // is data: detached, it passes the kernels' checks of inputs a mode cannot
  // differentiate (the sine's a, the fluid's m0).
  if (!c10::GradMode::is_enabled()) {
    for (auto &input : inputs)
      if (input.defined()) input = input.detach();
  }
  std::vector<c10::IValue> options(arguments.begin() + tensors, arguments.end());
  torch::jit::drop(*stack, total);
  const std::string name = schema.name();
  // Passed as a TensorList, the inputs become the autograd graph's edges.
  const at::TensorList input_list(inputs);
  variable_list outputs = name.size() > 9 && name.compare(name.size() - 9, 9, "_backward") == 0
                              ? call_backward_op(name, input_list, options)
                              : PhysicsFunction::apply(name, input_list, options);
  if (schema.returns().at(0).type()->isSubtypeOf(*c10::TensorType::get())) {
    stack->emplace_back(outputs.at(0));
  } else {
    stack->emplace_back(c10::List<at::Tensor>(outputs));
  }
}

}  // namespace

void register_physics_autograd(torch::Library &m, const char *name) {
  m.impl(name, torch::CppFunction::makeFromBoxedFunction<&physics_autograd_kernel>());
  m.impl((std::string(name) + "_backward").c_str(),
         torch::CppFunction::makeFromBoxedFunction<&physics_autograd_kernel>());
}

}  // namespace physgrad
