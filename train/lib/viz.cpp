// vt viz: pictures of what a checkpoint has learned, drawn from the numbers of models/insight.h. Conventions:
// every command writes the PNG named by --out and, where there are numbers, a CSV beside it (same path, .csv);
// tiles are square, captioned above in the plot code's bitmap font; maps are coloured with viridis.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "autograd/files.h"
#include "autograd/text.h"
#include "datasets/dataset.h"
#include "datasets/loader.h"
#include "models/insight.h"
#include "nn/safetensors.h"
#include "train/lib/commands.h"
#include "train/lib/plot.h"

namespace vt {

namespace {

constexpr int kGap = 6;                                  // pixels between tiles
constexpr int kCaption = font_line_height + 5;           // a caption's strip above its tile
constexpr uint32_t kInk = 0x222222;

// The path beside the PNG for its numbers: "a/b.png" -> "a/b.csv".
std::string csv_path(const std::string& png) {
  const size_t dot = png.rfind('.');
  const size_t slash = png.rfind('/');
  return (dot == std::string::npos || (slash != std::string::npos && dot < slash) ? png : png.substr(0, dot)) + ".csv";
}

// The PNG and its numbers beside it; says where they went.
int write_picture(const std::string& path, const RgbImage& picture, const std::string& csv) {
  write_png(path, picture);
  write_file_atomically("vt viz", csv_path(path), csv);
  std::printf("wrote %s (%d x %d) and %s\n", path.c_str(), picture.width, picture.height, csv_path(path).c_str());
  return 0;
}

// The checkpoint's model, at --img-size when given (its position embedding resampled), in eval mode.
struct LoadedModel {
  models::ModelConfig config;
  std::map<std::string, std::string> metadata;
  std::shared_ptr<models::Classifier> model;
};

// Neither the PNG nor the CSV beside it may replace what vt viz reads or a run's metrics: `--out ck.png` with a
// checkpoint ck.csv, an input image as --out, or a PNG pointed into --data's folders replaced them in silence.
void refuse_outputs_over_inputs(const VizOptions& o) {
  namespace fs = std::filesystem;
  std::vector<std::string> inputs = o.images;
  inputs.push_back(o.checkpoint);
  for (const std::string& output : {o.out, csv_path(o.out)}) {
    std::error_code error;  // a path that does not exist yet is no input
    for (const std::string& input : inputs)
      if (fs::equivalent(output, input, error))
        fail("vt viz", "--out " + o.out + " would write " + output + ", which is an input");
    const fs::path folder = fs::weakly_canonical(output, error).parent_path();
    const fs::path in_data = folder.lexically_relative(fs::weakly_canonical(o.data_dir, error));
    if (o.kind == "distance" && !in_data.empty() && *in_data.begin() != "..")
      fail("vt viz", "--out " + o.out + " lies in the data folder " + o.data_dir + "; write it elsewhere");
    if (fs::path(output).filename() == "metrics.csv" && fs::exists(run_state_path(folder.string())))
      fail("vt viz", "--out " + o.out + " would replace the metrics.csv of the run in " + folder.string());
  }
}

LoadedModel load_for_viz(const VizOptions& o) {
  LoadedModel loaded;
  if (o.out.size() < 5 || o.out.compare(o.out.size() - 4, 4, ".png") != 0)
    fail("vt viz", "--out " + o.out + ": name a .png file (the numbers go to the .csv beside it)");
  refuse_outputs_over_inputs(o);
  loaded.config = checkpoint_config(o.model, o.checkpoint, o.image_size);
  // Every layer's (T, T) maps are held at once and each picture draws a tile per patch: past a 32 x 32 grid
  // (T = 1025 tokens) neither would fit on a page or in memory.
  if (loaded.config.grid() > 32)
    fail("vt viz", loaded.config.name + " at " + std::to_string(loaded.config.image_size) + " pixels has a " +
                       std::to_string(loaded.config.grid()) + "x" + std::to_string(loaded.config.grid()) +
                       " patch grid; vt viz draws at most 32x32 (a smaller --img-size)");
  loaded.metadata = nn::read_metadata(o.checkpoint);
  loaded.model = models::load_model(o.checkpoint, loaded.config);
  loaded.model->to(o.device);
  loaded.model->eval();
  return loaded;
}

// A white canvas at least wide enough for its title, which is drawn at the top left at twice the font size.
RgbImage titled_canvas(int width, int height, const std::string& title) {
  RgbImage canvas(std::max(width, text_width(title, 2) + 2 * kGap), height);
  draw_text(canvas, kGap, 4, title, kInk, 2);
  return canvas;
}

void blit(RgbImage& canvas, const RgbImage& tile, int x, int y) {
  for (int row = 0; row < tile.height; ++row)
    for (int column = 0; column < tile.width; ++column)
      for (int c = 0; c < 3; ++c)
        canvas.pixels[(size_t(y + row) * canvas.width + x + column) * 3 + c] =
            tile.pixels[(size_t(row) * tile.width + column) * 3 + c];
}

// Text cut to fit `width` pixels.
std::string fitted(std::string text, int width) {
  while (!text.empty() && text_width(text, 1) > width) text.pop_back();
  return text;
}

void caption(RgbImage& canvas, int x, int y, int width, const std::string& text) {
  const std::string shown = fitted(text, width);
  draw_text(canvas, x + (width - text_width(shown, 1)) / 2, y + 2, shown, kInk, 1);
}

// The model's input image as RGB at size x size (bilinear); one channel is drawn grey, more than three show
// their first three.
RgbImage image_tile(const data::Image& image, int size) {
  RgbImage tile(size, size);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const double sy = std::clamp((y + 0.5) * image.height / size - 0.5, 0.0, image.height - 1.0);
      const double sx = std::clamp((x + 0.5) * image.width / size - 0.5, 0.0, image.width - 1.0);
      const int y0 = int(sy), x0 = int(sx), y1 = std::min(y0 + 1, image.height - 1), x1 = std::min(x0 + 1, image.width - 1);
      const double fy = sy - y0, fx = sx - x0;
      for (int c = 0; c < 3; ++c) {
        const int channel = image.channels >= 3 ? c : 0;
        const double value = (1 - fy) * ((1 - fx) * image.at(y0, x0, channel) + fx * image.at(y0, x1, channel)) +
                             fy * ((1 - fx) * image.at(y1, x0, channel) + fx * image.at(y1, x1, channel));
        tile.pixels[(size_t(y) * size + x) * 3 + c] = static_cast<uint8_t>(std::lround(value));
      }
    }
  return tile;
}

// A map over a grid x grid of cells, scaled to [0, 1] by its maximum, smoothed bilinearly onto size x size
// pixels and laid over the picture: half the picture's brightness, half the map's colour.
RgbImage overlay(const RgbImage& picture, const std::vector<double>& map, int grid) {
  const double top = *std::max_element(map.begin(), map.end());
  RgbImage out = picture;
  const int size = picture.width;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const double sy = std::clamp((y + 0.5) * grid / size - 0.5, 0.0, grid - 1.0);
      const double sx = std::clamp((x + 0.5) * grid / size - 0.5, 0.0, grid - 1.0);
      const int y0 = int(sy), x0 = int(sx), y1 = std::min(y0 + 1, grid - 1), x1 = std::min(x0 + 1, grid - 1);
      const double fy = sy - y0, fx = sx - x0;
      const double value = (1 - fy) * ((1 - fx) * map[y0 * grid + x0] + fx * map[y0 * grid + x1]) +
                           fy * ((1 - fx) * map[y1 * grid + x0] + fx * map[y1 * grid + x1]);
      const uint32_t rgb = viridis(top > 0 ? value / top : 0.0);
      for (int c = 0; c < 3; ++c) {
        uint8_t& p = out.pixels[(size_t(y) * size + x) * 3 + c];
        const double grey = 0.5 * p, colour = (rgb >> (16 - 8 * c)) & 0xFF;
        p = static_cast<uint8_t>(std::lround(0.35 * grey + 0.65 * colour));
      }
    }
  return out;
}

