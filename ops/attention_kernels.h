// Attention kernels: out = softmax(q k^T * scale) v for every (batch, head), and its backward, plus plain
// reference loops that the tests compare them with. Operands are (B, H, N, hd) with a unit-stride last dim.
#pragma once

#include <cstdint>

namespace vt {

// Where head (b, h) of a (B, H, N, hd) operand starts and how far apart its token rows are, in elements;
// row >= hd, as GEMM's leading dimension. Views of a fused qkv projection have row strides of 3 * H * hd;
// a broadcast head has a head stride of 0.
struct HeadStrides {
  int64_t batch = 0;
  int64_t head = 0;
  int64_t row = 0;
};

struct AttentionSizes {
  int64_t batch = 0;
  int64_t heads = 0;
  int64_t tokens = 0;
  int64_t head_dim = 0;
};

// out (B, H, N, hd), probs (B, H, N, N) contiguous = softmax(q k^T * scale) over the last dim;
// q, k, v (B, H, N, hd). Where the fused kernel below runs the heads, a null probs is not written (inference).
template <class T>
void attention_forward_cpu(T* out, T* probs, const T* q, const T* k, const T* v, HeadStrides out_strides,
                           HeadStrides q_strides, HeadStrides k_strides, HeadStrides v_strides, AttentionSizes sizes,
                           T scale);

// dq, dk, dv (B, H, N, hd) from dout (B, H, N, hd) and the forward's probs (B, H, N, N) contiguous.
// A null dq, dk or dv is not computed; scores_grad (B, H, N, N) is scratch for dS, needed when dq or dk is,
// except where the pixel-head or the fused kernel runs the heads (they keep dS in registers or per thread).
template <class T>
void attention_backward_cpu(T* dq, T* dk, T* dv, T* scores_grad, const T* dout, const T* probs, const T* q,
                            const T* k, const T* v, HeadStrides dq_strides, HeadStrides dk_strides,
                            HeadStrides dv_strides, HeadStrides dout_strides, HeadStrides q_strides,
                            HeadStrides k_strides, HeadStrides v_strides, AttentionSizes sizes, T scale);

// The float32 kernels for heads whose head dim is a multiple of 16 (and too large for the small-head loops),
// each head in cache from its first product to its last; attention_*_cpu run them on builds for AVX-512, the
// tests on any build. The same arguments as attention_*_cpu, less the backward's scratch.
void attention_forward_fused_cpu(float* out, float* probs, const float* q, const float* k, const float* v,
                                 HeadStrides out_strides, HeadStrides q_strides, HeadStrides k_strides,
                                 HeadStrides v_strides, AttentionSizes sizes, float scale);
void attention_backward_fused_cpu(float* dq, float* dk, float* dv, const float* dout, const float* probs,
                                  const float* q, const float* k, const float* v, HeadStrides dq_strides,
                                  HeadStrides dk_strides, HeadStrides dv_strides, HeadStrides dout_strides,
                                  HeadStrides q_strides, HeadStrides k_strides, HeadStrides v_strides,
                                  AttentionSizes sizes, float scale);

// Reference loops on contiguous (batch_heads, N, hd) buffers, accumulating in double.
template <class T>
void attention_forward_reference(T* out, T* probs, const T* q, const T* k, const T* v, int64_t batch_heads,
                                 int64_t tokens, int64_t head_dim, double scale);

template <class T>
void attention_backward_reference(T* dq, T* dk, T* dv, const T* dout, const T* probs, const T* q, const T* k,
                                  const T* v, int64_t batch_heads, int64_t tokens, int64_t head_dim, double scale);

}  // namespace vt
