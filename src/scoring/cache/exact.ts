import { hash } from "node:crypto";
import type { Tensor } from "../../core/index.js";
import type { Orientation } from "../types.js";
import { OldestFirst } from "./oldest.js";

/**
 * One answered request body: what scoring computed for it, and a place where the transport keeps the response it
 * encoded from that, so that a repeat of the same body is answered without parsing, hashing tensors, decoding a
 * cache entry or encoding the response again.
 */
export interface ExactEntry {
  outputs: Record<string, Tensor>;
  rows: number;
  orientation: Orientation;
  id: string | undefined;
  parameters: Record<string, unknown> | undefined;
  /** The parsed inputs, for scoring events; undefined when nobody listened when the entry was made. */
  inputs: Record<string, Tensor> | undefined;
  /** Encoded responses by the transport's format name (e.g. `mlflow`, `v2`). */
  rendered: Map<string, Uint8Array>;
}

interface Slot {
  entry: ExactEntry;
  expiresAt: number;
  size: number;
  /** Used since it last reached the head of the eviction order (second chance instead of a move per hit). */
  touched: boolean;
}



export interface ExactMemoOptions {
  /** Bound on the entries' approximate size in bytes (body, outputs, inputs, encoded responses). Default 16 MiB. */
  maxBytes?: number;
  /** Bound on the number of entries. Default 10000. */
  maxEntries?: number;
  now?: () => number;
}

const SLOT_OVERHEAD = 256;

function tensorBytes(tensors: Record<string, Tensor> | undefined): number {
  let n = 0;
  for (const name in tensors) {
    const data = (tensors[name] as Tensor).data;
    if (Array.isArray(data)) for (const s of data) n += 2 * s.length + 16;
    else n += data.byteLength;
  }
  return n;
}

/**
 * The exact-body index in front of the prediction cache: request bytes -> the result scoring produced for them,
 * per model version (runtime key, which includes the artifact digest) and protocol. It only ever answers a body it
 * has seen (by the body's sha256), for the same version, within the version's cache TTL, so it can never give another
 * version's or another input's result; bodies that differ only in formatting still meet in the canonical cache
 * behind it. In-process, bounded by entries and bytes, evicting the least recently used (CLOCK approximation).
 */
export class ExactMemo {
  private readonly slots = new Map<string, Slot>();
  private readonly oldest = new OldestFirst(this.slots);
  private bytes = 0;
  private readonly maxBytes: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(options: ExactMemoOptions = {}) {
    this.maxBytes = Math.max(0, options.maxBytes ?? 16 * 1024 * 1024);
    this.maxEntries = Math.max(0, options.maxEntries ?? 10_000);
    this.now = options.now ?? Date.now;
  }

  /**
   * The body's sha256, with everything else that decides the answer in front of it. A short key: hashing the
   * body once is cheaper than using it as a Map key (V8 would hash and compare the whole string).
   */
  static key(runtimeKey: string, protocol: string, outputs: readonly string[] | undefined, body: Uint8Array): string {
    return `${runtimeKey}\n${protocol}\n${outputs === undefined ? "*" : outputs.join("\u0000")}\n${hash("sha256", body, "base64")}`;
  }

  get size(): number {
    return this.slots.size;
  }

  get(key: string): ExactEntry | undefined {
    const slot = this.slots.get(key);
    if (slot === undefined) return undefined;
    if (slot.expiresAt <= this.now()) {
      this.remove(key, slot);
      return undefined;
    }
    slot.touched = true;
    return slot.entry;
  }

  set(key: string, entry: ExactEntry, ttlSeconds: number): void {
    if (!(ttlSeconds > 0) || this.maxEntries === 0) return;
    // Encoded responses are added after the entry is stored; they are about the size of the outputs again.
    const size = SLOT_OVERHEAD + key.length * 2 + 2 * tensorBytes(entry.outputs) + tensorBytes(entry.inputs);
    if (size > this.maxBytes) return;
    const old = this.slots.get(key);
    if (old !== undefined) this.remove(key, old);
    this.slots.set(key, { entry, expiresAt: this.now() + ttlSeconds * 1000, size, touched: false });
    this.bytes += size;
    // CLOCK: the oldest entry goes unless it was used since its last turn, then it moves to the back once.
    let turns = this.slots.size;
    while ((this.slots.size > this.maxEntries || this.bytes > this.maxBytes) && this.slots.size > 0) {
      const [oldKey, oldSlot] = this.oldest.next() as [string, Slot];
      this.slots.delete(oldKey);
      if (oldKey === key || (oldSlot.touched && turns-- > 0)) {
        oldSlot.touched = false;
        this.slots.set(oldKey, oldSlot);
      } else {
        this.bytes -= oldSlot.size;
      }
    }
  }

  clear(): void {
    this.slots.clear();
    this.oldest.reset();
    this.bytes = 0;
  }

  private remove(key: string, slot: Slot): void {
    this.slots.delete(key);
    this.bytes -= slot.size;
  }
}
