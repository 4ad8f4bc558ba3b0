// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string>

namespace proctap {

// libbpf's print hook is process-global, so its output goes into one bounded line buffer.
// Callers take a Mark() before a libbpf call and, on failure, the Tail() written since.
void InstallLibbpfLog();
uint64_t LibbpfLogMark();
std::string LibbpfLogTail(uint64_t mark, size_t max_lines = 20);

}  // namespace proctap
