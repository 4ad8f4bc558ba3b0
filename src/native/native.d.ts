// SPDX-License-Identifier: MIT
// The whole native surface of addon/proctap.node, typed once. Only src/native/index.ts loads the addon.
// The addon is mechanism only: handles and raw bytes; every policy decision lives in TypeScript.

/** Errors thrown by the addon carry the errno and its symbolic code (e.g. "EPERM"). */
export interface NativeError extends Error {
  errno: number;
  code: string;
}

export interface MapDump {
  /** Number of entries. */
  count: number;
  keySize: number;
  /** Per-CPU maps: one 8-byte-aligned slot per possible CPU, i.e. roundup(value_size, 8) * nrPossibleCpus. */
  valueSize: number;
  /** count * keySize bytes, entry i at i * keySize. */
  keys: Buffer;
  /** count * valueSize bytes, entry i at i * valueSize. */
  values: Buffer;
}

export interface RingBufferOptions {
  /** Upper bound on delivery latency: the poll thread consumes at least this often (ms). */
  pollMs: number;
  /** Batches waiting for JS before the poll thread blocks (back-pressure into the kernel ring). */
  maxQueuedBatches: number;
  /** A batch is delivered before it would grow past this many bytes (4096 .. 2^30). */
  maxBatchBytes: number;
  /** Records of `recordType` carrying a packet are filtered on the poll thread: rejected ones never reach JS. */
  packetFilter?: { filter: PacketFilter; recordType: number; dataOffset: number; capLenOffset: number; origLenOffset: number };
}

/**
 * One libbpf bpf_object. Created by openObject(); programs/maps are named as in the ELF
 * (internal maps as ".bss", ".rodata", ".data").
 */
export interface BpfObject {
  programs(): string[];
  maps(): string[];
  /** bpf_program__set_autoload; before load(). */
  setAutoload(program: string, autoload: boolean): void;
  /** bpf_map__set_max_entries; before load(). */
  setMapMaxEntries(map: string, maxEntries: number): void;
  /** A copy of the map's data: before load the initial value; after load, for mmapable maps
   *  (.bss, .data, .rodata), the live contents. */
  getInitialValue(map: string): Buffer;
  /** bpf_map__set_initial_value; before load(). Size must match. */
  setInitialValue(map: string, value: Buffer): void;
  /** bpf_object__load. On failure throws NativeError whose message ends with the tail of the verifier log. */
  load(): void;
  /** bpf_program__attach (section-defined attach point). Returns a link handle. */
  attach(program: string): number;
  /** bpf_program__attach_cgroup on the cgroup v2 directory at cgroupPath. Returns a link handle. */
  attachCgroup(program: string, cgroupPath: string): number;
  /**
   * bpf_program__attach_uprobe_opts with func_name: a uprobe (or with retprobe a uretprobe) on `symbol`, which
   * libbpf looks up in the ELF symbol tables of binaryPath (.dynsym, then .symtab). The kernel resolves the
   * path to its file (a /proc/PID/root/... path reaches another mount namespace) and probes that file in
   * every process mapping it, or only in `pid` (default -1: every process). `cookie` is what
   * bpf_get_attach_cookie() returns in the program. Returns a link handle. Errors carry errno and code
   * (ENOENT: no such symbol or file).
   */
  attachUprobe(program: string, binaryPath: string, symbol: string, options?: { retprobe?: boolean; pid?: number; cookie?: number | bigint }): number;
  /**
   * One uprobe_multi link (kernel 6.6+, bpf(BPF_LINK_CREATE) with BPF_TRACE_UPROBE_MULTI): `program` at every
   * file offset of binaryPath (retprobe: at their returns), cookies[i] for offsets[i]. The program must have
   * been given expected attach type 48 (BPF_TRACE_UPROBE_MULTI) before load. pid -1/0: every process.
   * Older kernels answer EINVAL. Returns a link handle (detach() and close() release it).
   */
  attachUprobeMulti(program: string, binaryPath: string, offsets: number[], options?: { cookies?: number[]; retprobe?: boolean; pid?: number }): number;
  /** bpf_program__set_expected_attach_type (a number of enum bpf_attach_type); before load(). */
  setExpectedAttachType(program: string, attachType: number): void;
  /** bpf_link__destroy. Unknown handles are ignored. */
  detach(link: number): void;
  /** Key and value sizes are checked (TypeError on mismatch); per-CPU values as in MapDump.valueSize. */
  mapLookup(map: string, key: Buffer): Buffer | null;
  /** flags: 0 BPF_ANY, 1 BPF_NOEXIST, 2 BPF_EXIST. */
  mapUpdate(map: string, key: Buffer, value: Buffer, flags?: number): void;
  /** Returns false when the key was not there. */
  mapDelete(map: string, key: Buffer): boolean;
  /** Read then delete (BPF_MAP_LOOKUP_AND_DELETE_ELEM, or lookup+delete where unsupported). */
  mapLookupAndDelete(map: string, key: Buffer): Buffer | null;
  /** Every entry of a hash/array map, read with get_next_key + lookup. */
  mapDump(map: string): MapDump;
  /**
   * Start a dedicated poll thread on a BPF_MAP_TYPE_RINGBUF map. Each poll's records are copied into
   * one batch delivered through one ThreadSafeFunction call: a sequence of [u32 length][u32 0][record
   * bytes][zero padding to 8 bytes]. One ring buffer per object.
   */
  startRingBuffer(map: string, onBatch: (batch: ArrayBuffer) => void, options: RingBufferOptions): void;
  /** Packets the ring buffer's packet filter rejected so far. */
  packetsFilteredOut(): number;
  /** Stops the thread after a final drain; resolves once every batch has been delivered to onBatch. */
  stopRingBuffer(): Promise<void>;
  /** Destroys every link and the object. Idempotent. Also done by the finalizer. A running ring buffer is
   *  stopped without its final drain (undelivered batches are dropped); call stopRingBuffer() first to keep them. */
  close(): void;
}

