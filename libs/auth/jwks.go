package auth

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"sync"
	"time"
)

// JWKSMinRefresh is the shortest pause between two JWKS reads caused by
// unknown key ids, so that forged kids cannot hammer the key server.
const JWKSMinRefresh = 10 * time.Second

// maxJWKSBytes bounds a JWKS document.
const maxJWKSBytes = 1 << 20

// keySet caches the RSA keys of a JWKS document by key id.
type keySet struct {
	file, url string
	every     time.Duration
	client    *http.Client
	log       *slog.Logger

	mu     sync.Mutex
	keys   map[string]*rsa.PublicKey
	loaded time.Time
	tried  time.Time
}

func newKeySet(file, url string, every time.Duration, client *http.Client, logger *slog.Logger) *keySet {
	return &keySet{file: file, url: url, every: every, client: client, log: logger}
}

// key returns the key kid, re-reading the JWKS when the cache is stale or
// does not know kid (at most once per JWKSMinRefresh).
func (s *keySet) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	s.mu.Lock()
	k, ok := s.keys[kid]
	stale := time.Since(s.loaded) > s.every
	canTry := time.Since(s.tried) >= JWKSMinRefresh
	s.mu.Unlock()
	if ok && !stale {
		return k, nil
	}
	if stale || canTry {
		if err := s.refresh(ctx); err != nil {
			s.log.WarnContext(ctx, "auth: JWKS refresh failed, keeping cached keys", "error", err)
		}
		s.mu.Lock()
		k, ok = s.keys[kid]
		s.mu.Unlock()
	}
	if !ok {
		return nil, fmt.Errorf("no RS256 key with kid %q", kid)
	}
	return k, nil
}

func (s *keySet) refresh(ctx context.Context) error {
	s.mu.Lock()
	s.tried = time.Now()
	s.mu.Unlock()
	b, err := s.read(ctx)
	if err != nil {
		return err
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.keys, s.loaded = keys, time.Now()
	s.mu.Unlock()
	return nil
}

func (s *keySet) read(ctx context.Context) ([]byte, error) {
	if s.file != "" {
		b, err := os.ReadFile(s.file)
		if err != nil {
			return nil, fmt.Errorf("read JWKS: %w", err)
		}
		return b, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS: HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes))
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	return b, nil
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// parseJWKS reads the RSA signing keys of a JWKS document; other keys are
// skipped.
func parseJWKS(b []byte) (map[string]*rsa.PublicKey, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range doc.Keys {
		if k.Kty != "RSA" || (k.Use != "" && k.Use != "sig") || (k.Alg != "" && k.Alg != "RS256") {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("parse JWKS: key %q: bad modulus or exponent", k.Kid)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("parse JWKS: key %q: RSA keys need at least 2048 bits", k.Kid)
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, errors.New("parse JWKS: no RS256 signing keys")
	}
	return keys, nil
}
