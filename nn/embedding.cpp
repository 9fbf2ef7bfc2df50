// Patch and position embeddings.
#include "nn/embedding.h"

#include <algorithm>
#include <cmath>

#include "nn/init.h"

namespace vt::nn {

PatchEmbed::PatchEmbed(int64_t in_channels, int64_t dim, int64_t patch, int64_t stem_channels) {
  if (stem_channels == 0) {
    proj = register_module("proj", std::make_shared<Conv2d>(in_channels, dim, patch, patch, 0));
    return;
  }
  int64_t channels = in_channels;
  for (int64_t scale = 1; scale < patch; scale *= 2) {  // models::validate checks that patch is a power of 2
    const int64_t out = stem_channels * scale;
    stem.push_back(register_module("stem." + std::to_string(stem.size()), std::make_shared<Conv2d>(channels, out, 3, 2, 1)));
    channels = out;
  }
  proj = register_module("proj", std::make_shared<Conv2d>(channels, dim, 1, 1, 0));
}

Tensor PatchEmbed::forward(const Tensor& images) const {
  Tensor x = images;                                     // (B, C, H, W)
  for (const auto& conv : stem) x = gelu(conv->forward(x));  // halves H and W: (B, S 2^i, H / 2^(i+1), W / 2^(i+1))
  const Tensor maps = proj->forward(x);                  // (B, D, H/p, W/p)
  return transpose(flatten(maps, 2), 1, 2);              // (B, N, D)
}

PositionEmbedding::PositionEmbedding(Module& owner, const std::string& name, PosEmbed kind, int64_t grid,
                                     int64_t dim)
    : kind_(kind), grid_(grid), dim_(dim) {
  switch (kind) {
    case PosEmbed::learned:
      table_ = owner.register_parameter(name, Tensor::empty({1, 1 + grid * grid, dim}));
      trunc_normal_(table_, 0.02);
      break;
    case PosEmbed::learned_2d:
      if (dim % 2 != 0) fail("PositionEmbedding", "2-D embeddings need an even dim, got " + std::to_string(dim));
      row_ = owner.register_parameter(name + "_row", Tensor::empty({grid, 1, dim / 2}));
      col_ = owner.register_parameter(name + "_col", Tensor::empty({1, grid, dim / 2}));
      trunc_normal_(row_, 0.02);
      trunc_normal_(col_, 0.02);
      break;
    case PosEmbed::sincos_2d: table_ = owner.register_buffer(sincos_2d_table(grid, dim)); break;
    case PosEmbed::none: break;
  }
}

Tensor PositionEmbedding::add_to(const Tensor& tokens) const {
  switch (kind_) {
    case PosEmbed::learned:
    case PosEmbed::sincos_2d: return add(tokens, table_.to(tokens.dtype()));
    case PosEmbed::learned_2d: return add(tokens, table());
    case PosEmbed::none: return tokens;
  }
  return tokens;
}

Tensor PositionEmbedding::table() const {
  switch (kind_) {
    case PosEmbed::learned:
    case PosEmbed::sincos_2d: return table_;
    case PosEmbed::learned_2d: {
      // Patch (i, j) gets [row_i, col_j]; the class token gets zeros.
      const Shape half = {grid_, grid_, dim_ / 2};
      const Tensor patches = reshape(cat({expand(row_, half), expand(col_, half)}, 2), {1, grid_ * grid_, dim_});  // (1, N, D)
      return cat({Tensor::zeros({1, 1, dim_}, row_.dtype(), row_.device()), patches}, 1);                      // (1, 1 + N, D)
    }
    case PosEmbed::none: return Tensor();
  }
  return Tensor();
}

Tensor sincos_2d_table(int64_t grid, int64_t dim) {
  if (dim % 4 != 0) fail("sincos_2d_table", "needs a dim divisible by 4, got " + std::to_string(dim));
  // Each axis gets dim/2 channels: sin and cos of position * 10000^(-k / (dim/4)), k < dim/4 (MAE's
  // get_2d_sincos_pos_embed; first half from the column index, second half from the row index).
  const int64_t quarter = dim / 4;
  std::vector<double> values(static_cast<size_t>((1 + grid * grid) * dim), 0.0);
  for (int64_t i = 0; i < grid; ++i)
    for (int64_t j = 0; j < grid; ++j) {
      double* row = values.data() + (1 + i * grid + j) * dim;
      for (int64_t k = 0; k < quarter; ++k) {
        const double omega = std::pow(10000.0, -static_cast<double>(k) / static_cast<double>(quarter));
        row[k] = std::sin(j * omega);
        row[quarter + k] = std::cos(j * omega);
        row[2 * quarter + k] = std::sin(i * omega);
        row[3 * quarter + k] = std::cos(i * omega);
      }
    }
  return Tensor::from_vector(values, {1, 1 + grid * grid, dim});
}

}  // namespace vt::nn

