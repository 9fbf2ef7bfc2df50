// cross_entropy: hand-derived and PyTorch values (label smoothing, probability targets), gradchecks with
// hard and soft targets and non-contiguous logits, large-logit stability, fast kernels vs reference, misuse.
#include <cmath>

#include "ops/softmax_kernels.h"
#include "tests/helpers.h"
#include "tests/reference/softmax.h"

using namespace vt;

namespace {

// logits[i] = 2 sin(0.37 i + 0.1) and target = raw / row sum with raw[i] = 1.1 + cos(0.53 i): the inputs of
// scripts/reference/softmax.py.
Tensor reference_logits(DType dtype = DType::f64) {
  std::vector<double> values(20);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 2 * std::sin(0.37 * double(i) + 0.1);
  return Tensor::from_vector(values, {4, 5}, dtype);
}

Tensor reference_target(DType dtype = DType::f64) {
  std::vector<double> values(20);
  for (int64_t r = 0; r < 4; ++r) {
    double total = 0;
    for (int64_t c = 0; c < 5; ++c) total += 1.1 + std::cos(0.53 * double(r * 5 + c));
    for (int64_t c = 0; c < 5; ++c) values[r * 5 + c] = (1.1 + std::cos(0.53 * double(r * 5 + c))) / total;
  }
  return Tensor::from_vector(values, {4, 5}, dtype);
}

}  // namespace

TEST_CASE("cross_entropy forward and backward: hand-derived values") {
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor labels = Tensor::from_indices({2}, {1});  // (1)
    // log_softmax([1, 2, 3]) = [-2.4076060, -1.4076060, -0.4076060]; label 2: loss = 0.4076060.
    Tensor logits = Tensor::from_vector({1, 2, 3}, {1, 3}, dtype).requires_grad_();  // (1, 3)
    Tensor loss = cross_entropy(logits, labels);
    CHECK(loss.shape() == Shape{});
    CHECK(loss.dtype() == dtype);
    testing::expect_close(loss, {0.4076059644443806}, 1e-6);
    // dlogits = softmax - onehot = [0.0900306, 0.2447285, 0.6652410 - 1]
    loss.backward();
    testing::expect_close(logits.grad(), {0.09003057317038046, 0.24472847105479767, -0.3347590442251781}, 1e-6);

    // Smoothing 0.1 over 3 classes: q = [0.1/3, 0.1/3, 0.9 + 0.1/3] = [0.0333, 0.0333, 0.9333];
    // loss = (2.4076060 + 1.4076060) / 30 + 0.9333333 * 0.4076060 = 0.1271737 + 0.3804322 = 0.5076060.
    logits.zero_grad();
    loss = cross_entropy(logits, labels, 0.1);
    testing::expect_close(loss, {0.5076059644443806}, 1e-6);
    // dlogits = p - q = [0.0900306 - 0.0333333, 0.2447285 - 0.0333333, 0.6652410 - 0.9333333]
    loss.backward();
    testing::expect_close(logits.grad(), {0.05669723983704713, 0.21139513772146434, -0.2680923775585114}, 1e-6);
  }
  // Mean over the batch: rows [0, 0] (label 0) and [0, ln 3] (label 1) have losses ln 2 and ln(4/3),
  // so the loss is (ln 2 + ln(4/3)) / 2 = ln(8/3) / 2 = 0.4904146.
  const Tensor logits = Tensor::from_vector({0, 0, 0, std::log(3.0)}, {2, 2}, DType::f64);
  testing::expect_close(cross_entropy(logits, Tensor::from_indices({0, 1}, {2})), {std::log(8.0 / 3.0) / 2}, 1e-15);
}

TEST_CASE("cross_entropy matches PyTorch: class indices with label smoothing") {
  const Tensor labels = Tensor::from_indices({1, 0, 4, 2}, {4});  // (4)
  for (DType dtype : {DType::f64, DType::f32}) {
    const double tolerance = dtype == DType::f64 ? 1e-14 : 1e-6;
    Tensor logits = reference_logits(dtype).requires_grad_();  // (4, 5)
    Tensor loss = cross_entropy(logits, labels, 0.1);
    testing::expect_close(loss, reference::cross_entropy_labels_loss, tolerance);
    loss.backward();
    testing::expect_close(logits.grad(), reference::cross_entropy_labels_dlogits, tolerance);
  }
}

