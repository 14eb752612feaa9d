/**
 * Rule-based data checks on a profiled window: columns and types, value ranges, signs, null rates, row counts and
 * categories. Every check that ran is returned, passed or not, so reports can show the green ones too.
 *
 * Where a bound comes from, in order:
 * 1. **Declared** (`monitor.rules` in the package or a monitor config file): `source: "declared"`, severity error.
 * 2. **Learned from the reference** when nothing is declared: `source: "reference"`, severity warning (the reference
 *    is a sample; a value just past what it happened to contain is worth a look, not a failed deployment):
 *    - range: `[min - tol*(max-min), max + tol*(max-min)]` of the reference column, `tol` = `range_tolerance`;
 *      a side with a declared `min`/`max` uses that instead;
 *    - non-negative: inferred when the reference column has no negative value, unless the column declares
 *      `non_negative` (true or false), `positive: true` or a `min`;
 *    - null rate: the reference column's null rate + `LEARNED_NULL_SLACK`, when neither the column nor the rules
 *      declare `max_null_rate`;
 *    - type: the current column must have the reference column's kind (numeric or categorical: an error, since a
 *      numeric model input that turns into text cannot be scored); a reference column whose values were all
 *      integers expects integers (a warning);
 *    - categories: a category absent from the reference frequencies is "unseen" (severity `unseen_categories`,
 *      default error); when the reference profile kept only its top-K categories (`otherCount > 0`) an absent one
 *      may just be rare, so the result says so and is downgraded to a warning.
 * 3. **Built-in default** when neither is there: a null-rate ceiling of `DEFAULT_MAX_NULL_RATE` (a warning,
 *    recorded as `source: "declared"` with "(default)" in `expected`).
 *
 * Expected columns are the model's declared columns (`expectedColumns`), else the reference's columns, plus the
 * columns named under `rules.columns`; a missing one is an error. With `expected_columns: strict` any other column
 * is a warning. The row count is compared with the previous window (`max_row_drop`, an error: a sudden loss of
 * traffic or rows usually means a broken upstream). Columns of the current window without min/max (all values
 * missing) skip the value checks; an empty column skips the null-rate check.
 */
import type { AllowedValue, ColumnRules, DeclaredType, MonitorConfig } from "../package/index.js";
import type { CategoricalProfile, ColumnProfile, DatasetProfile, NumericProfile, RuleResult, Severity } from "./types.js";

/** Null-rate ceiling when nothing is declared and there is no reference. */
export const DEFAULT_MAX_NULL_RATE = 0.05;
/** A learned null-rate ceiling is the reference's null rate plus this (absolute) share. */
export const LEARNED_NULL_SLACK = 0.05;
/** Most values named in one message. */
const LIST_LIMIT = 10;

export interface CheckRulesInput {
  current: DatasetProfile;
  /** The reference's feature profile (`ReferenceProfile.features`). */
  reference?: DatasetProfile | undefined;
  /** The window before `current`, for the row-count rule. */
  previous?: DatasetProfile | undefined;
  config: MonitorConfig;
  /** The model's declared input columns (package signature); default: the reference's columns. */
  expectedColumns?: string[] | undefined;
}