void outline(RgbImage& tile, int x, int y, int width, int height, uint32_t rgb) {
  for (int i = 0; i < width; ++i)
    for (int row : {y, y + height - 1})
      if (row >= 0 && row < tile.height && x + i >= 0 && x + i < tile.width)
        for (int c = 0; c < 3; ++c) tile.pixels[(size_t(row) * tile.width + x + i) * 3 + c] = (rgb >> (16 - 8 * c)) & 0xFF;
  for (int i = 0; i < height; ++i)
    for (int column : {x, x + width - 1})
      if (column >= 0 && column < tile.width && y + i >= 0 && y + i < tile.height)
        for (int c = 0; c < 3; ++c) tile.pixels[(size_t(y + i) * tile.width + column) * 3 + c] = (rgb >> (16 - 8 * c)) & 0xFF;
}

// A horizontal viridis bar for values lo..hi, labelled at both ends and in the middle.
void colour_bar(RgbImage& canvas, int x, int y, int width, double lo, double hi, const std::string& label) {
  for (int i = 0; i < width; ++i) {
    const uint32_t rgb = viridis(double(i) / (width - 1));
    for (int row = 0; row < 10; ++row)
      for (int c = 0; c < 3; ++c) canvas.pixels[(size_t(y + row) * canvas.width + x + i) * 3 + c] = (rgb >> (16 - 8 * c)) & 0xFF;
  }
  const std::string low = shortest_text(lo), high = shortest_text(hi), middle = shortest_text((lo + hi) / 2);
  draw_text(canvas, x, y + 13, low, kInk, 1);
  draw_text(canvas, x + (width - text_width(middle, 1)) / 2, y + 13, middle, kInk, 1);
  draw_text(canvas, x + width - text_width(high, 1), y + 13, high, kInk, 1);
  draw_text(canvas, x + width + 8, y + 1, label, kInk, 1);
}

