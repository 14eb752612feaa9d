// Exhausts its heap when x is 1 (the runtime starts it with a small memory_mb); otherwise answers x + 1.
import process from "node:process";
export default {
  predict(context, rows) {
    if (rows.some((r) => r.x === 1)) {
      const hog = [];
      for (;;) hog.push(new Array(100_000).fill({ a: Math.random() }));
    }
    return rows.map((r) => ({ y: r.x + 1, pid: process.pid }));
  },
};
