/**
 * Which instance counts a record, for processes of one job that share a NATS durable (`--instance`). A message that
 * one process holds past the ack wait is redelivered to another (at-least-once delivery, legitimately: a stalled
 * event loop, a GC pause, a slow disk), and without a shared record both processes' operators would count it. So
 * before the operators see a batch, the engine claims its record ids in the metadata store (table `stream_claims`,
 * shared by every process of the job), in one transaction: the first instance to claim an id owns it, and only the
 * owner's operators count it. Predictions are still written by whoever scored the record (sinks are idempotent).
 *
 * A claim names the owner's batch id. The owner's checkpoint is what commits the count: a claim whose batch id is
 * below the owner's `nextBatchId` has been counted (and is skipped if the record comes again to the owner); a claim at
 * or above it belongs to a batch a crash (or a failed batch) cut off. The owner releases those when it starts again;
 * until then another instance that gets such a record takes the claim over, but only when it can tell that the owner
 * is not running and has not saved that batch (`ownerProgress`: the owner's folder in the shared checkpoint, its lock
 * and its newest state). While the owner may be running, its claim stands: it is still working on that batch. The
 * owner's state is read outside the store, so both decisions are compare-and-sets on the claim as it was read: an owner
 * that started again in between (releasing the claim, or claiming the record anew) sends the record round again.
 *
 * A claim left to an owner that may still be running is not settled yet: the owner may still stop without saving that
 * batch (a crash, a batch that fails its retries), and its restart then releases the claim. If the other instance
 * acked the record meanwhile, nobody would count it. So such a claim is reported as pending unless the owner's saved
 * progress (`ownerSaved`, read even while it runs) already holds the claiming batch: the engine hands pending records
 * back to the source unacked, and when they come again the claim is final (the owner saved it), taken over (the
 * owner stopped without saving it) or still pending (handed back again, a bounded number of times).
 * Claims are forgotten after CLAIM_RETENTION_MS.
 */
import type { Kysely } from "kysely";
import { MlshipError } from "../core/index.js";
import { mapStoreError, type Database, type SqlStore } from "../store/index.js";

/** How long a claim is kept: far past any ack wait (plus in-progress extensions) a redelivery could follow. */
export const CLAIM_RETENTION_MS = 60 * 60_000;
/** Old claims are deleted at most this often. */
const PRUNE_EVERY_MS = 5 * 60_000;
/** Rows per statement: five parameters each stays far below both dialects' limits. */
const CHUNK = 500;
/** Rounds of claiming for ids whose claims other instances keep changing meanwhile (each round needs an owner restart). */
const MAX_ROUNDS = 5;

interface ClaimsTable {
  stream: string;
  record_id: string;
  instance: string;
  batch_id: number;
  claimed_at: number;
}

type ClaimTables = { stream_claims: ClaimsTable };

/** A claim as read (numbers: PostgreSQL returns bigint as a string). */
interface Claim {
  record_id: string;
  instance: string;
  batch_id: number;
  claimed_at: number;
}

export class RecordClaims {
  readonly #store: SqlStore;
  readonly #stream: string;
  readonly #instance: string;
  #prunedAt = 0;

  readonly #ownerProgress: (instance: string) => Promise<number | null>;
  readonly #ownerSaved: ((instance: string) => Promise<number | null>) | undefined;

  /**
   * `ownerProgress(instance)`: the `nextBatchId` another instance has saved, once it is known not to be running;
   * null while it may be running or cannot be told. `ownerSaved(instance)`: the `nextBatchId` it has saved so far,
   * running or not (null when it cannot be read); without it no claim is reported pending (a claim left to a running
   * owner is taken as settled, as before).
   */
  constructor(
    store: SqlStore,
    options: {
      stream: string;
      instance: string;
      ownerProgress: (instance: string) => Promise<number | null>;
      ownerSaved?: (instance: string) => Promise<number | null>;
    },
  ) {
    this.#store = store;
    this.#stream = options.stream;
    this.#instance = options.instance;
    this.#ownerProgress = options.ownerProgress;
    this.#ownerSaved = options.ownerSaved;
  }

