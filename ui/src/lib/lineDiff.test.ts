import { describe, expect, it } from "vitest";
import { hunks, lineDiff } from "./lineDiff";

describe("lineDiff", () => {
  it("marks added, removed and kept lines with their numbers", () => {
    const d = lineDiff("name: a\ncmd: x\nreplicas: 1", "name: a\ncmd: y\nreplicas: 1\nuser: web");
    expect(d.map((l) => `${l.kind}:${l.text}`)).toEqual([
      "same:name: a", "del:cmd: x", "add:cmd: y", "same:replicas: 1", "add:user: web",
    ]);
    expect(d[2].new).toBe(2);
    expect(d[1].old).toBe(2);
  });

  it("is empty of changes for equal texts and complete for disjoint ones", () => {
    expect(lineDiff("a\nb", "a\nb").every((l) => l.kind === "same")).toBe(true);
    const d = lineDiff("a", "b");
    expect(d.map((l) => l.kind)).toEqual(["del", "add"]);
  });

  it("keeps context around changes and folds the rest", () => {
    const before = Array.from({ length: 20 }, (_, i) => `line ${i}`).join("\n");
    const after = before.replace("line 10", "line ten");
    const h = hunks(lineDiff(before, after), 1);
    expect(h[0]).toBe("gap");
    expect(h.filter((x) => x !== "gap").map((x) => (x as { text: string }).text)).toEqual(["line 9", "line 10", "line ten", "line 11"]);
    expect(h[h.length - 1]).toBe("gap");
  });
});
