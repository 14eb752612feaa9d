// Alias changes reach every replica through PostgreSQL LISTEN/NOTIFY: two real app instances (two homes, one
// fresh database, one shared artifact folder), each behind its own HTTP server on a real port. An alias moved in A
// is served by B within well under 2 s (the figures are printed); without notifications the change-token poll
// still catches a change; a killed listener connection is logged once, reconnects, and notifies again.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import type { Logger } from "../../src/core/index.js";
import { buildServer } from "../../src/serve/index.js";
import { LISTENER_APPLICATION_NAME, type RegistryChangeListener } from "../../src/store/index.js";
import { POSTGRES_SERVER } from "../helpers/sql-stores.js";

const EXAMPLES = fileURLToPath(new URL("../../examples/models/", import.meta.url));
const work = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-notify-"));
const database = `mlship_notify_${randomBytes(6).toString("hex")}`;
const example = fs.readFileSync(path.join(EXAMPLES, "breast-cancer", "input_example.json"), "utf8");

let admin: pg.Client;
let a: Mlship;
let b: Mlship;
let serverB: ReturnType<typeof buildServer>;
let urlB: string;
const logLines: { level: number; msg: string }[] = [];

function appAt(home: string, logger?: Logger): Promise<Mlship> {
  return createMlship(
    defaultConfig({
      home,
      store: `${POSTGRES_SERVER}/${database}`,
      artifacts: path.join(work, "artifacts"),
      "runtime.workers": 1,
      "cache.backend": "off",
      "feedback.log": "off",
      "log.level": "info",
    }),
    logger === undefined ? {} : { logger },
  );
}

/** The version B's own server answers `bc@production` with. */
async function servedByB(): Promise<string | null> {
  const res = await fetch(`${urlB}/v1/models/bc@production/invocations`, { method: "POST", headers: { "content-type": "application/json" }, body: example });
  await res.arrayBuffer();
  return res.headers.get("mlship-model-version");
}

/** Milliseconds from now until B serves `want`; fails past `limitMs`. */
async function untilServed(want: string, limitMs = 10_000): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    if ((await servedByB()) === want) return performance.now() - started;
  }
  throw new Error(`B did not serve ${want} within ${limitMs} ms`);
}

function listenerOf(app: Mlship): RegistryChangeListener {
  const listener = app.store.changeListener;
  if (listener === undefined) throw new Error("the store has no change listener");
  return listener;
}

async function waitFor(check: () => Promise<boolean> | boolean, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

beforeAll(async () => {
  admin = new pg.Client({ connectionString: `${POSTGRES_SERVER}/postgres` });
  await admin.connect();
  await admin.query(`create database ${database}`);
  a = await appAt(path.join(work, "a"));
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter((l) => l !== "")) logLines.push(JSON.parse(line) as { level: number; msg: string });
      done();
    },
  });
  b = await appAt(path.join(work, "b"), pino<never>({ level: "info" }, sink));
  await registerModel(a, path.join(EXAMPLES, "breast-cancer"), { name: "bc", alias: "production" });
  await registerModel(a, path.join(EXAMPLES, "breast-cancer"), { name: "bc", description: "v2" });
  serverB = buildServer({ scoring: b.scoring, registry: b.registry, logger: false });
  urlB = await serverB.listen({ port: 0, host: "127.0.0.1" });
  expect(await servedByB()).toBe("bc@1");
  // B's scoring service subscribed when it was built; its listening connection is up.
  await listenerOf(b).ready();
}, 60_000);

afterAll(async () => {
  await serverB?.close();
  await a?.close();
  await b?.close();
  await admin.query(`drop database if exists ${database} with (force)`);
  await admin.end();
  fs.rmSync(work, { recursive: true, force: true });
});

