// cross_entropy: fused log-softmax + negative log-likelihood with label smoothing, for class-index or
// probability (mixup / cutmix) targets, PyTorch's semantics and its mean over the batch. Conventions: logits
// (B, C) only; kernels compute in double (B * C is tiny next to the model, and the loss is what gets reported);
// forward saves each row's logsumexp so that backward rebuilds softmax(logits) without storing (B, C) more.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "autograd/parallel.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "ops/softmax_kernels.h"

namespace vt {

// Elements below which a kernel stays on one thread.
constexpr int64_t kCrossEntropyGrain = 1 << 14;

// ---- CPU kernels; `target_weight(r, c)` gives q_c of row r ----

// Per row, with m = max_c x_c and s = sum_c exp(x_c - m) (the max makes every exponent <= 0, so nothing
// overflows and s >= 1): log p_c = (x_c - m) - log s, and
//   loss = -sum_c q_c log p_c = sum_c q_c (m - x_c) + log s * sum_c q_c,
// where every term is >= 0 (q >= 0): no cancellation, even between logits ~1000 and their logsumexp.
template <class T, class TargetWeight>
static void cross_entropy_forward_rows(T* row_loss, double* logsumexp, const T* logits, int64_t rows, int64_t cols,
                                       const TargetWeight& target_weight) {
  parallel_for(0, rows, std::max<int64_t>(1, kCrossEntropyGrain / cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = logits + r * cols;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < cols; ++c) m = std::max(m, double(xr[c]));
      double total = 0;
      for (int64_t c = 0; c < cols; ++c) total += std::exp(double(xr[c]) - m);
      const double log_total = std::log(total);
      double q_sum = 0, q_distance = 0;  // sum_c q_c and sum_c q_c (m - x_c)
      for (int64_t c = 0; c < cols; ++c) {
        const double q = target_weight(r, c);
        q_sum += q;
        q_distance += q * (m - double(xr[c]));
      }
      row_loss[r] = T(q_distance + log_total * q_sum);
      logsumexp[r] = m + log_total;
    }
  });
}

// d loss_r / d x_c = p_c sum_j q_j - q_c (p - q when q sums to 1: one-hot or smoothed labels, proper
// probabilities); d loss_r / d target_c = -(1 - smoothing) log p_c.
template <class T, class TargetWeight>
static void cross_entropy_backward_rows(T* dlogits, T* dtarget, const T* logits, const double* logsumexp,
                                        double scale, int64_t rows, int64_t cols, double smoothing,
                                        const TargetWeight& target_weight) {
  parallel_for(0, rows, std::max<int64_t>(1, kCrossEntropyGrain / cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = logits + r * cols;
      double q_sum = 0;
      for (int64_t c = 0; c < cols; ++c) q_sum += target_weight(r, c);
      for (int64_t c = 0; c < cols; ++c) {
        const double log_p = double(xr[c]) - logsumexp[r];
        dlogits[r * cols + c] = T(scale * (std::exp(log_p) * q_sum - target_weight(r, c)));
        if (dtarget) dtarget[r * cols + c] = T(-scale * (1 - smoothing) * log_p);
      }
    }
  });
}

// q_c = (1 - smoothing) [c == label] + smoothing / C
struct LabelWeight {
  const int64_t* labels;
  int64_t cols;
  double smoothing;
  double operator()(int64_t r, int64_t c) const {
    return (c == labels[r] ? 1 - smoothing : 0.0) + smoothing / double(cols);
  }
};

// q_c = (1 - smoothing) target_c + smoothing / C
template <class T>
struct ProbabilityWeight {
  const T* target;
  int64_t cols;
  double smoothing;
  double operator()(int64_t r, int64_t c) const {
    return (1 - smoothing) * double(target[r * cols + c]) + smoothing / double(cols);
  }
};

template <class T>
void cross_entropy_labels_forward_cpu(T* row_loss, double* logsumexp, const T* logits, const int64_t* labels,
                                      int64_t rows, int64_t cols, double smoothing) {
  cross_entropy_forward_rows(row_loss, logsumexp, logits, rows, cols, LabelWeight{labels, cols, smoothing});
}

template <class T>
void cross_entropy_labels_backward_cpu(T* dlogits, const T* logits, const double* logsumexp, const int64_t* labels,
                                       double scale, int64_t rows, int64_t cols, double smoothing) {
  cross_entropy_backward_rows(dlogits, static_cast<T*>(nullptr), logits, logsumexp, scale, rows, cols, smoothing,
                              LabelWeight{labels, cols, smoothing});
}

