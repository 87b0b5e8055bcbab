import { describe, expect, it } from "vitest";
import { formatDuration, mergePoints, parseDuration, relative, stepFor, trimToWindow, WINDOWS, windowRange } from "./timeWindow";

describe("time windows", () => {
  it("picks steps near 300 points, on the resolutions stored", () => {
    expect(stepFor(WINDOWS["5m"])).toBe(1);
    expect(stepFor(WINDOWS["15m"])).toBe(5);
    expect(stepFor(WINDOWS["1h"])).toBe(15);
    expect(stepFor(WINDOWS["24h"])).toBe(300);
    expect(stepFor(WINDOWS["7d"])).toBe(3600);
    expect(stepFor(10 * 365 * 86400)).toBe(86400 * 13);
    for (const span of Object.values(WINDOWS)) expect(span / stepFor(span)).toBeLessThanOrEqual(300);
  });

  it("aligns a window's edges to its step and covers now", () => {
    const now = 1_700_000_123.4;
    const r = windowRange(3600, now);
    expect(r.step).toBe(15);
    expect(r.to % 15).toBe(0);
    expect(r.from % 15).toBe(0);
    expect(r.to).toBeGreaterThan(now);
    expect(r.to - r.from).toBe(3600);
    // A refresh within the same bucket gives the same range.
    expect(windowRange(3600, now + 1)).toEqual(r);
  });

  it("parses durations", () => {
    expect(parseDuration("90s")).toBe(90);
    expect(parseDuration("15m")).toBe(900);
    expect(parseDuration("2h")).toBe(7200);
    expect(parseDuration("1d")).toBe(86400);
    expect(parseDuration("30")).toBe(30);
    expect(parseDuration("1.5h")).toBe(5400);
    expect(parseDuration("soon")).toBeNull();
    expect(parseDuration("-5m")).toBeNull();
  });

  it("trims and merges live points", () => {
    const pts: [number, number][] = [[10, 1], [20, 2], [30, 3]];
    expect(trimToWindow(pts, 15, 35)).toEqual([[20, 2], [30, 3]]);
    expect(trimToWindow(pts, 100, 35)).toBe(pts);
    expect(mergePoints(pts, [[30, 9], [40, 4]])).toEqual([[10, 1], [20, 2], [30, 9], [40, 4]]);
    expect(mergePoints(pts, [])).toBe(pts);
  });

  it("formats relative times and durations", () => {
    expect(relative(100, 130)).toBe("30s ago");
    expect(relative(0, 7200)).toBe("2h ago");
    expect(relative(86400 * 5, 0)).toBe("in 5d");
    expect(formatDuration(3725)).toBe("1h 2m");
    expect(formatDuration(42)).toBe("42s");
    expect(formatDuration(90061)).toBe("1d 1h");
  });
});