// ---- vt viz attention ----

int viz_attention(const VizOptions& o) {
  const LoadedModel loaded = load_for_viz(o);
  const models::ModelConfig& config = loaded.config;
  const bool tnt = config.arch == "tnt", class_query = config.pool == models::Pooling::cls;
  const data::Normalization normalization = normalization_from_metadata(loaded.metadata);
  std::vector<std::string> classes = checkpoint_classes(loaded.metadata, config);

  const int64_t depth = config.depth, layer = o.layer < 0 ? depth - 1 : o.layer;
  if (layer >= depth) fail("vt viz attention", "--layer " + std::to_string(o.layer) + ": the model has layers 0 to " + std::to_string(depth - 1));
  const int64_t heads = config.heads, grid = config.grid(), patches = grid * grid;
  const int64_t inner_heads = tnt ? config.inner_heads : 0, pixel_grid = config.pixel_grid();
  if (o.patch >= 0 && !tnt) fail("vt viz attention", "--patch picks a patch for TNT's inner attention; " + config.name + " is a ViT");
  if (o.patch >= patches) fail("vt viz attention", "--patch " + std::to_string(o.patch) + ": the image has patches 0 to " + std::to_string(patches - 1));
  std::vector<data::Image> images;  // all decoded first, so that a bad file fails before any work
  for (const std::string& path : o.images)
    images.push_back(data::load_image_file(path, int(config.in_channels), int(config.image_size), o.max_pixels));

  // Columns: the image, the mean over heads, each head, the rollout; for TNT the chosen patch and its inner
  // attention (mean over heads, then each head).
  const int size = std::max(128, int(config.image_size));
  const int columns = 2 + int(heads) + (o.rollout ? 1 : 0) + (tnt ? 2 + int(inner_heads) : 0);
  const int rows = int(images.size());
  const int title = font_line_height * 2 + 8;
  const std::string asker = class_query ? "class token" : "mean over patch tokens";
  RgbImage canvas = titled_canvas(kGap + columns * (size + kGap), title + rows * (kCaption + size + kGap) + kGap,
                                  config.name + ": attention of the " + asker + " in layer " + std::to_string(layer) +
                                      " of " + std::to_string(depth) + (tnt ? ", and a patch's inner attention" : ""));

  std::ostringstream csv;
  csv << "image,map,layer,head,patch,row,column,weight\n";
  for (int b = 0; b < rows; ++b) {
    const int y = title + b * (kCaption + size + kGap);
    int column = 0;
    const auto place = [&](const RgbImage& tile, const std::string& text) {
      const int x = kGap + column++ * (size + kGap);
      caption(canvas, x, y, size, text);
      blit(canvas, tile, x, y + kCaption);
    };
    const auto record = [&](const std::string& map, int64_t head, int64_t patch, int64_t side, const std::vector<double>& values) {
      for (int64_t i = 0; i < int64_t(values.size()); ++i)
        csv << b << ',' << map << ',' << layer << ',' << head << ',' << patch << ',' << i / side << ',' << i % side << ','
            << shortest_text(values[i]) << '\n';
    };
    // One image at a time: the maps of every layer, (1, H, T, T) each, are all held at once.
    const models::AttentionMaps maps =
        models::attention_maps(*loaded.model, data::image_to_tensor(images[b], normalization).to(o.device));
    const std::vector<double> logits = maps.logits.to_vector();
    const int64_t predicted = std::max_element(logits.begin(), logits.end()) - logits.begin();
    const RgbImage picture = image_tile(images[b], size);

    const std::vector<double> query = models::query_weights(1 + patches, 1, class_query);  // (T)
    const auto outer_map = [&](int64_t head) {  // (N)
      return models::patch_part(models::attended(models::head_map(maps.outer[layer], 0, head), query), 1);
    };
    const std::vector<double> mean_map = outer_map(-1);
    const int64_t patch = o.patch >= 0 ? o.patch : std::max_element(mean_map.begin(), mean_map.end()) - mean_map.begin();
    RgbImage marked = picture;
    const auto edge = [&](int64_t k) { return int(k * size / grid); };  // a patch's k-th edge in tile pixels
    if (tnt)
      outline(marked, edge(patch % grid), edge(patch / grid), edge(patch % grid + 1) - edge(patch % grid),
              edge(patch / grid + 1) - edge(patch / grid), 0xFF3030);
    double total = 0;  // the predicted class's probability: softmax of the logits, the largest subtracted
    for (double logit : logits) total += std::exp(logit - logits[predicted]);
    place(marked, (classes.empty() ? "class " + std::to_string(predicted) : classes[predicted]) + " " +
                      std::to_string(static_cast<int>(std::lround(100 / total))) + "%");
    place(overlay(picture, mean_map, int(grid)), "mean of heads");
    record("mean", -1, -1, grid, mean_map);
    for (int64_t h = 0; h < heads; ++h) {
      const std::vector<double> map = outer_map(h);
      place(overlay(picture, map, int(grid)), "head " + std::to_string(h));
      record("head", h, -1, grid, map);
    }
    if (o.rollout) {
      const std::vector<double> map = models::patch_part(models::attention_rollout(maps.outer, 0, query), 1);
      place(overlay(picture, map, int(grid)), "rollout");
      record("rollout", -1, -1, grid, map);
    }
    if (tnt) {
      // The chosen patch, cut out and enlarged, under what its pixel tokens attend to (mean over query pixels).
      data::Image crop(int(config.patch_size), int(config.patch_size), images[b].channels);
      const int top = int(patch / grid * config.patch_size), left = int(patch % grid * config.patch_size);
      for (int yy = 0; yy < crop.height; ++yy)
        for (int xx = 0; xx < crop.width; ++xx)
          for (int c = 0; c < crop.channels; ++c) crop.at(yy, xx, c) = images[b].at(top + yy, left + xx, c);
      RgbImage enlarged(size, size);
      for (int yy = 0; yy < size; ++yy)  // nearest: a patch is a handful of pixels, blurring them hides them
        for (int xx = 0; xx < size; ++xx)
          for (int c = 0; c < 3; ++c)
            enlarged.pixels[(size_t(yy) * size + xx) * 3 + c] =
                crop.at(yy * crop.height / size, xx * crop.width / size, crop.channels >= 3 ? c : 0);
      place(enlarged, "patch " + std::to_string(patch));
      // The inner attention of patch `patch`: (1*N, h, M, M) holds one sequence per patch; no class token there.
      const std::vector<double> pixels = models::query_weights(pixel_grid * pixel_grid, 0, false);  // (M)
      const auto inner_map = [&](int64_t head) {  // (M)
        return models::patch_part(models::attended(models::head_map(maps.inner[layer], patch, head), pixels), 0);
      };
      const std::vector<double> inner = inner_map(-1);
      place(overlay(enlarged, inner, int(pixel_grid)), "inner mean");
      record("inner_mean", -1, patch, pixel_grid, inner);
      for (int64_t h = 0; h < inner_heads; ++h) {
        const std::vector<double> map = inner_map(h);
        place(overlay(enlarged, map, int(pixel_grid)), "inner head " + std::to_string(h));
        record("inner_head", h, patch, pixel_grid, map);
      }
    }
  }
  return write_picture(o.out, canvas, csv.str());
}

