/**
 * A stream job's checkpoint folder (issue 7): who runs it (`lock`), which job it belongs to (`metadata.json`), and the
 * state saved after every micro-batch (`state/<nextBatchId>.json`: the batch counter and the operators' state).
 *
 *   <dir>/metadata.json              {stream, createdAt, version: 1}; a checkpoint of another job is refused
 *   <dir>/lock                       {pid, hostname, startedAt} of the process running the job
 *   <dir>/state/<nextBatchId>.json   the two newest states; older ones are deleted
 *   <dir>/<subdir>/...               what sources and operators keep for themselves (`subdir`)
 *
 * With an instance (`--instance NAME`), the lock, state and subfolders live in `<dir>/instances/<NAME>` so that several
 * processes of one job on one machine each have their own; `metadata.json` stays at `<dir>` and names the job for all.
 *
 * Every file is written whole under a temporary name, fsynced and renamed into place (`writeFileAtomic`), so a crash
 * leaves either the old or the new content. `load()` still falls back to the previous state when the newest does not
 * parse (a disk or filesystem that does not keep its promises), and says why.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { MlshipError, type Logger } from "../core/index.js";

export const CHECKPOINT_VERSION = 1;

/** How many state files are kept: the newest and the one before it, in case the newest turns out unreadable. */
const KEPT_STATES = 2;

/**
 * A takeover guard older than this was left by a process that died while taking over a stale lock; a lock file that
 * is not a lock (unreadable text) is taken over only once it is this old.
 */
const STALE_GUARD_MS = 10_000;

const NAME_PATTERN = /^[A-Za-z0-9_.-]+$/;

export interface CheckpointData {
  stream: string;
  /** The id the next micro-batch gets (so the batch this state follows was `nextBatchId - 1`). */
  nextBatchId: number;
  /** Each operator's saved state, by operator name (`aggregation:<name>`, `join`). */
  operators: Record<string, unknown>;
  /** ISO-8601. */
  updatedAt: string;
}

export interface CheckpointOptions {
  /** Gives this process its own lock, state and subfolders under `<dir>/instances/<instance>`. `[A-Za-z0-9_.-]+`. */
  instance?: string;
  /** Where `load()` says why it skipped an unreadable state file. */
  logger?: Logger;
}

interface LockHolder {
  pid: number;
  hostname: string;
  startedAt: string;
}

interface Metadata {
  stream: string;
  createdAt: string;
  version: number;
}

