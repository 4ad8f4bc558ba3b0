/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * The only ABI between the BPF programs and user space: ring-buffer records, map keys and values,
 * load-time configuration and in-kernel statistics. src/native/layout.generated.ts is derived from
 * this file by scripts/gen-layout.c; never hand-edit offsets on the TypeScript side.
 */
#ifndef PROCTAP_H
#define PROCTAP_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define PROCTAP_COMM_LEN 16
#define PROCTAP_FILENAME_LEN 128
#define PROCTAP_ARGS_LEN 512 /* power of two: the verifier bounds reads with a mask */
#define PROCTAP_MAX_SNAPLEN 262144 /* bytes of one packet a capture keeps at most (eBPF and libpcap) */
#define PROCTAP_SIZE_BUCKETS 24 /* log2 message sizes: 0 = empty, i = [2^(i-1), 2^i), last = 4 MiB and up */

enum record_type {
	RECORD_FORK = 1,         /* a traced process forked a child process (not a thread) */
	RECORD_EXEC = 2,         /* a traced process executed a new program */
	RECORD_EXIT = 3,         /* the last thread of a traced process exited */
	RECORD_FLOW_NEW = 4,     /* first successful send/recv of a (socket, process, remote) flow */
	RECORD_FLOW_UPDATE = 5,  /* cumulative flow counters, at most once per interval per flow */
	RECORD_SOCK_STATE = 6,   /* TCP state change of a traced socket */
	RECORD_SOCK_RELEASE = 7, /* a traced socket's last file reference was closed */
	RECORD_CALL = 8,         /* one send/recv call (detail mode only) */
	RECORD_PACKET = 9,       /* one captured IP packet (capture mode only) */
	RECORD_DNS = 10,         /* a DNS response (UDP from port 53) received by a traced socket */
	RECORD_DATA = 11,        /* the head of one call's payload (L7 view) or of TLS plaintext (uprobes) */
	RECORD_TYPE_MAX = 12,
};

enum flow_direction {
	DIRECTION_TX = 0,
	DIRECTION_RX = 1,
};

/* Header of every ring-buffer record. */
struct record_header {
	__u16 type;   /* enum record_type */
	__u16 cpu;
	__u32 tgid;   /* the process the record is about (owner for socket records) */
	__u64 ts_ns;  /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 start_time_ns; /* that process's task start time (CLOCK_MONOTONIC): with tgid, its identity
			      * across PID reuse; 0 when unknown (an attach target not seen in its own context yet) */
};

/* One flow: what one process exchanged with one remote endpoint over one socket. */
struct flow_key {
	__u64 cookie;     /* socket cookie: unique per socket for the kernel's lifetime */
	__u32 tgid;
	__u16 rport;      /* host byte order; 0 when the remote is unknown */
	__u8 family;      /* AF_INET or AF_INET6 */
	__u8 proto;       /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 raddr[16];   /* network byte order; IPv4 in the first 4 bytes */
	__u64 start_time_ns; /* the process's task start time: a reused tgid is another flow */
};

struct flow_counters {
	__u64 tx_bytes;
	__u64 rx_bytes;
	__u64 tx_calls;
	__u64 rx_calls;
};

struct flow_value {
	struct flow_counters counters;
	__u64 first_ns;
	__u64 last_ns;
	__u64 last_emit_ns;
	__u8 laddr[16];
	__u16 lport;      /* host byte order */
	__u8 l7_class;    /* enum l7_class: what the flow's first bytes looked like (L7 view; kernel only) */
	__u8 l7_probes;   /* calls looked at while l7_class was L7_UNKNOWN */
	__u32 l7_fd;      /* 1 + the fd a syscall of this flow's process was last found to hold this socket at
			   * (tracepoint backend, L7 view; kernel only): that fd is not looked up again */
	__u32 tx_sizes[PROCTAP_SIZE_BUCKETS]; /* calls per log2 size bucket */
	__u32 rx_sizes[PROCTAP_SIZE_BUCKETS];
};

