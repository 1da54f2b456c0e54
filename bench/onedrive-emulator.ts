/**
 * The Graph emulator in a process of its own, so that its work (receiving, storing and hashing
 * 256 MiB) is not counted in a client's time or memory. Prints one JSON line, { graphUrl }, once it
 * listens, and runs until it is killed.
 */
import { startGraphEmulator } from "../packages/emulators/src/index.js";

const graph = await startGraphEmulator();
console.log(JSON.stringify({ graphUrl: graph.graphUrl }));