export function checkRules(input: CheckRulesInput): RuleResult[] {
  const { current, reference, previous, config } = input;
  const rules = config.rules;
  const results: RuleResult[] = [];
  const currentNames = new Set(current.columns.map((c) => c.name));
  const referenceByName = new Map((reference?.columns ?? []).map((c) => [c.name, c]));

  const expected = [...new Set([
    ...(input.expectedColumns ?? reference?.columns.map((c) => c.name) ?? []),
    ...Object.keys(rules.columns),
  ])];
  const expectedSet = new Set(expected);
  for (const name of expected) {
    const present = currentNames.has(name);
    results.push({
      rule: "column_missing",
      column: name,
      passed: present,
      severity: "error",
      message: present ? `column ${q(name)} is present` : `column ${q(name)} is missing from the data`,
      observed: present ? "present" : "missing",
      expected: "present",
      source: "declared",
    });
  }

  if (rules.expected_columns === "strict" && expected.length > 0) {
    const extra = current.columns.map((c) => c.name).filter((name) => !expectedSet.has(name));
    for (const name of extra) {
      results.push({
        rule: "unexpected_column",
        column: name,
        passed: false,
        severity: "warning",
        message: `column ${q(name)} is not one of the ${expected.length} expected columns (expected_columns: strict)`,
        observed: name,
        expected: "only the expected columns",
        source: "declared",
      });
    }
    if (extra.length === 0) {
      results.push({
        rule: "unexpected_column",
        column: undefined,
        passed: true,
        severity: "warning",
        message: `no columns beyond the ${expected.length} expected ones`,
        observed: 0,
        expected: "only the expected columns",
        source: "declared",
      });
    }
  }

  if (previous !== undefined && previous.rows > 0) results.push(rowCountDrop(current.rows, previous.rows, rules.max_row_drop));

  for (const column of current.columns) {
    const declared = rules.columns[column.name] ?? {};
    const ref = referenceByName.get(column.name);
    results.push(...typeChecks(column, declared, ref));
    const nullRule = nullRate(column, declared, rules.max_null_rate, ref);
    if (nullRule !== undefined) results.push(nullRule);
    if (column.kind === "numeric") {
      results.push(...rangeChecks(column, declared, ref, rules.range_tolerance));
      results.push(...signChecks(column, declared, ref));
      if (declared.allowed !== undefined) {
        const allowedRule = allowedNumbers(column, declared.allowed);
        if (allowedRule !== undefined) results.push(allowedRule);
      }
    } else {
      if (declared.allowed !== undefined) results.push(allowedCategories(column, declared.allowed));
      if (ref?.kind === "categorical" && rules.unseen_categories !== "ignore") {
        results.push(unseenCategories(column, ref, rules.unseen_categories));
      }
    }
  }
  return results;
}

/** The row-count rule for a window against the one before it (exported for the windowed check). */
export function rowCountDrop(rows: number, previousRows: number, maxDrop: number): RuleResult {
  const drop = (previousRows - rows) / previousRows;
  // Integer row counts: `rows < previous*(1-maxDrop)` is the same as `rows < ceil(previous*(1-maxDrop))`.
  const minRows = Math.ceil(previousRows * (1 - maxDrop) - 1e-9);
  const passed = rows >= minRows;
  const bound = `>= ${minRows} rows (at most ${pct(maxDrop)} fewer than the previous window's ${previousRows})`;
  return {
    rule: "row_count_drop",
    column: undefined,
    passed,
    severity: "error",
    message: passed
      ? `${rows} rows against ${previousRows} in the previous window (${drop > 0 ? `${pct(drop)} fewer` : "no drop"}); allowed drop ${pct(maxDrop)}`
      : `row count dropped ${pct(drop)} to ${rows} from ${previousRows} in the previous window, more than the allowed ${pct(maxDrop)} (max_row_drop); expected ${bound}`,
    observed: rows,
    expected: bound,
    source: "previous_window",
  };
}

function typeChecks(column: ColumnProfile, declared: ColumnRules, ref: ColumnProfile | undefined): RuleResult[] {
  if (declared.type !== undefined) {
    const problem = declaredTypeProblem(column, declared.type);
    return [{
      rule: "type",
      column: column.name,
      passed: problem === undefined,
      severity: "error",
      message: problem === undefined
        ? `column ${q(column.name)} matches the declared type ${declared.type}`
        : `column ${q(column.name)} is declared ${declared.type} but ${problem}`,
      observed: observedType(column),
      expected: declared.type,
      source: "declared",
    }];
  }
  if (ref === undefined) return [];
  const out: RuleResult[] = [];
  const sameKind = ref.kind === column.kind;
  out.push({
    rule: "type",
    column: column.name,
    passed: sameKind,
    severity: "error",
    message: sameKind
      ? `column ${q(column.name)} is ${column.kind} like the reference`
      : `column ${q(column.name)} is ${column.kind} but ${ref.kind} in the reference${
        column.kind === "categorical" ? " (it holds values that are not numbers)" : ""}`,
    observed: column.kind,
    expected: ref.kind,
    source: "reference",
  });
  if (sameKind && ref.kind === "numeric" && column.kind === "numeric" && ref.integer && ref.count > 0 && column.count > 0) {
    out.push({
      rule: "type",
      column: column.name,
      passed: column.integer,
      severity: "warning",
      message: column.integer
        ? `column ${q(column.name)} holds only integers, like the reference`
        : `column ${q(column.name)} holds non-integer values but the reference held only integers`,
      observed: observedType(column),
      expected: "int",
      source: "reference",
    });
  }
  return out;
}

