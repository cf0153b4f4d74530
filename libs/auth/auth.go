// Package auth verifies the bearer JWTs of gRPC calls and puts the caller's
// Principal into the call's context. HS256 tokens are checked with a shared
// secret, RS256 tokens with the public keys of a JWKS document read from a
// file or a URL (cached and refreshed). Tokens and secrets are never logged.
//
// Every service with a gRPC API uses it the same way: LoadConfig reads the
// AUTH_* environment variables, NewServerInterceptors builds the interceptors
// (installed with the runtime's WithPrepare and WithGRPCServerOptions), and
// the handlers read the caller with Caller or RequireAdmin.
package auth

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// Defaults of Config.
const (
	DefaultJWKSRefresh = 5 * time.Minute
	DefaultLeeway      = 30 * time.Second
	DefaultAdminRole   = "admin"
)

// Config configures the Verifier. At least one of HS256Secret, JWKSFile and
// JWKSURL must be set, unless Disabled.
type Config struct {
	// HS256Secret enables HS256 tokens signed with this shared secret (at
	// least 32 bytes), given directly or in a file (not both).
	HS256Secret telemetry.Secret `env:"AUTH_HS256_SECRET" envFile:"AUTH_HS256_SECRET_FILE"`
	// JWKSFile and JWKSURL enable RS256 tokens whose kid names a key of the
	// JWKS document. Only one of the two may be set.
	JWKSFile string `env:"AUTH_JWKS_FILE"`
	JWKSURL  string `env:"AUTH_JWKS_URL"`
	// JWKSRefresh is how often the JWKS is re-read; an unknown kid triggers
	// an early re-read, at most once per JWKSMinRefresh.
	JWKSRefresh time.Duration `env:"AUTH_JWKS_REFRESH"`
	// Issuer and Audience, when set, must match the iss and aud claims.
	Issuer   string `env:"AUTH_ISSUER"`
	Audience string `env:"AUTH_AUDIENCE"`
	// AdminRoles are the values of the role/roles claim that grant admin.
	AdminRoles []string `env:"AUTH_ADMIN_ROLES"`
	// Leeway tolerates clock skew on exp, nbf and iat.
	Leeway time.Duration
	// Disabled turns authentication off (development only): no key source
	// may be set, and NewServerInterceptors admits every call as
	// DevPrincipal.
	Disabled bool `env:"AUTH_DISABLED"`
}

// DefaultConfig returns the defaults; a key source must still be set.
func DefaultConfig() Config {
	return Config{JWKSRefresh: DefaultJWKSRefresh, AdminRoles: []string{DefaultAdminRole}, Leeway: DefaultLeeway}
}

