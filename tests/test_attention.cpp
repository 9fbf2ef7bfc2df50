// Tests of scaled_dot_product_attention: hand-derived and PyTorch values, gradchecks on contiguous, fused-qkv
// (non-contiguous), broadcast and copied layouts, the fast kernels against the reference loops, and misuse; and
// of multi_head_attention on the projections ({qkv}, {qk, v}, {q, k, v}) against the same op on the head views.
#include <cmath>

#include "ops/attention_kernels.h"
#include "tests/helpers.h"
#include "tests/reference/attention.h"

using namespace vt;

namespace {

// q, k, v (B, H, N, hd) the way a ViT gets them: slices of one fused projection qkv (B, N, 3, H, hd),
// permuted to (3, B, H, N, hd). Each is a view with a row stride of 3 * H * hd.
std::vector<Tensor> split_qkv(const Tensor& qkv) {
  const Tensor stacked = permute(qkv, {2, 0, 3, 1, 4});  // (3, B, H, N, hd)
  return {squeeze(slice(stacked, 0, 0, 1), 0), squeeze(slice(stacked, 0, 1, 2), 0),
          squeeze(slice(stacked, 0, 2, 3), 0)};
}

// The same attention composed of existing autograd ops; the row max is detached because softmax does not
// depend on the shift (its gradient through the max is zero).
Tensor composed_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  const Tensor scores = mul(matmul(q, transpose(k, -1, -2)), scale);               // (B, H, N, N)
  const Tensor exps = exp(sub(scores, max(scores.detach(), {-1}, true)));          // (B, H, N, N)
  return matmul(div(exps, sum(exps, {-1}, true)), v);                              // (B, H, N, hd)
}

Tensor formula_tensor(const Shape& shape, DType dtype, double (*formula)(int64_t)) {
  std::vector<double> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i) values[i] = formula(static_cast<int64_t>(i));
  return Tensor::from_vector(values, shape, dtype);
}

}  // namespace

TEST_CASE("attention: hand-derived N=2, hd=1") {
  // q = [1, 2], k = [0, ln 3], v = [2, 6] (B = H = 1, N = 2, hd = 1), scale = 1/sqrt(1) = 1:
  // S = q k^T = [[0, ln 3], [0, 2 ln 3]], P = softmax rows = [[1/4, 3/4], [1/10, 9/10]],
  // out = P v = [2/4 + 18/4, 2/10 + 54/10] = [5, 5.6].
  const double ln3 = std::log(3.0);
  Tensor q = Tensor::from_vector({1, 2}, {1, 1, 2, 1}, DType::f64).requires_grad_();
  Tensor k = Tensor::from_vector({0, ln3}, {1, 1, 2, 1}, DType::f64).requires_grad_();
  Tensor v = Tensor::from_vector({2, 6}, {1, 1, 2, 1}, DType::f64).requires_grad_();
  Tensor out = scaled_dot_product_attention(q, k, v);  // (1, 1, 2, 1)
  CHECK(out.shape() == Shape{1, 1, 2, 1});
  testing::expect_close(out, {5.0, 5.6}, 1e-12);

  // Upstream dO = [1, 1]: dV = P^T dO = [1/4 + 1/10, 3/4 + 9/10] = [0.35, 1.65].
  // dP = dO v^T = [[2, 6], [2, 6]]; rowsum(dP * P) = [5, 5.6];
  // dS = P * (dP - rowsum) = [[-0.75, 0.75], [-0.36, 0.36]].
  // dQ = dS k = [0.75 ln 3, 0.36 ln 3]; dK = dS^T q = [-0.75 - 0.72, 0.75 + 0.72] = [-1.47, 1.47].
  out.backward(Tensor::ones({1, 1, 2, 1}, DType::f64));
  testing::expect_close(v.grad(), {0.35, 1.65}, 1e-12);
  testing::expect_close(q.grad(), {0.75 * ln3, 0.36 * ln3}, 1e-12);
  testing::expect_close(k.grad(), {-1.47, 1.47}, 1e-12);

  // A custom scale: q = [2, 4] with scale 0.5 gives the same scores, so the same output.
  Tensor q_doubled = Tensor::from_vector({2, 4}, {1, 1, 2, 1}, DType::f64);
  testing::expect_close(scaled_dot_product_attention(q_doubled, k.detach(), v.detach(), 0.5), {5.0, 5.6}, 1e-12);
}

