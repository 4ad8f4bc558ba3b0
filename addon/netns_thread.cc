// SPDX-License-Identifier: MIT
#include "netns_thread.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <system_error>
#include <thread>

namespace proctap {
namespace {

// This thread joins the network namespace at path (an nsfs file: /proc/PID/ns/net, /run/netns/NAME).
int JoinNetns(const std::string& path, std::string* step) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *step = "open " + path;
    return errno;
  }
  int err = setns(fd, CLONE_NEWNET) != 0 ? errno : 0;
  close(fd);
  if (err) *step = "setns(" + path + ", CLONE_NEWNET)";
  return err;
}

// body on a thread of its own, named proctap-netns, with every signal blocked (they stay with the
// threads that handle them); returns body's result, or the errno of a thread that could not start.
int OnOwnThread(const std::function<int()>& body, std::string* step) {
  int result = 0;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  try {
    std::thread worker([&] {
      pthread_setname_np(pthread_self(), "proctap-netns");
      result = body();
    });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    worker.join();
  } catch (const std::system_error& e) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    *step = "std::thread";
    return e.code().value();
  }
  return result;
}

}  // namespace

int EnterNetnsOnThisThread(const std::string& path, std::string* step) {
  if (int err = JoinNetns(path, step)) return err;
  // unshare(CLONE_NEWNS) implies CLONE_FS: this thread gets its own fs_struct and mount namespace;
  // the other threads keep theirs. Mounts made here must never propagate back: make them slaves first.
  if (unshare(CLONE_NEWNS) != 0) {
    *step = "unshare(CLONE_NEWNS)";
    return errno;
  }
  if (mount("none", "/", nullptr, MS_SLAVE | MS_REC, nullptr) != 0) {
    *step = "mount --make-rslave /";
    return errno;
  }
  umount2("/sys", MNT_DETACH);  // EINVAL when nothing is mounted there: fine
  if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    *step = "mount sysfs /sys";
    return errno;
  }
  return 0;
}

int RunInNetns(const std::string& path, const std::function<void()>& fn, std::string* step) {
  return OnOwnThread(
      [&] {
        int err = path.empty() ? 0 : EnterNetnsOnThisThread(path, step);
        if (err == 0) fn();
        return err;
      },
      step);
}

int RunInNetworkNamespaceOnly(const std::string& path, const std::function<void()>& fn, std::string* step) {
  return OnOwnThread(
      [&] {
        int err = JoinNetns(path, step);
        if (err == 0) fn();
        return err;
      },
      step);
}

}  // namespace proctap
