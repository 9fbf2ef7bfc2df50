// unfold and conv2d: hand-derived and PyTorch reference values (tests/reference/conv.h), conv as unfold + linear,
// gradient checks (plain, no bias, non-contiguous x, channels-last upstream), the fast kernels against the
// reference loops on odd sizes, and misuse errors.
#include <cmath>

#include "ops/conv_kernels.h"
#include "tests/helpers.h"
#include "tests/reference/conv.h"

using namespace vt;
using testing::expect_close;
using testing::gradcheck;
using testing::random_leaf;

namespace {

// The generator's inputs: element i (row-major) = scale * sin(a * i + b).
Tensor formula(const Shape& shape, double a, double b, double scale, DType dtype) {
  std::vector<double> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i) values[i] = scale * std::sin(a * static_cast<double>(i) + b);
  return Tensor::from_vector(values, shape, dtype);
}
Tensor reference_image(const Shape& shape, DType dtype) { return formula(shape, 0.37, 0.1, 1.0, dtype); }
Tensor reference_weight(const Shape& shape, DType dtype) { return formula(shape, 0.23, 0.4, 0.5, dtype); }
Tensor reference_bias(int64_t n, DType dtype) {
  std::vector<double> values(n);
  for (int64_t o = 0; o < n; ++o) values[o] = 0.1 * static_cast<double>(o) - 0.2;
  return Tensor::from_vector(values, {n}, dtype);
}

double tolerance(DType dtype) { return dtype == DType::f32 ? 2e-5 : 1e-12; }

}  // namespace

TEST_CASE("unfold: hand-derived patches, row order (c, ki, kj)") {
  // x (1, 2, 3, 3): channel 0 = [[1, 2, 3], [4, 5, 6], [7, 8, 9]], channel 1 = channel 0 + 9.
  std::vector<double> values(18);
  for (int i = 0; i < 18; ++i) values[i] = i + 1;
  const Tensor x = Tensor::from_vector(values, {1, 2, 3, 3});
  // kernel 2x2, stride 1: L = 2*2 positions with top-left corners (0,0), (0,1), (1,0), (1,1); row (c, ki, kj)
  // holds x[c, oh + ki, ow + kj] over the positions, e.g. row (0, 0, 1) = [2, 3, 5, 6].
  const Tensor y = unfold(x, 2, 2);
  CHECK(y.shape() == Shape{1, 8, 4});
  expect_close(y, {1, 2, 4, 5,      2, 3, 5, 6,      4, 5, 7, 8,      5, 6, 8, 9,
                   10, 11, 13, 14,  11, 12, 14, 15,  13, 14, 16, 17,  14, 15, 17, 18});
  // kernel 2x2, stride 2, padding 1: Ho = (3 + 2 - 2) / 2 + 1 = 2, corners at (-1,-1), (-1,1), (1,-1), (1,1);
  // row (0, 0, 0) reads x[-1,-1], x[-1,1], x[1,-1], x[1,1] = [0, 0, 0, 5] (zeros on the padding).
  const Tensor padded = unfold(x, 2, 2, 2, 1);
  CHECK(padded.shape() == Shape{1, 8, 4});
  expect_close(padded, {0, 0, 0, 5,  0, 0, 4, 6,  0, 2, 0, 8,  1, 3, 7, 9,
                        0, 0, 0, 14, 0, 0, 13, 15, 0, 11, 0, 17, 10, 12, 16, 18});
  // kernel 3x1 (non-square), stride 1: Ho = 1, Wo = 3, rows (c, ki, 0) = column ow of channel c, row ki.
  expect_close(unfold(x, 3, 1), {1, 2, 3,  4, 5, 6,  7, 8, 9,  10, 11, 12,  13, 14, 15,  16, 17, 18});
}

TEST_CASE("unfold: PyTorch reference, non-square kernel (3, 2), stride 2, padding 1") {
  for (DType dtype : {DType::f64, DType::f32}) {
    const Tensor y = unfold(reference_image({2, 2, 5, 4}, dtype), 3, 2, 2, 1);
    // Ho = (5 + 2 - 3) / 2 + 1 = 3, Wo = (4 + 2 - 2) / 2 + 1 = 3: (2, 2*3*2, 9)
    CHECK(y.shape() == Shape{2, 12, 9});
    expect_close(y, conv_reference::kUnfoldK3x2S2P1, tolerance(dtype));
  }
}

