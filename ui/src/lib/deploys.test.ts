import { describe, expect, it } from "vitest";
import { EVENT_TYPES, UNLISTED_TYPES } from "../live/eventStore";
import { statusTone } from "./format";
import { asDeployEvent, deployTone, changeValue, deploymentDuration, durationText, mergeDeployEvent, releaseRange, unifiedLines, type Deployment } from "./deploys";

const dep = (over: Partial<Deployment> = {}): Deployment => ({
  id: 7, service: "web", release: 3, from_release: 2, kind: "rollback", strategy: "rolling", status: "running",
  actor: "admin", created_at: 1000, finished_at: null, phases: {}, log: [], error: null, ...over,
});

describe("deploys helpers", () => {
  it("shows the release range, a first release without a previous one", () => {
    expect(releaseRange(dep())).toBe("2 → 3");
    expect(releaseRange(dep({ from_release: null, release: 1 }))).toBe("– → 1");
  });

  it("gives each status a tone: running waits, succeeded is ok, failures are bad", () => {
    expect(statusTone(deployTone("running"))).toBe("warn");
    expect(statusTone(deployTone("pending"))).toBe("warn");
    expect(statusTone(deployTone("succeeded"))).toBe("ok");
    expect(statusTone(deployTone("failed"))).toBe("bad");
    expect(statusTone(deployTone("rolled_back"))).toBe("warn");
  });

  it("formats durations across units and refuses nonsense", () => {
    expect(durationText(0.25)).toBe("250 ms");
    expect(durationText(12.34)).toBe("12.3 s");
    expect(durationText(245)).toBe("4 min 05 s");
    expect(durationText(3720)).toBe("1 h 02 min");
    expect(durationText(null)).toBe("–");
    expect(durationText(-1)).toBe("–");
    expect(durationText(Number.NaN)).toBe("–");
  });

  it("measures a running deployment until now and a finished one until its end", () => {
    expect(deploymentDuration(dep(), 1004)).toBe(4);
    expect(deploymentDuration(dep({ status: "succeeded", finished_at: 1002.5 }), 5000)).toBe(2.5);
    expect(deploymentDuration(dep({ status: "failed", finished_at: null }), 5000)).toBeNull();
  });

  it("shows change values as text", () => {
    expect(changeValue("v2")).toBe("v2");
    expect(changeValue("")).toBe('""');
    expect(changeValue(null)).toBe("(none)");
    expect(changeValue(undefined)).toBe("(none)");
    expect(changeValue(3)).toBe("3");
    expect(changeValue(["a", "b"])).toBe('["a","b"]');
  });

  it("splits a unified diff into coloured lines without its header", () => {
    const diff = "--- from\n+++ to\n@@ -1,2 +1,2 @@\n port=1\n-mode=a\n+mode=b\n\\ No newline at end of file\n";
    expect(unifiedLines(diff)).toEqual([
      { kind: "hunk", text: "@@ -1,2 +1,2 @@" },
      { kind: "same", text: "port=1" },
      { kind: "del", text: "mode=a" },
      { kind: "add", text: "mode=b" },
      { kind: "hunk", text: "\\ No newline at end of file" },
    ]);
    // A removed line that itself starts with "--" is still a deletion, not a header.
    expect(unifiedLines("@@ -1 +1 @@\n---x\n+++y")).toEqual([
      { kind: "hunk", text: "@@ -1 +1 @@" }, { kind: "del", text: "--x" }, { kind: "add", text: "++y" },
    ]);
  });

  it("accepts only well-formed deploy events", () => {
    expect(asDeployEvent({ deployment_id: 7, service: "web", release: 3, status: "running", step: "health", outcome: "ok", detail: "d" }))
      .toEqual({ deployment_id: 7, service: "web", release: 3, status: "running", error: null, step: "health", outcome: "ok", detail: "d" });
    expect(asDeployEvent({ deployment_id: "7", service: "web", release: 3, status: "running" })).toBeNull();
    expect(asDeployEvent({ deployment_id: 7, service: "web", release: 3, status: "exploded" })).toBeNull();
    expect(asDeployEvent({ deployment_id: 7, release: 3, status: "running" })).toBeNull();
  });

  it("has the store listen for both deploy events, progress kept out of the recent-events lists", () => {
    // EventSource delivers a named SSE event only to a listener for its name.
    expect(EVENT_TYPES).toContain("deploy.progress");
    expect(EVENT_TYPES).toContain("deploy.finished");
    expect(UNLISTED_TYPES.has("deploy.progress")).toBe(true);
    expect(UNLISTED_TYPES.has("deploy.finished")).toBe(false);
  });

  it("merges an event into the list, or asks for a reload for an unknown deployment", () => {
    const list = [dep({ id: 8 }), dep()];
    const step = mergeDeployEvent(list, { deployment_id: 7, service: "web", release: 3, status: "running", step: "start", outcome: "ok", detail: "port 5" }, 1001)!;
    expect(step[1].log).toEqual([{ at: 1001, step: "start", outcome: "ok", detail: "port 5" }]);
    expect(step[0]).toBe(list[0]);
    expect(list[1].log).toEqual([]); // not mutated
    const done = mergeDeployEvent(step, { deployment_id: 7, service: "web", release: 3, status: "succeeded" }, 1003)!;
    expect(done[1].status).toBe("succeeded");
    expect(done[1].finished_at).toBe(1003);
    expect(done[1].log).toHaveLength(1);
    expect(mergeDeployEvent(list, { deployment_id: 99, service: "web", release: 4, status: "pending" }, 1)).toBeNull();
  });
});
