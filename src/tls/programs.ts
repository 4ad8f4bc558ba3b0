// SPDX-License-Identifier: MIT
/** The TLS uprobe programs (bpf/tls.bpf.h), attached per library file by hooks.ts: one uprobe per function
 *  (`probe`), or one uprobe_multi link per file (`multi`, kernel 6.6+). */
export const TLS_PROGRAMS = {
  probe: { enter: 'tls_enter_probe', return: 'tls_return_probe', free: 'tls_free_probe' },
  multi: { enter: 'tls_enter_multi', return: 'tls_return_multi', free: 'tls_free_multi' },
} as const;
