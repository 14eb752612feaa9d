// The CLI from source, as a real child process (`node --import tsx test/deployments/cli-entry.ts ...`), so the
// deployment tests do not depend on a fresh dist/ build.
import { main } from "../../src/cli/main.js";

process.exitCode = await main(process.argv);
