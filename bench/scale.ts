// The bench's `scale` group (issue 10 item 3): the same breast-cancer 1-row /invocations load through nginx in
// front of 1 mlship replica and then in front of 3, every replica a real `mlship serve` process sharing one
// PostgreSQL registry and one Redis cache. The cluster comes from the scale-out test's harness
// (test/helpers/cluster.ts); bench/run.ts measures through it with its own load generator (wrk, or autocannon).
import { execFileSync } from "node:child_process";
import path from "node:path";
import { startCluster, startNginx, type Balancer, type Cluster } from "../test/helpers/cluster.js";
import { ROOT } from "./lib/config.js";

export interface ScaleSetup {
  /** nginx with one upstream: replica 0. */
  one: Balancer;
  /** nginx with all three replicas (least_conn). */
  three: Balancer;
  cluster: Cluster;
  /** For the rows' notes: what the replicas share and how many workers each has. */
  note: string;
}

export interface ScaleOptions {
  /** Inference workers per replica; undefined: mlship's default (one per core), as users run it. */
  workers: number | undefined;
}

/** Starts 3 replicas and both nginx front ends, runs `measure`, and stops everything, however `measure` ends. */
export async function withScaleCluster(options: ScaleOptions, measure: (setup: ScaleSetup) => Promise<void>): Promise<void> {
  execFileSync("sh", [path.join(ROOT, "scripts", "ensure-nginx.sh")], { stdio: "inherit" });
  const cluster = await startCluster({ replicas: 3, workers: options.workers ?? null, redisDb: 13, label: "bench_scale" });
  const started: Balancer[] = [];
  // The bench kills its tracked children when it is interrupted; these are the harness's, so kill them too.
  const killAll = (): void => {
    for (const p of [...cluster.replicas.map((r) => r.child), ...started.map((b) => b.child)]) {
      if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    }
  };
  process.once("exit", killAll);
  try {
    const one = await startNginx([cluster.replicas[0]?.address as string], { label: "bench-scale-nginx-1" });
    started.push(one);
    const three = await startNginx(cluster.replicas.map((r) => r.address), { label: "bench-scale-nginx-3" });
    started.push(three);
    const workers = options.workers === undefined ? "default workers" : `${options.workers} worker${options.workers === 1 ? "" : "s"}`;
    const note = `nginx least_conn, replicas share PostgreSQL + Redis cache, ${workers} each`;
    await measure({ one, three, cluster, note });
  } finally {
    for (const b of started) await b.stop();
    await cluster.stop();
    process.removeListener("exit", killAll);
  }
}
