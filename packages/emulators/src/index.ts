export { createFaults, type Fault, type FaultResponse, type FaultSpec, type Faults } from "./faults.js";
export {
  HttpError,
  type HttpServerOptions,
  type RequestHandler,
  type RunningServer,
  readBody,
  readForm,
  requestUrl,
  sendHtml,
  sendJson,
  startHttpServer,
} from "./http-server.js";
export {
  type ClientAuthMethod,
  defaultOAuthClient,
  type GrantInput,
  type OAuthClient,
  type OAuthProvider,
  type OAuthProviderCounters,
  type OAuthProviderOptions,
  type RefreshTokenStatus,
  startOAuthProvider,
  type TokenRequestRecord,
  type TokenValidation,
} from "./oauth-provider.js";
