import { describe, expect, it } from "vitest";
import type { Tensor } from "../../src/core/index.js";
import { ExactMemo } from "../../src/scoring/cache/index.js";
import type { ExactEntry } from "../../src/scoring/cache/index.js";

const RUNTIME_KEY = "bc@1#sha256:aaaa";

function entry(values: number[] | number, fill = 1): ExactEntry {
  const data = typeof values === "number" ? new Float32Array(values).fill(fill) : Float32Array.from(values);
  const y: Tensor = { dtype: "float32", shape: [data.length], data };
  return { outputs: { y }, rows: 1, orientation: "columnar", id: undefined, parameters: undefined, inputs: undefined, rendered: new Map() };
}

function firstValue(e: ExactEntry | undefined): number | undefined {
  return (e?.outputs.y?.data as Float32Array | undefined)?.[0];
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const key = (body: Uint8Array | string, runtimeKey = RUNTIME_KEY, protocol = "v2", outputs?: string[]): string =>
  ExactMemo.key(runtimeKey, protocol, outputs, typeof body === "string" ? bytes(body) : body);

describe("ExactMemo", () => {
  const body = '{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1.5,2.5]}]}';

  it("answers the same bytes and misses when one byte differs", () => {
    const memo = new ExactMemo();
    memo.set(key(body), entry([7]), 60);
    // A fresh copy of the same bytes, not the same object, finds the entry.
    expect(firstValue(memo.get(key(Uint8Array.from(bytes(body)))))).toBe(7);
    expect(memo.get(key(body.replace("2.5", "2.6")))).toBeUndefined();
    expect(memo.get(key(`${body} `))).toBeUndefined();
    expect(memo.get(key(body.slice(0, -1)))).toBeUndefined();
    // Multi-byte UTF-8: bodies differing only inside one character are different keys.
    memo.set(key('{"id":"é"}'), entry([1]), 60);
    expect(memo.get(key('{"id":"è"}'))).toBeUndefined();
    expect(firstValue(memo.get(key('{"id":"é"}')))).toBe(1);
  });

  it("keys a view into a larger buffer by its own bytes only", () => {
    const memo = new ExactMemo();
    const whole = bytes(`xxxx${body}yyyy`);
    const view = whole.subarray(4, whole.length - 4);
    memo.set(key(view), entry([3]), 60);
    expect(firstValue(memo.get(key(body)))).toBe(3);
    expect(key(view)).toBe(key(body));
  });

  it("misses for another runtime key, protocol or outputs option", () => {
    const memo = new ExactMemo();
    memo.set(key(body, RUNTIME_KEY, "v2", undefined), entry([1]), 60);
    expect(memo.get(key(body, "bc@2#sha256:aaaa", "v2"))).toBeUndefined();
    expect(memo.get(key(body, "bc@1#sha256:bbbb", "v2"))).toBeUndefined();
    expect(memo.get(key(body, RUNTIME_KEY, "mlflow"))).toBeUndefined();
    expect(memo.get(key(body, RUNTIME_KEY, "v2", ["y"]))).toBeUndefined();
    expect(memo.get(key(body, RUNTIME_KEY, "v2", []))).toBeUndefined();
    memo.set(key(body, RUNTIME_KEY, "v2", ["a", "b"]), entry([2]), 60);
    expect(memo.get(key(body, RUNTIME_KEY, "v2", ["b", "a"]))).toBeUndefined();
    expect(firstValue(memo.get(key(body, RUNTIME_KEY, "v2", ["a", "b"])))).toBe(2);
    expect(firstValue(memo.get(key(body, RUNTIME_KEY, "v2", undefined)))).toBe(1);
  });

  it("expires entries after their TTL (injected clock) and frees them", () => {
    let now = 5_000_000;
    const memo = new ExactMemo({ now: () => now });
    memo.set(key("short"), entry([1]), 1);
    memo.set(key("long"), entry([2]), 10);
    now += 999;
    expect(firstValue(memo.get(key("short")))).toBe(1);
    now += 1;
    expect(memo.get(key("short"))).toBeUndefined();
    expect(memo.size).toBe(1);
    now += 8_999;
    expect(firstValue(memo.get(key("long")))).toBe(2);
    now += 1;
    expect(memo.get(key("long"))).toBeUndefined();
    expect(memo.size).toBe(0);
  });

  it("stores nothing with a TTL of 0 (or a nonsense one) or with maxEntries 0", () => {
    const memo = new ExactMemo();
    for (const ttl of [0, -5, Number.NaN]) memo.set(key(`ttl ${ttl}`), entry([1]), ttl);
    expect(memo.size).toBe(0);
    for (const ttl of [0, -5, Number.NaN]) expect(memo.get(key(`ttl ${ttl}`))).toBeUndefined();
    const off = new ExactMemo({ maxEntries: 0 });
    off.set(key(body), entry([1]), 60);
    expect(off.size).toBe(0);
    expect(off.get(key(body))).toBeUndefined();
  });

  it("keeps entries used since their last turn and evicts untouched ones beyond maxEntries (second chance)", () => {
    const memo = new ExactMemo({ maxEntries: 2 });
    memo.set(key("a"), entry([1]), 60);
    memo.set(key("b"), entry([2]), 60);
    expect(memo.get(key("a"))).toBeDefined(); // a gets a second chance
    memo.set(key("c"), entry([3]), 60);
    expect(memo.size).toBe(2);
    expect(memo.get(key("b"))).toBeUndefined();
    expect(firstValue(memo.get(key("a")))).toBe(1);
    expect(firstValue(memo.get(key("c")))).toBe(3);

    // A longer run: entries that keep being used survive a stream of one-off bodies.
    const many = new ExactMemo({ maxEntries: 4 });
    many.set(key("hot1"), entry([10]), 60);
    many.set(key("hot2"), entry([20]), 60);
    for (let i = 0; i < 20; i++) {
      expect(many.get(key("hot1"))).toBeDefined();
      expect(many.get(key("hot2"))).toBeDefined();
      many.set(key(`cold${i}`), entry([i]), 60);
      expect(many.size).toBeLessThanOrEqual(4);
    }
    expect(firstValue(many.get(key("hot1")))).toBe(10);
    expect(firstValue(many.get(key("hot2")))).toBe(20);
    expect(many.get(key("cold0"))).toBeUndefined();
    expect(many.get(key("cold10"))).toBeUndefined();
    expect(firstValue(many.get(key("cold19")))).toBe(19);
  });

  it("evicts untouched entries before used ones even when they are newer", () => {
    const memo = new ExactMemo({ maxEntries: 3 });
    for (const k of ["a", "b", "c"]) memo.set(key(k), entry([k.charCodeAt(0)]), 60);
    expect(memo.get(key("a"))).toBeDefined();
    memo.set(key("d"), entry([4]), 60); // b goes (oldest untouched); a moves behind c
    memo.set(key("e"), entry([5]), 60); // c goes: untouched, though newer than a
    expect(memo.get(key("b"))).toBeUndefined();
    expect(memo.get(key("c"))).toBeUndefined();
    expect(memo.get(key("a"))).toBeDefined();
    expect(memo.get(key("d"))).toBeDefined();
    expect(memo.get(key("e"))).toBeDefined();
  });

  it("keeps a new entry through its own insertion even when every older entry was used since its last turn", () => {
    // LRU order puts the entry just stored last; it must not be the one that goes to make room for itself.
    const memo = new ExactMemo({ maxEntries: 2 });
    memo.set(key("a"), entry([1]), 60);
    memo.set(key("b"), entry([2]), 60);
    memo.get(key("a"));
    memo.get(key("b"));
    memo.set(key("c"), entry([3]), 60);
    expect(memo.size).toBe(2);
    expect(firstValue(memo.get(key("c")))).toBe(3);
  });

  it("bounds the entries' bytes and refuses an entry larger than the whole budget", () => {
    const k = (name: string): string => key(name.padEnd(8, "-"));
    // Each entry: 1000 float32 outputs (counted twice, for the encoded response added later) plus key and overhead.
    const one = 256 + k("probe").length * 2 + 2 * 4000;
    const memo = new ExactMemo({ maxBytes: Math.floor(one * 3.5), maxEntries: 1000 });
    for (const name of ["a", "b", "c", "d", "e"]) memo.set(k(name), entry(1000), 60);
    expect(memo.size).toBe(3);
    expect(memo.get(k("a"))).toBeUndefined();
    expect(memo.get(k("b"))).toBeUndefined();
    expect(memo.get(k("c"))).toBeDefined();
    expect(memo.get(k("e"))).toBeDefined();
    // Larger than the whole budget: not stored, and the others are not flushed out for it.
    memo.set(k("huge"), entry(10_000), 60);
    expect(memo.get(k("huge"))).toBeUndefined();
    expect(memo.size).toBe(3);
    memo.clear();
    expect(memo.size).toBe(0);
    expect(memo.get(k("e"))).toBeUndefined();
    // Inputs kept for scoring events count too: an entry with big inputs takes the room of more than one.
    const room = new ExactMemo({ maxBytes: Math.floor(one * 3.5), maxEntries: 1000 });
    for (const name of ["a", "b", "c"]) room.set(k(name), entry(1000), 60);
    const withInputs = entry(1000);
    withInputs.inputs = { x: { dtype: "float32", shape: [1500], data: new Float32Array(1500) } };
    room.set(k("inputs"), withInputs, 60);
    expect(room.size).toBe(2);
    expect(room.get(k("b"))).toBeUndefined();
    expect(room.get(k("c"))).toBeDefined();
    expect(room.get(k("inputs"))).toBeDefined();
  });

  it("keys large bodies by a digest and still tells them apart by every byte", () => {
    const memo = new ExactMemo();
    const big = bytes(`{"inputs":[{"name":"input","shape":[1],"datatype":"BYTES","data":["${"x".repeat(40_000)}"]}]}`);
    const bigKey = key(big);
    // The body is not the key: a digest stands for it.
    expect(bigKey.length).toBeLessThan(200);
    memo.set(bigKey, entry([9]), 60);
    expect(firstValue(memo.get(key(Uint8Array.from(big))))).toBe(9);
    for (const at of [0, 20_000, big.length - 1]) {
      const changed = Uint8Array.from(big);
      changed[at] = (changed[at] as number) ^ 1;
      expect(memo.get(key(changed)), `byte ${at}`).toBeUndefined();
    }
    expect(memo.get(key(big.subarray(0, big.length - 1)))).toBeUndefined();
    expect(memo.get(key(big, RUNTIME_KEY, "mlflow"))).toBeUndefined();
    expect(memo.get(key(big, "bc@2#sha256:aaaa"))).toBeUndefined();
    // A view into a larger buffer hashes its own bytes only.
    const padded = new Uint8Array(big.length + 10);
    padded.set(big, 5);
    expect(key(padded.subarray(5, 5 + big.length))).toBe(bigKey);
    // Around 16 kB (V8 hashes only a string's first 16383 characters): bodies of nearly equal length stay apart.
    const atLimit = new Uint8Array(16_000).fill(0x61);
    const overLimit = new Uint8Array(16_001).fill(0x61);
    memo.set(key(atLimit), entry([1]), 60);
    memo.set(key(overLimit), entry([2]), 60);
    expect(firstValue(memo.get(key(atLimit)))).toBe(1);
    expect(firstValue(memo.get(key(overLimit)))).toBe(2);
  });
});