TEST_CASE("conv2d: PyTorch reference values") {
  for (DType dtype : {DType::f64, DType::f32}) {
    INFO("dtype " << dtype_name(dtype));
    const double tol = tolerance(dtype);
    // kernel 3, stride 1, padding 1 keeps 5x6
    const Tensor same = conv2d(reference_image({2, 3, 5, 6}, dtype), reference_weight({4, 3, 3, 3}, dtype),
                               reference_bias(4, dtype), 1, 1);
    CHECK(same.shape() == Shape{2, 4, 5, 6});
    expect_close(same, conv_reference::kConvK3S1P1, tol, tol);
    // kernel = stride = 4 (ViT patch embedding): 8x12 -> 2x3 patches
    const Tensor patch = conv2d(reference_image({2, 3, 8, 12}, dtype), reference_weight({5, 3, 4, 4}, dtype),
                                reference_bias(5, dtype), 4, 0);
    CHECK(patch.shape() == Shape{2, 5, 2, 3});
    expect_close(patch, conv_reference::kConvK4S4P0, tol, tol);
    // kernel 7, stride 4, padding 3 (TNT pixel embedding), no bias: (16 + 6 - 7) / 4 + 1 = 4
    const Tensor pixel = conv2d(reference_image({2, 3, 16, 16}, dtype), reference_weight({4, 3, 7, 7}, dtype),
                                Tensor(), 4, 3);
    CHECK(pixel.shape() == Shape{2, 4, 4, 4});
    expect_close(pixel, conv_reference::kConvK7S4P3, tol, tol);
  }
}

TEST_CASE("conv2d: kernel = stride = patch is unfold + linear, and patch tokens come out contiguous") {
  const Tensor x = random_leaf({2, 3, 8, 12}, 501), w = random_leaf({6, 3, 4, 4}, 502), b = random_leaf({6}, 503);
  const Tensor y = conv2d(x, w, b, 4, 0);  // (2, 6, 2, 3)
  // unfold (2, 48, 6) -> tokens (2, 6 positions, 48) -> linear with W (6, 48) -> (2, 6 positions, 6 channels)
  const Tensor tokens = transpose(unfold(x, 4, 4, 4, 0), 1, 2);
  const Tensor expected = linear(tokens, reshape(w, {6, 3 * 4 * 4}), b);
  const Tensor y_tokens = transpose(flatten(y, 2), 1, 2);  // (2, 6 positions, 6 channels)
  expect_close(y_tokens, expected, 1e-12);
  // The patch-embedding idiom reads conv2d's memory as is: no transposing copy downstream.
  CHECK(y_tokens.is_contiguous());
  CHECK(tokens.is_contiguous());
}

TEST_CASE("unfold: gradients (fold), overlapping windows, padding, non-contiguous x") {
  const Tensor x = random_leaf({2, 2, 5, 4}, 511);
  gradcheck([](const auto& l) { return unfold(l[0], 3, 2, 2, 1); }, {x});
  gradcheck([](const auto& l) { return unfold(l[0], 3, 3, 1, 1); }, {x});  // every pixel in up to 9 windows
  gradcheck([](const auto& l) { return unfold(l[0], 2, 2, 2, 0); }, {x});  // disjoint; last row of x unused
  // x laid out (B, H, W, C) in memory, permuted to (B, C, H, W)
  const Tensor channels_last = random_leaf({2, 5, 4, 3}, 512);
  gradcheck([](const auto& l) { return unfold(permute(l[0], {0, 3, 1, 2}), 2, 3, 1, 1); }, {channels_last});
  // The patch-token idiom: the upstream gradient arrives as a contiguous (B, L, C*kh*kw).
  gradcheck([](const auto& l) { return transpose(unfold(l[0], 2, 2, 2, 0), 1, 2); }, {x});
}

