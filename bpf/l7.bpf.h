/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * L7 view, kernel side: RECORD_DATA, the head of each send/recv call of the flows whose first bytes look
 * like a protocol user space decodes (HTTP/1, HTTP/2, TLS handshakes, DNS, Redis, PostgreSQL). A flow
 * that shows none of them within PROCTAP_L7_PROBE_CALLS calls becomes L7_OTHER for good and costs one
 * compare per call from then on. The kernel only filters: user space decides from the bytes.
 *
 * Where the bytes are, per backend (the call has just moved them, so the user pages are resident):
 *   tracepoint: sock_{send,recv}_length fire inside sock_sendmsg/sock_recvmsg, in the caller's syscall;
 *               the buffer comes from that syscall's arguments (task pt_regs), used only when the
 *               syscall's fd is this very socket (io_uring, task work and in-kernel senders are not).
 *   fentry, kprobe: the protocol function's msghdr; its iterator has advanced past the bytes moved, so
 *               the head is found by walking back from where it stopped (no entry program, no saved
 *               state, nothing at all for flows that are not copied).
 * Entry point: l7_on_call(), called by account_io() with the flow's value before its counters move.
 */
#ifndef PROCTAP_L7_BPF_H
#define PROCTAP_L7_BPF_H

#include "proctap.bpf.h"

#define L7_MAX_SEGS 8 /* iovec segments gathered, and walked back over, per call */
#define L7_MSG_TRUNC 0x20
#define L7_MSG_ERRQUEUE 0x2000
#define L7_PF_IO_WORKER 0x00000010
#define L7_PF_KTHREAD 0x00200000

#if defined(__TARGET_ARCH_x86)
#define L7_NR_READ 0
#define L7_NR_WRITE 1
#define L7_NR_READV 19
#define L7_NR_WRITEV 20
#define L7_NR_SENDFILE 40
#define L7_NR_SENDTO 44
#define L7_NR_RECVFROM 45
#define L7_NR_SENDMSG 46
#define L7_NR_RECVMSG 47
#define L7_NR_SPLICE 275
#define L7_NR_RECVMMSG 299
#define L7_NR_SENDMMSG 307
#define L7_NR_PREADV2 327
#define L7_NR_PWRITEV2 328
#define L7_SYSCALL_NR(regs) ((regs)->orig_ax)
#define L7_SYSCALL_ARG0(regs) ((regs)->di)
#define L7_SYSCALL_ARG1(regs) ((regs)->si)
#define L7_SYSCALL_ARG2(regs) ((regs)->dx)
#elif defined(__TARGET_ARCH_arm64)
#define L7_NR_READ 63
#define L7_NR_WRITE 64
#define L7_NR_READV 65
#define L7_NR_WRITEV 66
#define L7_NR_SENDFILE 71
#define L7_NR_SENDTO 206
#define L7_NR_RECVFROM 207
#define L7_NR_SENDMSG 211
#define L7_NR_RECVMSG 212
#define L7_NR_SPLICE 76
#define L7_NR_RECVMMSG 243
#define L7_NR_SENDMMSG 269
#define L7_NR_PREADV2 286
#define L7_NR_PWRITEV2 287
#define L7_SYSCALL_NR(regs) ((regs)->syscallno)
#define L7_SYSCALL_ARG0(regs) ((regs)->orig_x0)
#define L7_SYSCALL_ARG1(regs) ((regs)->regs[1])
#define L7_SYSCALL_ARG2(regs) ((regs)->regs[2])
#endif

/* The user ABI's iovec and msghdr (fixed layouts: no CO-RE relocation wanted). */
struct l7_iovec {
	__u64 base;
	__u64 len;
};

struct l7_user_msghdr {
	__u64 name;
	__u32 namelen;
	__u32 _pad;
	__u64 iov;
	__u64 iovlen;
	__u64 control;
	__u64 controllen;
	__u32 flags;
	__u32 _pad2;
};

struct l7_user_mmsghdr {
	struct l7_user_msghdr hdr;
	__u32 len;
	__u32 _pad;
};

/* iov_iter's segment pointer was `iov` until 6.4 (then `__iov`). */
struct iov_iter___v61 {
	const struct iovec *iov;
} __attribute__((preserve_access_index));

struct msghdr___v61 {
	struct iov_iter___v61 msg_iter;
} __attribute__((preserve_access_index));