// Validate reports every invalid setting.
func (c Config) Validate() error {
	var errs []error
	if c.Disabled {
		if c.HS256Secret != "" || c.JWKSFile != "" || c.JWKSURL != "" {
			return errors.New("auth config: authentication is disabled but a key source is set; set one or the other")
		}
		return nil
	}
	if c.HS256Secret == "" && c.JWKSFile == "" && c.JWKSURL == "" {
		errs = append(errs, errors.New("set an HS256 secret, a JWKS file or a JWKS URL"))
	}
	if c.HS256Secret != "" && len(c.HS256Secret) < 32 {
		errs = append(errs, errors.New("the HS256 secret must have at least 32 bytes"))
	}
	if c.JWKSFile != "" && c.JWKSURL != "" {
		errs = append(errs, errors.New("set either a JWKS file or a JWKS URL, not both"))
	}
	if (c.JWKSFile != "" || c.JWKSURL != "") && c.JWKSRefresh <= 0 {
		errs = append(errs, errors.New("the JWKS refresh interval must be positive"))
	}
	if c.Leeway < 0 {
		errs = append(errs, errors.New("leeway must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("auth config: %w", err)
	}
	return nil
}

// Principal is an authenticated caller.
type Principal struct {
	// UserID is the token's subject.
	UserID string
	Roles  []string
	Admin  bool
	// Allocations are the allocations (projects) the token's "allocations"
	// claim lets the caller charge; AllocationsClaim reports whether the
	// token had the claim at all (an empty list then grants none).
	Allocations      []string
	AllocationsClaim bool
	// ExpiresAt is the token's exp; a stream authenticated by the token
	// ends then (plus the leeway).
	ExpiresAt time.Time
}

// Limits of the claims a Principal is made of. The subject becomes the
// user id of every event the caller causes and the actor of its audit
// records, so it is bounded here, where it enters the fleet, and never
// truncated later.
const (
	// MaxSubjectLen bounds the sub claim (OpenID Connect: at most 255 ASCII
	// characters).
	MaxSubjectLen = 255
	// MaxClaimValues bounds the number of roles and of allocations.
	MaxClaimValues = 64
	// MaxClaimValueLen bounds one role or allocation.
	MaxClaimValueLen = 128
)

// ValidSubject reports whether sub is an acceptable user id: 1 to
// MaxSubjectLen printable ASCII characters without spaces (a user name, an
// e-mail address, a UUID or an IdP's opaque id fit).
func ValidSubject(sub string) bool {
	if sub == "" || len(sub) > MaxSubjectLen {
		return false
	}
	for i := 0; i < len(sub); i++ {
		if sub[i] <= ' ' || sub[i] > '~' {
			return false
		}
	}
	return true
}

func validClaimValues(vals []string) bool {
	if len(vals) > MaxClaimValues {
		return false
	}
	for _, v := range vals {
		if len(v) > MaxClaimValueLen || !ValidSubject(v) {
			return false
		}
	}
	return true
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal of an authenticated call.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// ErrInvalidToken is wrapped by every verification failure.
var ErrInvalidToken = errors.New("invalid token")

// Verifier checks bearer tokens.
type Verifier struct {
	cfg    Config
	secret []byte
	keys   *keySet
	parser *jwt.Parser
	log    *slog.Logger
	// now is the clock of the time claims and of the cache.
	now func() time.Time
	// verified caches the tokens verified lately (see Verify).
	verified verifiedCache
}

// NewVerifier checks cfg and, for a JWKS source, loads the keys once (a
// JWKS URL that cannot be read yet is retried on the first token).
func NewVerifier(ctx context.Context, cfg Config, client *http.Client, logger *slog.Logger) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Disabled {
		return nil, errors.New("auth: authentication is disabled; there is nothing to verify with")
	}
	if logger == nil {
		return nil, errors.New("auth: logger is required")
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	var methods []string
	v := &Verifier{cfg: cfg, log: logger, now: time.Now}
	if cfg.HS256Secret != "" {
		v.secret = []byte(cfg.HS256Secret)
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if cfg.JWKSFile != "" || cfg.JWKSURL != "" {
		v.keys = newKeySet(cfg.JWKSFile, cfg.JWKSURL, cfg.JWKSRefresh, client, logger)
		if err := v.keys.refresh(ctx); err != nil {
			if cfg.JWKSFile != "" {
				return nil, fmt.Errorf("auth: %w", err)
			}
			logger.WarnContext(ctx, "auth: JWKS not loaded yet, will retry", "url", cfg.JWKSURL, "error", err)
		}
		methods = append(methods, jwt.SigningMethodRS256.Alg())
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// claims are the registered claims plus the role claims.
type claims struct {
	jwt.RegisteredClaims
	Role        string    `json:"role,omitempty"`
	Roles       []string  `json:"roles,omitempty"`
	Allocations *[]string `json:"allocations,omitempty"`
}

// Verify checks the token's signature, algorithm (HS256 only with the
// secret, RS256 only with a JWKS key: no "none", no HS/RS confusion), exp,
// nbf, iat, iss and aud, and returns its principal.
//
// A client sends the same token with every call until it renews it, so a
// token verified once is remembered (by its exact bytes, signature
// included) and its next calls skip the parse and the signature check.
// What can change with time is still checked on each call: a remembered
// token is refused from its exp (plus the leeway) on, and an RS256 token
// is remembered only while the JWKS still holds the key that verified it
// (the key set is refreshed as without the cache). nbf and iat, once
// passed, stay passed. Refused tokens are never remembered.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	if p, ok := v.remembered(ctx, token); ok {
		return p, nil
	}
	var (
		kid string
		key *rsa.PublicKey
	)
	var c claims
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		switch t.Method.Alg() {
		case jwt.SigningMethodHS256.Alg():
			if v.secret == nil {
				return nil, errors.New("HS256 is not enabled")
			}
			return v.secret, nil
		case jwt.SigningMethodRS256.Alg():
			if v.keys == nil {
				return nil, errors.New("RS256 is not enabled")
			}
			kid, _ = t.Header["kid"].(string)
			k, err := v.keys.key(ctx, kid)
			key = k
			return k, err
		}
		return nil, fmt.Errorf("algorithm %s is not accepted", t.Method.Alg())
	})
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if strings.TrimSpace(c.Subject) == "" {
		return Principal{}, fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	if !ValidSubject(c.Subject) {
		return Principal{}, fmt.Errorf("%w: the subject must be 1 to %d printable ASCII characters without spaces", ErrInvalidToken, MaxSubjectLen)
	}
	roles := slices.Clone(c.Roles)
	if c.Role != "" {
		roles = append(roles, c.Role)
	}
	if !validClaimValues(roles) {
		return Principal{}, fmt.Errorf("%w: at most %d roles of 1 to %d printable ASCII characters", ErrInvalidToken, MaxClaimValues, MaxClaimValueLen)
	}
	p := Principal{UserID: c.Subject, Roles: roles}
	if c.ExpiresAt != nil {
		p.ExpiresAt = c.ExpiresAt.Time
	}
	if c.Allocations != nil {
		if !validClaimValues(*c.Allocations) {
			return Principal{}, fmt.Errorf("%w: at most %d allocations of 1 to %d printable ASCII characters", ErrInvalidToken, MaxClaimValues, MaxClaimValueLen)
		}
		p.Allocations, p.AllocationsClaim = slices.Clone(*c.Allocations), true
	}
	for _, r := range roles {
		if slices.Contains(v.cfg.AdminRoles, r) {
			p.Admin = true
		}
	}
	if !p.ExpiresAt.IsZero() { // exp is required: always
		v.verified.add(token, verifiedToken{p: p.clone(), refuseAt: p.ExpiresAt.Add(v.cfg.Leeway), kid: kid, key: key}, v.now())
	}
	return p, nil
}

// remembered returns the principal of token when it was verified before
// and is still valid: not expired, and for RS256 its key still the JWKS's.
func (v *Verifier) remembered(ctx context.Context, token string) (Principal, bool) {
	t, ok := v.verified.get(token)
	if !ok {
		return Principal{}, false
	}
	if !v.now().Before(t.refuseAt) {
		v.verified.remove(token)
		return Principal{}, false
	}
	if t.key != nil {
		// key refreshes a stale key set, as a full verification would.
		if k, err := v.keys.key(ctx, t.kid); err != nil || k != t.key {
			v.verified.remove(token)
			return Principal{}, false
		}
	}
	return t.p.clone(), true
}

// clone returns p with slices of its own.
func (p Principal) clone() Principal {
	p.Roles, p.Allocations = slices.Clone(p.Roles), slices.Clone(p.Allocations)
	return p
}

// maxVerifiedTokens bounds the tokens a Verifier remembers.
const maxVerifiedTokens = 4096

// verifiedToken is a token verified once.
type verifiedToken struct {
	p Principal
	// refuseAt is the token's exp plus the leeway.
	refuseAt time.Time
	// kid and key are the RS256 key that verified the token; key is nil
	// for HS256.
	kid string
	key *rsa.PublicKey
}

// verifiedCache is a bounded map of verified tokens by token.
type verifiedCache struct {
	mu sync.RWMutex
	m  map[string]verifiedToken
}

func (c *verifiedCache) get(token string) (verifiedToken, bool) {
	c.mu.RLock()
	t, ok := c.m[token]
	c.mu.RUnlock()
	return t, ok
}

func (c *verifiedCache) remove(token string) {
	c.mu.Lock()
	delete(c.m, token)
	c.mu.Unlock()
}

// add remembers t; when the cache is full it first forgets the expired
// tokens, and all of them if that is not enough.
func (c *verifiedCache) add(token string, t verifiedToken, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]verifiedToken)
	}
	if _, ok := c.m[token]; !ok && len(c.m) >= maxVerifiedTokens {
		for k, old := range c.m {
			if !now.Before(old.refuseAt) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxVerifiedTokens {
			clear(c.m)
		}
	}
	c.m[token] = t
}
