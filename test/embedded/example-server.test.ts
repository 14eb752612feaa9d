import fs from "node:fs";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildExampleServer } from "../../examples/embedded-fastify/server.js";
import { expectValueClose, fixture, tempDir } from "../cli/helpers.js";

const bc = fixture("breast_cancer_mlp");
const home = tempDir("example-server");
let app: FastifyInstance;

beforeAll(async () => {
  app = await buildExampleServer({ home });
});
afterAll(async () => {
  await app.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe("examples/embedded-fastify", () => {
  it("answers the user's own route through loadModel", async () => {
    const patients = bc.expected.inputs.slice(0, 5).map((row) => Object.fromEntries(bc.features.map((f, i) => [f, row[i]])));
    const res = await app.inject({ method: "POST", url: "/api/diagnose", payload: { patients } });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ model: string; results: Array<{ diagnosis: string; probabilities: number[] }> }>();
    expect(body.model).toBe("breast-cancer@1");
    body.results.forEach((r, i) => {
      const label = bc.expected.outputs.label?.[i] as number;
      expect(r.diagnosis).toBe(["malignant", "benign"][label]);
      expectValueClose(r.probabilities, bc.expected.outputs.probabilities?.[i], "probabilities", bc.expected);
    });
    expect((await app.inject({ method: "POST", url: "/api/diagnose", payload: {} })).statusCode).toBe(400);
  });

  it("serves the mounted mlship routes under /ml (MLflow and V2)", async () => {
    const mlflow = await app.inject({
      method: "POST",
      url: "/ml/invocations",
      payload: { dataframe_split: { columns: bc.features, data: bc.expected.inputs.slice(0, 3) } },
    });
    expect(mlflow.statusCode).toBe(200);
    const predictions = mlflow.json<{ predictions: Array<{ label: number; probabilities: number[] }> }>().predictions;
    expect(predictions.map((p) => p.label)).toEqual(bc.expected.outputs.label?.slice(0, 3));

    const v2 = await app.inject({
      method: "POST",
      url: `/ml/v2/models/${encodeURIComponent("breast-cancer@production")}/infer`,
      payload: { inputs: [{ name: "input", shape: [1, 30], datatype: "FP32", data: bc.expected.inputs[0] }] },
    });
    expect(v2.statusCode).toBe(200);
    const out = v2.json<{ model_version: string; outputs: Array<{ name: string; data: number[] }> }>();
    expect(out.model_version).toBe("1");
    expectValueClose(out.outputs.find((o) => o.name === "probabilities")?.data, bc.expected.outputs.probabilities?.[0], "probabilities", bc.expected);

    const bad = await app.inject({ method: "POST", url: "/ml/invocations", payload: { dataframe_split: { columns: ["x"], data: [[1]] } } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ error_code: string }>().error_code).toBe("BAD_REQUEST");
  });
});
