// Line charts: 1-2-5 tick steps and their labels, the bitmap font's metrics and ink, PNG files read back with
// stb_image (size, series colours, white background, legend placement), the edge cases (NaN, a single point,
// a constant series, an empty panel) and loud failures on misuse.
#include <stb/stb_image.h>
#include <unistd.h>

#include <filesystem>

#include "tests/helpers.h"
#include "train/lib/plot.h"

using namespace vt;

namespace {

namespace fs = std::filesystem;

constexpr uint32_t blue = 0x1F77B4, orange = 0xFF7F0E, green = 0x2CA02C, purple = 0x9467BD, brown = 0x8C564B,
                   white = 0xFFFFFF, legend_border = 0xCCCCCC;

// A PNG file decoded into the same layout as RgbImage; reads the whole file first, as the datasets do.
RgbImage read_png(const std::string& path) {
  const std::string bytes = testing::read_file(path);
  int width = 0, height = 0, channels = 0;
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  unsigned char* decoded = stbi_load_from_memory(data, int(bytes.size()), &width, &height, &channels, 3);
  REQUIRE(decoded != nullptr);
  RgbImage image(width, height);
  std::copy_n(decoded, size_t(width) * height * 3, image.pixels.begin());
  stbi_image_free(decoded);
  return image;
}

int count_pixels(const RgbImage& image, uint32_t rgb, int x0, int x1) {
  int count = 0;
  for (int y = 0; y < image.height; ++y)
    for (int x = x0; x < x1; ++x) count += image.at(x, y) == rgb;
  return count;
}

struct InkBox {
  int left = 1 << 30, top = 1 << 30, right = -1, bottom = -1;  // inclusive
};

InkBox ink_box(const RgbImage& image, uint32_t rgb) {
  InkBox box;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      if (image.at(x, y) == rgb) {
        box.left = std::min(box.left, x);
        box.right = std::max(box.right, x);
        box.top = std::min(box.top, y);
        box.bottom = std::max(box.bottom, y);
      }
  return box;
}

// Whether rgb = white + alpha (colour - white) for one alpha in (0, 1), to rounding.
bool partial_blend_over_white(uint32_t rgb, uint32_t colour) {
  double alphas[3];
  for (int channel = 0; channel < 3; ++channel) {
    const int shift = 16 - 8 * channel;
    alphas[channel] = (255.0 - ((rgb >> shift) & 0xFF)) / (255.0 - ((colour >> shift) & 0xFF));
  }
  const double alpha = alphas[0];
  return alpha > 0.05 && alpha < 0.95 && std::abs(alphas[1] - alpha) < 0.05 && std::abs(alphas[2] - alpha) < 0.05;
}

Series line(const std::string& name, uint32_t rgb, double first_y, double last_y, int points = 10) {
  Series series{name, {}, {}, rgb};
  for (int i = 0; i < points; ++i) {
    series.x.push_back(i + 1);
    series.y.push_back(first_y + (last_y - first_y) * i / (points - 1));
  }
  return series;
}

}  // namespace

TEST_CASE("plot: nice_step picks 1-2-5 steps and format_tick prints the digits the step needs") {
  // raw 0.37 = 3.7 × 0.1 -> 5 × 0.1; 1.2 -> 2; 7 -> 10; 25 = 2.5 × 10 -> 5 × 10; exact powers of ten stay.
  CHECK(nice_step(0.37) == doctest::Approx(0.5));
  CHECK(nice_step(1.2) == doctest::Approx(2));
  CHECK(nice_step(7) == doctest::Approx(10));
  CHECK(nice_step(25) == doctest::Approx(50));
  CHECK(nice_step(0.1) == doctest::Approx(0.1));
  CHECK(nice_step(1000) == doctest::Approx(1000));
  CHECK(nice_step(2) == doctest::Approx(2));

  CHECK(format_tick(0.25, 0.05) == "0.25");  // step 5e-2 needs 2 decimals
  CHECK(format_tick(1.5, 0.5) == "1.5");
  CHECK(format_tick(20, 5) == "20");
  CHECK(format_tick(3 * 0.1 - 0.3, 0.1) == "0.0");  // 5.6e-17, a hair off zero: not "-0.0" nor "0.0000..."
  CHECK(format_tick(-0.0, 1) == "0");
  CHECK(format_tick(-2, 1) == "-2");
  // Steps below 1e-4 or from 1e6 up use exponents, the mantissa with the digits the step needs:
  // 3.1e-4 on a step of 1e-5 is 31 steps -> "3.1e-4"; 2e6 on a step of 1e6 -> "2e6".
  CHECK(format_tick(3.1e-4, 1e-5) == "3.1e-4");
  CHECK(format_tick(2e6, 1e6) == "2e6");
  CHECK(format_tick(0, 1e-5) == "0");
  CHECK(format_tick(9.99999999e-5, 1e-5) == "1.0e-4");  // rounding carries the mantissa to 10

  CHECK_THROWS_WITH_AS(nice_step(0), doctest::Contains("positive"), std::runtime_error);
  CHECK_THROWS_WITH_AS(nice_step(NAN), doctest::Contains("positive"), std::runtime_error);
}