/*
 * A record is built here, then copied to the ring buffer at its exact size (bpf_ringbuf_output): iovec
 * segments land at variable offsets, which the verifier accepts only inside a buffer twice the largest
 * copy. `busy` keeps a preempted fentry program's record from being overwritten on its CPU.
 */
struct l7_scratch {
	struct data_record rec;
	__u8 data[2 * PROCTAP_DATA_SNAPLEN_MAX];
	__u32 busy;
	__u32 unchecked; /* bytes output on this CPU since the ring's fill was last looked at */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_scratch);
} l7_scratch SEC(".maps");

/* Tracepoint backend: threads inside sendmmsg()/recvmmsg(), the index of the message under way. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* thread id */
	__type(value, __u32);
} l7_mmsg SEC(".maps");

/* sys_enter of sendmmsg()/recvmmsg() in a traced thread: its messages are numbered from 0. */
static __always_inline void l7_mark_mmsg_call(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, zero = 0;

	if (is_traced(pid_tgid >> 32))
		bpf_map_update_elem(&l7_mmsg, &tid, &zero, BPF_ANY);
}

/* ---- classification: cheap signatures of the first bytes of a call --------------------------- */

#define L7_WORD(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

static __always_inline bool l7_is_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

/* An HTTP/1 request line's method or a status line ("HTTP/1."), an HTTP/2 preface. */
static __always_inline __u8 l7_classify_http(const __u8 *d, __u32 n)
{
	__u32 w = L7_WORD(d[0], d[1], d[2], d[3]);
	__u32 space = 0; /* index of the space after a method longer than 3 letters */

	if (w == L7_WORD('G', 'E', 'T', ' ') || w == L7_WORD('P', 'U', 'T', ' '))
		return L7_HTTP1;
	if (w == L7_WORD('P', 'O', 'S', 'T') || w == L7_WORD('H', 'E', 'A', 'D'))
		space = 4;
	else if (w == L7_WORD('P', 'A', 'T', 'C') || w == L7_WORD('T', 'R', 'A', 'C'))
		space = 5;
	else if (w == L7_WORD('D', 'E', 'L', 'E'))
		space = 6;
	else if (w == L7_WORD('O', 'P', 'T', 'I') || w == L7_WORD('C', 'O', 'N', 'N'))
		space = 7;
	else if (w == L7_WORD('H', 'T', 'T', 'P'))
		return n >= 6 && d[4] == '/' && d[5] == '1' ? L7_HTTP1 : L7_UNKNOWN;
	else if (w == L7_WORD('P', 'R', 'I', ' '))
		return n < 8 || L7_WORD(d[4], d[5], d[6], d[7]) == L7_WORD('*', ' ', 'H', 'T') ? L7_HTTP2 : L7_UNKNOWN;
	else
		return L7_UNKNOWN;
	/* the call may end inside the request line: the method's space is checked when it is there */
	if (space < n && d[space & 7] != ' ')
		return L7_UNKNOWN;
	return L7_HTTP1;
}

/* A TLS handshake record header: type 22, version 3.x, and (when there) ClientHello or ServerHello. */
static __always_inline bool l7_is_tls_handshake(const __u8 *d, __u32 n)
{
	if (n < 3 || d[0] != 0x16 || d[1] != 0x03 || d[2] > 0x04)
		return false;
	return n < 6 || d[5] == 1 || d[5] == 2;
}

/* A RESP command: an array of bulk strings, "*N\r\n$" or "*NN\r\n$". */
static __always_inline bool l7_is_resp(const __u8 *d, __u32 n)
{
	if (n < 5 || d[0] != '*' || d[1] < '1' || d[1] > '9')
		return false;
	if (d[2] == '\r')
		return d[3] == '\n' && d[4] == '$';
	return n >= 6 && l7_is_digit(d[2]) && d[3] == '\r' && d[4] == '\n' && d[5] == '$';
}

/*
 * PostgreSQL: a startup message (protocol 3.0), SSLRequest, GSSENCRequest or CancelRequest from the
 * start of a connection; or, on a connection seen later, a Query ('Q') or Parse ('P') message that the
 * call holds whole (a Query's text ends with NUL).
 */