TEST_CASE("cross_entropy matches PyTorch: probability targets with label smoothing") {
  for (DType dtype : {DType::f64, DType::f32}) {
    const double tolerance = dtype == DType::f64 ? 1e-14 : 1e-6;
    Tensor logits = reference_logits(dtype).requires_grad_();  // (4, 5)
    Tensor target = reference_target(dtype).requires_grad_();  // (4, 5)
    Tensor loss = cross_entropy(logits, target, 0.1);
    testing::expect_close(loss, reference::cross_entropy_probs_loss, tolerance);
    loss.backward();
    testing::expect_close(logits.grad(), reference::cross_entropy_probs_dlogits, tolerance);
    testing::expect_close(target.grad(), reference::cross_entropy_probs_dtarget, tolerance);
  }
  // A one-hot probability target is the same loss as its class index.
  const Tensor logits = reference_logits();
  const Tensor one_hot = Tensor::from_vector({0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0}, {4, 5},
                                             DType::f64);
  testing::expect_close(cross_entropy(logits, one_hot, 0.1), reference::cross_entropy_labels_loss, 1e-14);
}

TEST_CASE("cross_entropy gradcheck: class indices, probabilities, non-contiguous logits") {
  const Tensor labels = Tensor::from_indices({2, 0, 3, 3, 1}, {5});  // (5)
  const Tensor logits = testing::random_leaf({5, 4}, 21, 2.0);       // (5, 4)
  testing::gradcheck([&](const std::vector<Tensor>& l) { return cross_entropy(l[0], labels); }, {logits});
  testing::gradcheck([&](const std::vector<Tensor>& l) { return cross_entropy(l[0], labels, 0.1); }, {logits});
  // Transposed: the leaf is (C, B) = (4, 5) and the logits a (5, 4) view with strides (1, 5).
  const Tensor logits_t = testing::random_leaf({4, 5}, 22, 2.0);  // (4, 5)
  testing::gradcheck([&](const std::vector<Tensor>& l) { return cross_entropy(transpose(l[0], 0, 1), labels, 0.2); },
                     {logits_t});
  // Probability targets (softmax of a leaf, so that they sum to 1), gradients for both logits and target.
  const Tensor target_logits = testing::random_leaf({5, 4}, 23);  // (5, 4)
  testing::gradcheck(
      [](const std::vector<Tensor>& l) { return cross_entropy(l[0], softmax(l[1], -1), 0.1); },
      {logits, target_logits});
  // Unnormalised non-negative targets: the gradient p * sum(q) - q, not p - q.
  const Tensor weights = testing::random_leaf({5, 4}, 24);  // (5, 4)
  testing::gradcheck([](const std::vector<Tensor>& l) { return cross_entropy(l[0], exp(l[1]), 0.3); },
                     {logits, weights});
}

TEST_CASE("cross_entropy of large logits stays finite") {
  for (DType dtype : {DType::f32, DType::f64}) {
    // Row 1: [1000, 1001, 1002] label 0: loss = -log_softmax([0, 1, 2])[0] = 2.4076060 (exp(1000) is inf).
    // Row 2: [1000, -1000, 0] label 1: loss = 2000 (log p = -2000 - log(1 + e^-1000 + e^-2000) = -2000).
    Tensor logits = Tensor::from_vector({1000, 1001, 1002, 1000, -1000, 0}, {2, 3}, dtype).requires_grad_();
    Tensor loss = cross_entropy(logits, Tensor::from_indices({0, 1}, {2}));
    // (2.4076060 + 2000) / 2 = 1001.2038030
    testing::expect_close(loss, {1001.2038029822222}, dtype == DType::f32 ? 1e-4 : 1e-12);
    loss.backward();
    // (softmax - onehot) / 2: row 1 [0.0900306 - 1, 0.2447285, 0.6652410] / 2, row 2 [1, -1, 0] / 2.
    testing::expect_close(logits.grad(),
                          {-0.45498471341480977, 0.12236423552739884, 0.33262047788741095, 0.5, -0.5, 0}, 1e-7);
  }
}

