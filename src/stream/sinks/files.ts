/**
 * Stream sinks into a folder: one JSON Lines or Parquet file per micro-batch,
 * `part-<batchId, 8 digits>-<12 hex of sha256 over the sorted row ids>.<jsonl|parquet>`.
 *
 * Exactly once on the row id, across retries and restarts, without holding every id in memory: a ledger
 * (`_ledger.sqlite` in the folder; the leading `_` hides it from folder sources) records each id written and the
 * file holding it. A write
 *   1. drops the rows whose id the ledger knows (a replayed micro-batch writes nothing new),
 *   2. writes `.tmp-<name>` (hidden from readers by its leading dot) and fsyncs it,
 *   3. in one ledger transaction records the ids and the file as `pending`,
 *   4. renames `.tmp-<name>` to `<name>` and marks the file `done`.
 * `open()` finishes what a crash interrupted: a pending file still under its temporary name is renamed, one already
 * renamed is marked done, and a `.tmp-` file the ledger does not know (a crash before step 3: its rows were not
 * recorded, so the replayed batch writes them again) is deleted.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { MlshipError, type Logger } from "../../core/index.js";
import type { FolderSinkSpec, OutputRow, SinkWriteContext, StreamSink } from "../types.js";
import { outputValue } from "./sql.js";

export const LEDGER_FILE = "_ledger.sqlite";
const TMP_PREFIX = ".tmp-";
const ID_COLUMN = "_id";
const LEDGER_BUSY_TIMEOUT_MS = 5000;
/** Rounds of "another process recorded some of these ids first" before giving up on a write. */
const WRITE_ROUNDS = 3;

/** `part-00000042-0123456789ab.jsonl`: the batch number, then a digest of the ids the file holds. */
export function partFileName(batchId: number, ids: readonly string[], format: "jsonl" | "parquet"): string {
  const hash = createHash("sha256");
  const sorted = [...ids].sort();
  for (const id of sorted) {
    hash.update(id);
    hash.update("\n");
  }
  return `part-${String(batchId).padStart(8, "0")}-${hash.digest("hex").slice(0, 12)}.${format}`;
}

export function createFolderSink(spec: FolderSinkSpec, options: { logger: Logger }): StreamSink {
  return new FolderSink(spec.kind, path.resolve(spec.path), options.logger);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
}

/** A row that the ledger has not seen, with its values normalized. */
interface NewRow {
  id: string;
  fields: Record<string, unknown>;
}

