import { z } from "zod";
import type { RetryOptions } from "./retry.js";
import type { Logger } from "./types.js";

/** Options every HTTP-based provider takes and hands to its {@link HttpClient}. */
export interface HttpStorageOptions {
  /** Retry settings for each request, or `false`. Default: core's (5 attempts, backoff, Retry-After). */
  retry?: RetryOptions | false;
  /** Default 10 s. */
  connectTimeoutMs?: number;
  /** Default 60 s. */
  headersTimeoutMs?: number;
  /** How long a response body may stall. Default 60 s. */
  bodyTimeoutMs?: number;
  logger?: Logger;
}

/** The zod shape of {@link HttpStorageOptions}, to spread into a provider's options schema. */
export const httpStorageOptionsShape = {
  retry: z
    .union([z.literal(false), z.custom<RetryOptions>((value) => typeof value === "object" && value !== null)])
    .optional(),
  connectTimeoutMs: z.number().int().positive().optional(),
  headersTimeoutMs: z.number().int().positive().optional(),
  bodyTimeoutMs: z.number().int().positive().optional(),
  logger: z
    .custom<Logger>(
      (value) => typeof value === "object" && value !== null && typeof (value as Logger).warn === "function",
    )
    .optional(),
};
