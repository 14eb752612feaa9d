/**
 * The model inside your own web server: a Fastify app with its own routes that (1) calls a model through
 * `loadModel` and (2) mounts mlship's REST routes (V2, MLflow, /metrics) under /ml with `mlshipPlugin`.
 *
 * Run it from the repository root:   npx tsx examples/embedded-fastify/server.ts
 * In your own project the imports read `from "mlship"`; here they point at the source so the example runs as-is.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import Fastify, { type FastifyInstance } from "fastify";
import { createMlship, loadConfig, loadModel, mlshipPlugin, registerModel, type PredictRecord } from "../../src/index.js";

const MODELS = fileURLToPath(new URL("../models/", import.meta.url));

export interface ExampleOptions {
  /** mlship home for the registry behind /ml (default: MLSHIP_HOME or ./.mlship, like the CLI). */
  home?: string;
  logger?: boolean;
}

export async function buildExampleServer(options: ExampleOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: options.logger ?? false });

  // (1) A model straight from its package folder: no registry, no database. One worker thread is plenty here.
  const model = await loadModel(path.join(MODELS, "breast-cancer"), { name: "breast-cancer", workers: 1 });

  // Your own API, your own shapes: the model is just a function call.
  app.post<{ Body: { patients: PredictRecord[] } }>("/api/diagnose", async (request, reply) => {
    const patients = request.body?.patients;
    if (!Array.isArray(patients) || patients.length === 0) {
      return reply.code(400).send({ error: "send {\"patients\": [{\"mean radius\": ..., ...}]}" });
    }
    const predictions = await model.predict(patients);
    return {
      model: `${model.name}@${model.version}`,
      results: predictions.map((p) => ({ diagnosis: p.class, probabilities: p.probabilities })),
    };
  });

  // (2) The registry-backed routes, mounted under /ml: /ml/v2/models/{ref}/infer, /ml/invocations, /ml/metrics ...
  const config = loadConfig({ overrides: { home: options.home, "runtime.workers": 1 } });
  const mlship = await createMlship(config);
  if ((await mlship.registry.listModels()).every((m) => m.name !== "breast-cancer")) {
    await registerModel(mlship, path.join(MODELS, "breast-cancer"), { name: "breast-cancer", alias: "production" });
  }
  await app.register(mlshipPlugin, {
    prefix: "/ml",
    scoring: mlship.scoring,
    registry: mlship.registry,
    defaultModel: "breast-cancer@production",
  });

  app.addHook("onClose", async () => {
    await model.close();
    await mlship.close();
  });
  return app;
}

// Started directly (not imported by a test): listen on 127.0.0.1:3000 and stop cleanly on Ctrl+C.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const app = await buildExampleServer({ logger: true });
  const port = Number(process.env.PORT ?? 3000);
  await app.listen({ host: "127.0.0.1", port });
  const stop = (): void => {
    void app.close();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}
