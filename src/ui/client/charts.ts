/** uPlot charts: time series (traffic, drift statistic, quality) and a reference/current histogram overlay. */

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./dom.js";
import { num } from "./format.js";

const PALETTE = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#9333ea", "#ea580c", "#475569"];

export function color(index: number): string {
  return PALETTE[index % PALETTE.length] ?? "#2563eb";
}

export interface SeriesSpec {
  label: string;
  color?: string;
  dash?: number[];
  width?: number;
  /** Draw against the chart's second y scale (`y2`, its axis on the right) instead of the first. */
  y2?: boolean;
}

export type ChartData = [number[], ...(number | null)[][]];

export interface Chart {
  /** The wrapper (`data-testid="chart-<name>"`) holding the uPlot root. */
  element: HTMLElement;
  setData(data: ChartData): void;
  destroy(): void;
}

interface ChartOptions {
  /** The name after `chart-` in the data-testid (already made safe by the caller). */
  name: string;
  title: string;
  series: SeriesSpec[];
  /** Formats y values on the axis and in the legend. */
  format?: (value: number) => string;
  /** x is epoch seconds (time axis); false for an index axis. */
  time?: boolean;
  height?: number;
  /** Fixed y range, e.g. [0, 1] for rates. */
  yRange?: [number, number];
  /**
   * A second y scale, its axis on the right, for series marked `y2` whose values are not on the first one's
   * scale (a test's statistic next to its p-value).
   */
  y2?: { format: (value: number) => string };
  /** Labels of the x positions (index axis). */
  xLabels?: string[];
  /** Longer names of the x positions for the legend (index axis), e.g. a bin's full range; default `xLabels`. */
  xLegendLabels?: string[];
  bars?: boolean;
  /**
   * Time axis only: show this many seconds ending at the newest sample instead of the data's extent (live charts,
   * which then fill from the right). A zoom (drag) is kept while data arrives; double-click returns to the window.
   */
  trailingSeconds?: () => number;
  /** Extra room on the right, in CSS pixels (for rotated labels of the last x positions). */
  rightPadding?: number;
}

/**
 * Marks every sample of a series while few are in view or they are far apart (uPlot's own rule is only the
 * latter): a live chart that has just started is otherwise a sliver of a few pixels at the right edge of its
 * trailing window, which reads as "no data".
 */
const FEW_POINTS = 12;
const POINT_SPACING_PX = 8;
function showPoints(u: uPlot): boolean {
  const idxs = u.series[0]?.idxs;
  const xs = u.data[0];
  const i0 = idxs?.[0];
  const i1 = idxs?.[1];
  if (i0 === undefined || i1 === undefined || i0 === null || i1 === null) return false;
  const count = i1 - i0 + 1;
  if (count <= FEW_POINTS) return true;
  const first = xs[i0];
  const last = xs[i1];
  if (first === undefined || last === undefined) return false;
  return (count - 1) * POINT_SPACING_PX <= Math.abs(u.valToPos(last, "x") - u.valToPos(first, "x"));
}

/** A y range from 0 (or the data's minimum when it is negative) to a little above the data's maximum. */
function fromZero(_u: uPlot, min: number | null, max: number | null): uPlot.Range.MinMax {
  return [Math.min(0, min ?? 0), max === null || max <= 0 ? 1 : max * 1.1];
}

function widthOf(element: HTMLElement): number {
  return Math.max(240, Math.floor(element.getBoundingClientRect().width || element.parentElement?.getBoundingClientRect().width || 600));
}

/**
 * Creates the chart wrapper (call `mount` once it is in the document, so the chart takes its width). Charts
 * follow their wrapper's width and are destroyed when `signal` aborts (the page is left).
 */
