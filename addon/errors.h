// SPDX-License-Identifier: MIT
#pragma once

#include <napi.h>

#include <string>

namespace proctap {

// Symbolic name of an errno value ("EPERM"); kernel-internal values get their kernel names.
std::string ErrnoCode(int err);

// An Error carrying .errno (positive) and .code. `detail` (e.g. a verifier log tail) is appended
// on its own lines so the message ends with it.
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& what,
                       const std::string& detail = std::string());

[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& what,
                             const std::string& detail = std::string());

[[noreturn]] void ThrowError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message);

}  // namespace proctap
