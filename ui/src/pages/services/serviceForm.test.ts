import { describe, expect, it } from "vitest";
import { buildSpec, EMPTY_FORM, fieldOf } from "./serviceForm";
import { portsText, shortId } from "./runtime";

describe("buildSpec", () => {
  it("turns the form into an image spec", () => {
    const { spec, problems } = buildSpec({
      ...EMPTY_FORM, name: " site ", image: "busybox:1", env: "A=1\nB=x=y\n\n", volumes: "data:/data\n/srv/www:/www:ro",
      memory: "64Mi", cpu: "0.5", replicas: "2", health: "healthz",
    });
    expect(problems).toEqual({});
    expect(spec).toEqual({
      name: "site", image: "busybox:1", ports: [{ name: "http", internal: 80 }], env: { A: "1", B: "x=y" },
      volumes: ["data:/data", "/srv/www:/www:ro"], resources: { memory: "64Mi", cpu: 0.5 }, replicas: 2,
      healthcheck: { http: "http://127.0.0.1:${PORT}/healthz", interval: "2s", timeout: "2s", retries: 3, start_period: "5s" },
      restart_policy: "always",
    });
  });

  it("names the port in the health check when there are several", () => {
    const { spec } = buildSpec({ ...EMPTY_FORM, name: "a", image: "b", health: "/",
      ports: [{ name: "web-ui", internal: "8080" }, { name: "admin", internal: "auto" }] });
    expect(spec.ports).toEqual([{ name: "web-ui", internal: 8080 }, { name: "admin", internal: "auto" }]);
    expect((spec.healthcheck as { http: string }).http).toBe("http://127.0.0.1:${PORT_WEB_UI}/");
  });

  it("finds what it can before sending, at the right field", () => {
    const { problems } = buildSpec({ ...EMPTY_FORM, name: "a", image: "b", env: "NOEQUALS", health: "/", ports: [{ name: "", internal: "eighty" }] });
    expect(Object.keys(problems).sort()).toEqual(["env", "ports"]);
    expect(problems.env?.[0]).toContain("is not KEY=VALUE");
    const none = buildSpec({ ...EMPTY_FORM, name: "a", image: "b", health: "/", ports: [] });
    expect(none.problems.health?.[0]).toContain("needs a port");
  });
});

describe("fieldOf", () => {
  it.each([
    ["volumes[0]", "volumes"], ["volumes.1", "volumes"], ["ports.0.internal", "ports"], ["resources.memory", "memory"],
    ["resources.cpu", "cpu"], ["healthcheck.http", "health"], ["env.A", "env"], ["name", "name"], ["user", "other"], ["", "other"],
  ])("%s → %s", (path, field) => expect(fieldOf(path)).toBe(field));
});

describe("runtime display", () => {
  it("shows host→container ports for containers and host ports otherwise", () => {
    const base = { ports: { http: 41234, admin: 41235 } } as unknown as Parameters<typeof portsText>[0];
    expect(portsText({ ...base, container_ports: { http: 80, admin: 9000 } })).toBe("http 41234\u219280, admin 41235\u21929000");
    expect(portsText({ ...base, container_ports: null })).toBe("http 41234, admin 41235");
    expect(shortId("76fff8d5cdfd0123456789")).toBe("76fff8d5cdfd");
    expect(shortId(null)).toBe("");
  });
});
