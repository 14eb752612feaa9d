// Record claims of instances sharing a NATS durable (src/stream/claims.ts) on both metadata stores (SQLite and a fresh
// PostgreSQL database): an owner that starts again while another instance is deciding about its claims must not make a
// record count for nobody. The owner's restart is run for real (its checkpoint opened, its claims released, a batch
// saved) at the moment the other instance reads the owner's progress, which is where the two can interleave.
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Checkpoint, instanceSavedProgress, stoppedInstanceProgress } from "../../src/stream/checkpoint.js";
import { RecordClaims } from "../../src/stream/claims.js";
import type { SqlStore } from "../../src/store/index.js";
import { tempDir } from "../cli/helpers.js";
import { freshPostgresAlone, freshSqlite, type FreshDatabase } from "../helpers/sql-stores.js";

const ids = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `S:${from + i}`);

for (const kind of ["sqlite", "postgres"] as const) {
  describe(`record claims (${kind})`, { timeout: 60_000 }, () => {
    let database: FreshDatabase;
    let store: SqlStore;
    const dirs: string[] = [];

    beforeAll(async () => {
      database = kind === "sqlite" ? await freshSqlite("claims") : await freshPostgresAlone("claims");
      store = await database.open();
    }, 60_000);

    afterAll(async () => {
      await database?.dispose();
      for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
    });

    /** x saved batches up to nextBatchId 3, claimed ids 0-4 in batch 3 (never saved) and stopped. */
    async function stoppedOwner(stream: string): Promise<string> {
      const dir = tempDir("claims");
      dirs.push(dir);
      const x = await Checkpoint.open(dir, stream, { instance: "x" });
      await x.save({ stream, nextBatchId: 3, operators: {}, updatedAt: new Date().toISOString() });
      const xClaims = new RecordClaims(store, { stream, instance: "x", ownerProgress: (o) => stoppedInstanceProgress(dir, stream, o) });
      await xClaims.open(3);
      expect(await xClaims.claim(ids(5), 3)).toEqual(new Set(ids(5)));
      await x.close();
      return dir;
    }

    it("a takeover that loses the race with the owner's restart claims the released records afresh", async () => {
      const stream = `race_release_${kind}`;
      const dir = await stoppedOwner(stream);
      let restarted: Checkpoint | undefined;
      // b reads x's progress (stopped, batch 3 unsaved); x starts again before b takes the claims over.
      const b = new RecordClaims(store, {
        stream,
        instance: "b",
        ownerProgress: async (owner) => {
          const saved = await stoppedInstanceProgress(dir, stream, owner);
          restarted = await Checkpoint.open(dir, stream, { instance: "x" });
          await new RecordClaims(store, { stream, instance: "x", ownerProgress: async () => null }).open(3);
          return saved;
        },
      });
      try {
        await b.open(0);
        // b holds these messages and acks them after this batch: if b does not count them, nobody does.
        expect(await b.claim(ids(5), 0)).toEqual(new Set(ids(5)));
        // x (running again) is handed none of them as its own.
        const x = new RecordClaims(store, { stream, instance: "x", ownerProgress: async () => null });
        expect(await x.claim(ids(5), 3)).toEqual(new Set());
      } finally {
        await restarted?.close();
      }
    });

    it("a claim left to its owner is checked again after the owner's progress is read (the owner restarted and saved meanwhile)", async () => {
      const stream = `race_saved_${kind}`;
      const dir = await stoppedOwner(stream);
      let restarted: Checkpoint | undefined;
      // b finds x's lock gone; before b reads x's state, x starts again, releases its unsaved batch-3 claims and saves
      // a new batch 3 of other records: the state b reads says batch 3 is saved, but not with b's records in it.
      const b = new RecordClaims(store, {
        stream,
        instance: "b",
        ownerProgress: async (owner) => {
          restarted = await Checkpoint.open(dir, stream, { instance: "x" });
          const x = new RecordClaims(store, { stream, instance: "x", ownerProgress: async () => null });
          await x.open(3);
          expect(await x.claim(ids(3, 100), 3)).toEqual(new Set(ids(3, 100)));
          await restarted.save({ stream, nextBatchId: 4, operators: {}, updatedAt: new Date().toISOString() });
          await restarted.close();
          return stoppedInstanceProgress(dir, stream, owner);
        },
      });
      await b.open(0);
      expect(await b.claim(ids(5), 0)).toEqual(new Set(ids(5)));
      // x's own saved batch-3 claims stay x's.
      const later = new RecordClaims(store, { stream, instance: "b", ownerProgress: (o) => stoppedInstanceProgress(dir, stream, o) });
      expect(await later.claim(ids(3, 100), 1)).toEqual(new Set());
    });

    it("a running owner's claim of a batch it has not saved is pending until it saves it (final) or stops without it (taken over)", async () => {
      const stream = `pending_${kind}`;
      const dir = tempDir("claims");
      dirs.push(dir);
      const options = { ownerProgress: (o: string) => stoppedInstanceProgress(dir, stream, o), ownerSaved: (o: string) => instanceSavedProgress(dir, stream, o) };
      const x = await Checkpoint.open(dir, stream, { instance: "x" });
      let xOpen = true;
      try {
        await x.save({ stream, nextBatchId: 3, operators: {}, updatedAt: new Date().toISOString() });
        const xClaims = new RecordClaims(store, { stream, instance: "x", ...options });
        await xClaims.open(3);
        expect(await xClaims.claim(ids(2), 2)).toEqual(new Set(ids(2)));
        expect(await xClaims.claim(ids(4, 2), 3)).toEqual(new Set(ids(4, 2)));
        const b = new RecordClaims(store, { stream, instance: "b", ...options });
        await b.open(0);
        // x runs: its saved batch 2 is final (left to it, settled); its unsaved batch 3 is pending.
        expect(await b.claimBatch([...ids(6), "S:9"], 0)).toEqual({ mine: new Set(["S:9"]), pending: new Set(ids(4, 2)) });
        // Without `ownerSaved` nothing is reported pending (the earlier behaviour).
        const blind = new RecordClaims(store, { stream, instance: "b", ownerProgress: options.ownerProgress });
        expect(await blind.claimBatch(ids(6), 0)).toEqual({ mine: new Set(), pending: new Set() });
        // x saves batch 3 while running: final, nothing pending, still nothing for b.
        await x.save({ stream, nextBatchId: 4, operators: {}, updatedAt: new Date().toISOString() });
        expect(await b.claimBatch(ids(6), 1)).toEqual({ mine: new Set(), pending: new Set() });
        // x claims more in batch 4 and stops without saving it: b takes those over.
        expect(await xClaims.claim(ids(2, 20), 4)).toEqual(new Set(ids(2, 20)));
        expect(await b.claimBatch(ids(2, 20), 1)).toEqual({ mine: new Set(), pending: new Set(ids(2, 20)) });
        await x.close();
        xOpen = false;
        expect(await b.claimBatch(ids(2, 20), 1)).toEqual({ mine: new Set(ids(2, 20)), pending: new Set() });
      } finally {
        if (xOpen) await x.close();
      }
    });

    it("a running owner's claims stand, and a stopped owner's saved ones too (bigint read back whole)", async () => {
      const stream = `standing_${kind}`;
      const dir = tempDir("claims");
      dirs.push(dir);
      const progress = (o: string): Promise<number | null> => stoppedInstanceProgress(dir, stream, o);
      const x = await Checkpoint.open(dir, stream, { instance: "x" });
      // Batch ids past 2^31 (bigint columns): PostgreSQL returns them as strings.
      const big = 2 ** 40;
      await x.save({ stream, nextBatchId: big + 1, operators: {}, updatedAt: new Date().toISOString() });
      const xClaims = new RecordClaims(store, { stream, instance: "x", ownerProgress: progress });
      await xClaims.open(big + 1);
      expect(await xClaims.claim(ids(2), big)).toEqual(new Set(ids(2)));
      expect(await xClaims.claim(ids(2, 2), big + 1)).toEqual(new Set(ids(2, 2)));
      const b = new RecordClaims(store, { stream, instance: "b", ownerProgress: progress });
      await b.open(0);
      expect(await b.claim(ids(4), 0)).toEqual(new Set());
      await x.close();
      // Stopped: the saved batch stays x's, the unsaved one goes to b.
      expect(await b.claim(ids(4), 0)).toEqual(new Set(ids(2, 2)));
      // More ids than one statement's chunk, half of them x's saved ones.
      const many = ids(1200, 10);
      expect((await b.claim([...many, ...ids(2)], 1)).size).toBe(1200);
    });
  });
}
