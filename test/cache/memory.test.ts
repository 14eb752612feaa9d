import { describe, expect, it } from "vitest";
import type { Tensor } from "../../src/core/index.js";
import { MemoryPredictionCache, decodePrediction, encodePrediction, predictionKey } from "../../src/scoring/cache/index.js";
import type { CachedPrediction } from "../../src/scoring/cache/index.js";

function prediction(n: number, fill = 1): CachedPrediction {
  return { outputs: { y: { dtype: "float32", shape: [n], data: new Float32Array(n).fill(fill) } } };
}

describe("MemoryPredictionCache", () => {
  it("evicts the least recently used entry when the entry count is exceeded", async () => {
    const cache = new MemoryPredictionCache({ maxEntries: 2 });
    await cache.set("a", prediction(1, 1), 60);
    await cache.set("b", prediction(1, 2), 60);
    expect(await cache.get("a")).toBeDefined(); // a is now the most recently used
    await cache.set("c", prediction(1, 3), 60);
    expect(cache.size).toBe(2);
    expect(await cache.get("b")).toBeUndefined();
    expect(Array.from((await cache.get("a"))?.outputs.y?.data as Float32Array)).toEqual([1]);
    expect(Array.from((await cache.get("c"))?.outputs.y?.data as Float32Array)).toEqual([3]);
  });

  it("evicts by total bytes and refuses an entry larger than the whole budget", async () => {
    const one = encodePrediction(prediction(1000)).length; // ~4 KB per entry
    const cache = new MemoryPredictionCache({ maxBytes: Math.floor(one * 3.5), maxEntries: 1000 });
    for (const k of ["a", "b", "c", "d", "e"]) await cache.set(k, prediction(1000), 60);
    expect(cache.size).toBe(3);
    expect(cache.totalBytes).toBeLessThanOrEqual(cache.maxBytes);
    expect(await cache.get("a")).toBeUndefined();
    expect(await cache.get("b")).toBeUndefined();
    expect(await cache.get("e")).toBeDefined();
    await cache.set("huge", prediction(10_000), 60);
    expect(await cache.get("huge")).toBeUndefined();
    expect(cache.size).toBe(3); // the others were not flushed out for it
  });

  it("expires entries after their TTL", async () => {
    let now = 1_000_000;
    const cache = new MemoryPredictionCache({ now: () => now });
    await cache.set("short", prediction(2), 1);
    await cache.set("long", prediction(2), 10);
    now += 999;
    expect(await cache.get("short")).toBeDefined();
    now += 1;
    expect(await cache.get("short")).toBeUndefined();
    expect(cache.size).toBe(1);
    now += 8_999;
    expect(await cache.get("long")).toBeDefined();
    now += 1;
    expect(await cache.get("long")).toBeUndefined();
    expect(cache.totalBytes).toBe(0);
  });

  it("hands out copies: mutating what was stored or what was returned never changes the entry", async () => {
    const cache = new MemoryPredictionCache();
    const value = prediction(3, 5);
    await cache.set("k", value, 60);
    (value.outputs.y?.data as Float32Array).fill(-1);
    const first = await cache.get("k");
    expect(Array.from(first?.outputs.y?.data as Float32Array)).toEqual([5, 5, 5]);
    (first?.outputs.y?.data as Float32Array).fill(-2);
    // A transfer detaches the returned buffer; the entry must not care.
    structuredClone(first?.outputs.y?.data, { transfer: [(first?.outputs.y?.data as Float32Array).buffer as ArrayBuffer] });
    const second = await cache.get("k");
    expect(Array.from(second?.outputs.y?.data as Float32Array)).toEqual([5, 5, 5]);
    expect((first?.outputs.y?.data as Float32Array).byteLength).toBe(0); // the transfer did detach it
  });
});