TEST_CASE("attention: PyTorch reference values, f64 and f32") {
  // Inputs of scripts/reference/attention.py, (1, 2, 3, 4); out = softmax(q k^T / sqrt(4)) v.
  const Shape shape{1, 2, 3, 4};
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dtype));
    const double tolerance = dtype == DType::f64 ? 1e-12 : 2e-6;
    Tensor q = formula_tensor(shape, dtype, [](int64_t i) { return 2.0 * std::sin(0.37 * i + 0.1); });
    Tensor k = formula_tensor(shape, dtype, [](int64_t i) { return std::cos(0.23 * i + 0.4); });
    Tensor v = formula_tensor(shape, dtype, [](int64_t i) { return std::sin(0.51 * i - 0.3) + 0.2; });
    const Tensor upstream = formula_tensor(shape, dtype, [](int64_t i) { return std::cos(0.61 * i + 0.2); });
    q.requires_grad_();
    k.requires_grad_();
    v.requires_grad_();
    Tensor out = scaled_dot_product_attention(q, k, v);  // (1, 2, 3, 4)
    testing::expect_close(out, attention_reference::out, tolerance);
    out.backward(upstream);
    testing::expect_close(q.grad(), attention_reference::dq, tolerance);
    testing::expect_close(k.grad(), attention_reference::dk, tolerance);
    testing::expect_close(v.grad(), attention_reference::dv, tolerance);
  }
}

TEST_CASE("attention: gradcheck, contiguous q, k, v") {
  // N = 5 and hd = 3 match no block size of the GEMM kernels.
  Tensor q = testing::random_leaf({2, 2, 5, 3}, 11), k = testing::random_leaf({2, 2, 5, 3}, 12),
         v = testing::random_leaf({2, 2, 5, 3}, 13);
  testing::gradcheck([](const std::vector<Tensor>& l) { return scaled_dot_product_attention(l[0], l[1], l[2]); },
                     {q, k, v});
}

// 5 tokens take the small-head loops, 33 (one past kSmallTokens) the GEMM calls.
TEST_CASE("attention: gradcheck, q, k, v sliced from one fused qkv leaf, custom scale") {
  for (int64_t n : {5, 33}) {
    CAPTURE(n);
    Tensor qkv = testing::random_leaf({2, n, 3, 2, 3}, 21);  // (B, N, 3, H, hd)
    const std::vector<Tensor> views = split_qkv(qkv);
    for (const Tensor& t : views) {
      CHECK(t.shape() == Shape{2, 2, n, 3});
      CHECK_FALSE(t.is_contiguous());
      CHECK(t.strides()[2] == 3 * 2 * 3);  // rows 3 * H * hd apart: read in place through GEMM's leading dim
    }
    for (double scale : {0.0, 0.7}) {
      CAPTURE(scale);
      testing::gradcheck(
          [scale](const std::vector<Tensor>& l) {
            const std::vector<Tensor> qkv_views = split_qkv(l[0]);
            return scaled_dot_product_attention(qkv_views[0], qkv_views[1], qkv_views[2], scale);
          },
          {qkv});
    }
  }
}

