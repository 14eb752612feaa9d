/**
 * Request bodies as templates with two varied cells: cell A changes with the request counter n, cell B with the
 * load run (warm-up and measurement are separate runs). So every request's input is distinct, within a run and
 * across runs, and a prediction cache cannot turn a model scenario into a cache-hit scenario; the cache-hit
 * scenario sends the template with `vary: false` (one identical body throughout). Two cells rather than one keep
 * every value distinct after the server narrows it to float32. The same template feeds wrk (Lua), autocannon and
 * the plain Node clients: `streamOf(payload, run)` fixes B and leaves `prefix + A(n) + suffix`.
 */
import fs from "node:fs";
import path from "node:path";
import { EXAMPLES } from "./config.js";

export interface Cell {
  base: number;
  step: number;
  /** Digits printed after the decimal point. */
  decimals: number;
}

export interface Payload {
  method: "POST";
  path: string;
  contentType: string;
  /** body = head + A(n) + middle + B(run) + tail */
  head: string;
  middle: string;
  tail: string;
  a: Cell;
  b: Cell;
  /** false: every request sends A(0) and B(0) (the cache-hit scenario). */
  vary: boolean;
}

/** One run's body template: `prefix + A(n) + suffix`. Plain data, so it can be handed to a child process. */
export interface Stream {
  method: "POST";
  path: string;
  contentType: string;
  prefix: string;
  suffix: string;
  a: Cell;
  vary: boolean;
}

export function cellText(c: Cell, i: number): string {
  return (c.base + i * c.step).toFixed(c.decimals);
}

export function streamOf(p: Payload, run: number): Stream {
  return {
    method: p.method,
    path: p.path,
    contentType: p.contentType,
    prefix: p.head,
    suffix: p.middle + cellText(p.b, p.vary ? run : 0) + p.tail,
    a: p.a,
    vary: p.vary,
  };
}

/** The body of request n of a stream. */
export function bodyOf(s: Stream, n: number): string {
  return s.prefix + cellText(s.a, s.vary ? n : 0) + s.suffix;
}

/** The same payload sending one identical body (the cache-hit scenario). */
export function constant(p: Payload): Payload {
  return { ...p, vary: false };
}

interface DataframeSplit {
  dataframe_split: { columns: string[]; data: number[][] };
}

function example(model: string): DataframeSplit {
  return JSON.parse(fs.readFileSync(path.join(EXAMPLES, model, "input_example.json"), "utf8")) as DataframeSplit;
}

/** Splits a JSON text at the markers that stand for cells A and B. */
function template(json: string, a: Cell, b: Cell, pathName: string): Payload {
  const [ma, mb] = [String(MARK_A), String(MARK_B)];
  const at = json.indexOf(ma);
  const bt = json.indexOf(mb);
  if (at < 0 || bt < at || json.indexOf(ma, at + 1) >= 0 || json.indexOf(mb, bt + 1) >= 0) {
    throw new Error(`bench: template markers must occur once each, A before B, in ${json.slice(0, 80)}...`);
  }
  return {
    method: "POST",
    path: pathName,
    contentType: "application/json",
    head: json.slice(0, at),
    middle: json.slice(at + ma.length, bt),
    tail: json.slice(bt + mb.length),
    a,
    b,
    vary: true,
  };
}

/** Values no example contains and that JSON prints as written. */
const MARK_A = 987654321;
const MARK_B = 987654322;

function mlpRows(rows: number): { columns: string[]; data: number[][] } {
  const ex = example("breast-cancer").dataframe_split;
  return { columns: ex.columns, data: Array.from({ length: rows }, (_, i) => [...(ex.data[i % ex.data.length] as number[])]) };
}

/** A: the first row's first feature (mean radius) in 1e-4 steps; B: its last feature in 1e-3 steps per run. */
function mlpCells(row: number[]): [Cell, Cell] {
  return [
    { base: row[0] as number, step: 1e-4, decimals: 4 },
    { base: row[29] as number, step: 1e-3, decimals: 4 },
  ];
}

/** MLflow `dataframe_split` for the breast-cancer MLP on /invocations (the server's default model). */
export function mlflowMlp(rows: number): Payload {
  const { columns, data } = mlpRows(rows);
  const first = data[0] as number[];
  const [a, b] = mlpCells(first);
  first[0] = MARK_A;
  first[29] = MARK_B;
  return template(JSON.stringify({ dataframe_split: { columns, data } }), a, b, "/invocations");
}

/** Open Inference Protocol V2 JSON for the breast-cancer MLP. */
export function v2Mlp(rows: number): Payload {
  const { data } = mlpRows(rows);
  const [a, b] = mlpCells(data[0] as number[]);
  const flat = data.flat();
  flat[0] = MARK_A;
  flat[29] = MARK_B;
  const body = { inputs: [{ name: "input", shape: [rows, 30], datatype: "FP32", data: flat }] };
  return template(JSON.stringify(body), a, b, "/v2/models/breast-cancer/infer");
}

/**
 * One 8x8 digit as the CNN's own input tensor [1,1,8,8] (pixels already scaled to 0..1), so the scenario measures
 * inference and batching, not PNG decoding. A: the first pixel in 1e-6 steps; B: the last pixel in 1e-3 steps.
 */
export function v2Digits(): Payload {
  const pixels = [...(example("digits").dataframe_split.data[0] as number[])];
  const a: Cell = { base: pixels[0] as number, step: 1e-6, decimals: 6 };
  const b: Cell = { base: pixels[63] as number, step: 1e-3, decimals: 6 };
  pixels[0] = MARK_A;
  pixels[63] = MARK_B;
  const body = { inputs: [{ name: "input", shape: [1, 1, 8, 8], datatype: "FP32", data: pixels }] };
  return template(JSON.stringify(body), a, b, "/v2/models/digits/infer");
}

/** Breast-cancer rows as float32 (the in-process session.run loop and the gRPC client). */
export function mlpMatrix(rows: number): Float32Array {
  return Float32Array.from(mlpRows(rows).data.flat());
}

/** Digits as the CNN's float32 input, `images` x 1 x 8 x 8. */
export function digitsMatrix(images: number): Float32Array {
  const pixels = example("digits").dataframe_split.data;
  const out = new Float32Array(images * 64);
  for (let i = 0; i < images; i++) out.set(pixels[i % pixels.length] as number[], i * 64);
  return out;
}