class FolderSink implements StreamSink {
  readonly kind: "jsonl" | "parquet";
  readonly description: string;
  readonly #folder: string;
  readonly #logger: Logger;
  #ledger: BetterSqlite3.Database | undefined;
  #statements:
    | {
        knownId: BetterSqlite3.Statement<[string], number>;
        insertId: BetterSqlite3.Statement<[string, string]>;
        insertFile: BetterSqlite3.Statement<[string]>;
        fileState: BetterSqlite3.Statement<[string], string>;
        markDone: BetterSqlite3.Statement<[string]>;
        pending: BetterSqlite3.Statement<[], string>;
        forgetIds: BetterSqlite3.Statement<[string]>;
        forgetFile: BetterSqlite3.Statement<[string]>;
      }
    | undefined;
  #closed = false;
  /** Writes run one after another: a write's ledger check must see the previous write's ids. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(kind: "jsonl" | "parquet", folder: string, logger: Logger) {
    this.kind = kind;
    this.#folder = folder;
    this.#logger = logger;
    this.description = `${kind} folder ${folder}`;
  }

  async open(): Promise<void> {
    if (this.#closed) throw this.#closedError();
    if (this.#ledger !== undefined) return;
    try {
      await fsp.mkdir(this.#folder, { recursive: true });
      const ledger = new BetterSqlite3(path.join(this.#folder, LEDGER_FILE), { timeout: LEDGER_BUSY_TIMEOUT_MS });
      try {
        ledger.pragma(`busy_timeout = ${LEDGER_BUSY_TIMEOUT_MS}`);
        ledger.pragma("journal_mode = WAL");
        // FULL: a recorded id must survive a power cut as surely as the renamed file does.
        ledger.pragma("synchronous = FULL");
        ledger.exec(
          "create table if not exists ids (_id text primary key, file text not null) without rowid;" +
            "create table if not exists files (name text primary key, state text not null);",
        );
        this.#statements = {
          knownId: ledger.prepare<[string], number>("select 1 from ids where _id = ?").pluck(),
          insertId: ledger.prepare<[string, string]>("insert into ids (_id, file) values (?, ?) on conflict (_id) do nothing"),
          insertFile: ledger.prepare<[string]>("insert into files (name, state) values (?, 'pending')"),
          fileState: ledger.prepare<[string], string>("select state from files where name = ?").pluck(),
          markDone: ledger.prepare<[string]>("update files set state = 'done' where name = ?"),
          pending: ledger.prepare<[], string>("select name from files where state = 'pending' order by name").pluck(),
          forgetIds: ledger.prepare<[string]>("delete from ids where file = ?"),
          forgetFile: ledger.prepare<[string]>("delete from files where name = ?"),
        };
      } catch (error) {
        ledger.close();
        throw error;
      }
      this.#ledger = ledger;
      await this.#recover();
    } catch (error) {
      this.#ledger?.close();
      this.#ledger = undefined;
      this.#statements = undefined;
      throw this.#unavailable(error, "cannot be opened");
    }
  }

  /** Completes what a crash left half-done (see the top of this file). */
  async #recover(): Promise<void> {
    const statements = this.#statements!;
    for (const name of statements.pending.all()) {
      const tmp = path.join(this.#folder, TMP_PREFIX + name);
      const final = path.join(this.#folder, name);
      if (fs.existsSync(tmp)) {
        await fsp.rename(tmp, final);
        await this.#syncFolder();
        statements.markDone.run(name);
        this.#logger.info({ sink: this.description, file: name }, "stream sink finished writing a file interrupted by a crash");
      } else if (fs.existsSync(final)) {
        statements.markDone.run(name);
      } else {
        // Neither name exists (deleted by hand, or another process's write that is undoing itself): its ids were
        // never durably written, so forget them and let the replayed batch write them again.
        this.#forget(name);
        this.#logger.warn({ sink: this.description, file: name }, "stream sink forgot a pending file that no longer exists");
      }
    }
    for (const entry of await fsp.readdir(this.#folder)) {
      if (!entry.startsWith(TMP_PREFIX)) continue;
      const name = entry.slice(TMP_PREFIX.length);
      // Known to the ledger (recorded by another process since the loop above): that process renames it.
      if (statements.fileState.get(name) !== undefined) continue;
      await fsp.rm(path.join(this.#folder, entry), { force: true });
      this.#logger.info({ sink: this.description, file: entry }, "stream sink removed a temporary file left by a crash");
    }
  }

  #forget(name: string): void {
    const statements = this.#statements!;
    this.#ledger!.transaction(() => {
      statements.forgetIds.run(name);
      statements.forgetFile.run(name);
    }).immediate();
  }

  write(rows: readonly OutputRow[], context: SinkWriteContext): Promise<void> {
    const run = this.#queue.then(() => this.#write(rows, context));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #write(rows: readonly OutputRow[], context: SinkWriteContext): Promise<void> {
    if (this.#closed) throw this.#closedError();
    if (this.#ledger === undefined) {
      throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `stream sink ${this.description} is not open: call open() first`, {
        details: { sink: this.description },
      });
    }
    if (rows.length === 0) return;
    for (let round = 1; ; round += 1) {
      const fresh = this.#newRows(rows);
      if (fresh.length === 0) return;
      if (await this.#writeFile(fresh, context)) return;
      if (round >= WRITE_ROUNDS) {
        throw new MlshipError("MLSHIP_ERR_STREAM_UNAVAILABLE", `stream sink ${this.description}: another process keeps writing the same ids`, {
          details: { sink: this.description },
          retryAfterSeconds: 1,
        });
      }
    }
  }

  /** Rows whose id the ledger does not know, one per id (the last one wins), values normalized. */
  #newRows(rows: readonly OutputRow[]): NewRow[] {
    const knownId = this.#statements!.knownId;
    const byId = new Map<string, NewRow>();
    try {
      for (const row of rows) {
        if (ID_COLUMN in row.fields) {
          throw new MlshipError("MLSHIP_ERR_INPUT_INVALID", `field "${ID_COLUMN}" is reserved for the row id in ${this.description}`, {
            field: ID_COLUMN,
          });
        }
        if (byId.has(row.id)) byId.delete(row.id);
        else if (knownId.get(row.id) !== undefined) continue;
        // The row's own object when nothing needed normalizing (the usual case): no copy per row.
        byId.set(row.id, { id: row.id, fields: outputValue(row.fields) as Record<string, unknown> });
      }
    } catch (error) {
      throw this.#unavailable(error, "cannot be read");
    }
    return [...byId.values()];
  }

  /** Steps 2-4 of the top comment. False when another process recorded some of the ids first (nothing was written). */
  async #writeFile(rows: readonly NewRow[], context: SinkWriteContext): Promise<boolean> {
    const statements = this.#statements!;
    const name = partFileName(
      context.batchId,
      rows.map((row) => row.id),
      this.kind,
    );
    const tmp = path.join(this.#folder, TMP_PREFIX + name);
    const final = path.join(this.#folder, name);
    const content = this.kind === "jsonl" ? jsonLines(rows) : await parquetFile(rows);
    try {
      await writeDurably(tmp, content);
    } catch (error) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw this.#unavailable(error, "cannot be written");
    }
    try {
      this.#ledger!.transaction(() => {
        statements.insertFile.run(name);
        for (const row of rows) {
          if (statements.insertId.run(row.id, name).changes === 0) {
            // Another process wrote this id since #newRows looked: undo, and try again with what is left.
            throw new IdTaken();
          }
        }
      }).immediate();
    } catch (error) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      if (error instanceof IdTaken) return false;
      throw this.#unavailable(error, "cannot be recorded in its ledger");
    }
    try {
      await fsp.rename(tmp, final);
    } catch (error) {
      if (!isMissing(error) || !fs.existsSync(final)) {
        // The temporary file is gone (another process's open() removed it before this one recorded it): the ids
        // are not durably written, so forget them; the caller's retry writes them again.
        try {
          this.#forget(name);
        } catch {
          // open() forgets a pending file that has no file at the next start.
        }
        throw this.#unavailable(error, "cannot be written");
      }
      // Another process's open() finished the rename for us.
    }
    try {
      await this.#syncFolder();
      statements.markDone.run(name);
    } catch (error) {
      // The file is in place and its ids recorded: open() marks it done at the next start.
      throw this.#unavailable(error, "cannot be recorded in its ledger");
    }
    return true;
  }

  /** Makes the rename itself durable. */
  async #syncFolder(): Promise<void> {
    const handle = await fsp.open(this.#folder, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    this.#ledger?.close();
    this.#ledger = undefined;
    this.#statements = undefined;
  }

  #unavailable(error: unknown, what: string): MlshipError {
    if (error instanceof MlshipError) return error;
    return new MlshipError("MLSHIP_ERR_STREAM_UNAVAILABLE", `stream sink ${this.description} ${what}: ${errorText(error)}`, {
      field: "path",
      cause: error,
      details: { sink: this.description },
      retryAfterSeconds: 1,
    });
  }

  #closedError(): MlshipError {
    return new MlshipError("MLSHIP_ERR_INPUT_INVALID", `stream sink ${this.description} is closed`, { details: { sink: this.description } });
  }
}