namespace vt::nn {

static double keys_cubic(double x) {
  // Keys (1981) with a = -0.5: the cubic that reproduces quadratics exactly, PIL's and PyTorch's antialias choice.
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

std::vector<double> resample_weights(int64_t in, int64_t out) {
  if (in < 1 || out < 1) fail("resample_weights", "sizes must be positive, got " + std::to_string(in) + " -> " + std::to_string(out));
  std::vector<double> w(static_cast<size_t>(out * in), 0.0);
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double stretch = std::max(scale, 1.0);  // shrinking widens the kernel to cover every input row
  const double support = 2.0 * stretch;
  for (int64_t i = 0; i < out; ++i) {
    const double center = scale * (i + 0.5);  // output pixel i's centre in input coordinates (align_corners=False)
    const int64_t first = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t last = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in);
    double total = 0;
    for (int64_t j = first; j < last; ++j) total += w[i * in + j] = keys_cubic((j - center + 0.5) / stretch);
    for (int64_t j = first; j < last; ++j) w[i * in + j] /= total;
  }
  return w;
}

Tensor resample_axis(const Tensor& x, int64_t dim, int64_t size) {
  if (dim < 0) dim += x.dim();
  if (dim < 0 || dim >= x.dim()) fail("resample_axis", "no dim " + std::to_string(dim) + " in " + x.str());
  const int64_t in = x.size(dim);
  if (in == size) return x;
  if (x.dim() == 1) return squeeze(resample_axis(unsqueeze(x, 0), 1, size), 0);  // matmul wants a matrix
  const Tensor w = Tensor::from_vector(resample_weights(in, size), {size, in}, DType::f64).to(x.dtype()).to(x.device());  // (out, in)
  const Tensor last = transpose(x, dim, x.dim() - 1);                                // (..., in)
  return contiguous(transpose(matmul(last, transpose(w, 0, 1)), dim, x.dim() - 1));  // x's shape with `size` at dim
}

Tensor resample_position_table(const Tensor& table, int64_t prefix, int64_t new_grid) {
  const int64_t rows = table.dim() == 3 ? table.size(1) - prefix : -1;
  const int64_t grid = rows > 0 ? static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(rows)))) : 0;
  if (table.dim() != 3 || table.size(0) != 1 || prefix < 0 || grid * grid != rows || new_grid < 1)
    fail("resample_position_table", "expected (1, " + std::to_string(prefix) + " + g*g, D) and a new grid >= 1, got " +
                                        table.str() + " and " + std::to_string(new_grid));
  if (grid == new_grid) return table;
  const int64_t dim = table.size(2);
  const Tensor patches = reshape(slice(table, 1, prefix, prefix + rows), {grid, grid, dim});  // (g, g, D)
  const Tensor resampled = resample_axis(resample_axis(patches, 0, new_grid), 1, new_grid);  // (G, G, D)
  return cat({slice(table, 1, 0, prefix), reshape(resampled, {1, new_grid * new_grid, dim})}, 1);  // (1, prefix + G^2, D)
}

}  // namespace vt::nn
