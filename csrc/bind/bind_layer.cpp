// pyrt._core layer functions: sha256 (file, fd, streaming object), unpack_layer and
// pack_layer. The work runs in C with the GIL released; Python wraps it in
// pyrt/snapshots/unpack.py.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "errors.hpp"
extern "C" {
#include "digest.h"
#include "tar.h"
}

namespace py = pybind11;

namespace {

PyObject *core_error = nullptr;  // pyrt._core.CoreError, looked up once at bind time

// Like pyrt::raise_error, plus `bad_input` on the exception: True when the archive (or the
// expected digest) was at fault, False when the machine was.
[[noreturn]] void raise_layer_error(const pyrt_error_t &err, bool bad_input) {
  int code = err.status ? err.status : EIO;
  std::string text = std::string(err.msg) + ": " + std::strerror(code);
  py::object exc = py::reinterpret_borrow<py::object>(core_error)(code, text);
  exc.attr("bad_input") = py::bool_(bad_input);
  PyErr_SetObject(core_error, exc.ptr());
  throw py::error_already_set();
}

py::dict result_dict(const pyrt_layer_result_t &r) {
  py::dict d;
  d["digest"] = std::string(r.digest);
  d["diff_id"] = std::string(r.diff_id);
  d["size"] = r.size;
  d["diff_size"] = r.diff_size;
  d["entries"] = r.entries;
  return d;
}

std::string hash_fd(int fd) {
  char hex[PYRT_SHA256_HEX_LEN + 1];
  pyrt_error_t err;
  pyrt_error_clear(&err);
  int rc;
  {
    py::gil_scoped_release nogil;
    rc = pyrt_sha256_fd(fd, hex, nullptr, &err);
  }
  if (rc < 0) pyrt::raise_error(err);
  return std::string("sha256:") + hex;
}

class Sha256 {
 public:
  Sha256() {
    pyrt_error_t err;
    pyrt_error_clear(&err);
    if (pyrt_sha256_init(&h_, &err) < 0) pyrt::raise_error(err);
  }
  ~Sha256() { pyrt_sha256_free(&h_); }
  Sha256(const Sha256 &) = delete;
  Sha256 &operator=(const Sha256 &) = delete;

  void update(const py::buffer &data) {
    py::buffer_info info = data.request();
    if (info.ndim != 1 && info.size * info.itemsize != 0 && !PyBytes_Check(data.ptr()))
      throw py::value_error("Sha256.update: needs a contiguous bytes-like object");
    size_t len = static_cast<size_t>(info.size * info.itemsize);
    pyrt_error_t err;
    pyrt_error_clear(&err);
    int rc;
    // immutable bytes can be hashed without the GIL; a bytearray could change under us
    if (len >= (64u << 10) && PyBytes_Check(data.ptr())) {
      py::gil_scoped_release nogil;
      rc = pyrt_sha256_update(&h_, info.ptr, len, &err);
    } else {
      rc = pyrt_sha256_update(&h_, info.ptr, len, &err);
    }
    if (rc < 0) pyrt::raise_error(err);
  }

  // Digest of everything so far; the object can keep being updated.
  std::string hexdigest() const {
    pyrt_sha256_t copy;
    char hex[PYRT_SHA256_HEX_LEN + 1];
    pyrt_error_t err;
    pyrt_error_clear(&err);
    if (pyrt_sha256_copy(&copy, &h_, &err) < 0) pyrt::raise_error(err);
    int rc = pyrt_sha256_final_hex(&copy, hex, &err);
    pyrt_sha256_free(&copy);
    if (rc < 0) pyrt::raise_error(err);
    return std::string(hex);
  }

 private:
  pyrt_sha256_t h_;
};

}  // namespace

void bind_layer(py::module_ &m) {
  core_error = m.attr("CoreError").ptr();

  m.def(
      "sha256_file",
      [](const std::string &path) {
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
          pyrt_error_t err;
          pyrt_error_set(&err, errno, "sha256: open '%s'", path.c_str());
          pyrt::raise_error(err);
        }
        try {
          std::string d = hash_fd(fd);
          close(fd);
          return d;
        } catch (...) {
          close(fd);
          throw;
        }
      },
      py::arg("path"), "sha256 of a file's content as 'sha256:<hex>'. GIL released.");

  m.def("sha256_fd", &hash_fd, py::arg("fd"),
        "sha256 of everything readable from fd until EOF, as 'sha256:<hex>'. Never seeks.");

  py::class_<Sha256>(m, "Sha256", "Streaming sha256 (libcrypto).")
      .def(py::init<>())
      .def("update", &Sha256::update, py::arg("data"))
      .def("hexdigest", &Sha256::hexdigest);

  m.def(
      "unpack_layer",
      [](int fd, const std::string &dest, std::optional<std::string> expected_digest,
         bool allow_devices) {
        pyrt_unpack_options_t opts;
        opts.expected_digest = expected_digest ? expected_digest->c_str() : nullptr;
        opts.allow_devices = allow_devices ? 1 : 0;
        pyrt_layer_result_t res;
        pyrt_error_t err;
        pyrt_error_clear(&err);
        int rc;
        {
          py::gil_scoped_release nogil;
          rc = pyrt_unpack_layer(fd, dest.c_str(), &opts, &res, &err);
        }
        if (rc < 0) raise_layer_error(err, res.bad_input != 0);
        return result_dict(res);
      },
      py::arg("fd"), py::arg("dest"), py::arg("expected_digest") = py::none(),
      py::arg("allow_devices") = true);

  m.def(
      "pack_layer",
      [](const std::string &src_dir, int out_fd, const std::string &compression,
         bool whiteouts) {
        pyrt_pack_options_t opts;
        if (compression == "gzip")
          opts.compression = PYRT_COMPRESS_GZIP;
        else if (compression == "none")
          opts.compression = PYRT_COMPRESS_NONE;
        else
          throw py::value_error("pack_layer: compression must be 'gzip' or 'none', not '" +
                                compression + "'");
        opts.whiteouts = whiteouts ? 1 : 0;
        pyrt_layer_result_t res;
        pyrt_error_t err;
        pyrt_error_clear(&err);
        int rc;
        {
          py::gil_scoped_release nogil;
          rc = pyrt_pack_layer(src_dir.c_str(), out_fd, &opts, &res, &err);
        }
        if (rc < 0) raise_layer_error(err, false);
        return result_dict(res);
      },
      py::arg("src_dir"), py::arg("out_fd"), py::arg("compression") = "gzip",
      py::arg("whiteouts") = true);
}
