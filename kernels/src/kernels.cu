// The appliance's GPU scaling and conversion kernels, compiled at run time by
// NVRTC (no headers: only CUDA built-ins are used).
//
// Every kernel mirrors a function of the Rust CPU reference (`kernels::cpu`)
// operation for operation, in float32, and is compiled with `--fmad=false`
// and IEEE division so that the GPU rounds exactly as the CPU does. Change
// the maths in both places or in neither.
//
// Parameters are passed by value as small structs; their layouts are mirrored
// by `#[repr(C)]` structs in `src/abi.rs`, and the sizes are checked on both
// sides (static_assert here, const asserts and the PTX test there).

#define MAX_RUNGS 8

// An NV12 or P010 frame: a luma plane and an interleaved CbCr plane at half
// resolution (odd sizes rounded up), both with the same pitch in bytes.
struct Frame {
    unsigned long long y;
    unsigned long long uv;
    unsigned long long pitch;
    unsigned int width;
    unsigned int height;
};

// The destinations of a one-pass 1:N ladder resize (NV12, 8-bit).
struct Ladder {
    Frame dst[MAX_RUNGS];
    unsigned int count;
    unsigned int reserved;
};

// Y'CbCr -> R'G'B' coefficients, computed on the host for a matrix and range.
struct Colour {
    float y_off;
    float y_scale;
    float c_scale;
    float r_cr;
    float g_cb;
    float g_cr;
    float b_cb;
};

// Packed RGB24 output.
struct RgbOut {
    unsigned long long ptr;
    unsigned long long pitch;
    unsigned int width;
    unsigned int height;
};

// float32 CHW tensor output, tightly packed (width * height per channel).
struct TensorOut {
    unsigned long long ptr;
    unsigned int width;
    unsigned int height;
};

// Per-channel normalisation: (x / 255 - mean[c]) / stddev[c].
struct Norm {
    float mean[3];
    float stddev[3];
};

static_assert(sizeof(Frame) == 32, "Frame layout must match abi::Frame");
static_assert(sizeof(Ladder) == 264, "Ladder layout must match abi::Ladder");
static_assert(sizeof(Colour) == 28, "Colour layout must match abi::Colour");
static_assert(sizeof(RgbOut) == 24, "RgbOut layout must match abi::RgbOut");
static_assert(sizeof(TensorOut) == 16, "TensorOut layout must match abi::TensorOut");
static_assert(sizeof(Norm) == 24, "Norm layout must match abi::Norm");

// One axis of the tent filter for output coordinate `o`: source centre `s`,
// radius `r` (1 when upscaling: bilinear; the scale factor when downscaling:
// antialiasing) and the integer taps [i0, i1].
struct Axis {
    float s;
    float r;
    int i0;
    int i1;
};

__device__ __forceinline__ Axis make_axis(unsigned int o, unsigned int src_n, unsigned int dst_n) {
    Axis a;
    float scale = (float)src_n / (float)dst_n;
    a.s = ((float)o + 0.5f) * scale - 0.5f;
    a.r = fmaxf(scale, 1.0f);
    a.i0 = (int)ceilf(a.s - a.r);
    a.i1 = (int)floorf(a.s + a.r);
    return a;
}

__device__ __forceinline__ float tap_weight(const Axis& a, int i) {
    float d = (float)i - a.s;
    return fmaxf(1.0f - fabsf(d) / a.r, 0.0f);
}

__device__ __forceinline__ int clamp_index(int i, unsigned int n) {
    return min(max(i, 0), (int)n - 1);
}

__device__ __forceinline__ float load_sample(unsigned char v) { return (float)v; }

// P010: 10 significant bits in the high bits of a little-endian 16-bit word.
__device__ __forceinline__ float load_sample(unsigned short v) { return (float)(v >> 6); }

// Tent-filters `C` interleaved components of a plane at one output position.
template <typename T, int C>
__device__ __forceinline__ void filter_plane(unsigned long long base, unsigned long long pitch,
                                             unsigned int w, unsigned int h, const Axis& ax,
                                             const Axis& ay, float out[C]) {
    float acc[C];
    for (int c = 0; c < C; ++c) acc[c] = 0.0f;
    float wsum = 0.0f;
    for (int j = ay.i0; j <= ay.i1; ++j) {
        float wy = tap_weight(ay, j);
        const T* row = (const T*)(base + (unsigned long long)clamp_index(j, h) * pitch);
        for (int i = ax.i0; i <= ax.i1; ++i) {
            float wx = tap_weight(ax, i);
            float wgt = wx * wy;
            int ii = clamp_index(i, w);
            for (int c = 0; c < C; ++c) {
                float v = load_sample(row[ii * C + c]);
                acc[c] += wgt * v;
            }
            wsum += wgt;
        }
    }
    for (int c = 0; c < C; ++c) out[c] = acc[c] / wsum;
}

