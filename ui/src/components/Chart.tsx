// Time-series charts on ECharts (only the line chart and the parts it needs are bundled).
import { useEffect, useRef } from "react";
import * as echarts from "echarts/core";
import { LineChart } from "echarts/charts";
import { GridComponent, LegendComponent, TooltipComponent } from "echarts/components";
import { CanvasRenderer } from "echarts/renderers";

echarts.use([LineChart, GridComponent, TooltipComponent, LegendComponent, CanvasRenderer]);

export interface SeriesData {
  name: string;
  points: [number, number | null][]; // [epoch seconds, value]
}

function css(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export function TimeChart({ series, unit = "", height = 180, max, label, small, range }: {
  series: SeriesData[]; unit?: string; height?: number; max?: number; label: string; small?: boolean;
  range?: [number, number]; // the x axis's window (epoch seconds), so a sparse series sits where it belongs
}) {
  const el = useRef<HTMLDivElement>(null);
  const chart = useRef<echarts.ECharts | null>(null);

  useEffect(() => {
    if (!el.current) return;
    const c = echarts.init(el.current, undefined, { renderer: "canvas" });
    chart.current = c;
    const ro = new ResizeObserver(() => c.resize());
    ro.observe(el.current);
    return () => {
      ro.disconnect();
      c.dispose();
      chart.current = null;
    };
  }, []);

  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    const text = css("--muted") || "#666";
    const grid = css("--border") || "#ddd";
    c.setOption(
      {
        animation: false,
        grid: small ? { left: 0, right: 0, top: 2, bottom: 2 } : { left: 48, right: 12, top: series.length > 1 ? 26 : 10, bottom: 24 },
        tooltip: small ? undefined : { trigger: "axis", valueFormatter: (v: unknown) => (typeof v === "number" ? `${v.toFixed(2)} ${unit}` : "–") },
        legend: !small && series.length > 1 ? { top: 0, textStyle: { color: text }, itemHeight: 8 } : undefined,
        xAxis: { type: "time", show: !small, min: range ? range[0] * 1000 : undefined, max: range ? range[1] * 1000 : undefined,
          axisLabel: { color: text, hideOverlap: true }, axisLine: { lineStyle: { color: grid } } },
        yAxis: { type: "value", show: !small, max, axisLabel: { color: text }, splitLine: { lineStyle: { color: grid } } },
        series: series.map((s) => ({
          name: s.name, type: "line", showSymbol: s.points.length < 3, symbolSize: 5, sampling: "lttb", lineStyle: { width: small ? 1.2 : 1.6 },
          areaStyle: small ? { opacity: 0.15 } : undefined,
          data: s.points.map(([t, v]) => [t * 1000, v]),
        })),
      },
      { notMerge: false, replaceMerge: ["series"] },
    );
  }, [series, unit, max, small, range?.[0], range?.[1]]);

  const points = series.reduce((n, s) => n + s.points.length, 0);
  return (
    <div style={{ position: "relative" }}>
      {points === 0 && !small && <span className="muted" style={{ position: "absolute", inset: "40% 0 auto", textAlign: "center", zIndex: 1 }}>No data yet</span>}
    <div
      ref={el}
      className={`chart ${small ? "small" : ""}`}
      style={small ? undefined : { height }}
      role="img"
      aria-label={label}
      data-points={points}
      data-chart={label}
    />
    </div>
  );
}
