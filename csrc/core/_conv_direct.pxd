# core/_conv_direct.pxd: the direct convolution engine of _conv_direct.h as Cython sees it (one
# image at a time; the SIMD level is core/_simd_level.h's, set by direct_set_level).
cdef extern from "_conv_direct.h":
    int DIRECT_MAX_BLOCK "CYDNN_CD_MAX_BLOCK"
    int direct_slack "CYDNN_CD_SLACK"(int c, int sw) noexcept nogil
    int direct_set_level "cydnn_cd_set_level"(int level) noexcept nogil
    void lanes_forward_f "cydnn_cd_nhwc_forward_f"(const float* xp, int wp, int c, int kh, int kw, int sh, int sw,
                                                    const float* w, const float* bias, int f, int oh, int ow,
                                                    float* z) noexcept nogil
    void lanes_forward_d "cydnn_cd_nhwc_forward_d"(const double* xp, int wp, int c, int kh, int kw, int sh, int sw,
                                                    const double* w, const double* bias, int f, int oh, int ow,
                                                    double* z) noexcept nogil
    void lanes_dw_f "cydnn_cd_nhwc_dw_f"(const float* xp, int wp, int c, int kh, int kw, int sh, int sw,
                                          const float* dz, int f, int oh, int ow, float* part) noexcept nogil
    void lanes_dw_d "cydnn_cd_nhwc_dw_d"(const double* xp, int wp, int c, int kh, int kw, int sh, int sw,
                                          const double* dz, int f, int oh, int ow, double* part) noexcept nogil
    void lanes_dx_f "cydnn_cd_nhwc_dx_f"(float* dxp, int wp, int c, int kh, int sh, int sw, const float* dz,
                                          const float* wt, int ep, int f, int oh, int ow) noexcept nogil
    void lanes_dx_d "cydnn_cd_nhwc_dx_d"(double* dxp, int wp, int c, int kh, int sh, int sw, const double* dz,
                                          const double* wt, int ep, int f, int oh, int ow) noexcept nogil
    void direct_forward_f "cydnn_cd_forward_f"(const float* planes, int c, int ph, int pw, int kh, int kw,
                                                const float* w, const float* bias, int f, int oh, int ow,
                                                float* z) noexcept nogil
    void direct_forward_d "cydnn_cd_forward_d"(const double* planes, int c, int ph, int pw, int kh, int kw,
                                                const double* w, const double* bias, int f, int oh, int ow,
                                                double* z) noexcept nogil
    void direct_dw_f "cydnn_cd_dw_f"(const float* planes, int c, int ph, int pw, int kh, int kw,
                                      const float* dzpad, int lrow, int f, int oh, int ow, float* part,
                                      int ls) noexcept nogil
    void direct_dw_d "cydnn_cd_dw_d"(const double* planes, int c, int ph, int pw, int kh, int kw,
                                      const double* dzpad, int lrow, int f, int oh, int ow, double* part,
                                      int ls) noexcept nogil
