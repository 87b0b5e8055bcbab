import { describe, expect, it } from "vitest";
import { byLine, lineOfField, localProblems, serverProblems } from "./yamlErrors";

const GOOD = `name: hello
cmd: ["python3", "app.py"]
healthcheck:
  http: http://127.0.0.1:8080/healthz
  interval: 5s
ports:
  - name: http
    internal: auto
`;

describe("localProblems", () => {
  it("accepts a good spec", () => {
    expect(localProblems(GOOD)).toEqual([]);
  });

  it("puts a YAML syntax error on its line", () => {
    const bad = "name: hello\ncmd: [python3\nenv: {A: 1}\n";
    const p = localProblems(bad);
    expect(p.length).toBeGreaterThan(0);
    expect(p[0].source).toBe("yaml");
    expect(p[0].line).toBeGreaterThanOrEqual(2);
  });

  it("flags a bad indentation on its line", () => {
    const bad = "name: hello\ncmd: x\nhealthcheck:\n  http: a\n interval: 5s\n";
    const p = localProblems(bad);
    expect(p[0].line).toBe(5);
  });

  it("finds duplicate keys, unknown keys with a suggestion, and missing name/cmd", () => {
    expect(localProblems("name: a\nname: b\ncmd: x\n")[0].line).toBe(2);
    const typo = localProblems("name: a\ncmd: x\nhealtcheck:\n  http: x\n");
    expect(typo).toEqual([{ line: 3, field: "healtcheck", source: "check",
      message: 'unknown key "healtcheck"; did you mean "healthcheck"?' }]);
    const missing = localProblems("env: {A: b}\n").map((p) => p.field);
    expect(missing).toEqual(["name", "cmd"]);
    expect(localProblems("- a\n- b\n")[0].message).toMatch(/mapping/);
    expect(localProblems("   ")[0].message).toMatch(/empty/);
  });
});

describe("server problems", () => {
  it("keeps the server's line, or finds the field's line", () => {
    const details = {
      problems: [
        { file: "spec.yaml", line: 5, field: "healthcheck.interval", message: "bad duration" },
        { file: "spec.yaml", line: null, field: "ports.0.internal", message: "not a port" },
        { file: "spec.yaml", line: null, field: "nowhere.at.all", message: "?" },
      ],
    };
    const p = serverProblems(GOOD, details);
    expect(p.map((x) => x.line)).toEqual([5, 8, null]);
    expect(p.every((x) => x.source === "server")).toBe(true);
  });

  it("maps plain validation errors by field", () => {
    expect(serverProblems(GOOD, { errors: [{ field: "healthcheck.http", message: "x" }] })[0].line).toBe(4);
    expect(serverProblems(GOOD, {})).toEqual([]);
  });

  it("indexes fields and groups by line", () => {
    expect(lineOfField(GOOD, "cmd")).toBe(2);
    expect(lineOfField(GOOD, "ports.0")).toBe(7);
    expect(lineOfField(GOOD, "")).toBeNull();
    const g = byLine([{ line: 2, field: "a", message: "x", source: "check" }, { line: null, field: "", message: "y", source: "check" }]);
    expect([...g.keys()]).toEqual([2, 1]);
  });
});