/**
 * Writes `data` to `file` so that the file has either its old content or all of `data`, even across a crash: the data
 * goes to `<file>.tmp-<pid>-<random>`, is fsynced, renamed over `file`, and the folder is fsynced so the rename lasts.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const temporary = temporaryName(file);
  try {
    const handle = await fsp.open(temporary, "wx");
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temporary, file);
  } catch (error) {
    await fsp.rm(temporary, { force: true });
    throw error;
  }
  await syncFolder(path.dirname(file));
}

export class Checkpoint {
  readonly #logger: Logger | undefined;
  readonly #lockFile: string;
  /** The lock file's text as this process wrote it: the lock is ours while the file still holds exactly this. */
  readonly #lockText: string;
  #onExit: (() => void) | null = null;

  private constructor(
    /** The folder holding this process's lock, state and subfolders (`<dir>` or `<dir>/instances/<instance>`). */
    readonly dir: string,
    readonly stream: string,
    lockText: string,
    logger: Logger | undefined,
  ) {
    this.#lockFile = path.join(dir, "lock");
    this.#lockText = lockText;
    this.#logger = logger;
  }

  /**
   * Creates the folder if needed, checks it belongs to `stream` and takes its lock. Fails with
   * MLSHIP_ERR_STREAM_CHECKPOINT when the checkpoint is another job's, or a live process holds the lock; a lock left by
   * a process that is gone (same host) is taken over.
   */
  static async open(dir: string, stream: string, options: CheckpointOptions = {}): Promise<Checkpoint> {
    if (!NAME_PATTERN.test(stream)) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `stream name "${stream}" is not valid: use letters, digits, _, . and -`, {
        field: "name",
      });
    }
    const instance = options.instance;
    if (instance !== undefined && (!NAME_PATTERN.test(instance) || instance === "." || instance === "..")) {
      throw new MlshipError("MLSHIP_ERR_CONFIG_INVALID", `instance "${instance}" is not valid: use letters, digits, _, . and -`, {
        field: "instance",
      });
    }
    const base = path.resolve(dir);
    const own = instance === undefined ? base : path.join(base, "instances", instance);
    await checkpointFs(own, "cannot be created", () => fsp.mkdir(path.join(own, "state"), { recursive: true }));
    await claimMetadata(base, stream);
    const lockText = await acquireLock(own);
    const checkpoint = new Checkpoint(own, stream, lockText, options.logger);
    checkpoint.#armExitRelease();
    await removeTemporaries(path.join(own, "state"));
    return checkpoint;
  }

  /**
   * The newest saved state that reads back whole, or null for a new checkpoint. A newest file that does not parse is
   * skipped (and logged) for the one before it; when state files exist but none reads, this fails rather than start
   * the job over from nothing.
   */
  load(): CheckpointData | null {
    const folder = path.join(this.dir, "state");
    let names: string[];
    try {
      names = fs.readdirSync(folder);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw checkpointError(this.dir, "cannot be read", error);
    }
    const ids = stateIds(names);
    const reasons: string[] = [];
    for (const id of ids) {
      const file = path.join(folder, `${id}.json`);
      let reason: string;
      try {
        const data = parseState(fs.readFileSync(file, "utf8"), this.stream);
        if (typeof data !== "string") return data;
        reason = data;
      } catch (error) {
        reason = (error as Error).message;
      }
      reasons.push(`${file}: ${reason}`);
      this.#logger?.warn({ file, reason }, "stream checkpoint: skipping an unreadable state file");
    }
    if (reasons.length > 0) {
      throw new MlshipError("MLSHIP_ERR_STREAM_CHECKPOINT", `checkpoint ${this.dir} has no readable state (${reasons.join("; ")})`);
    }
    return null;
  }

  /** Saves `data` as `state/<nextBatchId>.json` (atomically), then deletes all but the two newest states. */
  async save(data: CheckpointData): Promise<void> {
    if (!Number.isSafeInteger(data.nextBatchId) || data.nextBatchId < 0) {
      throw new MlshipError("MLSHIP_ERR_STREAM_CHECKPOINT", `checkpoint ${this.dir}: nextBatchId must be a non-negative integer, got ${data.nextBatchId}`);
    }
    const folder = path.join(this.dir, "state");
    await checkpointFs(this.dir, "cannot be written", async () => {
      await writeFileAtomic(path.join(folder, `${data.nextBatchId}.json`), `${JSON.stringify(data)}\n`);
      const ids = stateIds(await fsp.readdir(folder));
      for (const old of ids.slice(KEPT_STATES)) await fsp.rm(path.join(folder, `${old}.json`), { force: true });
    });
  }

  /** `mkdir -p` of a folder inside the checkpoint (for a source's or operator's own files); returns its path. */
  async subdir(...parts: string[]): Promise<string> {
    const target = path.resolve(this.dir, ...parts);
    const relative = path.relative(this.dir, target);
    if (parts.length === 0 || relative === "" || relative.startsWith("..") || path.isAbsolute(relative)) {
      throw new MlshipError("MLSHIP_ERR_STREAM_CHECKPOINT", `checkpoint ${this.dir}: "${parts.join("/")}" is not a folder inside it`);
    }
    await checkpointFs(this.dir, "cannot be written", () => fsp.mkdir(target, { recursive: true }));
    return target;
  }

  /** Releases the lock if it is still this process's. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#onExit === null) return;
    process.off("exit", this.#onExit);
    this.#onExit = null;
    let text: string;
    try {
      text = await fsp.readFile(this.#lockFile, "utf8");
    } catch {
      return;
    }
    if (text === this.#lockText) await fsp.rm(this.#lockFile, { force: true });
  }

  /** A process that exits without `close()` (an uncaught error, `process.exit`) still frees its checkpoint. */
  #armExitRelease(): void {
    const lockFile = this.#lockFile;
    const lockText = this.#lockText;
    this.#onExit = () => {
      try {
        if (fs.readFileSync(lockFile, "utf8") === lockText) fs.unlinkSync(lockFile);
      } catch {
        // Best effort: the process is exiting, and a lock left behind by a dead pid is taken over by the next open.
      }
    };
    process.on("exit", this.#onExit);
  }
}