// ---- vt viz posembed ----

// The paper's grid of grids: tile (i, j) shows the similarity of patch (i, j)'s embedding with every patch's.
void similarity_grids(RgbImage& canvas, int x, int y, const std::vector<double>& similarity, int grid, int cell) {
  const int tile = grid * cell;
  for (int p = 0; p < grid * grid; ++p)
    for (int q = 0; q < grid * grid; ++q) {
      const uint32_t rgb = viridis((similarity[size_t(p) * grid * grid + q] + 1) / 2);
      const int left = x + (p % grid) * (tile + 2) + (q % grid) * cell, top = y + (p / grid) * (tile + 2) + (q / grid) * cell;
      for (int row = 0; row < cell; ++row)
        for (int column = 0; column < cell; ++column)
          for (int c = 0; c < 3; ++c) canvas.pixels[(size_t(top + row) * canvas.width + left + column) * 3 + c] = (rgb >> (16 - 8 * c)) & 0xFF;
    }
}

int viz_posembed(const VizOptions& o) {
  const LoadedModel loaded = load_for_viz(o);
  const models::ModelConfig& config = loaded.config;
  struct Part {
    std::string title;
    int grid;
    std::vector<double> similarity;
  };
  std::vector<Part> parts;
  const char* kind = config.pos_embed == models::PosEmbed::learned      ? "learned"
                     : config.pos_embed == models::PosEmbed::learned_2d ? "learned_2d"
                                                                        : "sincos_2d";
  parts.push_back({std::string("patch position embedding (") + kind + ")", int(config.grid()),
                   models::cosine_similarity(models::patch_position_table(*loaded.model))});
  if (config.arch == "tnt")
    parts.push_back({"pixel position embedding", int(config.pixel_grid()),
                     models::cosine_similarity(models::pixel_position_table(*loaded.model))});

  const int title = font_line_height * 2 + 8, sub = kCaption + 2, bar = 40;
  int width = kGap, height = 0;
  std::vector<int> cells;
  for (const Part& part : parts) {
    const int cell = std::max(2, 96 / part.grid);
    cells.push_back(cell);
    const int side = part.grid * (part.grid * cell + 2);
    width += std::max(side, text_width(part.title, 1)) + 4 * kGap;
    height = std::max(height, side);
  }
  RgbImage canvas = titled_canvas(width, title + sub + height + bar + kGap, config.name + ": cosine similarity of position embeddings");
  std::ostringstream csv;
  csv << "embedding,query_row,query_column,key_row,key_column,cosine\n";
  int x = kGap;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Part& part = parts[i];
    draw_text(canvas, x, title + 2, part.title, kInk, 1);
    similarity_grids(canvas, x, title + sub, part.similarity, part.grid, cells[i]);
    const int g = part.grid;
    for (int p = 0; p < g * g; ++p)
      for (int q = 0; q < g * g; ++q)
        csv << (i == 0 ? "patch" : "pixel") << ',' << p / g << ',' << p % g << ',' << q / g << ',' << q % g << ','
            << shortest_text(part.similarity[size_t(p) * g * g + q]) << '\n';
    x += std::max(g * (g * cells[i] + 2), text_width(part.title, 1)) + 4 * kGap;
  }
  colour_bar(canvas, kGap, title + sub + height + 12, 240, -1, 1, "cosine similarity");
  return write_picture(o.out, canvas, csv.str());
}

