/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * TLS plaintext from uprobes on the TLS library's own read/write functions (OpenSSL SSL_read/SSL_write and
 * their _ex forms, GnuTLS gnutls_record_recv/send), for traced processes only. User space attaches one
 * entry and one return program to every function, with an attach cookie (TLS_FN_* in proctap.h) saying
 * what the function is; uprobes are per file, so the programs run for every process that maps the file
 * and filter on the `traced` map first.
 *
 * Which connection: inside SSL_read/SSL_write the library reads/writes its socket in the same thread, so
 * the socket accounting (account_io) tells the call under way on its thread which flow it used
 * (tls_note_socket); the session (the SSL pointer) keeps that flow for the calls the library serves from
 * its own buffer without socket I/O. The handshake functions are hooked too, only to tie the session to
 * its socket before the first byte of plaintext.
 */
#ifndef PROCTAP_TLS_BPF_H
#define PROCTAP_TLS_BPF_H

#include "proctap.bpf.h"

const volatile struct tls_config tls_cfg SEC(".rodata.tls") = {
	.enabled = 0,
	.snaplen = PROCTAP_DATA_SNAPLEN,
};

/* The TLS call under way on a thread, and a session waiting for its socket (TLS_FN_DEFERRED). */
struct tls_thread {
	__u64 ssl;
	__u64 buf;
	__u64 size_ptr;       /* TLS_FN_EX: where the library stores the byte count */
	__u64 fn;             /* TLS_FN_* of the function */
	struct flow_key key;  /* the socket the library used inside this call (key.cookie 0: none) */
	__u64 pending_ssl;    /* TLS_FN_DEFERRED: session to tie to this thread's next socket write */
	__u8 in_call;
	__u8 _pad[7];
};

/* LRU: an entry left by a thread that exited inside a call, or whose deferred socket never came, ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* thread id */
	__type(value, struct tls_thread);
} tls_threads SEC(".maps");

/* A TLS session (the library's own pointer) of a traced process. */
struct tls_session_key {
	__u64 ssl;
	__u32 tgid;
	__u32 _pad;
};

struct tls_session {
	struct flow_key key;  /* its socket's flow (key.cookie 0: not known yet) */
	__u64 offset[2];      /* plaintext bytes before the next call, per direction */
};

/* LRU: sessions never freed through a hooked function (a library without SSL_free hooked) age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tls_session_key);
	__type(value, struct tls_session);
} tls_sessions SEC(".maps");

/*
 * Entries of tls_threads (calls under way, sessions waiting for their socket): while there are none, the
 * socket accounting skips its lookup, so traffic without TLS pays one load. Its own section keeps .bss
 * (the stats user space reads by offset) as it is.
 */
__u64 tls_thread_entries SEC(".data.tls") = 0;

static __always_inline void tls_thread_gone(__u32 tid)
{
	if (!bpf_map_delete_elem(&tls_threads, &tid))
		__sync_fetch_and_add(&tls_thread_entries, -1);
}

/* Called by account_io() for every counted send/recv of a traced process. */
static __always_inline void tls_note_socket(__u32 tid, const struct flow_key *key, __u8 direction)
{
	struct tls_session_key sk = {};
	struct tls_session *s;
	struct tls_thread *t;

	if (!tls_cfg.enabled || !tls_thread_entries || key->proto != IPPROTO_TCP)
		return;
	t = bpf_map_lookup_elem(&tls_threads, &tid);
	if (!t)
		return;
	if (t->in_call) {
		t->key = *key;
		return;
	}
	if (!t->pending_ssl || direction != DIRECTION_TX)
		return;
	sk.ssl = t->pending_ssl;
	sk.tgid = key->tgid;
	s = bpf_map_lookup_elem(&tls_sessions, &sk);
	if (s && !s->key.cookie)
		s->key = *key;
	tls_thread_gone(tid);
}