// ---- metadata ----

/** Creates `<base>/metadata.json` for `stream`, or checks that the one there names `stream`. */
/**
 * The `nextBatchId` another instance of the job has saved, read from its folder under `<dir>/instances/<instance>` (0
 * when it saved nothing yet), or null while that instance may be running: its lock is held by a live process (or one
 * on another host, which cannot be checked), or its folder cannot be read here (an instance with a checkpoint
 * elsewhere). A stopped instance's state does not change until it starts again; claims.ts relies on that.
 */
export async function stoppedInstanceProgress(dir: string, stream: string, instance: string): Promise<number | null> {
  if (!NAME_PATTERN.test(instance) || instance === "." || instance === "..") return null;
  const own = path.join(path.resolve(dir), "instances", instance);
  try {
    const lock = await readLock(path.join(own, "lock"));
    if (lock !== null && (lock.holder === null || isLive(lock.holder))) return null;
  } catch {
    return null;
  }
  return savedProgress(own, stream);
}

/**
 * The `nextBatchId` another instance of the job has saved so far, running or not (0 when it saved nothing yet), or
 * null when its folder under `<dir>/instances/<instance>` cannot be read here. A running instance may save more at any
 * moment, so this is a lower bound; saves are atomic and `nextBatchId` only grows, so a batch below it stays saved.
 */
export async function instanceSavedProgress(dir: string, stream: string, instance: string): Promise<number | null> {
  if (!NAME_PATTERN.test(instance) || instance === "." || instance === "..") return null;
  return savedProgress(path.join(path.resolve(dir), "instances", instance), stream);
}

async function savedProgress(own: string, stream: string): Promise<number | null> {
  let names: string[];
  try {
    names = await fsp.readdir(path.join(own, "state"));
  } catch {
    return null;
  }
  for (const id of stateIds(names)) {
    try {
      const data = parseState(await fsp.readFile(path.join(own, "state", `${id}.json`), "utf8"), stream);
      if (typeof data !== "string") return data.nextBatchId;
    } catch {
      // Deleted while read (another save's cleanup) or unreadable: the one before it decides.
    }
  }
  return names.some((name) => name.endsWith(".json")) ? null : 0;
}

async function claimMetadata(base: string, stream: string): Promise<void> {
  const file = path.join(base, "metadata.json");
  const metadata: Metadata = { stream, createdAt: new Date().toISOString(), version: CHECKPOINT_VERSION };
  const created = await checkpointFs(base, "cannot be written", () => createExclusive(file, `${JSON.stringify(metadata)}\n`));
  if (created) return;
  let text: string;
  try {
    text = await fsp.readFile(file, "utf8");
  } catch (error) {
    throw checkpointError(base, "cannot be read", error);
  }
  let existing: Partial<Metadata>;
  try {
    existing = JSON.parse(text) as Partial<Metadata>;
  } catch (error) {
    throw checkpointError(base, `has an unreadable ${file}`, error);
  }
  if (typeof existing.stream !== "string") {
    throw new MlshipError("MLSHIP_ERR_STREAM_CHECKPOINT", `checkpoint ${base}: ${file} names no stream`);
  }
  if (existing.stream !== stream) {
    throw new MlshipError(
      "MLSHIP_ERR_STREAM_CHECKPOINT",
      `checkpoint ${base} belongs to stream "${existing.stream}", not "${stream}"; give stream "${stream}" its own checkpoint folder`,
    );
  }
  if (existing.version !== CHECKPOINT_VERSION) {
    throw new MlshipError(
      "MLSHIP_ERR_STREAM_CHECKPOINT",
      `checkpoint ${base} has version ${String(existing.version)}; this mlship reads version ${CHECKPOINT_VERSION}`,
    );
  }
}

