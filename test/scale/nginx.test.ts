// Issue 10 item 3: three real `mlship serve` processes behind nginx (Debian's package) on loopback, sharing one
// PostgreSQL registry and one Redis cache. An alias move reaches every replica; a replica SIGKILLed under load costs
// at most its in-flight requests; throughput with 3 replicas vs 1 is measured and printed.
import { execFileSync } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  answeringPort,
  breastCancerBody,
  closedLoopLoad,
  post,
  REPO,
  startCluster,
  startNginx,
  type Balancer,
  type Cluster,
} from "../helpers/cluster.js";

const CONCURRENCY = 32;
let cluster: Cluster;
let balancer: Balancer;
const body = breastCancerBody();
let n = 0;

/** The version a replica's `/invocations` answered with, from its `mlship-model-version` header (`breast-cancer@2`). */
async function servedVersion(baseUrl: string): Promise<string> {
  const res = await post(undefined, baseUrl, "/invocations", body((n += 1)));
  if (res.status !== 200) throw new Error(`${baseUrl} answered ${res.status}: ${res.body}`);
  return String(res.headers["mlship-model-version"]);
}

beforeAll(async () => {
  execFileSync("sh", [path.join(REPO, "scripts", "ensure-nginx.sh")], { stdio: "inherit" });
  cluster = await startCluster({ replicas: 3, breastCancerVersions: 2, label: "scale_test" });
  balancer = await startNginx(cluster.replicas.map((r) => r.address), { label: "scale-test-nginx" });
}, 120_000);

afterAll(async () => {
  await balancer?.stop();
  await cluster?.stop();
}, 60_000);

