// Runs a scripted model that uses the extension op pgexample.diffuse from C++:
// the forward pass, then the backward pass of the l2 loss 1/2 sum (y - target)^2
// in the gradient modes the model was saved with.
//
//   custom_op_deploy MODEL.pt INPUT.pt OUTPUT.pt
//
// MODEL.pt: torch.jit.save(torch.jit.script(model), ...); INPUT.pt:
// physgrad.deploy.save_tensors(..., input=x, target=t) (target optional: the
// input); OUTPUT.pt, for torch.load: {"output", "loss", "input_grad", "grad.<parameter>"}.
// Both libraries are linked (libpgexample.so with --no-as-needed; it needs
// libphysgrad_ops.so), which registers their ops.
#include <torch/script.h>

#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

c10::IValue call(const std::string &op) {
  auto handle = c10::Dispatcher::singleton().findSchema({op, ""});
  if (!handle.has_value()) throw std::runtime_error(op + " is not registered: is its library linked?");
  torch::jit::Stack stack;
  handle->callBoxed(stack);
  return stack.at(0);
}

// The extension must come from a build against this physgrad and torch.
void check_extension() {
  const std::string physgrad = call("physgrad::version").toStringRef();
  const c10::List<c10::IValue> abi = call("pgexample::physgrad_abi").toList();
  const std::string built_for = abi.get(0).toStringRef(), torch_headers = abi.get(1).toStringRef();
  std::cout << "physgrad op library " << physgrad << "; pgexample built against physgrad " << built_for
            << ", torch " << torch_headers << "\n";
  if (built_for != physgrad)
    throw std::runtime_error("pgexample was built against physgrad " + built_for + ", this is physgrad " +
                             physgrad + ": rebuild it");
}

at::Tensor saved_tensor(const torch::jit::Module &tensors, const std::string &name) {
  if (!tensors.hasattr(name)) return at::Tensor();
  return tensors.attr(name).toTensor();
}

}  // namespace

int main(int argc, char **argv) try {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " MODEL.pt INPUT.pt OUTPUT.pt\n";
    return 2;
  }
  check_extension();
  torch::jit::Module model = torch::jit::load(argv[1]);
  const torch::jit::Module tensors = torch::jit::load(argv[2]);
  const at::Tensor input = saved_tensor(tensors, "input").detach().requires_grad_(true);
  at::Tensor target = saved_tensor(tensors, "target");
  if (!target.defined()) target = input.detach();

  const at::Tensor output = model.forward({input}).toTensor();
  const at::Tensor loss = 0.5 * (output - target).pow(2).sum();
  loss.backward();

  c10::Dict<std::string, at::Tensor> results;
  results.insert("output", output.detach());
  results.insert("loss", loss.detach());
  results.insert("input_grad", input.grad());
  for (const auto &parameter : model.named_parameters(/*recurse=*/true))
    if (parameter.value.grad().defined()) results.insert("grad." + parameter.name, parameter.value.grad());
  const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(results));
  std::ofstream file(argv[3], std::ios::binary);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!file) throw std::runtime_error(std::string("cannot write ") + argv[3]);
  std::cout << "loss " << loss.item<double>() << ", wrote " << argv[3] << "\n";
  return 0;
} catch (const std::exception &error) {
  std::cerr << "custom_op_deploy: " << error.what() << "\n";
  return 1;
}
