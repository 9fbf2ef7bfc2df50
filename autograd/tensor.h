// Tensor: a strided view (shape, strides, offset) of a reference-counted Storage.
// Conventions: shapes and strides are in elements, row-major ("contiguous") is the default layout;
// views share storage; every tensor carries a dtype and a device, and every op dispatches on both.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace vt {

enum class DType { f32, f64, i64 };
enum class Device { cpu, cuda };
// How float32 matmuls may round their inputs on tensor cores: not at all, to TF32 (10-bit mantissa) or to bf16
// (7-bit mantissa); all three accumulate in fp32 into fp32 outputs. See set_matmul_precision in device.h.
enum class MatmulPrecision { fp32, tf32, bf16 };

using Shape = std::vector<int64_t>;

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
const char* device_name(Device device);
std::string shape_str(const Shape& shape);  // "(2, 3, 4)"
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

// Raw memory. The version counter is shared by every view of the storage: in-place writes bump it,
// and backward compares it with the value recorded when a tensor was saved.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::cpu;
  uint64_t version = 0;
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

struct Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f32,
                            Device device = Device::cpu);
  static Tensor from_indices(const std::vector<int64_t>& values, const Shape& shape, Device device = Device::cpu);  // i64
  static Tensor arange(int64_t n, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor empty_like(const Tensor& t);
  static Tensor zeros_like(const Tensor& t);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t offset() const;
  int64_t dim() const;
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  std::string str() const;  // "f32(2, 3)"
  const std::shared_ptr<Storage>& storage() const;

  // Typed pointer to element [0, ..., 0] (storage base + offset); checks the dtype.
  template <class T> T* data() const;
  void* raw_data() const;

  // ---- element access (for tests and small host code; a CUDA tensor is copied to the host first, which waits
  // for the GPU) ----
  double item() const;                                 // one-element tensors
  double at(std::initializer_list<int64_t> index) const;
  std::vector<double> to_vector() const;               // in row-major order of the logical shape
  std::vector<int64_t> to_indices() const;             // i64 tensors

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& requires_grad_(bool value = true);
  Tensor grad() const;                                  // undefined until a backward reaches this leaf
  void set_grad(const Tensor& grad) const;
  void zero_grad() const;                               // drops the gradient (like set_to_none)
  bool is_leaf() const;
  const std::shared_ptr<Node>& grad_fn() const;
  // Seeds the walk with `upstream` (ones for a one-element tensor when undefined).
  void backward(const Tensor& upstream = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;                                // shares storage, no graph

  // ---- in-place (outside the graph: refused on a tensor that requires grad while grad mode is on) ----
  Tensor& fill_(double value);
  Tensor& zero_();
  Tensor& copy_(const Tensor& src);                     // same shape, any strides, converts dtype
  Tensor& add_(const Tensor& other, double alpha = 1);  // this += alpha * other (other broadcast to this)
  Tensor& mul_(double value);
  void bump_version() const;

  // ---- conversions ----
  Tensor to(DType dtype) const;                         // copy (or self when the dtype matches)
  Tensor to(Device device) const;                       // contiguous copy on `device` (or self when already there)
  Tensor clone() const;                                 // contiguous copy, no graph

  // ---- view and shape methods (forward to ops, recorded in the graph) ----
  Tensor reshape(const Shape& shape) const;
  Tensor view(const Shape& shape) const;
  Tensor permute(const Shape& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor expand(const Shape& shape) const;
  Tensor contiguous() const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // set on outputs of recorded ops
  Tensor grad;                    // accumulated gradient of a leaf
};

// dst[...] = src[...] over dst's shape, converting the dtype; src may broadcast into dst and may sit on another
// device (it is then moved to dst's device first). No graph.
void copy_strided(const Tensor& dst, const Tensor& src);

// A view of t's storage with new geometry, which must lie inside it; no graph (ops wrap this and record their
// own node).
Tensor make_view(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset);

// Fails unless `y` may be written in place: a broadcast view (stride 0 over a dim of more than one) names one
// element several times, and each write would land on the others' results.
void check_writable_elements(const Tensor& y, const char* op);

// What an in-place update of y may read for `source`: source itself, or a copy of it when it views y's storage
// in another layout, whose elements the update would read after writing some of them (slice(t, 0, 1, 6)
// .copy_(slice(t, 0, 0, 5)) smeared t's first value).
Tensor source_for_inplace(const Tensor& y, const Tensor& source);

// Normalises a possibly negative dim against ndim, failing with the op's name when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// Throws std::runtime_error "op: message [file:line]": every failure names the op and where it was
// raised. Callers test first (`if (bad) fail(...)`) so that no message is built on the happy path.
[[noreturn]] void fail(const char* op, const std::string& message, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE());

}  // namespace vt
