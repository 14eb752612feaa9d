/**
 * A real pool worker for the generic WorkerPool tests. Its "model" echoes `x` doubled and reports its thread id;
 * the string input `cmd` makes it misbehave on purpose: `exit` (process.exit(3)), `throw` (an uncaught error),
 * `sleep:<ms>` (blocks the thread, like a long synchronous onnxruntime run), `fail` (a model error). Load options:
 * `crashOnLoad`, `failLoad: message`, `failIfExists: path`.
 */
import { existsSync } from "node:fs";
import { threadId } from "node:worker_threads";
import { serveWorker } from "../../../src/runtime/index.js";

const block = new Int32Array(new SharedArrayBuffer(4));

serveWorker(async (spec) => {
  const options = spec.options ?? {};
  if (options.crashOnLoad === true) process.exit(1);
  if (typeof options.failLoad === "string") throw new Error(options.failLoad);
  if (typeof options.failIfExists === "string" && existsSync(options.failIfExists)) throw new Error("marker file present");
  return {
    signature: {
      inputs: [{ name: "cmd", dtype: "string", shape: [1] }, { name: "x", dtype: "float32", shape: [-1] }],
      outputs: [{ name: "y", dtype: "float32", shape: [-1] }, { name: "thread", dtype: "int32", shape: [1] }],
    },
    async run(feeds) {
      const cmd = (feeds.cmd?.data as string[] | undefined)?.[0] ?? "";
      if (cmd === "exit") process.exit(3);
      if (cmd === "throw") {
        setImmediate(() => {
          throw new Error("boom in worker");
        });
        return new Promise(() => undefined);
      }
      if (cmd.startsWith("sleep:")) Atomics.wait(block, 0, 0, Number(cmd.slice(6)));
      if (cmd === "fail") throw new Error("the model said no");
      const x = feeds.x?.data as Float32Array;
      return {
        y: { dtype: "float32", shape: [x.length], data: x.map((v) => v * 2) },
        thread: { dtype: "int32", shape: [1], data: Int32Array.of(threadId) },
      };
    },
    async release() {},
  };
});
