import { MlshipError } from "../core/index.js";

export interface CsvTable {
  header: string[];
  rows: string[][];
}

/**
 * Parses CSV text as pandas `to_csv` writes it: header row first, comma separated, RFC 4180 quoting,
 * `\n` or `\r\n` line ends, header names trimmed. The one CSV reader of mlship: request bodies at serving time
 * and training-data headers at registration (`columnsFromCsv`) split columns the same way. Blank lines are skipped (pandas does too); a row with a different cell count is an
 * error that names its line.
 */
export function parseCsv(text: string): CsvTable {
  let s = text;
  if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
  const records: string[][] = [];
  const lines: number[] = [];
  let row: string[] = [];
  let cell = "";
  let line = 1;
  let rowLine = 1;
  let i = 0;
  const n = s.length;
  let rowHasContent = false;
  const endRow = (): void => {
    row.push(cell);
    cell = "";
    if (rowHasContent || row.length > 1) {
      records.push(row);
      lines.push(rowLine);
    }
    row = [];
    rowHasContent = false;
  };
  while (i < n) {
    const ch = s.charCodeAt(i);
    if (ch === 0x22 /* " */ && cell === "") {
      rowHasContent = true;
      i++;
      let closed = false;
      while (i < n) {
        const c = s.charCodeAt(i);
        if (c === 0x22) {
          if (s.charCodeAt(i + 1) === 0x22) {
            cell += '"';
            i += 2;
            continue;
          }
          i++;
          closed = true;
          break;
        }
        if (c === 0x0a) line++;
        cell += s[i];
        i++;
      }
      if (!closed) {
        throw new MlshipError("MLSHIP_ERR_INPUT_JSON", `CSV line ${rowLine}: a quoted value is not closed`, { field: `line ${rowLine}` });
      }
      continue;
    }
    if (ch === 0x2c /* , */) {
      row.push(cell);
      cell = "";
      rowHasContent = true;
      i++;
      continue;
    }
    if (ch === 0x0d /* \r */ && s.charCodeAt(i + 1) === 0x0a) {
      i++;
      continue;
    }
    if (ch === 0x0a /* \n */) {
      endRow();
      i++;
      line++;
      rowLine = line;
      continue;
    }
    // A run of plain characters up to the next delimiter, copied in one slice.
    let j = i;
    while (j < n) {
      const c = s.charCodeAt(j);
      if (c === 0x2c || c === 0x0a || c === 0x0d) break;
      j++;
    }
    if (j === i) {
      // A lone \r (old Mac line end) is kept as data; pandas would do the same with the C parser off.
      cell += s[i];
      i++;
    } else {
      cell += s.slice(i, j);
      i = j;
    }
    rowHasContent = true;
  }
  if (cell !== "" || row.length > 0 || rowHasContent) endRow();

  const header = records[0];
  if (header === undefined) {
    throw new MlshipError("MLSHIP_ERR_INPUT_JSON", "the CSV body is empty (it needs a header row and data rows)", { field: "csv" });
  }
  const width = header.length;
  for (let r = 1; r < records.length; r++) {
    const rec = records[r] as string[];
    if (rec.length !== width) {
      throw new MlshipError(
        "MLSHIP_ERR_INPUT_SHAPE",
        `CSV line ${lines[r]}: ${rec.length} values but the header has ${width} columns`,
        { field: `line ${lines[r]}` },
      );
    }
  }
  return { header: header.map((h) => h.trim()), rows: records.slice(1) };
}
