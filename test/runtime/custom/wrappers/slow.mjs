// Answers y = x after a busy wait of x milliseconds (the child's event loop is blocked meanwhile).
export default {
  predict(context, rows) {
    const until = Date.now() + Math.max(...rows.map((r) => r.x));
    while (Date.now() < until) { /* busy */ }
    return rows.map((r) => ({ y: r.x }));
  },
};
