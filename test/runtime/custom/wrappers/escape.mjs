// Tries what the permission model forbids and reports each outcome as a json output: reading /etc/passwd,
// reading the server's environment, starting a child process, starting a worker thread, writing a file.
import process from "node:process";
import fs from "node:fs";

async function attempt(fn) {
  try {
    await fn();
    return "allowed";
  } catch (error) {
    return `${error.code ?? "error"}: ${error.message}`;
  }
}

export default {
  async predict(context, rows) {
    const report = {
      passwd: await attempt(() => fs.readFileSync("/etc/passwd", "utf8")),
      spawn: await attempt(async () => (await import("node:child_process")).execFileSync("/bin/true")),
      worker: await attempt(async () => {
        const { Worker } = await import("node:worker_threads");
        const w = new Worker("process.exit(0)", { eval: true });
        await w.terminate();
      }),
      write_tmp: await attempt(() => fs.writeFileSync("/tmp/mlship-escape-test.txt", "x")),
      write_scratch: context.scratchDir === null ? "no scratch" : await attempt(() => fs.writeFileSync(`${context.scratchDir}/ok.txt`, "x")),
      read_artifact: await attempt(() => fs.readFileSync(context.artifacts.notes, "utf8")),
      read_allowed: context.config.extra === undefined ? "n/a" : await attempt(() => fs.readFileSync(context.config.extra, "utf8")),
      read_sibling: context.config.sibling === undefined ? "n/a" : await attempt(() => fs.readFileSync(context.config.sibling)),
      env_keys: Object.keys(process.env).filter((k) => k.startsWith("MLSHIP")).length,
    };
    return rows.map(() => ({ report }));
  },
};
