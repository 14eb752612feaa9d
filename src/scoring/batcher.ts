import { allocate } from "../core/index.js";
import type { Tensor, TensorData } from "../core/index.js";
import type { TensorSpec } from "../package/index.js";
import type { LoadedModel } from "../runtime/index.js";

interface Pending {
  feeds: Record<string, Tensor>;
  rows: number;
  resolve(outputs: Record<string, Tensor>): void;
  reject(err: unknown): void;
}

/** Runs a model for one request, possibly together with other requests that arrived in the same event-loop turn. */
export interface Batcher {
  run(feeds: Record<string, Tensor>, rows: number): Promise<Record<string, Tensor>>;
}

function batchAxis(specs: readonly TensorSpec[]): boolean {
  return specs.every((s) => s.shape.length >= 1 && s.shape[0] === -1);
}

/** A key that is equal for requests whose tensors can be stacked along the batch axis. */
function stackKey(feeds: Record<string, Tensor>): string {
  let key = "";
  for (const name of Object.keys(feeds).sort()) {
    const t = feeds[name] as Tensor;
    key += `${name}:${t.dtype}:${t.shape.slice(1).join("x")};`;
  }
  return key;
}

function concat(parts: readonly Tensor[], rows: number): Tensor {
  const first = parts[0] as Tensor;
  const inner = first.shape.slice(1);
  let per = 1;
  for (const d of inner) per *= d;
  const out = allocate(first.dtype, rows * per);
  let offset = 0;
  for (const p of parts) {
    if (Array.isArray(out)) {
      const src = p.data as string[];
      for (let i = 0; i < src.length; i++) out[offset + i] = src[i] as string;
    } else {
      (out as Float32Array).set(p.data as Float32Array, offset);
    }
    offset += p.data.length;
  }
  return { dtype: first.dtype, shape: [rows, ...inner], data: out };
}

function sliceRows(t: Tensor, from: number, to: number, total: number): Tensor {
  const per = total === 0 ? 0 : t.data.length / total;
  const data: TensorData = Array.isArray(t.data)
    ? t.data.slice(from * per, to * per)
    : (t.data as Float32Array).subarray(from * per, to * per);
  return { dtype: t.dtype, shape: [to - from, ...t.shape.slice(1)], data };
}

/**
 * Gathers the requests that reach one model version within an event-loop turn and runs them as one batch: one
 * message to a worker and one ORT run instead of many, which is where a small model's time goes. Only models
 * whose every input and output has a variable batch axis qualify; anything unexpected (outputs that are not
 * per row, a failed merged run) falls back to running each request alone, so one request never sees another's
 * error.
 */
export function createBatcher(model: LoadedModel, inputs: readonly TensorSpec[], outputs: readonly TensorSpec[], maxRows: number): Batcher | undefined {
  if (maxRows <= 1 || inputs.length === 0 || !batchAxis(inputs) || !batchAxis(outputs)) return undefined;
  let queue: Pending[] = [];
  let scheduled = false;

  const runAlone = (p: Pending): void => {
    model.run(p.feeds).then(p.resolve, p.reject);
  };

  const runGroup = (group: Pending[]): void => {
    if (group.length === 1) {
      runAlone(group[0] as Pending);
      return;
    }
    let total = 0;
    for (const p of group) total += p.rows;
    const feeds: Record<string, Tensor> = {};
    try {
      for (const name of Object.keys((group[0] as Pending).feeds)) feeds[name] = concat(group.map((p) => p.feeds[name] as Tensor), total);
    } catch {
      // Storage that does not match its dtype (possible for tensors a library caller built) cannot be stacked;
      // alone, each request gets the runtime's own error. Thrown here, it would escape setImmediate and end the process.
      for (const p of group) runAlone(p);
      return;
    }
    model.run(feeds).then(
      (merged) => {
        const tensors = Object.values(merged);
        if (!tensors.every((t) => t.shape.length >= 1 && t.shape[0] === total)) {
          for (const p of group) runAlone(p);
          return;
        }
        let from = 0;
        for (const p of group) {
          const out: Record<string, Tensor> = {};
          for (const [name, t] of Object.entries(merged)) out[name] = sliceRows(t, from, from + p.rows, total);
          from += p.rows;
          p.resolve(out);
        }
      },
      () => {
        for (const p of group) runAlone(p);
      },
    );
  };

  const flush = (): void => {
    scheduled = false;
    const items = queue;
    queue = [];
    const groups = new Map<string, Pending[][]>();
    for (const p of items) {
      const key = stackKey(p.feeds);
      let chunks = groups.get(key);
      if (chunks === undefined) {
        chunks = [[]];
        groups.set(key, chunks);
      }
      let last = chunks[chunks.length - 1] as Pending[];
      const rows = last.reduce((n, q) => n + q.rows, 0);
      if (last.length > 0 && rows + p.rows > maxRows) {
        last = [];
        chunks.push(last);
      }
      last.push(p);
    }
    for (const chunks of groups.values()) for (const chunk of chunks) runGroup(chunk);
  };

  return {
    run(feeds, rows) {
      // Only requests whose every input has `rows` rows can be stacked (broadcasting ones run alone).
      let stackable = rows > 0 && rows < maxRows;
      for (const name in feeds) if ((feeds[name] as Tensor).shape[0] !== rows) stackable = false;
      if (!stackable) return model.run(feeds);
      return new Promise((resolve, reject) => {
        queue.push({ feeds, rows, resolve, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
  };
}
