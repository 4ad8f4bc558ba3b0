// SPDX-License-Identifier: MIT
#include "fifo.h"

#include <sys/stat.h>

#include <cerrno>
#include <string>

#include "errors.h"

namespace proctap {

void MakeFifo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) ThrowTypeError(env, "makeFifo(path: string, mode: number)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  double mode = info[1].As<Napi::Number>().DoubleValue();
  if (!(mode >= 0 && mode <= 07777) || mode != static_cast<double>(static_cast<int>(mode))) ThrowTypeError(env, "mode must be an integer in [0, 0o7777]");
  // the mode is also subject to the umask: the caller sets the final mode with chmod
  if (mkfifo(path.c_str(), static_cast<mode_t>(mode)) != 0) ThrowErrno(env, errno, "mkfifo '" + path + "'");
}

}  // namespace proctap
