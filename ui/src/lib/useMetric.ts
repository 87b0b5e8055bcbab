// A metric's series for a chart: the window's points first, then only the new ones every `everyMs`
// (probe's 1 s points are not events, so charts ask for what is new since their last point).
import { useCallback, useEffect, useRef, useState } from "react";
import { api, unwrap } from "../api/client";
import type { SeriesData } from "../components/Chart";
import { mergePoints, stepFor, trimToWindow } from "./timeWindow";
import { nowS } from "./format";
import { useInterval } from "./useAsync";

type Pt = [number, number | null];

export function seriesName(labels: Record<string, string>, fallback: string): string {
  const parts = Object.entries(labels).filter(([k]) => k !== "host").map(([k, v]) => `${k}=${v}`);
  return parts.join(",") || fallback;
}

/** Sum series point-wise by group: `group(labels)` names the group a series adds to (null: left out). */
export function sumBy(series: SeriesData[], group: (name: string) => string | null): SeriesData[] {
  const out = new Map<string, Map<number, number | null>>();
  for (const s of series) {
    const g = group(s.name);
    if (g == null) continue;
    const acc = out.get(g) ?? new Map<number, number | null>();
    for (const [t, v] of s.points) acc.set(t, v == null ? (acc.get(t) ?? null) : (acc.get(t) ?? 0) + v);
    out.set(g, acc);
  }
  return [...out.entries()].map(([name, acc]) => ({
    name, points: [...acc.entries()].sort((a, b) => a[0] - b[0]) as [number, number | null][],
  }));
}

export function useMetric(name: string, opts: { labels?: string; spanS?: number; everyMs?: number; scale?: number } = {}) {
  const { labels, spanS = 300, everyMs = 2000, scale = 1 } = opts;
  const [series, setSeries] = useState<SeriesData[]>([]);
  const [error, setError] = useState<unknown>(null);
  const last = useRef<number | null>(null);
  const step = stepFor(spanS);
  const store = useRef(new Map<string, Pt[]>());

  const fetchFrom = useCallback(async (from: number) => {
    const res = await unwrap(api.GET("/api/metrics/query", {
      params: { query: { name, labels, from: String(from), step: String(step) } },
    }));
    const now = nowS();
    for (const s of res.series) {
      const key = seriesName(s.labels, name);
      const fresh: Pt[] = s.points.map((p) => [p[0], p[1] == null ? null : p[1] * scale]);
      const merged = trimToWindow(mergePoints(store.current.get(key) ?? [], fresh), spanS, now);
      store.current.set(key, merged);
      const t = fresh.length ? fresh[fresh.length - 1][0] : null;
      if (t != null && (last.current == null || t > last.current)) last.current = t;
    }
    setSeries([...store.current.entries()].map(([n, points]) => ({ name: n, points })));
    setError(null);
  }, [name, labels, step, spanS, scale]);

  useEffect(() => {
    store.current = new Map();
    last.current = null;
    setSeries([]);
    fetchFrom(nowS() - spanS).catch(setError);
  }, [fetchFrom, spanS]);

  useInterval(() => {
    const from = last.current != null ? last.current - step : nowS() - spanS;
    fetchFrom(from).catch(setError);
  }, step <= 5 ? everyMs : Math.max(everyMs, step * 1000));

  return { series, error };
}