/** Why a column does not fit its declared type, or undefined when it does. */
function declaredTypeProblem(column: ColumnProfile, type: DeclaredType): string | undefined {
  switch (type) {
    case "int":
      if (column.kind === "categorical") return "it holds values that are not numbers";
      return column.integer ? undefined : "it holds non-integer values";
    case "float":
      return column.kind === "numeric" ? undefined : "it holds values that are not numbers";
    case "string":
      // A profiler reads a column whose every value parses as a number as numeric; a declared string column
      // is expected to be profiled as categorical.
      return column.kind === "categorical" ? undefined : "it was profiled as numeric (every value is a number)";
    case "bool": {
      if (column.kind === "numeric") {
        const zeroOne = column.count === 0 ||
          (column.integer && (column.min ?? 0) >= 0 && (column.max ?? 0) <= 1);
        return zeroOne ? undefined : `it holds numbers other than 0 and 1 (min ${fmt(column.min)}, max ${fmt(column.max)})`;
      }
      const others = Object.keys(column.frequencies).filter((v) => !["true", "false"].includes(v.toLowerCase()));
      if (others.length > 0) return `it holds values other than true/false: ${listOf(others)}`;
      return column.otherCount > 0 ? `${column.otherCount} values were not kept in the profile to check` : undefined;
    }
  }
}

function observedType(column: ColumnProfile): string {
  if (column.kind === "categorical") return "categorical";
  return column.integer ? "numeric (integers)" : "numeric";
}

function nullRate(
  column: ColumnProfile,
  declared: ColumnRules,
  datasetCeiling: number | undefined,
  ref: ColumnProfile | undefined,
): RuleResult | undefined {
  const total = column.count + column.nulls;
  if (total === 0) return undefined;
  const rate = column.nulls / total;
  let ceiling: number;
  let source: RuleResult["source"];
  let severity: Severity;
  let origin: string;
  if (declared.max_null_rate !== undefined) {
    [ceiling, source, severity, origin] = [declared.max_null_rate, "declared", "error", "declared for the column"];
  } else if (datasetCeiling !== undefined) {
    [ceiling, source, severity, origin] = [datasetCeiling, "declared", "error", "declared max_null_rate"];
  } else if (ref !== undefined && ref.count + ref.nulls > 0) {
    const refRate = ref.nulls / (ref.count + ref.nulls);
    ceiling = Math.min(1, refRate + LEARNED_NULL_SLACK);
    [source, severity, origin] = ["reference", "warning", `reference null rate ${pct(refRate)} + ${pct(LEARNED_NULL_SLACK)}`];
  } else {
    [ceiling, source, severity, origin] = [DEFAULT_MAX_NULL_RATE, "declared", "warning", "default"];
  }
  const passed = rate <= ceiling;
  return {
    rule: "null_rate",
    column: column.name,
    passed,
    severity,
    message: passed
      ? `column ${q(column.name)}: null rate ${pct(rate)} is within the ceiling ${pct(ceiling)} (${origin})`
      : `column ${q(column.name)}: null rate ${pct(rate)} (${column.nulls} of ${total} values missing) is above the ceiling ${pct(ceiling)} (${origin})`,
    observed: rate,
    expected: `<= ${fmt(ceiling)}${origin === "default" ? " (default)" : ""}`,
    source,
  };
}

