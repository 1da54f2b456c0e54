import { joinFlight } from "./concurrency.js";

/** How the index finds and makes one folder level. */
export interface FolderLevels {
  /** The id of the folder `name` in `parentId` (the duplicates policy applied), or undefined. */
  find(parentId: string, name: string, path: string): Promise<string | undefined>;
  /** Creates the folder `name` in `parentId` and returns its id. */
  create(parentId: string, name: string, path: string): Promise<string>;
}

/**
 * Folder path → Drive id, in the manner of rclone's dircache and OpenDAL's GdrivePathIndex
 * (reference §C.6). Drive addresses by id only, so a path is resolved one level at a time, each
 * level a query in its parent; resolved ids are kept until invalidated.
 *
 * Every level is a single flight per path: concurrent callers share one lookup, and concurrent
 * puts into a new folder create it once. That matters on Drive, where two creates of one name make
 * two folders. Flights run without any caller's signal, so one caller's abort never fails another.
 *
 * Paths are `/`-joined names from the top (My Drive's root or the shared drive), `""` being the top.
 */
export class PathIndex {
  private readonly ids = new Map<string, string>();
  private readonly finds = new Map<string, Promise<string | undefined>>();
  private readonly creations = new Map<string, Promise<string>>();
  private readonly levels: FolderLevels;

  constructor(topId: string, levels: FolderLevels) {
    this.ids.set("", topId);
    this.levels = levels;
  }

  /**
   * The id of the folder at `segments`, creating the levels deeper than `createFrom` that are
   * missing; undefined when a level that may not be created is missing.
   *
   * @param createFrom how many leading levels must exist already (`segments.length`: create none).
   */
  async resolve(
    segments: readonly string[],
    createFrom: number,
    signal: AbortSignal | undefined,
    context: { provider: string; operation: string; key?: string },
  ): Promise<string | undefined> {
    let parentId = this.ids.get("")!;
    for (let depth = 1; depth <= segments.length; depth++) {
      const path = segments.slice(0, depth).join("/");
      const flight = this.level(path, parentId, segments[depth - 1]!, depth > createFrom);
      const id = await joinFlight(flight, signal, context);
      if (id === undefined) return undefined;
      parentId = id;
    }
    return parentId;
  }

  /** Forgets `path` and every folder below it: a write found one of them gone. */
  invalidate(path: string): void {
    for (const known of [...this.ids.keys()]) {
      if (known !== "" && (known === path || known.startsWith(`${path}/`) || path === ""))
        this.ids.delete(known);
    }
  }

  private level(path: string, parentId: string, name: string, create: boolean): Promise<string | undefined> {
    const known = this.ids.get(path);
    if (known !== undefined) return Promise.resolve(known);
    const creating = this.creations.get(path);
    // A lookup that meets a creation in flight waits for it: the folder is about to exist.
    if (creating) return creating;
    if (create) return this.flight(this.creations, path, () => this.findOrCreate(path, parentId, name));
    return this.flight(this.finds, path, () => this.levels.find(parentId, name, path));
  }

  private async findOrCreate(path: string, parentId: string, name: string): Promise<string> {
    const found = await (this.finds.get(path) ?? this.levels.find(parentId, name, path));
    return found ?? this.levels.create(parentId, name, path);
  }

  private flight<T extends string | undefined>(
    flights: Map<string, Promise<T>>,
    path: string,
    work: () => Promise<T>,
  ): Promise<T> {
    const running = flights.get(path);
    if (running) return running;
    const flight = work();
    flights.set(path, flight);
    // Registered before any caller awaits the flight, so the id is cached when they resume.
    flight.then(
      (id) => {
        if (id !== undefined) this.ids.set(path, id);
      },
      () => undefined,
    );
    flight.finally(() => flights.delete(path)).catch(() => undefined);
    return flight;
  }
}
