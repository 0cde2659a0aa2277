// pyrt._core.spawn: converts the SpawnConfig dict (see pyrt/_core.pyi) into the C
// struct, releases the GIL while the child is set up, and re-enters Python only for
// the barrier callback.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "errors.hpp"
extern "C" {
#include "fsutil.h"
#include "spawn.h"
}

namespace py = pybind11;

namespace {

// Owns every string and array the C struct points into, for the duration of one spawn.
class ConfigHolder {
 public:
  explicit ConfigHolder(const py::dict &d) {
    cfg_ = {};
    cfg_.umask = -1;
    cfg_.console_fd = -1;
    cfg_.stdio[0] = cfg_.stdio[1] = cfg_.stdio[2] = -1;

    cfg_.argv = strv(d, "argv");
    cfg_.envp = strv(d, "env");
    cfg_.cwd = str(d, "cwd");
    cfg_.new_ns = get<int>(d, "new_ns", 0);
    if (has(d, "join")) {
      for (auto item : d["join"].cast<py::list>()) {
        auto t = item.cast<py::tuple>();
        joins_.push_back({t[0].cast<int>(), keep(t[1].cast<std::string>())});
      }
      cfg_.join = joins_.data();
      cfg_.n_join = joins_.size();
    }
    cfg_.uid_map = str(d, "uid_map");
    cfg_.gid_map = str(d, "gid_map");
    cfg_.cgroup_procs = strv(d, "cgroup_procs", &cfg_.n_cgroup_procs);
    cfg_.rootfs = str(d, "rootfs");
    cfg_.rootfs_readonly = get<bool>(d, "rootfs_readonly", false);
    cfg_.no_pivot = get<bool>(d, "no_pivot", false);
    cfg_.rootfs_propagation = get<unsigned long>(d, "rootfs_propagation", 0);
    if (has(d, "mounts")) {
      for (auto item : d["mounts"].cast<py::list>()) {
        auto m = item.cast<py::dict>();
        pyrt_mount_t pm{};
        pm.target = str(m, "target");
        pm.source = str(m, "source");
        pm.fstype = str(m, "fstype");
        pm.data = str(m, "data");
        pm.flags = get<unsigned long>(m, "flags", 0);
        pm.propagation = get<unsigned long>(m, "propagation", 0);
        if (pm.target == nullptr)
          throw py::value_error("mounts[].target is required");
        mounts_.push_back(pm);
      }
      cfg_.mounts = mounts_.data();
      cfg_.n_mounts = mounts_.size();
    }
    if (has(d, "devices")) {
      for (auto item : d["devices"].cast<py::list>()) {
        auto m = item.cast<py::dict>();
        pyrt_device_t pd{};
        pd.path = str(m, "path");
        std::string type = m["type"].cast<std::string>();
        if (pd.path == nullptr || type.size() != 1)
          throw py::value_error("devices[]: path and a one-letter type are required");
        pd.type = type[0];
        pd.major = m["major"].cast<unsigned>();
        pd.minor = m["minor"].cast<unsigned>();
        pd.mode = m["mode"].cast<unsigned>();
        pd.uid = m["uid"].cast<unsigned>();
        pd.gid = m["gid"].cast<unsigned>();
        devices_.push_back(pd);
      }
      cfg_.devices = devices_.data();
      cfg_.n_devices = devices_.size();
    }
    cfg_.masked_paths = strv(d, "masked_paths", &cfg_.n_masked);
    cfg_.readonly_paths = strv(d, "readonly_paths", &cfg_.n_readonly);
    cfg_.hostname = str(d, "hostname");
    cfg_.domainname = str(d, "domainname");
    if (has(d, "sysctl")) {
      for (auto kv : d["sysctl"].cast<py::dict>()) {
        sysctl_keys_.push_back(keep(kv.first.cast<std::string>()));
        sysctl_values_.push_back(keep(kv.second.cast<std::string>()));
      }
      cfg_.sysctl_keys = sysctl_keys_.data();
      cfg_.sysctl_values = sysctl_values_.data();
      cfg_.n_sysctl = sysctl_keys_.size();
    }
    cfg_.target_pid = get<int>(d, "target_pid", 0);
    cfg_.uid = get<unsigned>(d, "uid", 0);
    cfg_.gid = get<unsigned>(d, "gid", 0);
    if (has(d, "additional_gids")) {
      for (auto g : d["additional_gids"].cast<py::list>())
        gids_.push_back(g.cast<unsigned>());
      cfg_.gids = gids_.data();
      cfg_.n_gids = gids_.size();
      cfg_.set_gids = 1;
    }
    cfg_.umask = has(d, "umask") ? d["umask"].cast<int>() : -1;
    if (has(d, "rlimits")) {
      for (auto item : d["rlimits"].cast<py::list>()) {
        auto t = item.cast<py::tuple>();
        rlimits_.push_back({t[0].cast<int>(), t[1].cast<uint64_t>(), t[2].cast<uint64_t>()});
      }
      cfg_.rlimits = rlimits_.data();
      cfg_.n_rlimits = rlimits_.size();
    }
    if (has(d, "capabilities")) {
      auto t = d["capabilities"].cast<py::tuple>();
      if (t.size() != 5)
        throw py::value_error("capabilities: 5 masks expected");
      cfg_.set_caps = 1;
      cfg_.cap_bounding = t[0].cast<uint64_t>();
      cfg_.cap_effective = t[1].cast<uint64_t>();
      cfg_.cap_inheritable = t[2].cast<uint64_t>();
      cfg_.cap_permitted = t[3].cast<uint64_t>();
      cfg_.cap_ambient = t[4].cast<uint64_t>();
    }
    cfg_.no_new_privileges = get<bool>(d, "no_new_privileges", false);
    if (has(d, "seccomp_bpf")) {
      seccomp_ = d["seccomp_bpf"].cast<std::string>();
      if (seccomp_.empty() || seccomp_.size() % 8 != 0)
        throw py::value_error("seccomp_bpf: a non-empty array of 8-byte sock_filter expected");
      cfg_.seccomp_bpf = reinterpret_cast<unsigned char *>(seccomp_.data());
      cfg_.seccomp_len = seccomp_.size();
    }
    cfg_.seccomp_flags = get<unsigned>(d, "seccomp_flags", 0);
    if (has(d, "oom_score_adj")) {
      cfg_.set_oom_score_adj = 1;
      cfg_.oom_score_adj = d["oom_score_adj"].cast<int>();
    }
    cfg_.terminal = get<bool>(d, "terminal", false);
    cfg_.console_fd = get<int>(d, "console_fd", -1);
    if (cfg_.terminal && cfg_.console_fd < 0)
      throw py::value_error("terminal: a console_fd is required");
    if (has(d, "stdio")) {
      auto t = d["stdio"].cast<py::tuple>();
      for (int i = 0; i < 3; i++)
        cfg_.stdio[i] = t[i].cast<int>();
    }
    cfg_.preserve_fds = get<int>(d, "preserve_fds", 0);
    cfg_.exec_fifo = str(d, "exec_fifo");
    cfg_.barrier = get<bool>(d, "barrier", false);
    if (has(d, "start_hooks")) {
      for (auto item : d["start_hooks"].cast<py::list>()) {
        auto h = item.cast<py::dict>();
        pyrt_hook_t ph{};
        ph.path = str(h, "path");
        ph.argv = strv(h, "args");
        ph.envp = strv(h, "env");
        ph.timeout = get<int>(h, "timeout", 0);
        hooks_.push_back(ph);
      }
      cfg_.start_hooks = hooks_.data();
      cfg_.n_start_hooks = hooks_.size();
    }
    cfg_.state_json = str(d, "state_json");
  }

