// Line charts as PNG files with no dependency beyond stb_image_write: `vt compare` draws both models' curves
// with it. Pixel coordinates start at the image's top-left corner, x to the right and y down; colours are
// 0xRRGGBB; images are 8-bit RGB, top row first.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vt {

// One curve: the points (x[i], y[i]) joined in order. A point with a NaN or infinite coordinate is skipped and
// breaks the line there, as in matplotlib.
struct Series {
  std::string name;  // the legend entry; series without a name are left out of the legend
  std::vector<double> x, y;
  uint32_t rgb = 0x1F77B4;
  bool lines = true;  // false: a scatter plot, markers only
};

// One set of axes with its curves.
struct Panel {
  std::string title, x_label, y_label;
  std::vector<Series> series;
};

struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // (height, width, 3)

  RgbImage(int width, int height, uint32_t background = 0xFFFFFF);
  uint32_t at(int x, int y) const;  // 0xRRGGBB
};

// The panels side by side, each panel_width × panel_height pixels, white background.
RgbImage render_line_chart(const std::vector<Panel>& panels, int panel_width = 480, int panel_height = 320);
// The same chart written as a PNG file; fails when the file cannot be written.
void write_line_chart_png(const std::string& path, const std::vector<Panel>& panels, int panel_width = 480,
                          int panel_height = 320);

// Any image as a PNG file; fails when the file cannot be written.
void write_png(const std::string& path, const RgbImage& image);

// Matplotlib's viridis colour map at t in [0, 1] (clamped): dark blue through green to yellow, perceptually
// uniform and readable in grey. Linear between 9 of its samples.
uint32_t viridis(double t);

// The built-in bitmap font: glyphs 5 pixels wide, 7 above the baseline and 2 below it (descenders), spaced
// proportionally with one blank column between glyphs; each font pixel is drawn as a scale × scale square.
// draw_text puts the top-left corner of the text's box at (x, y); characters outside the font print as a box.
constexpr int font_cap_height = 7;    // font pixels from the top of a capital to the baseline
constexpr int font_line_height = 9;   // the same plus descenders
int text_width(const std::string& text, int scale);
void draw_text(RgbImage& image, int x, int y, const std::string& text, uint32_t rgb, int scale);

// Axis ticks: the smallest step of the form {1, 2, 5} × 10^k that is at least raw_step, and a tick value printed
// with exactly the decimals its step needs ("0.25" for step 0.05, "3" for step 1).
double nice_step(double raw_step);
std::string format_tick(double value, double step);

}  // namespace vt
