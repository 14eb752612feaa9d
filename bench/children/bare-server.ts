/**
 * The HTTP ceiling: a bare node:http server that reads the request body and answers a constant JSON body shaped
 * like mlship's 1-row MLflow answer. Nothing mlship can do per request is cheaper than this on the same machine.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { READY_TAG } from "../lib/child.js";

const body = Buffer.from(JSON.stringify({ predictions: [{ probabilities: [0.0123, 0.9877], label: 1, class: "benign" }] }));
const server = http.createServer((req, res) => {
  req.on("data", () => undefined);
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${READY_TAG}${JSON.stringify({ url: `http://127.0.0.1:${port}` })}\n`);
});
process.once("SIGTERM", () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
