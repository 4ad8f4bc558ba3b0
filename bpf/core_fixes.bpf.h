/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * Kernel-version workarounds, in one place, each with the kernel change that makes it needed.
 * (User space holds the one that is a choice of programs: tracer.ts loads the tcp_sendpage programs
 * only on kernels before 6.5.)
 */
#ifndef PROCTAP_CORE_FIXES_BPF_H
#define PROCTAP_CORE_FIXES_BPF_H

#include "proctap.bpf.h"

/*
 * kprobe programs cannot call bpf_get_socket_cookie() (it is offered to tracing, socket and cgroup
 * programs only). Use the cookie if the socket has one (every socket created in the traced cgroup gets
 * one at sock_create), else the socket's address, which is unique while it lives.
 */
static __always_inline __u64 kprobe_sock_cookie(struct sock *sk)
{
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);

	return cookie ? cookie : (__u64)sk;
}

/*
 * Before 6.5, sendfile()/splice() into a TCP socket went through tcp_sendpage(), once per page or so,
 * not tcp_sendmsg() (6.5 replaced sendpage with sendmsg(MSG_SPLICE_PAGES)). Only those syscalls get
 * there, and their sys_enter resets splice_calls: the first page of a syscall counts the call. Works
 * without pt_regs, so for kprobes too.
 */
static __always_inline bool first_page_of_syscall(__u32 tid)
{
	__u32 *counted = bpf_map_lookup_elem(&splice_calls, &tid);

	if (!counted)
		return true;
	if (*counted)
		return false;
	*counted = 1;
	return true;
}

/*
 * The 6.1 verifier loses size_bucket()'s own bound across its "r + 1" and the 32-bit zero-extension
 * (6.18's keeps it): bound the index again on the very register that indexes.
 */
static __always_inline __u64 verifier_bounded_bucket(__u64 bucket)
{
	barrier_var(bucket);
	if (bucket > PROCTAP_SIZE_BUCKETS - 1)
		bucket = PROCTAP_SIZE_BUCKETS - 1;
	return bucket;
}

/*
 * inet_csk_clone_lock() fires LISTEN->SYN_RECV on the new child while it is still a copy of the
 * listener; 6.1 does so before the child has its own cookie and addresses, so a record then would
 * carry the listener's cookie. Hold the record in the socket's storage and emit it, with its own time,
 * at the child's next transition (6.18 would not need it; one path for both is simpler).
 */
static __always_inline void hold_syn_recv(struct sock_meta *m, __u64 now)
{
	m->flags = SOCK_META_PASSIVE | SOCK_META_SYN_RECV_PENDING;
	m->start_ns = now;
}

/* True once per held SYN_RECV record: the caller emits it now. */
static __always_inline bool release_held_syn_recv(struct sock_meta *m)
{
	if (!(m->flags & SOCK_META_SYN_RECV_PENDING))
		return false;
	m->flags &= ~SOCK_META_SYN_RECV_PENDING;
	return true;
}

#endif /* PROCTAP_CORE_FIXES_BPF_H */
