// SPDX-License-Identifier: MIT
// The part of hpack.js (no types of its own) the HTTP/2 decoder and its tests use. Both are object-mode
// streams driven synchronously: write(), then execute() (decompressor), then read() until null.
declare module 'hpack.js' {
  interface HeaderField {
    name: string;
    value: string;
    neverIndex?: boolean;
  }
  interface TableOptions {
    table: { maxSize: number };
  }
  interface Decompressor {
    write(block: Uint8Array): boolean;
    /** Decodes what was written; errors go to the 'error' event (or cb, on the next tick). */
    execute(cb?: (err: Error | null) => void): void;
    read(): HeaderField | null;
    updateTableSize(size: number): void;
    on(event: 'error', listener: (err: Error) => void): this;
  }
  interface Compressor {
    write(headers: HeaderField[]): boolean;
    read(): Buffer | null;
    updateTableSize(size: number): void;
  }
  export const decompressor: { create(options: TableOptions): Decompressor };
  export const compressor: { create(options: TableOptions): Compressor };
}
