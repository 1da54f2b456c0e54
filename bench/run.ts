/**
 * `pnpm bench [name…]`: runs the named benchmarks (all when none is named) and writes their sections
 * of docs/benchmarks.md.
 */
import { benchFs } from "./fs.js";

const benches: Record<string, () => Promise<void>> = {
  fs: () => benchFs(),
};

const names = process.argv.slice(2);
for (const name of names.length ? names : Object.keys(benches)) {
  const bench = benches[name];
  if (!bench) {
    console.error(`unknown benchmark '${name}'; known: ${Object.keys(benches).join(", ")}`);
    process.exit(2);
  }
  console.log(`== ${name}`);
  await bench();
}
