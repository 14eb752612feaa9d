// The deployments table on PostgreSQL (a database created for this test and dropped after it): the store's CRUD,
// the primary key deciding duplicates, and every write moving the registry change token other replicas watch.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeploymentStore } from "../../src/deployments/index.js";
import type { DeploymentRecord } from "../../src/deployments/index.js";
import type { SqlStore } from "../../src/store/index.js";
import { freshPostgresAlone, freshSqlite, type FreshDatabase } from "../helpers/sql-stores.js";

function record(name: string, model: string): DeploymentRecord {
  const at = new Date().toISOString();
  return {
    name,
    model,
    settings: { workers: 2, batching: { max_batch_size: 16 } },
    rollout: { strategy: "canary", candidate: 3, percent: 5 },
    rollout_id: null,
    created_at: at,
    created_by: "alice",
    updated_at: at,
    updated_by: "alice",
  };
}

for (const kind of ["postgres", "sqlite"] as const) {
  describe(`DeploymentStore on ${kind}`, () => {
    let database: FreshDatabase;
    let store: SqlStore;
    let other: SqlStore;

    beforeAll(async () => {
      database = kind === "postgres" ? await freshPostgresAlone("deployments-pg") : await freshSqlite("deployments-sqlite");
      store = await database.open();
      // A second connection to the same database: another replica's view.
      other = await database.open();
    });
    afterAll(async () => {
      await database.dispose();
    });

    it("inserts, reads, lists, updates and deletes; duplicates are 409 and unknown names 404", async () => {
      const deployments = new DeploymentStore(store);
      const replica = new DeploymentStore(other);
      const before = await other.changeToken();
      const fraud = record("fraud", "fraud@production");
      await deployments.insert(fraud);
      expect(await other.changeToken()).not.toBe(before);
      expect(await replica.get("fraud")).toEqual(fraud);
      await deployments.insert(record("churn", "churn@2"));
      expect((await replica.list()).map((d) => d.name)).toEqual(["churn", "fraud"]);

      await expect(replica.insert(record("fraud", "other@1"))).rejects.toMatchObject({ code: "MLSHIP_ERR_DEPLOYMENT_EXISTS", field: "name" });
      expect((await deployments.get("fraud")).model).toBe("fraud@production");

      const token = await other.changeToken();
      const changed = { ...fraud, model: "fraud@4", rollout: null, rollout_id: "r-1", updated_by: "bob" };
      await deployments.update(changed);
      expect(await other.changeToken()).not.toBe(token);
      expect(await replica.get("fraud")).toEqual(changed);
      await expect(deployments.update(record("ghost", "x@1"))).rejects.toMatchObject({ code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });

      expect((await replica.delete("fraud")).model).toBe("fraud@4");
      expect(await deployments.find("fraud")).toBeUndefined();
      await expect(deployments.get("fraud")).rejects.toMatchObject({ code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });
      await expect(deployments.delete("fraud")).rejects.toMatchObject({ code: "MLSHIP_ERR_DEPLOYMENT_NOT_FOUND" });
      expect((await deployments.list()).map((d) => d.name)).toEqual(["churn"]);
    });

    it("two inserts of one name at once from two connections: one succeeds, the other is DEPLOYMENT_EXISTS", async () => {
      const results = await Promise.allSettled([new DeploymentStore(store).insert(record("twin", "a@1")), new DeploymentStore(other).insert(record("twin", "b@1"))]);
      expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
      const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      expect(refused.reason).toMatchObject({ code: "MLSHIP_ERR_DEPLOYMENT_EXISTS", field: "name" });
      // Settings and rollout come back as stored JSON, timestamps as the ISO text written, on both dialects.
      const stored = await new DeploymentStore(other).get("twin");
      expect(stored.settings).toEqual({ workers: 2, batching: { max_batch_size: 16 } });
      expect(stored.rollout).toEqual({ strategy: "canary", candidate: 3, percent: 5 });
      expect(stored.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    });
  });
}
