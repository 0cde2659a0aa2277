// pyrt._core cgroup functions: the writes on the start path, mkdir/rmdir, and the
// cgroup v2 device filter. Policy lives in pyrt/runtime/cgroups.py.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "errors.hpp"
extern "C" {
#include "cgroup.h"
}

namespace py = pybind11;

namespace {

void check(int rc, const pyrt_error_t &err) {
  if (rc < 0) pyrt::raise_error(err);
}

using Rule = std::tuple<std::string, long long, long long, std::string, bool>;

pyrt_device_rule_t to_rule(const Rule &r, size_t index) {
  const auto &[type, major, minor, access, allow] = r;
  auto bad = [index](const std::string &what) {
    throw py::value_error("device rule " + std::to_string(index) + ": " + what);
  };
  if (type.size() != 1 || (type[0] != 'a' && type[0] != 'b' && type[0] != 'c'))
    bad("type must be 'a', 'b' or 'c', not '" + type + "'");
  if (major < -1 || major > 0x7fffffff) bad("major out of range");
  if (minor < -1 || minor > 0x7fffffff) bad("minor out of range");
  unsigned acc = 0;
  for (char c : access) {
    if (c == 'r')
      acc |= PYRT_DEV_ACC_READ;
    else if (c == 'w')
      acc |= PYRT_DEV_ACC_WRITE;
    else if (c == 'm')
      acc |= PYRT_DEV_ACC_MKNOD;
    else
      bad("access must be made of r, w, m, not '" + access + "'");
  }
  if (acc == 0) bad("access is empty");
  pyrt_device_rule_t out;
  out.type = type[0];
  out.major = major;
  out.minor = minor;
  out.access = acc;
  out.allow = allow ? 1 : 0;
  return out;
}

}  // namespace

void bind_cgroup(py::module_ &m) {
  m.def(
      "cgroup_write",
      [](const std::string &path, const std::string &value) {
        pyrt_error_t err{};
        int rc;
        {
          py::gil_scoped_release nogil;
          rc = pyrt_cgroup_write(path.c_str(), nullptr, value.c_str(), &err);
        }
        check(rc, err);
      },
      py::arg("path"), py::arg("value"),
      "Write value to the cgroup file at path in one write(2).");

  m.def(
      "cgroup_write_many",
      [](const std::vector<std::pair<std::string, std::string>> &writes) {
        std::vector<const char *> paths, values;
        paths.reserve(writes.size());
        values.reserve(writes.size());
        for (const auto &w : writes) {
          paths.push_back(w.first.c_str());
          values.push_back(w.second.c_str());
        }
        pyrt_error_t err{};
        int rc;
        {
          py::gil_scoped_release nogil;
          rc = pyrt_cgroup_write_many(paths.data(), values.data(), writes.size(), &err);
        }
        check(rc, err);
      },
      py::arg("writes"), "Write each (path, value) in order; stop at the first failure.");

  m.def(
      "cgroup_mkdir",
      [](const std::string &path) {
        pyrt_error_t err{};
        int rc;
        {
          py::gil_scoped_release nogil;
          rc = pyrt_cgroup_mkdir_p(path.c_str(), &err);
        }
        check(rc, err);
      },
      py::arg("path"), "mkdir -p a cgroup directory.");

  m.def(
      "cgroup_rmdir",
      [](const std::string &path, int retries, int delay_ms) {
        pyrt_error_t err{};
        int rc;
        {
          py::gil_scoped_release nogil;
          rc = pyrt_cgroup_rmdir(path.c_str(), retries, delay_ms, &err);
        }
        check(rc, err);
      },
      py::arg("path"), py::arg("retries") = 50, py::arg("delay_ms") = 20,
      "rmdir a cgroup directory, retrying on EBUSY; a missing one is fine.");

  m.def(
      "cgroup_device_filter",
      [](const std::string &cgroup_dir, const std::vector<Rule> &rules) {
        std::vector<pyrt_device_rule_t> raw;
        raw.reserve(rules.size());
        for (size_t i = 0; i < rules.size(); i++) raw.push_back(to_rule(rules[i], i));
        pyrt_error_t err{};
        int rc;
        {
          py::gil_scoped_release nogil;
          rc = pyrt_cgroup_device_filter(cgroup_dir.c_str(), raw.data(), raw.size(), &err);
        }
        check(rc, err);
      },
      py::arg("cgroup_dir"), py::arg("rules"),
      "Load and attach a cgroup v2 device filter from (type, major, minor, access, allow) "
      "rules; the last matching rule wins, no match denies. Replaces earlier filters.");

  m.def(
      "cgroup_device_filter_count",
      [](const std::string &cgroup_dir) {
        pyrt_error_t err{};
        int rc = pyrt_cgroup_device_filter_count(cgroup_dir.c_str(), &err);
        check(rc, err);
        return rc;
      },
      py::arg("cgroup_dir"), "How many device filters are attached to the cgroup v2 dir.");
}