class IdTaken extends Error {}

async function writeDurably(file: string, content: string | Uint8Array): Promise<void> {
  const handle = await fsp.open(file, "w");
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function jsonLines(rows: readonly NewRow[]): string {
  const lines = new Array<string>(rows.length);
  for (let index = 0; index < rows.length; index += 1) {
    const row = rows[index]!;
    // `{"_id":...,` spliced before the fields' own JSON: no spread copy of every row.
    const fields = JSON.stringify(row.fields);
    lines[index] = `{"${ID_COLUMN}":${JSON.stringify(row.id)}${fields.length > 2 ? "," : ""}${fields.slice(1)}`;
  }
  return lines.join("\n") + "\n";
}

// Parquet ----------------------------------------------------------------------------------------------------------

type ParquetKind = "DOUBLE" | "STRING" | "BOOLEAN" | "JSON";

/**
 * A column's type from its values: numbers DOUBLE (integers too, so a column keeps one type across files whatever a
 * batch's values happen to be), text STRING, booleans BOOLEAN, arrays and objects JSON; a column mixing arrays or
 * objects with anything is JSON, one mixing other scalars STRING; a column null throughout STRING.
 */
function parquetKind(values: readonly unknown[]): ParquetKind {
  let kind: ParquetKind | undefined;
  for (const value of values) {
    if (value === null) continue;
    const here: ParquetKind =
      typeof value === "number" ? "DOUBLE" : typeof value === "string" ? "STRING" : typeof value === "boolean" ? "BOOLEAN" : "JSON";
    if (here === "JSON") return "JSON";
    if (kind === undefined) kind = here;
    else if (kind !== here) kind = "STRING";
  }
  return kind ?? "STRING";
}

/** Parquet bytes of `rows`; hyparquet-writer is loaded by the first Parquet part file (JSON Lines sinks never load it). */
async function parquetFile(rows: readonly NewRow[]): Promise<Uint8Array> {
  const { parquetWriteBuffer } = await import("hyparquet-writer");
  const names: string[] = [];
  const values = new Map<string, unknown[]>();
  for (let index = 0; index < rows.length; index += 1) {
    const fields = rows[index]!.fields;
    for (const name in fields) {
      let column = values.get(name);
      if (column === undefined) {
        column = new Array<unknown>(rows.length).fill(null);
        values.set(name, column);
        names.push(name);
      }
      column[index] = fields[name];
    }
  }
  const columnData = [
    { name: ID_COLUMN, data: rows.map((row) => row.id), type: "STRING" as const, nullable: false },
    ...names.map((name) => {
      const data = values.get(name)!;
      const type = parquetKind(data);
      // A STRING column mixing scalars holds each as text.
      if (type === "STRING") for (let index = 0; index < data.length; index += 1) if (data[index] !== null) data[index] = String(data[index]);
      return { name, data, type };
    }),
  ];
  return new Uint8Array(parquetWriteBuffer({ columnData, createdBy: "mlship" }));
}