TEST_CASE("attention: gradcheck, broadcast heads and layouts GEMM cannot read") {
  // k, v shared by every head (head stride 0, read in place); q stored (B, H, hd, N) and transposed, so its
  // last dim is not unit-stride and the op copies it.
  for (int64_t n : {5, 33}) {
    CAPTURE(n);
    Tensor q_stored = testing::random_leaf({2, 3, 3, n}, 31);  // (B, H, hd, N)
    Tensor k_shared = testing::random_leaf({2, 1, n, 3}, 32);  // (B, 1, N, hd)
    Tensor v_shared = testing::random_leaf({2, 1, n, 3}, 33);  // (B, 1, N, hd)
    testing::gradcheck(
        [n](const std::vector<Tensor>& l) {
          return scaled_dot_product_attention(transpose(l[0], 2, 3), expand(l[1], {2, 3, n, 3}),
                                              expand(l[2], {2, 3, n, 3}), 0.4);
        },
        {q_stored, k_shared, v_shared});
  }
}

TEST_CASE("attention: gradcheck with only some inputs requiring grad") {
  Tensor q = testing::random_leaf({1, 2, 4, 3}, 41), k = testing::random_leaf({1, 2, 4, 3}, 42),
         v = testing::random_leaf({1, 2, 4, 3}, 43);
  auto attention = [](const std::vector<Tensor>& l) { return scaled_dot_product_attention(l[0], l[1], l[2]); };
  SUBCASE("q only (dS without dV)") {
    k.requires_grad_(false);
    v.requires_grad_(false);
    testing::gradcheck(attention, {q, k, v});
    CHECK_FALSE(v.grad().defined());
  }
  SUBCASE("v only (dV without dS)") {
    q.requires_grad_(false);
    k.requires_grad_(false);
    testing::gradcheck(attention, {q, k, v});
    CHECK_FALSE(q.grad().defined());
  }
  CHECK_FALSE(k.grad().defined());
}

TEST_CASE("attention: equals softmax(q k^T * scale) v composed of autograd ops, values and gradients") {
  // The ViT's path end to end: q, k, v sliced from a fused qkv, heads merged after attention with
  // transpose(1, 2).reshape(B, N, H * hd); the gradient then reaches the op as a strided (B, H, N, hd) view.
  Tensor qkv = testing::random_leaf({2, 9, 3, 3, 4}, 51, 2.0);  // (B, N, 3, H, hd)
  Tensor qkv_composed = qkv.detach().clone().requires_grad_();
  Generator generator(52);
  const Tensor upstream = randn({2, 9, 12}, DType::f64, generator);  // (B, N, H * hd)
  auto merge_heads = [](const Tensor& heads) { return reshape(transpose(heads, 1, 2), {2, 9, 12}); };

  const std::vector<Tensor> views = split_qkv(qkv), views_composed = split_qkv(qkv_composed);
  Tensor out = merge_heads(scaled_dot_product_attention(views[0], views[1], views[2], 0.3));  // (B, N, H * hd)
  Tensor out_composed = merge_heads(composed_attention(views_composed[0], views_composed[1], views_composed[2], 0.3));
  testing::expect_close(out, out_composed, 1e-12);
  out.backward(upstream);
  out_composed.backward(upstream);
  testing::expect_close(qkv.grad(), qkv_composed.grad(), 1e-12);
}

TEST_CASE("attention: the output is stored (B, N, H, hd), so merging heads is a view") {
  Tensor q = testing::random_leaf({2, 3, 4, 5}, 61), k = testing::random_leaf({2, 3, 4, 5}, 62),
         v = testing::random_leaf({2, 3, 4, 5}, 63);
  Tensor out = scaled_dot_product_attention(q, k, v);  // (B, H, N, hd)
  const Tensor merged = transpose(out, 1, 2);           // (B, N, H, hd)
  CHECK(merged.is_contiguous());
  CHECK(merged.storage() == out.storage());
  testing::expect_close(out, composed_attention(q.detach(), k.detach(), v.detach(), 1 / std::sqrt(5.0)), 1e-12);
}