describe("entry codec", () => {
  it("round-trips every dtype bit for bit, compactly", () => {
    const outputs: Record<string, Tensor> = {
      f32: { dtype: "float32", shape: [2, 2], data: Float32Array.from([0.1, -0, Number.NaN, 3e38]) },
      f64: { dtype: "float64", shape: [1], data: Float64Array.from([Math.PI]) },
      f16: { dtype: "float16", shape: [2], data: Uint16Array.from([0x3c00, 0x7e00]) },
      i64: { dtype: "int64", shape: [2], data: BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n]) },
      u64: { dtype: "uint64", shape: [1], data: BigUint64Array.from([2n ** 64n - 1n]) },
      b: { dtype: "bool", shape: [3], data: Uint8Array.from([1, 0, 1]) },
      s: { dtype: "string", shape: [3], data: ["", "héllo", "a\u0000b"] },
      scalar: { dtype: "int32", shape: [], data: Int32Array.from([-7]) },
    };
    const buf = encodePrediction({ outputs });
    const back = decodePrediction(buf).outputs;
    expect(Object.keys(back)).toEqual(Object.keys(outputs));
    for (const [name, t] of Object.entries(outputs)) {
      const got = back[name] as Tensor;
      expect(got.dtype).toBe(t.dtype);
      expect(got.shape).toEqual(t.shape);
      if (Array.isArray(t.data)) expect(got.data).toEqual(t.data);
      else {
        expect(got.data.constructor).toBe(t.data.constructor);
        expect(Buffer.from((got.data as Float32Array).buffer)).toEqual(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      }
    }
    // 1000 floats take their raw 4000 bytes plus a small header, not JSON text.
    expect(encodePrediction(prediction(1000)).length).toBeLessThan(4100);
    expect(() => decodePrediction(buf.subarray(0, buf.length - 3))).toThrow(/truncated/);
    expect(() => decodePrediction(Buffer.from("{\"json\":1}"))).toThrow(/magic/);
  });
});

describe("predictionKey", () => {
  const model = { name: "m", version: 1, digest: "sha256:aaaa" };
  const feeds = (values: number[]): Record<string, Tensor> => ({ input: { dtype: "float32", shape: [1, values.length], data: Float32Array.from(values) } });

  it("is stable and sensitive to every part of the request and the model identity", () => {
    const base = predictionKey(model, feeds([1, 2, 3]), undefined);
    expect(predictionKey(model, feeds([1, 2, 3]), undefined)).toBe(base);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    const others = [
      predictionKey(model, feeds([1, 2, 3.0000002]), undefined), // one float differs in its last bit
      predictionKey(model, feeds([1, 2, 3]), ["label"]),
      predictionKey(model, feeds([1, 2, 3]), ["probabilities", "label"]),
      predictionKey({ ...model, version: 2 }, feeds([1, 2, 3]), undefined),
      predictionKey({ ...model, digest: "sha256:bbbb" }, feeds([1, 2, 3]), undefined),
      predictionKey({ ...model, name: "m2" }, feeds([1, 2, 3]), undefined),
      predictionKey(model, { input: { dtype: "float32", shape: [3, 1], data: Float32Array.from([1, 2, 3]) } }, undefined),
      predictionKey(model, { input: { dtype: "int32", shape: [1, 3], data: Int32Array.from([1, 2, 3]) } }, undefined),
      predictionKey(model, { x: feeds([1, 2, 3]).input as Tensor }, undefined),
    ];
    expect(new Set([base, ...others]).size).toBe(others.length + 1);
  });

  it("orders inputs by name and length-prefixes strings", () => {
    const a: Tensor = { dtype: "float32", shape: [1], data: Float32Array.from([1]) };
    const b: Tensor = { dtype: "float32", shape: [1], data: Float32Array.from([2]) };
    expect(predictionKey(model, { a, b }, undefined)).toBe(predictionKey(model, { b, a }, undefined));
    const s = (data: string[]): Record<string, Tensor> => ({ s: { dtype: "string", shape: [data.length], data } });
    expect(predictionKey(model, s(["ab", "c"]), undefined)).not.toBe(predictionKey(model, s(["a", "bc"]), undefined));
    // A view into a larger buffer hashes only its own bytes.
    const big = Float32Array.from([9, 1, 2, 3, 9]);
    expect(predictionKey(model, { input: { dtype: "float32", shape: [1, 3], data: big.subarray(1, 4) } }, undefined)).toBe(predictionKey(model, feeds([1, 2, 3]), undefined));
  });
});
