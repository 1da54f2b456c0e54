export {
  type AuthId,
  type AuthIdV1,
  type AuthIdV2,
  loginUrlFor,
  type ParseAuthIdOptions,
  parseAuthId,
} from "./authid.js";
export {
  type CachedTokenSourceOptions,
  cachedTokenSource,
  type FetchedToken,
} from "./cached-token-source.js";
export { type AuthDefaults, authObjectOptions, authParams, tokenSourceFromConnection } from "./connection.js";
export {
  type HandlerOptions,
  hostedHandler,
  type SelfHostedHandlerOptions,
  selfHostedHandler,
} from "./handler.js";
export {
  classifyHandlerFailure,
  type HandlerErrorCode,
  type HandlerFailure,
  type HandlerFailureContext,
  handlerErrorCodes,
} from "./handler-errors.js";
export { type ClientAuthMethod, type OAuthRefreshTokenOptions, oauthRefreshToken } from "./oauth.js";
export { personalAccessToken } from "./pat.js";
export {
  type BasicCredentialsInput,
  basicCredentials,
  type StaticCredentialsInput,
  staticCredentials,
} from "./static.js";
