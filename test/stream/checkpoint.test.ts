import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MlshipError } from "../../src/core/index.js";
import { Checkpoint, writeFileAtomic, type CheckpointData } from "../../src/stream/checkpoint.js";

let dir: string;
const children: ChildProcess[] = [];
const opened: Checkpoint[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-checkpoint-"));
});

afterEach(async () => {
  for (const checkpoint of opened.splice(0)) await checkpoint.close();
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  fs.rmSync(dir, { recursive: true, force: true });
});

async function open(stream: string, options: Parameters<typeof Checkpoint.open>[2] = {}, at = dir): Promise<Checkpoint> {
  const checkpoint = await Checkpoint.open(at, stream, options);
  opened.push(checkpoint);
  return checkpoint;
}

async function failure(promise: Promise<unknown>): Promise<MlshipError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(MlshipError);
    return error as MlshipError;
  }
  throw new Error("expected a failure");
}

function state(stream: string, nextBatchId: number, operators: Record<string, unknown> = {}): CheckpointData {
  return { stream, nextBatchId, operators, updatedAt: new Date(1_700_000_000_000 + nextBatchId).toISOString() };
}

/** A logger whose warnings land in `lines` (parsed). */
function capturingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: "warn" }, { write: (text: string) => lines.push(JSON.parse(text) as Record<string, unknown>) });
  return { logger, lines };
}

function sleeper(): ChildProcess {
  const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
  children.push(child);
  return child;
}

