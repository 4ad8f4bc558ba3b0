// SPDX-License-Identifier: MIT
#include "libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>

namespace proctap {
namespace {

constexpr size_t kMaxLines = 512;
constexpr size_t kMaxLineBytes = 1024;

std::mutex g_mutex;
std::deque<std::string> g_lines;
uint64_t g_next_seq = 0;  // sequence number of the next completed line
std::string g_partial;    // libbpf sometimes prints one line in several calls
bool g_debug = false;

void PushLine(std::string line) {
  if (line.size() > kMaxLineBytes) line.resize(kMaxLineBytes);
  g_lines.push_back(std::move(line));
  g_next_seq++;
  if (g_lines.size() > kMaxLines) g_lines.pop_front();
}

int Print(enum libbpf_print_level level, const char* format, va_list args) {
  if (g_debug) {
    va_list copy;
    va_copy(copy, args);
    vfprintf(stderr, format, copy);
    va_end(copy);
  } else if (level == LIBBPF_DEBUG) {
    return 0;
  }
  char stack_buf[512];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(stack_buf, sizeof(stack_buf), format, copy);
  va_end(copy);
  if (n < 0) return 0;
  std::string text;
  if (static_cast<size_t>(n) < sizeof(stack_buf)) {
    text.assign(stack_buf, n);
  } else {
    // Verifier logs arrive as one multi-kilobyte print.
    text.resize(n + 1);
    vsnprintf(text.data(), text.size(), format, args);
    text.resize(n);
  }

  std::lock_guard<std::mutex> lock(g_mutex);
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    g_partial.append(text, start, nl - start);
    PushLine(std::move(g_partial));
    g_partial.clear();
  }
  g_partial.append(text, start, std::string::npos);
  if (g_partial.size() > kMaxLineBytes) {
    PushLine(std::move(g_partial));
    g_partial.clear();
  }
  return 0;
}

}  // namespace

void InstallLibbpfLog() {
  const char* env = std::getenv("PROCTAP_LIBBPF_DEBUG");
  g_debug = env != nullptr && std::strcmp(env, "1") == 0;
  libbpf_set_print(Print);
}

uint64_t LibbpfLogMark() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_next_seq;
}

std::string LibbpfLogTail(uint64_t mark, size_t max_lines) {
  std::lock_guard<std::mutex> lock(g_mutex);
  uint64_t first_kept = g_next_seq - g_lines.size();
  uint64_t from = mark > first_kept ? mark : first_kept;
  if (g_next_seq - from > max_lines) from = g_next_seq - max_lines;
  std::string out;
  for (uint64_t seq = from; seq < g_next_seq; seq++) {
    if (!out.empty()) out += '\n';
    out += g_lines[seq - first_kept];
  }
  if (!g_partial.empty() && mark <= g_next_seq) {
    if (!out.empty()) out += '\n';
    out += g_partial;
  }
  return out;
}

}  // namespace proctap
