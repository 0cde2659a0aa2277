// Turns a pyrt_error_t into a Python OSError subclass carrying errno and context,
// e.g. "mount overlay on /x: Invalid argument". Defined in module.cpp.
#pragma once
#include <pybind11/pybind11.h>
extern "C" {
#include "error.h"
}

namespace pyrt {
[[noreturn]] void raise_error(const pyrt_error_t &err);
}
