// A line diff (longest common subsequence) of the spec being edited against the applied one, shown
// before applying. Pure; specs are small (the table is lines × lines).

export type DiffLine = { kind: "same" | "add" | "del"; text: string; old?: number; new?: number };

export function lineDiff(before: string, after: string): DiffLine[] {
  const a = before.split("\n");
  const b = after.split("\n");
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ kind: "same", text: a[i], old: i + 1, new: j + 1 });
      i++;
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
      out.push({ kind: "del", text: a[i], old: i + 1 });
      i++;
    } else {
      out.push({ kind: "add", text: b[j], new: j + 1 });
      j++;
    }
  }
  for (; i < n; i++) out.push({ kind: "del", text: a[i], old: i + 1 });
  for (; j < m; j++) out.push({ kind: "add", text: b[j], new: j + 1 });
  return out;
}

/** Only the changed lines with `context` unchanged lines around each change. */
export function hunks(diff: DiffLine[], context = 2): (DiffLine | "gap")[] {
  const keep = diff.map((d) => d.kind !== "same");
  const show = diff.map((_, k) => {
    for (let x = Math.max(0, k - context); x <= Math.min(diff.length - 1, k + context); x++) if (keep[x]) return true;
    return false;
  });
  const out: (DiffLine | "gap")[] = [];
  diff.forEach((d, k) => {
    if (show[k]) out.push(d);
    else if (out[out.length - 1] !== "gap") out.push("gap"); // folded unchanged lines
  });
  return out;
}