namespace {

// Runs the fast cross-entropy kernels and their references on random inputs of type T and compares.
template <class T>
void compare_cross_entropy_kernels(DType dtype, int64_t rows, int64_t cols, double smoothing, double atol) {
  INFO("dtype " << dtype_name(dtype) << ", rows " << rows << ", cols " << cols << ", smoothing " << smoothing);
  Generator generator(rows * 100 + cols);
  const Tensor logits = mul(randn({rows, cols}, dtype, generator), 4.0);  // (rows, cols)
  const Tensor target = softmax(randn({rows, cols}, dtype, generator), -1);  // (rows, cols)
  std::vector<int64_t> label_values(rows);
  for (int64_t r = 0; r < rows; ++r) label_values[r] = (r * 7 + 3) % cols;
  const Tensor labels = Tensor::from_indices(label_values, {rows});  // (rows)
  const double scale = 0.37;

  Tensor loss_fast = Tensor::empty({rows}, dtype), loss_reference = Tensor::empty({rows}, dtype);  // (rows)
  Tensor lse_fast = Tensor::empty({rows}, DType::f64), lse_reference = Tensor::empty({rows}, DType::f64);  // (rows)
  Tensor dlogits_fast = Tensor::empty({rows, cols}, dtype), dlogits_reference = Tensor::empty({rows, cols}, dtype);
  Tensor dtarget_fast = Tensor::empty({rows, cols}, dtype), dtarget_reference = Tensor::empty({rows, cols}, dtype);

  cross_entropy_labels_forward_cpu(loss_fast.data<T>(), lse_fast.data<double>(), logits.data<T>(),
                                   labels.data<int64_t>(), rows, cols, smoothing);
  cross_entropy_labels_forward_reference(loss_reference.data<T>(), lse_reference.data<double>(), logits.data<T>(),
                                         labels.data<int64_t>(), rows, cols, smoothing);
  testing::expect_close(loss_fast, loss_reference, atol, 1e-6);
  testing::expect_close(lse_fast, lse_reference, 1e-12, 1e-14);
  cross_entropy_labels_backward_cpu(dlogits_fast.data<T>(), logits.data<T>(), lse_fast.data<double>(),
                                    labels.data<int64_t>(), scale, rows, cols, smoothing);
  cross_entropy_labels_backward_reference(dlogits_reference.data<T>(), logits.data<T>(), lse_fast.data<double>(),
                                          labels.data<int64_t>(), scale, rows, cols, smoothing);
  testing::expect_close(dlogits_fast, dlogits_reference, atol);

  cross_entropy_probs_forward_cpu(loss_fast.data<T>(), lse_fast.data<double>(), logits.data<T>(), target.data<T>(),
                                  rows, cols, smoothing);
  cross_entropy_probs_forward_reference(loss_reference.data<T>(), lse_reference.data<double>(), logits.data<T>(),
                                        target.data<T>(), rows, cols, smoothing);
  testing::expect_close(loss_fast, loss_reference, atol, 1e-6);
  testing::expect_close(lse_fast, lse_reference, 1e-12, 1e-14);
  cross_entropy_probs_backward_cpu(dlogits_fast.data<T>(), dtarget_fast.data<T>(), logits.data<T>(),
                                   lse_fast.data<double>(), target.data<T>(), scale, rows, cols, smoothing);
  cross_entropy_probs_backward_reference(dlogits_reference.data<T>(), dtarget_reference.data<T>(), logits.data<T>(),
                                         lse_fast.data<double>(), target.data<T>(), scale, rows, cols, smoothing);
  testing::expect_close(dlogits_fast, dlogits_reference, atol);
  testing::expect_close(dtarget_fast, dtarget_reference, atol, 1e-6);
}

}  // namespace

TEST_CASE("cross_entropy fast kernels match the reference kernels (f32, f64, odd sizes, threaded)") {
  // 401 x 53 is above the threading grain.
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{1, 1}, {3, 2}, {7, 10}, {5, 33}, {401, 53}};
  for (auto [rows, cols] : sizes)
    for (double smoothing : {0.0, 0.1}) {
      compare_cross_entropy_kernels<float>(DType::f32, rows, cols, smoothing, 1e-6);
      compare_cross_entropy_kernels<double>(DType::f64, rows, cols, smoothing, 1e-13);
    }
}

TEST_CASE("cross_entropy misuse fails loudly") {
  const Tensor logits = Tensor::zeros({3, 4});  // (3, 4)
  CHECK_THROWS_WITH_AS(cross_entropy(logits, Tensor::from_indices({0, 4, 1}, {3})),
                       doctest::Contains("label 4 at index 1 is outside [0, 4)"), std::runtime_error);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, Tensor::from_indices({0, 1, -1}, {3})),
                       doctest::Contains("label -1 at index 2"), std::runtime_error);
  CHECK_THROWS_WITH_AS(cross_entropy(Tensor::zeros({2, 3, 4}), Tensor::from_indices({0, 1}, {2})),
                       doctest::Contains("needs logits (B, C)"), std::runtime_error);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, Tensor::from_indices({0, 1}, {2})),
                       doctest::Contains("class-index target must be (B) = (3)"), std::runtime_error);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, Tensor::zeros({3, 5})), doctest::Contains("logits' shape"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, Tensor::zeros({3, 4}, DType::f64)), doctest::Contains("logits' dtype"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(cross_entropy(Tensor::from_indices({0, 1}, {1, 2}), Tensor::from_indices({0}, {1})),
                       doctest::Contains("float32 or float64"), std::runtime_error);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, Tensor::from_indices({0, 1, 2}, {3}), 1.5),
                       doctest::Contains("label_smoothing must be in [0, 1]"), std::runtime_error);
  CHECK_THROWS_WITH_AS(cross_entropy(Tensor::empty({0, 4}), Tensor::empty({0}, DType::i64)),
                       doctest::Contains("at least one row"), std::runtime_error);
}