TEST_CASE("conv2d: gradients w.r.t. x, weight and bias") {
  const Tensor x = random_leaf({2, 3, 5, 6}, 521), w3 = random_leaf({4, 3, 3, 3}, 522), b = random_leaf({4}, 523);
  gradcheck([](const auto& l) { return conv2d(l[0], l[1], l[2], 1, 1); }, {x, w3, b});
  gradcheck([](const auto& l) { return conv2d(l[0], l[1], Tensor(), 2, 1); }, {x, w3});  // stride 2, no bias
  gradcheck([](const auto& l) { return conv2d(l[0], l[1], l[2], 1, 0); }, {x, w3, b});   // no padding
  // kernel = stride = 2, padding 0; channels-last upstream through the patch-token idiom
  const Tensor w2 = random_leaf({5, 3, 2, 2}, 524), b5 = random_leaf({5}, 525);
  gradcheck([](const auto& l) { return transpose(flatten(conv2d(l[0], l[1], l[2], 2, 0), 2), 1, 2); }, {x, w2, b5});
  // kernel 5 > stride 2 with padding 2 (TNT-like: windows overlap and hang over the border)
  const Tensor x8 = random_leaf({1, 2, 8, 8}, 526), w5 = random_leaf({3, 2, 5, 5}, 527), b3 = random_leaf({3}, 528);
  gradcheck([](const auto& l) { return conv2d(l[0], l[1], l[2], 2, 2); }, {x8, w5, b3});
  // Non-contiguous x: a leaf laid out (B, H, W, C), permuted to (B, C, H, W)
  const Tensor channels_last = random_leaf({2, 5, 6, 3}, 529);
  gradcheck([](const auto& l) { return conv2d(permute(l[0], {0, 3, 1, 2}), l[1], l[2], 1, 1); },
            {channels_last, w3, b});
  // Only some inputs want gradients: an input image (dweight, dbias only) and a frozen weight (dx only).
  gradcheck([](const auto& l) { return conv2d(l[0], l[1], l[2], 1, 1); }, {x.detach(), w3, b});
  gradcheck([](const auto& l) { return conv2d(l[0], l[1], l[2], 1, 1); }, {x, w3.detach(), b.detach()});
}

TEST_CASE("conv kernels: fast im2col, col2im and conv2d match the reference loops") {
  const std::vector<ConvGeometry> geometries = {
      make_conv_geometry(3, 2, 7, 5, 3, 2, 2, 1),      // odd sizes, non-square kernel
      make_conv_geometry(2, 3, 9, 9, 3, 3, 1, 1),      // overlapping windows
      make_conv_geometry(2, 3, 12, 8, 4, 4, 4, 0),     // kernel = stride: a pure rearrangement
      make_conv_geometry(1, 2, 16, 16, 7, 7, 4, 3),    // TNT pixel embedding
      make_conv_geometry(2, 1, 5, 5, 2, 3, 3, 3),      // padding larger than the kernel: all-zero patches
      make_conv_geometry(2, 2, 8, 9, 2, 2, 3, 1),      // stride > kernel: pixels no window reads
      make_conv_geometry(1, 2, 3, 3, 5, 5, 1, 1),      // kernel covers the whole padded input
      make_conv_geometry(3, 12, 32, 32, 4, 4, 4, 0),   // patch embedding, large enough to run threaded
      make_conv_geometry(2, 3, 32, 32, 3, 3, 1, 1),    // threaded, overlapping
      make_conv_geometry(2, 3, 32, 32, 7, 7, 1, 3),    // tnt_cifar with timm's 7x7 pixel embedding, threaded
  };
  const int64_t out_channels = 7;
  Generator generator(531);
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tol = dtype == DType::f32 ? 1e-4 : 1e-11;
    for (const ConvGeometry& g : geometries) {
      INFO(dtype_name(dtype) << " x (" << g.batch << ", " << g.channels << ", " << g.height << ", " << g.width
                             << "), kernel (" << g.kernel_h << ", " << g.kernel_w << "), stride " << g.stride
                             << ", padding " << g.padding);
      const int64_t rows = g.batch * g.positions(), k = g.patch_size();
      const Tensor x = randn({g.batch, g.channels, g.height, g.width}, dtype, generator);
      const Tensor w = randn({out_channels, g.channels, g.kernel_h, g.kernel_w}, dtype, generator);
      const Tensor bias = randn({out_channels}, dtype, generator);
      const Tensor upstream = randn({rows, k}, dtype, generator);  // a gradient in patch layout
      const Tensor dy = randn({g.batch, g.out_h, g.out_w, out_channels}, dtype, generator);
      Tensor patches = Tensor::empty({rows, k}, dtype), patches_ref = Tensor::empty({rows, k}, dtype);
      Tensor dx = Tensor::empty(x.shape(), dtype), dx_ref = Tensor::empty(x.shape(), dtype);
      Tensor folded = Tensor::empty(x.shape(), dtype), folded_ref = Tensor::empty(x.shape(), dtype);
      Tensor y = Tensor::empty(dy.shape(), dtype), y_ref = Tensor::empty(dy.shape(), dtype);
      Tensor dw = Tensor::empty(w.shape(), dtype), dw_ref = Tensor::empty(w.shape(), dtype);
      Tensor db_ref = Tensor::empty({out_channels}, dtype), dpatches = Tensor::empty({rows, k}, dtype);
      auto run = [&]<class T>(T) {
        im2col_reference(patches_ref.data<T>(), x.data<T>(), g);
        col2im_cpu(folded.data<T>(), upstream.data<T>(), g);
        col2im_reference(folded_ref.data<T>(), upstream.data<T>(), g);
        conv2d_forward_cpu(y.data<T>(), patches.data<T>(), x.data<T>(), w.data<T>(), bias.data<T>(), g, out_channels);
        conv2d_forward_reference(y_ref.data<T>(), x.data<T>(), w.data<T>(), bias.data<T>(), g, out_channels);
        conv2d_backward_cpu(dx.data<T>(), dw.data<T>(), dpatches.data<T>(), dy.data<T>(), patches.data<T>(),
                            w.data<T>(), g, out_channels);
        conv2d_backward_reference(dx_ref.data<T>(), dw_ref.data<T>(), db_ref.data<T>(), dy.data<T>(), x.data<T>(),
                                  w.data<T>(), g, out_channels);
      };
      if (dtype == DType::f32) run(float{});
      else run(double{});
      CHECK(patches.to_vector() == patches_ref.to_vector());  // conv2d_forward_cpu's im2col: exact copies
      expect_close(folded, folded_ref, tol, tol);
      expect_close(y, y_ref, tol, tol);
      expect_close(dx, dx_ref, tol, tol);
      expect_close(dw, dw_ref, tol, tol);
      // The op's bias gradient is the sum of dy over (B, Ho, Wo).
      expect_close(sum(reshape(dy, {rows, out_channels}), {0}), db_ref, tol, tol);
    }
  }
}

