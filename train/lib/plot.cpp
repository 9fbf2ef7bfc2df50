// Line charts in the style of a minimal matplotlib plot: per panel a white canvas, a frame with 1-2-5 ticks
// and a light grid, 2 px anti-aliased lines (coverage from the distance to each segment), point markers, and a
// legend in the emptiest corner. Data coordinates map to pixel centres, data y up; text uses the bitmap font.
#include "train/lib/plot.h"

#include <stb/stb_image_write.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "autograd/files.h"
#include "autograd/tensor.h"

namespace vt {

namespace {

// Each glyph is 9 rows of 5 bits, the leftmost pixel in bit 4 (0x10): rows 0-6 stand on the baseline and rows
// 7-8 hold descenders. Rows left out are blank.
struct Glyph {
  char character;
  std::array<uint8_t, 9> rows;
};

constexpr Glyph font_glyphs[] = {
    {' ', {}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'a', {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}},
    {'b', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}},
    {'c', {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}},
    {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}},
    {'e', {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}},
    {'f', {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}},
    {'g', {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E}},
    {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'i', {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}},
    {'j', {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}},
    {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'m', {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}},
    {'n', {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'o', {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}},
    {'p', {0x00, 0x00, 0x1E, 0x11, 0x11, 0x11, 0x1E, 0x10, 0x10}},
    {'q', {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x01}},
    {'r', {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}},
    {'s', {0x00, 0x00, 0x0F, 0x10, 0x0E, 0x01, 0x1E}},
    {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}},
    {'u', {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}},
    {'v', {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'w', {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}},
    {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
    {'y', {0x00, 0x00, 0x11, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E}},
    {'z', {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x08, 0x10}},
    {':', {0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x10}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'[', {0x1C, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1C}},
    {']', {0x1C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x1C}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
    {'/', {0x01, 0x02, 0x02, 0x04, 0x08, 0x08, 0x10}},
    {'*', {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {'!', {0x10, 0x10, 0x10, 0x10, 0x10, 0x00, 0x10}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
    {'\'', {0x10, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'#', {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}},
    {'|', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10}},
};

// What a character outside the font prints: an empty box, so that it is seen rather than silently dropped.
constexpr Glyph missing_glyph = {'\0', {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F}};

constexpr int glyph_columns = 5, space_advance = 3;

// A glyph with the blank columns at its left and right trimmed away (proportional spacing).
struct PlacedGlyph {
  const Glyph* glyph;
  int first_column, width;
};

PlacedGlyph place(char character) {
  static const std::array<PlacedGlyph, 128> table = [] {
    std::array<PlacedGlyph, 128> placed;
    placed.fill({nullptr, 0, 0});
    for (const Glyph& glyph : font_glyphs) {
      int used_columns = 0;
      for (uint8_t row : glyph.rows) used_columns |= row;
      int first = 0, last = glyph_columns - 1;
      while (first < glyph_columns && !(used_columns & (0x10 >> first))) ++first;
      while (last >= 0 && !(used_columns & (0x10 >> last))) --last;
      placed[uint8_t(glyph.character)] =
          used_columns ? PlacedGlyph{&glyph, first, last - first + 1} : PlacedGlyph{&glyph, 0, space_advance};
    }
    return placed;
  }();
  const auto index = uint8_t(character);
  if (index < table.size() && table[index].glyph) return table[index];
  return {&missing_glyph, 0, glyph_columns};
}

void blend(RgbImage& image, int x, int y, uint32_t rgb, double alpha) {
  if (x < 0 || y < 0 || x >= image.width || y >= image.height || alpha <= 0) return;
  alpha = std::min(alpha, 1.0);
  uint8_t* pixel = &image.pixels[(size_t(y) * image.width + x) * 3];
  for (int channel = 0; channel < 3; ++channel) {
    const double target = (rgb >> (16 - 8 * channel)) & 0xFF;
    pixel[channel] = uint8_t(std::lround(pixel[channel] + (target - pixel[channel]) * alpha));
  }
}

void fill_rect(RgbImage& image, int x, int y, int width, int height, uint32_t rgb, double alpha = 1.0) {
  for (int row = y; row < y + height; ++row)
    for (int column = x; column < x + width; ++column) blend(image, column, row, rgb, alpha);
}

void stroke_rect(RgbImage& image, int x, int y, int width, int height, uint32_t rgb) {
  fill_rect(image, x, y, width, 1, rgb);
  fill_rect(image, x, y + height - 1, width, 1, rgb);
  fill_rect(image, x, y, 1, height, rgb);
  fill_rect(image, x + width - 1, y, 1, height, rgb);
}

// Text running upwards (a y-axis label): (x, y) is the bottom-left corner of the rotated box, whose left edge
// is the top of the letters.
void draw_text_upwards(RgbImage& image, int x, int y, const std::string& text, uint32_t rgb, int scale) {
  int along = 0;  // font pixels from the start of the text
  for (char character : text) {
    const PlacedGlyph placed = place(character);
    for (int row = 0; row < font_line_height; ++row)
      for (int column = 0; column < placed.width; ++column)
        if (placed.glyph->rows[row] & (0x10 >> (placed.first_column + column)))
          fill_rect(image, x + row * scale, y - (along + column + 1) * scale, scale, scale, rgb);
    along += placed.width + 1;
  }
}

// Per-pixel coverage in [0, 1] of one series' lines and markers over a clip rectangle. Coverage is combined
// with max, not summed, and blended once at the end, so that joints and overlapping markers are not darker.
struct CoverageMask {
  int x0, y0, width, height;
  std::vector<float> coverage;  // (height, width)

  CoverageMask(int x0, int y0, int width, int height)
      : x0(x0), y0(y0), width(width), height(height), coverage(size_t(width) * height, 0.0f) {}

  // Visits the pixels whose centres lie within `reach` of the box [min_x, max_x] × [min_y, max_y], handing
  // each pixel centre to coverage_at and keeping the larger coverage.
  template <class CoverageAt>
  void stamp(double min_x, double min_y, double max_x, double max_y, double reach, CoverageAt coverage_at) {
    const int first_column = std::max(x0, int(std::floor(min_x - reach)));
    const int last_column = std::min(x0 + width - 1, int(std::ceil(max_x + reach)));
    const int first_row = std::max(y0, int(std::floor(min_y - reach)));
    const int last_row = std::min(y0 + height - 1, int(std::ceil(max_y + reach)));
    for (int row = first_row; row <= last_row; ++row)
      for (int column = first_column; column <= last_column; ++column) {
        float& value = coverage[size_t(row - y0) * width + (column - x0)];
        value = std::max(value, float(std::clamp(coverage_at(column + 0.5, row + 0.5), 0.0, 1.0)));
      }
  }

  // A segment of width 2 * half_width with round caps: a pixel is covered by how far its centre lies inside
  // the stroke, plus half a pixel, which approximates the covered area within a one-pixel ramp at the edge.
  void segment(double ax, double ay, double bx, double by, double half_width) {
    const double dx = bx - ax, dy = by - ay, length_squared = dx * dx + dy * dy;
    stamp(std::min(ax, bx), std::min(ay, by), std::max(ax, bx), std::max(ay, by), half_width + 1,
          [&](double px, double py) {
            const double t =
                length_squared > 0 ? std::clamp(((px - ax) * dx + (py - ay) * dy) / length_squared, 0.0, 1.0) : 0;
            return half_width + 0.5 - std::hypot(px - (ax + t * dx), py - (ay + t * dy));
          });
  }

  void disc(double cx, double cy, double radius) {
    stamp(cx, cy, cx, cy, radius + 1,
          [&](double px, double py) { return radius + 0.5 - std::hypot(px - cx, py - cy); });
  }

  double sum(int x, int y, int rect_width, int rect_height) const {
    double total = 0;
    for (int row = std::max(y, y0); row < std::min(y + rect_height, y0 + height); ++row)
      for (int column = std::max(x, x0); column < std::min(x + rect_width, x0 + width); ++column)
        total += coverage[size_t(row - y0) * width + (column - x0)];
    return total;
  }

  void paint(RgbImage& image, uint32_t rgb) const {
    for (int row = 0; row < height; ++row)
      for (int column = 0; column < width; ++column)
        blend(image, x0 + column, y0 + row, rgb, coverage[size_t(row) * width + column]);
  }
};

constexpr uint32_t ink = 0x262626, frame_rgb = 0x404040, grid_rgb = 0xE8E8E8, legend_border_rgb = 0xCCCCCC;

bool finite_point(const Series& series, size_t i) { return std::isfinite(series.x[i]) && std::isfinite(series.y[i]); }

struct Range {
  double low, high;
  double span() const { return high - low; }
};

// The range of the finite values, widened by 5% on each side (matplotlib's default margins). A single value
// gets ±5% of itself (±0.5 around zero) so that the scale never divides by zero; no values give [0, 1].
Range axis_range(const std::vector<double>& values) {
  if (values.empty()) return {0, 1};
  auto [low, high] = std::minmax_element(values.begin(), values.end());
  Range range{*low, *high};
  if (range.span() <= 1e-12 * std::max(std::abs(range.low), std::abs(range.high))) {
    const double half = range.low != 0 ? 0.05 * std::abs(range.low) : 0.5;
    return {range.low - half, range.low + half};
  }
  const double margin = 0.05 * range.span();
  return {range.low - margin, range.high + margin};
}

struct Tick {
  double value;
  std::string label;
};

std::vector<Tick> ticks_for(const Range& range, double step) {
  std::vector<Tick> ticks;
  // The small slack keeps a tick that lands on the range's end despite rounding in low / step.
  const double first = std::ceil(range.low / step - 1e-9), last = std::floor(range.high / step + 1e-9);
  for (double k = first; k <= last; ++k) ticks.push_back({k * step, format_tick(k * step, step)});
  return ticks;
}

int widest_label(const std::vector<Tick>& ticks, int scale) {
  int widest = 0;
  for (const Tick& tick : ticks) widest = std::max(widest, text_width(tick.label, scale));
  return widest;
}

// Ticks about every `spacing` pixels along an axis of `length` pixels, with the step raised along the 1-2-5
// sequence until neighbouring labels keep a gap of 10 px: labels along the axis (x) need their widest width,
// labels across it (y) their height.
std::vector<Tick> choose_ticks(const Range& range, int length, int spacing, bool labels_along_axis, int scale) {
  double step = nice_step(range.span() / std::max(2, length / spacing));
  for (;;) {
    std::vector<Tick> ticks = ticks_for(range, step);
    const int label_extent = labels_along_axis ? widest_label(ticks, scale) : font_cap_height * scale;
    const double pixels_per_step = step / range.span() * length;
    if (pixels_per_step >= label_extent + 10 * scale || ticks.size() <= 2) return ticks;
    step = nice_step(step * 1.5);  // 1 -> 2, 2 -> 5, 5 -> 10
  }
}

void render_panel(RgbImage& image, const Panel& panel, int scale) {
  const int padding = 8 * scale, tick_length = 4 * scale, title_scale = 2 * scale;
  const int cap = font_cap_height * scale;

  std::vector<double> xs, ys;
  for (const Series& series : panel.series)
    for (size_t i = 0; i < series.x.size(); ++i)
      if (finite_point(series, i)) {
        xs.push_back(series.x[i]);
        ys.push_back(series.y[i]);
      }
  const Range x_range = axis_range(xs), y_range = axis_range(ys);

  // The frame's vertical extent depends only on text heights; its horizontal extent on the y tick labels, which
  // are chosen first.
  const int top = padding + (panel.title.empty() ? 0 : font_line_height * title_scale);
  const int bottom_margin = tick_length + 4 * scale + cap + (panel.x_label.empty() ? 0 : 8 * scale + cap) + padding;
  const int plot_height = image.height - top - bottom_margin;
  const std::vector<Tick> y_ticks = choose_ticks(y_range, plot_height, 45 * scale, false, scale);
  const int left = padding + (panel.y_label.empty() ? 0 : font_line_height * scale + 6 * scale) +
                   widest_label(y_ticks, scale) + 4 * scale + tick_length;
  const int plot_width = image.width - left - 16 * scale;
  const std::vector<Tick> x_ticks = choose_ticks(x_range, plot_width, 80 * scale, true, scale);

  // Data coordinates to pixel coordinates: the range's ends fall on the centres of the frame's pixels.
  const auto to_pixel_x = [&](double x) { return left + 0.5 + (x - x_range.low) / x_range.span() * plot_width; };
  const auto to_pixel_y = [&](double y) { return top + 0.5 + (y_range.high - y) / y_range.span() * plot_height; };

  for (const Tick& tick : x_ticks) {
    const int column = int(std::floor(to_pixel_x(tick.value)));
    fill_rect(image, column, top + 1, 1, plot_height - 1, grid_rgb);
    fill_rect(image, column, top + plot_height + 1, 1, tick_length, frame_rgb);
    draw_text(image, column - text_width(tick.label, scale) / 2, top + plot_height + tick_length + 4 * scale,
              tick.label, ink, scale);
  }
  for (const Tick& tick : y_ticks) {
    const int row = int(std::floor(to_pixel_y(tick.value)));
    fill_rect(image, left + 1, row, plot_width - 1, 1, grid_rgb);
    fill_rect(image, left - tick_length, row, tick_length, 1, frame_rgb);
    draw_text(image, left - tick_length - 4 * scale - text_width(tick.label, scale), row - cap / 2, tick.label, ink,
              scale);
  }

  // Lines and markers stay inside the frame. Markers are left out where points lie closer than 12 px apart:
  // there they would merge into a thicker line and hide its shape.
  const double half_width = scale, marker_radius = 3.0 * scale;
  CoverageMask all_series(left + 1, top + 1, plot_width - 1, plot_height - 1);
  std::vector<bool> has_markers;  // per series, so that the legend shows the same style
  for (const Series& series : panel.series) {
    CoverageMask mask(left + 1, top + 1, plot_width - 1, plot_height - 1);
    std::vector<std::pair<double, double>> points;  // pixel centres of the finite points
    bool previous_finite = false;
    for (size_t i = 0; i < series.x.size(); ++i) {
      const bool finite = finite_point(series, i);
      if (finite) {
        points.emplace_back(to_pixel_x(series.x[i]), to_pixel_y(series.y[i]));
        if (previous_finite && series.lines) {
          const auto [ax, ay] = points[points.size() - 2];
          mask.segment(ax, ay, points.back().first, points.back().second, half_width);
        }
      }
      previous_finite = finite;
    }
    double min_x = 0, max_x = 0;
    if (!points.empty()) {
      const auto [low, high] = std::minmax_element(points.begin(), points.end());
      min_x = low->first;
      max_x = high->first;
    }
    has_markers.push_back(!series.lines || points.size() == 1 ||
                          (max_x - min_x) / std::max<size_t>(1, points.size() - 1) >= 12.0 * scale);
    if (has_markers.back())
      for (const auto& [px, py] : points) mask.disc(px, py, marker_radius);
    mask.paint(image, series.rgb);
    for (size_t i = 0; i < mask.coverage.size(); ++i)
      all_series.coverage[i] = std::max(all_series.coverage[i], mask.coverage[i]);
  }

  stroke_rect(image, left, top, plot_width + 1, plot_height + 1, frame_rgb);

  if (!panel.title.empty())
    draw_text(image, left + (plot_width - text_width(panel.title, title_scale)) / 2, padding / 2, panel.title, ink,
              title_scale);
  if (!panel.x_label.empty())
    draw_text(image, left + (plot_width - text_width(panel.x_label, scale)) / 2, image.height - padding - cap,
              panel.x_label, ink, scale);
  if (!panel.y_label.empty())
    draw_text_upwards(image, padding, top + (plot_height + text_width(panel.y_label, scale)) / 2, panel.y_label, ink,
                      scale);

  // The legend goes where it hides the least ink, trying the corners in matplotlib's order ('best').
  std::vector<size_t> named;  // indices of the series with names
  int widest_name = 0;
  for (size_t i = 0; i < panel.series.size(); ++i)
    if (!panel.series[i].name.empty()) {
      named.push_back(i);
      widest_name = std::max(widest_name, text_width(panel.series[i].name, scale));
    }
  if (named.empty()) return;
  const int inner = 6 * scale, swatch_length = 20 * scale, row_height = 13 * scale, inset = 8 * scale;
  const int legend_width = inner + swatch_length + inner + widest_name + inner;
  const int legend_height = inner + int(named.size()) * row_height - (row_height - cap) + inner;
  const int legend_left[2] = {left + plot_width - inset - legend_width, left + inset};
  const int legend_top[2] = {top + inset, top + plot_height - inset - legend_height};
  const std::array<std::pair<int, int>, 4> corners = {{{legend_left[0], legend_top[0]},
                                                       {legend_left[1], legend_top[0]},
                                                       {legend_left[1], legend_top[1]},
                                                       {legend_left[0], legend_top[1]}}};
  std::pair<int, int> best = corners[0];
  double least_ink = all_series.sum(best.first, best.second, legend_width, legend_height);
  for (const auto& corner : corners) {
    const double covered = all_series.sum(corner.first, corner.second, legend_width, legend_height);
    if (covered < least_ink - 1e-9) {
      least_ink = covered;
      best = corner;
    }
  }
  const auto [x, y] = best;
  fill_rect(image, x, y, legend_width, legend_height, 0xFFFFFF, 0.85);
  stroke_rect(image, x, y, legend_width, legend_height, legend_border_rgb);
  for (size_t row = 0; row < named.size(); ++row) {
    const Series& series = panel.series[named[row]];
    const int row_top = y + inner + int(row) * row_height;
    const double middle = row_top + cap / 2 + 0.5;
    CoverageMask swatch(x + inner - 2, row_top - 2, swatch_length + 4, cap + 4);
    if (series.lines) swatch.segment(x + inner, middle, x + inner + swatch_length, middle, half_width);
    if (has_markers[named[row]]) swatch.disc(x + inner + swatch_length / 2.0, middle, marker_radius);
    swatch.paint(image, series.rgb);
    draw_text(image, x + inner + swatch_length + inner, row_top, series.name, ink, scale);
  }
}

}  // namespace

RgbImage::RgbImage(int width, int height, uint32_t background)
    : width(width), height(height), pixels(size_t(width) * height * 3) {
  for (size_t i = 0; i < pixels.size(); i += 3) {
    pixels[i] = uint8_t(background >> 16);
    pixels[i + 1] = uint8_t(background >> 8);
    pixels[i + 2] = uint8_t(background);
  }
}

uint32_t RgbImage::at(int x, int y) const {
  const uint8_t* pixel = &pixels[(size_t(y) * width + x) * 3];
  return uint32_t(pixel[0]) << 16 | uint32_t(pixel[1]) << 8 | pixel[2];
}

int text_width(const std::string& text, int scale) {
  int width = 0;
  for (char character : text) width += place(character).width + 1;
  return std::max(0, width - 1) * scale;
}

void draw_text(RgbImage& image, int x, int y, const std::string& text, uint32_t rgb, int scale) {
  for (char character : text) {
    const PlacedGlyph placed = place(character);
    for (int row = 0; row < font_line_height; ++row)
      for (int column = 0; column < placed.width; ++column)
        if (placed.glyph->rows[row] & (0x10 >> (placed.first_column + column)))
          fill_rect(image, x + column * scale, y + row * scale, scale, scale, rgb);
    x += (placed.width + 1) * scale;
  }
}

double nice_step(double raw_step) {
  if (!(raw_step > 0) || !std::isfinite(raw_step)) fail("nice_step", "needs a positive finite step");
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw_step)));
  // The slack absorbs rounding in raw_step / magnitude, so that 0.1 stays 0.1 instead of becoming 0.2.
  const double fraction = raw_step / magnitude * (1 - 1e-9);
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * magnitude;
}

std::string format_tick(double value, double step) {
  if (!(step > 0) || !std::isfinite(step)) fail("format_tick", "needs a positive finite step");
  if (std::abs(value) < 1e-9 * step) value = 0;  // k * step can land a hair off zero: never print "-0.0"
  char text[64];
  const int step_exponent = int(std::floor(std::log10(step) + 1e-9));
  if (step >= 1e-4 && step < 1e6) {
    std::snprintf(text, sizeof text, "%.*f", std::max(0, -step_exponent), value);
    return text;
  }
  if (value == 0) return "0";
  // Tiny or huge steps would print long strings of zeros: print m.mm e k with as many mantissa digits as the
  // step needs, re-deriving the exponent when rounding carries the mantissa to 10 (9.99e-5 -> 1.0e-4).
  int exponent = int(std::floor(std::log10(std::abs(value)) + 1e-9));
  for (;;) {
    const int decimals = std::max(0, exponent - step_exponent);
    std::snprintf(text, sizeof text, "%.*f", decimals, value / std::pow(10.0, exponent));
    if (std::abs(std::atof(text)) < 10) {
      std::snprintf(text + std::strlen(text), sizeof text - std::strlen(text), "e%d", exponent);
      return text;
    }
    ++exponent;
  }
}

RgbImage render_line_chart(const std::vector<Panel>& panels, int panel_width, int panel_height) {
  if (panels.empty()) fail("render_line_chart", "needs at least one panel");
  if (panel_width < 200 || panel_height < 150)
    fail("render_line_chart", "panels must be at least 200 x 150 pixels, got " + std::to_string(panel_width) +
                                  " x " + std::to_string(panel_height));
  for (const Panel& panel : panels)
    for (const Series& series : panel.series)
      if (series.x.size() != series.y.size())
        fail("render_line_chart", "series '" + series.name + "' has " + std::to_string(series.x.size()) +
                                      " x values but " + std::to_string(series.y.size()) + " y values");
  // Text and strokes grow in whole steps with the panel, so that large charts stay as readable as small ones.
  const int scale = std::max(1, std::min(panel_width / 480, panel_height / 320));
  RgbImage chart(panel_width * int(panels.size()), panel_height);
  for (size_t p = 0; p < panels.size(); ++p) {
    RgbImage image(panel_width, panel_height);
    render_panel(image, panels[p], scale);
    for (int row = 0; row < panel_height; ++row)
      std::copy_n(&image.pixels[size_t(row) * panel_width * 3], size_t(panel_width) * 3,
                  &chart.pixels[(size_t(row) * chart.width + p * panel_width) * 3]);
  }
  return chart;
}

void write_line_chart_png(const std::string& path, const std::vector<Panel>& panels, int panel_width,
                          int panel_height) {
  write_png(path, render_line_chart(panels, panel_width, panel_height));
}

void write_png(const std::string& path, const RgbImage& image) {
  // Encoded in memory, then written as every output is: stbi_write_png checks neither fwrite nor fclose, so a
  // full disk left a truncated PNG behind a success.
  std::string encoded;
  const auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  };
  if (!stbi_write_png_to_func(append, &encoded, image.width, image.height, 3, image.pixels.data(), image.width * 3))
    fail("write_png", "cannot encode " + path + " (" + std::to_string(image.width) + " x " +
                          std::to_string(image.height) + " pixels)");
  write_file_atomically("write_png", path, encoded);
}

uint32_t viridis(double t) {
  static constexpr uint32_t samples[] = {0x440154, 0x472D7B, 0x3B528B, 0x2C728E, 0x21918C,
                                         0x28AE80, 0x5EC962, 0xADDC30, 0xFDE725};
  constexpr int last = 8;
  const double position = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * last;
  const int i = std::min(static_cast<int>(position), last - 1);
  const double f = position - i;
  uint32_t rgb = 0;
  for (int shift = 16; shift >= 0; shift -= 8) {
    const double a = (samples[i] >> shift) & 0xFF, b = (samples[i + 1] >> shift) & 0xFF;
    rgb |= static_cast<uint32_t>(std::lround(a + f * (b - a))) << shift;
  }
  return rgb;
}

}  // namespace vt
