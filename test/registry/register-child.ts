// Run by sqlite.test.ts as a separate process: registers each package folder given under one model name,
// printing the version numbers it got, one a line.
import { openRegistry } from "../../src/registry/index.js";

const [home, name, ...dirs] = process.argv.slice(2);
if (home === undefined || name === undefined) throw new Error("usage: register-child HOME NAME DIR...");
const registry = await openRegistry({ home });
try {
  for (const packageDir of dirs) {
    const version = await registry.register({ name, packageDir });
    process.stdout.write(`${version.version}\n`);
  }
} finally {
  await registry.close();
}