  const pyrt_spawn_config_t *get() const { return &cfg_; }

 private:
  static bool has(const py::dict &d, const char *key) {
    return d.contains(key) && !d[key].is_none();
  }
  template <typename T>
  static T get(const py::dict &d, const char *key, T fallback) {
    return has(d, key) ? d[key].cast<T>() : fallback;
  }
  char *keep(std::string s) {
    strings_.push_back(std::move(s));
    return strings_.back().data();
  }
  char *str(const py::dict &d, const char *key) {
    return has(d, key) ? keep(d[key].cast<std::string>()) : nullptr;
  }
  // A NULL-terminated char* array; the count, when asked for, excludes the NULL.
  char **strv(const py::dict &d, const char *key, size_t *count = nullptr) {
    if (!has(d, key)) {
      if (count)
        *count = 0;
      return nullptr;
    }
    auto &v = vectors_.emplace_back();
    for (auto item : d[key].cast<py::list>())
      v.push_back(keep(item.cast<std::string>()));
    if (count)
      *count = v.size();
    v.push_back(nullptr);
    return v.data();
  }

  pyrt_spawn_config_t cfg_;
  std::deque<std::string> strings_;  // deque: pointers stay valid as it grows
  std::deque<std::vector<char *>> vectors_;
  std::vector<pyrt_nsjoin_t> joins_;
  std::vector<pyrt_mount_t> mounts_;
  std::vector<pyrt_device_t> devices_;
  std::vector<char *> sysctl_keys_, sysctl_values_;
  std::vector<gid_t> gids_;
  std::vector<pyrt_rlimit_t> rlimits_;
  std::vector<pyrt_hook_t> hooks_;
  std::string seccomp_;
};

struct BarrierCall {
  py::object callback;
  std::optional<py::error_already_set> raised;
};

int barrier_trampoline(void *arg, pid_t pid) {
  auto *call = static_cast<BarrierCall *>(arg);
  py::gil_scoped_acquire gil;
  try {
    call->callback(pid);
    return 0;
  } catch (py::error_already_set &e) {
    call->raised.emplace(std::move(e));
    return -1;
  }
}

}  // namespace