// ---- vt viz filters ----

int viz_filters(const VizOptions& o) {
  const LoadedModel loaded = load_for_viz(o);
  const models::ModelConfig& config = loaded.config;
  const Tensor filters = models::patch_filters(*loaded.model);  // (D, C*k*k)
  const int64_t channels = config.in_channels, kernel = int64_t(std::llround(std::sqrt(double(filters.size(1) / channels))));
  const models::PrincipalComponents pcs = models::principal_components(filters, o.components);
  const double total_variance = pcs.total_variance;

  const int per_row = 7, zoom = std::max(1, 56 / int(kernel)), tile = int(kernel) * zoom;
  const int rows = int((pcs.count + per_row - 1) / per_row), title = font_line_height * 2 + 8;
  const int column_width = std::max(tile, 48);
  RgbImage canvas = titled_canvas(kGap + per_row * (column_width + kGap), title + rows * (kCaption + tile + kGap) + kGap,
                                  config.name + ": principal components of the " + (config.arch == "tnt" ? "pixel" : "patch") +
                                      " embedding filters");
  std::ostringstream csv;
  csv << "component,variance,explained\n";
  for (int64_t c = 0; c < pcs.count; ++c) {
    // Each component's own range is stretched to 0..255, as the paper shows them: the pattern, not the scale.
    const double* u = pcs.components.data() + c * pcs.features;
    const auto [lo, hi] = std::minmax_element(u, u + pcs.features);
    const double span = *hi - *lo > 0 ? *hi - *lo : 1.0;
    RgbImage image(tile, tile);
    for (int y = 0; y < tile; ++y)
      for (int x = 0; x < tile; ++x)
        for (int rgb = 0; rgb < 3; ++rgb) {
          const int64_t channel = channels >= 3 ? rgb : 0;  // (C, k, k): one channel drawn grey
          const double value = u[(channel * kernel + y / zoom) * kernel + x / zoom];
          image.pixels[(size_t(y) * tile + x) * 3 + rgb] = static_cast<uint8_t>(std::lround(255 * (value - *lo) / span));
        }
    const int x = kGap + int(c % per_row) * (column_width + kGap), y = title + int(c / per_row) * (kCaption + tile + kGap);
    const double explained = total_variance > 0 ? pcs.variances[c] / total_variance : 0;
    caption(canvas, x, y, column_width, std::to_string(c + 1) + ": " + shortest_text(std::round(1000 * explained) / 10) + "%");
    blit(canvas, image, x + (column_width - tile) / 2, y + kCaption);
    csv << c + 1 << ',' << shortest_text(pcs.variances[c]) << ',' << shortest_text(explained) << '\n';
  }
  return write_picture(o.out, canvas, csv.str());
}