TEST_CASE("attention: fast kernels match the reference loops, f32 and f64") {
  struct Case {
    int64_t batch, heads, tokens, head_dim;
  };
  // Odd sizes, the CIFAR ViT's 65 tokens, TNT's pixel attention (16 tokens, head dim 6) and the largest
  // small head (32, 16) in the small-head loops, one past either limit (GEMM calls), and enough heads that
  // the kernels run multi-threaded.
  for (const Case& c : {Case{3, 2, 7, 5}, Case{2, 3, 65, 16}, Case{1, 1, 1, 3}, Case{64, 2, 16, 6}, Case{64, 2, 32, 16},
                        Case{3, 2, 33, 6}, Case{3, 2, 16, 17}}) {
    for (DType dtype : {DType::f32, DType::f64}) {
      CAPTURE(c.tokens);
      CAPTURE(c.head_dim);
      CAPTURE(dtype_name(dtype));
      Generator generator(71);
      Tensor qkv = randn({c.batch, c.tokens, 3, c.heads, c.head_dim}, dtype, generator).requires_grad_();
      const Tensor upstream = randn({c.batch, c.heads, c.tokens, c.head_dim}, dtype, generator);
      const std::vector<Tensor> views = split_qkv(qkv);
      Tensor out = scaled_dot_product_attention(views[0], views[1], views[2]);  // (B, H, N, hd)
      out.backward(upstream);
      const std::vector<Tensor> grads = split_qkv(qkv.grad());  // dq, dk, dv (B, H, N, hd)

      const Shape shape{c.batch, c.heads, c.tokens, c.head_dim};
      const Tensor q = views[0].clone(), k = views[1].clone(), v = views[2].clone(), dout = upstream.clone();
      Tensor out_reference = Tensor::empty(shape, dtype), dq = Tensor::empty(shape, dtype),
             dk = Tensor::empty(shape, dtype), dv = Tensor::empty(shape, dtype);
      Tensor probs = Tensor::empty({c.batch, c.heads, c.tokens, c.tokens}, dtype);
      const int64_t batch_heads = c.batch * c.heads;
      const double scale = 1 / std::sqrt(static_cast<double>(c.head_dim));
      if (dtype == DType::f32) {
        attention_forward_reference(out_reference.data<float>(), probs.data<float>(), q.data<float>(), k.data<float>(),
                                    v.data<float>(), batch_heads, c.tokens, c.head_dim, scale);
        attention_backward_reference(dq.data<float>(), dk.data<float>(), dv.data<float>(), dout.data<float>(),
                                     probs.data<float>(), q.data<float>(), k.data<float>(), v.data<float>(),
                                     batch_heads, c.tokens, c.head_dim, scale);
      } else {
        attention_forward_reference(out_reference.data<double>(), probs.data<double>(), q.data<double>(),
                                    k.data<double>(), v.data<double>(), batch_heads, c.tokens, c.head_dim, scale);
        attention_backward_reference(dq.data<double>(), dk.data<double>(), dv.data<double>(), dout.data<double>(),
                                     probs.data<double>(), q.data<double>(), k.data<double>(), v.data<double>(),
                                     batch_heads, c.tokens, c.head_dim, scale);
      }
      const double atol = dtype == DType::f32 ? 2e-5 : 1e-12, rtol = dtype == DType::f32 ? 1e-4 : 1e-10;
      testing::expect_close(out, out_reference, atol, rtol);
      testing::expect_close(grads[0], dq, atol, rtol);
      testing::expect_close(grads[1], dk, atol, rtol);
      testing::expect_close(grads[2], dv, atol, rtol);
    }
  }
}

