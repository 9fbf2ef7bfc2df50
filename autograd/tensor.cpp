// Tensor creation, metadata, element access and the in-place methods that live outside the graph.
// Conventions: all element access here is CPU-only and typed by a switch on the dtype; copies go through
// copy_strided, the one kernel that converts between layouts and dtypes.
#include "autograd/tensor.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include "autograd/allocator.h"
#include "autograd/cuda.h"
#include "autograd/device.h"
#include "autograd/engine.h"
#include "autograd/strided.h"
#include "ops/cuda/kernels.h"
#include "ops/ops.h"

namespace vt {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i64: return 8;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i64: return "i64";
  }
  return "?";
}

const char* device_name(Device device) { return device == Device::cpu ? "cpu" : "cuda"; }

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

// Shapes come from files and command lines, so the element count is checked: every size >= 0, and the
// product of the sizes with 0 counted as 1 (what contiguous strides reach, even for an empty tensor) below 2^63.
int64_t shape_numel(const Shape& shape) {
  int64_t n = 1, reach = 1;
  for (int64_t s : shape) {
    if (s < 0) fail("shape", "negative size in " + shape_str(shape));
    if (__builtin_mul_overflow(reach, std::max<int64_t>(s, 1), &reach))
      fail("shape", shape_str(shape) + " is too large: its sizes multiply past 2^63");
    n *= s;  // 0, or equal to reach
  }
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  shape_numel(shape);  // checks that no stride below can overflow
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<int64_t>(shape[i], 1);  // PyTorch's convention: an empty dim does not zero the strides
  }
  return strides;
}

void fail(const char* op, const std::string& message, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  throw std::runtime_error(std::string(op) + ": " + message + " [" + (base ? base + 1 : file) + ":" +
                           std::to_string(line) + "]");
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t wrapped = dim < 0 ? dim + ndim : dim;
  if (wrapped < 0 || wrapped >= ndim)  // a 0-dim tensor has no dim to name (ten ops indexed its empty shape)
    fail(op, "dim " + std::to_string(dim) + " out of range for a tensor of " + std::to_string(ndim) + " dims");
  return wrapped;
}

// ---- Storage ----

Storage::Storage(size_t bytes_, Device device_) : bytes(bytes_), device(device_) {
  switch (device) {
    case Device::cpu: data = cpu_allocate(bytes); break;
    case Device::cuda: on_cuda("allocate", [&] { data = cuda::allocate(bytes); }); break;
  }
}

Storage::~Storage() {
  switch (device) {
    case Device::cpu: cpu_release(data, bytes); break;
    case Device::cuda:
      if constexpr (kCudaBuild) cuda::release(data, bytes);  // a CPU-only build never made one
      break;
  }
}

// ---- creation ----

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  size_t bytes = 0;
  if (__builtin_mul_overflow(static_cast<size_t>(shape_numel(shape)), dtype_size(dtype), &bytes) ||
      bytes > (size_t{1} << 62))
    fail("empty", std::string("a ") + dtype_name(dtype) + shape_str(shape) + " tensor is too large to allocate");
  auto impl = std::make_shared<TensorImpl>();
  try {
    impl->storage = std::make_shared<Storage>(bytes, device);
  } catch (const std::runtime_error& error) {  // out of memory: the allocator knows the bytes, not the tensor
    fail("empty", std::string("a ") + dtype_name(dtype) + shape_str(shape) + " tensor on " + device_name(device) + ": " +
                      error.what());
  }
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// A float as an i64 value: NaN, the infinities and values past int64's range have none (the cast is undefined
// behaviour, and gave INT64_MIN on x86), so they fail, naming the op.
static int64_t index_value(double value, const char* op) {
  if (!(value >= -0x1p63 && value < 0x1p63)) fail(op, "cannot convert " + std::to_string(value) + " to i64");
  return static_cast<int64_t>(value);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor Tensor::scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }
Tensor Tensor::empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
Tensor Tensor::zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype, Device device) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape))
    fail("from_vector", std::to_string(values.size()) + " values for shape " + shape_str(shape));
  Tensor t = empty(shape, dtype);
  for (size_t i = 0; i < values.size(); ++i) {
    switch (dtype) {
      case DType::f32: t.data<float>()[i] = static_cast<float>(values[i]); break;
      case DType::f64: t.data<double>()[i] = values[i]; break;
      case DType::i64: t.data<int64_t>()[i] = index_value(values[i], "from_vector"); break;
    }
  }
  return t.to(device);
}

