// RecllmConditionalRMSNorm as a TensorRT IPluginV3 for the C++ backend (builders/trtllm/aot_plugin.md).
//
// For every row i of x [N, D], in float32, returned in x's dtype:
//   y[i, d] = x[i, d] * rsqrt(mean_d(x[i, d]^2) + eps) * weight[d] * (1 + gamma[i, d]) + beta[i, d]
// The arithmetic is the Triton kernel of kernels/conditional_rmsnorm, compiled ahead of time by
// `python -m builders.trtllm.conditional_norm_aot`; this file only checks shapes and calls its launchers.
// Same identity as the Python plugin (conditional_norm_plugin.PLUGIN_SPEC): a test keeps them equal.
//
// Built by conditional_norm_aot.library_command(), which defines:
//   RECLLM_HIDDEN_SIZE            the one D the kernels were compiled for
//   RECLLM_EPS                    the eps baked into the kernels (the `eps` field must match it)
//   RECLLM_COND_RMS_NORM_<DTYPE>  the launcher compile.py wrote for BF16 / FP16 / FP32 (at least one)
// Not yet compiled against TensorRT headers or run on a GPU.

#include <NvInferRuntime.h>
#include <cuda.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string_view>

#if !defined(RECLLM_HIDDEN_SIZE) || !defined(RECLLM_EPS)
#error "build with conditional_norm_aot.library_command(): -DRECLLM_HIDDEN_SIZE=... -DRECLLM_EPS=..."
#endif
#if !defined(RECLLM_COND_RMS_NORM_BF16) && !defined(RECLLM_COND_RMS_NORM_FP16) && !defined(RECLLM_COND_RMS_NORM_FP32)
#error "build with at least one -DRECLLM_COND_RMS_NORM_<BF16|FP16|FP32>=<launcher>"
#endif

#define RECLLM_CAT_(a, b) a##b
#define RECLLM_CAT(a, b) RECLLM_CAT_(a, b)

// The launcher triton.tools.compile writes (C linkage): the entry kernel's arguments minus its constants.
// The parameter names are the kernel's (conditional_norm_aot.AOT_ARG_NAMES); a test compares them.
#define RECLLM_DECLARE_LAUNCHER(fn)                                                                             \
    extern "C" CUresult fn(CUstream stream, CUdeviceptr x_ptr, CUdeviceptr w_ptr, CUdeviceptr g_ptr,            \
                           CUdeviceptr b_ptr, CUdeviceptr y_ptr, int32_t n_rows, int32_t D, int32_t sx_n,       \
                           int32_t sg_n, int32_t sb_n, int32_t sy_n);                                           \
    extern "C" void RECLLM_CAT(load_, fn)(void);

#ifdef RECLLM_COND_RMS_NORM_BF16
RECLLM_DECLARE_LAUNCHER(RECLLM_COND_RMS_NORM_BF16)
#endif
#ifdef RECLLM_COND_RMS_NORM_FP16
RECLLM_DECLARE_LAUNCHER(RECLLM_COND_RMS_NORM_FP16)
#endif
#ifdef RECLLM_COND_RMS_NORM_FP32
RECLLM_DECLARE_LAUNCHER(RECLLM_COND_RMS_NORM_FP32)
#endif