TEST_CASE("attention: the fused float32 heads (head dim a multiple of 16) match the reference loops") {
  // Called directly, so that a build without AVX-512 (where attention_*_cpu keep OpenBLAS) checks them too.
  // vit_cifar's heads (65 tokens, head dim 64: S in one chunk of 5 vectors, the last with one key), 100 keys
  // (chunks of 5 and 2 vectors), 16 keys (no padding), one token, head dim 48, and two blocks of query rows
  // (200 tokens as 128 + 72, dK summed over both; 130 as 128 + 2 with head dim 128, 5 + 3 vectors of
  // features); q, k, v and dq, dk, dv are views of fused (B, N, 3, H, hd) buffers, row stride 3 H hd, as in a
  // model; dO and O are (B, N, H, hd).
  struct Case {
    int64_t batch, heads, tokens, head_dim;
  };
  for (const Case& c : {Case{2, 3, 65, 64}, Case{1, 2, 100, 32}, Case{3, 2, 16, 16}, Case{2, 2, 1, 16},
                        Case{2, 1, 33, 48}, Case{1, 2, 200, 64}, Case{1, 1, 130, 128}}) {
    CAPTURE(c.tokens);
    CAPTURE(c.head_dim);
    const int64_t b = c.batch, h = c.heads, n = c.tokens, d = c.head_dim, bh = b * h;
    Generator generator(73);
    const Tensor qkv = randn({b, n, 3, h, d}, DType::f32, generator), dout = randn({b, n, h, d}, DType::f32, generator);
    const HeadStrides fused_rows{n * 3 * h * d, d, 3 * h * d}, rows{n * h * d, d, h * d};
    const AttentionSizes sizes{b, h, n, d};
    const float scale = 1 / std::sqrt(static_cast<float>(d));
    Tensor out = Tensor::empty({b, n, h, d}), probs = Tensor::empty({bh, n, n}), gradients = Tensor::empty(qkv.shape());
    const float* q = qkv.data<float>();
    float* dq = gradients.data<float>();
    attention_forward_fused_cpu(out.data<float>(), probs.data<float>(), q, q + h * d, q + 2 * h * d, rows, fused_rows,
                                fused_rows, fused_rows, sizes, scale);
    attention_backward_fused_cpu(dq, dq + h * d, dq + 2 * h * d, dout.data<float>(), probs.data<float>(), q,
                                 q + h * d, q + 2 * h * d, fused_rows, fused_rows, fused_rows, rows, fused_rows,
                                 fused_rows, fused_rows, sizes, scale);

    // The reference on contiguous (B, H, N, hd) copies.
    auto heads = [](const Tensor& t) { return contiguous(transpose(t, 1, 2)); };  // (B, N, H, hd) -> (B, H, N, hd)
    auto part = [](const Tensor& t, int64_t i) { return squeeze(slice(t, 2, i, i + 1), 2); };  // q, k or v of (B, N, 3, H, hd)
    const Tensor q_ref = heads(part(qkv, 0)), k_ref = heads(part(qkv, 1)), v_ref = heads(part(qkv, 2));
    const Tensor dout_ref = heads(dout);
    const Shape shape{b, h, n, d};
    Tensor out_ref = Tensor::empty(shape), probs_ref = Tensor::empty({bh, n, n}), dq_ref = Tensor::empty(shape),
           dk_ref = Tensor::empty(shape), dv_ref = Tensor::empty(shape);
    attention_forward_reference(out_ref.data<float>(), probs_ref.data<float>(), q_ref.data<float>(),
                                k_ref.data<float>(), v_ref.data<float>(), bh, n, d, scale);
    attention_backward_reference(dq_ref.data<float>(), dk_ref.data<float>(), dv_ref.data<float>(),
                                 dout_ref.data<float>(), probs_ref.data<float>(), q_ref.data<float>(),
                                 k_ref.data<float>(), v_ref.data<float>(), bh, n, d, scale);
    testing::expect_close(heads(out), out_ref, 2e-5, 1e-4);
    testing::expect_close(probs, probs_ref, 1e-6, 1e-5);
    testing::expect_close(heads(part(gradients, 0)), dq_ref, 2e-5, 1e-4);
    testing::expect_close(heads(part(gradients, 1)), dk_ref, 2e-5, 1e-4);
    testing::expect_close(heads(part(gradients, 2)), dv_ref, 2e-5, 1e-4);

    // Without P (inference) the output has the same bits; the backward skips the gradients nobody wants and
    // gives the others unchanged.
    Tensor out_alone = Tensor::empty({b, n, h, d});
    attention_forward_fused_cpu(out_alone.data<float>(), nullptr, q, q + h * d, q + 2 * h * d, rows, fused_rows,
                                fused_rows, fused_rows, sizes, scale);
    CHECK(out_alone.to_vector() == out.to_vector());
    Tensor dk_alone = Tensor::zeros(qkv.shape());
    attention_backward_fused_cpu(nullptr, dk_alone.data<float>() + h * d, nullptr, dout.data<float>(),
                                 probs.data<float>(), q, q + h * d, q + 2 * h * d, {}, fused_rows, {}, rows,
                                 fused_rows, fused_rows, fused_rows, sizes, scale);
    CHECK(part(dk_alone, 1).to_vector() == part(gradients, 1).to_vector());
    CHECK(part(dk_alone, 0).to_vector() == std::vector<double>(b * n * h * d, 0.0));  // dq and dv: untouched
    CHECK(part(dk_alone, 2).to_vector() == std::vector<double>(b * n * h * d, 0.0));
  }
}