  /**
   * Releases this instance's claims of batches its checkpoint does not hold (`batch_id >= nextBatchId`): a crash cut
   * those batches off, so their records were not counted. The table is migration 0014's.
   * @throws MLSHIP_ERR_STORE_UNAVAILABLE (or another store error) when the metadata store cannot be written
   */
  async open(nextBatchId: number): Promise<void> {
    await this.#write(async (db) => {
      await db
        .deleteFrom("stream_claims")
        .where("stream", "=", this.#stream)
        .where("instance", "=", this.#instance)
        .where("batch_id", ">=", nextBatchId)
        .execute();
    });
    await this.#prune(Date.now());
  }

  /**
   * Claims `ids` for batch `batchId` and returns those this instance is to count now: newly claimed ones, and ones it
   * claimed for this same batch id before (a retried or replayed batch). Ids another instance claimed, or this one
   * claimed in an earlier (checkpointed) batch, are left out. Safe to call again for the same batch.
   *
   * A foreign claim is judged on the owner's progress, read from files outside the store, so the owner may start again
   * between that read and the decision: its restart releases the claims of batches it never saved (and may save new
   * batches at once). A claim left to its owner must therefore still be there, unchanged, when this instance decides,
   * or the record would be acked here and counted by nobody; ids whose claim moved meanwhile are claimed again.
   * @throws MLSHIP_ERR_STORE_UNAVAILABLE (or another store error) when the metadata store cannot be written, or when
   *   claims keep changing under this instance for MAX_ROUNDS rounds (the batch is retried)
   */
  async claim(ids: readonly string[], batchId: number): Promise<Set<string>> {
    return (await this.claimBatch(ids, batchId)).mine;
  }