describe("3 mlship replicas behind nginx, sharing PostgreSQL and Redis", () => {
  it("every replica answers through nginx", async () => {
    const agent = new http.Agent({ keepAlive: true });
    const seen = new Map<number, number>();
    try {
      for (let i = 0; i < 30; i++) {
        const res = await post(agent, balancer.url, "/invocations", body((n += 1)));
        expect(res.status, res.body).toBe(200);
        expect(res.headers["mlship-model-version"]).toBe("breast-cancer@1");
        const port = answeringPort(res.headers["x-upstream"] as string | undefined);
        expect(port).toBeDefined();
        seen.set(port as number, (seen.get(port as number) ?? 0) + 1);
      }
    } finally {
      agent.destroy();
    }
    expect([...seen.keys()].sort()).toEqual(cluster.replicas.map((r) => r.port).sort());
    console.log(`scale: 30 sequential requests through nginx, per replica port: ${JSON.stringify(Object.fromEntries(seen))}`);
  });

  it("an alias move through the CLI reaches every replica within 2 s", async () => {
    for (const r of cluster.replicas) expect(await servedVersion(r.url)).toBe("breast-cancer@1");

    // When the move is committed: watched in the database itself, so the CLI's own start-up is not counted.
    const watcher = new pg.Client({ connectionString: cluster.storeUrl });
    await watcher.connect();
    let committedAt: number | undefined;
    let watching = true;
    const watch = (async () => {
      while (watching && committedAt === undefined) {
        const { rows } = await watcher.query<{ version: number }>(
          "select a.version from model_aliases a join models m on m.id = a.model_id where m.name = $1 and a.alias = $2",
          ["breast-cancer", "production"],
        );
        if (rows[0]?.version === 2) committedAt = performance.now();
        else await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    // Each replica is polled directly (not through nginx) until it answers with version 2.
    const seenAt: Array<number | undefined> = cluster.replicas.map(() => undefined);
    const pollErrors: string[] = [];
    const deadline = performance.now() + 15_000;
    const polls = cluster.replicas.map(async (r, i) => {
      while (performance.now() < deadline) {
        try {
          if ((await servedVersion(r.url)) === "breast-cancer@2") {
            seenAt[i] = performance.now();
            return;
          }
        } catch (e) {
          pollErrors.push(e instanceof Error ? e.message : String(e));
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    });
    let cliReturnedAt: number;
    try {
      const moved = await cluster.cli(["models", "alias", "breast-cancer", "production", "2", "--reason", "scale test"]);
      cliReturnedAt = performance.now();
      expect(moved.code, moved.stderr).toBe(0);
      await Promise.all(polls);
    } finally {
      watching = false;
      await watch.catch(() => undefined);
      await watcher.end();
    }
    expect(pollErrors.slice(0, 3)).toEqual([]);

    const from = committedAt ?? cliReturnedAt;
    const delays = seenAt.map((t) => (t === undefined ? Number.POSITIVE_INFINITY : Math.max(0, t - from)));
    console.log(
      `scale: alias production 1 -> 2 seen by each replica after ${delays.map((d) => `${d.toFixed(0)} ms`).join(", ")} ` +
        `(slowest ${Math.max(...delays).toFixed(0)} ms, from the commit in PostgreSQL${committedAt === undefined ? ": not observed, from the CLI's exit" : ""})`,
    );
    for (const d of delays) expect(d).toBeLessThan(2000);
    // Through nginx, every answer is version 2 now.
    for (let i = 0; i < 6; i++) expect(await servedVersion(balancer.url)).toBe("breast-cancer@2");
  });

  // Short runs: the figure worth reading comes from the bench (`BENCH_ONLY=scale npm run bench`) on a quiet machine.
  const LOAD_SECONDS = 2;
  it("reports throughput through nginx with 1 replica and with 3", async () => {
    const single = await startNginx([cluster.replicas[0]?.address as string], { label: "scale-test-nginx-1" });
    let one;
    try {
      one = await closedLoopLoad({ baseUrl: single.url, concurrency: CONCURRENCY, seconds: LOAD_SECONDS, warmupSeconds: 0.5, body });
    } finally {
      await single.stop();
    }
    const three = await closedLoopLoad({ baseUrl: balancer.url, concurrency: CONCURRENCY, seconds: LOAD_SECONDS, warmupSeconds: 0.5, body });
    console.log(
      `scale: throughput through nginx at concurrency ${CONCURRENCY}, ${LOAD_SECONDS} s each: 1 replica ${one.rps.toFixed(0)} req/s, ` +
        `3 replicas ${three.rps.toFixed(0)} req/s, ratio ${(three.rps / one.rps).toFixed(2)}x ` +
        `(failures ${one.failures} / ${three.failures}; the load generator, nginx and all replicas share this machine's cores)`,
    );
    expect(one.rps).toBeGreaterThan(0);
    expect(three.rps).toBeGreaterThan(0);
    expect(one.failures).toBe(0);
    expect(three.failures).toBe(0);
  }, 60_000);

  it("a replica SIGKILLed under load costs at most its in-flight requests; later requests all succeed", async () => {
    const victim = cluster.replicas[1];
    if (victim === undefined) throw new Error("no replica 1");
    const KILL_AT_S = 2;
    const SECONDS = 6;
    let killedAt = 0;
    const run = await closedLoopLoad({
      baseUrl: balancer.url,
      concurrency: CONCURRENCY,
      seconds: SECONDS,
      body,
      during: {
        atSeconds: KILL_AT_S,
        action: () => {
          killedAt = KILL_AT_S * 1000;
          victim.child.kill("SIGKILL");
        },
      },
    });
    await victim.exited;
    expect(victim.alive()).toBe(false);
    expect(killedAt).toBeGreaterThan(0);

    const failures = run.outcomes.filter((o) => o.status < 200 || o.status >= 300);
    const before = run.outcomes.filter((o) => o.at < killedAt);
    const after = run.outcomes.filter((o) => o.at >= killedAt);
    const lastSeconds = run.outcomes.filter((o) => o.at >= (SECONDS - 2) * 1000);
    const portsBefore = new Set(before.map((o) => answeringPort(o.upstream)));
    const portsLate = new Set(lastSeconds.map((o) => answeringPort(o.upstream)));
    const retried = run.outcomes.filter((o) => (o.upstream ?? "").includes(",")).length;
    console.log(
      `scale: SIGKILL of replica ${victim.index} (port ${victim.port}) at ${KILL_AT_S} s under concurrency ${CONCURRENCY}: ` +
        `${run.outcomes.length} requests, ${failures.length} failed (${[...new Set(failures.map((f) => f.error ?? f.status))].slice(0, 3).join("; ")}), ` +
        `${retried} answered after nginx retried on another replica; ${before.length} before the kill, ${after.length} after; ` +
        `${run.rps.toFixed(0)} req/s overall`,
    );
    // Before the kill the victim took its share.
    expect(portsBefore.has(victim.port)).toBe(true);
    // At most the requests in flight on the killed replica at that moment, bounded by the concurrency.
    expect(failures.length).toBeLessThan(CONCURRENCY);
    // The last two seconds: every request answered 200 by one of the two others.
    expect(lastSeconds.length).toBeGreaterThan(0);
    expect(lastSeconds.filter((o) => o.status !== 200)).toEqual([]);
    expect(portsLate.has(victim.port)).toBe(false);
    // The two others keep answering, directly too.
    for (const r of cluster.replicas.filter((x) => x !== victim)) {
      expect(r.alive()).toBe(true);
      expect(portsLate.has(r.port)).toBe(true);
      expect(await servedVersion(r.url)).toBe("breast-cancer@2");
    }
    expect(balancer.errorLog()).not.toMatch(/\[(emerg|alert|crit)\]/);
  }, 60_000);
});
