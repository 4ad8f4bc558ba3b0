// SPDX-License-Identifier: MIT
#pragma once

#include <napi.h>

namespace proctap {

// makeFifo(path, mode): mkfifo(3). Node has no call for it.
void MakeFifo(const Napi::CallbackInfo& info);

}  // namespace proctap
