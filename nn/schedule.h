// Per-iteration learning-rate schedules: pure functions of the optimizer step, at(s) being the lr of the
// (s + 1)-th step() (s counts from 0, i.e. optimizer.step_count before the step). Conventions: an optional
// linear warm-up of W steps comes first, then the decay counts its steps from the end of the warm-up.
#pragma once

#include <cstdint>

namespace vt::nn {

// Warm-up (s < W): lr = warmup_start_lr + (base_lr - warmup_start_lr) * (s + 1) / W. The (s + 1) makes the
// first step small but nonzero when warmup_start_lr is 0 (timm's s / W would waste it on lr 0), and the
// last warm-up step uses base_lr.
class LrSchedule {
 public:
  // Cosine decay over the D = total_steps - W steps after the warm-up, t = s - W:
  // lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * t / D)) / 2, so base_lr at t = 0, the midpoint
  // (base_lr + min_lr) / 2 at t = D / 2, and min_lr from t = D (step total_steps) on.
  static LrSchedule cosine(double base_lr, int64_t total_steps, int64_t warmup_steps = 0, double min_lr = 0.0,
                           double warmup_start_lr = 0.0);
  // Step decay: lr = base_lr * gamma^floor(t / step_size) with t = s - W (PyTorch's StepLR, per step).
  static LrSchedule step_decay(double base_lr, int64_t step_size, double gamma, int64_t warmup_steps = 0,
                               double warmup_start_lr = 0.0);

  double at(int64_t step) const;

 private:
  enum class Kind { cosine, step_decay };
  LrSchedule(Kind kind, double base_lr, int64_t warmup_steps, double warmup_start_lr);
  Kind kind_;
  double base_lr_;
  int64_t warmup_steps_;
  double warmup_start_lr_;
  int64_t total_steps_ = 0;  // cosine
  double min_lr_ = 0.0;      // cosine
  int64_t step_size_ = 0;    // step decay
  double gamma_ = 1.0;       // step decay
};

}  // namespace vt::nn
