// Throws on a row whose x is negative (a plain Error: a wrapper failure, 500) or 13 (an input error naming the
// row and column, like WrapperInputError: 400); returns a bad output for x = 99 (wrong type); otherwise doubles x.
class InputError extends Error {
  constructor(message, row, column) {
    super(message);
    this.row = row;
    this.column = column;
  }
}

export default {
  predict(context, rows) {
    return rows.map((row, r) => {
      if (row.x < 0) throw new Error(`negative x is not supported`);
      if (row.x === 13) throw new InputError("13 is unlucky", r, "x");
      if (row.x === 99) return { y: "not a number" };
      if (row.x === 98) return {};
      return { y: row.x * 2 };
    });
  },
};