TEST_CASE("unfold and conv2d: misuse fails loudly") {
  const Tensor x = Tensor::ones({2, 3, 8, 8});
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::ones({4, 2, 3, 3}), Tensor()),
                       doctest::Contains("conv2d: x f32(2, 3, 8, 8) has 3 channels but weight"), std::runtime_error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::ones({4, 3, 11, 11}), Tensor(), 1, 1),
                       doctest::Contains("kernel (11, 11) is larger than the input f32(2, 3, 8, 8) with padding 1"),
                       std::runtime_error);
  CHECK_NOTHROW(conv2d(x, Tensor::ones({4, 3, 10, 10}), Tensor(), 1, 1));  // exactly fits: one position
  CHECK_THROWS_WITH_AS(conv2d(Tensor::ones({3, 8, 8}), Tensor::ones({4, 3, 3, 3}), Tensor()),
                       doctest::Contains("conv2d: expects x (B, C, H, W), got f32(3, 8, 8)"), std::runtime_error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::ones({4, 27}), Tensor()),
                       doctest::Contains("conv2d: expects weight (O, C, kh, kw), got f32(4, 27)"), std::runtime_error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::ones({4, 3, 3, 3}), Tensor::ones({3})),
                       doctest::Contains("conv2d: bias f32(3) does not match weight"), std::runtime_error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::ones({4, 3, 3, 3}, DType::f64), Tensor()),
                       doctest::Contains("conv2d: needs one float dtype"), std::runtime_error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::ones({4, 3, 3, 3}), Tensor(), 0),
                       doctest::Contains("conv2d: needs kernel >= 1, stride >= 1 and padding >= 0"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(unfold(x, 9, 2), doctest::Contains("unfold: kernel (9, 2) is larger than the input"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(unfold(Tensor::ones({8, 8}), 2, 2), doctest::Contains("unfold: expects x (B, C, H, W)"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(unfold(x, 2, 2, 1, -1), doctest::Contains("unfold: needs kernel >= 1"), std::runtime_error);
  CHECK_THROWS_WITH_AS(unfold(Tensor::from_indices({1, 2, 3, 4}, {1, 1, 2, 2}), 1, 1),
                       doctest::Contains("unfold: needs a float tensor"), std::runtime_error);
  // Sizes past 2^63 (found by an op-level hunt): C * kh * kw = 4 * 2^31 * 2^31 wrapped to 0, and im2col wrote
  // into a patch buffer of 0 bytes; 2 * padding and Ho * Wo overflowed too.
  const int64_t big = int64_t{1} << 31;
  const Tensor one = Tensor::ones({1, 4, 1, 1});
  CHECK_THROWS_WITH_AS(unfold(one, big, big, 1, int64_t{1} << 30), doctest::Contains("give sizes past 2^63"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(unfold(one, 1, 1, 1, int64_t{1} << 61), doctest::Contains("give sizes past 2^63"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(unfold(one, 1, 1, 1, int64_t{1} << 62), doctest::Contains("give sizes past 2^63"),
                       std::runtime_error);
}