TEST_CASE("attention: inference keeps no probabilities and gives the training forward's output") {
  // Without a backward to come, the fused heads (float32, head dim a multiple of 16, on builds for AVX-512)
  // write no P at all; every other kernel still writes its (B, H, N, N) P. Either way the output must be the
  // training forward's, bit for bit: pixel heads, small heads, GEMM heads, fused heads, through both ops.
  struct Case {
    int64_t tokens, head_dim;
  };
  for (const Case& c : {Case{16, 6}, Case{7, 5}, Case{40, 20}, Case{65, 64}}) {
    CAPTURE(c.tokens);
    CAPTURE(c.head_dim);
    Generator generator(74);
    const Tensor qkv = randn({8, c.tokens, 3, 2, c.head_dim}, DType::f32, generator).requires_grad_();
    const std::vector<Tensor> views = split_qkv(qkv);
    const Tensor trained = scaled_dot_product_attention(views[0], views[1], views[2]);
    Tensor inferred;
    {
      NoGradGuard no_grad;
      inferred = scaled_dot_product_attention(views[0], views[1], views[2]);
    }
    CHECK(trained.requires_grad());
    CHECK_FALSE(inferred.requires_grad());
    CHECK(inferred.to_vector() == trained.to_vector());
    const Tensor merged = multi_head_attention({qkv.detach().reshape({8, c.tokens, 6 * c.head_dim})}, 2);
    CHECK(contiguous(transpose(trained, 1, 2)).reshape({8, c.tokens, 2 * c.head_dim}).to_vector() ==
          merged.to_vector());
  }
}

TEST_CASE("attention: TNT's pixel heads (16 tokens, head dim 6) in float32, some gradients only") {
  // The pixel-head kernel skips the gradients nobody wants (dS is not even formed without dq and dk); the ones
  // it gives must equal those of the full backward (the same kernel, so the same bits).
  Generator generator(72);
  std::vector<Tensor> qkv;  // q, k, v (B, N, H, hd), read as (B, H, N, hd) views as in a model
  for (int64_t i = 0; i < 3; ++i) qkv.push_back(randn({64, 16, 2, 6}, DType::f32, generator));
  const Tensor upstream = randn({64, 2, 16, 6}, DType::f32, generator);
  auto gradients = [&](bool q_grad, bool k_grad, bool v_grad) {
    std::vector<Tensor> leaves;
    for (int64_t i = 0; i < 3; ++i) leaves.push_back(qkv[i].clone().requires_grad_(i == 0 ? q_grad : i == 1 ? k_grad : v_grad));
    auto head_view = [](const Tensor& t) { return transpose(t, 1, 2); };  // (B, N, H, hd) -> (B, H, N, hd)
    scaled_dot_product_attention(head_view(leaves[0]), head_view(leaves[1]), head_view(leaves[2])).backward(upstream);
    return leaves;
  };
  const std::vector<Tensor> all = gradients(true, true, true);
  for (int64_t wanted = 0; wanted < 3; ++wanted) {
    CAPTURE(wanted);
    const std::vector<Tensor> some = gradients(wanted == 0, wanted == 1, wanted == 2);
    for (int64_t i = 0; i < 3; ++i) CHECK(some[i].grad().defined() == (i == wanted));
    CHECK(some[wanted].grad().to_vector() == all[wanted].grad().to_vector());
  }
}