static __always_inline bool l7_is_postgres(const __u8 *d, __u32 n, __u32 len)
{
	__u32 code, mlen;

	if (n >= 8 && d[0] == 0 && d[1] == 0) {
		code = L7_WORD(d[7], d[6], d[5], d[4]); /* big endian */
		mlen = (__u32)d[2] << 8 | d[3];
		if (code == 0x00030000 && mlen >= 8)
			return true;
		if ((code == 80877103 || code == 80877104) && mlen == 8)
			return true;
		if (code == 80877102 && mlen == 16)
			return true;
	}
	if (n < 5 || (d[0] != 'Q' && d[0] != 'P') || d[1] != 0)
		return false;
	mlen = (__u32)d[2] << 16 | (__u32)d[3] << 8 | d[4];
	if (mlen < 5 || mlen + 1 > len)
		return false;
	if (d[0] == 'Q' && mlen < n)
		return d[mlen & (2 * PROCTAP_DATA_SNAPLEN_MAX - 1)] == 0;
	return true;
}

/* A DNS header at d: opcode QUERY, one question; a query (QR 0) has no answer or authority records. */
static __always_inline bool l7_is_dns_header(const __u8 *d)
{
	if ((d[2] & 0x78) != 0 || d[4] != 0 || d[5] != 1)
		return false;
	if (d[2] & 0x80)
		return true;
	return d[6] == 0 && d[7] == 0 && d[8] == 0 && d[9] == 0;
}

/* The class of a flow from the first n copied bytes of a call that moved len bytes. */
static __always_inline __u8 l7_classify(const __u8 *d, __u32 n, __u32 len, __u8 proto)
{
	__u8 class;

	if (proto == IPPROTO_UDP)
		return n >= 12 && l7_is_dns_header(d) ? L7_DNS : L7_UNKNOWN;
	if (n < 3)
		return L7_UNKNOWN;
	if (l7_is_tls_handshake(d, n))
		return L7_TLS;
	if (n < 4)
		return L7_UNKNOWN;
	class = l7_classify_http(d, n);
	if (class != L7_UNKNOWN)
		return class;
	if (l7_is_resp(d, n))
		return L7_REDIS;
	if (l7_is_postgres(d, n, len))
		return L7_POSTGRES;
	/* DNS over TCP: the 2-byte length prefix and the header in one call */
	if (n >= 14 && ((__u32)d[0] << 8 | d[1]) >= 12 && ((__u32)d[0] << 8 | d[1]) + 2 <= len && l7_is_dns_header(d + 2))
		return L7_DNS;
	return L7_UNKNOWN;
}

/* ---- copying the head of a call ------------------------------------------------------------- */

/*
 * n (1..PROCTAP_DATA_SNAPLEN_MAX) bytes of user memory to data + off (off < PROCTAP_DATA_SNAPLEN_MAX).
 * Both bounds must hold on the very registers the helper call uses: made in asm, out of clang's reach.
 */
static __always_inline long l7_copy(__u8 *data, __u64 off, __u64 n, __u64 src)
{
	n -= 1;
	asm volatile("%[off] &= %[mask]\n\t%[n] &= %[mask]\n\t%[n] += 1"
		     : [off] "+r"(off), [n] "+r"(n)
		     : [mask] "i"(PROCTAP_DATA_SNAPLEN_MAX - 1));
	return bpf_probe_read_user(data + off, n, (const void *)src);
}

/*
 * Up to cap bytes from the segments of an iovec array (in user memory on the tracepoint backend, kernel
 * memory behind a msghdr), skip bytes into the first one. Returns the bytes copied, or -1 if a read failed.
 */
static __always_inline int l7_gather_iov(__u8 *data, __u64 iov, __u64 nr_segs, __u64 skip, __u32 cap, const bool user_iov)
{
	struct l7_iovec segs[L7_MAX_SEGS] = {};
	__u64 off = 0, nr, size;

	if (!nr_segs)
		return 0;
	nr = nr_segs < L7_MAX_SEGS ? nr_segs : L7_MAX_SEGS;
	if (user_iov) {
		/* a syscall's vector: its segments in one read (1..L7_MAX_SEGS, the size bounded on its register) */
		size = (nr - 1) * sizeof(struct l7_iovec);
		asm volatile("%[size] &= %[mask]\n\t%[size] += %[seg]"
			     : [size] "+r"(size)
			     : [mask] "i"((L7_MAX_SEGS - 1) * sizeof(struct l7_iovec)), [seg] "i"(sizeof(struct l7_iovec)));
		if (bpf_probe_read_user(segs, size, (const void *)iov))
			return -1;
	}
	for (int i = 0; i < L7_MAX_SEGS; i++) {
		struct l7_iovec seg;
		__u64 n;

		if (off >= cap || i >= nr)
			break;
		/* a kernel vector walked back over has no known end: one segment at a time */
		if (user_iov)
			seg = segs[i];
		else if (bpf_probe_read_kernel(&seg, sizeof(seg), (const void *)(iov + i * sizeof(seg))))
			return -1;
		if (i == 0) {
			if (skip > seg.len)
				return -1;
			seg.base += skip;
			seg.len -= skip;
		}
		n = seg.len < cap - off ? seg.len : cap - off;
		if (!n)
			continue;
		if (l7_copy(data, off, n, seg.base))
			return -1;
		off += n;
	}
	return off;
}

