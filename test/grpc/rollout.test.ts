// gRPC ModelInfer during a rollout, on a real app: the business key travels as `mlship-key` metadata (sticky routing
// and the prediction log), the answer's trailers say which variant and rollout answered, and the prediction is logged
// under the request's id.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Metadata } from "@grpc/grpc-js";
import type { Client } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMlship, registerModel, startPredictionLog, type Mlship } from "../../src/app.js";
import { defaultConfig } from "../../src/config/index.js";
import type { PredictionLogger } from "../../src/feedback/index.js";
import { createGrpcServer, type GrpcServer } from "../../src/serve/index.js";
import { connect, rpc, trailer, type InferResponse } from "./client.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/models/breast-cancer", import.meta.url));
const home = fs.mkdtempSync(path.join(os.tmpdir(), "mlship-grpc-rollout-"));
let app: Mlship;
let grpc: GrpcServer;
let client: Client;
let log: PredictionLogger | undefined;
let row: number[];

beforeAll(async () => {
  app = await createMlship(defaultConfig({ home, user: "tester", "runtime.workers": 1, "log.level": "warn" }));
  await registerModel(app, EXAMPLE, { name: "breast-cancer", alias: "production" });
  await registerModel(app, EXAMPLE, { name: "breast-cancer" });
  log = await startPredictionLog(app);
  grpc = createGrpcServer({ scoring: app.scoring, registry: app.registry });
  client = connect(`127.0.0.1:${await grpc.listen("127.0.0.1", 0)}`);
  const example = JSON.parse(fs.readFileSync(path.join(EXAMPLE, "input_example.json"), "utf8")) as { dataframe_split: { data: number[][] } };
  row = example.dataframe_split.data[0] as number[];
}, 60_000);

afterAll(async () => {
  client?.close();
  await grpc?.close(1000);
  await log?.close();
  await app?.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("gRPC during a rollout", () => {
  it("routes by the mlship-key metadata, says who answered in trailers, and logs the prediction with its key", async () => {
    // 50% sticky canary: a key's arm is fixed, so the same key gives the same variant every time.
    const rollout = await app.rollouts.start({ model: "breast-cancer", challenger: 2, percent: 50, by: "tester" });
    const infer = async (key: string, id: string) => {
      const md = new Metadata();
      md.set("mlship-key", key);
      return rpc<InferResponse>(client, "ModelInfer", { model_name: "breast-cancer", id, inputs: [{ name: "input", datatype: "FP32", shape: [1, 30], contents: { fp32_contents: row } }] }, md);
    };
    const seen = new Map<string, string>();
    for (let i = 0; i < 40; i++) {
      const key = `customer-${i % 10}`;
      const reply = await infer(key, `grpc-${i}`);
      const variant = trailer(reply.trailers, "mlship-variant") as string;
      expect(["champion", "challenger"]).toContain(variant);
      expect(trailer(reply.trailers, "mlship-rollout")).toBe(rollout.id);
      expect(trailer(reply.trailers, "x-request-id")).toBe(`grpc-${i}`);
      expect(reply.response.model_version).toBe(variant === "champion" ? "1" : "2");
      if (seen.has(key)) expect(variant, key).toBe(seen.get(key));
      seen.set(key, variant);
    }
    expect(new Set(seen.values()).size).toBe(2);

    await log?.flush();
    const logged = [];
    for await (const r of app.predictions.exportPredictions({ model: "breast-cancer", start: new Date(Date.now() - 60_000).toISOString(), end: new Date(Date.now() + 1000).toISOString() })) logged.push(r);
    expect(logged).toHaveLength(40);
    const first = logged.find((r) => r.requestId === "grpc-0");
    expect(first).toMatchObject({ key: "customer-0", variant: seen.get("customer-0"), version: seen.get("customer-0") === "champion" ? 1 : 2 });
    await app.rollouts.abort(rollout.id, { by: "tester" });
  });
});
