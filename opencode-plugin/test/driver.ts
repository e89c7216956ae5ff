// Loads the plugin the way OpenCode does (call the exported function, get its hooks) and calls its
// callbacks: a stand-in for OpenCode in the plugin's tests and benchmark. Run with bun:
//
//   bun test/driver.ts replay FILE.jsonl [--scenario NAME] [--end exit|dispose|natural|signal]
//       Calls the hook each record names (records shaped like
//       ../tests/payloads/opencode_plugin_events_examples.jsonl: {"kind": "event", "event"}
//       or {"kind": "<callback>", "input", "output"}), then ends as told:
//       exit: process.exit(0) right after the last callback (nothing awaited);
//       dispose: wait until nothing is unacked, await the dispose hook, then return; natural: just
//       return (the event loop runs dry), printing a second line of counters at exit; signal:
//       SIGTERM to itself. Prints one JSON line of the transport's counters (before ending, for
//       exit, signal and natural).
//   bun test/driver.ts tools N [--output-bytes B] [--end ...]
//       N tool.execute.after calls (call_0 ...) with B bytes of output each, one per turn of the
//       event loop (so that each is sent or spooled on its own), then ends as replay does.
//   bun test/driver.ts hostile
//       Calls every hook with hostile arguments; prints {"threw": N, "rejected": N}.
//   bun test/driver.ts bench [--calls N]
//       Times tool.execute.before + tool.execute.after per tool call, beside an empty pair.
//
// The environment decides where events go (AGENTD_HOME, AGENTD_SOCKET, ...), as in OpenCode.

import type { Hooks, PluginInput } from "@opencode-ai/plugin";
import * as fs from "node:fs";
import { AgentdPlugin } from "../src/agentd.ts";

type Callback = (input: unknown, output?: unknown) => Promise<void>;
type Shared = { transport: { stats: Record<string, unknown>; pending: number; state: string } };

export function shared(): Shared {
  return (globalThis as unknown as Record<symbol, Shared>)[Symbol.for("agentd.opencode-plugin.v1")];
}

export function counters(): Record<string, unknown> {
  const t = shared().transport as Shared["transport"] & { bytes?: number };
  return { ...t.stats, pending: t.pending, state: t.state, bytes: t.bytes };
}

export async function load(directory = process.cwd()): Promise<Hooks> {
  const ctx = { directory, worktree: directory } as unknown as PluginInput;
  return AgentdPlugin(ctx);
}

export function call(hooks: Hooks, kind: string, input: unknown, output?: unknown): Promise<void> {
  const hook = (hooks as unknown as Record<string, Callback | undefined>)[kind];
  if (!hook) return Promise.resolve();
  return kind === "event" ? hook(input) : hook(input, output);
}

export function replayRecord(hooks: Hooks, record: Record<string, unknown>): Promise<void> {
  if (record.kind === "event") return call(hooks, "event", { event: record.event });
  return call(hooks, String(record.kind), record.input, record.output);
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

async function replay(file: string): Promise<void> {
  const scenario = arg("--scenario", "");
  const end = arg("--end", "dispose");
  const records = fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => !scenario || r.scenario === scenario);
  const hooks = await load();
  for (const record of records) await replayRecord(hooks, record);
  await finish(hooks, end, records.length);
}

async function tools(n: number): Promise<void> {
  const hooks = await load();
  const output = "x".repeat(Number(arg("--output-bytes", "100")));
  for (let i = 0; i < n; i++) {
    const input = { tool: "bash", sessionID: "ses_tools", callID: `call_${i}` };
    await call(hooks, "tool.execute.after", input, { title: "t", output, metadata: { exit: 0 } });
    await new Promise((r) => setImmediate(r));
  }
  await finish(hooks, arg("--end", "dispose"), n);
}

async function finish(hooks: Hooks, end: string, records: number): Promise<void> {
  if (end === "exit") {
    console.log(JSON.stringify({ ...counters(), records }));
    process.exit(0);
  }
  if (end === "signal") {
    console.log(JSON.stringify({ ...counters(), records }));
    process.kill(process.pid, "SIGTERM");
    await new Promise((r) => setTimeout(r, 5_000)); // the signal ends the process before this
    return;
  }
  if (end === "dispose") {
    await drained(); // dispose's wait is bounded: a replay's result is not a test of speed
    await hooks.dispose?.();
  }
  if (end === "natural") {
    // After the plugin's own exit handler (registered when it loaded), which spools what is left.
    process.on("exit", () => console.log(JSON.stringify({ ...counters(), final: true })));
  }
  console.log(JSON.stringify({ ...counters(), records }));
}

