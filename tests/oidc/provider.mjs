// The company identity provider for the OAuth tests: oidc-provider (OpenID Certified) on
// loopback with TLS. Started by tests/test_oauth_oidc.py with one argument, a JSON config:
//   { port, issuer, cert, key, keystore, kids: ["k2", "k1"], clients: [...], accounts: {id: claims} }
// Signing keys live in `keystore` (generated on first use per kid) so a restart with a new first
// kid is a key rotation: the new key signs, the old one is still published.
// Its login page is oidc-provider's development interaction (any password), which is all a test
// of the relying party needs. It prints "ready <port>" once listening.
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const store = fs.existsSync(config.keystore) ? JSON.parse(fs.readFileSync(config.keystore, 'utf8')) : {};
for (const kid of config.kids) {
  if (!store[kid]) {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    store[kid] = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  }
}
fs.writeFileSync(config.keystore, JSON.stringify(store));

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: { keys: config.kids.map((kid) => store[kid]) },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'hd'] },
  conformIdTokenClaims: false, // e-mail in the ID token itself, as Google and Entra send it
  findAccount: async (ctx, id) => {
    const claims = config.accounts[id];
    if (!claims) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['analytics-mcp-test-idp-cookie-key'] },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

https
  .createServer({ cert: fs.readFileSync(config.cert), key: fs.readFileSync(config.key) }, provider.callback())
  .listen(config.port, '127.0.0.1', () => console.log(`ready ${config.port}`));