/*
 * fentry/kprobe: the head of what a protocol function moved through msg, asked bytes at entry. The
 * iterator now stands past the bytes moved: `asked - count` of them, which end where it stands.
 * Sets *flags for bytes that were not in user memory (kernel vectors, pages: sendfile/splice on 6.5+).
 */
static __always_inline int l7_gather_msg(__u8 *data, struct msghdr *msg, __u64 asked, __u32 cap, __u8 *flags)
{
	__u8 type = BPF_CORE_READ(msg, msg_iter.iter_type);
	__u64 left = BPF_CORE_READ(msg, msg_iter.count);
	__u64 pos = BPF_CORE_READ(msg, msg_iter.iov_offset);
	__u64 moved, iov, avail, remaining;

	if (left > asked)
		return -1;
	moved = asked - left;
	if (cap > moved)
		cap = moved;
	if (bpf_core_enum_value_exists(enum iter_type, ITER_UBUF) && type == bpf_core_enum_value(enum iter_type, ITER_UBUF)) {
		if (!cap)
			goto not_copied;
		if (pos < moved)
			return -1;
		return l7_copy(data, 0, cap, (__u64)BPF_CORE_READ(msg, msg_iter.ubuf) + pos - moved) ? -1 : (int)cap;
	}
	if (type != bpf_core_enum_value(enum iter_type, ITER_IOVEC))
		goto not_copied;
	if (!cap)
		goto not_copied;
	if (bpf_core_field_exists(((struct msghdr___v61 *)msg)->msg_iter.iov))
		iov = (__u64)BPF_CORE_READ((struct msghdr___v61 *)msg, msg_iter.iov);
	else
		iov = (__u64)BPF_CORE_READ(msg, msg_iter.__iov);
	/* walk back over the segments the call consumed, to the one where it started */
	avail = pos;
	remaining = moved;
	for (int i = 0; i < L7_MAX_SEGS; i++) {
		if (remaining <= avail)
			return l7_gather_iov(data, iov, L7_MAX_SEGS, avail - remaining, cap, false);
		remaining -= avail;
		iov -= sizeof(struct l7_iovec);
		if (bpf_probe_read_kernel(&avail, sizeof(avail), (const void *)(iov + 8)))
			return -1;
	}
	return -1;
not_copied:
	*flags = DATA_F_NOT_COPIED;
	return 0;
}

/* The syscall a tracepoint-backend call runs in: its number and arguments, and mmsg's message index. */
struct l7_syscall {
	long nr;
	__u64 fd, arg1, arg2;
	__s64 mmsg_index; /* -1: not in sendmmsg()/recvmmsg(), or its start was not seen */
};

/*
 * Is fd, in the current process, the file of this socket? (the syscall's buffer is this call's) Typed
 * loads from the task (tp_btf), one helper for the fd table's slot. A flow remembers the fd it was last
 * found at (v->l7_fd): its process's later calls through that fd are not looked up again. For that fd to
 * hold another file while this socket lives on, it must have been closed and reused while the socket
 * stayed open elsewhere (a dup, a passed fd) — and a syscall on that other file would then have to move
 * this socket's bytes, which only io_uring, splice and sendfile do (told apart by the syscall number).
 */
static __always_inline bool l7_fd_is_socket(__u64 fd, struct sock *sk, struct flow_value *v)
{
	struct task_struct *task;
	struct fdtable *fdt;
	struct file **fds, *file = NULL;
	struct socket *sock;

	if (fd + 1 == v->l7_fd)
		return true;
	task = bpf_get_current_task_btf();
	if (!task->files)
		return false;
	fdt = task->files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return false;
	fds = fdt->fd;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]))
		return false;
	sock = sk->sk_socket;
	if (!file || !sock || file != sock->file)
		return false;
	if (fd < 0xfffffffe)
		v->l7_fd = fd + 1;
	return true;
}