// ---- lock ----

/** Takes `<dir>/lock` for this process; returns the text written there. */
async function acquireLock(dir: string): Promise<string> {
  const lockFile = path.join(dir, "lock");
  const holder: LockHolder = { pid: process.pid, hostname: os.hostname(), startedAt: new Date().toISOString() };
  const text = `${JSON.stringify(holder)}\n`;
  // A few rounds: another process may be taking over the same stale lock at the same time; one of us wins the link.
  for (let round = 0; round < 20; round++) {
    if (await checkpointFs(dir, "cannot be written", () => createExclusive(lockFile, text))) return text;
    const stale = await readLock(lockFile);
    if (stale === null) continue; // released between our attempt and the read
    if (stale.holder !== null && isLive(stale.holder)) throw inUse(dir, stale.holder);
    if (stale.holder === null && (await ageMs(lockFile)) < STALE_GUARD_MS) {
      // Not a lock (yet): on a filesystem without hard links another process may be writing it right now.
      await sleep(50);
      continue;
    }
    await takeOver(lockFile, stale.text);
  }
  throw new MlshipError(
    "MLSHIP_ERR_STREAM_CHECKPOINT",
    `checkpoint ${dir}: could not take its lock ${lockFile} (other processes keep taking it, or it holds something that is not a lock; delete it if no job runs on this checkpoint)`,
  );
}

/** The lock's text and holder (null holder: the text is not a lock, e.g. an empty file); null when there is no lock. */
async function readLock(lockFile: string): Promise<{ text: string; holder: LockHolder | null } | null> {
  let text: string;
  try {
    text = await fsp.readFile(lockFile, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw checkpointError(path.dirname(lockFile), "cannot be read", error);
  }
  try {
    const value = JSON.parse(text) as Partial<LockHolder>;
    if (Number.isSafeInteger(value.pid) && typeof value.hostname === "string" && typeof value.startedAt === "string") {
      return { text, holder: value as LockHolder };
    }
  } catch {
    // Not JSON: a lock written by something else, or torn; `createExclusive` never leaves a partial one.
  }
  return { text, holder: null };
}

/**
 * Whether the lock's holder may still be running. Only a process on this host can be checked; one on another host
 * (a shared filesystem) counts as live, and the error says to delete the lock if that host is gone.
 */
function isLive(holder: LockHolder): boolean {
  if (holder.hostname !== os.hostname()) return true;
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    // EPERM: the pid exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

function inUse(dir: string, holder: LockHolder): MlshipError {
  const lockFile = path.join(dir, "lock");
  const where = holder.hostname === os.hostname() ? "" : ` on host ${holder.hostname} (not checked from here; if that process is gone, delete ${lockFile})`;
  return new MlshipError(
    "MLSHIP_ERR_STREAM_CHECKPOINT",
    `checkpoint ${dir} is in use by pid ${holder.pid}${where} (started ${holder.startedAt}); stop it, or give each process its own --instance`,
    { details: { pid: holder.pid, hostname: holder.hostname, startedAt: holder.startedAt, lock: lockFile } },
  );
}

/**
 * Deletes a stale lock, under a guard file so that two processes taking over the same stale lock cannot delete each
 * other's fresh one: the lock is deleted only if it still holds the stale text. Whoever then links first owns it.
 */
async function takeOver(lockFile: string, staleText: string): Promise<void> {
  const guard = `${lockFile}.takeover`;
  if (!(await createExclusive(guard, `${process.pid}\n`))) {
    if ((await ageMs(guard)) > STALE_GUARD_MS) await fsp.rm(guard, { force: true });
    await sleep(25);
    return;
  }
  try {
    const current = await readLock(lockFile);
    if (current !== null && current.text === staleText) await fsp.rm(lockFile, { force: true });
  } finally {
    await fsp.rm(guard, { force: true });
  }
}

// ---- files ----

/**
 * Creates `file` holding `data` only if it does not exist; false if it does. The data is written and fsynced under a
 * temporary name and hard-linked into place, so nobody ever reads the file half-written.
 */
async function createExclusive(file: string, data: string): Promise<boolean> {
  const temporary = temporaryName(file);
  const handle = await fsp.open(temporary, "wx");
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fsp.link(temporary, file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    // A filesystem without hard links: an exclusive create, which a reader may briefly see empty.
    if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP" || code === "ENOSYS") return createExclusiveDirect(file, data);
    throw error;
  } finally {
    await fsp.rm(temporary, { force: true });
  }
  await syncFolder(path.dirname(file));
  return true;
}

async function createExclusiveDirect(file: string, data: string): Promise<boolean> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, "wx");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await syncFolder(path.dirname(file));
  return true;
}

