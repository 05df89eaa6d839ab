/* im2col / col2im and the GEMM layout epilogues; see im2col.h for the index map. */
#include <string.h>

#include "im2col.h"
#include "parallel.h"

#define SCALAR float
#define SUFFIXED(name) name##_f32
#include "im2col_template.h"
#undef SCALAR
#undef SUFFIXED

#define SCALAR double
#define SUFFIXED(name) name##_f64
#include "im2col_template.h"
#undef SCALAR
#undef SUFFIXED
