// SPDX-License-Identifier: MIT
#include "errors.h"

#include <cstdlib>
#include <cstring>

namespace proctap {

std::string ErrnoCode(int err) {
  err = std::abs(err);
  // strerrorname_np (glibc >= 2.32) has no entry for these: they never leave the kernel in
  // theory, but bpf(2) returns them in practice.
  switch (err) {
    case 512: return "ERESTARTSYS";
    case 524: return "ENOTSUPP";
    case 525: return "ETOOSMALL";
  }
  if (const char* name = strerrorname_np(err)) return name;
  return "E" + std::to_string(err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& what, const std::string& detail) {
  err = std::abs(err);
  std::string text = err == 524 ? "Operation not supported by kernel" : std::strerror(err);
  std::string code = ErrnoCode(err);
  std::string message = what + ": " + text + " (" + code + ")";
  if (!detail.empty()) message += "\n" + detail;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("code", Napi::String::New(env, code));
  return error;
}

void ThrowErrno(Napi::Env env, int err, const std::string& what, const std::string& detail) {
  throw ErrnoError(env, err, what, detail);
}

void ThrowError(Napi::Env env, const std::string& message) {
  throw Napi::Error::New(env, message);
}

void ThrowTypeError(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

}  // namespace proctap
