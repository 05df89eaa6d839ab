/* Per-image convolution over OpenMP threads; see conv.h. */
#include <omp.h>
#include <string.h>

#include "conv.h"

#define SCALAR float
#define SUFFIXED(name) name##_f32
#include "conv_template.h"
#undef SCALAR
#undef SUFFIXED

#define SCALAR double
#define SUFFIXED(name) name##_f64
#include "conv_template.h"
#undef SCALAR
#undef SUFFIXED