TEST_CASE("attention: misuse fails loudly") {
  const Tensor x = Tensor::zeros({2, 2, 5, 3});
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(x, Tensor::zeros({2, 2, 4, 3}), x),
                       doctest::Contains("shapes differ"), std::runtime_error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(x, x, Tensor::zeros({2, 2, 5, 4})),
                       doctest::Contains("shapes differ"), std::runtime_error);
  const Tensor three_dims = Tensor::zeros({2, 5, 3});
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(three_dims, three_dims, three_dims),
                       doctest::Contains("(B, H, N, hd)"), std::runtime_error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(x, x, Tensor::zeros({2, 2, 5, 3}, DType::f64)),
                       doctest::Contains("one dtype"), std::runtime_error);
  const Tensor indices = Tensor::zeros({2, 2, 5, 3}, DType::i64);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(indices, indices, indices), doctest::Contains("float"),
                       std::runtime_error);
  const Tensor no_tokens = Tensor::zeros({2, 2, 0, 3});
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(no_tokens, no_tokens, no_tokens),
                       doctest::Contains("at least one token"), std::runtime_error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(x, x, x, std::nan("")), doctest::Contains("finite"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(x, Tensor(), x), doctest::Contains("undefined"),
                       std::runtime_error);
}

// multi_head_attention({qkv}) is scaled_dot_product_attention on qkv's head views with the heads merged:
// out (B, N, H * hd) = merge(softmax(q k^T * scale) v), q, k, v = the three D-wide blocks of each row.
TEST_CASE("multi_head_attention: equals scaled_dot_product_attention on the head views, values and gradients") {
  for (int64_t n : {5, 33}) {  // the small-head loops and the GEMM calls
    CAPTURE(n);
    Tensor qkv = testing::random_leaf({2, n, 3 * 2 * 4}, 81, 2.0);  // (B, N, 3D), D = H * hd = 2 * 4
    Tensor qkv_views = qkv.detach().clone().requires_grad_();
    Generator generator(82);
    const Tensor upstream = randn({2, n, 8}, DType::f64, generator);  // (B, N, D)
    Tensor out = multi_head_attention({qkv}, 2, 0.3);                // (B, N, D)
    const std::vector<Tensor> views = split_qkv(view(qkv_views, {2, n, 3, 2, 4}));
    Tensor out_views = reshape(transpose(scaled_dot_product_attention(views[0], views[1], views[2], 0.3), 1, 2), {2, n, 8});
    CHECK(out.shape() == Shape{2, n, 8});
    CHECK(out.is_contiguous());
    testing::expect_close(out, out_views, 1e-12);
    out.backward(upstream);
    out_views.backward(upstream);
    CHECK(qkv.grad().is_contiguous());
    testing::expect_close(qkv.grad(), qkv_views.grad(), 1e-12);
  }
}

