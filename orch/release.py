"""Releases as data: what defines a running service (spec, rendered config files, artifact or image, env)
as one document, with secrets kept out of it, and the difference between two of them. Pure.

A release document is built once and stored as it is (releases are immutable). Config files appear with
only the release's own variables expanded (`${version}`, `${installPath}`, `${env}`): the rest (ports,
env values that may hold passwords) is expanded when an instance starts, so no secret reaches history.
Env values whose names look secret (PASSWORD, TOKEN, KEY, ...) are shown as a marker naming the release
that last set them; `${secret:NAME}` references stay references.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orch.instances import expand
from orch.spec import ServiceSpec

SECRET_NAME = re.compile(r"(?i)(pass|secret|token|key|credential|private|auth)")
RELEASE_VARS = ("version", "installPath", "env")
# A release's version label: it names the release dir (`<data>/releases/<service>/<version>/`) and expands
# as ${version}. The one rule for deploys and the artifact store.
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
VERSION_RULE = "1-128 letters, digits and . _ + -, starting with a letter or digit"


def release_vars(label: str, install_path: str | None, env_name: str) -> dict[str, str]:
    """The variables a release adds to its spec's (config files, cmd, env, workdir)."""
    return {"version": label, "installPath": install_path or "", "env": env_name}


def is_secret(name: str, value: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not value.startswith("${secret:")


def redacted_env(
    env: Mapping[str, str],
    previous_env: Mapping[str, str] | None,
    previous_doc_env: Mapping[str, str] | None,
    release: int,
) -> dict[str, str]:
    """`env` for the release document: a secret-looking value becomes `<secret set in release N>`, where N
    is this release when the value differs from the previous spec's, else the marker it had."""
    out = {}
    for k, v in env.items():
        if not is_secret(k, v):
            out[k] = v
        elif previous_env is not None and previous_env.get(k) == v and previous_doc_env and k in previous_doc_env:
            out[k] = previous_doc_env[k]
        else:
            out[k] = f"<secret set in release {release}>"
    return out


def build_release(
    spec: ServiceSpec,
    release: int,
    variables: Mapping[str, str],
    templates: Mapping[int, str],
    *,
    artifact: Mapping[str, Any] | None = None,
    image_digest: str | None = None,
    unit: str | None = None,
    previous_spec: ServiceSpec | None = None,
    previous_doc: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The document stored for release `release` of `spec`."""
    rv = {k: variables[k] for k in RELEASE_VARS if k in variables}
    env = redacted_env(spec.env, previous_spec.env if previous_spec else None, (previous_doc or {}).get("env"), release)
    data = spec.model_dump(mode="json", exclude_defaults=True)
    if "env" in data:
        data["env"] = env
    files = []
    for i, f in enumerate(spec.config_files):
        text = f.content if f.content is not None else templates.get(i, "")
        files.append(
            {
                "path": expand(f.path, rv),
                "mode": f"{f.mode:04o}",
                "owner": f.owner,
                "template": f.template,
                "content": expand(text, rv),
            }
        )
    return {
        "release": release,
        "version": rv.get("version", ""),
        "install_path": rv.get("installPath") or None,
        "spec": data,
        "env": env,
        "config_files": files,
        "artifact": dict(artifact) if artifact else None,
        "image": spec.image,
        "image_digest": image_digest,
        "unit": unit,
    }


def templates_of(doc: Mapping[str, Any], spec: ServiceSpec) -> dict[int, str]:
    """The template texts a stored release used, by config file position (a rollback reuses them, not the
    files on disk today)."""
    files = doc.get("config_files") or []
    return {
        i: files[i]["content"] for i, f in enumerate(spec.config_files) if f.template is not None and i < len(files)
    }


def _flat(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list) and value and all(isinstance(x, dict) and "path" in x for x in value):
        for x in value:  # config files by their path, not their position
            _flat({k: v for k, v in x.items() if k != "path"}, f"{prefix}[{x['path']}]", out)
    else:
        out[prefix] = value


MAX_DIFF_LINES = 20_000  # per side: beyond it a text's unified diff is left out (difflib is superlinear)
MAX_DIFF_CHARS = 1024 * 1024  # a unified diff longer than this is cut, and says so


def diff(a: Mapping[str, Any] | None, b: Mapping[str, Any], unified: bool = True) -> list[dict[str, Any]]:
    """What changed from release document `a` to `b`: one entry per field (`spec.env.A`,
    `config_files[app.ini].content`, ...) with `from`/`to`; multi-line text also gets a unified diff
    (with `unified`; bounded by `MAX_DIFF_LINES` and `MAX_DIFF_CHARS`). CPU work on up to 1 MiB texts:
    callers run it in a worker pool."""
    fa: dict[str, Any] = {}
    fb: dict[str, Any] = {}
    _flat({k: v for k, v in (a or {}).items() if k != "release"}, "", fa)
    _flat({k: v for k, v in b.items() if k != "release"}, "", fb)
    out = []
    for key in sorted(set(fa) | set(fb)):
        if key.startswith(("spec.config_files", "spec.env", "spec.image")):
            continue  # shown once, rendered, under config_files / env / image
        va, vb = fa.get(key), fb.get(key)
        if va == vb:
            continue
        entry: dict[str, Any] = {"field": key, "from": va, "to": vb}
        if isinstance(va, str) and isinstance(vb, str) and ("\n" in va or "\n" in vb):
            if unified:
                entry["diff"] = _unified(va, vb)
        elif not isinstance(va, str | int | float | bool | None) or not isinstance(vb, str | int | float | bool | None):
            entry["from"], entry["to"] = _short(va), _short(vb)
        out.append(entry)
    return out


def _unified(va: str, vb: str) -> str:
    la, lb = va.splitlines(True), vb.splitlines(True)
    if max(len(la), len(lb)) > MAX_DIFF_LINES:
        return f"(no line diff: more than {MAX_DIFF_LINES} lines)\n"
    out = "".join(difflib.unified_diff(la, lb, "from", "to"))
    return out if len(out) <= MAX_DIFF_CHARS else out[:MAX_DIFF_CHARS] + "\n(diff cut at 1 MiB)\n"


def summaries(docs: Sequence[Mapping[str, Any]], _: Any = None) -> list[str]:
    """For releases newest first: what each changed against the one after it in the list (no line diffs)."""
    return [summary(diff(docs[i + 1] if i + 1 < len(docs) else None, d, unified=False)) for i, d in enumerate(docs)]


def _short(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool | None) else json.dumps(v, sort_keys=True)


def summary(changes: Sequence[Mapping[str, Any]]) -> str:
    """`spec.cmd, config_files[app.ini].content` — what a release changed, for its list entry."""
    return ", ".join(c["field"] for c in changes[:8]) + (f" (+{len(changes) - 8})" if len(changes) > 8 else "")


MAX_AUDIT_VALUE = 200  # characters: a longer text (a config file) is audited by its size and digest


def override_changes(a: Mapping[str, Any] | None, b: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """What a deploy's `overrides` (the top-level spec fields `keys`) changed from release document `a` to
    `b`, for the audit log: `{field: {"from": old, "to": new}}` with fields as in `diff` (`env.DB_PASSWORD`,
    `spec.healthcheck.http`, `config_files[app.ini].content`); env values as the documents hold them (a
    secret is its `<secret set in release N>` marker), texts over `MAX_AUDIT_VALUE` by size and digest."""
    wanted = set(keys)
    out: dict[str, Any] = {}
    for c in diff(a, b, unified=False):
        field = c["field"]
        top = re.split(r"[.\[]", field.removeprefix("spec."), maxsplit=1)[0]
        if top in wanted:
            out[field] = {"from": _audited(c["from"]), "to": _audited(c["to"])}
    return out


def _audited(v: Any) -> Any:
    if isinstance(v, str) and len(v) > MAX_AUDIT_VALUE:
        return f"<{len(v)} characters, sha256 {hashlib.sha256(v.encode()).hexdigest()[:16]}>"
    return v
