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
 * and its newest state). While the owner may be running, its claim stands: it is still working on that batch.
 * Claims are forgotten after CLAIM_RETENTION_MS.
 */
import type { Kysely } from "kysely";
import { mapStoreError, type Database, type SqlStore } from "../store/index.js";

/** How long a claim is kept: far past any ack wait (plus in-progress extensions) a redelivery could follow. */
export const CLAIM_RETENTION_MS = 60 * 60_000;
/** Old claims are deleted at most this often. */
const PRUNE_EVERY_MS = 5 * 60_000;
/** Rows per statement: five parameters each stays far below both dialects' limits. */
const CHUNK = 500;

interface ClaimsTable {
  stream: string;
  record_id: string;
  instance: string;
  batch_id: number;
  claimed_at: number;
}

type ClaimTables = { stream_claims: ClaimsTable };

export class RecordClaims {
  readonly #store: SqlStore;
  readonly #stream: string;
  readonly #instance: string;
  #prunedAt = 0;

  readonly #ownerProgress: (instance: string) => Promise<number | null>;

  /**
   * `ownerProgress(instance)`: the `nextBatchId` another instance has saved, once it is known not to be running;
   * null while it may be running or cannot be told.
   */
  constructor(store: SqlStore, options: { stream: string; instance: string; ownerProgress: (instance: string) => Promise<number | null> }) {
    this.#store = store;
    this.#stream = options.stream;
    this.#instance = options.instance;
    this.#ownerProgress = options.ownerProgress;
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
   * @throws MLSHIP_ERR_STORE_UNAVAILABLE (or another store error) when the metadata store cannot be written
   */
  async claim(ids: readonly string[], batchId: number): Promise<Set<string>> {
    const mine = new Set<string>();
    if (ids.length === 0) return mine;
    const now = Date.now();
    const unique = [...new Set(ids)];
    const foreign: Array<{ record_id: string; instance: string; batch_id: number | string; claimed_at: number | string }> = [];
    await this.#write(async (db) => {
      for (let start = 0; start < unique.length; start += CHUNK) {
        const chunk = unique.slice(start, start + CHUNK);
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
          if (owner.instance === this.#instance) {
            if (Number(owner.batch_id) === batchId) mine.add(owner.record_id);
          } else {
            foreign.push(owner);
          }
        }
      }
    });
    if (foreign.length > 0) await this.#takeOver(foreign, batchId, now, mine);
    if (now - this.#prunedAt >= PRUNE_EVERY_MS) await this.#prune(now);
    return mine;
  }

  /**
   * Takes over claims of instances that are not running and never saved the claiming batch (see the file comment).
   * Each takeover is a compare-and-set on the claim as read: an owner that started again meanwhile released it (the
   * update finds nothing, the record is claimed afresh next time it comes) or claimed it anew (another claimed_at).
   */
  async #takeOver(
    claims: ReadonlyArray<{ record_id: string; instance: string; batch_id: number | string; claimed_at: number | string }>,
    batchId: number,
    now: number,
    mine: Set<string>,
  ): Promise<void> {
    const progress = new Map<string, number | null>();
    for (const claim of claims) {
      if (!progress.has(claim.instance)) progress.set(claim.instance, await this.#ownerProgress(claim.instance));
    }
    const orphans = claims.filter((claim) => {
      const saved = progress.get(claim.instance);
      return saved !== null && saved !== undefined && Number(claim.batch_id) >= saved;
    });
    if (orphans.length === 0) return;
    await this.#write(async (db) => {
      for (const claim of orphans) {
        const result = await db
          .updateTable("stream_claims")
          .set({ instance: this.#instance, batch_id: batchId, claimed_at: now })
          .where("stream", "=", this.#stream)
          .where("record_id", "=", claim.record_id)
          .where("instance", "=", claim.instance)
          .where("batch_id", "=", Number(claim.batch_id))
          .where("claimed_at", "=", Number(claim.claimed_at))
          .executeTakeFirst();
        if (result.numUpdatedRows > 0n) mine.add(claim.record_id);
      }
    });
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