/*
 * A flow's counters may also live in a slot of the `flow_slots` array (tracing backends): an array
 * lookup is inlined by the verifier where a hash lookup is a helper call. The slot of a flow is fixed by
 * its cookie (flow_slot_index). The program that creates a flow's `flows` entry claims its slot when it
 * is free, or held by a flow whose `flows` entry user space took (final: its socket is gone); from then
 * on every call of the flow counts there, its first call included; calls of other CPUs racing that first
 * call count in the `flows` entry: a flow's counters are the sum of both (user space adds them, and so
 * do its records). The L7 view reads a call's stream offset from the counters it adds to, so a call
 * racing a flow's first call may get an offset that overlaps — as concurrent calls on one socket may at
 * any time: the decoders resynchronise (docs/l7.md).
 * Only programs write slots (user space reads them), so no write of user space can race a claim.
 */
#define PROCTAP_FLOW_SLOTS_LOG2 12
#define PROCTAP_FLOW_SLOTS (1 << PROCTAP_FLOW_SLOTS_LOG2)
#define FLOW_SLOT_FREE 0
#define FLOW_SLOT_BUSY 1
#define FLOW_SLOT_READY 2
struct flow_slot {
	__u64 state;              /* FLOW_SLOT_*: key and value are the flow's once READY */
	struct flow_key key;
	struct flow_value value;  /* counters, last_ns, last_emit_ns, sizes; first_ns, laddr, lport: in `flows` */
};

/* RECORD_FLOW_NEW and RECORD_FLOW_UPDATE */
struct flow_record {
	struct record_header header;
	struct flow_key key;
	struct flow_counters counters;
	__u64 first_ns;
	__u8 laddr[16];
	__u16 lport;
	__u16 _pad[3];
};

struct fork_record {
	struct record_header header; /* tgid = child; start_time_ns = the child's task start time */
	__u32 ppid;                  /* parent process (tgid) */
	__u32 nspid;                 /* the child's pid in its own (innermost) PID namespace */
	char comm[PROCTAP_COMM_LEN];
};

struct exec_record {
	struct record_header header;
	__u32 args_len;              /* bytes of args[] used: NUL-separated argv, maybe truncated */
	__u32 args_truncated;
	__u32 ppid;                  /* parent process (tgid) */
	__u32 matched;               /* 1: not traced before, started matching --comm/--cgroup here */
	char comm[PROCTAP_COMM_LEN];
	char filename[PROCTAP_FILENAME_LEN];
	char args[PROCTAP_ARGS_LEN];
};

struct exit_record {
	struct record_header header;
	__u32 exit_code;             /* wait status: (code << 8) | signal */
	__u32 _pad;
};

struct sock_state_record {
	struct record_header header; /* tgid = socket owner */
	__u64 cookie;
	__u8 family;
	__u8 proto;
	__u8 old_state;
	__u8 new_state;
	__u16 lport;
	__u16 rport;
	__u32 error;                 /* sk_err at the transition (ECONNREFUSED, ECONNRESET, ETIMEDOUT...) */
	__u32 flags;                 /* SOCK_META_* of the socket */
	__u8 laddr[16];
	__u8 raddr[16];
};

struct sock_release_record {
	struct record_header header; /* tgid = socket owner */
	__u64 cookie;
};

struct call_record {
	struct record_header header;
	struct flow_key key;
	__u32 tid;
	__s32 bytes;
	__u8 direction;              /* enum flow_direction */
	__u8 _pad[7];
};

/* RECORD_PACKET: followed by cap_len bytes of the IP packet (header included). */
struct packet_record {
	struct record_header header; /* tgid = socket owner, 0 when unknown */
	__u64 cookie;                /* socket cookie, 0 when there is no socket */
	__u32 orig_len;
	__u32 cap_len;
	__u32 ifindex;
	__u8 direction;              /* enum flow_direction: TX egress, RX ingress */
	__u8 _pad[3];
};

/*
 * RECORD_DNS: followed by cap_len bytes of the IP packet (IP and UDP headers included), at most
 * PROCTAP_DNS_SNAPLEN: classic DNS answers (512 bytes of payload) fit whole, longer ones are cut.
 */
