// Learning-rate schedules: closed forms of the step (no state), so a resumed run gets the same lr from its
// restored step count, and tests can check any step directly.
#include "nn/schedule.h"

#include <cmath>
#include <numbers>
#include <string>

#include "autograd/tensor.h"

namespace vt::nn {

LrSchedule::LrSchedule(Kind kind, double base_lr, int64_t warmup_steps, double warmup_start_lr)
    : kind_(kind), base_lr_(base_lr), warmup_steps_(warmup_steps), warmup_start_lr_(warmup_start_lr) {
  if (!(base_lr >= 0) || !std::isfinite(base_lr)) fail("LrSchedule", "base_lr must be finite and >= 0, got " + std::to_string(base_lr));
  if (warmup_steps < 0) fail("LrSchedule", "warmup_steps must be >= 0, got " + std::to_string(warmup_steps));
  if (!(warmup_start_lr >= 0) || !std::isfinite(warmup_start_lr))
    fail("LrSchedule", "warmup_start_lr must be finite and >= 0, got " + std::to_string(warmup_start_lr));
}

LrSchedule LrSchedule::cosine(double base_lr, int64_t total_steps, int64_t warmup_steps, double min_lr,
                              double warmup_start_lr) {
  LrSchedule schedule(Kind::cosine, base_lr, warmup_steps, warmup_start_lr);
  if (warmup_steps >= total_steps)
    fail("LrSchedule", "cosine needs warmup_steps < total_steps, got " + std::to_string(warmup_steps) + " and " +
                           std::to_string(total_steps));
  if (!(min_lr >= 0) || !std::isfinite(min_lr)) fail("LrSchedule", "min_lr must be finite and >= 0, got " + std::to_string(min_lr));
  schedule.total_steps_ = total_steps;
  schedule.min_lr_ = min_lr;
  return schedule;
}

LrSchedule LrSchedule::step_decay(double base_lr, int64_t step_size, double gamma, int64_t warmup_steps,
                                  double warmup_start_lr) {
  LrSchedule schedule(Kind::step_decay, base_lr, warmup_steps, warmup_start_lr);
  if (step_size < 1) fail("LrSchedule", "step_size must be >= 1, got " + std::to_string(step_size));
  if (!(gamma > 0) || !std::isfinite(gamma)) fail("LrSchedule", "gamma must be finite and > 0, got " + std::to_string(gamma));
  schedule.step_size_ = step_size;
  schedule.gamma_ = gamma;
  return schedule;
}

double LrSchedule::at(int64_t step) const {
  if (step < 0) fail("LrSchedule", "step must be >= 0, got " + std::to_string(step));
  if (step < warmup_steps_)
    return warmup_start_lr_ + (base_lr_ - warmup_start_lr_) * static_cast<double>(step + 1) / static_cast<double>(warmup_steps_);
  const int64_t t = step - warmup_steps_;
  if (kind_ == Kind::cosine) {
    const int64_t decay_steps = total_steps_ - warmup_steps_;
    if (t >= decay_steps) return min_lr_;
    const double progress = static_cast<double>(t) / static_cast<double>(decay_steps);
    return min_lr_ + (base_lr_ - min_lr_) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  }
  return base_lr_ * std::pow(gamma_, static_cast<double>(t / step_size_));
}

}  // namespace vt::nn