function hostileArguments(): unknown[] {
  const circular: Record<string, unknown> = { a: 1 };
  circular.self = circular;
  const getter = {};
  Object.defineProperty(getter, "boom", {
    enumerable: true,
    get() {
      throw new Error("getter says no");
    },
  });
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const badJSON = {
    toJSON() {
      throw new Error("toJSON says no");
    },
  };
  const lone = { text: "a\ud800b", [`k\udfff`]: "\udc00" };
  return [
    undefined,
    null,
    42,
    "text",
    Symbol("s"),
    () => 1,
    circular,
    { event: circular },
    getter,
    { event: getter },
    revoked.proxy,
    { event: revoked.proxy },
    badJSON,
    { event: badJSON },
    { n: 10n },
    { event: { type: "x", properties: { n: 10n } } },
    lone,
    { event: { id: "evt_lone", type: "lone", properties: lone } },
  ];
}

/** Until the transport holds nothing unacked: dispose's own wait is bounded (it spools what is
 * left), and on a loaded machine the acks of a long run can take longer than that bound. */
async function drained(ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (shared().transport.pending > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function hostile(): Promise<void> {
  const hooks = await load();
  let threw = 0;
  let rejected = 0;
  let calls = 0;
  const kinds = Object.keys(hooks).filter((k) => k !== "dispose");
  for (const kind of kinds) {
    for (const a of hostileArguments()) {
      for (const b of [undefined, a]) {
        calls++;
        try {
          const result = call(hooks, kind, a, b);
          await Promise.resolve(result).catch(() => {
            rejected++;
          });
        } catch {
          threw++;
        }
      }
    }
  }
  await drained();
  await hooks.dispose?.();
  console.log(JSON.stringify({ threw, rejected, calls, kinds, ...counters() }));
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Per tool call: tool.execute.before + tool.execute.after with a realistic bash payload: `calls`
 * timed calls (after `warmup` untimed ones), each with `outputBytes` of output. */
export async function bench(
  calls: number,
  outputBytes = 2_000,
  warmup = 200,
): Promise<Record<string, number>> {
  const hooks = await load();
  const before = hooks["tool.execute.before"] as unknown as Callback;
  const after = hooks["tool.execute.after"] as unknown as Callback;
  const emptyBefore: Callback = async () => {};
  const emptyAfter: Callback = async () => {};
  const output = "x".repeat(outputBytes) + "\n";
  const time = async (b: Callback, a: Callback, i: number): Promise<number> => {
    const input = { tool: "bash", sessionID: "ses_bench", callID: `call_${i}` };
    const args = { command: `echo ${i}`, description: "Bench" };
    const t0 = performance.now();
    await b(input, { args });
    await a(
      { ...input, args },
      { title: `echo ${i}`, output, metadata: { output, exit: 0, truncated: false } },
    );
    return performance.now() - t0;
  };
  // What serializing the same arguments alone costs: the floor of any forwarding plugin.
  const stringifyBefore: Callback = async (input, output) => {
    JSON.stringify({ kind: "tool.execute.before", input, output });
  };
  const stringifyAfter: Callback = async (input, output) => {
    JSON.stringify({ kind: "tool.execute.after", input, output });
  };
  const plugin: number[] = [];
  const empty: number[] = [];
  const stringify: number[] = [];
  for (let i = 0; i < warmup; i++) {
    await time(before, after, -i); // warm-up
    await time(emptyBefore, emptyAfter, -i);
    await time(stringifyBefore, stringifyAfter, -i);
  }
  for (let i = 0; i < calls; i++) {
    // Interleaved, so that machine noise hits all three alike.
    plugin.push(await time(before, after, i));
    empty.push(await time(emptyBefore, emptyAfter, i));
    stringify.push(await time(stringifyBefore, stringifyAfter, i));
    if (i % 64 === 63) await new Promise((r) => setImmediate(r)); // let the transport run, as OpenCode would
  }
  await drained(); // after the timed loop: the figures are per call, untouched
  await hooks.dispose?.();
  for (const a of [plugin, empty, stringify]) a.sort((x, y) => x - y);
  const c = counters();
  return {
    calls,
    median_ms: percentile(plugin, 50),
    p95_ms: percentile(plugin, 95),
    max_ms: plugin[plugin.length - 1],
    baseline_median_ms: percentile(empty, 50),
    baseline_p95_ms: percentile(empty, 95),
    stringify_median_ms: percentile(stringify, 50),
    stringify_p95_ms: percentile(stringify, 95),
    acked: Number(c.acked),
    spooled: Number(c.spooled),
  };
}

if (import.meta.main) {
  const [mode, file] = process.argv.slice(2);
  if (mode === "replay") await replay(file);
  else if (mode === "tools") await tools(Number(file));
  else if (mode === "hostile") await hostile();
  else if (mode === "bench") {
    const calls = Number(arg("--calls", "2000"));
    const result = await bench(calls, Number(arg("--output-bytes", "2000")), Number(arg("--warmup", "200")));
    console.log(JSON.stringify(result));
  }
  else {
    console.error(`unknown mode ${mode}`);
    process.exit(2);
  }
}
