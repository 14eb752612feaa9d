// load() says so, then never finishes (a busy loop: the process's event loop is stuck too).
import { setTimeout as sleep } from "node:timers/promises";

export default {
  async load(context) {
    context.log.info("load started");
    await sleep(50);
    for (;;) { /* stuck */ }
  },
  predict(context, rows) {
    return rows.map(() => ({ y: 0 }));
  },
};