function rangeChecks(
  column: NumericProfile,
  declared: ColumnRules,
  ref: ColumnProfile | undefined,
  tolerance: number,
): RuleResult[] {
  if (column.min === null || column.max === null) return [];
  const out: RuleResult[] = [];
  if (declared.min !== undefined || declared.max !== undefined) {
    out.push(rangeResult(column, column.min, column.max, declared.min, declared.max, "declared", "error", "declared"));
  }
  if (ref?.kind === "numeric" && ref.min !== null && ref.max !== null && (declared.min === undefined || declared.max === undefined)) {
    const width = ref.max - ref.min;
    const lo = declared.min === undefined ? ref.min - tolerance * width : undefined;
    const hi = declared.max === undefined ? ref.max + tolerance * width : undefined;
    const how = `learned: reference [${fmt(ref.min)}, ${fmt(ref.max)}] widened by ${fmt(tolerance)} of its width`;
    out.push(rangeResult(column, column.min, column.max, lo, hi, "reference", "warning", how));
  }
  return out;
}

function rangeResult(
  column: NumericProfile,
  min: number,
  max: number,
  lo: number | undefined,
  hi: number | undefined,
  source: RuleResult["source"],
  severity: Severity,
  how: string,
): RuleResult {
  const kind = source === "declared" ? "declared" : "learned";
  const belowLow = lo !== undefined && min < lo;
  const aboveHigh = hi !== undefined && max > hi;
  const problems: string[] = [];
  if (belowLow) problems.push(`min ${fmt(min)} is below the ${kind} minimum ${fmt(lo as number)}`);
  if (aboveHigh) problems.push(`max ${fmt(max)} is above the ${kind} maximum ${fmt(hi as number)}`);
  const expected = lo !== undefined && hi !== undefined
    ? `[${fmt(lo)}, ${fmt(hi)}]`
    : lo !== undefined ? `>= ${fmt(lo)}` : `<= ${fmt(hi as number)}`;
  const passed = problems.length === 0;
  return {
    rule: "range",
    column: column.name,
    passed,
    severity,
    message: passed
      ? `column ${q(column.name)}: values [${fmt(min)}, ${fmt(max)}] are within ${expected} (${how})`
      : `column ${q(column.name)}: ${problems.join("; ")} (${how})`,
    observed: belowLow && !aboveHigh ? min : aboveHigh && !belowLow ? max : `[${fmt(min)}, ${fmt(max)}]`,
    expected,
    source,
  };
}

function signChecks(column: NumericProfile, declared: ColumnRules, ref: ColumnProfile | undefined): RuleResult[] {
  if (column.count === 0) return [];
  if (declared.positive === true) {
    const bad = column.negatives + column.zeros;
    return [signResult(column, "positive", bad, "> 0", "declared", "error", "declared positive")];
  }
  if (declared.non_negative === true) {
    return [signResult(column, "non_negative", column.negatives, ">= 0", "declared", "error", "declared non_negative")];
  }
  const inferable = declared.non_negative === undefined && declared.min === undefined;
  if (inferable && ref?.kind === "numeric" && ref.count > 0 && ref.negatives === 0) {
    return [signResult(column, "non_negative", column.negatives, ">= 0", "reference", "warning",
      "inferred: the reference has no negative value")];
  }
  return [];
}

function signResult(
  column: NumericProfile,
  rule: "positive" | "non_negative",
  bad: number,
  bound: string,
  source: RuleResult["source"],
  severity: Severity,
  why: string,
): RuleResult {
  const what = rule === "positive" ? "zero or negative" : "negative";
  return {
    rule,
    column: column.name,
    passed: bad === 0,
    severity,
    message: bad === 0
      ? `column ${q(column.name)}: every value is ${bound} (${why})`
      : `column ${q(column.name)}: ${bad} ${what} value${bad === 1 ? "" : "s"} (min ${fmt(column.min)}); expected every value ${bound} (${why})`,
    observed: bad,
    expected: `every value ${bound}`,
    source,
  };
}

/**
 * Declared `allowed` values of a numeric column. The profile keeps no value list, only a sample: when the sample is
 * every value the check is exact, otherwise it covers the sample plus min/max.
 */