__device__ __forceinline__ unsigned char to_u8(float v) {
    return (unsigned char)fminf(fmaxf(floorf(v + 0.5f), 0.0f), 255.0f);
}

// `shift_scale` maps the filtered source value to 8 bits: 1 for NV12, 0.25
// for P010 (10 -> 8 bits; exact, a power of two).
template <typename T>
__device__ __forceinline__ void resize_1n(const Frame& src, const Ladder& dsts, float shift_scale) {
    unsigned int x = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int y = blockIdx.y * blockDim.y + threadIdx.y;
    unsigned int scw = (src.width + 1) / 2;
    unsigned int sch = (src.height + 1) / 2;
    unsigned int count = dsts.count < MAX_RUNGS ? dsts.count : MAX_RUNGS;
    for (unsigned int k = 0; k < count; ++k) {
        const Frame& d = dsts.dst[k];
        if (x < d.width && y < d.height) {
            Axis ax = make_axis(x, src.width, d.width);
            Axis ay = make_axis(y, src.height, d.height);
            float v[1];
            filter_plane<T, 1>(src.y, src.pitch, src.width, src.height, ax, ay, v);
            unsigned char* row = (unsigned char*)(d.y + (unsigned long long)y * d.pitch);
            row[x] = to_u8(v[0] * shift_scale);
        }
        unsigned int dcw = (d.width + 1) / 2;
        unsigned int dch = (d.height + 1) / 2;
        if (x < dcw && y < dch) {
            Axis ax = make_axis(x, scw, dcw);
            Axis ay = make_axis(y, sch, dch);
            float uv[2];
            filter_plane<T, 2>(src.uv, src.pitch, scw, sch, ax, ay, uv);
            unsigned char* row = (unsigned char*)(d.uv + (unsigned long long)y * d.pitch);
            row[2 * x] = to_u8(uv[0] * shift_scale);
            row[2 * x + 1] = to_u8(uv[1] * shift_scale);
        }
    }
}

extern "C" __global__ void resize_nv12_1n(const Frame src, const Ladder dsts) {
    resize_1n<unsigned char>(src, dsts, 1.0f);
}

extern "C" __global__ void resize_p010_1n(const Frame src, const Ladder dsts) {
    resize_1n<unsigned short>(src, dsts, 0.25f);
}

struct Rgbf {
    float r;
    float g;
    float b;
};

// Luma and chroma of an NV12 frame resampled at output pixel (x, y) of a
// `dw` x `dh` image (chroma straight from the chroma plane, centre-aligned),
// converted to R'G'B' in [0, 1] (not yet clamped).
__device__ __forceinline__ Rgbf sample_rgb(const Frame& src, unsigned int x, unsigned int y,
                                           unsigned int dw, unsigned int dh, const Colour& k) {
    unsigned int scw = (src.width + 1) / 2;
    unsigned int sch = (src.height + 1) / 2;
    float luma[1];
    float uv[2];
    {
        Axis ax = make_axis(x, src.width, dw);
        Axis ay = make_axis(y, src.height, dh);
        filter_plane<unsigned char, 1>(src.y, src.pitch, src.width, src.height, ax, ay, luma);
    }
    {
        Axis ax = make_axis(x, scw, dw);
        Axis ay = make_axis(y, sch, dh);
        filter_plane<unsigned char, 2>(src.uv, src.pitch, scw, sch, ax, ay, uv);
    }
    float yn = (luma[0] - k.y_off) * k.y_scale;
    float cb = (uv[0] - 128.0f) * k.c_scale;
    float cr = (uv[1] - 128.0f) * k.c_scale;
    Rgbf o;
    o.r = yn + k.r_cr * cr;
    o.g = yn - k.g_cb * cb - k.g_cr * cr;
    o.b = yn + k.b_cb * cb;
    return o;
}

