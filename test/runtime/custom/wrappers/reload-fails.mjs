// Loads once: a restarted process finds the marker its predecessor left in the scratch folder (which outlives the
// process) and fails load. predict exits the process when x is 1.
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

export default {
  load(context) {
    const marker = path.join(context.scratchDir, "loaded-once");
    if (fs.existsSync(marker)) throw new Error("already loaded once; refusing to load again");
    fs.writeFileSync(marker, String(process.pid));
  },
  predict(context, rows) {
    if (rows.some((r) => r.x === 1)) process.exit(3);
    return rows.map((r) => ({ y: r.x }));
  },
};
