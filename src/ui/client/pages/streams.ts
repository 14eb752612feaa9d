import type { StreamStatusView } from "../../contract.js";
import { getJson } from "../api.js";
import { h, hashLink } from "../dom.js";
import { DASH, duration, num, rate, short, timeEl } from "../format.js";
import { badge, pageTitle, section, setBody, table, type PageContext, type Tone } from "../page.js";

/**
 * The rates a row shows. A running job: its last micro-batch's. A job that ended: those would read as its speed
 * (0.00 rows/s once completed), so the input rate is its average over the run and the processing rate is left out.
 */
function rates(s: StreamStatusView): { input: HTMLElement; processed: HTMLElement } {
  if (s.state === "running") {
    return {
      input: h("span", { title: "input rows per second of the last micro-batch" }, rate(s.inputRowsPerSecond, "rows/s")),
      processed: h("span", { title: "rows per second of the last micro-batch's processing time" }, rate(s.processedRowsPerSecond, "rows/s")),
    };
  }
  const end = Date.parse(s.endedAt ?? s.heartbeatAt);
  const seconds = (end - Date.parse(s.startedAt)) / 1000;
  const average = Number.isFinite(seconds) && seconds > 0 ? s.inputRecords / seconds : null;
  return {
    input: h(
      "span",
      { class: "avg", title: `the job is ${s.state}: average over its run, ${num(s.inputRecords)} records in ${duration(seconds)} (started to ${s.endedAt === null ? "last heartbeat" : "ended"})` },
      average === null ? DASH : `${rate(average, "rows/s")} avg`,
    ),
    processed: h("span", { class: "muted", title: `the job is ${s.state}: no current processing rate (the last micro-batch's is not the job's speed)` }, DASH),
  };
}

const STATE_TONE: Record<StreamStatusView["state"], Tone> = { running: "ok", stopped: "muted", failed: "bad", completed: "info" };

export async function streamsPage(ctx: PageContext): Promise<void> {
  ctx.poll(async (signal) => {
    const { streams } = await getJson<{ streams: StreamStatusView[] }>("/api/v1/streams", signal);
    setBody(
      ctx,
      pageTitle("Streams"),
      section(
        "Streaming jobs (from their heartbeats)",
        table(
          [
            { label: "Job", cell: (s) => s.name },
            { label: "Model", cell: (s) => h("a", { href: hashLink("models", s.model.split("@")[0] ?? s.model) }, s.model) },
            {
              label: "State",
              cell: (s) =>
                h("span", { class: "badges" }, badge(s.state, STATE_TONE[s.state]), s.stale ? badge("stale", "bad", "no heartbeat for longer than expected: the process is gone or stuck") : null),
            },
            { label: "Heartbeat", cell: (s) => timeEl(s.heartbeatAt) },
            { label: "Input", cell: (s) => rates(s).input, numeric: true, title: "running: input rows/s of the last micro-batch; ended: average over the run (avg)" },
            { label: "Processed", cell: (s) => rates(s).processed, numeric: true, title: "running: rows/s of the last micro-batch's processing time; – once the job ended" },
            { label: "Records in / out", cell: (s) => `${num(s.inputRecords)} / ${num(s.outputRecords)}`, numeric: true },
            {
              label: "Waiting",
              cell: (s) => (s.lag === null ? DASH : s.lag > 1000 ? badge(num(s.lag), "warn") : num(s.lag)),
              numeric: true,
              title: "waiting (messages or files): after the last micro-batch, NATS messages pending or unacked, or files of a folder source not yet processed",
            },
            { label: "Dead letters", cell: (s) => (s.deadLetters > 0 ? badge(num(s.deadLetters), "bad") : "0"), numeric: true },
            { label: "Late", cell: (s) => num(s.lateRecords), numeric: true },
            { label: "Watermark", cell: (s) => timeEl(s.watermark) },
            { label: "Host", cell: (s) => `${s.host}:${s.pid}` },
            { label: "Last error", cell: (s) => (s.lastError === null ? "" : h("span", { class: "error-text", title: s.lastError }, short(s.lastError, 100))) },
          ],
          streams,
          {
            empty: "No streaming job has reported to this store (mlship stream run ...).",
            rowAttrs: (s) => ({ "data-testid": `stream-row-${s.name}`, "data-state": s.state, "data-stale": String(s.stale), class: s.stale || s.state === "failed" ? "bad-row" : "" }),
          },
        ),
      ),
    );
    ctx.ready();
  }, 5000);
}