extern "C" __global__ void nv12_to_rgb(const Frame src, const RgbOut dst, const Colour k) {
    unsigned int x = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst.width || y >= dst.height) return;
    Rgbf c = sample_rgb(src, x, y, dst.width, dst.height, k);
    unsigned char* row = (unsigned char*)(dst.ptr + (unsigned long long)y * dst.pitch);
    row[3 * x] = to_u8(c.r * 255.0f);
    row[3 * x + 1] = to_u8(c.g * 255.0f);
    row[3 * x + 2] = to_u8(c.b * 255.0f);
}

__device__ __forceinline__ float normalise(float v, float mean, float stddev) {
    float x = fminf(fmaxf(v * 255.0f, 0.0f), 255.0f);
    return (x / 255.0f - mean) / stddev;
}

extern "C" __global__ void nv12_to_tensor(const Frame src, const TensorOut dst, const Colour k,
                                          const Norm n) {
    unsigned int x = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst.width || y >= dst.height) return;
    Rgbf c = sample_rgb(src, x, y, dst.width, dst.height, k);
    unsigned long long plane = (unsigned long long)dst.width * dst.height;
    unsigned long long at = (unsigned long long)y * dst.width + x;
    float* out = (float*)dst.ptr;
    out[at] = normalise(c.r, n.mean[0], n.stddev[0]);
    out[plane + at] = normalise(c.g, n.mean[1], n.stddev[1]);
    out[2 * plane + at] = normalise(c.b, n.mean[2], n.stddev[2]);
}

// Where a source lands in a composed frame: a luma rectangle whose origin
// and size are even, so its chroma rectangle is exactly half of it.
struct Rect {
    unsigned int x;
    unsigned int y;
    unsigned int width;
    unsigned int height;
};

// A side-by-side composition (duets): source 0 in the left half at
// rect[0], source 1 in the right half at rect[1]; black elsewhere.
struct SideBySide {
    Rect rect[2];
};

static_assert(sizeof(SideBySide) == 32, "SideBySide layout must match abi::SideBySide");

__device__ __forceinline__ bool inside(const Rect& r, unsigned int x, unsigned int y) {
    return x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height;
}

// Two NV12 frames of any sizes into one: each tent-filtered into its
// rectangle (aspect kept by the host's layout), limited-range black
// (Y' 16, Cb/Cr 128) around them. One thread per output luma pixel; the
// threads inside the chroma plane's size also write one chroma sample.
extern "C" __global__ void compose_nv12_sbs(const Frame a, const Frame b, const Frame dst,
                                            const SideBySide p) {
    unsigned int x = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int y = blockIdx.y * blockDim.y + threadIdx.y;
    unsigned int half = dst.width / 2;
    if (x < dst.width && y < dst.height) {
        unsigned int k = x < half ? 0 : 1;
        const Frame& s = k == 0 ? a : b;
        const Rect& r = p.rect[k];
        unsigned char v = 16;
        if (inside(r, x, y)) {
            Axis ax = make_axis(x - r.x, s.width, r.width);
            Axis ay = make_axis(y - r.y, s.height, r.height);
            float l[1];
            filter_plane<unsigned char, 1>(s.y, s.pitch, s.width, s.height, ax, ay, l);
            v = to_u8(l[0]);
        }
        unsigned char* row = (unsigned char*)(dst.y + (unsigned long long)y * dst.pitch);
        row[x] = v;
    }
    unsigned int dcw = (dst.width + 1) / 2;
    unsigned int dch = (dst.height + 1) / 2;
    if (x < dcw && y < dch) {
        unsigned int k = 2 * x < half ? 0 : 1;
        const Frame& s = k == 0 ? a : b;
        Rect r = p.rect[k];
        r.x /= 2;
        r.y /= 2;
        r.width /= 2;
        r.height /= 2;
        unsigned char cb = 128;
        unsigned char cr = 128;
        if (inside(r, x, y)) {
            unsigned int scw = (s.width + 1) / 2;
            unsigned int sch = (s.height + 1) / 2;
            Axis ax = make_axis(x - r.x, scw, r.width);
            Axis ay = make_axis(y - r.y, sch, r.height);
            float uv[2];
            filter_plane<unsigned char, 2>(s.uv, s.pitch, scw, sch, ax, ay, uv);
            cb = to_u8(uv[0]);
            cr = to_u8(uv[1]);
        }
        unsigned char* row = (unsigned char*)(dst.uv + (unsigned long long)y * dst.pitch);
        row[2 * x] = cb;
        row[2 * x + 1] = cr;
    }
}