namespace recllm
{
using namespace nvinfer1;

constexpr char kPluginName[] = "RecllmConditionalRMSNorm";
constexpr char kPluginVersion[] = "1";
constexpr char kPluginNamespace[] = "tensorrt_llm";
constexpr char kEpsField[] = "eps";
constexpr int32_t kNbInputs = 4;  // x [N, D], weight [D], gamma [N, D], beta [N, D]
constexpr int32_t kNbOutputs = 1; // y [N, D], x's dtype
constexpr int32_t kHidden = RECLLM_HIDDEN_SIZE;

using Launcher = CUresult (*)(CUstream, CUdeviceptr, CUdeviceptr, CUdeviceptr, CUdeviceptr, CUdeviceptr, int32_t,
                              int32_t, int32_t, int32_t, int32_t, int32_t);

struct Variant
{
    Launcher launch;
    void (*load)(void);
    std::once_flag* loaded;
};

// One launcher per dtype compiled into this library; {nullptr} for the others.
Variant variantFor(DataType type)
{
    switch (type)
    {
#ifdef RECLLM_COND_RMS_NORM_BF16
    case DataType::kBF16:
    {
        static std::once_flag flag;
        return {RECLLM_COND_RMS_NORM_BF16, RECLLM_CAT(load_, RECLLM_COND_RMS_NORM_BF16), &flag};
    }
#endif
#ifdef RECLLM_COND_RMS_NORM_FP16
    case DataType::kHALF:
    {
        static std::once_flag flag;
        return {RECLLM_COND_RMS_NORM_FP16, RECLLM_CAT(load_, RECLLM_COND_RMS_NORM_FP16), &flag};
    }
#endif
#ifdef RECLLM_COND_RMS_NORM_FP32
    case DataType::kFLOAT:
    {
        static std::once_flag flag;
        return {RECLLM_COND_RMS_NORM_FP32, RECLLM_CAT(load_, RECLLM_COND_RMS_NORM_FP32), &flag};
    }
#endif
    default: return {nullptr, nullptr, nullptr};
    }
}

int32_t fail(char const* what)
{
    std::fprintf(stderr, "[%s] %s\n", kPluginName, what);
    return -1;
}

bool aligned16(void const* pointer)
{
    return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0; // the launchers were compiled with :16 hints
}

class ConditionalRMSNormPlugin : public IPluginV3,
                                 public IPluginV3OneCore,
                                 public IPluginV3OneBuild,
                                 public IPluginV3OneRuntime
{
public:
    explicit ConditionalRMSNormPlugin(float eps)
        : mEps(eps)
    {
        mField = PluginField(kEpsField, &mEps, PluginFieldType::kFLOAT32, 1);
        mFields.nbFields = 1;
        mFields.fields = &mField;
    }

    // IPluginV3
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override
    {
        if (type == PluginCapabilityType::kBUILD)
            return static_cast<IPluginV3OneBuild*>(this);
        if (type == PluginCapabilityType::kRUNTIME)
            return static_cast<IPluginV3OneRuntime*>(this);
        return static_cast<IPluginV3OneCore*>(this);
    }

    IPluginV3* clone() noexcept override { return new ConditionalRMSNormPlugin(mEps); }

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override { return kPluginName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override { return kNbOutputs; }

    int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                               int32_t nbInputs) const noexcept override
    {
        if (nbInputs != kNbInputs || nbOutputs != kNbOutputs)
            return fail("expects inputs (x, weight, gamma, beta) and one output");
        outputTypes[0] = inputTypes[0];
        return 0;
    }

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
                            int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                            IExprBuilder& /*exprBuilder*/) noexcept override
    {
        if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || inputs[0].nbDims != 2)
            return fail("x must be [N, D] (build the engine with remove_input_padding)");
        outputs[0] = inputs[0];
        return 0;
    }

    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override
    {
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (pos >= nbInputs + nbOutputs || desc.format != TensorFormat::kLINEAR)
            return false;
        if (pos == 0) // x decides the dtype: one this library has a launcher for
            return variantFor(desc.type).launch != nullptr;
        return desc.type == inOut[0].desc.type;
    }

    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out,
                            int32_t nbOutputs) noexcept override
    {
        if (nbInputs != kNbInputs || nbOutputs != kNbOutputs)
            return fail("expects inputs (x, weight, gamma, beta) and one output");
        if (in[0].desc.dims.nbDims != 2 || in[0].desc.dims.d[1] != kHidden)
            return fail("x's hidden size differs from RECLLM_HIDDEN_SIZE this library was compiled for");
        if (std::fabs(mEps - static_cast<float>(RECLLM_EPS)) > 1e-3f * static_cast<float>(RECLLM_EPS))
            return fail("eps differs from RECLLM_EPS baked into the kernels; rebuild the library for this eps");
        return 0;
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/,
                          int32_t nbOutputs) noexcept override
    {
        if (nbInputs != kNbInputs || nbOutputs != kNbOutputs)
            return fail("expects inputs (x, weight, gamma, beta) and one output");
        bool const rows = in[0].dims.nbDims == 2 && in[2].dims.nbDims == 2 && in[3].dims.nbDims == 2
            && in[2].dims.d[0] == in[0].dims.d[0] && in[3].dims.d[0] == in[0].dims.d[0];
        bool const width = in[0].dims.d[1] == kHidden && in[1].dims.nbDims == 1 && in[1].dims.d[0] == kHidden
            && in[2].dims.d[1] == kHidden && in[3].dims.d[1] == kHidden;
        return rows && width ? 0 : fail("need x, gamma, beta [N, RECLLM_HIDDEN_SIZE] and weight [RECLLM_HIDDEN_SIZE]");
    }

    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
                    void const* const* inputs, void* const* outputs, void* /*workspace*/,
                    cudaStream_t stream) noexcept override
    {
        int32_t const n = static_cast<int32_t>(inputDesc[0].dims.d[0]);
        int32_t const d = static_cast<int32_t>(inputDesc[0].dims.d[1]);
        if (d != kHidden)
            return fail("x's hidden size differs from RECLLM_HIDDEN_SIZE");
        if (n == 0)
            return 0; // the generated launcher returns nothing for an empty grid
        for (int32_t i = 0; i < kNbInputs; ++i)
            if (!aligned16(inputs[i]))
                return fail("an input is not 16-byte aligned");
        if (!aligned16(outputs[0]))
            return fail("the output is not 16-byte aligned");
        Variant const variant = variantFor(inputDesc[0].type);
        if (variant.launch == nullptr)
            return fail("no kernel compiled for x's dtype");
        // Once per process: the module is shared by every instance (two per conditioned layer), so it is
        // never unloaded by one of them. compile.py's load_ exit()s the process on a CUDA error.
        std::call_once(*variant.loaded, variant.load);
        auto ptr = [](void const* p) { return reinterpret_cast<CUdeviceptr>(p); };
        CUresult const result = variant.launch(reinterpret_cast<CUstream>(stream), ptr(inputs[0]), ptr(inputs[1]),
            ptr(inputs[2]), ptr(inputs[3]), ptr(outputs[0]), /*n_rows=*/n, /*D=*/d, /*sx_n=*/d, /*sg_n=*/d,
            /*sb_n=*/d, /*sy_n=*/d);
        return result == CUDA_SUCCESS ? 0 : fail("kernel launch failed");
    }

    IPluginV3* attachToContext(IPluginResourceContext* /*context*/) noexcept override { return clone(); }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override { return &mFields; }

private:
    float mEps;
    PluginField mField;
    PluginFieldCollection mFields{};
};

class ConditionalRMSNormCreator : public IPluginCreatorV3One
{
public:
    ConditionalRMSNormCreator()
    {
        mField = PluginField(kEpsField, nullptr, PluginFieldType::kFLOAT32, 1);
        mFields.nbFields = 1;
        mFields.fields = &mField;
    }

    char const* getPluginName() const noexcept override { return kPluginName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }
    PluginFieldCollection const* getFieldNames() noexcept override { return &mFields; }

    IPluginV3* createPlugin(char const* /*name*/, PluginFieldCollection const* fc,
                            TensorRTPhase /*phase*/) noexcept override
    {
        float eps = static_cast<float>(RECLLM_EPS);
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
        {
            PluginField const& field = fc->fields[i];
            if (std::string_view(field.name) == kEpsField && field.type == PluginFieldType::kFLOAT32
                && field.length == 1)
                eps = *static_cast<float const*>(field.data);
        }
        return new ConditionalRMSNormPlugin(eps);
    }

private:
    PluginField mField;
    PluginFieldCollection mFields{};
};

REGISTER_TENSORRT_PLUGIN(ConditionalRMSNormCreator);

} // namespace recllm