/*
 * Tracepoint backend: the head of the call from the syscall's own arguments. A syscall moves its bytes
 * in one sock_sendmsg/sock_recvmsg, except sendmmsg()/recvmmsg() (one per message: the index counts
 * them) and sendfile()/splice() (not in user memory).
 */
static __always_inline int l7_gather_syscall(__u8 *data, struct sock *sk, struct flow_value *v, const struct l7_syscall *sc,
					     __u32 cap, __u8 *flags)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct l7_user_msghdr mh;
	__u64 hdr;

	/* io_uring workers (their pt_regs are not a syscall's) and kernel threads */
	if (task->flags & (L7_PF_IO_WORKER | L7_PF_KTHREAD))
		goto no_buffer;
	switch (sc->nr) {
	case L7_NR_SENDFILE:
	case L7_NR_SPLICE:
		*flags = DATA_F_NOT_COPIED;
		return 0;
	case L7_NR_WRITE:
	case L7_NR_READ:
	case L7_NR_SENDTO:
	case L7_NR_RECVFROM:
	case L7_NR_WRITEV:
	case L7_NR_READV:
	case L7_NR_PWRITEV2:
	case L7_NR_PREADV2:
	case L7_NR_SENDMSG:
	case L7_NR_RECVMSG:
	case L7_NR_SENDMMSG:
	case L7_NR_RECVMMSG:
		break;
	default:
		goto no_buffer;
	}
	if (!l7_fd_is_socket(sc->fd, sk, v))
		goto no_buffer;
	switch (sc->nr) {
	case L7_NR_WRITE:
	case L7_NR_READ:
	case L7_NR_SENDTO:
	case L7_NR_RECVFROM:
		/* a datagram cut to the buffer (MSG_TRUNC) moved no more than the buffer holds */
		if (cap > sc->arg2)
			cap = sc->arg2;
		if (!cap)
			return 0;
		return l7_copy(data, 0, cap, sc->arg1) ? -1 : (int)cap;
	case L7_NR_WRITEV:
	case L7_NR_READV:
	case L7_NR_PWRITEV2:
	case L7_NR_PREADV2:
		return l7_gather_iov(data, sc->arg1, sc->arg2, 0, cap, true);
	case L7_NR_SENDMSG:
	case L7_NR_RECVMSG:
		hdr = sc->arg1;
		break;
	default:
		if (sc->mmsg_index < 0 || sc->mmsg_index >= sc->arg2)
			goto no_buffer;
		hdr = sc->arg1 + (__u64)sc->mmsg_index * sizeof(struct l7_user_mmsghdr);
	}
	if (bpf_probe_read_user(&mh, sizeof(mh), (const void *)hdr))
		return -1;
	return l7_gather_iov(data, mh.iov, mh.iovlen, 0, cap, true);
no_buffer:
	*flags = DATA_F_NO_BUFFER;
	return 0;
}

/* Tracepoint backend: the current syscall, and the next message index when it is sendmmsg()/recvmmsg(). */
static __always_inline void l7_current_syscall(struct l7_syscall *sc, __u32 tid)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u32 *index;

	sc->nr = L7_SYSCALL_NR(regs);
	sc->fd = L7_SYSCALL_ARG0(regs);
	sc->arg1 = L7_SYSCALL_ARG1(regs);
	sc->arg2 = L7_SYSCALL_ARG2(regs);
	sc->mmsg_index = -1;
	if (sc->nr != L7_NR_SENDMMSG && sc->nr != L7_NR_RECVMMSG)
		return;
	index = bpf_map_lookup_elem(&l7_mmsg, &tid);
	if (index) {
		sc->mmsg_index = *index;
		*index += 1;
	}
}

/* Whether this call of a flow of that class is copied (TLS: only the handshake, at the start). */
static __always_inline bool l7_wanted(__u8 class, __u64 offset)
{
	return class != L7_TLS || offset < PROCTAP_L7_TLS_BYTES;
}

/*
 * One successful send/recv of a traced flow (account_io(), before the flow's counters move). Unknown
 * flows are looked at (PROCTAP_L7_PROBE_CALLS calls at most); candidates get a RECORD_DATA per call.
 * msg/asked: the fentry/kprobe call's msghdr and the bytes it was asked to move (NULL: tracepoint, or
 * sendpage, whose bytes are pages).
 */
