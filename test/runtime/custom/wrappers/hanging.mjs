// Hangs forever (a busy loop: the event loop is stuck too) when x is 1; otherwise answers x + 1.
import process from "node:process";
let loads = 0;
export default {
  load(context) {
    loads++;
    context.log.info("load", { loads, pid: process.pid });
  },
  predict(context, rows) {
    if (rows.some((r) => r.x === 1)) for (;;) { /* stuck */ }
    return rows.map((r) => ({ y: r.x + 1, pid: process.pid }));
  },
};
