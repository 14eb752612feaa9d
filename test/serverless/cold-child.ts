// A fresh process that imports the serverless handler and answers one event (test/serverless/handler.test.ts):
// prints one JSON line with the answer and the times, then closes the handler and exits.
import { performance } from "node:perf_hooks";

const event = JSON.parse(process.env.COLD_EVENT ?? "{}") as unknown;
const { handler } = await import("../../src/serverless/index.js");
const invokedAt = performance.now();
const answer = await handler(event, { awsRequestId: "cold-1" });
const answeredAt = performance.now();
process.stdout.write(`${JSON.stringify({ answer, processToAnswerMs: answeredAt, handlerToAnswerMs: answeredAt - invokedAt, initMs: handler.initMs })}\n`);
await handler.close();
