/* Max and average pooling; see pool.h for the window and padding conventions. */
#include <math.h>
#include <string.h>

#include "parallel.h"
#include "pool.h"

/* INDEX: a flat H*W index as wide as SCALAR (the Cython layer keeps H*W below 2^31). */
#define SCALAR float
#define INDEX int32_t
#define SUFFIXED(name) name##_f32
#include "pool_template.h"
#undef SCALAR
#undef INDEX
#undef SUFFIXED

#define SCALAR double
#define INDEX int64_t
#define SUFFIXED(name) name##_f64
#include "pool_template.h"
#undef SCALAR
#undef INDEX
#undef SUFFIXED