#define PROCTAP_DNS_SNAPLEN 1024 /* power of two: the verifier bounds the copy with a mask */
struct dns_record {
	struct record_header header; /* tgid = socket owner */
	__u64 cookie;
	__u32 orig_len;
	__u32 cap_len;
};

/*
 * RECORD_DATA: followed by cap_len bytes, the first bytes of what one call moved. The stream position
 * (offset) lets user space see a gap (a lost record, a call whose bytes were not in user memory) instead
 * of decoding across it: the next record of the same flow and direction should start where this one ended.
 * Socket records exist only for flows the kernel found worth decoding (enum l7_class, from their first
 * bytes; see bpf/l7.bpf.h); the class in a record is that filter's guess, user space decides from the bytes.
 */
#define PROCTAP_DATA_SNAPLEN 4096      /* default bytes copied per call */
#define PROCTAP_DATA_SNAPLEN_MAX 8192  /* power of two: the verifier bounds the copy with a mask */
#define PROCTAP_L7_PROBE_CALLS 4       /* calls of an unknown flow looked at before it is given up */
#define PROCTAP_L7_TLS_BYTES 16384     /* TLS flows: calls starting in the first 16 KiB of each direction */
enum data_source {
	DATA_SOURCE_SOCKET = 0,  /* a send/recv call on a traced socket */
	DATA_SOURCE_TLS = 1,     /* plaintext of a TLS library call (SSL_write/SSL_read) */
};
enum l7_class {
	L7_UNKNOWN = 0,          /* not classified yet (or, in a TLS plaintext record, not applicable) */
	L7_HTTP1 = 1,            /* a request method or "HTTP/1." */
	L7_HTTP2 = 2,            /* the client connection preface */
	L7_TLS = 3,              /* a TLS handshake record (ClientHello/ServerHello) */
	L7_DNS = 4,              /* a DNS header (UDP; TCP with its length prefix) */
	L7_REDIS = 5,            /* a RESP command array */
	L7_POSTGRES = 6,         /* a startup message, SSLRequest, or a Query/Parse message */
	L7_OTHER = 255,          /* none of those within PROCTAP_L7_PROBE_CALLS calls: never copied */
};
#define DATA_F_NOT_COPIED 1     /* the bytes were not in user memory (sendfile, splice): cap_len is 0 */
#define DATA_F_COPY_FAILED 2    /* reading the user buffer failed: cap_len is 0 */
#define DATA_F_NO_BUFFER 4      /* the call's user buffer is not known here (io_uring on the tracepoint
				 * backend, a syscall proctap does not decode): cap_len is 0 */
struct data_record {
	struct record_header header; /* tgid = the process that made the call */
	struct flow_key key;         /* the flow the bytes belong to (key.cookie 0: socket not known yet) */
	__u64 offset;                /* bytes of this flow and direction before this call (stream position) */
	__u32 len;                   /* bytes the call moved (its return value) */
	__u32 cap_len;               /* bytes that follow this record, <= len */
	__u32 tid;
	__u8 direction;              /* enum flow_direction */
	__u8 source;                 /* enum data_source */
	__u8 flags;                  /* DATA_F_* */
	__u8 l7_class;               /* enum l7_class: the kernel's guess for the flow (a hint) */
};

/* Per-socket storage (BPF_MAP_TYPE_SK_STORAGE): who owns a socket, for hooks without process context. */
#define SOCK_META_ACTIVE 1  /* connect()ed by a traced process */
#define SOCK_META_PASSIVE 2 /* accepted from a traced listener */
#define SOCK_META_SYN_RECV_PENDING 4 /* SYN_RECV record not emitted yet (kernel side only) */
struct sock_meta {
	__u32 owner_tgid;
	__u32 flags;
	__u64 start_ns;
	__u64 owner_start_time_ns; /* the owner's task start time (0 = unknown) */
};

/* A traced process, keyed by tgid. start_time_ns is 0 for an attach target until a hook runs in its context. */
struct traced_process {
	__u64 start_time_ns;
};

/* One process instance: tgid + task start time (key of the packets map). */
struct process_id {
	__u32 tgid;
	__u32 _pad;
	__u64 start_time_ns;
};