export function chart(options: ChartOptions, data: ChartData, signal: AbortSignal): Chart {
  const element = h("figure", { class: "chart", "data-testid": `chart-${options.name}` }, h("figcaption", null, options.title));
  const format = options.format ?? ((v: number) => num(v));
  const fmt = (v: number | null | undefined): string => (v === null || v === undefined ? "–" : format(v));
  const time = options.time ?? true;
  const y2Format = options.y2?.format;
  const labels = options.xLabels;
  const legendLabels = options.xLegendLabels ?? labels;
  const barsBuilder = options.bars ? uPlot.paths.bars : undefined;
  const series: uPlot.Series[] = [
    time
      ? {}
      : { label: "bin", value: (_u: uPlot, v: number | null) => (v === null ? "–" : (legendLabels?.[Math.round(v)] ?? String(v))) },
    ...options.series.map((s, i): uPlot.Series => {
      const stroke = s.color ?? color(i);
      const base: uPlot.Series = { label: s.label, stroke, width: s.width ?? 1.5, value: (_u: uPlot, v: number | null) => fmt(v) };
      if (s.dash) base.dash = s.dash;
      if (s.y2 === true && y2Format !== undefined) {
        base.scale = "y2";
        base.value = (_u: uPlot, v: number | null) => (v === null || v === undefined ? "–" : y2Format(v));
      }
      if (time) base.points = { show: showPoints };
      if (barsBuilder !== undefined) {
        const count = options.series.length;
        base.paths = barsBuilder({ size: [0.8 / count, 80], align: count === 1 ? 0 : i === 0 ? -1 : 1 });
        base.fill = `${stroke}99`;
        base.points = { show: false };
      }
      return base;
    }),
  ];
  const trailing = time ? options.trailingSeconds : undefined;
  /** The user dragged across the chart: keep that range when new data arrives, until a double-click resets it. */
  let zoomed = false;
  const trailingRange = (u: uPlot, min: number | null, max: number | null): uPlot.Range.MinMax => {
    const xs = u.data[0];
    const first = xs[0];
    const newest = xs[xs.length - 1];
    const span = Math.max(1, trailing?.() ?? 300);
    // uPlot asks with the data's extent when it autoscales (first draw, setData, double-click; with one point it
    // widens max on its own); anything else is a zoom the user dragged.
    const auto = min === null || max === null || first === undefined || newest === undefined || (min === first && (max === newest || xs.length === 1));
    if (!auto) {
      zoomed = true;
      return [min, max];
    }
    zoomed = false;
    const end = newest ?? Date.now() / 1000;
    return [end - span, end];
  };
  const opts: uPlot.Options = {
    width: 600,
    height: options.height ?? 200,
    series,
    ...(options.rightPadding === undefined ? {} : { padding: [null, options.rightPadding, null, null] as uPlot.Padding }),
    scales: {
      x: time
        ? trailing === undefined
          ? { time: true }
          : { time: true, range: trailingRange }
        : { time: false, range: (_u: uPlot, min: number, max: number): uPlot.Range.MinMax => [Math.min(min, 0) - 0.5, Math.max(max, (labels?.length ?? 1) - 1) + 0.5] },
      y: options.yRange ? { range: options.yRange } : { range: fromZero },
      ...(y2Format === undefined ? {} : { y2: { range: fromZero } }),
    },
    axes: [
      time
        ? // Live charts: wider tick spacing, so a few minutes get minute ticks whose date line does not overlap.
          { stroke: "#64748b", grid: { stroke: "#e2e8f0" }, ...(trailing === undefined ? {} : { space: 80 }) }
        : {
            stroke: "#64748b",
            grid: { show: false },
            splits: () => (labels ?? []).map((_, i) => i),
            values: (_u: uPlot, splits: number[]) => splits.map((i) => labels?.[i] ?? ""),
            rotate: labels !== undefined && labels.length > 8 ? -35 : 0,
            size: labels !== undefined && labels.length > 8 ? 70 : 40,
          },
      { stroke: "#64748b", grid: { stroke: "#e2e8f0" }, values: (_u: uPlot, splits: number[]) => splits.map((v) => format(v)), size: 70 },
      ...(y2Format === undefined
        ? []
        : [
            {
              scale: "y2",
              side: 1,
              stroke: "#64748b",
              grid: { show: false },
              values: (_u: uPlot, splits: number[]) => splits.map((v) => y2Format(v)),
              size: 60,
            },
          ]),
    ],
    legend: { live: true },
    // The shown x range on the wrapper (data-x-min/-max, axis units), so tests and tools can read what is on screen.
    hooks: {
      setScale: [
        (u: uPlot, key: string) => {
          if (key !== "x") return;
          const { min, max } = u.scales.x ?? {};
          if (min !== undefined && max !== undefined) {
            element.dataset.xMin = String(min);
            element.dataset.xMax = String(max);
          }
        },
      ],
    },
    cursor: { drag: { x: true, y: false } },
  };
  let plot: uPlot | null = null;
  let pending: ChartData = data;
  let observer: ResizeObserver | null = null;
  const mount = (): void => {
    if (plot !== null || signal.aborted) return;
    if (!element.isConnected) {
      waiting.add(mount);
      return;
    }
    opts.width = widthOf(element);
    plot = new uPlot(opts, pending as uPlot.AlignedData, element);
    observer = new ResizeObserver(() => {
      const width = widthOf(element);
      if (plot !== null && Math.abs(plot.width - width) > 4) plot.setSize({ width, height: plot.height });
    });
    observer.observe(element);
  };
  const result: Chart = {
    element,
    setData(next) {
      pending = next;
      if (plot === null) mount();
      else if (zoomed) {
        // New data without losing the user's zoom: keep the x range, let y follow the data inside it.
        const min = plot.scales.x?.min;
        const max = plot.scales.x?.max;
        plot.setData(next as uPlot.AlignedData, false);
        if (min !== undefined && max !== undefined) plot.setScale("x", { min, max });
        else plot.redraw();
      } else plot.setData(next as uPlot.AlignedData);
    },
    destroy() {
      observer?.disconnect();
      plot?.destroy();
      plot = null;
    },
  };
  signal.addEventListener("abort", () => result.destroy(), { once: true });
  // Drawn once the wrapper is in the document (its width is known then): by flushCharts (pages call it through
  // ready()), or on the next frame.
  waiting.add(mount);
  requestAnimationFrame(() => {
    if (waiting.delete(mount)) mount();
  });
  return result;
}

const waiting = new Set<() => void>();

/** Draws the charts created so far whose wrappers are in the document. */
export function flushCharts(): void {
  for (const mount of [...waiting]) {
    waiting.delete(mount);
    mount();
  }
}

/** Epoch ms or ISO text -> the seconds uPlot's time axis uses. */
export function toSeconds(t: number | string): number {
  return (typeof t === "number" ? t : Date.parse(t)) / 1000;
}
