// The backward walk. Conventions: the graph is a DAG of Nodes owned through shared_ptr edges from outputs
// to inputs; backward visits nodes in reverse topological order found by an explicit-stack DFS (no recursion,
// so depth is unbounded), runs each backward with grad mode off, and frees saved state unless retained.
#include "autograd/engine.h"

#include <unordered_set>
#include <utility>

#include "ops/ops.h"

namespace vt {

static thread_local bool g_grad_enabled = true;

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

bool any_requires_grad(std::initializer_list<Tensor> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

Node::~Node() {
  // Dropping the last reference to a long chain would otherwise destroy it recursively, one stack frame
  // per node. Instead, empty the edges of every node we hold the last reference to before it dies.
  std::vector<std::shared_ptr<Node>> pending;
  auto take_edges = [&pending](std::vector<Edge>& edges) {
    for (Edge& e : edges)
      if (e.node) pending.push_back(std::move(e.node));
    edges.clear();
  };
  take_edges(inputs);
  while (!pending.empty()) {
    std::shared_ptr<Node> node = std::move(pending.back());
    pending.pop_back();
    if (node.use_count() == 1) take_edges(node->inputs);
  }
}

void record(const char* name, Tensor& y, const std::vector<Tensor>& inputs, const std::vector<Tensor>& saved,
            BackwardFn backward) {
  if (!any_requires_grad(inputs)) return;
  if (!backward) fail(name, "op has no backward, so it cannot take inputs that require grad");
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs.resize(inputs.size());
  node->ctx.needs_input_grad.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    Edge& edge = node->inputs[i];
    if (!x.requires_grad()) continue;
    edge.needed = true;
    edge.shape = x.shape();
    edge.dtype = x.dtype();
    if (x.grad_fn())
      edge.node = x.grad_fn();
    else
      edge.leaf = x.impl_ptr();
    node->ctx.needs_input_grad[i] = true;
  }
  node->ctx.saved.reserve(saved.size());
  node->saved_versions.reserve(saved.size());
  for (const Tensor& s : saved) {
    node->ctx.saved.push_back(s.defined() ? s.detach() : Tensor());
    node->saved_versions.push_back(s.defined() ? s.storage()->version : 0);
  }
  node->backward = std::move(backward);
  y.impl()->grad_fn = std::move(node);
  y.impl()->requires_grad = true;
}

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  const int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  if (lead < 0) fail("sum_to", "cannot reduce " + grad.str() + " to " + shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < lead; ++d) dims.push_back(d);
  for (size_t d = 0; d < shape.size(); ++d) {
    const int64_t g = grad.shape()[lead + d];
    if (shape[d] == g) continue;
    if (shape[d] != 1) fail("sum_to", "cannot reduce " + grad.str() + " to " + shape_str(shape));
    dims.push_back(lead + static_cast<int64_t>(d));
  }
  if (dims.empty()) return grad;
  return reshape(sum(grad, dims, /*keepdim=*/true), shape);
}

// Whether nobody but the caller can see t's buffer: a backward may hand the same tensor to several inputs (add
// passes dy to both), and a node may have saved it, so only such a buffer may be stolen or updated in place.
static bool owned(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.storage().use_count() == 1 && t.is_contiguous();
}

static void accumulate_leaf(TensorImpl& leaf, Tensor grad) {
  if (!leaf.grad.defined()) {
    // Steal the buffer when it is owned; otherwise copy, since the leaf's grad is later updated in place.
    leaf.grad = owned(grad) ? std::move(grad) : grad.clone();
  } else {
    leaf.grad.add_(grad);
  }
}

// A node's incoming gradients summed: in place into the first one's buffer when it is owned (the residual
// stream of every block gets two), else into a new one.
static void accumulate_node(Tensor& accum, Tensor grad) {
  if (!accum.defined()) accum = std::move(grad);
  else if (owned(accum)) accum.add_(grad);
  else accum = add(accum, grad);
}

static void release(Node& node) {
  node.backward = nullptr;
  node.ctx.saved.clear();
  node.grad_accum = Tensor();
  node.released = true;
}

void run_backward(const Tensor& root, const Tensor& upstream, bool retain_graph) {
  if (!root.defined()) fail("backward", "called on an undefined tensor");
  if (!root.requires_grad()) fail("backward", "tensor " + root.str() + " does not require grad");
  Tensor seed = upstream;
  if (!seed.defined()) {
    if (root.numel() != 1)
      fail("backward", "an implicit upstream gradient needs a one-element output, got " + root.str() +
                           "; pass the upstream gradient explicitly");
    seed = Tensor::ones(root.shape(), root.dtype(), root.device());
  } else if (seed.shape() != root.shape() || seed.dtype() != root.dtype() || seed.device() != root.device()) {
    // An i64 or f64 seed on a float32 leaf became its gradient, silently of another dtype.
    fail("backward", "upstream gradient " + seed.str() + " on " + device_name(seed.device()) +
                         " does not match the output " + root.str() + " on " + device_name(root.device()));
  }
  NoGradGuard no_grad;
  if (!root.grad_fn()) {
    accumulate_leaf(*root.impl(), seed);
    return;
  }

  // Reverse topological order: DFS post-order over the edges, reversed, so every node precedes its inputs.
  // `order` holds shared_ptrs: the last owner of a node may be an edge that release() clears mid-walk.
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> visited;
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack;
  auto visit = [&](const std::shared_ptr<Node>& node) {
    if (node->released)
      fail(node->name, "backward through a graph that an earlier backward already freed; pass retain_graph to "
                       "the first backward to walk the graph twice");
    visited.insert(node.get());
    stack.emplace_back(node, 0);
  };
  visit(root.grad_fn());
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      const std::shared_ptr<Node> child = node->inputs[next++].node;
      if (child && !visited.count(child.get())) visit(child);
    } else {
      order.push_back(std::move(node));
      stack.pop_back();
    }
  }

  root.grad_fn()->grad_accum = seed;
  for (size_t n = order.size(); n-- > 0;) {
    Node& node = *order[n];
    Tensor dy = std::move(node.grad_accum);
    node.grad_accum = Tensor();
    if (!dy.defined()) continue;
    for (size_t i = 0; i < node.ctx.saved.size(); ++i) {
      const Tensor& s = node.ctx.saved[i];
      if (s.defined() && s.storage()->version != node.saved_versions[i])
        fail(node.name, "a tensor saved for backward, " + s.str() + ", was modified in place after it was saved " +
                            "(version " + std::to_string(node.saved_versions[i]) + ", now " +
                            std::to_string(s.storage()->version) + ")");
    }
    Grads grads = node.backward(dy, node.ctx);
    if (grads.size() != node.inputs.size())
      fail(node.name, "backward returned " + std::to_string(grads.size()) + " gradients for " +
                          std::to_string(node.inputs.size()) + " inputs");
    for (size_t i = 0; i < grads.size(); ++i) {
      Edge& edge = node.inputs[i];
      if (!edge.needed || !grads[i].defined()) continue;
      Tensor g = std::move(grads[i]);
      if (g.shape() != edge.shape) g = sum_to(g, edge.shape);  // the one place broadcasts are undone
      if (g.dtype() != edge.dtype)
        fail(node.name, "backward produced a " + g.str() + " gradient for a " + dtype_name(edge.dtype) + " input");
      if (edge.node)
        accumulate_node(edge.node->grad_accum, std::move(g));
      else
        accumulate_leaf(*edge.leaf, std::move(g));
    }
    if (!retain_graph) release(node);
  }
  if (!retain_graph)
    for (auto& node : order) node->inputs.clear();
}

}  // namespace vt
