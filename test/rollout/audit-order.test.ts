import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqlAuditLog } from "../../src/rollout/audit.js";
import { openSqlStore, type SqlStore } from "../../src/store/index.js";

let home: string;
let store: SqlStore;

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-audit-order-"));
  store = await openSqlStore({ url: undefined, home });
});

afterAll(async () => {
  await store.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("audit log order", () => {
  it("lists entries of one instant newest first: this log's own entries, then alias moves by their event order", async () => {
    // Several writes within one millisecond share `at` (a set then a delete of an alias, in one request): the order
    // must come from the ids, and a move's id is its alias event's, not comparable with this log's own ids.
    const at = "2026-12-01T10:00:00.000Z";
    await store.write(async (db) => {
      const model = await db
        .insertInto("models")
        .values({ name: "m", description: null, tags: "{}", created_at: at, updated_at: at })
        .returning("id")
        .executeTakeFirstOrThrow();
      for (const [action, to] of [["set", 1], ["delete", null], ["set", 2]] as const) {
        await db.insertInto("alias_events").values({ model_id: model.id, alias: "staging", from_version: null, to_version: to, at, actor: "dave", reason: null, action }).execute();
      }
    });
    const audit = new SqlAuditLog(store);
    const own = await audit.record({ actor: "dave", action: "rollout.start", model: "m", version: 2 });
    await store.write(async (db) => {
      await sql`update audit_log set at = ${at} where id = ${own.id}`.execute(db);
    });

    const listed = await audit.list({ model: "m" });
    expect(listed.map((e) => [e.action, e.version])).toEqual([
      ["rollout.start", 2],
      ["alias.set", 2],
      ["alias.delete", null],
      ["alias.set", 1],
    ]);
  });
});
