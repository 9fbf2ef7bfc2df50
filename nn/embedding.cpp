// Patch and position embeddings.
#include "nn/embedding.h"

#include <cmath>

#include "nn/init.h"

namespace vt::nn {

PatchEmbed::PatchEmbed(int64_t in_channels, int64_t dim, int64_t patch) {
  proj = register_module("proj", std::make_shared<Conv2d>(in_channels, dim, patch, patch, 0));
}

Tensor PatchEmbed::forward(const Tensor& images) const {
  const Tensor maps = proj->forward(images);   // (B, D, H/p, W/p)
  return transpose(flatten(maps, 2), 1, 2);     // (B, N, D)
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
    case PosEmbed::learned_2d: {
      // Patch (i, j) gets [row_i, col_j]; the class token gets zeros.
      const Shape half = {grid_, grid_, dim_ / 2};
      const Tensor patches = reshape(cat({expand(row_, half), expand(col_, half)}, 2), {1, grid_ * grid_, dim_});  // (1, N, D)
      const Tensor table = cat({Tensor::zeros({1, 1, dim_}, row_.dtype(), row_.device()), patches}, 1);        // (1, 1 + N, D)
      return add(tokens, table);
    }
    case PosEmbed::none: return tokens;
  }
  return tokens;
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