TEST_CASE("plot: text_width and draw_text put the glyphs' ink exactly in the text's box") {
  // Glyphs are trimmed to their inked columns, one blank column between them:
  // 'A' 5 + 1 + 'b' 5 + 1 + '1' 3 (columns 1-3 of 0x04 0x0C ... 0x0E) = 15 font pixels.
  CHECK(text_width("Ab1", 1) == 15);
  CHECK(text_width("Ab1", 2) == 30);
  CHECK(text_width(".", 1) == 1);
  CHECK(text_width("i l", 1) == 3 + 1 + 3 + 1 + 3);  // a space advances 3
  CHECK(text_width("", 3) == 0);

  // "Ab1" at scale 2 from (10, 20): 'A' has ink in its leftmost column and top row, '1' in its rightmost column
  // and bottom row, so the ink fills the box 30 × 14 (7 rows above the baseline, no descenders) exactly.
  RgbImage image(64, 48);
  draw_text(image, 10, 20, "Ab1", 0x000000, 2);
  const InkBox box = ink_box(image, 0x000000);
  CHECK(box.left == 10);
  CHECK(box.right == 10 + 30 - 1);
  CHECK(box.top == 20);
  CHECK(box.bottom == 20 + 2 * font_cap_height - 1);
  // 'A''s top row is 0x0E (.###.): font column 0 blank, column 1 inked; each font pixel is a 2 × 2 square.
  CHECK(image.at(10, 20) == white);
  CHECK(image.at(11, 21) == white);
  CHECK(image.at(12, 20) == 0x000000);
  CHECK(image.at(13, 21) == 0x000000);
  // Ink only, never blended: every pixel is black or white.
  CHECK(count_pixels(image, 0x000000, 0, 64) + count_pixels(image, white, 0, 64) == 64 * 48);

  // 'g' hangs two font rows below the baseline.
  RgbImage descender(16, 16);
  draw_text(descender, 2, 2, "g", 0x000000, 1);
  CHECK(ink_box(descender, 0x000000).bottom == 2 + font_line_height - 1);

  // A character outside the font prints as a 5 × 7 box, so that it is noticed.
  RgbImage unknown(16, 16);
  draw_text(unknown, 3, 4, "\x01", 0x000000, 1);
  CHECK(text_width("\x01", 1) == 5);
  CHECK(unknown.at(3, 4) == 0x000000);
  CHECK(unknown.at(7, 10) == 0x000000);
  CHECK(unknown.at(5, 7) == white);
}

TEST_CASE("plot: a chart of two series written as PNG reads back losslessly: size, colours, white corners") {
  const fs::path path = fs::temp_directory_path() / ("vt_test_plot_" + std::to_string(::getpid()) + ".png");
  const Panel loss{"Training loss", "epoch", "loss", {line("vit", blue, 2.3, 0.6), line("tnt", orange, 2.0, 0.4)}};
  const Panel accuracy{"Accuracy (%)", "epoch", "top-1 (%)", {line("vit", blue, 40, 80), line("tnt", orange, 35, 85)}};
  write_line_chart_png(path.string(), {loss, accuracy}, 480, 320);
  const RgbImage image = read_png(path.string());
  fs::remove(path);

  CHECK(image.width == 2 * 480);
  CHECK(image.height == 320);
  CHECK(image.pixels == render_line_chart({loss, accuracy}, 480, 320).pixels);  // PNG is lossless
  CHECK(image.at(0, 0) == white);
  CHECK(image.at(image.width - 1, 0) == white);
  CHECK(image.at(0, image.height - 1) == white);
  CHECK(image.at(image.width - 1, image.height - 1) == white);
  // Both series' exact colours (line centres and markers) in both halves of each panel: the curves run across
  // the whole plot, not just in the legend, which sits in one corner.
  for (int panel = 0; panel < 2; ++panel)
    for (uint32_t rgb : {blue, orange}) {
      CHECK(count_pixels(image, rgb, panel * 480, panel * 480 + 240) > 100);
      CHECK(count_pixels(image, rgb, panel * 480 + 240, panel * 480 + 480) > 100);
    }
  // Anti-aliased edges: pixels strictly between white and blue, every channel at the same fraction of the way.
  int edge_pixels = 0;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < 480; ++x) edge_pixels += partial_blend_over_white(image.at(x, y), blue);
  CHECK(edge_pixels > 100);
}

