// pyrt._core: the binding layer. Each area binds itself in bind_<area>.cpp; this file
// gathers them and owns the exception type they raise.
#include <pybind11/pybind11.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.hpp"

namespace py = pybind11;

void bind_spawn(py::module_ &m);
void bind_cgroup(py::module_ &m);
void bind_layer(py::module_ &m);

namespace pyrt {

static PyObject *core_error_type = nullptr;

[[noreturn]] void raise_error(const pyrt_error_t &err) {
  int code = err.status ? err.status : EIO;
  std::string text = std::string(err.msg) + ": " + std::strerror(code);
  py::object exc = py::reinterpret_borrow<py::object>(core_error_type)(code, text);
  PyErr_SetObject(core_error_type, exc.ptr());
  throw py::error_already_set();
}

}  // namespace pyrt

PYBIND11_MODULE(_core, m) {
  m.doc() = "pyrt's C core: spawn, setns, cgroups, tar, sha256";
  // OSError subclass: errno stays on .errno, the context is the message.
  pyrt::core_error_type = PyErr_NewExceptionWithDoc(
      "pyrt._core.CoreError", "A system call in pyrt's C core failed.", PyExc_OSError, nullptr);
  m.attr("CoreError") = py::handle(pyrt::core_error_type);
  bind_spawn(m);
  bind_cgroup(m);
  bind_layer(m);
}