/*
 * A listening socket of an attach target that existed before the attach: it has no socket storage for
 * the connections it accepts to inherit, so user space names it here (from /proc) by where it listens;
 * the value is its owner (struct process_id). Bound to a specific address, or to any (addr all zero).
 */
struct listener_key {
	__u32 netns;      /* network namespace inode (what /proc/PID/ns/net names) */
	__u16 port;       /* host byte order */
	__u16 _pad;
	__u8 addr[16];    /* network byte order, IPv4 in the first 4 bytes; all zero = any address */
};

/* Per-process packet counters from the cgroup_skb hooks (key: owner process_id, tgid 0 = no owner found). */
struct packet_counters {
	__u64 tx_packets;
	__u64 rx_packets;
	__u64 tx_bytes;
	__u64 rx_bytes;
};

/* Remote address of the sendto()/recvfrom() under way on a thread, from the cgroup sock_addr hooks. */
struct pending_peer {
	__u64 cookie;
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 _pad[5];
};

/* Load-time configuration: the const volatile `proctap_cfg` in .rodata. */
struct proctap_config {
	__u64 interval_ns;          /* minimum time between two RECORD_FLOW_UPDATE of one flow */
	__u32 wakeup_bytes;         /* force a consumer wakeup once this much data is pending */
	__u8 follow_children;       /* add forked children to the traced set */
	__u8 detail_calls;          /* emit RECORD_CALL for every send/recv */
	__u8 count_unowned_packets; /* packets in the hooked cgroup without a traced owner count as unattributed */
	__u8 capture;               /* emit RECORD_PACKET for every packet of a traced socket */
	__u32 snaplen;              /* bytes captured per packet at most */
	__u32 wakeup_check_bytes;   /* L7 data records: bytes output on a CPU between two looks at what is pending */
	char match_comm[PROCTAP_COMM_LEN]; /* trace processes that exec with this comm ("" = none) */
	__u64 match_cgroup_id;             /* trace processes that exec inside this cgroup v2 (0 = none) */
	__u8 dns_names;             /* emit RECORD_DNS for DNS responses received by traced sockets */
	__u8 retransmits;           /* count TCP retransmits of traced sockets (map `retransmits`) */
	__u8 l7_data;               /* emit RECORD_DATA for the calls of flows that look like a decoded protocol */
	__u8 _pad2;
	__u32 data_snaplen;         /* bytes copied per call at most (<= PROCTAP_DATA_SNAPLEN_MAX) */
};

/* In-kernel statistics: the global `stats` in .bss. */
struct proctap_stats {
	__u64 lost_records[RECORD_TYPE_MAX]; /* ring-buffer reserve failures, by record type */
	__u64 flow_table_full;               /* send/recv calls not counted: flows map full */
	__u64 flow_table_full_bytes;
	__u64 traced_table_full;             /* children not added: traced map full */
	__u64 retransmit_table_full;         /* retransmits not counted: retransmits map full */
};

/*
 * TLS plaintext (bpf/tls.bpf.h): what a hooked TLS library function is, as the attach cookie of its
 * uprobes (bpf_get_attach_cookie), so one entry and one return program serve every library.
 */
#define TLS_FN_READ 1        /* reads plaintext into its 2nd argument (else it writes its 2nd argument) */
#define TLS_FN_EX 2          /* OpenSSL *_ex: returns 1 on success and the byte count through its 4th argument */
#define TLS_FN_SSIZE 4       /* returns ssize_t (GnuTLS), else int */
#define TLS_FN_HANDSHAKE 8   /* moves no plaintext: only ties the session to the socket it uses */
#define TLS_FN_DEFERRED 16   /* the library does its socket I/O outside its calls (memory BIOs: Node.js): a session
			      * not tied to a socket yet is tied to the thread's next socket write */

/* Load-time configuration of the TLS programs: the const volatile `tls_cfg` in section .rodata.tls. */
struct tls_config {
	__u32 enabled;  /* socket accounting tells TLS calls under way which socket they use */
	__u32 snaplen;  /* plaintext bytes copied per call, at most PROCTAP_DATA_SNAPLEN */
};

#endif /* PROCTAP_H */
