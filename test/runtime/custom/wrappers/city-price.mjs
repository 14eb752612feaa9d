// Two inputs, a number and a text, and three outputs per row: a number (y = 2x), a text (band) and a json value
// describing the row, so streams and monitoring see every kind of value a custom model can answer.
export default {
  predict(context, rows) {
    return rows.map((row) => ({
      y: row.x * 2,
      band: row.x >= 10 ? "high" : "low",
      info: { city: row.city, even: row.x % 2 === 0, tags: ["custom"] },
    }));
  },
};