Tensor Tensor::from_indices(const std::vector<int64_t>& values, const Shape& shape, Device device) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape))
    fail("from_indices", std::to_string(values.size()) + " values for shape " + shape_str(shape));
  Tensor t = empty(shape, DType::i64);
  if (!values.empty()) std::memcpy(t.data<int64_t>(), values.data(), values.size() * sizeof(int64_t));
  return t.to(device);
}

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  if (n < 0) fail("arange", "negative length " + std::to_string(n));
  shape_numel({n});
  std::vector<double> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[i] = static_cast<double>(i);
  return from_vector(values, {n}, dtype, device);
}

// ---- metadata ----

// An undefined tensor (a default Tensor, or a gradient never computed) fails here instead of dereferencing null.
static const TensorImpl& metadata(const std::shared_ptr<TensorImpl>& impl) {
  if (!impl) fail("Tensor", "the shape, dtype or storage of an undefined tensor");
  return *impl;
}

const Shape& Tensor::shape() const { return metadata(impl_).shape; }
const Shape& Tensor::strides() const { return metadata(impl_).strides; }
int64_t Tensor::offset() const { return metadata(impl_).offset; }
int64_t Tensor::dim() const { return static_cast<int64_t>(shape().size()); }
int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { return metadata(impl_).dtype; }
Device Tensor::device() const { return metadata(impl_).storage->device; }
const std::shared_ptr<Storage>& Tensor::storage() const { return metadata(impl_).storage; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (size_t i = impl_->shape.size(); i-- > 0;) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype())) + shape_str(shape());
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl_->storage->data) + impl_->offset * dtype_size(impl_->dtype);
}

