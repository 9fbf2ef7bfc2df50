"""PIL / timm reference pixels for tests/test_augment.cpp.

Run: /opt/tv/bin/python scripts/reference/augment.py > tests/reference/augment.h
(the venv of scripts/reference/models.py: timm over Debian's python3-pil). Each array is the 8-bit HWC output
of one timm.data.auto_augment op (which call PIL's ImageOps, ImageEnhance and Image.transform) with fixed
arguments on one of the formula images below, which the C++ test rebuilds without Python.
"""
import contextlib
import sys

import numpy as np
import PIL
from PIL import Image

with contextlib.redirect_stdout(sys.stderr):  # timm may print import warnings; stdout is the header
    import timm
    import timm.data.auto_augment as aa


def pattern(height, width, channels):
    """pattern[y, x, c] = (23 x + 41 y + 67 c + (7 x y) mod 29) mod 256"""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(channels), indexing="ij")
    return ((23 * x + 41 * y + 67 * c + (7 * x * y) % 29) % 256).astype(np.uint8)


def dull(height, width, channels):
    """dull = 60 + (100 pattern) div 255, levels in [60, 160]"""
    return (60 + (100 * pattern(height, width, channels).astype(np.int64)) // 255).astype(np.uint8)


def sparse(height, width, channels):
    """sparse[y, x, c] = (0, 7, 255)[(x + 2 y + c) mod 3]"""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(channels), indexing="ij")
    return np.array([0, 7, 255], dtype=np.uint8)[(x + 2 * y + c) % 3]


def to_pil(array):
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


INPUTS = {
    "pattern_rgb": pattern(12, 14, 3),
    "pattern_gray": pattern(12, 14, 1),
    "dull_rgb": dull(12, 14, 3),
    "dull_gray": dull(12, 14, 1),
    "large_rgb": pattern(24, 30, 3),  # equalize needs more than 255 pixels to change anything
    "large_dull_rgb": dull(24, 30, 3),
    "sparse_rgb": sparse(24, 30, 3),
}

BILINEAR, BICUBIC = Image.Resampling.BILINEAR, Image.Resampling.BICUBIC


def geometric(function, argument, resample):
    def run(image):
        fill = 128 if image.mode == "L" else (128, 128, 128)  # timm's _FILL; PIL wants one int for L
        return function(image, argument, resample=resample, fillcolor=fill)
    return run