void bind_spawn(py::module_ &m) {
  m.def(
      "spawn",
      [](const py::dict &config, const py::object &on_barrier) {
        ConfigHolder holder(config);
        BarrierCall call{on_barrier, std::nullopt};
        pyrt_error_t err;
        pyrt_error_clear(&err);
        pid_t pid;
        {
          py::gil_scoped_release release;
          pid = pyrt_spawn(holder.get(), on_barrier.is_none() ? nullptr : barrier_trampoline,
                           &call, &err);
        }
        if (call.raised)
          throw *call.raised;
        if (pid < 0)
          pyrt::raise_error(err);
        return pid;
      },
      py::arg("config"), py::arg("on_barrier") = py::none(),
      "Spawn a container process; see pyrt/_core.pyi.");

  m.def(
      "spawn_detached",
      [](const py::dict &config, const std::vector<std::string> &shim_argv,
         const std::vector<int> &keep_fds) {
        ConfigHolder holder(config);
        std::vector<char *> argv;
        for (const auto &a : shim_argv)
          argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        pyrt_error_t err;
        pyrt_error_clear(&err);
        pid_t shim = 0, pid;
        {
          py::gil_scoped_release release;
          pid = pyrt_spawn_detached(holder.get(), argv.data(), keep_fds.data(),
                                    keep_fds.size(), &shim, &err);
        }
        if (pid < 0)
          pyrt::raise_error(err);
        return py::make_tuple(pid, shim);
      },
      py::arg("config"), py::arg("shim_argv"), py::arg("keep_fds") = std::vector<int>{},
      "Spawn a container whose parent is a detached shim; see pyrt/_core.pyi.");

  m.def(
      "spawn_exec",
      [](const std::vector<std::string> &argv, const std::vector<std::string> &env,
         const std::vector<int> &fds) {
        std::vector<char *> av, ev;
        for (const auto &a : argv)
          av.push_back(const_cast<char *>(a.c_str()));
        av.push_back(nullptr);
        for (const auto &e : env)
          ev.push_back(const_cast<char *>(e.c_str()));
        ev.push_back(nullptr);
        pyrt_error_t err;
        pyrt_error_clear(&err);
        pid_t pid;
        {
          py::gil_scoped_release release;  // until the child has exec'd
          pid = pyrt_spawn_exec(av.data(), ev.data(), fds.data(), fds.size(), &err);
        }
        if (pid < 0)
          pyrt::raise_error(err);
        return pid;
      },
      py::arg("argv"), py::arg("env"), py::arg("fds") = std::vector<int>{},
      "Start a program without forking the caller; see pyrt/_core.pyi.");

  m.def(
      "remove_all",
      [](const std::string &path) {
        int rc;
        {
          py::gil_scoped_release release;
          rc = pyrt_remove_all(path.c_str());
        }
        return rc == 0;
      },
      py::arg("path"), "rm -rf without following links or crossing mounts; see pyrt/_core.pyi.");
}