template <class T>
void cross_entropy_probs_forward_cpu(T* row_loss, double* logsumexp, const T* logits, const T* target, int64_t rows,
                                     int64_t cols, double smoothing) {
  cross_entropy_forward_rows(row_loss, logsumexp, logits, rows, cols, ProbabilityWeight<T>{target, cols, smoothing});
}

template <class T>
void cross_entropy_probs_backward_cpu(T* dlogits, T* dtarget, const T* logits, const double* logsumexp,
                                      const T* target, double scale, int64_t rows, int64_t cols, double smoothing) {
  cross_entropy_backward_rows(dlogits, dtarget, logits, logsumexp, scale, rows, cols, smoothing,
                              ProbabilityWeight<T>{target, cols, smoothing});
}

// ---- reference kernels: q written out as a dense row, the textbook -sum q log p, one thread ----

// Each row's dense q: one-hot or probabilities mixed with the uniform distribution.
static std::vector<double> smoothed_row(const std::vector<double>& target_row, double smoothing) {
  std::vector<double> q(target_row.size());
  for (size_t c = 0; c < q.size(); ++c) q[c] = (1 - smoothing) * target_row[c] + smoothing / double(q.size());
  return q;
}

// log p_c = x_c - logsumexp(x), logsumexp computed with the max shift.
template <class T>
static std::vector<double> reference_log_probs(const T* xr, int64_t cols, double* logsumexp) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < cols; ++c) m = std::max(m, double(xr[c]));
  double total = 0;
  for (int64_t c = 0; c < cols; ++c) total += std::exp(double(xr[c]) - m);
  *logsumexp = m + std::log(total);
  std::vector<double> log_p(cols);
  for (int64_t c = 0; c < cols; ++c) log_p[c] = double(xr[c]) - *logsumexp;
  return log_p;
}

template <class T>
static void reference_forward(T* row_loss, double* logsumexp, const T* logits, const std::vector<double>& target,
                              int64_t rows, int64_t cols, double smoothing) {
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<double> log_p = reference_log_probs(logits + r * cols, cols, &logsumexp[r]);
    const std::vector<double> q =
        smoothed_row(std::vector<double>(target.begin() + r * cols, target.begin() + (r + 1) * cols), smoothing);
    double loss = 0;
    for (int64_t c = 0; c < cols; ++c) loss -= q[c] * log_p[c];
    row_loss[r] = T(loss);
  }
}

// Recomputes p from the logits (ignores the saved logsumexp), d/dx_c = p_c sum q - q_c, d/dq_c = -log p_c.
template <class T>
static void reference_backward(T* dlogits, T* dtarget, const T* logits, const std::vector<double>& target,
                               double scale, int64_t rows, int64_t cols, double smoothing) {
  for (int64_t r = 0; r < rows; ++r) {
    double logsumexp = 0;
    const std::vector<double> log_p = reference_log_probs(logits + r * cols, cols, &logsumexp);
    const std::vector<double> q =
        smoothed_row(std::vector<double>(target.begin() + r * cols, target.begin() + (r + 1) * cols), smoothing);
    double q_sum = 0;
    for (double v : q) q_sum += v;
    for (int64_t c = 0; c < cols; ++c) {
      dlogits[r * cols + c] = T(scale * (std::exp(log_p[c]) * q_sum - q[c]));
      if (dtarget) dtarget[r * cols + c] = T(scale * (1 - smoothing) * -log_p[c]);
    }
  }
}

static std::vector<double> one_hot(const int64_t* labels, int64_t rows, int64_t cols) {
  std::vector<double> target(rows * cols, 0.0);
  for (int64_t r = 0; r < rows; ++r) target[r * cols + labels[r]] = 1.0;
  return target;
}

template <class T>
void cross_entropy_labels_forward_reference(T* row_loss, double* logsumexp, const T* logits, const int64_t* labels,
                                            int64_t rows, int64_t cols, double smoothing) {
  reference_forward(row_loss, logsumexp, logits, one_hot(labels, rows, cols), rows, cols, smoothing);
}

template <class T>
void cross_entropy_labels_backward_reference(T* dlogits, const T* logits, const double* logsumexp,
                                             const int64_t* labels, double scale, int64_t rows, int64_t cols,
                                             double smoothing) {
  reference_backward(dlogits, static_cast<T*>(nullptr), logits, one_hot(labels, rows, cols), scale, rows, cols,
                     smoothing);
}

