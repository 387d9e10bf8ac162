#!/usr/bin/env node
// Run a wasm32-wasip1 program (typically a libtest binary) under Node's WASI
// (preview1), so the filter's unit tests run as wasm, the way the filter runs
// inside Envoy:
//
//   CARGO_TARGET_WASM32_WASIP1_RUNNER="node $PWD/scripts/wasi-run.mjs" \
//     cargo test -p pinhole-filter --target wasm32-wasip1
//
// (use an absolute path: cargo runs test binaries from the crate directory.)
//
//   node scripts/wasi-run.mjs PROGRAM.wasm [ARGS...]
//
// - argv is passed through (argv[0] is the program's file name), so libtest
//   filters and flags work: `cargo test ... -- glob::tests --nocapture`.
// - The environment is passed through (RUST_BACKTRACE, RUST_TEST_* ...).
// - No directories are preopened: the engine's tests must not touch files.
// - Exits with the program's exit code. A trap (wasm32-wasip1 has panic=abort,
//   so a panicking test aborts the whole binary) exits with 101, like a
//   failed native test binary, after re-running once with --nocapture so the
//   failing test's name and panic message are shown.
// - Node's "WASI is an experimental feature" warning is suppressed.

import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';

// Silence only the WASI ExperimentalWarning; keep every other warning.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  const type = typeof rest[0] === 'string' ? rest[0] : rest[0]?.type;
  const text = typeof warning === 'string' ? warning : warning?.message ?? '';
  if (type === 'ExperimentalWarning' && /WASI/i.test(text)) return;
  return emitWarning(warning, ...rest);
};

// Imported after the patch above: loading node:wasi emits the warning.
const { WASI } = await import('node:wasi');

const [program, ...args] = process.argv.slice(2);
if (!program) {
  process.stderr.write('usage: node scripts/wasi-run.mjs PROGRAM.wasm [ARGS...]\n');
  process.exit(2);
}

let bytes;
try {
  bytes = await readFile(program);
} catch (err) {
  process.stderr.write(`wasi-run: cannot read ${program}: ${err.message}\n`);
  process.exit(2);
}

function run(argv) {
  const wasi = new WASI({
    version: 'preview1',
    args: [basename(program), ...argv],
    env: { ...process.env },
    preopens: {},
    returnOnExit: true,
  });
  const instance = new WebAssembly.Instance(module, wasi.getImportObject());
  return wasi.start(instance);
}

let module;
try {
  module = await WebAssembly.compile(bytes);
} catch (err) {
  process.stderr.write(`wasi-run: ${program} is not a valid wasm module: ${err.message}\n`);
  process.exit(2);
}

try {
  process.exit(run(args) ?? 0);
} catch (err) {
  if (!(err instanceof WebAssembly.RuntimeError)) {
    process.stderr.write(`wasi-run: ${err.stack ?? err}\n`);
    process.exit(2);
  }
  process.stderr.write(`\nwasi-run: ${basename(program)} trapped (${err.message}).\n`);
  // libtest captures a test's output, panic message included, and prints it
  // only after the test returns, which an abort never does. So when the
  // binary looks like a libtest run with captured output, run it once more
  // with --nocapture and pretty output: the failing test's name and panic
  // message then appear just above the trap.
  const looksLikeLibtest = !args.includes('--nocapture') && !args.includes('--list')
    && !args.includes('--bench');
  if (looksLikeLibtest) {
    const rerunArgs = args.filter((a) => a !== '-q' && a !== '--quiet' && !a.startsWith('--format'));
    rerunArgs.push('--nocapture', '--test-threads=1');
    process.stderr.write(`wasi-run: re-running with: ${rerunArgs.join(' ')}\n`);
    try {
      run(rerunArgs);
    } catch (err2) {
      process.stderr.write(`\nwasi-run: trapped again (${err2.message}).\n`);
    }
  }
  process.stderr.write(
    'wasi-run: on wasm32-wasip1 a panic aborts: the first failing test (the last one started\n' +
      'wasi-run: above) stops the whole test binary.\n',
  );
  process.exit(101);
}