export interface ProcConnector {
  /** PROC_CN_MCAST_IGNORE, stop and join the reader thread. Batches not yet delivered are dropped. Idempotent. */
  close(): void;
  /** Stops (true) or resumes (false) reading the socket: while stopped, its queue fills and overflows (ENOBUFS). */
  setPaused(paused: boolean): void;
}

/** A compiled tcpdump filter expression (libpcap). */
export interface PacketFilter {
  /** Runs the filter on one packet's captured bytes. */
  matches(data: Uint8Array, originalLength: number): boolean;
}


export interface LibpcapCaptureOptions {
  /** Device name in that namespace, or "any" (all interfaces; ask for linkType 276, DLT_LINUX_SLL2, to get
   *  the interface index and direction of every packet). */
  device: string;
  /** Network namespace to capture in (/proc/PID/ns/net, /run/netns/NAME). Only the capture thread enters
   *  it (plus a private mount namespace with /sys remounted, so libpcap's sysfs reads describe that
   *  namespace); the process stays where it is. */
  netnsPath?: string;
  /** Bytes kept per packet. */
  snaplen: number;
  /** tcpdump filter expression, compiled for the device's link type; a bad one throws (code "EINVAL"). */
  filter?: string;
  /** Kernel ring size in bytes (pcap_set_buffer_size). */
  bufferSize: number;
  promisc?: boolean;
  /** A partly filled ring block is handed over after this many ms (TPACKET_V3 block timeout); also the
   *  delivery latency bound. */
  timeoutMs: number;
  /** stop(): after the reject-all filter is attached, how long to wait for the last partly filled block. */
  drainMs: number;
  /** A batch is delivered before it would grow past this many bytes. */
  maxBatchBytes: number;
  /** Batches waiting for JS before the capture thread waits (back-pressure). */
  maxQueuedBatches: number;
  /** pcap_set_datalink after activation, e.g. 276 (DLT_LINUX_SLL2) on "any". */
  linkType?: number;
}

export interface LibpcapCaptureStats {
  /** pcap_stats ps_recv: packets that passed the filter, counted by the kernel. */
  received: number;
  /** ps_drop: packets the kernel dropped because the ring was full. */
  dropped: number;
  /** ps_ifdrop: drops by the interface (sysfs rx_missed_errors + rx_fifo_errors since activation). */
  ifDropped: number;
  /** Packets handed to onBatch. */
  delivered: number;
  /** Why the capture ended early (device removed, read error); absent after a normal stop(). */
  error?: string;
}

/**
 * A running libpcap capture (TPACKET_V3, nanosecond timestamps) with its own thread. The constructor
 * returns once the device is open (or throws with .code, and .errno where there is one). Each batch
 * holds packets back to back: a struct libpcap_packet_header (addon/batch_records.h: u64 timestampNs,
 * CLOCK_REALTIME; u32 capLen; u32 origLen), capLen bytes, zero padding to 8 bytes.
 */
