// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * proctap kernel side: per-(socket, process, remote) byte and call counters kept in kernel, ring-buffer
 * records only on lifecycle changes and at most once per interval per active flow.
 *
 * Backends for socket I/O accounting, side by side below; user space autoloads exactly one:
 *   tracepoint: tp_btf on sock:sock_send_length / sock:sock_recv_length (kernel >= 6.3)
 *   fentry:     fexit on tcp/udp/udpv6 sendmsg/recvmsg
 *   kprobe:     kprobe + kretprobe on the same functions
 */
#include "proctap.bpf.h"
#include "core_fixes.bpf.h"
#include "tls.bpf.h"
#include "l7.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* ---- socket I/O accounting, shared by every backend ------------------------------------------- */

/* v: the `flows` entry (NULL: none, the slot alone); slot: the flow's slot value (NULL: none). */
static __always_inline void emit_flow(__u16 type, const struct flow_key *key, const struct flow_value *v,
				      const struct flow_value *slot, __u64 now)
{
	struct flow_record *r = reserve_record(sizeof(*r), type, key->tgid, now);

	if (!r)
		return;
	r->header.start_time_ns = key->start_time_ns;
	r->key = *key;
	if (v) {
		r->counters = v->counters;
		r->first_ns = v->first_ns;
		__builtin_memcpy(r->laddr, v->laddr, sizeof(r->laddr));
		r->lport = v->lport;
	}
	if (slot) {
		r->counters.tx_bytes += slot->counters.tx_bytes;
		r->counters.rx_bytes += slot->counters.rx_bytes;
		r->counters.tx_calls += slot->counters.tx_calls;
		r->counters.rx_calls += slot->counters.rx_calls;
	}
	submit_record(r);
}

/* The slot of a flow (bpf/proctap.h, struct flow_slot): by its cookie, Fibonacci hashing. */
static __always_inline struct flow_slot *flow_slot_of(__u64 cookie)
{
	__u32 i = (cookie * 0x9E3779B97F4A7C15ULL) >> (64 - PROCTAP_FLOW_SLOTS_LOG2);

	return bpf_map_lookup_elem(&flow_slots, &i);
}