describe("writeFileAtomic", () => {
  it("writes text and bytes, replaces an existing file and leaves no temporary file", async () => {
    const file = path.join(dir, "data.json");
    await writeFileAtomic(file, "first");
    expect(fs.readFileSync(file, "utf8")).toBe("first");
    await writeFileAtomic(file, new Uint8Array([104, 105]));
    expect(fs.readFileSync(file, "utf8")).toBe("hi");
    expect(fs.readdirSync(dir)).toEqual(["data.json"]);
  });

  it("fails without touching the target when the folder does not exist", async () => {
    await expect(writeFileAtomic(path.join(dir, "missing", "x.json"), "x")).rejects.toMatchObject({ code: "ENOENT" });
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe("Checkpoint.open", () => {
  it("creates the folder, metadata and a lock holding this process, and releases the lock on close", async () => {
    const at = path.join(dir, "deep", "ck");
    const checkpoint = await Checkpoint.open(at, "orders");
    expect(checkpoint.dir).toBe(at);
    const metadata = JSON.parse(fs.readFileSync(path.join(at, "metadata.json"), "utf8")) as Record<string, unknown>;
    expect(metadata).toMatchObject({ stream: "orders", version: 1 });
    expect(Number.isNaN(Date.parse(metadata.createdAt as string))).toBe(false);
    const lock = JSON.parse(fs.readFileSync(path.join(at, "lock"), "utf8")) as Record<string, unknown>;
    expect(lock).toMatchObject({ pid: process.pid, hostname: os.hostname() });
    expect(checkpoint.load()).toBeNull();
    await checkpoint.close();
    expect(fs.existsSync(path.join(at, "lock"))).toBe(false);
    await checkpoint.close(); // twice is fine
    // Open again: the metadata is kept, not rewritten.
    const again = await open("orders", {}, at);
    expect(JSON.parse(fs.readFileSync(path.join(at, "metadata.json"), "utf8"))).toEqual(metadata);
    expect(again.dir).toBe(at);
  });

  it("refuses a checkpoint this very process already holds", async () => {
    await open("orders");
    const error = await failure(Checkpoint.open(dir, "orders"));
    expect(error.code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    expect(error.message).toContain(`in use by pid ${process.pid}`);
  });

  it("refuses a lock held by a live process, and takes it over once that process is gone", async () => {
    await (await open("orders")).close();
    const child = sleeper();
    const startedAt = "2026-01-02T03:04:05.000Z";
    fs.writeFileSync(path.join(dir, "lock"), JSON.stringify({ pid: child.pid, hostname: os.hostname(), startedAt }));

    const error = await failure(Checkpoint.open(dir, "orders"));
    expect(error.code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    expect(error.message).toBe(
      `checkpoint ${dir} is in use by pid ${child.pid} (started ${startedAt}); stop it, or give each process its own --instance`,
    );
    // The refused open left the lock alone.
    expect(JSON.parse(fs.readFileSync(path.join(dir, "lock"), "utf8"))).toMatchObject({ pid: child.pid });

    child.kill("SIGKILL");
    await once(child, "exit");
    const checkpoint = await open("orders");
    expect(JSON.parse(fs.readFileSync(path.join(dir, "lock"), "utf8"))).toMatchObject({ pid: process.pid });
    expect(fs.readdirSync(dir).filter((name) => name.includes("takeover") || name.includes(".tmp-"))).toEqual([]);
    await checkpoint.close();
    expect(fs.existsSync(path.join(dir, "lock"))).toBe(false);
  });

  it("lets exactly one of several racing opens take over a stale lock", async () => {
    const child = sleeper();
    child.kill("SIGKILL");
    await once(child, "exit");
    await (await open("orders")).close();
    fs.writeFileSync(path.join(dir, "lock"), JSON.stringify({ pid: child.pid, hostname: os.hostname(), startedAt: "2026-01-01T00:00:00.000Z" }));
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => Checkpoint.open(dir, "orders")));
    const winners = results.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
    opened.push(...winners);
    expect(winners).toHaveLength(1);
    for (const result of results) {
      if (result.status === "rejected") expect((result.reason as MlshipError).message).toContain(`in use by pid ${process.pid}`);
    }
    expect(JSON.parse(fs.readFileSync(path.join(dir, "lock"), "utf8"))).toMatchObject({ pid: process.pid });
  });

  it("takes over a lock file that is not a lock only once it is old", async () => {
    const lock = path.join(dir, "lock");
    fs.writeFileSync(lock, "");
    const error = await failure(Checkpoint.open(dir, "orders"));
    expect(error.message).toContain("could not take its lock");
    expect(fs.readFileSync(lock, "utf8")).toBe("");
    fs.utimesSync(lock, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    await open("orders");
    expect(JSON.parse(fs.readFileSync(lock, "utf8"))).toMatchObject({ pid: process.pid });
  });

  it("counts a lock written on another host as live and says how to clear it", async () => {
    fs.writeFileSync(path.join(dir, "lock"), JSON.stringify({ pid: 1, hostname: "elsewhere.example", startedAt: "2026-01-01T00:00:00.000Z" }));
    const error = await failure(Checkpoint.open(dir, "orders"));
    expect(error.code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    expect(error.message).toContain("in use by pid 1 on host elsewhere.example");
    expect(error.message).toContain(`delete ${path.join(dir, "lock")}`);
  });

  it("close does not delete a lock that another process took over meanwhile", async () => {
    const checkpoint = await open("orders");
    const foreign = JSON.stringify({ pid: 999999, hostname: os.hostname(), startedAt: "x" });
    fs.writeFileSync(path.join(dir, "lock"), foreign);
    await checkpoint.close();
    expect(fs.readFileSync(path.join(dir, "lock"), "utf8")).toBe(foreign);
  });

  it("releases the lock when the process exits without close", () => {
    const script = [
      `import { Checkpoint } from ${JSON.stringify(path.resolve("src/stream/checkpoint.ts"))};`,
      `const checkpoint = await Checkpoint.open(${JSON.stringify(dir)}, "orders");`,
      `console.log(JSON.stringify({ locked: (await import("node:fs")).existsSync(checkpoint.dir + "/lock") }));`,
      "process.exit(0);",
    ].join("\n");
    const result = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 30_000 });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout.trim())).toEqual({ locked: true });
    expect(fs.existsSync(path.join(dir, "lock"))).toBe(false);
    expect(fs.existsSync(path.join(dir, "metadata.json"))).toBe(true);
  });

  it("refuses the checkpoint of another stream, naming both", async () => {
    await (await open("orders")).close();
    const error = await failure(Checkpoint.open(dir, "clicks"));
    expect(error.code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    expect(error.message).toContain('belongs to stream "orders", not "clicks"');
    // Refused before locking: no lock left behind.
    expect(fs.existsSync(path.join(dir, "lock"))).toBe(false);
  });

  it("refuses an unreadable metadata file and bad names", async () => {
    fs.writeFileSync(path.join(dir, "metadata.json"), "{not json");
    expect((await failure(Checkpoint.open(dir, "orders"))).code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    expect(await failure(Checkpoint.open(dir, "a/b"))).toMatchObject({ code: "MLSHIP_ERR_CONFIG_INVALID", field: "name" });
    for (const instance of ["../x", "a b", "", ".."]) {
      expect(await failure(Checkpoint.open(path.join(dir, "other"), "orders", { instance }))).toMatchObject({
        code: "MLSHIP_ERR_CONFIG_INVALID",
        field: "instance",
      });
    }
  });

  it("gives each instance its own lock and state, under one metadata", async () => {
    const first = await open("orders", { instance: "w1" });
    const second = await open("orders", { instance: "w2" });
    expect(first.dir).toBe(path.join(dir, "instances", "w1"));
    expect(second.dir).toBe(path.join(dir, "instances", "w2"));
    expect(fs.existsSync(path.join(first.dir, "lock"))).toBe(true);
    expect(fs.existsSync(path.join(second.dir, "lock"))).toBe(true);
    expect(fs.existsSync(path.join(dir, "lock"))).toBe(false);
    expect(JSON.parse(fs.readFileSync(path.join(dir, "metadata.json"), "utf8"))).toMatchObject({ stream: "orders" });

    await first.save(state("orders", 3, { join: { buffered: 1 } }));
    expect(first.load()?.nextBatchId).toBe(3);
    expect(second.load()).toBeNull();

    const error = await failure(Checkpoint.open(dir, "orders", { instance: "w1" }));
    expect(error.message).toContain(`checkpoint ${first.dir} is in use by pid ${process.pid}`);
    // The instances belong to the job: another job cannot use them.
    expect((await failure(Checkpoint.open(dir, "clicks", { instance: "w3" }))).message).toContain('belongs to stream "orders"');
  });
});

describe("Checkpoint state", () => {
  it("saves atomically, keeps the two newest states and loads the newest", async () => {
    const checkpoint = await open("orders");
    for (let id = 1; id <= 4; id++) await checkpoint.save(state("orders", id, { "aggregation:counts": { windows: [[id, id * 10]] } }));
    expect(fs.readdirSync(path.join(dir, "state")).sort()).toEqual(["3.json", "4.json"]);
    expect(checkpoint.load()).toEqual(state("orders", 4, { "aggregation:counts": { windows: [[4, 40]] } }));
    // Saving the same batch again (a replay) replaces it.
    await checkpoint.save(state("orders", 4, { replayed: true }));
    expect(checkpoint.load()?.operators).toEqual({ replayed: true });
    await expect(checkpoint.save(state("orders", -1))).rejects.toMatchObject({ code: "MLSHIP_ERR_STREAM_CHECKPOINT" });
  });

  it("falls back to the previous state when the newest is torn, and says why", async () => {
    const { logger, lines } = capturingLogger();
    const writer = await open("orders");
    await writer.save(state("orders", 7, { a: 1 }));
    await writer.save(state("orders", 8, { a: 2 }));
    await writer.close();
    const newest = path.join(dir, "state", "8.json");
    fs.writeFileSync(newest, fs.readFileSync(newest, "utf8").slice(0, 20)); // a torn write

    const reader = await open("orders", { logger });
    expect(reader.load()).toEqual(state("orders", 7, { a: 1 }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ file: newest, msg: "stream checkpoint: skipping an unreadable state file" });
    expect(String(lines[0]?.reason)).toContain("not valid JSON");

    // Every state unreadable: an error, not a silent restart from batch 0.
    fs.writeFileSync(path.join(dir, "state", "7.json"), JSON.stringify({ stream: "orders", nextBatchId: "x" }));
    const error = (() => {
      try {
        reader.load();
      } catch (caught) {
        return caught as MlshipError;
      }
      throw new Error("expected a failure");
    })();
    expect(error.code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    expect(error.message).toContain("8.json: not valid JSON");
    expect(error.message).toContain("7.json: has no valid nextBatchId");
  });

  it("removes temporary files a crashed save left behind", async () => {
    await (await open("orders")).close();
    fs.writeFileSync(path.join(dir, "state", "5.json.tmp-123-abc"), "{");
    const checkpoint = await open("orders");
    expect(fs.readdirSync(path.join(dir, "state"))).toEqual([]);
    expect(checkpoint.load()).toBeNull();
  });

  it("makes sub-folders inside the checkpoint only", async () => {
    const checkpoint = await open("orders", { instance: "w1" });
    const folder = await checkpoint.subdir("sources", "folder");
    expect(folder).toBe(path.join(dir, "instances", "w1", "sources", "folder"));
    expect(fs.statSync(folder).isDirectory()).toBe(true);
    expect(await checkpoint.subdir("sources", "folder")).toBe(folder);
    for (const parts of [["..", "x"], ["/etc"], []]) {
      expect((await failure(checkpoint.subdir(...parts))).code).toBe("MLSHIP_ERR_STREAM_CHECKPOINT");
    }
  });
});