export interface LibpcapCapture {
  /** pcap_datalink of the open handle: the pcapng IDB link type (1 EN10MB, 113 LINUX_SLL, 276 LINUX_SLL2, ...). */
  readonly linkType: number;
  readonly device: string;
  /** A pcap_activate warning (e.g. promiscuous mode not supported), if any. */
  readonly warning?: string;
  /** Final drain, join, then pcap_stats. Resolves after the last batch was delivered. */
  stop(): Promise<LibpcapCaptureStats>;
  /** Immediate: undelivered batches are dropped, the thread is joined. Idempotent. */
  close(): void;
  /** The final statistics once the capture thread has ended (stop(), or the device went away), else null. */
  stats(): LibpcapCaptureStats | null;
}

export interface NetworkInterface {
  name: string;
  description?: string;
  /** if_nametoindex in that namespace; 0 for pseudo devices ("any", "nflog", ...). */
  index: number;
  /** pcap_if_t flags (PCAP_IF_*). */
  flags: number;
  loopback: boolean;
  up: boolean;
  running: boolean;
  /** The link type libpcap gives when capturing on it; null when it cannot be opened. */
  linkType: number | null;
}

export interface ConntrackTuple {
  src: string;
  dst: string;
  /** IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...). */
  protocol: number;
  srcPort?: number;
  dstPort?: number;
  icmpId?: number;
  icmpType?: number;
  icmpCode?: number;
}

/** One conntrack entry as ctnetlink reports it. `reply.dst`/`reply.dstPort` is the original source as
 *  translated by SNAT/masquerade; `reply.src`/`reply.srcPort` the original destination after DNAT. */
export interface ConntrackEntry {
  family: 'ipv4' | 'ipv6';
  original: ConntrackTuple;
  reply: ConntrackTuple;
  id?: number;
  /** IPS_* bits (IPS_SRC_NAT 0x10, IPS_DST_NAT 0x20, IPS_ASSURED 0x4, ...). */
  status?: number;
  mark?: number;
  /** Seconds left. */
  timeout?: number;
  /** Only when not the default zone 0. */
  zone?: number;
  /** TCP_CONNTRACK_* (3 ESTABLISHED, ...). */
  tcpState?: number;
}

export interface NativeModule {
  /** Compiles a tcpdump filter for the link type (DLT_RAW = 12 for L3 packets); throws "invalid filter ..." */
  compilePacketFilter(expression: string, linkType: number, snaplen: number): PacketFilter;
  openObject(path: string): BpfObject;
  /** "1.1.2" */
  libbpfVersion(): string;
  /**
   * Netlink proc connector (CN_IDX_PROC) reader thread. Batches are arrays of struct proc_event_record
   * (addon/batch_records.h; offsets in layout.generated.ts): kind (fork, exec, exit, overflow: ENOBUFS,
   * events were lost), pid, tgid, parent pid and tgid, exit code (wait status) and signal, timestamp
   * (CLOCK_MONOTONIC). receiveBufferBytes: the socket's receive queue (SO_RCVBUFFORCE; the kernel doubles
   * it); maxQueuedBatches: batches waiting for JS before the reader waits.
   */
  /** With netnsPath, the socket is created by a thread inside that network namespace (the proc connector
   *  exists only in the initial one); Node's threads never change namespace. */
  openProcConnector(onBatch: (batch: ArrayBuffer) => void, options: { receiveBufferBytes: number; maxQueuedBatches: number; netnsPath?: string }): ProcConnector;
  /** Starts a libpcap capture (see LibpcapCapture). */
  LibpcapCapture: new (options: LibpcapCaptureOptions, onBatch: (batch: ArrayBuffer) => void) => LibpcapCapture;
  /** pcap_findalldevs, on a thread inside netnsPath when given. */
  listInterfaces(netnsPath?: string): NetworkInterface[];
  /** The whole conntrack table (of netnsPath's namespace when given) over ctnetlink; family filters in kernel.
   *  A table that outruns the socket buffer during the dump throws code ENOBUFS: dump again. */
  conntrackDump(options?: { family?: 'ipv4' | 'ipv6'; netnsPath?: string }): ConntrackEntry[];
  /** mkfifo(3) (the umask applies: chmod afterwards for an exact mode). Errors carry errno and code (EEXIST...). */
  makeFifo(path: string, mode: number): void;
  /** Size of one proc connector record in a batch (sizeof(struct proc_event_record)). */
  PROC_RECORD_SIZE: number;
}
