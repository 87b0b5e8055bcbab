import { describe, expect, it } from "vitest";
import { findingFromEvent, fixParts, fixToCopy, groupBySeverity, type Finding } from "./findings";

function f(id: string, severity: Finding["severity"], title = id, isNew?: boolean): Finding {
  return { id, category: "platform", severity, title, evidence: [], fix: "x", details: {}, new: isNew ?? null };
}

describe("groupBySeverity", () => {
  it("orders groups most severe first, drops empty ones, new findings first then by title", () => {
    const g = groupBySeverity([f("a", "low"), f("b", "critical"), f("c", "medium", "zeta"), f("d", "medium", "alpha"),
      f("e", "medium", "omega", true)]);
    expect(g.map(([s]) => s)).toEqual(["critical", "medium", "low"]);
    expect(g[1][1].map((x) => x.id)).toEqual(["e", "d", "c"]);
  });
  it("is empty for no findings", () => {
    expect(groupBySeverity([])).toEqual([]);
  });
});

describe("findingFromEvent", () => {
  it("reads a security.finding event's data as a new finding without evidence", () => {
    expect(findingFromEvent({ id: "platform.admin_no_2fa.x", category: "platform", severity: "medium", title: "t", fix: "do" }))
      .toEqual({ id: "platform.admin_no_2fa.x", category: "platform", severity: "medium", title: "t", fix: "do",
        evidence: [], details: {}, new: true });
  });
  it("refuses malformed data rather than showing half a finding", () => {
    expect(findingFromEvent({ id: "x", severity: "apocalyptic", title: "t", fix: "f" })).toBeNull();
    expect(findingFromEvent({ id: 3, severity: "high", title: "t", fix: "f" })).toBeNull();
    expect(findingFromEvent({ id: "x", severity: "high", title: "t" })).toBeNull();
    expect(findingFromEvent({})).toBeNull();
  });
});

describe("fixParts / fixToCopy", () => {
  it("splits code spans and copies the one command", () => {
    expect(fixParts("`fsctl user totp enable admin`")).toEqual(["", "fsctl user totp enable admin", ""]);
    expect(fixToCopy("`fsctl user totp enable admin`")).toBe("fsctl user totp enable admin");
    expect(fixToCopy("`chmod 0700 /d`")).toBe("chmod 0700 /d");
  });
  it("copies the whole text, without the backticks, when it has several commands or none", () => {
    expect(fixToCopy("put `A no` in f.conf, then `sshd -t`")).toBe("put A no in f.conf, then sshd -t");
    expect(fixToCopy("close the port")).toBe("close the port");
  });
  it("keeps an unpaired backtick as text", () => {
    expect(fixParts("odd ` here")).toEqual(["odd ` here"]);
    expect(fixToCopy("odd ` here")).toBe("odd ` here");
  });
});
