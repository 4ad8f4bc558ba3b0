// SPDX-License-Identifier: MIT
// conntrack table dump over raw ctnetlink (NETLINK_NETFILTER, IPCTNL_MSG_CT_GET + NLM_F_DUMP).
#pragma once

#include <napi.h>

namespace proctap {

// conntrackDump({ family?: 'ipv4' | 'ipv6', netnsPath?: string }): ConntrackEntry[] (src/native/native.d.ts)
Napi::Value ConntrackDump(const Napi::CallbackInfo& info);

}  // namespace proctap