template <class T>
void cross_entropy_probs_forward_reference(T* row_loss, double* logsumexp, const T* logits, const T* target,
                                           int64_t rows, int64_t cols, double smoothing) {
  reference_forward(row_loss, logsumexp, logits, std::vector<double>(target, target + rows * cols), rows, cols,
                    smoothing);
}

template <class T>
void cross_entropy_probs_backward_reference(T* dlogits, T* dtarget, const T* logits, const double* logsumexp,
                                            const T* target, double scale, int64_t rows, int64_t cols,
                                            double smoothing) {
  reference_backward(dlogits, dtarget, logits, std::vector<double>(target, target + rows * cols), scale, rows, cols,
                     smoothing);
}

template void cross_entropy_labels_forward_cpu(float*, double*, const float*, const int64_t*, int64_t, int64_t, double);
template void cross_entropy_labels_forward_cpu(double*, double*, const double*, const int64_t*, int64_t, int64_t,
                                               double);
template void cross_entropy_labels_backward_cpu(float*, const float*, const double*, const int64_t*, double, int64_t,
                                                int64_t, double);
template void cross_entropy_labels_backward_cpu(double*, const double*, const double*, const int64_t*, double,
                                                int64_t, int64_t, double);
template void cross_entropy_probs_forward_cpu(float*, double*, const float*, const float*, int64_t, int64_t, double);
template void cross_entropy_probs_forward_cpu(double*, double*, const double*, const double*, int64_t, int64_t,
                                              double);
template void cross_entropy_probs_backward_cpu(float*, float*, const float*, const double*, const float*, double,
                                               int64_t, int64_t, double);
template void cross_entropy_probs_backward_cpu(double*, double*, const double*, const double*, const double*, double,
                                               int64_t, int64_t, double);
template void cross_entropy_labels_forward_reference(float*, double*, const float*, const int64_t*, int64_t, int64_t,
                                                     double);
template void cross_entropy_labels_forward_reference(double*, double*, const double*, const int64_t*, int64_t,
                                                     int64_t, double);
template void cross_entropy_labels_backward_reference(float*, const float*, const double*, const int64_t*, double,
                                                      int64_t, int64_t, double);
template void cross_entropy_labels_backward_reference(double*, const double*, const double*, const int64_t*, double,
                                                      int64_t, int64_t, double);
template void cross_entropy_probs_forward_reference(float*, double*, const float*, const float*, int64_t, int64_t,
                                                    double);
template void cross_entropy_probs_forward_reference(double*, double*, const double*, const double*, int64_t, int64_t,
                                                    double);
template void cross_entropy_probs_backward_reference(float*, float*, const float*, const double*, const float*,
                                                     double, int64_t, int64_t, double);
template void cross_entropy_probs_backward_reference(double*, double*, const double*, const double*, const double*,
                                                     double, int64_t, int64_t, double);

// ---- op ----

static void check_cross_entropy_inputs(const Tensor& logits, const Tensor& target, double smoothing) {
  const char* op = "cross_entropy";
  if (!logits.defined() || !target.defined()) fail(op, "undefined input");
  if (logits.dtype() == DType::i64) fail(op, "logits must be float32 or float64, got " + logits.str());
  if (logits.dim() != 2)
    fail(op, "needs logits (B, C), got " + logits.str() + "; higher-dim logits are not supported, flatten them to "
             "(B, C)");
  if (logits.size(0) == 0 || logits.size(1) == 0) fail(op, "needs at least one row and one class, got " + logits.str());
  check_same_device(op, {logits, target});
  if (target.dtype() == DType::i64) {
    if (target.dim() != 1 || target.size(0) != logits.size(0))
      fail(op, "class-index target must be (B) = (" + std::to_string(logits.size(0)) + ") for logits " +
                   logits.str() + ", got " + target.str());
  } else {
    if (target.dtype() != logits.dtype())
      fail(op, "probability target must have the logits' dtype, got " + target.str() + " for logits " + logits.str());
    if (target.shape() != logits.shape())
      fail(op, "probability target must have the logits' shape (B, C), got " + target.str() + " for logits " +
                   logits.str());
  }
  if (!(smoothing >= 0.0 && smoothing <= 1.0))
    fail(op, "label_smoothing must be in [0, 1], got " + std::to_string(smoothing));
}