static __always_inline void l7_on_call(struct sock *sk, struct flow_value *v, const struct flow_key *key, int bytes,
				       __u8 direction, int msg_flags, struct msghdr *msg, __u64 asked,
				       const bool tracing_ctx, const bool sendpage, __u32 tid, __u64 now)
{
	const bool from_syscall = tracing_ctx && !msg && !sendpage;
	struct l7_syscall sc = {};
	__u8 class = v->l7_class, flags = 0, found;
	__u64 offset = direction == DIRECTION_TX ? v->counters.tx_bytes : v->counters.rx_bytes;
	struct l7_scratch *s;
	__u32 zero = 0, cap, size;
	__u64 wake;
	int got;

	if (class == L7_OTHER && (!from_syscall || key->proto != IPPROTO_UDP))
		return;
	if (from_syscall) {
		/* every message of a sendmmsg()/recvmmsg() takes its index, whatever its flow (UDP: per remote) */
		l7_current_syscall(&sc, tid);
		if (class == L7_OTHER)
			return;
	}
	if (!l7_wanted(class, offset))
		return;
	if (bytes == 0) {
		/* an empty datagram: a message of a candidate flow, nothing to look at in an unknown one */
		if (class == L7_UNKNOWN)
			return;
		cap = 0;
	} else {
		cap = bytes < proctap_cfg.data_snaplen ? bytes : proctap_cfg.data_snaplen;
		if (cap > PROCTAP_DATA_SNAPLEN_MAX)
			cap = PROCTAP_DATA_SNAPLEN_MAX;
	}
	s = bpf_map_lookup_elem(&l7_scratch, &zero);
	if (!s || s->busy)
		return;
	s->busy = 1;
	got = 0;
	if (cap) {
		if (sendpage || (direction == DIRECTION_RX && (msg_flags & L7_MSG_ERRQUEUE)) ||
		    (direction == DIRECTION_RX && key->proto == IPPROTO_TCP && (msg_flags & L7_MSG_TRUNC)))
			flags = DATA_F_NOT_COPIED; /* pages; an error queue is no stream; TCP MSG_TRUNC discards */
		else if (from_syscall)
			got = l7_gather_syscall(s->data, sk, v, &sc, cap, &flags);
		else if (msg)
			got = l7_gather_msg(s->data, msg, asked, cap, &flags);
		else
			flags = DATA_F_NO_BUFFER;
		if (got < 0) {
			flags = DATA_F_COPY_FAILED;
			got = 0;
		}
	}
	cap = got;
	if (class == L7_UNKNOWN) {
		found = cap ? l7_classify(s->data, cap, bytes, key->proto) : L7_UNKNOWN;
		if (found == L7_UNKNOWN) {
			if (++v->l7_probes >= PROCTAP_L7_PROBE_CALLS)
				v->l7_class = L7_OTHER;
			goto out;
		}
		class = found;
		v->l7_class = class;
	} else if (class == L7_POSTGRES && l7_is_tls_handshake(s->data, cap)) {
		/* SSLRequest answered 'S': the rest of the connection is TLS */
		class = L7_TLS;
		v->l7_class = class;
	}
	s->rec.header.type = RECORD_DATA;
	s->rec.header.cpu = bpf_get_smp_processor_id();
	s->rec.header.tgid = key->tgid;
	s->rec.header.ts_ns = now;
	s->rec.header.start_time_ns = key->start_time_ns;
	s->rec.key = *key;
	s->rec.offset = offset;
	s->rec.len = bytes;
	s->rec.cap_len = cap;
	s->rec.tid = tid;
	s->rec.direction = direction;
	s->rec.source = DATA_SOURCE_SOCKET;
	s->rec.flags = flags;
	s->rec.l7_class = class;
	size = sizeof(s->rec) + cap;
	/* the size, too, must be provably inside the scratch value on the register the call uses */
	asm volatile("%[size] &= %[mask]" : [size] "+r"(size) : [mask] "i"(2 * PROCTAP_DATA_SNAPLEN_MAX - 1));
	/* the ring's fill is looked at every wakeup_check_bytes of this CPU's records, not at each one */
	wake = BPF_RB_NO_WAKEUP;
	s->unchecked += size;
	if (s->unchecked >= proctap_cfg.wakeup_check_bytes) {
		s->unchecked = 0;
		if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= proctap_cfg.wakeup_bytes)
			wake = BPF_RB_FORCE_WAKEUP;
	}
	if (bpf_ringbuf_output(&events, &s->rec, size, wake))
		__sync_fetch_and_add(&stats.lost_records[RECORD_DATA], 1);
out:
	s->busy = 0;
}

#endif /* PROCTAP_L7_BPF_H */
