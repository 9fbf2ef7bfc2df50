// The CUDA runtime behind autograd/cuda.h: lazy initialisation of the first GPU, its stream and cuBLAS handle,
// the caching device allocator, copies, and the checked-call helpers of cuda_runtime.cuh.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "autograd/cuda.h"
#include "autograd/cuda_runtime.cuh"
#include "autograd/tensor.h"

namespace vt::cuda {

namespace {

const char* file_name(const char* path) {
  const char* base = path;
  for (const char* p = path; *p; ++p)
    if (*p == '/') base = p + 1;
  return base;
}

[[noreturn]] void fail_at(const char* op, const std::string& problem, const char* file, int line) {
  fail(op, problem + " (CUDA call at " + file_name(file) + ":" + std::to_string(line) + ")");
}

bool sync_every_launch() {
  static const bool value = [] {
    const char* text = std::getenv("VT_CUDA_SYNC");
    return text && std::string(text) == "1";
  }();
  return value;
}

// The device, its stream and its cuBLAS handle, made on first use.
struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  void* cublas_workspace = nullptr;
  cublasComputeType_t gemm_compute_type = CUBLAS_COMPUTE_32F;  // fp32 without TF32, as PyTorch's default
  Context() {
    check(cudaSetDevice(0), "cuda init");
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cuda init");
    check(cublasCreate(&cublas), "cuda init");
    check(cublasSetStream(cublas, stream), "cuda init");
    // A workspace of our own, so that cuBLAS allocates nothing per call (32 MiB, its recommendation for Hopper).
    constexpr size_t kWorkspace = size_t{32} << 20;
    check(cudaMalloc(&cublas_workspace, kWorkspace), "cuda init");
    check(cublasSetWorkspace(cublas, cublas_workspace, kWorkspace), "cuda init");
  }
};

Context& context() {
  static Context* instance = new Context();  // never destroyed: tensors in static storage may outlive main
  return *instance;
}

BlockCache& cache() {
  static BlockCache* instance = new BlockCache();  // never destroyed, as the context
  return *instance;
}

// 512-byte granules: every block is aligned for any vector access, and nearby sizes share a free list.
size_t round_up(size_t bytes) { return ((bytes == 0 ? 1 : bytes) + 511) / 512 * 512; }

std::string gib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  return text;
}

}  // namespace

void check(cudaError_t error, const char* op, const char* file, int line) {
  if (error != cudaSuccess) fail_at(op, std::string(cudaGetErrorName(error)) + ": " + cudaGetErrorString(error), file, line);
}

void check(cublasStatus_t status, const char* op, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail_at(op, std::string("cuBLAS ") + cublasGetStatusName(status) + ": " + cublasGetStatusString(status), file, line);
}

void check_launch(const char* op, const char* file, int line) {
  check(cudaGetLastError(), op, file, line);
  if (sync_every_launch()) check(cudaStreamSynchronize(stream()), op, file, line);
}

cudaStream_t stream() { return context().stream; }
cublasHandle_t cublas() { return context().cublas; }

cublasComputeType_t gemm_compute_type() { return context().gemm_compute_type; }

void set_matmul_precision(MatmulPrecision precision) {
  switch (precision) {
    case MatmulPrecision::fp32: context().gemm_compute_type = CUBLAS_COMPUTE_32F; break;
    case MatmulPrecision::tf32: context().gemm_compute_type = CUBLAS_COMPUTE_32F_FAST_TF32; break;
    case MatmulPrecision::bf16: context().gemm_compute_type = CUBLAS_COMPUTE_32F_FAST_16BF; break;
  }
}

bool available() {
  static const bool visible = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  }();
  return visible;
}

std::string device_description() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) return std::string("no GPU (") + cudaGetErrorString(error) + ")";
  if (count == 0) return "no GPU";
  cudaDeviceProp properties;
  check(cudaGetDeviceProperties(&properties, 0), "device_description");
  char text[512];
  std::snprintf(text, sizeof text, "%s (compute capability %d.%d, %d SMs, %s)", properties.name, properties.major,
                properties.minor, properties.multiProcessorCount, gib(properties.totalGlobalMem).c_str());
  return text;
}

