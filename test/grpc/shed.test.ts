// gRPC load shedding: while the event loop runs late (saturated here by busy slices in this very process, which is
// also the server's), ModelInfer fails at once with RESOURCE_EXHAUSTED and the REST-equivalent trailers; once the
// loop is on time again, calls succeed.
import { setImmediate as turn } from "node:timers/promises";
import { status } from "@grpc/grpc-js";
import type { Client } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGrpcServer } from "../../src/serve/index.js";
import type { GrpcServer } from "../../src/serve/index.js";
import { createWorld, readExpected } from "../scoring/world.js";
import type { World } from "../scoring/world.js";
import { connect, rpc, rpcError, trailer } from "./client.js";

describe("gRPC load shedding (server.maxEventLoopDelayMs)", () => {
  let w: World;
  let grpc: GrpcServer;
  let client: Client;
  let request: object;

  beforeAll(async () => {
    w = await createWorld({ workers: 1 });
    await w.register("bc", "breast_cancer_mlp");
    const e = await readExpected("breast_cancer_mlp");
    request = { model_name: "bc", inputs: [{ name: "input", datatype: "FP32", shape: ["1", "30"], contents: { fp32_contents: (e.inputs[0] as number[]).map(Number) } }] };
    grpc = createGrpcServer({ scoring: w.scoring, registry: w.registry, maxEventLoopDelayMs: 20 });
    client = connect(`127.0.0.1:${await grpc.listen("127.0.0.1", 0)}`);
    expect((await rpc(client, "ModelInfer", request)).response).toMatchObject({ model_name: "bc" });
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await grpc?.close(0);
    await w?.close();
  });

  it("refuses ModelInfer while the loop is saturated, then serves again", async () => {
    let busy = true;
    const saturate = (async () => {
      while (busy) {
        const end = performance.now() + 60;
        while (performance.now() < end) {
          // the loop cannot run timers or I/O during a slice
        }
        await turn();
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    })();
    // Let a few late ticks pass, then call while the slices go on.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const refused = await rpcError(client, "ModelInfer", request);
    busy = false;
    await saturate;
    expect(refused.code, refused.details).toBe(status.RESOURCE_EXHAUSTED);
    expect(trailer(refused, "mlship-error-code")).toBe("MLSHIP_ERR_SERVE_OVERLOADED");
    expect(trailer(refused, "retry-after")).toBe("1");
    expect(refused.details).toMatch(/event loop runs \d+ ms late/);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await rpc(client, "ModelInfer", request)).response).toMatchObject({ model_name: "bc" });
  });
});