static __always_inline int tls_enter(struct pt_regs *ctx, void *ssl, void *buf, void *size_ptr)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__u64 fn = bpf_get_attach_cookie(ctx);
	struct tls_thread *t;

	if (!is_traced(id >> 32))
		return 0;
	t = bpf_map_lookup_elem(&tls_threads, &tid);
	if (!t) {
		struct tls_thread init = {};

		if (!bpf_map_update_elem(&tls_threads, &tid, &init, BPF_NOEXIST))
			__sync_fetch_and_add(&tls_thread_entries, 1);
		t = bpf_map_lookup_elem(&tls_threads, &tid);
		if (!t)
			return 0;
	}
	/* A call that never returned (a uretprobe missed) is simply replaced: OpenSSL's calls do not nest. */
	t->ssl = (__u64)ssl;
	t->buf = (__u64)buf;
	t->size_ptr = (fn & TLS_FN_EX) ? (__u64)size_ptr : 0;
	t->fn = fn;
	__builtin_memset(&t->key, 0, sizeof(t->key));
	t->in_call = 1;
	return 0;
}

static __always_inline void fill_tls_record(struct data_record *r, const struct flow_key *key, __u32 n, __u32 cap,
					    __u8 flags, __u64 offset, __u8 direction, __u32 tid)
{
	r->header.type = RECORD_DATA;
	r->header.cpu = bpf_get_smp_processor_id();
	r->header.tgid = key->tgid;
	r->header.ts_ns = bpf_ktime_get_ns();
	r->header.start_time_ns = key->start_time_ns;
	r->key = *key;
	r->offset = offset;
	r->len = n;
	r->cap_len = flags ? 0 : cap;
	r->tid = tid;
	r->direction = direction;
	r->source = DATA_SOURCE_TLS;
	r->flags = flags;
	r->l7_class = L7_UNKNOWN; /* the kernel classifies sockets, not TLS sessions */
}

/*
 * One record of plaintext: a ring-buffer record of a constant size class (reserve needs a constant size),
 * then the bytes. The copy's length must be provably in [1, class] on the very register the call uses,
 * which clang does not keep through its own range reasoning: bound it in asm, as the packet capture does.
 * Each class reserves, fills and submits on its own: with one shared tail, clang merged the paths so
 * that 6.1's verifier saw a reservation that could reach the "lost" branch unreleased.
 */
#define TLS_DATA_CLASS(n)                                                                            \
	if (cap <= (n)) {                                                                            \
		struct data_record *r = bpf_ringbuf_reserve(&events, sizeof(*r) + (n), 0);           \
		__u8 flags = 0;                                                                      \
		if (!r)                                                                              \
			goto lost;                                                                   \
		if (cap > 0) {                                                               \
			__u64 len = cap - 1;                                                         \
			asm volatile("%[len] &= %[mask]\n\t%[len] += 1"                              \
				     : [len] "+r"(len)                                                \
				     : [mask] "i"((n) - 1));                                          \
			if (bpf_probe_read_user((void *)(r + 1), len, (void *)buf))                  \
				flags = DATA_F_COPY_FAILED;                                          \
		}                                                                                    \
		fill_tls_record(r, key, n_bytes, cap, flags, offset, direction, tid);                \
		submit_record(r);                                                                    \
		return;                                                                              \
	}

static __always_inline void emit_tls_data(const struct flow_key *key, __u64 buf, __u32 n_bytes, __u64 offset,
					  __u8 direction, __u32 tid)
{
	__u32 cap = n_bytes < tls_cfg.snaplen ? n_bytes : tls_cfg.snaplen;

	if (cap > PROCTAP_DATA_SNAPLEN)
		cap = PROCTAP_DATA_SNAPLEN;
	TLS_DATA_CLASS(256)
	TLS_DATA_CLASS(1024)
	TLS_DATA_CLASS(PROCTAP_DATA_SNAPLEN)
lost:
	__sync_fetch_and_add(&stats.lost_records[RECORD_DATA], 1);
}

/* The byte count of a returning call, from its return value or (_ex) the count it stored; 0: no data. */
static __always_inline __u32 tls_result(struct pt_regs *ctx, __u64 fn, __u64 size_ptr)
{
	if (fn & TLS_FN_EX) {
		__u64 n = 0;

		if ((int)PT_REGS_RC(ctx) != 1 || bpf_probe_read_user(&n, sizeof(n), (void *)size_ptr))
			return 0;
		return n > 0x7fffffff ? 0 : (__u32)n;
	}
	if (fn & TLS_FN_SSIZE) {
		long ret = PT_REGS_RC(ctx);

		return ret > 0 && ret <= 0x7fffffff ? (__u32)ret : 0;
	}
	/* an int in a 64-bit register: its upper half is not defined */
	int ret = (int)PT_REGS_RC(ctx);

	return ret > 0 ? (__u32)ret : 0;
}

