import { applyPostprocess, applyTabularPreprocess } from "../package/index.js";
import { MlshipError } from "../core/index.js";
import type { Tensor } from "../core/index.js";
import type { ModelContext } from "./context.js";
import type { Table } from "./mlflow-input.js";

/** Runs the manifest's post-processing steps (softmax, argmax, labels, top_k) on the model outputs. */
export function runPostprocess(outputs: Record<string, Tensor>, ctx: ModelContext): Record<string, Tensor> {
  return applyPostprocess(outputs, ctx.postprocess);
}

/**
 * Runs the tabular pre-processing steps (select_columns, cast). They work on named rows, so the table is
 * materialised once here; packages without such steps never pay for it.
 */
export function applyTabularSteps(table: Table, ctx: ModelContext): Table {
  const columns = table.columns ?? (ctx.columns !== undefined && table.width(0) === ctx.columns.length ? ctx.columns : undefined);
  if (columns === undefined) {
    // Without names the steps cannot find their columns; positional data goes to the model as is.
    return table;
  }
  const rows = new Array<unknown[]>(table.rowCount);
  for (let r = 0; r < table.rowCount; r++) {
    const row = new Array<unknown>(columns.length);
    for (let c = 0; c < columns.length; c++) {
      const v = table.cell(r, c);
      // A cast step reads an absent value as NaN; a key missing from a record is the client's mistake instead.
      if (v === undefined && table.keyed) {
        const name = columns[c] as string;
        throw new MlshipError("MLSHIP_ERR_INPUT_MISSING", `${table.source}[${r}]: missing column '${name}'`, { field: name, details: { row: r } });
      }
      row[c] = v;
    }
    rows[r] = row;
  }
  const result = applyTabularPreprocess(columns, rows, ctx.tabularSteps);
  const outRows = result.rows;
  return {
    source: table.source,
    columns: result.columns,
    rowCount: outRows.length,
    keyed: false,
    width: (r) => (outRows[r] as unknown[]).length,
    cell: (r, c) => (outRows[r] as unknown[])[c],
    cellPath: (r, c) => `${table.source} row ${r} column '${result.columns[c] ?? c}'`,
  };
}