/** How long ago the file was last modified; 0 when it is gone. */
async function ageMs(file: string): Promise<number> {
  try {
    return Date.now() - (await fsp.stat(file)).mtimeMs;
  } catch {
    return 0;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function temporaryName(file: string): string {
  return `${file}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
}

async function syncFolder(folder: string): Promise<void> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(folder, "r");
  } catch {
    return; // Some platforms cannot open a folder; the rename itself is still atomic there.
  }
  try {
    await handle.sync();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EINVAL" && code !== "EISDIR" && code !== "EPERM") throw error;
  } finally {
    await handle.close();
  }
}

/** Deletes `*.tmp-*` files a crashed `writeFileAtomic` left behind (this process holds the lock, so none is live). */
async function removeTemporaries(folder: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(folder);
  } catch {
    return;
  }
  for (const name of names) if (name.includes(".tmp-")) await fsp.rm(path.join(folder, name), { force: true });
}

/** The numeric ids of `<id>.json` state files, newest (highest) first. */
function stateIds(names: readonly string[]): number[] {
  const ids: number[] = [];
  for (const name of names) {
    const match = /^(\d+)\.json$/.exec(name);
    if (match !== null) ids.push(Number(match[1]));
  }
  return ids.sort((x, y) => y - x);
}

/** A state file's data, or why it is not one. */
function parseState(text: string, stream: string): CheckpointData | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return `not valid JSON (${(error as Error).message})`;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return "not a JSON object";
  const data = value as Partial<CheckpointData>;
  if (data.stream !== stream) return `names stream ${JSON.stringify(data.stream)}, not "${stream}"`;
  if (!Number.isSafeInteger(data.nextBatchId) || (data.nextBatchId as number) < 0) return "has no valid nextBatchId";
  if (data.operators === null || typeof data.operators !== "object" || Array.isArray(data.operators)) return "has no operators object";
  if (typeof data.updatedAt !== "string") return "has no updatedAt";
  return data as CheckpointData;
}

async function checkpointFs<T>(dir: string, what: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof MlshipError) throw error;
    throw checkpointError(dir, what, error);
  }
}

function checkpointError(dir: string, what: string, cause: unknown): MlshipError {
  return new MlshipError("MLSHIP_ERR_STREAM_CHECKPOINT", `checkpoint ${dir} ${what}: ${(cause as Error).message}`, { cause });
}