static __always_inline int tls_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, tgid = id >> 32, n;
	struct tls_session_key sk = {};
	struct traced_process *tp;
	struct tls_session *s;
	struct tls_thread *t;
	struct flow_key key = {};
	__u64 fn, buf, size_ptr, offset;
	bool wait_for_socket = false;
	__u8 direction;

	t = bpf_map_lookup_elem(&tls_threads, &tid);
	if (!t || !t->in_call)
		return 0;
	t->in_call = 0;
	fn = t->fn;
	buf = t->buf;
	size_ptr = t->size_ptr;
	sk.ssl = t->ssl;
	sk.tgid = tgid;
	tp = traced_current(tgid);
	if (!tp)
		goto done;
	s = bpf_map_lookup_elem(&tls_sessions, &sk);
	if (!s) {
		struct tls_session init = {};

		bpf_map_update_elem(&tls_sessions, &sk, &init, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&tls_sessions, &sk);
		if (!s)
			goto done;
	}
	/* the socket used inside this very call is the session's: exact, and it wins over a deferred guess */
	if (t->key.cookie)
		s->key = t->key;
	else if (!s->key.cookie && (fn & TLS_FN_DEFERRED))
		wait_for_socket = true;
	if (fn & TLS_FN_HANDSHAKE)
		goto done;
	n = tls_result(ctx, fn, size_ptr);
	if (!n)
		goto done;
	if (s->key.cookie) {
		key = s->key;
	} else {
		key.tgid = tgid;
		key.start_time_ns = tp->start_time_ns;
	}
	direction = (fn & TLS_FN_READ) ? DIRECTION_RX : DIRECTION_TX;
	offset = s->offset[direction & 1];
	s->offset[direction & 1] = offset + n;
	emit_tls_data(&key, buf, n, offset, direction, tid);
done:
	if (wait_for_socket)
		t->pending_ssl = sk.ssl;
	else if (!t->pending_ssl)
		tls_thread_gone(tid);
	return 0;
}

/* SSL_free / gnutls_deinit: a later session at the same address starts over (its own socket, offset 0). */
static __always_inline int tls_free(void *ssl)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_session_key sk = {};

	if (!is_traced(id >> 32))
		return 0;
	sk.ssl = (__u64)ssl;
	sk.tgid = id >> 32;
	bpf_map_delete_elem(&tls_sessions, &sk);
	return 0;
}

/*
 * Each program twice: for one uprobe per function (perf event links, every kernel with uprobes) and for
 * one uprobe_multi link per file (kernel 6.6+; user space sets their expected attach type). Which one is
 * attached is user space's choice: detaching a perf event uprobe waits for an RCU grace period under a
 * global mutex (about 100 ms each on 6.18), a multi link waits once for all of its functions.
 */
SEC("uprobe")
int BPF_KPROBE(tls_enter_probe, void *ssl, void *buf, __u64 num, void *size_ptr)
{
	return tls_enter(ctx, ssl, buf, size_ptr);
}

SEC("uretprobe")
int BPF_KRETPROBE(tls_return_probe)
{
	return tls_return(ctx);
}

SEC("uprobe")
int BPF_KPROBE(tls_free_probe, void *ssl)
{
	return tls_free(ssl);
}

SEC("uprobe")
int BPF_KPROBE(tls_enter_multi, void *ssl, void *buf, __u64 num, void *size_ptr)
{
	return tls_enter(ctx, ssl, buf, size_ptr);
}

SEC("uprobe")
int BPF_KPROBE(tls_return_multi)
{
	return tls_return(ctx);
}

SEC("uprobe")
int BPF_KPROBE(tls_free_multi, void *ssl)
{
	return tls_free(ssl);
}

#endif /* PROCTAP_TLS_BPF_H */
