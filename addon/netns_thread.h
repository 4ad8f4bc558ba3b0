// SPDX-License-Identifier: MIT
// Work inside another network namespace without moving the process: only a thread of ours enters it.
#pragma once

#include <functional>
#include <string>

namespace proctap {

// Moves the CALLING thread (never call it on Node's main thread) into the network namespace at `path`
// (/proc/PID/ns/net, /run/netns/NAME), and into a private mount namespace with sysfs remounted, as
// `ip netns exec` does: /sys/class/net then lists that namespace's devices, which libpcap reads for
// interface flags and drop counters. Returns 0, or an errno with `*step` naming what failed.
int EnterNetnsOnThisThread(const std::string& path, std::string* step);

// Runs `fn` on a fresh thread (signals blocked) that first entered `path` (skipped when empty), and
// joins it. Returns 0, or the errno of the failed step (named in `*step`); `fn` does not run then.
int RunInNetns(const std::string& path, const std::function<void()>& fn, std::string* step);

// As RunInNetns, but the thread joins the network namespace only (no mount namespace, no sysfs): enough
// to create a socket there (a socket stays in the namespace it was created in, whichever thread uses it).
int RunInNetworkNamespaceOnly(const std::string& path, const std::function<void()>& fn, std::string* step);

}  // namespace proctap