template <class T>
T* Tensor::data() const {
  constexpr DType expected = std::is_same_v<T, float> ? DType::f32 : std::is_same_v<T, double> ? DType::f64 : DType::i64;
  if (!defined()) fail("data", "undefined tensor");
  if (impl_->dtype != expected)
    fail("data", std::string("asked for ") + dtype_name(expected) + " data of a " + str() + " tensor");
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int64_t* Tensor::data<int64_t>() const;

// ---- element access ----

static double read_element(const Tensor& t, int64_t element) {
  const char* base = static_cast<const char*>(t.storage()->data);
  switch (t.dtype()) {
    case DType::f32: return reinterpret_cast<const float*>(base)[element];
    case DType::f64: return reinterpret_cast<const double*>(base)[element];
    case DType::i64: return static_cast<double>(reinterpret_cast<const int64_t*>(base)[element]);
  }
  return 0;
}

// The tensor itself on the CPU, or a host copy of it: element access reads host memory.
static Tensor on_host(const Tensor& t, const char* op) {
  if (!t.defined()) fail(op, "undefined tensor");
  NoGradGuard no_grad;
  return t.to(Device::cpu);
}

double Tensor::item() const {
  if (defined() && numel() != 1) fail("item", "needs one element, got shape " + shape_str(shape()));
  const Tensor host = on_host(*this, "item");
  return read_element(host, host.offset());
}

double Tensor::at(std::initializer_list<int64_t> index) const {
  if (!defined()) fail("at", "undefined tensor");
  if (static_cast<int64_t>(index.size()) != dim())
    fail("at", std::to_string(index.size()) + " indices for shape " + shape_str(shape()));
  int64_t d = 0;
  for (int64_t i : index)
    if (i < 0 || i >= shape()[d++]) fail("at", "index " + std::to_string(i) + " out of range for " + shape_str(shape()));
  const Tensor host = on_host(*this, "at");
  int64_t element = host.offset();
  d = 0;
  for (int64_t i : index) element += i * host.strides()[d++];
  return read_element(host, element);
}

std::vector<double> Tensor::to_vector() const {
  Tensor c = on_host(*this, "to_vector").to(DType::f64).contiguous();
  const double* p = c.data<double>();
  return std::vector<double>(p, p + c.numel());
}

std::vector<int64_t> Tensor::to_indices() const {
  if (defined() && dtype() != DType::i64) fail("to_indices", "needs an i64 tensor, got " + str());
  Tensor c = on_host(*this, "to_indices").contiguous();
  const int64_t* p = c.data<int64_t>();
  return std::vector<int64_t>(p, p + c.numel());
}

// ---- autograd accessors ----

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::requires_grad_(bool value) {
  if (value && dtype() == DType::i64) fail("requires_grad_", "integer tensors cannot require grad: " + str());
  if (!value && impl_->grad_fn) fail("requires_grad_", "cannot turn off requires_grad of a non-leaf; use detach()");
  impl_->requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const { return impl_->grad; }
void Tensor::set_grad(const Tensor& grad) const { impl_->grad = grad; }
void Tensor::zero_grad() const { impl_->grad = Tensor(); }
bool Tensor::is_leaf() const { return !impl_->grad_fn; }
const std::shared_ptr<Node>& Tensor::grad_fn() const { return impl_->grad_fn; }

void Tensor::backward(const Tensor& upstream, bool retain_graph) const {
  run_backward(*this, upstream, retain_graph);
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = impl_->shape;
  impl->strides = impl_->strides;
  impl->offset = impl_->offset;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

Tensor make_view(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset) {
  // Every element the view names must lie in t's storage: make_view is public, and a wrong stride or offset
  // read or wrote past it. The lowest and highest element sit where each dim is at its first or last index.
  if (shape.size() != strides.size())
    fail("make_view", shape_str(shape) + " with " + std::to_string(strides.size()) + " strides");
  const int64_t elements = static_cast<int64_t>(t.storage()->bytes / dtype_size(t.dtype()));
  if (shape_numel(shape) > 0) {
    int64_t low = offset, high = offset;
    bool overflow = false;
    for (size_t i = 0; i < shape.size(); ++i) {
      int64_t reach = 0;
      overflow = overflow || __builtin_mul_overflow(shape[i] - 1, strides[i], &reach) ||
                 __builtin_add_overflow(reach < 0 ? low : high, reach, reach < 0 ? &low : &high);
    }
    if (overflow || low < 0 || high >= elements)
      fail("make_view", shape_str(shape) + " with strides " + shape_str(strides) + " at offset " +
                            std::to_string(offset) + " reaches outside its storage of " + std::to_string(elements) +
                            " elements");
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = t.dtype();
  return Tensor(std::move(impl));
}

// ---- copies ----

template <class D, class S>
static void copy_kernel_cpu(D* dst, const S* src, const StridedPlan<2>& plan) {
  for_each_run(plan, 1 << 15, [&](const std::array<int64_t, 2>& base, int64_t n, const std::array<int64_t, 2>& inner) {
    D* d = dst + base[0];
    const S* s = src + base[1];
    if constexpr (std::is_same_v<D, int64_t> && std::is_floating_point_v<S>)
      for (int64_t i = 0; i < n; ++i) index_value(static_cast<double>(s[i * inner[1]]), "to(i64)");
    if (inner[0] == 1 && inner[1] == 1) {
      for (int64_t i = 0; i < n; ++i) d[i] = static_cast<D>(s[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) d[i * inner[0]] = static_cast<D>(s[i * inner[1]]);
    }
  });
}

template <class D>
static void copy_from(const Tensor& dst, const Tensor& src, const StridedPlan<2>& plan) {
  switch (src.dtype()) {
    case DType::f32: copy_kernel_cpu(dst.data<D>(), src.data<float>(), plan); break;
    case DType::f64: copy_kernel_cpu(dst.data<D>(), src.data<double>(), plan); break;
    case DType::i64: copy_kernel_cpu(dst.data<D>(), src.data<int64_t>(), plan); break;
  }
}

// The bytes of a contiguous tensor moved to another device, as a contiguous tensor there.
static Tensor moved_contiguous(const Tensor& src, Device device) {
  const Tensor from = src.is_contiguous() ? src : src.clone();
  Tensor to = Tensor::empty(from.shape(), from.dtype(), device);
  const size_t bytes = static_cast<size_t>(from.numel()) * dtype_size(from.dtype());
  on_cuda("copy between devices", [&] {
    if (device == Device::cuda) cuda::copy_to_device(to.raw_data(), from.raw_data(), bytes);
    else cuda::copy_to_host(to.raw_data(), from.raw_data(), bytes);
  });
  return to;
}

// dst[...] = src[...] for every element of dst's shape; src may broadcast (stride 0) into dst.
void copy_strided(const Tensor& dst, const Tensor& src) {
  if (!dst.defined() || !src.defined()) fail("copy", "undefined tensor");
  bool broadcasts = src.dim() <= dst.dim();
  for (int64_t d = 0; broadcasts && d < src.dim(); ++d) {
    const int64_t s = src.shape()[d];
    broadcasts = s == 1 || s == dst.shape()[dst.dim() - src.dim() + d];
  }
  if (!broadcasts) fail("copy", "cannot copy " + src.str() + " into " + dst.str() + ": the shapes do not broadcast");
  // Across devices the source's own elements move as they are (a broadcast source moves once, not expanded);
  // the strides, broadcast and dtype conversion then happen on the destination's device.
  if (src.device() != dst.device()) return copy_strided(dst, moved_contiguous(src, dst.device()));
  const Shape src_strides = [&] {
    Shape s(dst.dim(), 0);
    const int64_t lead = dst.dim() - src.dim();
    for (int64_t d = 0; d < src.dim(); ++d) s[lead + d] = src.shape()[d] == 1 ? 0 : src.strides()[d];
    return s;
  }();
  const StridedPlan<2> plan = plan_strided<2>(dst.shape(), {&dst.strides(), &src_strides});
  switch (dst.device()) {
    case Device::cpu:
      switch (dst.dtype()) {
        case DType::f32: copy_from<float>(dst, src, plan); break;
        case DType::f64: copy_from<double>(dst, src, plan); break;
        case DType::i64: copy_from<int64_t>(dst, src, plan); break;
      }
      break;
    case Device::cuda:
      on_cuda("copy", [&] { cuda::copy_strided(dst.raw_data(), dst.dtype(), src.raw_data(), src.dtype(), plan); });
      break;
  }
}

// ---- in-place ----

static void check_inplace(const Tensor& t, const char* op) {
  if (!t.defined()) fail(op, "undefined tensor");
  if (t.requires_grad() && grad_enabled())
    fail(op, "in-place write to a tensor that requires grad " + t.str() + " while grad mode is on; use NoGradGuard");
}

void Tensor::bump_version() const { ++impl_->storage->version; }

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  if (dtype() == DType::i64) index_value(value, "fill_");
  switch (device()) {
    case Device::cpu: {
      Tensor source = Tensor::empty({}, dtype());  // copy_strided broadcasts it through any strides
      switch (dtype()) {
        case DType::f32: *source.data<float>() = static_cast<float>(value); break;
        case DType::f64: *source.data<double>() = value; break;
        case DType::i64: *source.data<int64_t>() = static_cast<int64_t>(value); break;  // checked above
      }
      copy_strided(*this, source);
      break;
    }
    case Device::cuda: {
      // The value goes to the kernel as an argument: uploading a scalar would pass through the staging ring,
      // whose buffer reuse can make the host wait for the GPU (zeros run inside every backward pass).
      const StridedPlan<1> plan = plan_strided<1>(shape(), {&strides()});
      on_cuda("fill_", [&] { cuda::fill_strided(raw_data(), dtype(), value, plan); });
      break;
    }
  }
  bump_version();
  return *this;
}

Tensor& Tensor::zero_() { return fill_(0.0); }

void check_writable_elements(const Tensor& y, const char* op) {
  for (int64_t d = 0; d < y.dim(); ++d)
    if (y.strides()[d] == 0 && y.shape()[d] > 1)
      fail(op, "cannot write into " + y.str() + ": a broadcast view whose elements share memory");
}

Tensor source_for_inplace(const Tensor& y, const Tensor& source) {
  const bool overlaps_elsewhere = source.storage() == y.storage() && (source.shape() != y.shape() ||
                                                                     source.strides() != y.strides() ||
                                                                     source.offset() != y.offset());
  return overlaps_elsewhere ? source.clone() : source;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  check_writable_elements(*this, "copy_");
  if (src.shape() != shape() && broadcast_shapes(src.shape(), shape(), "copy_") != shape())
    fail("copy_", "cannot copy " + src.str() + " into " + str());
  copy_strided(*this, source_for_inplace(*this, src));
  bump_version();
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace(*this, "add_");
  {
    NoGradGuard no_grad;
    add_into(*this, alpha == 1.0 ? other : mul(other, alpha));
  }
  bump_version();
  return *this;
}

Tensor& Tensor::mul_(double value) {
  check_inplace(*this, "mul_");
  mul_into(*this, value);
  bump_version();
  return *this;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = Tensor::empty(shape(), target, device());
  copy_strided(out, *this);
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  check_cuda_dtype("to(cuda)", *this, target);
  Tensor out = moved_contiguous(*this, target);
  record("to", out, {*this}, {}, [source = device()](const Tensor& dy, const BackwardContext&) -> Grads {
    return {dy.to(source)};
  });
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), dtype(), device());
  copy_strided(out, *this);
  return out;
}

// ---- view methods ----

Tensor Tensor::reshape(const Shape& s) const { return vt::reshape(*this, s); }
Tensor Tensor::view(const Shape& s) const { return vt::view(*this, s); }
Tensor Tensor::permute(const Shape& dims) const { return vt::permute(*this, dims); }
Tensor Tensor::transpose(int64_t d0, int64_t d1) const { return vt::transpose(*this, d0, d1); }
Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  return vt::slice(*this, d, start, end, step);
}
Tensor Tensor::expand(const Shape& s) const { return vt::expand(*this, s); }
Tensor Tensor::contiguous() const { return vt::contiguous(*this); }

}  // namespace vt