TEST_CASE("multi_head_attention: gradcheck on {qkv}, {qk, v} and {q, k, v}, strided and broadcast projections") {
  for (int64_t n : {5, 33}) {
    CAPTURE(n);
    Tensor qkv = testing::random_leaf({2, n, 18}, 91);                         // (B, N, 3D), D = 3 heads of 2
    Tensor qk = testing::random_leaf({2, n, 12}, 92), v = testing::random_leaf({2, n, 6}, 93);
    Tensor q_wide = testing::random_leaf({2, n, 10}, 94);                      // q = columns 2..8: rows 10 apart
    Tensor k_transposed = testing::random_leaf({2, 6, n}, 95);                 // k stored (B, D, N): copied
    Tensor v_shared = testing::random_leaf({1, n, 6}, 96);                     // one v for the whole batch
    for (double scale : {0.0, 0.7}) {
      CAPTURE(scale);
      testing::gradcheck([scale](const std::vector<Tensor>& l) { return multi_head_attention({l[0]}, 3, scale); }, {qkv});
      testing::gradcheck([scale](const std::vector<Tensor>& l) { return multi_head_attention({l[0], l[1]}, 3, scale); },
                         {qk, v});
      testing::gradcheck(
          [scale, n](const std::vector<Tensor>& l) {
            return multi_head_attention({slice(l[0], 2, 2, 8), transpose(l[1], 1, 2), expand(l[2], {2, n, 6})}, 3, scale);
          },
          {q_wide, k_transposed, v_shared});
    }
  }
}

TEST_CASE("multi_head_attention: gradcheck with only some projections requiring grad") {
  Tensor qk = testing::random_leaf({2, 4, 8}, 101), v = testing::random_leaf({2, 4, 4}, 102);
  auto attention = [](const std::vector<Tensor>& l) { return multi_head_attention({l[0], l[1]}, 2); };
  SUBCASE("qk only") {
    v.requires_grad_(false);
    testing::gradcheck(attention, {qk, v});
    CHECK_FALSE(v.grad().defined());
  }
  SUBCASE("v only") {
    qk.requires_grad_(false);
    testing::gradcheck(attention, {qk, v});
    CHECK_FALSE(qk.grad().defined());
  }
}

TEST_CASE("multi_head_attention: misuse fails loudly") {
  const Tensor qkv = Tensor::zeros({2, 5, 12});
  CHECK_THROWS_WITH_AS(multi_head_attention({}, 2), doctest::Contains("1 to 3 projections"), std::runtime_error);
  CHECK_THROWS_WITH_AS(multi_head_attention({qkv, qkv, qkv, qkv}, 2), doctest::Contains("1 to 3 projections"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(multi_head_attention({qkv, Tensor()}, 2), doctest::Contains("undefined"), std::runtime_error);
  CHECK_THROWS_WITH_AS(multi_head_attention({Tensor::zeros({10, 12})}, 2), doctest::Contains("(B, N, width)"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(multi_head_attention({qkv}, 3), doctest::Contains("divisible by 3 heads"), std::runtime_error);
  CHECK_THROWS_WITH_AS(multi_head_attention({qkv}, 0), doctest::Contains("divisible by 0 heads"), std::runtime_error);
  CHECK_THROWS_WITH_AS(multi_head_attention({Tensor::zeros({2, 5, 10})}, 1), doctest::Contains("D features"),
                       std::runtime_error);
  // D = 4 from the widths 6 + 6 = 12, so the first projection ends halfway through k.
  CHECK_THROWS_WITH_AS(multi_head_attention({Tensor::zeros({2, 5, 6}), Tensor::zeros({2, 5, 6})}, 2),
                       doctest::Contains("splits q, k or v"), std::runtime_error);
  CHECK_THROWS_WITH_AS(multi_head_attention({Tensor::zeros({2, 5, 8}), Tensor::zeros({2, 4, 4})}, 2),
                       doctest::Contains("batch or tokens"), std::runtime_error);
  CHECK_THROWS_WITH_AS(multi_head_attention({Tensor::zeros({2, 5, 8}), Tensor::zeros({2, 5, 4}, DType::f64)}, 2),
                       doctest::Contains("one dtype"), std::runtime_error);
  CHECK_THROWS_WITH_AS(multi_head_attention({Tensor::zeros({2, 5, 12}, DType::i64)}, 2), doctest::Contains("float"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(multi_head_attention({Tensor::zeros({2, 0, 12})}, 2), doctest::Contains("at least one token"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(multi_head_attention({qkv}, 2, std::nan("")), doctest::Contains("finite"), std::runtime_error);
}
