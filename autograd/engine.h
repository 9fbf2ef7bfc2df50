// Reverse-mode autograd: a dynamic graph of Nodes recorded as ops run, walked backwards by backward().
// Conventions: one Node per op output; a Node's backward gets the gradient of its output and returns one
// gradient per input (undefined where not needed), which may have the broadcast shape of the output:
// the engine sums it back to the input's shape (sum_to) in one place, so no op reduces its own broadcasts.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

#include "autograd/tensor.h"

namespace vt {

// What a backward function sees: the tensors its op saved (detached, so that saving an op's own output
// makes no reference cycle) and which inputs want a gradient.
struct BackwardContext {
  std::vector<Tensor> saved;
  std::vector<bool> needs_input_grad;
};

using Grads = std::vector<Tensor>;
using BackwardFn = std::function<Grads(const Tensor& dy, const BackwardContext& ctx)>;

// An edge to one input: either the Node that produced it, or the leaf whose .grad accumulates.
struct Edge {
  std::shared_ptr<Node> node;
  std::shared_ptr<TensorImpl> leaf;
  Shape shape;   // the input's shape, for the broadcast reduction
  DType dtype;
  bool needed = false;
};

struct Node {
  const char* name;
  std::vector<Edge> inputs;
  BackwardFn backward;
  BackwardContext ctx;
  std::vector<uint64_t> saved_versions;  // storage version of each saved tensor when it was saved
  Tensor grad_accum;                     // sum of the gradients reaching this node's output in a walk
  bool released = false;                 // set when backward freed the saved tensors and edges
  ~Node();                               // iterative, so that dropping a 100,000-op chain cannot overflow
};

// Grad mode is per thread; NoGradGuard turns recording off for its scope (like torch.no_grad()).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when grad mode is on and any input requires grad: ops skip building saved state otherwise.
bool any_requires_grad(std::initializer_list<Tensor> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Records op `name` producing `y` from `inputs` when any input requires grad (a no-op otherwise).
// `saved` tensors are handed back detached in ctx.saved; their versions are checked at backward time.
void record(const char* name, Tensor& y, const std::vector<Tensor>& inputs, const std::vector<Tensor>& saved,
            BackwardFn backward);

// Sums `grad` (a broadcast of `shape`) over the broadcast dims back to `shape`.
Tensor sum_to(const Tensor& grad, const Shape& shape);

// Runs the backward walk from `root`, seeded with `upstream`.
void run_backward(const Tensor& root, const Tensor& upstream, bool retain_graph);

}  // namespace vt
