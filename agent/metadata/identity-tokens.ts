// berthd's half of audience-bound identity tokens. The endpoint answers
// guests from its cache, but it never holds the host's signing key: a token
// is a credential the guest takes off the host, so it is minted here, per
// request, after the caller is resolved again from what the host observes
// (source IP -> neighbour -> MAC -> bridge port) and the policies are
// evaluated again. A cached view in the endpoint therefore cannot mint for a
// guest that has moved, nor after a policy started denying it. Refusals go
// back to the endpoint, which audits them like every metadata refusal.
import { callerIdentity, compileRules, evaluate } from '../auth/policy.js';
import type { Observer } from '../daemon/services.js';
import type { InstanceService } from '../services/instances.js';
import type { PolicyService } from '../services/policies.js';
import { audienceProblem, identityClaims, signToken, TOKEN_LIFETIME_SECONDS } from './identity-token.js';
import type { MetadataKeys } from './keys.js';

/** What the endpoint sends: the caller as its view knows it, and the audience. */
export interface MintRequest {
  ip: string;
  instance: string;
  mac: string;
  audience: string;
}

export interface MintAnswer {
  status: number;
  message: string;
  token?: string;
}

export interface IdentityTokenOptions {
  observer: Pick<Observer, 'resolve'>;
  instances: Pick<InstanceService, 'get'>;
  policies: Pick<PolicyService, 'all'>;
  keys: Pick<MetadataKeys, 'sign'>;
  /** The host id: the token's `iss`, `host` claim and header `kid` (the JWKS names keys by it). */
  hostId: () => string;
  now?: () => number;
  lifetimeSeconds?: number;
}

export class IdentityTokens {
  /** Tokens minted since berthd started (metrics, tests). */
  minted = 0;

  constructor(private readonly o: IdentityTokenOptions) {}

  async mint(network: string, p: Partial<MintRequest>): Promise<MintAnswer> {
    // The endpoint checked the audience already; it is checked again, since a
    // signed token must never carry a value this rule refuses.
    const audience = typeof p.audience === 'string' ? p.audience : '';
    const problem = audienceProblem([audience]);
    if (problem) return { status: 400, message: problem };
    if (typeof p.ip !== 'string') return { status: 400, message: 'no caller address' };
    const who = await this.o.observer.resolve(network, p.ip);
    if (!who.ok) return { status: 403, message: `caller not resolved: ${who.reason}` };
    if (who.instance !== p.instance || who.mac !== p.mac)
      return { status: 403, message: 'caller changed; retry' };
    let rec: ReturnType<InstanceService['get']>;
    try {
      rec = this.o.instances.get(who.instance);
    } catch {
      return { status: 403, message: 'instance-gone' };
    }
    const caller = callerIdentity(rec, who.mac);
    const d = evaluate(compileRules(this.o.policies.all(), caller), 'read', 'identity-token');
    if (!d.allowed) return { status: 403, message: d.reason };
    const hostId = this.o.hostId();
    const claims = identityClaims(
      {
        hostId,
        instance: rec.id,
        name: rec.name,
        network,
        mac: who.mac,
        ...(rec.role ? { role: rec.role } : {}),
        ...(rec.image_sha256 ? { imageSha256: rec.image_sha256 } : {}),
      },
      audience,
      (this.o.now ?? Date.now)(),
      this.o.lifetimeSeconds ?? TOKEN_LIFETIME_SECONDS,
    );
    this.minted += 1;
    return { status: 200, message: 'ok', token: signToken(claims, hostId, (data) => this.o.keys.sign(data)) };
  }
}
