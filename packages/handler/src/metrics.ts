/**
 * A small Prometheus registry (text exposition format 0.0.4): the handler needs a few counters and
 * one histogram, not a client library.
 */

type Labels = Record<string, string>;

const escapeLabel = (value: string) =>
  value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([name, value]) => `${name}="${escapeLabel(value)}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

class Counter {
  private readonly values = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels)) ?? 0;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [labels, value] of this.values) lines.push(`${this.name}${labels} ${value}`);
    return lines.join("\n");
  }
}

class Histogram {
  private readonly series = new Map<
    string,
    { labels: Labels; counts: number[]; sum: number; count: number }
  >();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets: readonly number[],
  ) {}

  observe(labels: Labels, value: number): void {
    const key = labelText(labels);
    let entry = this.series.get(key);
    if (entry === undefined) {
      entry = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, entry);
    }
    for (let i = 0; i < this.buckets.length; i++) {
      if (value <= this.buckets[i]!) entry.counts[i]!++;
    }
    entry.sum += value;
    entry.count++;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const { labels, counts, sum, count } of this.series.values()) {
      this.buckets.forEach((bound, i) => {
        lines.push(`${this.name}_bucket${labelText({ ...labels, le: String(bound) })} ${counts[i]}`);
      });
      lines.push(`${this.name}_bucket${labelText({ ...labels, le: "+Inf" })} ${count}`);
      lines.push(`${this.name}_sum${labelText(labels)} ${sum}`);
      lines.push(`${this.name}_count${labelText(labels)} ${count}`);
    }
    return lines.join("\n");
  }
}

/** The handler's metrics; `render` adds the gauges read at scrape time. */
export class HandlerMetrics {
  readonly requests = new Counter(
    "stowage_handler_http_requests_total",
    "HTTP requests by route and status.",
  );
  readonly refreshes = new Counter(
    "stowage_handler_refreshes_total",
    "Access tokens served, by provider and source (cache, provider, v2-cache, v2-provider).",
  );
  readonly providerCalls = new Counter(
    "stowage_handler_provider_calls_total",
    "Calls to providers' token and revocation endpoints, by provider, call and outcome.",
  );
  readonly rateLimited = new Counter(
    "stowage_handler_rate_limited_total",
    "Requests refused with 429, by route and scope (ip, key, password).",
  );
  readonly logins = new Counter(
    "stowage_handler_logins_total",
    "Completed and failed logins, by provider and outcome.",
  );
  readonly refreshSeconds = new Histogram(
    "stowage_handler_refresh_duration_seconds",
    "Time to answer /refresh, by source.",
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  );

  render(gauges: { records?: number; storeUp: boolean }): string {
    const parts = [
      this.requests.render(),
      this.refreshes.render(),
      this.providerCalls.render(),
      this.rateLimited.render(),
      this.logins.render(),
      this.refreshSeconds.render(),
      "# HELP stowage_handler_store_up Whether the store answered this scrape.",
      "# TYPE stowage_handler_store_up gauge",
      `stowage_handler_store_up ${gauges.storeUp ? 1 : 0}`,
    ];
    if (gauges.records !== undefined) {
      parts.push(
        "# HELP stowage_handler_records AuthID v1 records in the store.",
        "# TYPE stowage_handler_records gauge",
        `stowage_handler_records ${gauges.records}`,
      );
    }
    return `${parts.join("\n")}\n`;
  }
}
