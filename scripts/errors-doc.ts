// Regenerates docs/errors.md from the code table in src/core/errors.ts: `npx tsx scripts/errors-doc.ts`.
import { writeFileSync } from "node:fs";
import { ERROR_CODES, GrpcStatus } from "../src/core/index.js";

const grpcName = new Map<number, string>(Object.entries(GrpcStatus).map(([name, value]) => [value, name]));
const rows = Object.entries(ERROR_CODES).map(
  ([code, info]) => `| \`${code}\` | ${info.http} | ${grpcName.get(info.grpc) ?? info.grpc} | ${info.mlflow} | ${info.description} |`,
);
const text = `# Error codes

Every error mlship reports carries a stable code \`MLSHIP_ERR_<AREA>_<WHAT>\`. The same code maps to one HTTP status,
one gRPC status and one MLflow \`error_code\` everywhere (table generated from \`src/core/errors.ts\` by
\`npx tsx scripts/errors-doc.ts\`).

Bodies:
- Open Inference Protocol V2 and native REST: \`{"error": "<message>", "code": "MLSHIP_ERR_...", "field": "inputs[0].shape"}\`
  (\`field\` only when the error is about one field, column, input or file).
- MLflow routes (\`/invocations\`, \`/v1/models/{ref}/invocations\`):
  \`{"error_code": "BAD_REQUEST", "message": "...", "mlship_code": "MLSHIP_ERR_...", "field": "..."}\`.
- CLI: one line on stderr, \`mlship: <message> [MLSHIP_ERR_...]\`, and a non-zero exit status.
- 429/503 answers carry \`Retry-After\` (seconds).

| code | HTTP | gRPC | MLflow error_code | meaning |
| --- | --- | --- | --- | --- |
${rows.join("\n")}
`;
writeFileSync(new URL("../docs/errors.md", import.meta.url), text);