  /**
   * As `claim`, and also returns the ids left to an owner that may still be running and has not saved the claiming
   * batch yet (`pending`, see the file comment): neither counted here nor settled, so they must not be acked here.
   * @throws as `claim`
   */
  async claimBatch(ids: readonly string[], batchId: number): Promise<{ mine: Set<string>; pending: Set<string> }> {
    const mine = new Set<string>();
    const unsettled = new Set<string>();
    if (ids.length === 0) return { mine, pending: unsettled };
    const now = Date.now();
    // Sorted: two instances claiming overlapping ids lock their rows in the same order (no deadlock in PostgreSQL).
    let pending = [...new Set(ids)].sort();
    for (let round = 0; pending.length > 0; round++) {
      if (round === MAX_ROUNDS) {
        throw new MlshipError(
          "MLSHIP_ERR_STORE_UNAVAILABLE",
          `stream ${this.#stream}: the claims of ${pending.length} records kept changing while instance ${this.#instance} claimed them`,
        );
      }
      const foreign = await this.#insertAndRead(pending, batchId, now, mine);
      // An id claimed again this round is judged afresh.
      for (const id of pending) unsettled.delete(id);
      pending = foreign.length === 0 ? [] : await this.#settleForeign(foreign, batchId, now, mine, unsettled);
    }
    if (now - this.#prunedAt >= PRUNE_EVERY_MS) await this.#prune(now);
    return { mine, pending: unsettled };
  }

  /** Claims the free ids among `ids`; adds this batch's own to `mine` and returns the claims other instances hold. */
  async #insertAndRead(ids: readonly string[], batchId: number, now: number, mine: Set<string>): Promise<Claim[]> {
    const foreign: Claim[] = [];
    await this.#write(async (db) => {
      for (let start = 0; start < ids.length; start += CHUNK) {
        const chunk = ids.slice(start, start + CHUNK);
        await db
          .insertInto("stream_claims")
          .values(chunk.map((id) => ({ stream: this.#stream, record_id: id, instance: this.#instance, batch_id: batchId, claimed_at: now })))
          .onConflict((oc) => oc.columns(["stream", "record_id"]).doNothing())
          .execute();
        const owners = await db
          .selectFrom("stream_claims")
          .select(["record_id", "instance", "batch_id", "claimed_at"])
          .where("stream", "=", this.#stream)
          .where("record_id", "in", chunk)
          .execute();
        for (const owner of owners) {
          // bigint comes back as a string from PostgreSQL.
          const claim: Claim = { record_id: owner.record_id, instance: owner.instance, batch_id: Number(owner.batch_id), claimed_at: Number(owner.claimed_at) };
          if (claim.instance === this.#instance) {
            if (claim.batch_id === batchId) mine.add(claim.record_id);
          } else {
            foreign.push(claim);
          }
        }
      }
    });
    return foreign;
  }

  /**
   * Takes over claims of instances that are not running and never saved the claiming batch (see the file comment), and
   * leaves the others to their owners. Both are compare-and-sets on the claim as read, done as UPDATEs so that in
   * PostgreSQL they wait for an owner's uncommitted release and see its outcome (a plain SELECT would not). Returns
   * the ids whose claim changed meanwhile (released by an owner that started again, or claimed anew): they are to be
   * claimed again.
   */
  async #settleForeign(claims: readonly Claim[], batchId: number, now: number, mine: Set<string>, unsettled: Set<string>): Promise<string[]> {
    const progress = new Map<string, number | null>();
    for (const claim of claims) {
      if (!progress.has(claim.instance)) progress.set(claim.instance, await this.#ownerProgress(claim.instance));
    }
    // Owners that may be running: what they saved so far, read after the claims (a claim below it is final).
    const savedSoFar = new Map<string, number | null>();
    if (this.#ownerSaved !== undefined) {
      for (const [owner, stopped] of progress) if (stopped === null) savedSoFar.set(owner, await this.#ownerSaved(owner));
    }
    const changed: string[] = [];
    const orphans: Claim[] = [];
    const standing = new Map<string, Claim>();
    for (const claim of claims) {
      const saved = progress.get(claim.instance);
      if (saved !== null && saved !== undefined && claim.batch_id >= saved) orphans.push(claim);
      else standing.set(claim.record_id, claim);
    }
    await this.#write(async (db) => {
      // Left to their owners: touched (claimed_at set to itself) in chunks, and kept only where still as read.
      const keys = [...standing.keys()];
      for (let start = 0; start < keys.length; start += CHUNK) {
        const rows = await db
          .updateTable("stream_claims")
          .set((eb) => ({ claimed_at: eb.ref("claimed_at") }))
          .where("stream", "=", this.#stream)
          .where("record_id", "in", keys.slice(start, start + CHUNK))
          .returning(["record_id", "instance", "batch_id", "claimed_at"])
          .execute();
        const current = new Map(rows.map((row) => [row.record_id, row]));
        for (const key of keys.slice(start, start + CHUNK)) {
          const read = standing.get(key) as Claim;
          const row = current.get(key);
          const same = row !== undefined && row.instance === read.instance && Number(row.batch_id) === read.batch_id && Number(row.claimed_at) === read.claimed_at;
          if (!same) {
            changed.push(key);
          } else if (this.#ownerSaved !== undefined && progress.get(read.instance) === null) {
            // Left to an owner that may be running: settled only once its saved progress holds the claiming batch. An
            // unreadable progress (null) cannot say so either.
            const ownerSaved = savedSoFar.get(read.instance);
            if (ownerSaved === null || ownerSaved === undefined || read.batch_id >= ownerSaved) unsettled.add(key);
          }
        }
      }
      for (const claim of orphans) {
        const result = await db
          .updateTable("stream_claims")
          .set({ instance: this.#instance, batch_id: batchId, claimed_at: now })
          .where("stream", "=", this.#stream)
          .where("record_id", "=", claim.record_id)
          .where("instance", "=", claim.instance)
          .where("batch_id", "=", claim.batch_id)
          .where("claimed_at", "=", claim.claimed_at)
          .executeTakeFirst();
        if (BigInt(result.numUpdatedRows) > 0n) mine.add(claim.record_id);
        else changed.push(claim.record_id);
      }
    });
    return changed;
  }

  async #prune(now: number): Promise<void> {
    this.#prunedAt = now;
    await this.#write((db) =>
      db.deleteFrom("stream_claims").where("stream", "=", this.#stream).where("claimed_at", "<", now - CLAIM_RETENTION_MS).execute(),
    );
  }

  async #write(fn: (db: Kysely<Database & ClaimTables>) => Promise<unknown>): Promise<void> {
    try {
      await this.#store.write((db) => fn(db.withTables<ClaimTables>()));
    } catch (error) {
      throw mapStoreError(this.#store.location, error);
    }
  }
}

