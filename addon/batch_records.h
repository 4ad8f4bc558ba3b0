/* SPDX-License-Identifier: MIT */
/*
 * Records that the addon's own threads hand to JS (no kernel program involved): proc connector events
 * and the header of each libpcap packet. Plain C, so scripts/gen-layout.c prints their offsets into
 * src/native/layout.generated.ts next to those of bpf/proctap.h: the TypeScript decoders never use
 * literal offsets. A batch is a run of these, each 8-byte aligned.
 */
#ifndef PROCTAP_BATCH_RECORDS_H
#define PROCTAP_BATCH_RECORDS_H

#include <stdint.h>

enum proc_event_kind {
	PROC_EVENT_KIND_FORK = 1,
	PROC_EVENT_KIND_EXEC = 2,
	PROC_EVENT_KIND_EXIT = 3,
	PROC_EVENT_KIND_OVERFLOW = 4, /* the socket's receive queue overflowed (ENOBUFS): events were lost */
};

/* One proc connector event (fork of a process or thread, exec, exit). */
struct proc_event_record {
	uint32_t kind; /* enum proc_event_kind */
	uint32_t pid;
	uint32_t tgid;
	uint32_t parent_pid;
	uint32_t parent_tgid;
	uint32_t exit_code;   /* wait status, exit only */
	uint32_t exit_signal; /* exit only */
	uint32_t _reserved;
	uint64_t timestamp_ns; /* CLOCK_MONOTONIC when the addon read it */
};

/* Before each packet of a libpcap batch; cap_len bytes follow, then zero padding to 8. */
struct libpcap_packet_header {
	uint64_t timestamp_ns; /* CLOCK_REALTIME, nanosecond precision */
	uint32_t cap_len;
	uint32_t orig_len;
};

#endif /* PROCTAP_BATCH_RECORDS_H */