TEST_CASE("plot: the legend goes to the corner the curves leave empty") {
  // Falling lines leave the upper right empty (the legend's first choice); rising lines fill it, and leave the
  // upper left empty. The legend's border colour is used by nothing else.
  const RgbImage falling = render_line_chart({Panel{"", "", "", {line("a", blue, 5, 1), line("b", orange, 4, 0)}}});
  const InkBox falling_box = ink_box(falling, legend_border);
  CHECK(falling_box.left > 240);
  CHECK(falling_box.bottom < 160);

  const RgbImage rising = render_line_chart({Panel{"", "", "", {line("a", blue, 1, 5), line("b", orange, 0, 4)}}});
  const InkBox rising_box = ink_box(rising, legend_border);
  CHECK(rising_box.right < 240);
  CHECK(rising_box.bottom < 160);

  // Series without names have no legend.
  const RgbImage unnamed = render_line_chart({Panel{"", "", "", {line("", blue, 1, 5)}}});
  CHECK(count_pixels(unnamed, legend_border, 0, unnamed.width) == 0);
}

TEST_CASE("plot: NaN and infinite points, a single point, a constant series and an empty panel still render") {
  const Series gaps{"gaps", {0, 1, 2, NAN, 4, 5, 6}, {1, 2, NAN, 3, INFINITY, 2.5, 2}, purple};
  const Series single{"single", {2.5}, {7}, brown};
  const Series constant{"constant", {0, 6}, {4, 4}, green};
  const Series only_nan{"nothing", {NAN, 1}, {0, NAN}, orange};
  const RgbImage image = render_line_chart({Panel{"edge cases", "x", "y", {gaps, single, constant, only_nan}},
                                            Panel{"constant only", "step", "lr", {Series{"lr", {0, 1}, {3e-4, 3e-4}, blue}}},
                                            Panel{"empty", "", "", {}}});
  CHECK(image.width == 3 * 480);
  CHECK(count_pixels(image, purple, 0, 480) > 50);
  CHECK(count_pixels(image, brown, 0, 480) > 20);  // the lone point's marker, plus its legend swatch
  CHECK(count_pixels(image, green, 0, 480) > 50);
  CHECK(count_pixels(image, blue, 480, 960) > 50);
  // The unnamed empty panel has a frame and grid but no data and no legend.
  CHECK(count_pixels(image, 0x404040, 960, 1440) > 500);
  CHECK(count_pixels(image, legend_border, 960, 1440) == 0);
}

TEST_CASE("plot: misuse and unwritable files fail loudly") {
  const Panel panel{"t", "x", "y", {line("a", blue, 0, 1)}};
  CHECK_THROWS_WITH_AS(write_line_chart_png("/nonexistent_directory_vt/chart.png", {panel}),
                       doctest::Contains("'/nonexistent_directory_vt/chart.png': cannot create the temporary file"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(render_line_chart({}), doctest::Contains("at least one panel"), std::runtime_error);
  CHECK_THROWS_WITH_AS(render_line_chart({panel}, 100, 80), doctest::Contains("at least 200 x 150"),
                       std::runtime_error);
  const Panel mismatched{"t", "x", "y", {Series{"bad", {1, 2, 3}, {1, 2}, blue}}};
  CHECK_THROWS_WITH_AS(render_line_chart({mismatched}), doctest::Contains("3 x values but 2 y values"),
                       std::runtime_error);
}
