// A real OpenID provider for tests/oidc.rs: panva's certified `oidc-provider`, on loopback.
//
// Configured from the environment:
//   OIDC_CLIENTS   JSON list of clients (client_id, client_secret, redirect_uris)
//   OIDC_ACCOUNTS  JSON object: account id -> claims (email, email_verified, groups, ...)
//   OIDC_PORT      (optional) the port to listen on (default: any free one)
//   OIDC_KEY_ID    (optional) the `kid` of the signing key made at start (default test-key)
//   OIDC_DEFAULT_ACCOUNT  (optional) the account signed in when the request has no `login_hint`
//                  (a browser following the edge's redirect as it is), after a click on a
//                  "Continue" button of the provider's own page
//   OIDC_WRONG_AUDIENCE_CLIENT  (optional) a client id whose ID tokens this provider re-signs,
//                  with its own key, for another audience: a provider issuing a token meant for
//                  another client, which the relying party must refuse.
// Prints `ready http://127.0.0.1:PORT` once it listens; exits when its standard input closes
// (the test that started it is gone).
//
// Sign-in is a test interaction instead of the login and consent forms: the account is the
// authorization request's `login_hint` (the test adds it to the URL the edge redirects to) or
// OIDC_DEFAULT_ACCOUNT, and every scope and claim asked for is granted. An unknown account ends
// with `access_denied`.

import http from 'node:http';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK, importJWK, CompactSign, decodeProtectedHeader } from 'jose';

const clients = JSON.parse(process.env.OIDC_CLIENTS || '[]');
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS || '{}');
const wrongAudienceClient = process.env.OIDC_WRONG_AUDIENCE_CLIENT || '';
const defaultAccount = process.env.OIDC_DEFAULT_ACCOUNT || '';

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const kid = process.env.OIDC_KEY_ID || 'test-key';
const jwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
const signingKey = await importJWK(jwk, 'RS256');

const server = http.createServer();
await new Promise((resolve) => server.listen(Number(process.env.OIDC_PORT || 0), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: clients.map((c) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: c.client_secret ? 'client_secret_basic' : 'none',
    ...c,
  })),
  async findAccount(ctx, id) {
    const claims = accounts[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // The claims asked for go into the ID token itself (the edge reads nothing else).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // PKCE for every client, so a relying party that leaves it out fails here.
  pkce: { required: () => true },
  jwks: { keys: [jwk] },
  cookies: { keys: ['oidc-test-cookie-key'] },
});

// A token meant for `wrongAudienceClient` leaves with another audience, signed with the
// provider's own key, so only the audience check can catch it.
provider.use(async (ctx, next) => {
  await next();
  const body = ctx.body;
  if (ctx.path !== '/token' || !body || typeof body.id_token !== 'string' || !wrongAudienceClient) return;
  const [, payload] = body.id_token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  if (claims.aud !== wrongAudienceClient) return;
  claims.aud = 'another-client';
  claims.azp = 'another-client';
  const header = decodeProtectedHeader(body.id_token);
  body.id_token = await new CompactSign(Buffer.from(JSON.stringify(claims)))
    .setProtectedHeader(header)
    .sign(signingKey);
});

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    if (!params.login_hint && defaultAccount && req.method !== 'POST') {
      // A page the person acts on, as at a real provider: the navigation back to the relying
      // party then starts on this site, which is what SameSite cookies are judged by.
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(`<!doctype html><title>Test provider</title><form method="post">`
        + `<button id="continue">Continue as ${defaultAccount}</button></form>`);
      return undefined;
    }
    const id = params.login_hint || defaultAccount;
    if (!id || !accounts[id]) {
      return provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'no such test account',
      }, { mergeWithLastSubmission: false });
    }
    return provider.interactionFinished(req, res, { login: { accountId: id } }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  res.statusCode = 400;
  res.end(`unexpected prompt ${prompt.name}`);
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.statusCode = 500;
      res.end(String(err));
    });
  } else {
    callback(req, res);
  }
});

console.log(`ready ${issuer}`);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
