// The op library: every function here is differentiable (records a Node with its backward) unless it says
// otherwise. Conventions: float32 or float64 inputs of one dtype; NumPy broadcasting for elementwise ops;
// negative dims count from the end; shapes are written (B, N, D) in comments; errors name the op and shapes.
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/engine.h"
#include "autograd/random.h"
#include "autograd/tensor.h"

namespace vt {

// ---- elementwise (ops/elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor rsub(double a, const Tensor& b);  // a - b
// In place and outside the graph, the kernels of Tensor::add_ and mul_: y += b (b broadcast to y), y *= value.
void add_into(const Tensor& y, const Tensor& b);
void mul_into(const Tensor& y, double value);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
Tensor tanh(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact erf form: x * Phi(x), PyTorch's default

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(const Tensor& a, double b);
Tensor operator-(const Tensor& x);

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// ---- reductions (ops/reduce.cpp); an empty dims list reduces over every dim ----
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64, not differentiable
// count (an i64 scalar) += the rows of logits (B, C) whose first maximal logit is at labels (B, i64): accuracy
// counted where the logits are, so a GPU step needs no host round-trip. Not differentiable.
void accumulate_correct(const Tensor& count, const Tensor& logits, const Tensor& labels);

// ---- shape ops (ops/shape.cpp); views share storage with their input ----
Tensor reshape(const Tensor& x, const Shape& shape);  // a view when the strides allow, else a copy; one -1 allowed
Tensor view(const Tensor& x, const Shape& shape);     // always a view; fails when the strides do not allow it
Tensor permute(const Tensor& x, const Shape& dims);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor contiguous(const Tensor& x);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor expand(const Tensor& x, const Shape& shape);   // -1 keeps a dim; size-1 dims broadcast (stride 0)
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index: i64 (K)
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);

// ---- linear algebra (ops/matmul.cpp) ----
// (..., M, K) @ (..., K, N) -> (..., M, N); batch dims broadcast; transposed views go to GEMM as flags.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in), weight (out, in), bias (out) or undefined -> (..., out)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// gelu(linear(x, weight, bias)) in one pass: GEMM finishes each block with GELU while it is in cache, and keeps
// GELU's derivative there for the backward only when a gradient is wanted. The GPU runs the two ops.
Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// linear(gelu(linear(x, w1, b1)), w2, b2), a transformer's MLP, as one op: x (..., in), w1 (hidden, in), b1
// (hidden), w2 (out, hidden), b2 (out), biases optional -> (..., out). As linear_gelu forward; backward, GELU's
// derivative is applied in the epilogue of the GEMM that forms dy w2. The GPU runs linear_gelu and linear.
Tensor mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2);

// ---- normalisation and probabilities ----
Tensor softmax(const Tensor& x, int64_t dim = -1);      // ops/softmax.cpp
Tensor log_softmax(const Tensor& x, int64_t dim = -1);  // ops/softmax.cpp
// x (..., D) normalised over D; weight, bias (D) or undefined.   ops/layer_norm.cpp
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

// logits (B, C); target either class indices (i64, (B)) or probabilities (B, C) (mixup / cutmix).
// Mean over the batch of -sum_c q_c log p_c with q = (1 - smoothing) * target + smoothing / C.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0);  // ops/loss.cpp

// Zeroes each element with probability p and scales survivors by 1 / (1 - p); identity when !training.
Tensor dropout(const Tensor& x, double p, bool training, Generator& generator = dropout_generator());
// Stochastic depth: x (B, ...) with whole samples zeroed with probability p and the kept ones scaled by
// 1 / (1 - p), one draw per sample; identity when !training.
Tensor drop_path(const Tensor& x, double p, bool training, Generator& generator = dropout_generator());
// The residual add of a block with DropPath on its branch, x + drop_path(branch), with the same draws, in one
// pass on the CPU (the GPU runs the two ops). x and branch (B, ...) of one shape.
Tensor add_drop_path(const Tensor& x, const Tensor& branch, double p, bool training,
                     Generator& generator = dropout_generator());
// DropPath's per-sample scales for x (B, ...), drawn as drop_path and add_drop_path draw them: (B), 1 / (1 - p)
// for kept samples and 0 for dropped ones; undefined where nothing is drawn (!training or p = 0). Not recorded.
Tensor drop_path_scales(const Tensor& x, double p, bool training, Generator& generator = dropout_generator());

// ---- convolution (ops/conv.cpp) ----
// x (B, C, H, W) -> (B, C*kh*kw, L): PyTorch's F.unfold, with L = Ho * Wo sliding positions.
// Returned as a transposed view of (B, L, C*kh*kw) patch rows, so unfold(x).transpose(1, 2) is contiguous.
Tensor unfold(const Tensor& x, int64_t kernel_h, int64_t kernel_w, int64_t stride = 1, int64_t padding = 0);
// x (B, C, H, W), weight (O, C, kh, kw), bias (O) or undefined -> (B, O, Ho, Wo)
// Memory is channels-last (B, Ho, Wo, O), so transpose(flatten(y, 2), 1, 2) (B, L, O) is contiguous.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride = 1, int64_t padding = 0);

// ---- attention (ops/attention.cpp) ----
// q, k, v (B, H, N, hd) -> (B, H, N, hd): softmax(q k^T * scale) v with scale = 1/sqrt(hd) by default.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale = 0.0);
// Multi-head attention straight from the projections, heads merged: q, k and v are consecutive blocks of
// D = H * hd features across the last dims of `projections` ({qkv} (B, N, 3D), {qk (B, N, 2D), v (B, N, D)} or
// {q, k, v}), each block in (H, hd) order as timm's; -> (B, N, D). The same math as scaled_dot_product_attention
// on the head views, but each projection's gradient is written whole, with no slices, zero fills or adds.
Tensor multi_head_attention(const std::vector<Tensor>& projections, int64_t heads, double scale = 0.0);

// ---- TNT's inner transformer block as one op (ops/inner_block.cpp) ----
// x (S, M, d) -> x1 + mlp_scales * fc2(gelu(fc1(LN2(x1)))) with x1 = x + attn_scales * proj(attention(LN1(x))),
// the attention's q and k from qk (2d, d) and v from v (d, d) as timm's TNT; scales (S) are DropPath's per
// sequence (drop_path_scales), undefined for none. The same math as those ops without dropout, each sequence
// computed in cache; backward computes each sequence's forward again (of the activations, only x is saved).
// On the CPU, float32 or float64, M <= 16 tokens, d <= 64 channels, at most 256 hidden features
// (inner_block_fusable).
constexpr int64_t kInnerBlockMaxTokens = 16, kInnerBlockMaxDim = 64, kInnerBlockMaxHidden = 256;
struct InnerBlockWeights {
  Tensor norm1_weight, norm1_bias, qk_weight, qk_bias, v_weight, v_bias, proj_weight, proj_bias;  // biases optional
  Tensor norm2_weight, norm2_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias;
  double norm1_eps = 1e-5, norm2_eps = 1e-5;
  std::vector<Tensor> tensors() const {
    return {norm1_weight, norm1_bias, qk_weight, qk_bias, v_weight, v_bias, proj_weight, proj_bias,
            norm2_weight, norm2_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias};
  }
};
bool inner_block_fusable(const Tensor& x, int64_t hidden);
Tensor inner_block(const Tensor& x, const InnerBlockWeights& weights, int64_t heads,
                   const Tensor& attn_scales = Tensor(), const Tensor& mlp_scales = Tensor());

}  // namespace vt
