// Time windows of charts and log searches: "15m", "1h", "24h", "7d" -> [from, to] in epoch seconds
// and a step that gives about `points` points, snapped to the resolutions the probe stores
// (1 s raw, 5 s and 1 min rollups) so the server never has to re-bucket odd steps. Pure.

export type WindowKey = "5m" | "15m" | "1h" | "24h" | "7d";

export const WINDOWS: Record<WindowKey, number> = {
  "5m": 300,
  "15m": 900,
  "1h": 3600,
  "24h": 86400,
  "7d": 7 * 86400,
};

const NICE_STEPS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400];

/** Parse "90s", "15m", "1h", "2d" into seconds; null when it is not a duration. */
export function parseDuration(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$/.exec(text);
  if (!m) return null;
  const n = Number(m[1]);
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[(m[2] ?? "s") as "s" | "m" | "h" | "d" | "w"];
  return n * unit;
}

/** The smallest nice step giving at most `points` points over `spanS` seconds. */
export function stepFor(spanS: number, points = 300): number {
  const raw = spanS / Math.max(1, points);
  for (const s of NICE_STEPS) if (s >= raw) return s;
  return Math.ceil(raw / 86400) * 86400;
}

export interface Range {
  from: number;
  to: number;
  step: number;
}

/** The window ending at `now`, its edges aligned down to the step (stable buckets across refreshes). */
export function windowRange(spanS: number, nowS: number, points = 300): Range {
  const step = stepFor(spanS, points);
  const to = Math.floor(nowS / step) * step + step; // include the bucket `now` is in
  return { from: to - Math.ceil(spanS / step) * step, to, step };
}

/** Keep the points of a live series inside the window (points are [t, ...] sorted by t). */
export function trimToWindow<T extends readonly [number, ...unknown[]]>(points: T[], spanS: number, nowS: number): T[] {
  const cutoff = nowS - spanS;
  let i = 0;
  while (i < points.length && points[i][0] < cutoff) i++;
  return i ? points.slice(i) : points;
}

/** Merge newly fetched points into a series: later values for the same t win, order by t. */
export function mergePoints<T extends readonly [number, ...unknown[]]>(old: T[], fresh: T[]): T[] {
  if (!fresh.length) return old;
  const first = fresh[0][0];
  const keep = old.filter((p) => p[0] < first);
  return keep.concat(fresh);
}

/** "3m ago", "2h ago", "in 5d" for a timestamp relative to now (both epoch seconds). */
export function relative(ts: number, nowS: number): string {
  const d = nowS - ts;
  const a = Math.abs(d);
  const text = a < 60 ? `${Math.round(a)}s` : a < 3600 ? `${Math.round(a / 60)}m` : a < 86400
    ? `${Math.round(a / 3600)}h` : `${Math.round(a / 86400)}d`;
  return d >= 0 ? `${text} ago` : `in ${text}`;
}

/** A duration like 3725 -> "1h 2m". */
export function formatDuration(s: number): string {
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}