describe("alias changes across replicas (PostgreSQL LISTEN/NOTIFY)", () => {
  it("installs the trigger that notifies mlship_registry on every registry write", async () => {
    const db = new pg.Client({ connectionString: `${POSTGRES_SERVER}/${database}` });
    await db.connect();
    try {
      const triggers = await db.query<{ tgname: string }>("select tgname from pg_trigger where tgrelid = 'registry_state'::regclass and not tgisinternal");
      expect(triggers.rows.map((r) => r.tgname)).toEqual(["registry_state_notify"]);
      const heard = new Promise<string>((resolve) => db.on("notification", (m) => resolve(m.payload ?? "")));
      await db.query("listen mlship_registry");
      await a.registry.setVersionTags("bc", 2, { team: "risk" });
      const revision = await db.query<{ revision: string }>("select revision::text as revision from registry_state");
      expect(await heard).toBe(revision.rows[0]?.revision);
    } finally {
      await db.end();
    }
  });

  it("an alias moved in replica A is served by replica B's server well within 2 s", async () => {
    const delays: number[] = [];
    const commits: number[] = [];
    for (const [to, want] of [[2, "bc@2"], [1, "bc@1"], [2, "bc@2"], [1, "bc@1"], [2, "bc@2"]] as const) {
      const started = performance.now();
      await a.registry.setAlias("bc", "production", to, { by: "notify-test" });
      const committed = performance.now() - started;
      commits.push(committed);
      delays.push(committed + (await untilServed(want)));
    }
    const sorted = [...delays].sort((x, y) => x - y);
    console.log(
      `alias change (call start) -> served by the other replica: ${delays.map((d) => d.toFixed(1)).join(", ")} ms ` +
        `(median ${sorted[2]?.toFixed(1)} ms, max ${sorted[4]?.toFixed(1)} ms); of which the setAlias call itself: ${commits.map((d) => d.toFixed(1)).join(", ")} ms`,
    );
    for (const delay of delays) expect(delay).toBeLessThan(2000);
  });

  it("B's store hears a change from A by notification, not by polling", async () => {
    const heard: number[] = [];
    const stop = b.store.onChange?.(() => heard.push(performance.now()));
    try {
      const started = performance.now();
      await a.registry.setAlias("bc", "staging", 2, { by: "notify-test" });
      await waitFor(() => heard.length > 0, 2000);
      console.log(`notification reached replica B ${((heard[0] ?? 0) - started).toFixed(1)} ms after the write started`);
    } finally {
      stop?.();
    }
  });

  it("without notifications the change-token poll still catches a change", async () => {
    const db = new pg.Client({ connectionString: `${POSTGRES_SERVER}/${database}` });
    await db.connect();
    try {
      await db.query("alter table registry_state disable trigger registry_state_notify");
      const before = await servedByB();
      const want = before === "bc@1" ? "bc@2" : "bc@1";
      await a.registry.setAlias("bc", "production", want === "bc@1" ? 1 : 2, { by: "notify-test" });
      const delay = await untilServed(want, 5000);
      console.log(`with notifications off, the poll caught the change in ${delay.toFixed(1)} ms`);
      expect(delay).toBeLessThan(2000);
    } finally {
      await db.query("alter table registry_state enable trigger registry_state_notify");
      await db.end();
    }
  });

  it("a killed listener connection is logged once, reconnects and notifies again", async () => {
    const listener = listenerOf(b);
    const killed = listener.pid;
    expect(killed).not.toBeNull();
    const named = await admin.query<{ pid: number }>("select pid from pg_stat_activity where datname = $1 and application_name = $2", [database, LISTENER_APPLICATION_NAME]);
    expect(named.rows.map((r) => r.pid)).toContain(killed);

    await admin.query("select pg_terminate_backend($1)", [killed]);
    await waitFor(() => listener.pid !== null && listener.pid !== killed);
    const lost = logLines.filter((l) => l.msg.includes("registry change listener lost its connection"));
    expect(lost).toHaveLength(1);
    expect(lost[0]?.level).toBe(40);
    expect(logLines.filter((l) => l.msg === "registry change listener reconnected")).toHaveLength(1);

    // The new connection delivers notifications: a move in A reaches B as fast as before.
    const before = await servedByB();
    const want = before === "bc@1" ? "bc@2" : "bc@1";
    const heard: number[] = [];
    const stop = b.store.onChange?.(() => heard.push(1));
    try {
      await a.registry.setAlias("bc", "production", want === "bc@1" ? 1 : 2, { by: "notify-test" });
      expect(await untilServed(want)).toBeLessThan(2000);
      await waitFor(() => heard.length > 0, 2000);
    } finally {
      stop?.();
    }
  });
});
