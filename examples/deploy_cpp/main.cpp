// Runs a TorchScript model that contains physgrad ops from C++: the forward
// pass, then one backward pass of the l2 loss (1/2 sum (y - target)^2, as
// physgrad.losses.l2) in the gradient modes the model was saved with.
//
//   deploy_cpp MODEL.pt INPUT.pt OUTPUT.pt [--grad-mode LAYER=MODE]...
//
// MODEL.pt   torch.jit.save(torch.jit.script(model), "model.pt") in Python.
// INPUT.pt   physgrad.deploy.save_tensors("input.pt", input=x, target=t) in Python:
//            a TorchScript module holding the tensors as buffers ("target" is
//            optional and defaults to the input, as when a network maps the
//            observation y* to the x whose simulation should give y*).
// OUTPUT.pt  torch.load("output.pt") in Python: {"output": y, "loss": L,
//            "input_grad": dL/dx, "grad.<parameter name>": dL/dparameter}.
// --grad-mode LAYER=MODE sets the grad_mode attribute of the submodule LAYER
// (a dotted path such as "physics" or "body.1") before the forward pass.
//
// Why these formats: the input is read with torch::jit::load, the loader the
// model itself goes through, so dtype and shape survive and nothing else has to
// be trusted. torch::jit::pickle_load cannot read every file torch.save writes
// (a one-entry dict fails: pytorch/pytorch#67902), so it is not used for input.
// The output is written with torch::jit::pickle_save, which Python's complete
// unpickler (torch.load) reads.
//
// The op library must be loaded: this program links libphysgrad_ops.so with
// --no-as-needed (its static initializers register torch.ops.physgrad.*).
#include <torch/script.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

void write_file(const std::string &path, const std::vector<char> &bytes) {
  std::ofstream file(path, std::ios::binary);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!file) throw std::runtime_error("cannot write " + path);
}

// Calls the op library's physgrad::<name>() -> str; a clear error when the library is not loaded.
std::string op_library_string(const char *name) {
  auto schema = c10::Dispatcher::singleton().findSchema({std::string("physgrad::") + name, ""});
  if (!schema.has_value())
    throw std::runtime_error(
        "the physgrad op library is not loaded: link libphysgrad_ops.so with -Wl,--no-as-needed "
        "(CMake: cphys::physgrad_ops) or dlopen it before loading the model");
  return schema->typed<std::string()>().call();
}

torch::jit::Module submodule(torch::jit::Module module, const std::string &dotted) {
  std::stringstream path(dotted);
  std::string name;
  while (std::getline(path, name, '.')) {
    if (!module.hasattr(name)) throw std::runtime_error("the model has no submodule '" + dotted + "'");
    module = module.attr(name).toModule();
  }
  return module;
}

torch::jit::Module load_input(const std::string &path) {
  std::ifstream probe(path, std::ios::binary);
  if (!probe) throw std::runtime_error("cannot open " + path);
  torch::jit::Module tensors = torch::jit::load(path);
  if (!tensors.hasattr("input"))
    throw std::runtime_error(path + " has no tensor 'input' (write it with physgrad.deploy.save_tensors)");
  return tensors;
}

// Buffer `name` of a module saved by physgrad.deploy.save_tensors; undefined when absent.
at::Tensor saved_tensor(const torch::jit::Module &tensors, const std::string &name) {
  if (!tensors.hasattr(name)) return at::Tensor();
  const c10::IValue value = tensors.attr(name);
  if (!value.isTensor()) throw std::runtime_error("entry '" + name + "' of the input is not a tensor");
  return value.toTensor();
}

}  // namespace

int main(int argc, char **argv) try {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> modes;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    if (argument == "--grad-mode" && i + 1 < argc) {
      const std::string setting = argv[++i];
      const auto equals = setting.find('=');
      if (equals == std::string::npos)
        throw std::runtime_error("--grad-mode wants LAYER=MODE, got " + setting);
      modes.emplace_back(setting.substr(0, equals), setting.substr(equals + 1));
    } else {
      positional.push_back(argument);
    }
  }
  if (positional.size() != 3) {
    std::cerr << "usage: " << argv[0] << " MODEL.pt INPUT.pt OUTPUT.pt [--grad-mode LAYER=MODE]...\n";
    return 2;
  }
  std::cout << "physgrad op library " << op_library_string("version") << ", built for torch "
            << op_library_string("torch_version") << "\n";

  torch::jit::Module model = torch::jit::load(positional[0]);
  for (const auto &mode : modes) {
    submodule(model, mode.first).setattr("grad_mode", mode.second);
    std::cout << "grad_mode of " << mode.first << " = " << mode.second << "\n";
  }

  const torch::jit::Module tensors = load_input(positional[1]);
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
  write_file(positional[2], torch::jit::pickle_save(c10::IValue(results)));

  std::cout << "output " << output.sizes() << ", loss " << loss.item<double>() << ", |input_grad| "
            << input.grad().norm().item<double>() << "\nwrote " << positional[2] << "\n";
  return 0;
} catch (const std::exception &error) {
  std::cerr << "deploy_cpp: " << error.what() << "\n";
  return 1;
}
