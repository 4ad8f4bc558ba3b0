/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/* Kernel-side maps and helpers shared by every proctap program and backend. */
#ifndef PROCTAP_BPF_H
#define PROCTAP_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "proctap.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define MSG_PEEK 2
#define TCP_CLOSE_STATE 7

const volatile struct proctap_config proctap_cfg = {
	.interval_ns = 100000000ULL,
	.wakeup_bytes = 256 * 1024,
	.follow_children = 1,
};

struct proctap_stats stats = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct traced_process);
} traced SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PROCTAP_FLOW_SLOTS);
	__type(key, __u32);
	__type(value, struct flow_slot);
} flow_slots SEC(".maps");

/* A new flow's first value, built here: 272 bytes would not fit beside the L7 code on the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_value);
} flow_init SEC(".maps");

/* BPF_F_CLONE: accepted sockets inherit their listener's owner. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_meta);
} sock_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* thread id */
	__type(value, struct pending_peer);
} pending_peer SEC(".maps");

/* Threads inside sendfile()/splice(): value is 1 once the syscall's first chunk was counted as a call. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* thread id */
	__type(value, __u32);
} splice_calls SEC(".maps");

/*
 * Bitmaps over thread/process ids (PID_MAX_LIMIT is 2^22 on 64-bit: 65536 words of 64 bits, 512 KiB):
 * array lookups are inlined by the verifier, where a hash lookup is a helper call. See bit_of().
 */
#define PROCTAP_ID_WORDS 65536

/* Threads that entered sendfile()/splice() and made no other socket send since (first_chunk_of_syscall). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PROCTAP_ID_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} splice_threads SEC(".maps");

/* The word of a bitmap that holds id's bit (NULL only for an id beyond PID_MAX_LIMIT), and the bit. */
static __always_inline __u64 *bit_of(void *bitmap, __u32 id, __u64 *bit)
{
	__u32 word = id >> 6;

	*bit = 1ULL << (id & 63);
	return bpf_map_lookup_elem(bitmap, &word);
}

/*
 * The traced set as bitmaps by tgid, in front of the `traced` hash for the socket hooks (traced_fast()).
 * traced_bits, written by programs only (atomic or/and): the process is traced, as itself (a bit is set
 * after the hash entry is made, at fork, at a matching exec or by traced_fast() itself, and cleared when
 * the process exits). traced_user_bits, written by user space only (addTraced/removeTraced), so that
 * neither side ever rewrites a word the other one writes: the process may be traced; the hash says.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PROCTAP_ID_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} traced_bits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PROCTAP_ID_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} traced_user_bits SEC(".maps");

static __always_inline void set_traced_bit(__u32 tgid)
{
	__u64 bit, *word = bit_of(&traced_bits, tgid, &bit);

	if (word && !(*word & bit))
		__sync_fetch_and_or(word, bit);
}

static __always_inline void clear_traced_bit(__u32 tgid)
{
	__u64 bit, *word = bit_of(&traced_bits, tgid, &bit);

	if (word && (*word & bit))
		__sync_fetch_and_and(word, ~bit);
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct process_id); /* owner; tgid 0 = no owner */
	__type(value, struct packet_counters);
} packets SEC(".maps");

/* Listening sockets of attach targets opened before the attach (see struct listener_key). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct listener_key);
	__type(value, struct process_id);
} listeners SEC(".maps");

/* kprobe backend: the arguments a kprobe saw, for its kretprobe (the thread is inside the call). */
struct io_args {
	struct sock *sk;
	int flags;
	struct msghdr *msg; /* L7 view only */
	__u64 len;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* thread id */
	__type(value, struct io_args);
} io_args SEC(".maps");

/* TCP retransmits of traced sockets (see tcp_retransmit_skb). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);   /* socket cookie */
	__type(value, __u64); /* the socket's tcp_sock.total_retrans when last seen */
} retransmits SEC(".maps");

static __always_inline bool is_traced(__u32 tgid)
{
	return bpf_map_lookup_elem(&traced, &tgid) != NULL;
}