function allowedNumbers(column: NumericProfile, allowed: AllowedValue[]): RuleResult | undefined {
  if (column.count === 0) return undefined;
  // true/false allow 1/0, as a bool column read as numbers holds them.
  const numbers = new Set(allowed.map(Number).filter(Number.isFinite));
  const candidates = [...column.sample];
  if (column.min !== null) candidates.push(column.min);
  if (column.max !== null) candidates.push(column.max);
  const outside = [...new Set(candidates.filter((v) => !numbers.has(v)))].sort((a, b) => a - b);
  const exact = column.sample.length >= column.count;
  const scope = exact ? "" : ` (checked the min, max and a sample of ${column.sample.length} of ${column.count} values)`;
  const expected = `one of ${listOf(allowed.map(String))}`;
  return {
    rule: "allowed_values",
    column: column.name,
    passed: outside.length === 0,
    severity: "error",
    message: outside.length === 0
      ? `column ${q(column.name)}: every value is ${expected}${scope}`
      : `column ${q(column.name)}: values not allowed: ${outside.slice(0, LIST_LIMIT).map(fmt).join(", ")}${
        outside.length > LIST_LIMIT ? ` and ${outside.length - LIST_LIMIT} more` : ""}; expected ${expected}${scope}`,
    observed: outside.length,
    expected,
    source: "declared",
  };
}

function allowedCategories(column: CategoricalProfile, allowed: AllowedValue[]): RuleResult {
  const allowedSet = new Set(allowed.map(String));
  const outside = Object.keys(column.frequencies).filter((v) => !allowedSet.has(v));
  const rows = outside.reduce((n, v) => n + (column.frequencies[v] ?? 0), 0);
  const note = column.otherCount > 0
    ? ` (the profile keeps only the most frequent values; ${column.otherCount} values beyond them were not checked)`
    : "";
  const expected = `one of ${listOf(allowed.map(String))}`;
  return {
    rule: "allowed_values",
    column: column.name,
    passed: outside.length === 0,
    severity: "error",
    message: outside.length === 0
      ? `column ${q(column.name)}: every value is ${expected}${note}`
      : `column ${q(column.name)}: ${rows} values not allowed: ${listOf(outside)}; expected ${expected}${note}`,
    observed: outside.length,
    expected,
    source: "declared",
  };
}

function unseenCategories(column: CategoricalProfile, ref: CategoricalProfile, mode: "error" | "warning"): RuleResult {
  const unseen = Object.keys(column.frequencies).filter((v) => !(v in ref.frequencies));
  const rows = unseen.reduce((n, v) => n + (column.frequencies[v] ?? 0), 0);
  const referenceIncomplete = ref.otherCount > 0;
  const notes: string[] = [];
  if (referenceIncomplete) {
    notes.push(`the reference profile keeps only its ${Object.keys(ref.frequencies).length} most frequent categories ` +
      `(${ref.otherCount} reference values in others), so these may be rare reference categories`);
  }
  if (column.otherCount > 0) notes.push(`${column.otherCount} current values beyond the profile's top categories were not checked`);
  const note = notes.length > 0 ? ` (${notes.join("; ")})` : "";
  const passed = unseen.length === 0;
  return {
    rule: "unseen_categories",
    column: column.name,
    passed,
    severity: referenceIncomplete && !passed ? "warning" : mode,
    message: passed
      ? `column ${q(column.name)}: every category was seen in the reference${note}`
      : `column ${q(column.name)}: ${unseen.length} categor${unseen.length === 1 ? "y" : "ies"} not in the reference (${rows} rows): ${listOf(unseen)}${note}`,
    observed: unseen.length,
    expected: "0 categories outside the reference",
    source: "reference",
  };
}

function q(name: string): string {
  return JSON.stringify(name);
}

/** Six significant digits: learned bounds are computed and would otherwise print as 30.200000000000003. */
function fmt(value: number | null): string {
  if (value === null) return "none";
  return String(Number(value.toPrecision(6)));
}

function pct(share: number): string {
  return `${Number((share * 100).toPrecision(4))}%`;
}

function listOf(values: string[]): string {
  const shown = values.slice(0, LIST_LIMIT).map((v) => JSON.stringify(v)).join(", ");
  return values.length > LIST_LIMIT ? `${shown} and ${values.length - LIST_LIMIT} more` : shown;
}