// Labels are checked before the kernel (an exception cannot leave an OpenMP region).
static void check_labels(const int64_t* labels, int64_t rows, int64_t classes) {
  for (int64_t r = 0; r < rows; ++r)
    if (labels[r] < 0 || labels[r] >= classes)
      fail("cross_entropy", "label " + std::to_string(labels[r]) + " at index " + std::to_string(r) +
                                " is outside [0, " + std::to_string(classes) + ")");
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing) {
  check_cross_entropy_inputs(logits, target, label_smoothing);
  const int64_t rows = logits.size(0), cols = logits.size(1);
  const bool labels = target.dtype() == DType::i64;
  Tensor logits_c, target_c;
  {
    NoGradGuard no_grad;
    logits_c = contiguous(logits);  // (B, C)
    target_c = contiguous(target);  // (B) class indices or (B, C) probabilities
  }
  const Tensor logsumexp = Tensor::empty({rows}, DType::f64, logits.device());  // (B)
  Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());              // ()
  dispatch_float(
      logits, "cross_entropy",
      [&](auto zero) {
        using T = decltype(zero);
        const Tensor row_loss = Tensor::empty({rows}, logits.dtype());  // (B)
        if (labels) {
          check_labels(target_c.data<int64_t>(), rows, cols);
          cross_entropy_labels_forward_cpu(row_loss.data<T>(), logsumexp.data<double>(), logits_c.data<T>(),
                                           target_c.data<int64_t>(), rows, cols, label_smoothing);
        } else {
          cross_entropy_probs_forward_cpu(row_loss.data<T>(), logsumexp.data<double>(), logits_c.data<T>(),
                                          target_c.data<T>(), rows, cols, label_smoothing);
        }
        double total = 0;
        for (int64_t r = 0; r < rows; ++r) total += double(row_loss.data<T>()[r]);
        *loss.data<T>() = T(total / double(rows));
      },
      [&] {
        // The loss stays on the device. Labels are not read back to be checked (the trainer's were checked on the
        // host as the dataset loaded them): the kernel gives an out-of-range label's row a NaN loss, which the
        // training loop's non-finite check reports.
        cuda::cross_entropy_forward(loss.data<float>(), logsumexp.data<double>(), logits_c.data<float>(),
                                    labels ? target_c.data<int64_t>() : nullptr, labels ? nullptr : target_c.data<float>(),
                                    rows, cols, label_smoothing);
      });
  record("cross_entropy", loss, {logits, target}, {logits_c, target_c, logsumexp},
         [=](const Tensor& dloss, const BackwardContext& ctx) -> Grads {
           const Tensor &logits_c = ctx.saved[0], &target_c = ctx.saved[1], &logsumexp = ctx.saved[2];
           const DType dtype = logits_c.dtype();
           const Tensor dlogits = Tensor::empty({rows, cols}, dtype, logits_c.device());  // (B, C)
           Tensor dtarget;                                                                 // (B, C)
           if (ctx.needs_input_grad[1]) dtarget = Tensor::empty({rows, cols}, dtype, logits_c.device());
           dispatch_float(
               logits_c, "cross_entropy backward",
               [&](auto zero) {
                 using T = decltype(zero);
                 const double scale = dloss.item() / double(rows);  // d mean / d row_loss = dloss / B
                 if (labels)
                   cross_entropy_labels_backward_cpu(dlogits.data<T>(), logits_c.data<T>(), logsumexp.data<double>(),
                                                     target_c.data<int64_t>(), scale, rows, cols, label_smoothing);
                 else
                   cross_entropy_probs_backward_cpu(dlogits.data<T>(), dtarget.defined() ? dtarget.data<T>() : nullptr,
                                                    logits_c.data<T>(), logsumexp.data<double>(), target_c.data<T>(),
                                                    scale, rows, cols, label_smoothing);
               },
               [&] {  // dloss is read on the device: no host synchronisation in the backward pass
                 const Tensor dloss_c = contiguous(dloss);
                 cuda::cross_entropy_backward(dlogits.data<float>(), dtarget.defined() ? dtarget.data<float>() : nullptr,
                                              dloss_c.data<float>(), logits_c.data<float>(), logsumexp.data<double>(),
                                              labels ? target_c.data<int64_t>() : nullptr,
                                              labels ? nullptr : target_c.data<float>(), rows, cols, label_smoothing);
               });
           return {ctx.needs_input_grad[0] ? dlogits : Tensor(), dtarget};
         });
  return loss;
}

}  // namespace vt