void* allocate(size_t bytes) {
  const size_t size = round_up(bytes);
  if (void* block = cache().take(size)) return block;
  context();
  void* block = nullptr;
  cudaError_t error = cudaMalloc(&block, size);
  const size_t cached = cache().stats().cached_bytes;  // before the retry gives the cache back
  if (error == cudaErrorMemoryAllocation) {  // the cached blocks may be what is missing: give them back, retry once
    cudaGetLastError();                       // clears the error, which is not sticky
    empty_cache();
    error = cudaMalloc(&block, size);
  }
  if (error != cudaSuccess) {
    cudaGetLastError();
    const std::string usage = gib(size) + " requested, " + gib(cache().stats().live_bytes) + " in use by tensors";
    if (error == cudaErrorMemoryAllocation)
      fail("cuda allocate", "out of device memory: " + usage + ", " + gib(cached) +
                                " cached (returned to the device before one retry; " + cudaGetErrorString(error) + ")");
    fail("cuda allocate", std::string("cudaMalloc failed: ") + cudaGetErrorString(error) + " (" + usage + ")");
  }
  cache().add_new(size);
  return block;
}

void release(void* data, size_t bytes) {
  if (data) cache().put(data, round_up(bytes));
}

AllocatorStats allocator_stats() { return cache().stats(); }
void reset_peak_live_bytes() { cache().reset_peak_live_bytes(); }

void empty_cache() {
  // Cached blocks may still be read by queued kernels that finished with them: wait before freeing.
  synchronize();
  cache().drain([](void* block) { check(cudaFree(block), "cuda empty_cache"); });
}

// Host-to-device copies go through rings of pinned (page-locked) staging buffers. From pageable memory,
// cudaMemcpyAsync may wait for the stream to drain before it returns, which would make every batch upload a
// host synchronisation; from pinned memory it only queues the DMA. The host copies each chunk into the next
// buffer of a ring, after waiting for that buffer's previous DMA. Its event completes only when everything
// queued before that DMA has run, so the wait reaches back as many uploads as the ring has buffers: small
// uploads (labels, the optimizers' tensor tables: several per step) get a ring of 64, so that the host never
// waits on a step still running; batches of images get 4 buffers of 8 MiB.
namespace {

class Staging {
 public:
  Staging(int buffers, size_t chunk) : chunk_(chunk), buffers_(buffers), copied_(buffers) {
    context();
    for (int i = 0; i < buffers; ++i) {
      check(cudaHostAlloc(&buffers_[i], chunk, cudaHostAllocDefault), "cuda staging buffers");
      // Blocking sync: a wait sleeps instead of spinning on a core the data loader needs.
      check(cudaEventCreateWithFlags(&copied_[i], cudaEventDisableTiming | cudaEventBlockingSync),
            "cuda staging buffers");
    }
  }

  size_t chunk() const { return chunk_; }

  void upload(void* destination, const void* source, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t offset = 0; offset < bytes; offset += chunk_) {
      const size_t part = std::min(chunk_, bytes - offset);
      const int i = next_;
      next_ = (next_ + 1) % static_cast<int>(buffers_.size());
      check(cudaEventSynchronize(copied_[i]), "copy to device");
      std::memcpy(buffers_[i], static_cast<const char*>(source) + offset, part);
      check(cudaMemcpyAsync(static_cast<char*>(destination) + offset, buffers_[i], part, cudaMemcpyHostToDevice,
                            stream()),
            "copy to device");
      check(cudaEventRecord(copied_[i], stream()), "copy to device");
    }
  }

 private:
  size_t chunk_;
  std::mutex mutex_;
  std::vector<void*> buffers_;
  std::vector<cudaEvent_t> copied_;
  int next_ = 0;
};

Staging& small_staging() {
  static Staging* instance = new Staging(64, size_t{64} << 10);
  return *instance;
}

Staging& large_staging() {
  static Staging* instance = new Staging(4, size_t{8} << 20);  // a batch of 512 CIFAR images is 6 MiB: one chunk
  return *instance;
}

}  // namespace

void copy_to_device(void* destination, const void* source, size_t bytes) {
  if (bytes == 0) return;
  Staging& ring = bytes <= small_staging().chunk() ? small_staging() : large_staging();
  ring.upload(destination, source, bytes);
}

void copy_to_host(void* destination, const void* source, size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToHost, stream()), "copy to host");
  check(cudaStreamSynchronize(stream()), "copy to host");
}

void copy_on_device(void* destination, const void* source, size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToDevice, stream()), "copy on device");
}

void synchronize() { check(cudaStreamSynchronize(stream()), "synchronize"); }

}  // namespace vt::cuda