# (name, input, what the C++ test calls, function of a PIL image)
CASES = [
    ("auto_contrast_dull_rgb", "dull_rgb", "auto_contrast", aa.auto_contrast),
    ("auto_contrast_dull_gray", "dull_gray", "auto_contrast", aa.auto_contrast),
    ("auto_contrast_pattern_rgb", "pattern_rgb", "auto_contrast", aa.auto_contrast),
    ("equalize_large_rgb", "large_rgb", "equalize", aa.equalize),
    ("equalize_large_dull_rgb", "large_dull_rgb", "equalize", aa.equalize),
    ("equalize_sparse_rgb", "sparse_rgb", "equalize", aa.equalize),
    ("invert_pattern_rgb", "pattern_rgb", "invert", aa.invert),
    ("posterize_3_pattern_rgb", "pattern_rgb", "posterize(3)", lambda im: aa.posterize(im, 3)),
    ("posterize_0_pattern_gray", "pattern_gray", "posterize(0)", lambda im: aa.posterize(im, 0)),
    ("solarize_100_pattern_rgb", "pattern_rgb", "solarize(100)", lambda im: aa.solarize(im, 100)),
    ("solarize_add_77_pattern_rgb", "pattern_rgb", "solarize_add(77, 128)", lambda im: aa.solarize_add(im, 77, 128)),
    ("color_0_1_pattern_rgb", "pattern_rgb", "adjust_color(0.1)", lambda im: aa.color(im, 0.1)),
    ("color_1_72_pattern_rgb", "pattern_rgb", "adjust_color(1.72)", lambda im: aa.color(im, 1.72)),
    ("color_0_37_pattern_gray", "pattern_gray", "adjust_color(0.37)", lambda im: aa.color(im, 0.37)),
    ("contrast_0_28_pattern_rgb", "pattern_rgb", "adjust_contrast(0.28)", lambda im: aa.contrast(im, 0.28)),
    ("contrast_1_72_pattern_rgb", "pattern_rgb", "adjust_contrast(1.72)", lambda im: aa.contrast(im, 1.72)),
    ("contrast_1_9_dull_gray", "dull_gray", "adjust_contrast(1.9)", lambda im: aa.contrast(im, 1.9)),
    ("brightness_0_55_pattern_rgb", "pattern_rgb", "adjust_brightness(0.55)", lambda im: aa.brightness(im, 0.55)),
    ("brightness_1_54_pattern_rgb", "pattern_rgb", "adjust_brightness(1.54)", lambda im: aa.brightness(im, 1.54)),
    ("sharpness_0_1_pattern_rgb", "pattern_rgb", "adjust_sharpness(0.1)", lambda im: aa.sharpness(im, 0.1)),
    ("sharpness_1_9_pattern_rgb", "pattern_rgb", "adjust_sharpness(1.9)", lambda im: aa.sharpness(im, 1.9)),
    ("sharpness_1_72_pattern_gray", "pattern_gray", "adjust_sharpness(1.72)", lambda im: aa.sharpness(im, 1.72)),
    ("rotate_27_bilinear_rgb", "pattern_rgb", "rotate(27, bilinear)", geometric(aa.rotate, 27.0, BILINEAR)),
    ("rotate_m27_bicubic_rgb", "pattern_rgb", "rotate(-27, bicubic)", geometric(aa.rotate, -27.0, BICUBIC)),
    ("rotate_13_5_bilinear_gray", "pattern_gray", "rotate(13.5, bilinear)", geometric(aa.rotate, 13.5, BILINEAR)),
    ("rotate_m6_bicubic_gray", "pattern_gray", "rotate(-6, bicubic)", geometric(aa.rotate, -6.0, BICUBIC)),
    # right angles: the rotation matrix is exact only after PIL's round(x, 15); 180 goes through PIL's transpose
    ("rotate_90_bilinear_rgb", "pattern_rgb", "rotate(90, bilinear)", geometric(aa.rotate, 90.0, BILINEAR)),
    ("rotate_180_bicubic_rgb", "pattern_rgb", "rotate(180, bicubic)", geometric(aa.rotate, 180.0, BICUBIC)),
    ("rotate_m90_bicubic_gray", "pattern_gray", "rotate(-90, bicubic)", geometric(aa.rotate, -90.0, BICUBIC)),
    ("shear_x_0_27_bilinear_rgb", "pattern_rgb", "shear_x 0.27, bilinear", geometric(aa.shear_x, 0.27, BILINEAR)),
    ("shear_x_m0_27_bicubic_rgb", "pattern_rgb", "shear_x -0.27, bicubic", geometric(aa.shear_x, -0.27, BICUBIC)),
    ("shear_y_0_21_bicubic_gray", "pattern_gray", "shear_y 0.21, bicubic", geometric(aa.shear_y, 0.21, BICUBIC)),
    ("shear_y_m0_3_bilinear_rgb", "pattern_rgb", "shear_y -0.3, bilinear", geometric(aa.shear_y, -0.3, BILINEAR)),
    ("translate_x_0_405_bilinear_rgb", "pattern_rgb", "translate_x_rel 0.405, bilinear",
     geometric(aa.translate_x_rel, 0.405, BILINEAR)),
    ("translate_x_m0_2_bicubic_rgb", "pattern_rgb", "translate_x_rel -0.2, bicubic",
     geometric(aa.translate_x_rel, -0.2, BICUBIC)),
    ("translate_y_0_36_bicubic_gray", "pattern_gray", "translate_y_rel 0.36, bicubic",
     geometric(aa.translate_y_rel, 0.36, BICUBIC)),
    ("translate_y_m0_45_bilinear_rgb", "pattern_rgb", "translate_y_rel -0.45, bilinear",
     geometric(aa.translate_y_rel, -0.45, BILINEAR)),
]

print(f"// Generated by scripts/reference/augment.py with PIL {PIL.__version__} and timm {timm.__version__}; do not edit.")
print("// 8-bit HWC outputs of timm.data.auto_augment ops on the formula images of the script (see each comment).")
print("#pragma once")
print()
print("#include <cstdint>")
print("#include <vector>")
print()
print("namespace vt::reference {")
print()
for name, input_name, call, function in CASES:
    source = INPUTS[input_name]
    output = np.asarray(function(to_pil(source)), dtype=np.uint8).reshape(-1)
    values = ", ".join(str(v) for v in output.tolist())
    height, width, channels = source.shape
    print(f"// {call} on {input_name} ({height}, {width}, {channels})")
    print(f"inline const std::vector<uint8_t> augment_{name} = {{{values}}};")
print()
print("}  // namespace vt::reference")
