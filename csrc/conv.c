/* Per-image convolution over OpenMP threads; see conv.h. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "sgemm.h"

#define SCALAR float
#define SCALAR_IS_FLOAT 1
#define SUFFIXED(name) name##_f32
#include "conv_template.h"
#undef SCALAR
#undef SCALAR_IS_FLOAT
#undef SUFFIXED

#define SCALAR double
#define SCALAR_IS_FLOAT 0
#define SUFFIXED(name) name##_f64
#include "conv_template.h"
#undef SCALAR
#undef SUFFIXED
#undef SCALAR_IS_FLOAT
