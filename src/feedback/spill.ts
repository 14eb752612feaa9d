/**
 * The prediction log's spill folder: rows the store could not take (down, slow, or the memory buffer full) wait
 * here as JSON Lines files, one per flush, named so that they sort by time, until they are replayed.
 */
import { appendFile, mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { PredictionRecord } from "./types.js";

const FILE_PATTERN = /^predictions-\d{15}-\d{8}-\d+\.jsonl$/;

export interface SpillFileInfo {
  name: string;
  rows: number;
  bytes: number;
}

/** What `append` did with the rows it was given. */
export interface SpillAppendResult {
  written: number;
  /** Rows refused because the folder would have grown past its bound. */
  refused: number;
}

/** The rows of a spill file, and how many of its lines could not be read (a line cut short by a crash). */
export interface SpillContents {
  records: PredictionRecord[];
  corrupt: number;
}

/** A bounded folder of spill files; the only writer of its files is this object (one process per folder). */
export class SpillFolder {
  private readonly files = new Map<string, SpillFileInfo>();
  /** Files being appended to right now: replays leave them alone. */
  private readonly held = new Set<string>();
  private sequence = 0;
  private bytes = 0;
  private rows = 0;

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {}

  /** Creates the folder and takes stock of files left by an earlier process (a crash, or a store that stayed down). */
  async open(): Promise<SpillFileInfo[]> {
    await mkdir(this.dir, { recursive: true });
    const found: SpillFileInfo[] = [];
    for (const name of (await readdir(this.dir)).filter((n) => FILE_PATTERN.test(n)).sort()) {
      if (this.files.has(name)) continue;
      const file = path.join(this.dir, name);
      const [info, text] = await Promise.all([stat(file), readFile(file, "utf8")]);
      const entry = { name, rows: countLines(text), bytes: info.size };
      // Names stay unique (and later) even when a file left here was made in this same millisecond.
      this.sequence = Math.max(this.sequence, Number(name.split("-")[2]));
      this.track(entry);
      found.push(entry);
    }
    return found;
  }

  get backlogRows(): number {
    return this.rows;
  }

  get backlogBytes(): number {
    return this.bytes;
  }

  /** A new file name, later than every earlier one from this folder object. */
  newName(now = Date.now()): string {
    this.sequence += 1;
    return `predictions-${String(now).padStart(15, "0")}-${String(this.sequence).padStart(8, "0")}-${process.pid}.jsonl`;
  }

  /**
   * Appends rows to file `name` as JSON Lines (the caller holds the file, see `hold`), as many as fit under the folder's bound (the rest are refused and
   * reported). No fsync: the spill guards against a store outage, and a line cut short by a crash is skipped on replay.
   */
  async append(name: string, records: readonly PredictionRecord[]): Promise<SpillAppendResult> {
    let text = "";
    let bytes = 0;
    let written = 0;
    for (const record of records) {
      const line = `${JSON.stringify(record)}\n`;
      const size = Buffer.byteLength(line);
      if (this.bytes + bytes + size > this.maxBytes) break;
      text += line;
      bytes += size;
      written += 1;
    }
    if (written === 0) return { written: 0, refused: records.length };
    await appendFile(path.join(this.dir, name), text, "utf8");
    const entry = this.files.get(name);
    if (entry === undefined) this.track({ name, rows: written, bytes });
    else {
      entry.rows += written;
      entry.bytes += bytes;
      this.rows += written;
      this.bytes += bytes;
    }
    return { written, refused: records.length - written };
  }

  /** Files waiting to be replayed, oldest first (files being written are left out). */
  waiting(): SpillFileInfo[] {
    return [...this.files.values()].filter((f) => !this.held.has(f.name)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * Marks a file busy: its writer holds it from its first append to its last, a replay while it reads it. Replays
   * only take files nobody holds, and writers only append to files they hold, so neither sees the other's half.
   */
  hold(name: string): void {
    this.held.add(name);
  }

  release(name: string): void {
    this.held.delete(name);
  }

  async read(name: string): Promise<SpillContents> {
    const text = await readFile(path.join(this.dir, name), "utf8");
    const records: PredictionRecord[] = [];
    let corrupt = 0;
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      try {
        const value = JSON.parse(line) as unknown;
        if (isRecordLike(value)) records.push(value);
        else corrupt += 1;
      } catch {
        corrupt += 1;
      }
    }
    return { records, corrupt };
  }

  /** Deletes a replayed file. */
  async remove(name: string): Promise<void> {
    await rm(path.join(this.dir, name), { force: true });
    this.forget(name);
  }

  /** Stops tracking a file that vanished. */
  forget(name: string): void {
    const entry = this.files.get(name);
    if (entry === undefined) return;
    this.files.delete(name);
    this.rows -= entry.rows;
    this.bytes -= entry.bytes;
  }

  private track(entry: SpillFileInfo): void {
    this.files.set(entry.name, entry);
    this.rows += entry.rows;
    this.bytes += entry.bytes;
  }
}

function countLines(text: string): number {
  let n = 0;
  for (const line of text.split("\n")) if (line.trim() !== "") n += 1;
  return n;
}

function isRecordLike(value: unknown): value is PredictionRecord {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Record<string, unknown>;
  return typeof r.requestId === "string" && typeof r.row === "number" && typeof r.model === "string" &&
    typeof r.version === "number" && typeof r.at === "string" && typeof r.outputs === "string";
}