// ---- vt viz distance ----

int viz_distance(const VizOptions& o) {
  const LoadedModel loaded = load_for_viz(o);
  const models::ModelConfig& config = loaded.config;
  const bool tnt = config.arch == "tnt";
  data::DatasetOptions dataset_options;
  dataset_options.channels = int(config.in_channels);
  dataset_options.image_size = int(config.image_size);
  dataset_options.max_pixels = o.max_pixels;
  const auto dataset = data::open_dataset(o.data_dir, o.split, dataset_options);
  const int64_t count = std::min(o.image_count, dataset->size());
  if (count < 1) fail("vt viz distance", o.data_dir + "/" + o.split + " has no images");
  const data::Normalization normalization = normalization_from_metadata(loaded.metadata);

  // Images spread evenly over the split (folders list their images class by class), in batches whose maps
  // stay near 4M probabilities per head and layer: 32 images of 65 tokens, 3 of 1025.
  const int64_t tokens = 1 + config.num_patches(), batch = std::clamp<int64_t>((int64_t{1} << 22) / (tokens * tokens), 1, 32);
  std::vector<std::vector<double>> outer, inner;  // [layer][head], summed over batches weighted by their size
  for (int64_t first = 0; first < count; first += batch) {
    const int64_t n = std::min<int64_t>(batch, count - first);
    std::vector<Tensor> inputs;
    for (int64_t i = first; i < first + n; ++i)
      inputs.push_back(data::image_to_tensor(dataset->get(i * dataset->size() / count).image, normalization));  // (1, C, H, W)
    const models::AttentionMaps maps = models::attention_maps(*loaded.model, cat(inputs, 0).to(o.device));
    outer.resize(maps.outer.size());
    inner.resize(maps.inner.size());
    for (size_t l = 0; l < maps.outer.size(); ++l) {
      const std::vector<double> d = models::mean_attention_distance(maps.outer[l], 1, config.grid(), double(config.patch_size));
      outer[l].resize(d.size());
      for (size_t h = 0; h < d.size(); ++h) outer[l][h] += d[h] * n / count;
    }
    for (size_t l = 0; l < maps.inner.size(); ++l) {
      const std::vector<double> d = models::mean_attention_distance(maps.inner[l], 0, config.pixel_grid(), double(config.pixel_stride));
      inner[l].resize(d.size());
      for (size_t h = 0; h < d.size(); ++h) inner[l][h] += d[h] * n / count;
    }
  }

  static constexpr uint32_t palette[] = {0x1F77B4, 0xFF7F0E, 0x2CA02C, 0xD62728, 0x9467BD,
                                         0x8C564B, 0xE377C2, 0x7F7F7F, 0xBCBD22, 0x17BECF};
  std::ostringstream csv;
  csv << "attention,layer,head,mean_distance_px\n";
  const auto panel = [&](const std::vector<std::vector<double>>& distances, const std::string& name, const std::string& title) {
    Panel p{title, "layer (depth)", "mean attention distance (pixels)", {}};
    const size_t heads = distances.empty() ? 0 : distances[0].size();
    for (size_t h = 0; h < heads; ++h) {
      Series s{"head " + std::to_string(h), {}, {}, palette[h % 10], false};
      for (size_t l = 0; l < distances.size(); ++l) {
        s.x.push_back(double(l));
        s.y.push_back(distances[l][h]);
        csv << name << ',' << l << ',' << h << ',' << shortest_text(distances[l][h]) << '\n';
      }
      p.series.push_back(std::move(s));
    }
    return p;
  };
  std::vector<Panel> panels = {panel(outer, tnt ? "outer" : "attention",
                                     config.name + (tnt ? " outer" : "") + ", " + std::to_string(count) + " images")};
  if (tnt) panels.push_back(panel(inner, "inner", config.name + " inner (within a patch)"));
  const RgbImage chart = render_line_chart(panels, 480, 360);
  return write_picture(o.out, chart, csv.str());
}

}  // namespace

int command_viz(const VizOptions& options) {
  if (options.kind == "attention") return viz_attention(options);
  if (options.kind == "posembed") return viz_posembed(options);
  if (options.kind == "filters") return viz_filters(options);
  if (options.kind == "distance") return viz_distance(options);
  fail("vt viz", "unknown picture '" + options.kind + "': attention, posembed, filters or distance");
}

}  // namespace vt