/*
 * The traced entry of the current process (NULL: not traced). Its start time, with the tgid the process's
 * identity across PID reuse, is set at fork; an attach target's entry starts at 0 (user space cannot read
 * the kernel's start time) and gets it here, from its own context. Tracing and kprobe programs only.
 */
static __always_inline struct traced_process *traced_current(__u32 tgid)
{
	struct traced_process *tp = bpf_map_lookup_elem(&traced, &tgid);

	if (tp && !tp->start_time_ns) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();

		tp->start_time_ns = BPF_CORE_READ(task, group_leader, start_time);
	}
	return tp;
}

/*
 * Is the current process traced, and its start time (tracing programs: task is bpf_get_current_task_btf()).
 * Two inlined array lookups and plain loads for an untraced process or a traced one seen before; the hash
 * lookup (a helper call) only for a process user space added, once, after which its bit is set.
 */
static __always_inline bool traced_fast(struct task_struct *task, __u32 tgid, __u64 *start_time_ns)
{
	__u64 bit, *word = bit_of(&traced_bits, tgid, &bit), ubit, *uword;
	struct traced_process *tp;

	if (word && (*word & bit)) {
		*start_time_ns = task->group_leader->start_time;
		return true;
	}
	uword = bit_of(&traced_user_bits, tgid, &ubit);
	if (!uword || !(*uword & ubit))
		return false;
	tp = traced_current(tgid);
	if (!tp)
		return false;
	*start_time_ns = tp->start_time_ns;
	if (word)
		__sync_fetch_and_or(word, bit);
	return true;
}

static __always_inline __u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline void *reserve_record(__u32 size, __u16 type, __u32 tgid, __u64 now)
{
	struct record_header *h = bpf_ringbuf_reserve(&events, size, 0);

	if (!h) {
		if (type < RECORD_TYPE_MAX)
			__sync_fetch_and_add(&stats.lost_records[type], 1);
		return NULL;
	}
	h->type = type;
	h->cpu = bpf_get_smp_processor_id();
	h->tgid = tgid;
	h->ts_ns = now;
	h->start_time_ns = 0;
	return h;
}

/* No wakeup per record: the consumer polls on a timer, and is woken early only once enough piled up. */
static __always_inline void submit_record(void *record)
{
	__u64 pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	bpf_ringbuf_submit(record, pending >= proctap_cfg.wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* Local and remote address of a socket (kernel pointer, CO-RE reads: works from every backend). */
static __always_inline void read_sock_addrs(struct sock *sk, __u8 family, __u8 *laddr, __u16 *lport,
					    __u8 *raddr, __u16 *rport)
{
	if (family == AF_INET) {
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);

		__builtin_memcpy(laddr, &l, 4);
		__builtin_memcpy(raddr, &r, 4);
	} else {
		BPF_CORE_READ_INTO((struct in6_addr *)laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO((struct in6_addr *)raddr, sk, __sk_common.skc_v6_daddr);
	}
	*lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	*rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

/* TCP or UDP over IPv4/IPv6 from a socket's family, type and protocol fields; 0 for anything else. */
static __always_inline __u8 classify_proto(__u16 fam, __u16 type, __u16 proto, __u8 *family)
{
	if (fam != AF_INET && fam != AF_INET6)
		return 0;
	*family = fam;
	if (type == SOCK_STREAM && proto == IPPROTO_TCP)
		return IPPROTO_TCP;
	if (type == SOCK_DGRAM && proto == IPPROTO_UDP)
		return IPPROTO_UDP;
	return 0;
}

/* AF_INET/AF_INET6 TCP or UDP socket (CO-RE reads): returns the IP protocol, or 0 for anything else. */
static __always_inline __u8 inet_proto(struct sock *sk, __u8 *family)
{
	return classify_proto(BPF_CORE_READ(sk, __sk_common.skc_family), BPF_CORE_READ(sk, sk_type),
			      BPF_CORE_READ(sk, sk_protocol), family);
}

#endif /* PROCTAP_BPF_H */