static __always_inline bool same_flow(const struct flow_key *a, const struct flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

/* A flow whose `flows` entry this call just created: its slot, if free or held by a flow taken since. */
static __always_inline void claim_flow_slot(struct flow_slot *slot, const struct flow_key *key, __u64 now)
{
	__u64 state = slot->state;

	if (state == FLOW_SLOT_BUSY)
		return;
	if (state == FLOW_SLOT_READY && bpf_map_lookup_elem(&flows, &slot->key))
		return; /* its flow is alive */
	if (__sync_val_compare_and_swap(&slot->state, state, FLOW_SLOT_BUSY) != state)
		return; /* another program claimed it first */
	slot->key = *key;
	__builtin_memset(&slot->value, 0, sizeof(slot->value));
	slot->value.last_emit_ns = now;
	__sync_lock_test_and_set(&slot->state, FLOW_SLOT_READY); /* xchg: a full barrier before READY */
}

/* The remote of an unconnected UDP send/recv, left by the cgroup sock_addr hook earlier in this call. */
static __always_inline bool take_pending_peer(__u32 tid, struct flow_key *key)
{
	struct pending_peer *p = bpf_map_lookup_elem(&pending_peer, &tid);
	bool found = false;

	if (!p)
		return false;
	if (p->cookie == key->cookie) {
		__builtin_memcpy(key->raddr, p->addr, sizeof(key->raddr));
		key->rport = p->port;
		key->family = p->family;
		found = true;
	}
	bpf_map_delete_elem(&pending_peer, &tid);
	return found;
}

/* Record that a traced process used a socket, so hooks without process context know the owner. */
static __always_inline void claim_socket(struct sock *sk, __u32 tgid, __u64 start_time_ns, __u64 now)
{
	struct sock_meta *m = bpf_sk_storage_get(&sock_meta, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!m)
		return;
	if (m->owner_tgid != tgid || m->owner_start_time_ns != start_time_ns) {
		m->owner_tgid = tgid;
		m->owner_start_time_ns = start_time_ns;
	}
	if (!m->start_ns)
		m->start_ns = now;
}

#if defined(__TARGET_ARCH_x86)
#define NR_SENDFILE 40
#define NR_SPLICE 275
#define SYSCALL_NR(regs) ((regs)->orig_ax)
#elif defined(__TARGET_ARCH_arm64)
#define NR_SENDFILE 71
#define NR_SPLICE 76
#define SYSCALL_NR(regs) ((regs)->syscallno)
#endif

/*
 * sendfile() and splice() into a socket call sock_sendmsg once per chunk (64 KiB or so): count one call
 * per syscall, as the program sees it. sys_enter marks the thread; the first chunk counts the call.
 */
static __always_inline bool first_chunk_of_syscall(__u32 tid)
{
	struct pt_regs *regs;
	__u64 bit, *word = bit_of(&splice_threads, tid, &bit);
	__u32 *counted;
	long nr;

	/* no sendfile()/splice() since this thread's last other send: skip the bpf_task_pt_regs() call */
	if (!word || !(*word & bit))
		return true;
	/* a typed pointer: the syscall number is a plain load, not a bpf_probe_read_kernel() call */
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	nr = SYSCALL_NR(regs);
	if (nr != NR_SENDFILE && nr != NR_SPLICE) {
		__sync_fetch_and_and(word, ~bit);
		return true;
	}
	counted = bpf_map_lookup_elem(&splice_calls, &tid);
	if (!counted)
		return true;
	if (*counted)
		return false;
	*counted = 1;
	return true;
}

static __always_inline void mark_splice_call(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, zero = 0;
	__u64 bit, *word;

	if (!is_traced(pid_tgid >> 32))
		return;
	bpf_map_update_elem(&splice_calls, &tid, &zero, BPF_ANY);
	word = bit_of(&splice_threads, tid, &bit);
	if (word)
		__sync_fetch_and_or(word, bit);
}

/*
 * The two syscalls' own tracepoints: unlike raw sys_enter they cost no program run on every other
 * syscall of the machine (51 ns each here). They need tracefs (libbpf reads the event id there) and
 * CONFIG_FTRACE_SYSCALLS; user space attaches sys_enter instead when they cannot be attached.
 */
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int sys_enter_sendfile(void *ctx)
{
	mark_splice_call();
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_splice")
int sys_enter_splice(void *ctx)
{
	mark_splice_call();
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	if (id == NR_SENDFILE || id == NR_SPLICE)
		mark_splice_call();
	if (proctap_cfg.l7_data && (id == L7_NR_SENDMMSG || id == L7_NR_RECVMMSG))
		l7_mark_mmsg_call();
	return 0;
}

/* L7 view on the tracepoint backend: sendmmsg()/recvmmsg() number their messages (bpf/l7.bpf.h). */
SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int sys_enter_sendmmsg(void *ctx)
{
	l7_mark_mmsg_call();
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int sys_enter_recvmmsg(void *ctx)
{
	l7_mark_mmsg_call();
	return 0;
}

/* The message-size bucket of a call of v bytes: 0 when empty, i for [2^(i-1), 2^i), the last one for
 * 4 MiB and up (floor(log2(v)) + 1, branch-free, capped at PROCTAP_SIZE_BUCKETS - 1). */
static __always_inline __u32 size_bucket(__u32 v)
{
	__u32 r, shift;

	if (!v)
		return 0;
	r = (v > 0xFFFF) << 4;
	v >>= r;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	r += 1; /* floor(log2(v)) + 1 */
	return r < PROCTAP_SIZE_BUCKETS ? r : PROCTAP_SIZE_BUCKETS - 1;
}


/*
 * inet_proto() and read_sock_addrs() with plain loads: in tp_btf/fexit programs sk is a typed kernel
 * pointer, so each field is one guarded load instead of a bpf_probe_read_kernel() call (7 per send).
 */
static __always_inline __u8 inet_proto_btf(struct sock *sk, __u8 *family)
{
	return classify_proto(sk->__sk_common.skc_family, sk->sk_type, sk->sk_protocol, family);
}

static __always_inline void read_sock_addrs_btf(struct sock *sk, __u8 family, __u8 *laddr, __u16 *lport,
						__u8 *raddr, __u16 *rport)
{
	if (family == AF_INET) {
		__u32 l = sk->__sk_common.skc_rcv_saddr, r = sk->__sk_common.skc_daddr;

		__builtin_memcpy(laddr, &l, 4);
		__builtin_memcpy(raddr, &r, 4);
	} else {
		__u32 *l = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32;
		__u32 *r = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32;
		__u32 w;

		for (int i = 0; i < 4; i++) {
			w = l[i];
			__builtin_memcpy(laddr + 4 * i, &w, 4);
			w = r[i];
			__builtin_memcpy(raddr + 4 * i, &w, 4);
		}
	}
	*lport = sk->__sk_common.skc_num;
	*rport = bpf_ntohs(sk->__sk_common.skc_dport);
}

/*
 * Helper calls are what a hook pays for most on kernels with return-thunk mitigations (SRSO "Safe RET"
 * here: ~15-60 ns each, docs/performance.md): the tracing path reads what it can with plain loads, from
 * the task bpf_get_current_task_btf() gives (one call for tgid, tid and start time) and from the socket.
 */
/* The cookie once assigned is a plain field; only the socket's first call may have to assign it. */
static __always_inline __u64 sock_cookie_btf(struct sock *sk)
{
	__u64 cookie = sk->__sk_common.skc_cookie.counter;

	return cookie ? cookie : bpf_get_socket_cookie(sk);
}

/*
 * tracing_ctx: the program is BPF_PROG_TYPE_TRACING (tp_btf, fentry/fexit), which may use socket-local
 * storage and task pt_regs. kprobes may not: they skip claiming the socket and the sendfile chunk check
 * (on the kernels that need kprobes, sendfile goes through sendpage, not sendmsg, anyway).
 */
/* msg, asked: the fentry/kprobe call's msghdr and the bytes it was asked to move (L7 view; NULL, 0 else). */
static __always_inline void account_io(struct sock *sk, int bytes, __u8 direction,
				       int msg_flags, const bool tracing_ctx, const bool sendpage,
				       struct msghdr *msg, __u64 asked)
{
	struct flow_key key = {};
	struct flow_slot *slot = NULL;
	struct flow_value *v;
	__u32 zero = 0;
	__u64 now, bucket;
	__u32 tgid, tid;
	__u8 family = 0, proto;

	if (bytes < 0)
		return;
	if (tracing_ctx) {
		struct task_struct *task = bpf_get_current_task_btf();

		tgid = task->tgid;
		tid = task->pid;
		if (!traced_fast(task, tgid, &key.start_time_ns))
			return;
	} else {
		__u64 id = bpf_get_current_pid_tgid();
		struct traced_process *tp;

		tgid = id >> 32;
		tid = (__u32)id;
		tp = traced_current(tgid);
		if (!tp)
			return;
		key.start_time_ns = tp->start_time_ns;
	}
	proto = tracing_ctx ? inet_proto_btf(sk, &family) : inet_proto(sk, &family);
	if (!proto)
		return;
	/* only now, for traced processes: the cookie helper may have to assign one */
	key.cookie = tracing_ctx ? sock_cookie_btf(sk) : kprobe_sock_cookie(sk);
	key.tgid = tgid;
	key.family = family;
	key.proto = proto;
	if (proto == IPPROTO_UDP && take_pending_peer(tid, &key)) {
		/* remote from sendto()/recvfrom() */
	} else {
		__u8 laddr[16];
		__u16 lport;

		if (tracing_ctx)
			read_sock_addrs_btf(sk, family, laddr, &lport, key.raddr, &key.rport);
		else
			read_sock_addrs(sk, family, laddr, &lport, key.raddr, &key.rport);
	}
	/* A TCP call moving no byte is no I/O; an empty UDP datagram is a message. MSG_PEEK reads twice. */
	if ((proto == IPPROTO_TCP && bytes == 0) || (direction == DIRECTION_RX && (msg_flags & MSG_PEEK)))
		return;

	tls_note_socket(tid, &key, direction);
	now = bpf_ktime_get_ns();
	if (tracing_ctx)
		slot = flow_slot_of(key.cookie);
	if (slot && slot->state == FLOW_SLOT_READY && same_flow(&slot->key, &key))
		v = &slot->value;
	else
		v = bpf_map_lookup_elem(&flows, &key);
	if (!v) {
		struct flow_value *init = bpf_map_lookup_elem(&flow_init, &zero);
		__u8 raddr[16];
		__u16 rport;
		long err;

		if (!init)
			return;
		__builtin_memset(init, 0, sizeof(*init));
		init->first_ns = now;
		init->last_emit_ns = now;
		read_sock_addrs(sk, family, init->laddr, &init->lport, raddr, &rport);
		err = bpf_map_update_elem(&flows, &key, init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&flows, &key);
		if (!v) {
			__sync_fetch_and_add(&stats.flow_table_full, 1);
			__sync_fetch_and_add(&stats.flow_table_full_bytes, bytes);
			return;
		}
		if (!err) {
			emit_flow(RECORD_FLOW_NEW, &key, v, NULL, now);
			/*
			 * A flow that has its slot counts there from its first call: the slot's counters are then all
			 * of the flow's, which the L7 view's stream offsets (l7_on_call) are read from.
			 */
			if (slot) {
				claim_flow_slot(slot, &key, now);
				if (slot->state == FLOW_SLOT_READY && same_flow(&slot->key, &key))
					v = &slot->value;
			}
		}
		if (tracing_ctx)
			claim_socket(sk, tgid, key.start_time_ns, now);
	}
	if (proctap_cfg.l7_data)
		l7_on_call(sk, v, &key, bytes, direction, msg_flags, msg, asked, tracing_ctx, sendpage, tid, now);
	bucket = verifier_bounded_bucket(size_bucket(bytes));
	if (direction == DIRECTION_TX) {
		__sync_fetch_and_add(&v->counters.tx_bytes, bytes);
		if (sendpage ? first_page_of_syscall(tid) : (!tracing_ctx || first_chunk_of_syscall(tid))) {
			__sync_fetch_and_add(&v->counters.tx_calls, 1);
			__sync_fetch_and_add(&v->tx_sizes[bucket], 1);
		}
	} else {
		__sync_fetch_and_add(&v->counters.rx_bytes, bytes);
		__sync_fetch_and_add(&v->counters.rx_calls, 1);
		__sync_fetch_and_add(&v->rx_sizes[bucket], 1);
	}
	v->last_ns = now;
	if (now - v->last_emit_ns >= proctap_cfg.interval_ns) {
		v->last_emit_ns = now;
		if (slot && v == &slot->value)
			emit_flow(RECORD_FLOW_UPDATE, &key, bpf_map_lookup_elem(&flows, &key), v, now);
		else
			emit_flow(RECORD_FLOW_UPDATE, &key, v,
				  slot && slot->state == FLOW_SLOT_READY && same_flow(&slot->key, &key) ? &slot->value : NULL,
				  now);
	}
	if (proctap_cfg.detail_calls) {
		struct call_record *c = reserve_record(sizeof(*c), RECORD_CALL, tgid, now);

		if (c) {
			c->header.start_time_ns = key.start_time_ns;
			c->key = key;
			c->tid = tid;
			c->bytes = bytes;
			c->direction = direction;
			submit_record(c);
		}
	}
}

/* ---- backend: tracepoint (sock_sendmsg/sock_recvmsg report every call's result; kernel 6.3+) ----- */

SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_sock_send_length, struct sock *sk, int ret, int flags)
{
	if (ret >= 0)
		account_io(sk, ret, DIRECTION_TX, flags, true, false, NULL, 0);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_sock_recv_length, struct sock *sk, int ret, int flags)
{
	if (ret >= 0)
		account_io(sk, ret, DIRECTION_RX, flags, true, false, NULL, 0);
	return 0;
}

/* ---- backend: fentry (fexit on the protocol functions; arguments as of kernel 5.19+) ------------ */

#define FEXIT_SEND(fn)                                                                              \
	SEC("fexit/" #fn)                                                                           \
	int BPF_PROG(fexit_##fn, struct sock *sk, struct msghdr *msg, size_t len, int ret)           \
	{                                                                                           \
		if (ret >= 0)                                                               \
			account_io(sk, ret, DIRECTION_TX, 0, true, false, msg, len); \
		return 0;                                                                           \
	}
#define FEXIT_RECV(fn)                                                                              \
	SEC("fexit/" #fn)                                                                           \
	int BPF_PROG(fexit_##fn, struct sock *sk, struct msghdr *msg, size_t len, int flags,         \
		     int *addr_len, int ret)                                                        \
	{                                                                                           \
		if (ret >= 0)                                                               \
			account_io(sk, ret, DIRECTION_RX, flags, true, false, msg, len); \
		return 0;                                                                           \
	}

FEXIT_SEND(tcp_sendmsg)
FEXIT_RECV(tcp_recvmsg)
FEXIT_SEND(udp_sendmsg)
FEXIT_RECV(udp_recvmsg)
FEXIT_SEND(udpv6_sendmsg)
FEXIT_RECV(udpv6_recvmsg)

/* Before 6.5 only (user space autoloads it when the kernel has tcp_sendpage): sendfile()/splice() to TCP. */
SEC("fexit/tcp_sendpage")
int BPF_PROG(fexit_tcp_sendpage, struct sock *sk, struct page *page, int offset, size_t size, int flags, int ret)
{
	if (ret >= 0)
		account_io(sk, ret, DIRECTION_TX, 0, true, true, NULL, 0);
	return 0;
}

/* ---- backend: kprobe (kprobe saves the arguments, kretprobe accounts the result) --------------- */


static __always_inline void save_io_args(struct sock *sk, int flags, struct msghdr *msg, __u64 len)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct io_args args = { .sk = sk, .flags = flags };

	if (proctap_cfg.l7_data) {
		args.msg = msg;
		args.len = len;
	}

	if (is_traced(id >> 32))
		bpf_map_update_elem(&io_args, &tid, &args, BPF_ANY);
}

static __always_inline void account_saved_io(int ret, __u8 direction, const bool sendpage)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct io_args *args = bpf_map_lookup_elem(&io_args, &tid);
	struct msghdr *msg;
	struct sock *sk;
	__u64 len;
	int flags;

	if (!args)
		return;
	sk = args->sk;
	flags = args->flags;
	msg = args->msg;
	len = args->len;
	bpf_map_delete_elem(&io_args, &tid);
	if (ret >= 0)
		account_io(sk, ret, direction, flags, false, sendpage, msg, len);
}

#define KPROBE_SEND(fn)                                                                             \
	SEC("kprobe/" #fn)                                                                          \
	int BPF_KPROBE(kprobe_##fn, struct sock *sk, struct msghdr *msg, size_t len)               \
	{                                                                                           \
		save_io_args(sk, 0, msg, len);                                                      \
		return 0;                                                                           \
	}                                                                                           \
	SEC("kretprobe/" #fn)                                                                       \
	int BPF_KRETPROBE(kretprobe_##fn, int ret)                                                  \
	{                                                                                           \
		account_saved_io(ret, DIRECTION_TX, false);                                                \
		return 0;                                                                           \
	}
#define KPROBE_RECV(fn)                                                                             \
	SEC("kprobe/" #fn)                                                                          \
	int BPF_KPROBE(kprobe_##fn, struct sock *sk, struct msghdr *msg, size_t len, int flags)     \
	{                                                                                           \
		save_io_args(sk, flags, msg, len);                                                  \
		return 0;                                                                           \
	}                                                                                           \
	SEC("kretprobe/" #fn)                                                                       \
	int BPF_KRETPROBE(kretprobe_##fn, int ret)                                                  \
	{                                                                                           \
		account_saved_io(ret, DIRECTION_RX, false);                                                \
		return 0;                                                                           \
	}

KPROBE_SEND(tcp_sendmsg)
KPROBE_RECV(tcp_recvmsg)
KPROBE_SEND(udp_sendmsg)
KPROBE_RECV(udp_recvmsg)
KPROBE_SEND(udpv6_sendmsg)
KPROBE_RECV(udpv6_recvmsg)

/* Before 6.5 only, as fexit_tcp_sendpage. */
SEC("kprobe/tcp_sendpage")
int BPF_KPROBE(kprobe_tcp_sendpage, struct sock *sk)
{
	save_io_args(sk, 0, NULL, 0);
	return 0;
}

SEC("kretprobe/tcp_sendpage")
int BPF_KRETPROBE(kretprobe_tcp_sendpage, int ret)
{
	account_saved_io(ret, DIRECTION_TX, true);
	return 0;
}

/* ---- processes ------------------------------------------------------------------------------- */

/* pid as the task's own PID namespace numbers it (NSpid's last field): a container's view. */
static __always_inline __u32 pid_in_own_namespace(struct task_struct *task)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid upid = {};

	/* pid namespaces nest at most 32 deep (MAX_PID_NS_LEVEL) */
	bpf_core_read(&upid, sizeof(upid), &pid->numbers[level & 31]);
	return upid.nr;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 pid = BPF_CORE_READ(child, pid), tgid = BPF_CORE_READ(child, tgid);
	struct traced_process tp = {};
	struct fork_record *r;
	__u64 now;

	/* Runs in the parent before the child is first scheduled: the child is traced from its first instruction. */
	if (pid != tgid || !proctap_cfg.follow_children || !is_traced(ptgid))
		return 0;
	tp.start_time_ns = BPF_CORE_READ(child, start_time);
	if (bpf_map_update_elem(&traced, &tgid, &tp, BPF_ANY))
		__sync_fetch_and_add(&stats.traced_table_full, 1);
	else
		set_traced_bit(tgid);
	now = bpf_ktime_get_ns();
	r = reserve_record(sizeof(*r), RECORD_FORK, tgid, now);
	if (!r)
		return 0;
	r->header.start_time_ns = tp.start_time_ns;
	r->ppid = ptgid;
	r->nspid = pid_in_own_namespace(child);
	BPF_CORE_READ_STR_INTO(&r->comm, child, comm);
	submit_record(r);
	return 0;
}

/* attach --comm / --cgroup: does a process that is not traced yet start matching at this exec? */
static __always_inline bool matches_target(const char *comm)
{
	if (proctap_cfg.match_cgroup_id && bpf_get_current_cgroup_id() == proctap_cfg.match_cgroup_id)
		return true;
	if (!proctap_cfg.match_comm[0])
		return false;
	for (int i = 0; i < PROCTAP_COMM_LEN; i++) {
		if (comm[i] != proctap_cfg.match_comm[i])
			return false;
		if (!comm[i])
			break;
	}
	return true;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	unsigned long arg_start, arg_end, len;
	struct exec_record *r;
	char comm[PROCTAP_COMM_LEN];
	__u32 matched = 0;
	/* de_thread() gave an exec'ing thread its leader's start time: p's is the process's */
	__u64 start_time_ns = BPF_CORE_READ(p, start_time);
	struct traced_process *known = bpf_map_lookup_elem(&traced, &tgid);

	if (known && !known->start_time_ns)
		known->start_time_ns = start_time_ns;
	if (!known) {
		struct traced_process tp = {};

		bpf_get_current_comm(&comm, sizeof(comm));
		if (!matches_target(comm))
			return 0;
		tp.start_time_ns = start_time_ns;
		if (bpf_map_update_elem(&traced, &tgid, &tp, BPF_ANY)) {
			__sync_fetch_and_add(&stats.traced_table_full, 1);
			return 0;
		}
		set_traced_bit(tgid);
		matched = 1;
	}
	r = reserve_record(sizeof(*r), RECORD_EXEC, tgid, bpf_ktime_get_ns());
	if (!r)
		return 0;
	r->header.start_time_ns = start_time_ns;
	r->matched = matched;
	r->ppid = BPF_CORE_READ(p, real_parent, tgid);
	bpf_get_current_comm(&r->comm, sizeof(r->comm));
	bpf_probe_read_kernel_str(&r->filename, sizeof(r->filename), BPF_CORE_READ(bprm, filename));
	/* argv was just copied onto the new stack: resident, readable here. */
	arg_start = BPF_CORE_READ(p, mm, arg_start);
	arg_end = BPF_CORE_READ(p, mm, arg_end);
	len = arg_end - arg_start;
	r->args_truncated = len > PROCTAP_ARGS_LEN;
	if (len > PROCTAP_ARGS_LEN)
		len = PROCTAP_ARGS_LEN;
	r->args_len = 0;
	if (len > 0 && !bpf_probe_read_user(&r->args, len & (PROCTAP_ARGS_LEN * 2 - 1), (void *)arg_start))
		r->args_len = len;
	submit_record(r);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	struct exit_record *r;

	__u64 bit, *word = bit_of(&traced_bits, tgid, &bit);
	bool in_set = is_traced(tgid);

	if (!in_set && !(word && (*word & bit)))
		return 0;
	/* signal->live was decremented before this tracepoint: zero means the whole process is gone. */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	clear_traced_bit(tgid); /* also when user space removed the hash entry first */
	if (!in_set)
		return 0;
	bpf_map_delete_elem(&traced, &tgid);
	r = reserve_record(sizeof(*r), RECORD_EXIT, tgid, bpf_ktime_get_ns());
	if (!r)
		return 0;
	r->header.start_time_ns = BPF_CORE_READ(p, group_leader, start_time);
	r->exit_code = BPF_CORE_READ(p, exit_code);
	submit_record(r);
	return 0;
}

/* ---- TCP connection lifecycle ---------------------------------------------------------------- */

static __always_inline void emit_sock_state(struct sock *sk, const struct sock_meta *m, __u8 family,
					    int oldstate, int newstate, __u64 ts)
{
	struct sock_state_record *r = reserve_record(sizeof(*r), RECORD_SOCK_STATE, m->owner_tgid, ts);
	__u32 flags = m->flags;

	if (!r)
		return;
	r->header.start_time_ns = m->owner_start_time_ns;
	r->cookie = bpf_get_socket_cookie(sk);
	r->family = family;
	r->proto = IPPROTO_TCP;
	r->old_state = oldstate;
	r->new_state = newstate;
	r->error = BPF_CORE_READ(sk, sk_err);
	r->flags = flags & ~SOCK_META_SYN_RECV_PENDING;
	read_sock_addrs(sk, family, r->laddr, &r->lport, r->raddr, &r->rport);
	submit_record(r);
}

/* Where a socket listens (or, for a child of a listener, where it was accepted): a `listeners` key. */
static __always_inline void listener_key_of(struct sock *sk, __u8 family, struct listener_key *key)
{
	key->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	key->port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (family == AF_INET) {
		__u32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);

		__builtin_memcpy(key->addr, &a, 4);
	} else {
		BPF_CORE_READ_INTO((struct in6_addr *)key->addr, sk, __sk_common.skc_v6_rcv_saddr);
	}
}

/*
 * A child of a listener that an attach target opened before the attach (so there was no storage to
 * clone): storage of its own now, owned by the listener's owner, as BPF_F_CLONE would have given it. At
 * SYN_RECV the child still has its listener's local address on 6.1, its own on 6.18: either is the
 * listener's bound address, or the listener is bound to any.
 */
static __always_inline struct sock_meta *adopt_listener_child(struct sock *sk, __u8 family)
{
	struct listener_key key = {};
	struct process_id *owner;
	struct sock_meta *m;

	listener_key_of(sk, family, &key);
	owner = bpf_map_lookup_elem(&listeners, &key);
	if (!owner) {
		__builtin_memset(key.addr, 0, sizeof(key.addr));
		owner = bpf_map_lookup_elem(&listeners, &key);
	}
	if (!owner)
		return NULL;
	m = bpf_sk_storage_get(&sock_meta, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!m)
		return NULL;
	m->owner_tgid = owner->tgid;
	m->owner_start_time_ns = owner->start_time_ns;
	return m;
}

/* Such a listener closed: its port may go to an untraced process next. */
static __always_inline void forget_listener(struct sock *sk, __u8 family)
{
	struct listener_key key = {};

	listener_key_of(sk, family, &key);
	bpf_map_delete_elem(&listeners, &key);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	struct sock_meta *m;
	__u8 family = 0;
	__u64 now;

	if (inet_proto(sk, &family) != IPPROTO_TCP)
		return 0;
	now = bpf_ktime_get_ns();
	if (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN) {
		/* connect() and listen() run in the owner's context: here "current" can be trusted. */
		__u32 tgid = current_tgid();
		struct traced_process *tp = traced_current(tgid);

		if (!tp)
			return 0;
		m = bpf_sk_storage_get(&sock_meta, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!m)
			return 0;
		m->owner_tgid = tgid;
		m->owner_start_time_ns = tp->start_time_ns;
		if (newstate == TCP_SYN_SENT) {
			m->flags = SOCK_META_ACTIVE;
			m->start_ns = now;
		}
	} else {
		/* Anything else may run in softirq: only the socket's own storage says who owns it. */
		m = bpf_sk_storage_get(&sock_meta, sk, 0, 0);
		if (!m && newstate == TCP_SYN_RECV)
			m = adopt_listener_child(sk, family);
		if (!m) {
			if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE)
				forget_listener(sk, family);
			return 0;
		}
		if (newstate == TCP_SYN_RECV) {
			/*
			 * A child of a traced listener: storage cloned from the listener (BPF_F_CLONE). The
			 * record waits for the child's next transition: inet_csk_clone_lock() fires this
			 * tracepoint on a copy of the listener, and older kernels (6.1) do so before giving
			 * the child its own cookie and addresses: the record had the listener's cookie.
			 */
			hold_syn_recv(m, now);
			return 0;
		}
		if (release_held_syn_recv(m))
			emit_sock_state(sk, m, family, TCP_LISTEN, TCP_SYN_RECV, m->start_ns);
	}
	emit_sock_state(sk, m, family, oldstate, newstate, now);
	return 0;
}

/* ---- cgroup hooks on the traced cgroup ------------------------------------------------------- */

SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *ctx)
{
	__u32 tgid = current_tgid();
	struct traced_process *tp;
	struct sock_meta *m;

	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return 1;
	/* no task access from a cgroup program: an attach target's start time may still be 0 here */
	tp = bpf_map_lookup_elem(&traced, &tgid);
	if (!tp)
		return 1;
	m = bpf_sk_storage_get(&sock_meta, ctx, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (m) {
		m->owner_tgid = tgid;
		m->owner_start_time_ns = tp->start_time_ns;
	}
	bpf_get_socket_cookie(ctx); /* assigns the cookie now, so kprobes can read it from the socket */
	return 1;
}

SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *ctx)
{
	struct sock_release_record *r;
	struct sock_meta *m;

	m = bpf_sk_storage_get(&sock_meta, ctx, 0, 0);
	if (!m)
		return 1;
	r = reserve_record(sizeof(*r), RECORD_SOCK_RELEASE, m->owner_tgid, bpf_ktime_get_ns());
	if (!r)
		return 1;
	r->header.start_time_ns = m->owner_start_time_ns;
	r->cookie = bpf_get_socket_cookie(ctx);
	submit_record(r);
	return 1;
}

static __always_inline void remember_peer(struct bpf_sock_addr *ctx, __u8 family)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct pending_peer p = {};

	if (!is_traced(id >> 32))
		return;
	p.cookie = bpf_get_socket_cookie(ctx);
	p.family = family;
	p.port = bpf_ntohs((__u16)ctx->user_port);
	if (family == AF_INET) {
		__u32 a = ctx->user_ip4;

		__builtin_memcpy(p.addr, &a, 4);
	} else {
		__u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1], a2 = ctx->user_ip6[2], a3 = ctx->user_ip6[3];

		__builtin_memcpy(p.addr, &a0, 4);
		__builtin_memcpy(p.addr + 4, &a1, 4);
		__builtin_memcpy(p.addr + 8, &a2, 4);
		__builtin_memcpy(p.addr + 12, &a3, 4);
	}
	bpf_map_update_elem(&pending_peer, &tid, &p, BPF_ANY);
}

SEC("cgroup/sendmsg4")
int udp_sendmsg4(struct bpf_sock_addr *ctx)
{
	remember_peer(ctx, AF_INET);
	return 1;
}

SEC("cgroup/sendmsg6")
int udp_sendmsg6(struct bpf_sock_addr *ctx)
{
	remember_peer(ctx, AF_INET6);
	return 1;
}

SEC("cgroup/recvmsg4")
int udp_recvmsg4(struct bpf_sock_addr *ctx)
{
	remember_peer(ctx, AF_INET);
	return 1;
}

SEC("cgroup/recvmsg6")
int udp_recvmsg6(struct bpf_sock_addr *ctx)
{
	remember_peer(ctx, AF_INET6);
	return 1;
}

/*
 * Packet capture: a ring-buffer record of a constant size class (reserve needs a constant size), then
 * the bytes. The length passed to bpf_skb_load_bytes must be provably in [1, class] on the very register
 * the call uses, which clang does not keep through its own range reasoning: bound it in asm.
 */
#define CAPTURE_CLASS(n)                                                                             \
	if (cap <= (n)) {                                                                            \
		r = bpf_ringbuf_reserve(&events, sizeof(*r) + (n), 0);                               \
		if (r && cap > 0) {                                                                  \
			__u64 len = cap - 1;                                                         \
			asm volatile("%[len] &= %[mask]\n\t%[len] += 1"                              \
				     : [len] "+r"(len)                                                \
				     : [mask] "i"((n) - 1));                                          \
			if (bpf_skb_load_bytes(skb, 0, (void *)(r + 1), len))                        \
				cap = 0;                                                             \
		}                                                                                    \
		goto reserved;                                                                       \
	}

static __always_inline void capture_packet(struct __sk_buff *skb, const struct process_id *owner, __u64 cookie,
					   __u8 direction)
{
	struct packet_record *r = NULL;
	__u32 cap = skb->len;

	if (cap > proctap_cfg.snaplen)
		cap = proctap_cfg.snaplen;
	CAPTURE_CLASS(128)
	CAPTURE_CLASS(2048)
	CAPTURE_CLASS(16384)
	CAPTURE_CLASS(65536)
	if (cap > PROCTAP_MAX_SNAPLEN)
		cap = PROCTAP_MAX_SNAPLEN;
	CAPTURE_CLASS(PROCTAP_MAX_SNAPLEN)
reserved:
	if (!r) {
		__sync_fetch_and_add(&stats.lost_records[RECORD_PACKET], 1);
		return;
	}
	r->header.type = RECORD_PACKET;
	r->header.cpu = bpf_get_smp_processor_id();
	r->header.tgid = owner->tgid;
	r->header.ts_ns = bpf_ktime_get_ns();
	r->header.start_time_ns = owner->start_time_ns;
	r->cookie = cookie;
	r->orig_len = skb->len;
	r->cap_len = cap;
	r->ifindex = skb->ifindex;
	r->direction = direction;
	submit_record(r);
}

/* Packets: attributed through the socket's stored owner, never through "current" (softirq on ingress). */
static __always_inline void count_packet(struct __sk_buff *skb, __u8 direction)
{
	struct bpf_sock *sk = skb->sk;
	struct packet_counters *c, zero = {};
	struct sock_meta *m = NULL;
	struct process_id owner = {};

	if (sk) {
		struct bpf_sock *full = bpf_sk_fullsock(sk);

		if (!full)
			full = bpf_get_listener_sock(sk); /* SYN-ACK from a request socket */
		if (full)
			m = bpf_sk_storage_get(&sock_meta, full, 0, 0);
	}
	if (m) {
		owner.tgid = m->owner_tgid;
		owner.start_time_ns = m->owner_start_time_ns;
	} else if (!proctap_cfg.count_unowned_packets)
		return;
	if (proctap_cfg.capture)
		capture_packet(skb, &owner, bpf_get_socket_cookie(skb), direction);
	c = bpf_map_lookup_elem(&packets, &owner);
	if (!c) {
		bpf_map_update_elem(&packets, &owner, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&packets, &owner);
		if (!c)
			return;
	}
	if (direction == DIRECTION_TX) {
		__sync_fetch_and_add(&c->tx_packets, 1);
		__sync_fetch_and_add(&c->tx_bytes, skb->len);
	} else {
		__sync_fetch_and_add(&c->rx_packets, 1);
		__sync_fetch_and_add(&c->rx_bytes, skb->len);
	}
}

SEC("cgroup_skb/egress")
int skb_egress(struct __sk_buff *skb)
{
	count_packet(skb, DIRECTION_TX);
	return 1;
}

SEC("cgroup_skb/ingress")
int skb_ingress(struct __sk_buff *skb)
{
	count_packet(skb, DIRECTION_RX);
	return 1;
}

/* ---- remote names: DNS responses received by traced sockets ---------------------------------- */

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/*
 * A UDP datagram from port 53 to a traced socket: copy the IP packet (up to PROCTAP_DNS_SNAPLEN) so user
 * space can learn the names behind the addresses the process then talks to. Runs with or without
 * capture; the bytes are parsed in user space (src/aggregate/dns.ts), never here.
 */
static __always_inline void copy_dns_response(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct sock_meta *m;
	struct dns_record *r;
	__u32 l4_offset, cap;
	__u16 sport;
	__u8 b;

	if (!sk)
		return;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != IPPROTO_UDP)
		return;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 9, &b, 1) || b != IPPROTO_UDP || bpf_skb_load_bytes(skb, 0, &b, 1))
			return;
		l4_offset = (b & 0xF) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		/* extension headers are not followed: a DNS answer does not carry any */
		if (bpf_skb_load_bytes(skb, 6, &b, 1) || b != IPPROTO_UDP)
			return;
		l4_offset = 40;
	} else {
		return;
	}
	if (bpf_skb_load_bytes(skb, l4_offset, &sport, sizeof(sport)) || sport != bpf_htons(53))
		return;
	m = bpf_sk_storage_get(&sock_meta, sk, 0, 0);
	if (!m)
		return;
	r = reserve_record(sizeof(*r) + PROCTAP_DNS_SNAPLEN, RECORD_DNS, m->owner_tgid, bpf_ktime_get_ns());
	if (!r)
		return;
	r->header.start_time_ns = m->owner_start_time_ns;
	cap = skb->len < PROCTAP_DNS_SNAPLEN ? skb->len : PROCTAP_DNS_SNAPLEN;
	if (cap > 0) {
		__u64 len = cap - 1;

		/* the length must be provably in [1, PROCTAP_DNS_SNAPLEN] on the register the call uses */
		asm volatile("%[len] &= %[mask]\n\t%[len] += 1" : [len] "+r"(len) : [mask] "i"(PROCTAP_DNS_SNAPLEN - 1));
		if (bpf_skb_load_bytes(skb, 0, (void *)(r + 1), len))
			cap = 0;
	}
	r->cookie = bpf_get_socket_cookie(skb);
	r->orig_len = skb->len;
	r->cap_len = cap;
	submit_record(r);
}

SEC("cgroup_skb/ingress")
int skb_ingress_dns(struct __sk_buff *skb)
{
	if (proctap_cfg.dns_names)
		copy_dns_response(skb);
	return 1;
}

/* ---- TCP retransmits of traced sockets ------------------------------------------------------- */

/*
 * tcp:tcp_retransmit_skb marks the moments a traced socket retransmits; the count itself is the kernel's
 * own per-socket total (tcp_sock.total_retrans, segments, what `ss -ti` and RetransSegs count), read
 * there. Counting the events instead would be wrong both ways: recent kernels (6.18 here) also fire it for
 * retransmits that failed (a third argument, err), and one event may resend several segments.
 * Fires in softirq (retransmit timer) as often as in process context: the owner comes from the socket.
 */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit_skb, struct sock *sk)
{
	__u64 cookie, total, *n;

	if (!proctap_cfg.retransmits || !bpf_sk_storage_get(&sock_meta, sk, 0, 0))
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	total = BPF_CORE_READ((struct tcp_sock *)sk, total_retrans);
	n = bpf_map_lookup_elem(&retransmits, &cookie);
	if (n) {
		if (*n < total)
			*n = total;
		return 0;
	}
	if (bpf_map_update_elem(&retransmits, &cookie, &total, BPF_NOEXIST)) {
		n = bpf_map_lookup_elem(&retransmits, &cookie); /* another CPU created it first */
		if (n && *n < total)
			*n = total;
		else if (!n)
			__sync_fetch_and_add(&stats.retransmit_table_full, 1);
	}
	return 0;
}
